//! What an idle connection holds must not depend on how the server is built. The test
//! binary is built with the whole workspace's features (other members turn on axum's
//! `original-uri`, under which axum's router copies each request's URI); if any copy of
//! the opening request's head were a slice of hyper's read buffer, every session would
//! pin that 8-16 KiB buffer for its whole life. This is a regression guard with a wide
//! margin, not a benchmark: `docs/benchmarks.md` has the measured figures.

use std::time::Duration;

use crate::helpers::*;
use crate::raw::{Binary, RawSocket};

/// Sockets held for the measurement.
const SOCKETS: u64 = 1_000;
/// Bytes per idle connection above which the read buffer is taken to be pinned again
/// (measured: about 21 KB without the pin, 29 KB with it).
const PINNED: u64 = 25_000;

/// Bytes of RSS each of [`SOCKETS`] idle connections adds, each opened with `headers`.
async fn per_idle_connection(headers: &[(&'static str, &str)]) -> u64 {
    let server = Binary::start(&[("HANDSHAKES_PER_IP_PER_SEC", "0"), ("MAX_CONNECTIONS_PER_IP", "0")]).await;
    // A few first, so the runtime's and allocator's one-time growth is not counted.
    let mut held = Vec::new();
    for i in 0..50 {
        held.push(RawSocket::connect_with(server.addr, &user_token(&format!("warm{i}")), headers).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = server.rss_kib();
    for i in 0..SOCKETS {
        held.push(RawSocket::connect_with(server.addr, &user_token(&format!("idle{i}")), headers).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = server.rss_kib();
    let per_connection = after.saturating_sub(before) * 1024 / SOCKETS;
    eprintln!("idle connections ({headers:?}): RSS {before} -> {after} KiB, {per_connection} bytes each");
    assert!(per_connection > 0, "the sockets are really held");
    drop(held);
    per_connection
}

#[tokio::test]
async fn an_idle_connection_does_not_hold_on_to_its_opening_request_s_read_buffer() {
    let per_connection = per_idle_connection(&[]).await;
    assert!(
        per_connection < PINNED,
        "{per_connection} bytes per idle connection: the opening request's read buffer is pinned again \
         (see `net::head::detach` in src/net/head.rs and the layer order in `app::build`)"
    );
}

#[tokio::test]
async fn a_request_id_sent_with_the_opening_request_is_not_kept_with_the_session() {
    // Against a baseline measured alike: copied into the request's extensions (as
    // tower-http's SetRequestIdLayer does), a sent id added about 4.8 KB per connection.
    let without = per_idle_connection(&[]).await;
    let with = per_idle_connection(&[("x-request-id", "sent-by-the-client-0123456789")]).await;
    assert!(
        with < without + 2_000,
        "{with} bytes per idle connection with an X-Request-Id, {without} without: the id pins the read \
         buffer (see src/http/request_id.rs: nothing of it may go into the request's extensions)"
    );
}
