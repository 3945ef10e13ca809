//! Attacks on the edge of the per-address limits: a query spelled so the guard and the
//! transport disagree on whether it opens a session, an IPv6 host with a whole /64, and a
//! client's `X-Forwarded-For` passed through by a proxy that writes `Forwarded`.

use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::raw::*;

/// Spellings of a query that name no session as engineioxide reads it, so open one; the
/// guard once read the first four as naming a session, and let them past its limits.
const NEW_SESSION_SPELLINGS: [&str; 6] =
    ["&s%69d=x", "&sid", "&%73id=AAAAAAAAAAAAAAAA", "&sid&s%69d=x", "&SID=AAAAAAAAAAAAAAAA", ""];

/// A long-polling handshake with `suffix` after the query; whether it opened a session
/// (an Engine.IO open packet), else the status.
async fn poll_handshake(app: &TestApp, suffix: &str, headers: &[(&str, &str)]) -> Result<(), u16> {
    let mut req = app.http.get(app.url(&format!("/socket.io/?EIO=4&transport=polling{suffix}")));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let res = req.send().await.expect("handshake");
    let status = res.status().as_u16();
    let body = res.text().await.unwrap_or_default();
    if status == 200 && body.starts_with("0{\"sid\"") { Ok(()) } else { Err(status) }
}

#[tokio::test]
async fn every_spelling_of_a_new_session_spends_the_same_handshake_budget() {
    const BURST: usize = 5;
    const PER_SPELLING: usize = 100;
    let server = Binary::start(&[("HANDSHAKES_PER_IP_PER_SEC", "1"), ("HANDSHAKE_BURST_PER_IP", "5")]).await;
    let mut neighbour = bystander(&server.app).await;
    // Once before measuring, so the series honest REST calls create exist already.
    still_served(&server.app, &mut neighbour).await;
    server.metrics().await;
    let (rss_before, metrics_before) = (server.rss_kib(), server.metrics().await.len());
    let started = Instant::now();
    let (mut opened_in_all, mut refused_in_all) = (0, 0);
    for suffix in NEW_SESSION_SPELLINGS {
        let spelling_started = Instant::now();
        let mut opened = 0;
        for _ in 0..PER_SPELLING {
            match poll_handshake(&server.app, suffix, &[]).await {
                Ok(()) => opened += 1,
                Err(status) => {
                    assert_eq!(status, 429, "{suffix:?}: refused otherwise than by the rate limit");
                    refused_in_all += 1;
                }
            }
        }
        // One new token a second: a spelling can only use what came back while it ran.
        let refilled = spelling_started.elapsed().as_secs() as usize + 1;
        eprintln!("{suffix:?}: {opened} of {PER_SPELLING} handshakes opened a session");
        assert!(opened <= BURST + refilled, "{suffix:?} opened {opened} sessions past the per-address limit");
        opened_in_all += opened;
        still_served(&server.app, &mut neighbour).await;
    }
    let allowed = BURST + started.elapsed().as_secs() as usize + 1;
    assert!(opened_in_all <= allowed, "{opened_in_all} sessions from one address, {allowed} allowed");
    eprintln!("{refused_in_all} handshakes refused with 429");
    // Engine.IO sessions are not Socket.IO connections: only the bystander is connected.
    assert_eq!(server.metric("fixrx_connections", &[]).await, 1.0);
    let (rss_after, metrics_after) = (server.rss_kib(), server.metrics().await.len());
    eprintln!(
        "{} handshakes, {opened_in_all} sessions: RSS {rss_before} -> {rss_after} KiB, \
         /metrics {metrics_before} -> {metrics_after} bytes",
        PER_SPELLING * NEW_SESSION_SPELLINGS.len()
    );
    assert!(rss_after < rss_before + 16 * 1024, "RSS grew from {rss_before} to {rss_after} KiB");
    assert!(metrics_after < metrics_before + 1024, "/metrics grew from {metrics_before} to {metrics_after} bytes");
}

#[tokio::test]
async fn a_websocket_spelled_to_dodge_the_guard_still_counts_against_the_per_address_cap() {
    let app = spawn_app_with(&[("MAX_CONNECTIONS_PER_IP", "2"), ("TRUSTED_PROXIES", "127.0.0.1")]).await;
    let a = "203.0.113.40";
    let mut a1 = RawSocket::forwarded(&app, "&s%69d=x", a, "edge-a1").await.expect("first socket");
    let _a2 = RawSocket::forwarded(&app, "&sid", a, "edge-a2").await.expect("second socket");
    for suffix in ["&s%69d=x", "&sid", "&%73id=AAAAAAAAAAAAAAAA", ""] {
        assert_eq!(RawSocket::forwarded(&app, suffix, a, "edge-a3").await.err(), Some(429), "{suffix:?}");
    }
    let _b =
        RawSocket::forwarded(&app, "&sid", "203.0.113.41", "edge-b1").await.expect("another address has its own cap");
    // The refusals cost the sockets already open nothing.
    assert!(matches!(a1.fate(QUIET).await, Fate::Open(_)), "a refusal closed a socket already open");
}

