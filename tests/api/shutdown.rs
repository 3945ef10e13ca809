//! Graceful shutdown of the real binary on SIGTERM.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::helpers::*;
use crate::raw::*;

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_closes_sockets_and_exits_0() {
    let mut server = Binary::start(&[]).await;
    let mut a = RawSocket::connect(server.addr, &user_token("u1")).await;
    let mut b = RawSocket::connect(server.addr, &vendor_token("owner", "v1")).await;

    // A REST request in flight: headers and half of the body sent before SIGTERM.
    let addr = server.addr;
    let body = event_body("booking:created", "u1", "v1").to_string();
    let (first, rest) = body.split_at(body.len() / 2);
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /api/v1/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {API_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(first.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let pid = server.child.id().expect("pid").to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().await.expect("kill");
    assert!(killed.success());
    server.expect_log("shutting down").await;

    // From then on the instance is not ready, and very soon accepts no connection at all...
    let app = &server.app;
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
    for client in [&mut a, &mut b] {
        let (closed, seen) = client.read_until_closed(WAIT).await;
        assert!(closed, "socket not closed; saw {seen:?}");
        assert!(seen.iter().any(|m| m.starts_with("42[\"booking:created\"")), "{seen:?}");
    }

    let status =
        tokio::time::timeout(Duration::from_secs(7), server.child.wait()).await.expect("exit in time").unwrap();
    assert!(status.success(), "exit status {status:?}");
}
