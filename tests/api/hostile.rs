//! Hostile input over raw sockets: every case must close or refuse the offending
//! connection, leave a well-behaved client beside it served, and keep memory bounded.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};

use crate::helpers::*;
use crate::raw::*;

/// Fast heartbeats, so a peer that stops talking is cut off within about 2 s.
const FAST: [(&str, &str); 3] =
    [("PING_INTERVAL_MS", "1000"), ("PING_TIMEOUT_MS", "1000"), ("CONNECT_TIMEOUT_MS", "1000")];
const CLOSE_WAIT: Duration = Duration::from_secs(5);

fn text_frame(payload: Vec<u8>, opcode: OpCode, is_final: bool) -> Message {
    let header = FrameHeader { is_final, opcode, ..FrameHeader::default() };
    Message::Frame(Frame::from_payload(header, payload.into()))
}

#[tokio::test]
async fn oversize_websocket_messages_are_refused_and_memory_stays_bounded() {
    let server = Binary::start(&FAST).await;
    let mut neighbour = bystander(&server.app).await;
    let baseline = server.rss_kib();
    for size in [1_000_001usize, 16 << 20, 64 << 20] {
        let mut raw = RawSocket::connect(server.addr, &user_token("attacker")).await;
        let padding = "x".repeat(size);
        raw.send_text(&format!("42[\"ping\",\"{padding}\"]")).await;
        drop(padding);
        assert_eq!(raw.fate(CLOSE_WAIT).await, Fate::Closed, "{size} bytes");
        still_served(&server.app, &mut neighbour).await;
    }
    let peak = server.peak_rss_kib();
    eprintln!("oversize messages: baseline RSS {baseline} KiB, peak {peak} KiB");
    // A 64 MiB message must never be buffered whole.
    assert!(peak < baseline + 32 * 1024, "peak RSS {peak} KiB from a baseline of {baseline} KiB");
}

#[tokio::test]
async fn a_message_just_under_the_limit_is_accepted() {
    let server = Binary::start(&FAST).await;
    let mut raw = RawSocket::connect(server.addr, &user_token("u1")).await;
    let padding = "x".repeat(1_000_000 - 40);
    raw.send_text(&format!("421[\"ping\",\"{padding}\"]")).await;
    let ack = raw.next_text().await.expect("ack");
    assert!(ack.starts_with("431[{\"ok\":true,\"pong\":true"), "{ack}");
}

#[tokio::test]
async fn fragment_floods_and_never_finished_fragments_are_cut_off() {
    let server = Binary::start(&FAST).await;
    let mut neighbour = bystander(&server.app).await;
    let baseline = server.rss_kib();

    // Many small continuation frames adding up past the message limit.
    let mut raw = RawSocket::connect(server.addr, &user_token("flood")).await;
    raw.send(text_frame(b"42[\"ping\",\"".to_vec(), OpCode::Data(Data::Text), false)).await;
    for _ in 0..40_000 {
        raw.send(text_frame(vec![b'x'; 32], OpCode::Data(Data::Continue), false)).await;
    }
    assert_eq!(raw.fate(CLOSE_WAIT).await, Fate::Closed, "fragment flood");

    // A fragmented message that never ends: the heartbeat cannot get through, so it dies.
    let mut raw = RawSocket::connect(server.addr, &user_token("stall")).await;
    raw.send(text_frame(b"42[\"ping\",".to_vec(), OpCode::Data(Data::Text), false)).await;
    assert_eq!(raw.fate(CLOSE_WAIT).await, Fate::Closed, "unfinished fragment");

    still_served(&server.app, &mut neighbour).await;
    assert!(server.peak_rss_kib() < baseline + 32 * 1024);
}