const BUDGET: [(&str, &str); 3] =
    [("HANDSHAKES_PER_IP_PER_SEC", "1"), ("HANDSHAKE_BURST_PER_IP", "2"), ("TRUSTED_PROXIES", "127.0.0.1")];

#[tokio::test]
async fn ipv6_clients_of_one_prefix_share_a_handshake_budget() {
    let app = spawn_app_with(&[BUDGET[0], BUDGET[1], BUDGET[2], ("IPV6_PREFIX_LEN", "64")]).await;
    let from = |ip: &'static str| [("x-forwarded-for", ip)];
    assert_eq!(poll_handshake(&app, "", &from("2001:db8::1")).await, Ok(()));
    assert_eq!(poll_handshake(&app, "", &from("2001:db8::2")).await, Ok(()));
    assert_eq!(poll_handshake(&app, "", &from("2001:db8::3")).await, Err(429), "one /64, one budget");
    assert_eq!(poll_handshake(&app, "", &from("2001:db8:0:0:ffff::1")).await, Err(429));
    assert_eq!(poll_handshake(&app, "", &from("2001:db9::1")).await, Ok(()), "another /64 has its own");
    assert_eq!(poll_handshake(&app, "", &from("203.0.113.60")).await, Ok(()));
    assert_eq!(poll_handshake(&app, "", &from("203.0.113.61")).await, Ok(()), "IPv4 stays per address");

    // The prefix is the operator's: /128 counts every address on its own.
    let app = spawn_app_with(&[BUDGET[0], BUDGET[1], BUDGET[2], ("IPV6_PREFIX_LEN", "128")]).await;
    for ip in ["2001:db8::1", "2001:db8::1", "2001:db8::2", "2001:db8::3"] {
        assert_eq!(poll_handshake(&app, "", &from(ip)).await, Ok(()), "{ip} with /128");
    }
    assert_eq!(poll_handshake(&app, "", &from("2001:db8::1")).await, Err(429));
}

#[tokio::test]
async fn ipv6_clients_of_one_prefix_share_the_connection_cap() {
    let app = spawn_app_with(&[("MAX_CONNECTIONS_PER_IP", "2"), BUDGET[2], ("IPV6_PREFIX_LEN", "64")]).await;
    let a1 = RawSocket::forwarded(&app, "", "2001:db8::1", "v6-a1").await.expect("first socket of the /64");
    let _a2 = RawSocket::forwarded(&app, "", "2001:db8::2", "v6-a2").await.expect("second socket of the /64");
    assert_eq!(
        RawSocket::forwarded(&app, "", "2001:db8::3", "v6-a3").await.err(),
        Some(429),
        "a third socket of the /64"
    );
    let mut b = RawSocket::forwarded(&app, "", "2001:db9::1", "v6-b1").await.expect("another /64 has its own cap");
    assert!(matches!(b.fate(QUIET).await, Fate::Open(_)), "the other /64's socket was closed");
    // A socket that leaves frees its place for the whole prefix.
    drop(a1);
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(socket) = RawSocket::forwarded(&app, "", "2001:db8::4", "v6-a4").await {
            drop(socket);
            break;
        }
        assert!(Instant::now() < deadline, "the /64's place was not freed when its socket left");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_forged_x_forwarded_for_does_not_help_when_the_proxy_writes_forwarded() {
    let app = spawn_app_with(&BUDGET).await;
    // The proxy writes Forwarded and passes the client's X-Forwarded-For through untouched.
    let forged = |n: u8| format!("198.51.100.{n}");
    let mut statuses = Vec::new();
    for n in 1..=6 {
        let headers = [("forwarded", "for=203.0.113.50"), ("x-forwarded-for", &forged(n))];
        statuses.push(poll_handshake(&app, "", &headers).await.err().unwrap_or(200));
    }
    assert_eq!(statuses, [200, 200, 429, 429, 429, 429], "the forgery chose the client's address");
    // The forged addresses were never charged: each still has its own budget.
    assert_eq!(poll_handshake(&app, "", &[("x-forwarded-for", &forged(1))]).await, Ok(()));
    // And a client the proxy names differently has its own budget, forgery or not.
    let other = [("forwarded", "for=\"[2001:db8::50]:4711\""), ("x-forwarded-for", "203.0.113.50")];
    assert_eq!(poll_handshake(&app, "", &other).await, Ok(()));
}
