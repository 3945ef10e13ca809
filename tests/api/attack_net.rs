//! Attacks at the network edge: idle and trickling connections, session spellings, IPv6 hosts, forged proxies.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;
use crate::raw::*;

const SLOTS: usize = 40;
const HEADER: Duration = Duration::from_millis(1000);
const IDLE: Duration = Duration::from_millis(1500);
/// Every slot of a small server, and limits short enough for an attack to play out in seconds.
const LIMITS: [(&str, &str); 3] =
    [("MAX_CONNECTIONS", "40"), ("HTTP_HEADER_TIMEOUT_MS", "1000"), ("HTTP_IDLE_TIMEOUT_MS", "1500")];
/// How late past its limit a connection may still be closed (a loaded test machine).
const SLACK: Duration = Duration::from_millis(2000);
/// What an attack may leave behind in resident memory once it is over.
const FEW_MB_KIB: u64 = 4 * 1024;
const TIMEOUTS: &str = "fixrx_connection_timeouts_total";

/// How long after `since` the server closed `tcp` (end of stream or an error), reading
/// and discarding what comes; `None` if it was still open after `wait`.
async fn closed_after(tcp: &mut TcpStream, since: Instant, wait: Duration) -> Option<Duration> {
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(wait, async {
        while let Ok(n) = tcp.read(&mut buf).await {
            if n == 0 {
                return;
            }
        }
    })
    .await;
    closed.ok().map(|()| since.elapsed())
}

/// `GET /health` on a connection of its own: the status, or `None` when refused.
async fn health_on_a_new_connection(addr: SocketAddr) -> Option<u16> {
    let mut tcp = TcpStream::connect(addr).await.ok()?;
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.ok()?;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// One `GET` on a kept-alive connection, read to the end of its body: the status and
/// body, or `None` if the connection was closed instead.
async fn get(tcp: &mut TcpStream, path: &str) -> Option<(u16, String)> {
    exchange(tcp, format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")).await
}

/// One `POST` of a text body on a kept-alive connection, as [`get`].
async fn post(tcp: &mut TcpStream, path: &str, body: &str) -> Option<(u16, String)> {
    let head = format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain;charset=UTF-8\r\n");
    exchange(tcp, format!("{head}Content-Length: {}\r\n\r\n{body}", body.len())).await
}

async fn exchange(tcp: &mut TcpStream, request: String) -> Option<(u16, String)> {
    tcp.write_all(request.as_bytes()).await.ok()?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("no content-length: {head}"));
            if seen.len() >= end + 4 + length {
                let status = head.get(9..12)?.parse().ok()?;
                return Some((status, String::from_utf8_lossy(&seen[end + 4..end + 4 + length]).into_owned()));
            }
        }
        match tokio::time::timeout(WAIT, tcp.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buf[..n]),
            _ => return None,
        }
    }
}

/// Sends a request head that never ends, one byte every 300 ms, until the server closes
/// the connection: after how long it did (`None`: not within `WAIT`), and the bytes sent.
async fn trickle(addr: SocketAddr) -> (Option<Duration>, usize) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let mut head = b"GET /health HTTP/1.1\r\nX-Slow: ".iter().copied().chain(std::iter::repeat(b'a'));
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    let (mut sent, mut buf) = (0, [0u8; 256]);
    while started.elapsed() < WAIT {
        tokio::select! {
            read = tcp.read(&mut buf) => if matches!(read, Ok(0) | Err(_)) {
                return (Some(started.elapsed()), sent);
            },
            _ = tick.tick() => {
                let byte = head.next().unwrap_or(b'a');
                if tcp.write_all(&[byte]).await.is_err() {
                    return (Some(started.elapsed()), sent);
                }
                sent += 1;
            }
        }
    }
    (None, sent)
}

/// RSS before and after, with a verdict: back within a few MB.
fn assert_memory_back(what: &str, before: u64, after: u64) {
    assert!(after < before + FEW_MB_KIB, "{what}: RSS {before} -> {after} KiB");
}