#[tokio::test]
async fn binary_packets_with_absurd_attachment_counts_are_refused() {
    let server = Binary::start(&FAST).await;
    let mut neighbour = bystander(&server.app).await;
    let placeholder = r#"{"_placeholder":true,"num":0}"#;
    for packet in [
        format!("450-[\"ping\",{placeholder}]"),
        format!("4511-[\"ping\",{placeholder}]"),
        format!("459223372036854775808-[\"ping\",{placeholder}]"),
        format!("4518446744073709551616-[\"ping\",{placeholder}]"),
        format!("451[\"ping\",{placeholder}]"),
    ] {
        let mut raw = RawSocket::connect(server.addr, &user_token("attacker")).await;
        raw.send_text(&packet).await;
        // Whatever the server makes of it, it must not wait forever for attachments that
        // will never come, nor crash: the socket is closed, or stays usable.
        for _ in 0..11 {
            raw.send(Message::binary(vec![0u8; 16])).await;
        }
        match raw.fate(Duration::from_millis(2500)).await {
            Fate::Closed => eprintln!("attachments {packet:.24}: connection closed"),
            Fate::Open(_) => {
                assert!(raw.ping().await.is_some(), "{packet}: open but unresponsive");
                eprintln!("attachments {packet:.24}: ignored, socket still answers");
            }
        }
        still_served(&server.app, &mut neighbour).await;
    }
}

#[tokio::test]
async fn malformed_and_reserved_packets_never_hurt_the_server() {
    let server = Binary::start(&FAST).await;
    let mut neighbour = bystander(&server.app).await;
    for packet in [
        "42{}",
        "4abc",
        "42[1,2]",
        "42[null,{}]",
        "42[{\"a\":1}]",
        "42[\"error\",{}]",
        "42[\"connect\",{}]",
        "42[\"disconnect\",{}]",
        "42[]",
        "42",
        "4",
        "42[\"ping\"]garbage",
        "42[\"ping\",{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}]",
        "43[\"no such ack\"]",
        "49",
        "9",
        "",
        "\u{0}\u{1}\u{2}",
    ] {
        let mut raw = RawSocket::connect(server.addr, &user_token("attacker")).await;
        raw.send_text(packet).await;
        match raw.fate(Duration::from_millis(300)).await {
            Fate::Closed => eprintln!("packet {packet:.24?}: connection closed"),
            Fate::Open(_) => {
                assert!(raw.ping().await.is_some(), "{packet:?}: open but unresponsive");
                eprintln!("packet {packet:.24?}: ignored, socket still answers");
            }
        }
    }
    still_served(&server.app, &mut neighbour).await;
}

async fn status_of(app: &TestApp, method: reqwest::Method, path_and_query: &str) -> u16 {
    app.http.request(method, app.url(path_and_query)).send().await.expect("request").status().as_u16()
}

#[tokio::test]
async fn invalid_engine_io_requests_are_400() {
    let server = Binary::start(&FAST).await;
    let app = &server.app;
    let mut neighbour = bystander(app).await;
    let get = reqwest::Method::GET;
    assert_eq!(status_of(app, get.clone(), "/socket.io/?EIO=4&transport=polling").await, 200);
    for bad in [
        "/socket.io/?transport=polling",
        "/socket.io/?EIO=5&transport=polling",
        "/socket.io/?EIO=abc&transport=polling",
        "/socket.io/?EIO=4&transport=carrier-pigeon",
        "/socket.io/?EIO=4",
        "/socket.io/?EIO=4&transport=polling&sid=doesnotexist",
        "/socket.io/?EIO=4&transport=websocket&sid=doesnotexist",
    ] {
        let status = status_of(app, get.clone(), bad).await;
        assert_eq!(status, 400, "{bad}");
    }
    still_served(app, &mut neighbour).await;
}

#[tokio::test]
async fn polling_with_a_wrong_content_type_or_an_oversize_body_is_refused() {
    let server = Binary::start(&FAST).await;
    let app = &server.app;
    let mut neighbour = bystander(app).await;
    let open = app.http.get(app.url("/socket.io/?EIO=4&transport=polling")).send().await.unwrap().text().await.unwrap();
    let sid = serde_json::from_str::<serde_json::Value>(&open[1..]).unwrap()["sid"].as_str().unwrap().to_owned();
    let url = app.url(&format!("/socket.io/?EIO=4&transport=polling&sid={sid}"));
    let res =
        app.http.post(&url).header("content-type", "application/octet-stream").body(vec![0xffu8; 64]).send().await;
    let status = res.unwrap().status().as_u16();
    assert!((400..500).contains(&status) || status == 200, "binary garbage body: {status}");
    let huge = format!("42[\"ping\",\"{}\"]", "x".repeat(2_000_000));
    let res = app.http.post(&url).header("content-type", "text/plain;charset=UTF-8").body(huge).send().await;
    let refused = res.map(|r| r.status().is_client_error()).unwrap_or(true);
    assert!(refused, "a 2 MB polling body was accepted");
    still_served(app, &mut neighbour).await;
}

