//! Attacks by one ordinary user: many sockets, slow readers, shared chat rate, connect races.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::helpers::*;
use crate::raw::*;

const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// A chat message of 4,000 control characters to vendor `v1`: 24 KB once escaped.
fn large_chat(ack: Option<u32>) -> String {
    let text = "\\u0001".repeat(4000);
    let id = ack.map(|n| n.to_string()).unwrap_or_default();
    format!("42{id}[\"chat:send\",{{\"to\":{{\"type\":\"vendor\",\"id\":\"v1\"}},\"text\":\"{text}\"}}]")
}

fn small_chat(ack: u32) -> String {
    format!("42{ack}[\"chat:send\",{{\"to\":{{\"type\":\"vendor\",\"id\":\"v1\"}},\"text\":\"hi {ack}\"}}]")
}

/// Opens a session and sends CONNECT; returns the socket and the server's answer.
async fn try_connect(addr: SocketAddr, token: &str) -> (RawSocket, String) {
    let mut raw = RawSocket::open(addr).await;
    raw.send_text(&format!("40{{\"token\":\"{token}\"}}")).await;
    let answer = raw.next_text().await.unwrap_or_default();
    (raw, answer)
}

/// Polls `/metrics` until `name{labels}` reaches `at_least`, or `WAIT` passes.
async fn metric_reaches(server: &Binary, name: &str, labels: &[&str], at_least: f64) -> f64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let value = server.metric(name, labels).await;
        if value >= at_least || Instant::now() > deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A 64 KiB byte budget, rates out of the way, and a small history.
const SMALL_BUDGET: [(&str, &str); 5] = [
    ("SOCKET_BUFFER_BYTES", "65536"),
    ("SOCKET_RATE_LIMIT", "1000"),
    ("SOCKET_RATE_BURST", "1000"),
    ("HISTORY_SIZE", "5"),
    ("HISTORY_MAX_BYTES", "1048576"),
];

#[tokio::test]
async fn sockets_that_stop_reading_are_cut_off_at_their_byte_budget_and_recover_on_reconnect() {
    const NON_READERS: usize = 4;
    const SENDERS: usize = 10;
    const PER_SENDER: usize = 100;
    let server = Binary::start(&SMALL_BUDGET).await;
    let mut neighbour = bystander(&server.app).await;
    // A vendor's staff whose sockets never read again, and users writing to the vendor.
    let mut slow = Vec::new();
    for i in 0..NON_READERS {
        slow.push(RawSocket::connect(server.addr, &vendor_token(&format!("staff-{i}"), "v1")).await);
    }
    let mut senders = Vec::new();
    for i in 0..SENDERS {
        senders.push(RawSocket::connect(server.addr, &user_token(&format!("sender-{i}"))).await);
    }
    // Served once, and /metrics read once, before counting: their own series are there.
    still_served(&server.app, &mut neighbour).await;
    server.metrics().await;
    let metrics_before = server.metrics().await.len();
    let baseline = server.rss_kib();

    let message = large_chat(None);
    let mut flood = JoinSet::new();
    for mut sender in senders.drain(..) {
        let message = message.clone();
        flood.spawn(async move {
            for _ in 0..PER_SENDER {
                sender.send_text(&message).await;
            }
            // A last, small message with an ack: once it is answered the flood was handled.
            sender.send_text(&small_chat(1)).await;
            while let Some(frame) = sender.next_text().await {
                if frame.starts_with("431") {
                    break;
                }
            }
            sender
        });
    }
    while let Some(sender) = flood.join_next().await {
        senders.push(sender.expect("sender"));
    }
    still_served(&server.app, &mut neighbour).await;

    let cut =
        metric_reaches(&server, "fixrx_delivery_disconnects_total", &["reason=\"buffer_bytes\""], NON_READERS as f64)
            .await;
    for (i, raw) in slow.iter_mut().enumerate() {
        assert_eq!(raw.fate(CLOSE_WAIT).await, Fate::Closed, "non-reader {i} still connected");
    }
    let peak = server.peak_rss_kib();
    let metrics_after = server.metrics().await.len();
    eprintln!(
        "byte budget: {cut} sockets cut for buffer_bytes; RSS baseline {baseline} KiB, peak {peak} KiB (+{} KiB); /metrics {metrics_before} -> {metrics_after} bytes",
        peak.saturating_sub(baseline)
    );
    assert!(cut >= NON_READERS as f64, "{cut} sockets cut for their byte budget");
    // 24 MB per non-reader were sent its way; at most 64 KiB each may be held.
    assert!(peak < baseline + 12 * 1024, "peak RSS {peak} KiB from a baseline of {baseline} KiB");
    assert!(metrics_after < metrics_before + 512, "/metrics grew from {metrics_before} to {metrics_after} bytes");

    still_served(&server.app, &mut neighbour).await;
    // Reconnecting is all it takes: the same staff member is served again.
    let mut back = RawSocket::connect(server.addr, &vendor_token("staff-0", "v1")).await;
    senders[0].send_text(&small_chat(7)).await;
    let delivered = back.next_text().await.expect("a chat message after reconnecting");
    assert!(delivered.starts_with("42[\"chat:message\"") && delivered.contains("\"hi 7\""), "{delivered:.200}");
    assert!(matches!(back.fate(QUIET).await, Fate::Open(seen) if seen.is_empty()), "more than the one message");
}