#[tokio::test]
async fn silent_connections_are_closed_at_the_header_deadline_and_free_every_slot() {
    let server = Binary::start(&LIMITS).await;
    let mut neighbour = bystander(&server.app).await;
    let counted = server.metric(TIMEOUTS, &["reason=\"header\""]).await;
    let rss = server.rss_kib();

    let opened = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..SLOTS {
        silent.push(TcpStream::connect(server.addr).await.unwrap());
    }
    // The attack works: every slot is taken (the bystander holds one), newcomers are refused.
    assert_eq!(health_on_a_new_connection(server.addr).await, None, "a slot was still free");

    let mut closes = tokio::task::JoinSet::new();
    for mut tcp in silent {
        closes.spawn(async move { closed_after(&mut tcp, opened, HEADER + SLACK).await });
    }
    let closes = closes.join_all().await;
    assert!(closes.iter().all(Option::is_some), "silent connections still open: {closes:?}");
    // Those over the limit were closed at accept; the others held a slot until the deadline.
    let held: Vec<Duration> = closes.into_iter().flatten().filter(|t| *t > HEADER / 2).collect();
    assert!(held.len() >= SLOTS - 3, "only {} connections held a slot", held.len());
    assert!(held.iter().all(|t| *t >= HEADER - Duration::from_millis(100)), "closed early: {held:?}");
    let last = held.iter().max().copied().unwrap_or_default();

    assert_eq!(health_on_a_new_connection(server.addr).await, Some(200), "/health refused after the attack");
    still_served(&server.app, &mut neighbour).await;
    let header = server.metric(TIMEOUTS, &["reason=\"header\""]).await - counted;
    let after = server.rss_kib();
    eprintln!(
        "silent connections: {} held, all closed after {:.1} s; {header} header timeouts counted; RSS {rss} -> {after} KiB",
        held.len(),
        last.as_secs_f64()
    );
    assert_eq!(header, held.len() as f64, "header timeouts counted");
    assert_memory_back("silent connections", rss, after);
}

#[tokio::test]
async fn a_trickler_is_closed_at_the_header_deadline_though_it_keeps_sending() {
    let server = Binary::start(&LIMITS).await;
    let mut neighbour = bystander(&server.app).await;
    let counted = server.metric(TIMEOUTS, &["reason=\"header\""]).await;
    let rss = server.rss_kib();

    let mut tricklers = tokio::task::JoinSet::new();
    for _ in 0..10 {
        tricklers.spawn(trickle(server.addr));
    }
    let fates = tricklers.join_all().await;
    for (closed, sent) in &fates {
        let closed = closed.unwrap_or_else(|| panic!("a trickler still sending after {WAIT:?}: {fates:?}"));
        assert!(closed >= HEADER - Duration::from_millis(100), "closed before the deadline: {fates:?}");
        assert!(closed <= HEADER + SLACK, "closed late: {fates:?}");
        assert!(*sent >= 3, "the trickler sent {sent} bytes only: {fates:?}");
    }

    still_served(&server.app, &mut neighbour).await;
    let header = server.metric(TIMEOUTS, &["reason=\"header\""]).await - counted;
    let after = server.rss_kib();
    let slowest = fates.iter().filter_map(|f| f.0).max().unwrap_or_default();
    eprintln!(
        "tricklers: {} sending a byte every 300 ms, all closed after {:.1} s; {header} header timeouts counted; RSS {rss} -> {after} KiB",
        fates.len(),
        slowest.as_secs_f64()
    );
    assert_eq!(header, fates.len() as f64, "header timeouts counted");
    assert_memory_back("tricklers", rss, after);
}

#[tokio::test]
async fn a_keep_alive_connection_idle_past_the_limit_is_closed_and_one_in_use_is_not() {
    let server = Binary::start(&LIMITS).await;
    let mut neighbour = bystander(&server.app).await;
    let counted = server.metric(TIMEOUTS, &["reason=\"idle\""]).await;
    let rss = server.rss_kib();

    // One request every 1.2 s: longer than the header limit, within the idle one.
    let addr = server.addr;
    let busy = tokio::spawn(async move {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        let mut answered = 0;
        while started.elapsed() < Duration::from_secs(6) {
            match get(&mut tcp, "/health").await {
                Some((200, _)) => answered += 1,
                other => return Err(format!("request {}: {other:?}", answered + 1)),
            }
            tokio::time::sleep(Duration::from_millis(1200)).await;
        }
        Ok(answered)
    });

    let mut quiet = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(get(&mut quiet, "/health").await.map(|(status, _)| status), Some(200));
    let answered = Instant::now();
    // Not closed before the idle limit (the header limit, shorter, does not time an idle spell)...
    let early = closed_after(&mut quiet, answered, IDLE - Duration::from_millis(300)).await;
    assert_eq!(early, None, "closed before the idle limit");
    // ...but soon after it.
    let closed = closed_after(&mut quiet, answered, IDLE + SLACK).await;
    let closed = closed.unwrap_or_else(|| panic!("still open {:?} after its last answer", IDLE + SLACK));

    let requests = busy.await.unwrap().unwrap_or_else(|e| panic!("the busy connection was cut: {e}"));
    still_served(&server.app, &mut neighbour).await;
    let idle = server.metric(TIMEOUTS, &["reason=\"idle\""]).await - counted;
    let after = server.rss_kib();
    eprintln!(
        "keep-alive: the silent one closed {:.1} s after its answer; the busy one answered {requests} requests \
         1.2 s apart on one connection; {idle} idle timeouts counted; RSS {rss} -> {after} KiB",
        closed.as_secs_f64()
    );
    assert!(requests >= 4, "{requests} requests");
    // Our own HTTP client's pooled connections may idle out too.
    assert!(idle >= 1.0, "no idle timeout counted");
    assert_memory_back("keep-alive", rss, after);
}