#[tokio::test]
async fn an_upgrade_that_never_completes_times_out() {
    let server = Binary::start(&[("UPGRADE_TIMEOUT_MS", "500")]).await;
    let app = &server.app;
    let mut neighbour = bystander(app).await;
    let open = app.http.get(app.url("/socket.io/?EIO=4&transport=polling")).send().await.unwrap().text().await.unwrap();
    let sid = serde_json::from_str::<serde_json::Value>(&open[1..]).unwrap()["sid"].as_str().unwrap().to_owned();
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket&sid={sid}", server.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("upgrade request");
    use futures_util::{SinkExt, StreamExt};
    ws.send(Message::text("2probe")).await.unwrap();
    let probe = tokio::time::timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(probe.to_text().unwrap(), "3probe");
    // ...and never send "5": the server gives up on the upgrade.
    let closed = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the half-done upgrade was kept open");
    still_served(app, &mut neighbour).await;
}

async fn raw_http(server: &Binary, request: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn thousands_of_headers_or_a_megabyte_header_are_refused() {
    let server = Binary::start(&FAST).await;
    let mut neighbour = bystander(&server.app).await;
    let mut many = String::from("GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n");
    for i in 0..5000 {
        many.push_str(&format!("X-Header-{i}: {i}\r\n"));
    }
    many.push_str("\r\n");
    let answer = raw_http(&server, many.as_bytes()).await;
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 431"), "{}", &answer[..answer.len().min(200)]);
    let big = format!(
        "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let answer = raw_http(&server, big.as_bytes()).await;
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 431"), "{}", &answer[..answer.len().min(200)]);
    still_served(&server.app, &mut neighbour).await;
}

#[tokio::test]
async fn a_client_that_never_sends_connect_is_closed() {
    let server = Binary::start(&FAST).await;
    let mut neighbour = bystander(&server.app).await;
    let baseline = server.rss_kib();
    // Many of them at once: each is closed, and what they held is freed.
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(RawSocket::open(server.addr).await);
    }
    for raw in &mut idle {
        assert_eq!(raw.fate(CLOSE_WAIT).await, Fate::Closed);
    }
    still_served(&server.app, &mut neighbour).await;
    assert!(server.peak_rss_kib() < baseline + 32 * 1024);
}

#[tokio::test]
async fn a_slow_reader_is_disconnected_not_buffered_without_bound() {
    let mut server = Binary::start(&FAST).await;
    let mut neighbour = bystander(&server.app).await;
    let slow = RawSocket::connect(server.addr, &user_token("slow")).await;
    let baseline = server.rss_kib();
    // 2000 events of about 10 KB (20 MB) for a client that never reads.
    let mut event = event_body("booking:created", "slow", "v1");
    event["booking"]["notes"] = serde_json::json!("n".repeat(10_000));
    let batch = serde_json::json!({ "events": vec![event; 20] });
    for _ in 0..100 {
        let (status, _) = server.app.post("/api/v1/events/batch", batch.clone()).await;
        assert_eq!(status, 202);
    }
    still_served(&server.app, &mut neighbour).await;
    // The slow reader misses its heartbeats and is cut off; its queue goes with it.
    let mut gone = false;
    for _ in 0..50 {
        if server.app.get("/api/v1/presence/user/slow").await.1["connections"] == 0 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !gone {
        while let Ok(m) = server.logs.try_recv() {
            eprintln!("LOG {m}");
        }
    }
    assert!(gone, "the slow reader is still connected");
    let peak = server.peak_rss_kib();
    eprintln!("slow reader: baseline RSS {baseline} KiB, peak {peak} KiB");
    assert!(peak < baseline + 64 * 1024, "peak RSS {peak} KiB from {baseline} KiB");
    drop(slow);
}

#[tokio::test]
async fn connections_per_address_and_in_total_are_capped() {
    let server = Binary::start(&[("MAX_CONNECTIONS_PER_IP", "3"), ("MAX_CONNECTIONS", "1000")]).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(tokio::net::TcpStream::connect(server.addr).await.unwrap());
    }
    let answer = raw_http(&server, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(answer.is_empty(), "a 4th connection from one address was served: {answer}");
    drop(open.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let answer = raw_http(&server, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let server = Binary::start(&[("MAX_CONNECTIONS", "2"), ("MAX_CONNECTIONS_PER_IP", "0")]).await;
    let _a = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let _b = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let answer = raw_http(&server, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(answer.is_empty(), "a 3rd connection in total was served: {answer}");
}

#[tokio::test]
async fn handshakes_per_address_are_rate_limited() {
    let server = Binary::start(&[("HANDSHAKES_PER_IP_PER_SEC", "1"), ("HANDSHAKE_BURST_PER_IP", "3")]).await;
    let app = &server.app;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(status_of(app, reqwest::Method::GET, "/socket.io/?EIO=4&transport=polling").await);
    }
    assert_eq!(statuses, vec![200, 200, 200, 429, 429]);
    // Requests within an existing session are not handshakes and are not limited.
    let res = app.http.get(app.url("/socket.io/?EIO=4&transport=polling&sid=unknown")).send().await.unwrap();
    assert_eq!(res.status(), 400);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(status_of(app, reqwest::Method::GET, "/socket.io/?EIO=4&transport=polling").await, 200);
}

/// Sends `head` (and `body`) on one raw TCP connection and reads what comes back
/// until the server closes it or goes quiet for a moment.
async fn raw_exchange(addr: std::net::SocketAddr, request: &[u8]) -> (String, bool) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_millis(700), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&seen).into_owned(), true),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&seen).into_owned(), false),
        }
    }
}