/// Like [`large_chat`], numbered: its text ends ` #<n>` (the chat's limit is 4,000 characters).
fn numbered_chat(n: usize) -> String {
    let text = "\\u0001".repeat(3990);
    format!("42[\"chat:send\",{{\"to\":{{\"type\":\"vendor\",\"id\":\"v1\"}},\"text\":\"{text} #{n}\"}}]")
}

#[tokio::test]
async fn a_socket_that_keeps_reading_is_never_cut_however_much_it_is_sent() {
    // At least 50 messages of 24 KB (1.2 MB, 18 times the budget), and on until the
    // non-reader beside it is cut: that takes as much more as the kernel's socket buffers
    // absorb (about 4 MB here; up to 1,000 messages, 24 MB, are sent), all within one
    // heartbeat window.
    const AT_LEAST: usize = 50;
    const AT_MOST: usize = 1_000;
    let server = Binary::start(&SMALL_BUDGET).await;
    let mut reader = RawSocket::connect(server.addr, &vendor_token("reader", "v1")).await;
    let mut non_reader = RawSocket::connect(server.addr, &vendor_token("non-reader", "v1")).await;
    let mut sender = RawSocket::connect(server.addr, &user_token("sender")).await;

    // The reader reads as any client does, and checks that each message comes, in order,
    // until the last, small one.
    let (count, mut received) = tokio::sync::watch::channel(0usize);
    let reading = tokio::spawn(async move {
        while let Some(frame) = reader.next_text().await {
            if !frame.starts_with("42[\"chat:message\"") {
                continue;
            }
            if frame.contains("\"text\":\"the end\"") {
                break;
            }
            let n = *count.borrow();
            let tail = frame.get(frame.len().saturating_sub(80)..).unwrap_or_default();
            assert!(frame.contains(&format!(" #{n}\"")), "message {n} expected, got one ending {tail}");
            count.send_replace(n + 1);
        }
        reader
    });
    // Sent as fast as the reader takes them: the next as soon as it has the last.
    let mut sent = 0;
    while sent < AT_MOST {
        sender.send_text(&numbered_chat(sent)).await;
        sent += 1;
        let caught_up = tokio::time::timeout(WAIT, received.wait_for(|got| *got >= sent)).await;
        if !caught_up.is_ok_and(|r| r.is_ok()) {
            break;
        }
        if sent >= AT_LEAST
            && sent % 10 == 0
            && server.metric("fixrx_delivery_disconnects_total", &["reason=\"buffer_bytes\""]).await >= 1.0
        {
            break;
        }
    }
    sender.send_text("42[\"chat:send\",{\"to\":{\"type\":\"vendor\",\"id\":\"v1\"},\"text\":\"the end\"}]").await;
    let mut reader = tokio::time::timeout(WAIT, reading).await.expect("the reader ends").expect("the reader");
    let got = *received.borrow();
    let cut = metric_reaches(&server, "fixrx_delivery_disconnects_total", &["reason=\"buffer_bytes\""], 1.0).await;
    eprintln!("a reader that keeps up: {got} of {sent} messages of 24 KB received; {cut} sockets cut for buffer_bytes");
    assert_eq!(got, sent, "the reader was cut off (or fell behind) after {got} messages");
    assert!(sent >= AT_LEAST);
    assert_eq!(
        non_reader.fate(CLOSE_WAIT).await,
        Fate::Closed,
        "the socket beside it that never read is still connected"
    );
    assert_eq!(cut, 1.0, "only the non-reader is cut");
    assert!(reader.ping().await.is_some_and(|ack| ack.starts_with("431")), "the reader is still connected");
}