#[tokio::test]
async fn a_long_poll_and_an_idle_websocket_outlive_both_limits() {
    let mut vars = LIMITS.to_vec();
    // A long poll is held until the next ping: 3 s, past both limits.
    vars.push(("PING_INTERVAL_MS", "3000"));
    let server = Binary::start(&vars).await;
    let mut neighbour = bystander(&server.app).await;
    let counted = server.metric(TIMEOUTS, &["reason=\"header\""]).await;
    let rss = server.rss_kib();

    let mut ws = RawSocket::connect(server.addr, &user_token("quiet")).await;
    let mut poll = TcpStream::connect(server.addr).await.unwrap();
    let (status, open) = get(&mut poll, "/socket.io/?EIO=4&transport=polling").await.expect("handshake");
    assert_eq!(status, 200, "{open}");
    let open: serde_json::Value = serde_json::from_str(open.get(1..).unwrap_or_default()).expect("open packet");
    let sid = open["sid"].as_str().expect("sid").to_owned();
    let session = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    // The session's first ping comes at once; once it is answered, the next waits for the interval.
    assert_eq!(get(&mut poll, &session).await, Some((200, "2".to_owned())), "first ping");
    assert_eq!(post(&mut poll, &session, "3").await.map(|(status, _)| status), Some(200), "pong");

    // Beside them, a connection that sends nothing: the limits are at work meanwhile.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    let long_poll = async {
        let answer = get(&mut poll, &session).await;
        (answer, started.elapsed())
    };
    let ((answer, held), silent_closed, fate) = tokio::join!(
        long_poll,
        closed_after(&mut silent, started, HEADER + SLACK),
        ws.fate(Duration::from_millis(3500)),
    );

    assert_eq!(answer, Some((200, "2".to_owned())), "the long poll was cut after {held:?}");
    assert!(held > IDLE, "the long poll was answered after {held:?} only");
    assert!(matches!(fate, Fate::Open(_)), "the idle WebSocket was closed");
    assert!(ws.ping().await.is_some(), "the idle WebSocket stopped answering");
    let silent_closed = silent_closed.expect("the silent connection beside them is still open");
    still_served(&server.app, &mut neighbour).await;
    let header = server.metric(TIMEOUTS, &["reason=\"header\""]).await - counted;
    let after = server.rss_kib();
    eprintln!(
        "long poll answered (ping) after {:.1} s, WebSocket idle 3.5 s still answers, silent neighbour closed after \
         {:.1} s; {header} header timeouts counted; RSS {rss} -> {after} KiB",
        held.as_secs_f64(),
        silent_closed.as_secs_f64()
    );
    assert_eq!(header, 1.0, "header timeouts: the silent connection only");
    assert_memory_back("long poll", rss, after);
}

#[tokio::test]
async fn a_request_body_that_trickles_in_is_cut_at_the_header_limit_after_its_head() {
    let server = Binary::start(&LIMITS).await;
    let mut neighbour = bystander(&server.app).await;
    let counted = server.metric(TIMEOUTS, &["reason=\"body\""]).await;
    let rss = server.rss_kib();

    // A stranger needs no token for an Engine.IO session, and its long-polling POSTs read a body.
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let (status, open) = get(&mut tcp, "/socket.io/?EIO=4&transport=polling").await.expect("handshake");
    assert_eq!(status, 200, "{open}");
    let sid = open.split("\"sid\":\"").nth(1).and_then(|s| s.split('"').next()).expect("a sid").to_owned();
    let head = format!(
        "POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let (mut sent, mut buf) = (0, [0u8; 256]);
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    let closed = loop {
        if started.elapsed() > WAIT {
            break None;
        }
        tokio::select! {
            read = tcp.read(&mut buf) => if matches!(read, Ok(0) | Err(_)) { break Some(started.elapsed()) },
            _ = tick.tick() => {
                if tcp.write_all(b"4").await.is_err() {
                    break Some(started.elapsed());
                }
                sent += 1;
            }
        }
    };
    let closed = closed.unwrap_or_else(|| panic!("the body trickler was still sending after {WAIT:?} ({sent} bytes)"));
    assert!(closed >= HEADER - Duration::from_millis(100), "closed before the deadline: {closed:?}");
    assert!(closed <= HEADER + SLACK, "closed late: {closed:?}");

    still_served(&server.app, &mut neighbour).await;
    let body = server.metric(TIMEOUTS, &["reason=\"body\""]).await - counted;
    let after = server.rss_kib();
    eprintln!(
        "body trickler: {sent} body bytes in {:.1} s, then closed; {body} body timeouts counted; RSS {rss} -> {after} KiB",
        closed.as_secs_f64()
    );
    assert_eq!(body, 1.0, "body timeouts counted");
    assert_memory_back("body trickler", rss, after);
}