/// An answer given before the body was read must say `Connection: close` (and close),
/// or a keep-alive client reuses the dying connection and its next request breaks.
/// Fully read requests keep the connection open.
#[tokio::test]
async fn an_answer_that_leaves_the_body_unread_says_connection_close() {
    let server = Binary::start(&[("REST_BODY_LIMIT", "2048")]).await;
    let app = &server.app;
    // REST: Content-Length over the limit; only part of the body is sent.
    let head = format!(
        "POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{\"type\":"
    );
    let (answer, closed) = raw_exchange(server.addr, head.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?} closed={closed}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
    assert!(closed, "the connection stayed open with an unread body");

    // Polling: a payload over MAX_PAYLOAD_BYTES, announced and partly sent.
    let open = app.http.get(app.url("/socket.io/?EIO=4&transport=polling")).send().await.unwrap().text().await.unwrap();
    let sid = serde_json::from_str::<serde_json::Value>(&open[1..]).unwrap()["sid"].as_str().unwrap().to_owned();
    let head = format!(
        "POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n\
         Content-Type: text/plain;charset=UTF-8\r\nContent-Length: 5000000\r\n\r\n42[\"ping\",\"xxxx"
    );
    let (answer, closed) = raw_exchange(server.addr, head.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
    assert!(closed, "the connection stayed open with an unread body");

    // A request read in full keeps its connection: two on one socket, no close.
    let body = event_body("booking:created", "u1", "v1").to_string();
    let one = format!(
        "POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (answer, closed) = raw_exchange(server.addr, format!("{one}{one}").as_bytes()).await;
    assert_eq!(answer.matches("HTTP/1.1 202").count(), 2, "{answer}");
    assert!(!answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
    assert!(!closed, "a fully read request closed its connection");
}

/// A client still uploading an oversize body when the 413 comes must be able to finish
/// writing and read the 413: the server drains the rest instead of resetting the
/// connection (which made Node's `fetch` report EPIPE instead of the answer).
#[tokio::test]
async fn an_oversize_upload_gets_its_413_not_a_reset() {
    let server = Binary::start(&[]).await;
    // Larger than the socket buffers can absorb, so the upload really is still going.
    let body = format!("{{\"type\":\"booking:created\",\"pad\":\"{}\"}}", "x".repeat(32 << 20));
    for attempt in 0..5 {
        let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let head = format!(
            "POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let (mut rd, mut wr) = tcp.split();
        let upload = async {
            wr.write_all(head.as_bytes()).await?;
            wr.write_all(body.as_bytes()).await
        };
        let answer = async {
            let mut seen = Vec::new();
            let _ = tokio::time::timeout(WAIT, rd.read_to_end(&mut seen)).await;
            seen
        };
        let (uploaded, seen) = tokio::join!(upload, answer);
        let seen = String::from_utf8_lossy(&seen);
        assert!(uploaded.is_ok(), "attempt {attempt}: the upload was cut off: {uploaded:?}");
        assert!(seen.starts_with("HTTP/1.1 413"), "attempt {attempt}: {seen:?}");
    }
}