#[tokio::test]
async fn one_user_gets_at_most_max_sockets_per_user_even_all_at_once() {
    let server = Binary::start(&[("MAX_SOCKETS_PER_USER", "100"), ("HANDSHAKE_BURST_PER_IP", "1000")]).await;
    let mut neighbour = bystander(&server.app).await;
    let token = user_token("many");
    let mut attempts = JoinSet::new();
    for _ in 0..120 {
        let token = token.clone();
        let addr = server.addr;
        attempts.spawn(async move { try_connect(addr, &token).await });
    }
    let (mut connected, mut refused) = (Vec::new(), Vec::new());
    while let Some(attempt) = attempts.join_next().await {
        let (raw, answer) = attempt.expect("attempt");
        if answer.starts_with("40{\"sid\"") {
            connected.push(raw);
        } else {
            refused.push(answer);
        }
    }
    let counted = server.metric("fixrx_user_limits_total", &["reason=\"max_sockets_per_user\""]).await;
    eprintln!("120 sockets at once: {} connected, {} refused ({counted} counted)", connected.len(), refused.len());
    assert_eq!(connected.len(), 100);
    assert_eq!(refused.len(), 20);
    for answer in &refused {
        assert_eq!(answer, "44{\"message\":\"too_many_sockets: at most 100 sockets per user\"}");
    }
    assert_eq!(counted, 20.0);

    // Another user is not affected, and the cap holds: the 101st is still refused.
    RawSocket::connect(server.addr, &user_token("someone-else")).await;
    let (_, answer) = try_connect(server.addr, &token).await;
    assert!(answer.starts_with("44{\"message\":\"too_many_sockets"), "{answer}");

    // Sockets that close give their places back.
    connected.truncate(90);
    let deadline = Instant::now() + WAIT;
    let mut accepted = None;
    while accepted.is_none() && Instant::now() < deadline {
        let (raw, answer) = try_connect(server.addr, &token).await;
        if answer.starts_with("40{\"sid\"") {
            accepted = Some(raw);
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert!(accepted.is_some(), "no place given back after 10 sockets closed");
    still_served(&server.app, &mut neighbour).await;
}

/// Sends `per_socket` chat messages on `socket` as fast as it can, then counts the accepted acks.
async fn chat_flat_out(mut socket: RawSocket, per_socket: u32) -> usize {
    for n in 1..=per_socket {
        socket.send_text(&small_chat(n)).await;
    }
    let (mut acks, mut accepted) = (0, 0);
    while acks < per_socket {
        let Some(frame) = socket.next_text().await else { break };
        if frame.starts_with("43") {
            acks += 1;
            accepted += usize::from(frame.contains("\"ok\":true"));
        }
    }
    accepted
}

#[tokio::test]
async fn ten_sockets_of_one_user_share_one_chat_rate() {
    let server = Binary::start(&[
        ("SOCKET_RATE_LIMIT", "5"),
        ("SOCKET_RATE_BURST", "5"),
        ("SOCKET_FLOOD_DISCONNECT_MS", "60000"),
    ])
    .await;
    let mut neighbour = bystander(&server.app).await;
    let mut sockets = Vec::new();
    for _ in 0..10 {
        sockets.push(RawSocket::connect(server.addr, &user_token("chatty")).await);
    }
    let started = Instant::now();
    let mut flood = JoinSet::new();
    for socket in sockets {
        flood.spawn(chat_flat_out(socket, 20));
    }
    let mut accepted = 0;
    while let Some(n) = flood.join_next().await {
        accepted += n.expect("sender");
    }
    let elapsed = started.elapsed().as_secs_f64();
    // One socket's rate: its burst, and 5 a second after it (one more for rounding).
    let allowed = 5.0 + 5.0 * elapsed + 1.0;
    eprintln!("10 sockets x 20 messages in {elapsed:.2} s: {accepted} accepted (one socket may send {allowed:.1})");
    assert!(accepted >= 1, "nothing accepted at all");
    assert!((accepted as f64) <= allowed, "{accepted} messages accepted in {elapsed:.2} s");

    // The limit is the user's: another user still chats.
    let mut other = RawSocket::connect(server.addr, &user_token("quiet")).await;
    other.send_text(&small_chat(1)).await;
    let ack = other.next_text().await.expect("ack");
    assert!(ack.starts_with("431[{\"ok\":true"), "{ack}");
    still_served(&server.app, &mut neighbour).await;
}

#[tokio::test]
async fn a_client_that_drops_right_after_connect_leaves_no_socket_behind() {
    let (url, received) = crate::hooks::receiver().await;
    let mut server = Binary::start(&[
        ("WEBHOOK_URL", &url),
        ("WEBHOOK_SECRET", crate::hooks::SECRET),
        ("PRESENCE_OFFLINE_GRACE_MS", "100"),
        ("HANDSHAKES_PER_IP_PER_SEC", "10000"),
        ("HANDSHAKE_BURST_PER_IP", "10000"),
    ])
    .await;
    let mut neighbour = bystander(&server.app).await;
    let baseline = server.metric("fixrx_connections", &[]).await;
    let token = user_token("racer");
    for _ in 0..10 {
        let mut races = JoinSet::new();
        for _ in 0..30 {
            let (addr, token) = (server.addr, token.clone());
            races.spawn(async move {
                let mut raw = RawSocket::open(addr).await;
                raw.send_text(&format!("40{{\"token\":\"{token}\"}}")).await;
                drop(raw);
            });
        }
        while races.join_next().await.is_some() {}
    }
    // Every socket that got as far as being counted must be uncounted, and the last
    // presence transition of the user must be "offline".
    let deadline = Instant::now() + WAIT;
    let (mut connections, mut last) = (f64::NAN, None);
    while Instant::now() < deadline {
        connections = server.metric("fixrx_connections", &[]).await;
        last = received.types("user:racer").last().cloned();
        if connections == baseline && last.as_deref() != Some("presence.online") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let transitions = received.types("user:racer").len();
    let mut caught = 0;
    while let Ok(message) = server.logs.try_recv() {
        caught +=
            usize::from(message.starts_with("socket dropped before") || message.starts_with("socket ended while"));
    }
    eprintln!(
        "300 connect-and-drop: connections {connections} (baseline {baseline}), {transitions} presence webhooks, last {last:?}; {caught} sockets caught mid-connect and released"
    );
    assert_eq!(connections, baseline, "sockets left counted");
    assert_ne!(last.as_deref(), Some("presence.online"), "the user stays online with no socket");
    // And stays so: nothing comes back to life.
    tokio::time::sleep(QUIET).await;
    assert_eq!(server.metric("fixrx_connections", &[]).await, baseline);
    assert_eq!(received.types("user:racer").len(), transitions);
    assert_eq!(server.app.get("/api/v1/presence/user/racer").await.1["connections"], 0);
    still_served(&server.app, &mut neighbour).await;
}
