//! Graceful shutdown of the real binary on SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

use crate::helpers::*;

/// A Socket.IO client over a raw WebSocket: it sees exactly when the server closes.
struct RawSocket {
    ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
}

impl RawSocket {
    async fn connect(addr: &str, token: &str) -> RawSocket {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("websocket");
        let open = ws.next().await.expect("open").expect("open");
        assert!(open.to_text().unwrap_or_default().starts_with('0'), "{open:?}");
        ws.send(Message::text(format!("40{{\"token\":\"{token}\"}}"))).await.expect("send CONNECT");
        loop {
            let msg = ws.next().await.expect("CONNECT answer").expect("CONNECT answer");
            let text = msg.to_text().unwrap_or_default().to_owned();
            if text == "2" {
                // An Engine.IO ping: answer it and keep waiting.
                ws.send(Message::text("3")).await.expect("pong");
                continue;
            }
            assert!(text.starts_with("40{\"sid\""), "{text}");
            break;
        }
        RawSocket { ws }
    }

    /// Waits for the server to close the transport; returns the text frames seen before.
    async fn expect_closed(&mut self) -> Vec<String> {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let mut seen = Vec::new();
        let closed = tokio::time::timeout(WAIT, async {
            loop {
                match self.ws.next().await {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                    Some(Ok(Message::Text(t))) => seen.push(t.to_string()),
                    Some(Ok(_)) => continue,
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "the server did not close the socket");
        seen
    }
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_closes_sockets_and_exits_0() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fixrx-realtime"))
        // Away from the repository, so a developer's .env cannot change the test.
        .current_dir(std::env::temp_dir())
        .envs([
            ("PORT", "0"),
            ("HOST", "127.0.0.1"),
            ("LOG_FORMAT", "json"),
            ("JWT_SECRET", JWT_SECRET),
            ("API_TOKEN", API_TOKEN),
            ("SHUTDOWN_TIMEOUT_SECS", "5"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the binary");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let addr = tokio::time::timeout(WAIT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            let log: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if log["message"] == "fixrx-realtime listening" {
                return log["addr"].as_str().map(str::to_owned);
            }
        }
        None
    })
    .await
    .expect("listening in time")
    .expect("a listening line");
    // Keep draining the log so the child never blocks on a full pipe; pass on messages.
    let (log_tx, mut log_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let drain = tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let log: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            let _ = log_tx.send(log["message"].as_str().unwrap_or_default().to_owned());
        }
    });

    let app = TestApp::external(addr.parse().expect("addr"));
    let mut a = RawSocket::connect(&addr, &user_token("u1")).await;
    let mut b = RawSocket::connect(&addr, &vendor_token("owner", "v1")).await;

    // A REST request in flight: headers and half of the body sent before SIGTERM.
    let body = event_body("booking:created", "u1", "v1").to_string();
    let (first, rest) = body.split_at(body.len() / 2);
    let mut stream = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    let head = format!(
        "POST /api/v1/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {API_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(first.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let pid = child.id().expect("pid").to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().await.expect("kill");
    assert!(killed.success());

    tokio::time::timeout(WAIT, async {
        while let Some(message) = log_rx.recv().await {
            if message.starts_with("shutting down") {
                return;
            }
        }
    })
    .await
    .expect("the shutdown is logged");
    // From then on the instance is not ready, and very soon accepts no connection at all...
    let mut refused = false;
    for _ in 0..50 {
        match app.http.get(app.url("/ready")).timeout(Duration::from_secs(1)).send().await {
            Err(_) => {
                refused = true;
                break;
            }
            Ok(res) => assert_eq!(res.status(), 503, "ready while shutting down"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "new connections still accepted after SIGTERM");

    // ...but the in-flight request completes, and its event still reaches the clients...
    stream.write_all(rest.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut response)).await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 202"), "{response}");

    // ...before their transports are closed (socket.io clients then reconnect elsewhere).
    assert!(a.expect_closed().await.iter().any(|m| m.starts_with("42[\"booking:created\"")));
    assert!(b.expect_closed().await.iter().any(|m| m.starts_with("42[\"booking:created\"")));

    let status = tokio::time::timeout(Duration::from_secs(7), child.wait()).await.expect("exit in time").unwrap();
    assert!(status.success(), "exit status {status:?}");
    drain.abort();
}
