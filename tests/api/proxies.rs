//! `TRUSTED_PROXIES` over real connections: the client address a trusted proxy forwards
//! is what the per-address limits count; anyone else's forwarding headers are ignored.

use std::time::Duration;

use crate::helpers::*;
use crate::raw::RawSocket;

/// Opens a new Engine.IO session over long-polling, as if forwarded for `xff`; the status.
async fn handshake(app: &TestApp, xff: Option<&str>) -> u16 {
    let mut req = app.http.get(app.url("/socket.io/?EIO=4&transport=polling"));
    if let Some(xff) = xff {
        req = req.header("x-forwarded-for", xff);
    }
    req.send().await.expect("handshake").status().as_u16()
}

const BUDGET: [(&str, &str); 2] = [("HANDSHAKES_PER_IP_PER_SEC", "1"), ("HANDSHAKE_BURST_PER_IP", "2")];

#[tokio::test]
async fn each_forwarded_address_has_its_own_handshake_budget_and_the_same_one_is_limited() {
    let app = spawn_app_with(&[BUDGET[0], BUDGET[1], ("TRUSTED_PROXIES", "127.0.0.1, ::1")]).await;
    let a = "203.0.113.10";
    assert_eq!(handshake(&app, Some(a)).await, 200);
    assert_eq!(
        handshake(&app, Some(&format!("198.51.100.1, {a}"))).await,
        200,
        "what the client wrote is not its address"
    );
    assert_eq!(handshake(&app, Some(a)).await, 429, "the same forwarded address is limited");
    assert_eq!(handshake(&app, Some("203.0.113.11")).await, 200, "another forwarded address has its own budget");
    assert_eq!(handshake(&app, Some("[2001:db8::7]:443")).await, 200);
    assert_eq!(handshake(&app, Some("2001:db8::7")).await, 200);
    assert_eq!(handshake(&app, Some("2001:db8::7")).await, 429, "a v6 address with and without a port is one address");
}

#[tokio::test]
async fn an_untrusted_peers_forwarded_headers_are_ignored() {
    let app = spawn_app_with(&[BUDGET[0], BUDGET[1], ("TRUSTED_PROXIES", "10.0.0.0/8")]).await;
    assert_eq!(handshake(&app, Some("203.0.113.20")).await, 200);
    assert_eq!(handshake(&app, Some("203.0.113.21")).await, 200);
    // A client that makes up addresses still spends its own (the peer's) budget.
    assert_eq!(handshake(&app, Some("203.0.113.22")).await, 429);
    assert_eq!(handshake(&app, None).await, 429);
    let forwarded =
        app.http.get(app.url("/socket.io/?EIO=4&transport=polling")).header("forwarded", "for=203.0.113.23");
    assert_eq!(forwarded.send().await.unwrap().status(), 429);
}

#[tokio::test]
async fn malformed_forwarding_headers_never_hurt_and_count_as_the_peer() {
    let app = spawn_app_with(&[
        ("HANDSHAKES_PER_IP_PER_SEC", "1"),
        ("HANDSHAKE_BURST_PER_IP", "3"),
        ("TRUSTED_PROXIES", "127.0.0.1"),
    ])
    .await;
    let thousand_proxies = vec!["127.0.0.1"; 1000].join(", ");
    let garbage: [&str; 3] = ["garbage", "[::1", &thousand_proxies];
    for bad in garbage {
        assert_eq!(handshake(&app, Some(bad)).await, 200, "{bad:.40}");
    }
    // Three malformed headers spent the peer's burst of three: the peer's budget is gone...
    assert_eq!(handshake(&app, Some("1.2.3.4.5")).await, 429);
    assert_eq!(handshake(&app, None).await, 429);
    // ...and a well-formed forwarded address still has its own.
    assert_eq!(handshake(&app, Some("198.51.100.77:8080")).await, 200);
    let hops = format!("{}, 198.51.100.78", vec!["x"; 1000].join(","));
    assert_eq!(handshake(&app, Some(&hops)).await, 200, "the rightmost hop is read, the rest never parsed");
    still_serves(&app).await;
}

#[tokio::test]
async fn sockets_per_forwarded_address_are_limited_and_the_proxy_itself_is_not() {
    // Two sockets per address; the proxy (127.0.0.1) opens six TCP connections.
    let app = spawn_app_with(&[("MAX_CONNECTIONS_PER_IP", "2"), ("TRUSTED_PROXIES", "127.0.0.1")]).await;
    let a1 = RawSocket::forwarded(&app, "", "203.0.113.30", "px-a1").await.expect("first socket of a");
    let _a2 = RawSocket::forwarded(&app, "", "203.0.113.30", "px-a2").await.expect("second socket of a");
    assert_eq!(RawSocket::forwarded(&app, "", "203.0.113.30", "px-a3").await.err(), Some(429), "a third socket of a");
    let _b1 = RawSocket::forwarded(&app, "", "203.0.113.31", "px-b1").await.expect("b has its own limit");
    let _b2 = RawSocket::forwarded(&app, "", "203.0.113.31", "px-b2").await.expect("b has its own limit");
    // A socket that leaves frees its place.
    drop(a1);
    let mut freed = false;
    for _ in 0..50 {
        if let Ok(socket) = RawSocket::forwarded(&app, "", "203.0.113.30", "px-a4").await {
            drop(socket);
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(freed, "a's place was not freed when its socket left");
}

async fn still_serves(app: &TestApp) {
    let res = app.http.get(app.url("/health")).send().await.unwrap();
    assert_eq!(res.status(), 200);
}
