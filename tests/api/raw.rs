//! Raw peers for protocol and hostile-input tests: the real binary in its own process
//! (so its memory can be read from /proc), and a Socket.IO client written by hand over
//! a WebSocket, so a test controls every byte and frame.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::helpers::*;

/// The `fixrx-realtime` binary, started on a random port.
pub struct Binary {
    pub child: Child,
    pub addr: SocketAddr,
    pub app: TestApp,
    pub logs: tokio::sync::mpsc::UnboundedReceiver<String>,
    /// The same lines whole (every JSON field), for tests that read more than the message.
    pub records: tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
}

impl Binary {
    pub async fn start(vars: &[(&str, &str)]) -> Binary {
        Binary::start_unsetting(vars, &[]).await
    }

    /// Like [`Binary::start`], with the test defaults named in `unset` left out.
    pub async fn start_unsetting(vars: &[(&str, &str)], unset: &[&str]) -> Binary {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fixrx-realtime"));
        // Away from the repository, so a developer's .env cannot change the test.
        cmd.current_dir(std::env::temp_dir())
            .envs([
                ("PORT", "0"),
                ("HOST", "127.0.0.1"),
                ("LOG_FORMAT", "json"),
                ("RUST_LOG", "info"),
                ("JWT_SECRET", JWT_SECRET),
                ("API_TOKEN", API_TOKEN),
                ("SHUTDOWN_TIMEOUT_SECS", "5"),
            ])
            .envs(vars.iter().copied());
        for var in unset {
            cmd.env_remove(var);
        }
        cmd.stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true);
        let mut child = cmd.spawn().expect("start the binary");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let addr = tokio::time::timeout(WAIT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                let log: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                if log["message"] == "fixrx-realtime listening" {
                    return log["addr"].as_str().and_then(|a| a.parse::<SocketAddr>().ok());
                }
            }
            None
        })
        .await
        .expect("listening in time")
        .expect("a listening line");
        // Keep draining the log so the child never blocks on a full pipe; pass messages on.
        let (tx, logs) = tokio::sync::mpsc::unbounded_channel();
        let (records_tx, records) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let log: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                let _ = tx.send(log["message"].as_str().unwrap_or_default().to_owned());
                let _ = records_tx.send(log);
            }
        });
        Binary { child, addr, app: TestApp::external(addr), logs, records }
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// Resident memory now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        proc_status(self.pid(), "VmRSS:")
    }

    /// Peak resident memory since start, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        proc_status(self.pid(), "VmHWM:")
    }

    /// `/metrics` as served now: an attack must leave its size (its series) unchanged.
    pub async fn metrics(&self) -> String {
        let res = self.app.http.get(self.app.url("/metrics")).send().await.expect("GET /metrics");
        assert_eq!(res.status(), 200, "/metrics refused");
        res.text().await.expect("metrics body")
    }

    /// A metric's value in `/metrics` (the sum over its series whose labels contain every
    /// one of `labels`, e.g. `reason="header"`); 0 when absent.
    pub async fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter(|l| labels.iter().all(|want| l.contains(want)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Waits for a log message starting with `prefix`.
    pub async fn expect_log(&mut self, prefix: &str) {
        let found = tokio::time::timeout(WAIT, async {
            while let Some(message) = self.logs.recv().await {
                if message.starts_with(prefix) {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(matches!(found, Ok(true)), "no log line starting with {prefix:?}");
    }
}

fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a memory figure")
}

pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A hand-written Socket.IO client over one WebSocket.
pub struct RawSocket {
    pub ws: Ws,
}

/// What became of a connection after something was sent on it.
#[derive(Debug, PartialEq, Eq)]
pub enum Fate {
    Closed,
    /// Still open after the wait; the frames seen meanwhile.
    Open(Vec<String>),
}

impl RawSocket {
    /// Opens an Engine.IO WebSocket session (no Socket.IO CONNECT yet).
    pub async fn open(addr: SocketAddr) -> RawSocket {
        RawSocket::open_with(addr, &[]).await
    }

    /// [`RawSocket::open`], with these headers on the opening request.
    pub async fn open_with(addr: SocketAddr, headers: &[(&'static str, &str)]) -> RawSocket {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        use tokio_tungstenite::tungstenite::http::HeaderValue;
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        let mut request = url.into_client_request().expect("a WebSocket request");
        for (name, value) in headers {
            request.headers_mut().insert(*name, HeaderValue::from_str(value).expect("a header value"));
        }
        // No client-side size limit: the tests send what a hostile client would.
        let config = WebSocketConfig::default().max_message_size(None).max_frame_size(None);
        let (mut ws, _) =
            tokio_tungstenite::connect_async_with_config(request, Some(config), false).await.expect("websocket");
        let open = ws.next().await.expect("open").expect("open");
        assert!(open.to_text().unwrap_or_default().starts_with('0'), "{open:?}");
        RawSocket { ws }
    }

    /// Opens a session and connects to `/` with `token`.
    pub async fn connect(addr: SocketAddr, token: &str) -> RawSocket {
        RawSocket::connect_with(addr, token, &[]).await
    }

    /// [`RawSocket::connect`], with these headers on the opening request.
    pub async fn connect_with(addr: SocketAddr, token: &str, headers: &[(&'static str, &str)]) -> RawSocket {
        let mut raw = RawSocket::open_with(addr, headers).await;
        raw.send_text(&format!("40{{\"token\":\"{token}\"}}")).await;
        let answer = raw.next_text().await.expect("CONNECT answer");
        assert!(answer.starts_with("40{\"sid\""), "{answer}");
        raw
    }

    /// A socket over WebSocket from behind a trusted proxy that forwards it for `xff`,
    /// with `suffix` after the query; the refusal's status otherwise.
    pub async fn forwarded(app: &TestApp, suffix: &str, xff: &str, user: &str) -> Result<RawSocket, u16> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        use tokio_tungstenite::tungstenite::http::HeaderValue;
        let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket{suffix}", app.addr);
        let mut request = url.into_client_request().expect("a WebSocket request");
        request.headers_mut().insert("x-forwarded-for", HeaderValue::from_str(xff).expect("an address"));
        let (ws, _) = match tokio_tungstenite::connect_async(request).await {
            Ok(ok) => ok,
            Err(tokio_tungstenite::tungstenite::Error::Http(res)) => return Err(res.status().as_u16()),
            Err(e) => panic!("{e}"),
        };
        let mut raw = RawSocket { ws };
        let open = raw.ws.next().await.expect("open").expect("open");
        assert!(open.to_text().unwrap_or_default().starts_with('0'));
        raw.send_text(&format!("40{{\"token\":\"{}\"}}", user_token(user))).await;
        let answer = raw.next_text().await.expect("CONNECT answer");
        assert!(answer.starts_with("40{\"sid\""), "{answer}");
        Ok(raw)
    }

    pub async fn send_text(&mut self, text: &str) {
        let _ = self.ws.send(Message::text(text)).await;
    }

    pub async fn send(&mut self, message: Message) {
        let _ = self.ws.send(message).await;
    }

    /// The next text frame, answering Engine.IO pings on the way; `None` once closed.
    pub async fn next_text(&mut self) -> Option<String> {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await.ok()?? {
                Ok(Message::Text(t)) if t.as_str() == "2" => {
                    let _ = self.ws.send(Message::text("3")).await;
                }
                Ok(Message::Text(t)) => return Some(t.to_string()),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Reads (answering pings) until the server closes the connection or `wait` passes.
    pub async fn fate(&mut self, wait: Duration) -> Fate {
        let (closed, seen) = self.read_until_closed(wait).await;
        if closed { Fate::Closed } else { Fate::Open(seen) }
    }

    /// Whether the server closed the connection within `wait`, and the text frames seen.
    pub async fn read_until_closed(&mut self, wait: Duration) -> (bool, Vec<String>) {
        let mut seen = Vec::new();
        let result = tokio::time::timeout(wait, async {
            loop {
                match self.ws.next().await {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                    Some(Ok(Message::Text(t))) if t.as_str() == "2" => {
                        let _ = self.ws.send(Message::text("3")).await;
                    }
                    Some(Ok(Message::Text(t))) => seen.push(t.to_string()),
                    Some(Ok(_)) => {}
                }
            }
        })
        .await;
        (result.is_ok(), seen)
    }

    /// Sends a Socket.IO `ping` with an ack id and returns the ack, if any comes.
    pub async fn ping(&mut self) -> Option<String> {
        self.send_text("421[\"ping\",{}]").await;
        loop {
            let text = self.next_text().await?;
            if text.starts_with("431") {
                return Some(text);
            }
        }
    }
}

/// A client beside the attack: it must keep receiving its events throughout.
pub async fn bystander(app: &TestApp) -> TestClient {
    connect_user(app, "bystander").await
}

/// Proves the bystander is unharmed: an event still reaches it, promptly.
pub async fn still_served(app: &TestApp, client: &mut TestClient) {
    let (status, _) = app.post_event(event_body("booking:created", "bystander", "v1")).await;
    assert_eq!(status, 202, "the server stopped serving REST");
    client.expect_event("booking:created").await;
}
