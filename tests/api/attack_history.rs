//! Attacks on recovery and the in-memory log: bounded work however a client reconnects.
//!
//! A vendor room holds 5,000 events of about 1 KB; a client then reconnects in a loop
//! with a position from before the first, so every connect replays the whole room, some
//! twenty of the server's 256-event pages. Each replay must still be whole, in order and
//! once; the server's peak memory must not grow with the room; with Redis, no reply may
//! hold more than a page; a bystander stays served; `/metrics` gains no series.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::*;
use crate::raw::{Binary, RawSocket, bystander, still_served};
use crate::redis_server::RedisServer;

const EVENTS: usize = 5_000;
const BLOB: usize = 1_000;
const LOOPS: usize = 50;
/// The server's `RECOVERY_PAGE`.
const PAGE: usize = 256;
/// How much the server's peak RSS may pass its resident size before the loop: the
/// socket's queue (1,024 packets of 1 KB) and a page or two, not the room's 6 MB.
const RSS_MARGIN_KIB: u64 = 6 * 1024;
/// The attacked room: not the bystander's `vendor:v1`, whose events would join it.
/// Longest silence a replay may have on a loaded machine.
const STALL: Duration = Duration::from_secs(15);
const VENDOR: &str = "v2";
const ROOM: &str = "vendor:v2";

fn service(i: usize, blob: usize) -> Value {
    json!({ "type": "service:updated", "service": { "id": format!("s{i}"), "vendorId": VENDOR, "blob": "x".repeat(blob) } })
}

fn packet(frame: &str) -> Value {
    frame.strip_prefix("42").and_then(|p| serde_json::from_str(p).ok()).unwrap_or_else(|| panic!("{frame:.200}"))
}

/// Fills the room with `count` events of `blob` bytes; returns a position from before
/// them (that of a warm-up event, read live) and their ids, in order.
async fn fill(server: &Binary, count: usize, blob: usize) -> (String, Vec<String>) {
    let mut raw = RawSocket::connect(server.addr, &vendor_token("owner", VENDOR)).await;
    let (status, answer) = server.app.post_event(service(0, 10)).await;
    assert_eq!(status, 202, "{answer}");
    let warm = packet(&raw.next_text().await.expect("the warm-up event"));
    let position = warm[1]["offsets"][ROOM].as_str().expect("a position").to_owned();
    drop(raw);
    (position, post_many(server, count, blob).await)
}

/// Posts `count` events of `blob` bytes to the room, in batches within the body limit.
async fn post_many(server: &Binary, count: usize, blob: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(count);
    for batch in (1..=count).collect::<Vec<_>>().chunks((200_000 / (blob + 200)).clamp(1, 100)) {
        let events: Vec<Value> = batch.iter().map(|i| service(*i, blob)).collect();
        let (status, answer) = server.app.post("/api/v1/events/batch", json!({ "events": events })).await;
        assert_eq!(status, 202, "{answer:.300}");
        ids.extend(answer["events"].as_array().expect("events").iter().map(|e| e["id"].as_str().unwrap().to_owned()));
    }
    ids
}

/// Opens a socket that names the room at `position` in `auth.offsets`.
///
/// It answers the Engine.IO ping the server sends on open before connecting: a ping that
/// finds the socket's queue full closes the connection (engineioxide), and on a loaded
/// machine the heartbeat task can run after a replay filled the queue (a race the report
/// of this change describes; the test is about pages, not that).
async fn connect_from(server: &Binary, position: &str) -> RawSocket {
    let mut raw = RawSocket::open(server.addr).await;
    let ping = tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut raw.ws)).await;
    let ping = ping.ok().flatten().and_then(Result::ok).map(|m| m.to_string());
    assert_eq!(ping.as_deref(), Some("2"), "the ping sent on open");
    raw.send_text("3").await;
    let auth = json!({ "token": vendor_token("owner", VENDOR), "offsets": { ROOM: position } });
    raw.send_text(&format!("40{auth}")).await;
    let answer = raw.next_text().await.expect("CONNECT answer");
    assert!(answer.starts_with("40{\"sid\""), "{answer}");
    raw
}

/// Connects with `auth.offsets` and reads the replay: the ids before `recovery`, and
/// `recovery` itself; the connection then closes.
async fn recover(server: &Binary, position: &str) -> Result<(Vec<String>, Value), String> {
    let mut raw = connect_from(server, position).await;
    let mut ids = Vec::new();
    loop {
        let frame = match next_frame(&mut raw).await {
            Ok(frame) => frame,
            Err(why) => return Err(format!("{why} after {} replayed events", ids.len())),
        };
        let packet = packet(&frame);
        if packet[0] == "recovery" {
            return Ok((ids, packet[1].clone()));
        }
        ids.push(packet[1]["id"].as_str().expect("an id").to_owned());
    }
}

/// The next text frame (answering pings); a loaded machine can stall a replay for
/// seconds, so a long wait, and a closed connection told apart from a silent one.
async fn next_frame(raw: &mut RawSocket) -> Result<String, &'static str> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    loop {
        match tokio::time::timeout(STALL, raw.ws.next()).await {
            Err(_) => return Err("nothing for 15 s"),
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return Err("the server closed the connection"),
            Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "2" => {
                let _ = raw.ws.send(Message::text("3")).await;
            }
            Ok(Some(Ok(Message::Text(t)))) => return Ok(t.to_string()),
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// One recovery from `position` must give exactly `ids`, in order, then `recovered`.
async fn recovers_whole(server: &Binary, position: &str, ids: &[String]) {
    let (replayed, report) = match recover(server, position).await {
        Ok(got) => got,
        Err(why) => {
            let metrics = server.metrics().await;
            let told: Vec<&str> = metrics.lines().filter(|l| l.starts_with("fixrx_delivery_disconnects")).collect();
            panic!("{why}; the server counted {told:?}");
        }
    };
    assert_eq!(replayed.len(), ids.len(), "replayed {} of {}", replayed.len(), ids.len());
    assert!(replayed == ids, "the replay is every event after the position, in order, once");
    assert_eq!(report["recovered"], true, "{report}");
    assert_eq!(report["replayed"], ids.len(), "{report}");
}

/// The series `/metrics` holds: each line without its value.
fn series(metrics: &str) -> Vec<String> {
    let lines = metrics.lines().filter(|l| !l.starts_with('#'));
    lines.map(|l| l.rsplit_once(' ').map_or(l, |(s, _)| s).to_owned()).collect()
}

/// Forgets the peak RSS, so `VmHWM` measures from now on.
fn reset_peak(server: &Binary) {
    let pid = server.child.id().expect("running");
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset VmHWM");
}

/// Reconnects `LOOPS` times from `position`, checking each replay, a bystander, the
/// server's memory and `/metrics`. Returns the peak RSS over the loop, in KiB.
async fn reconnect_loop(server: &Binary, position: &str, ids: &[String]) -> u64 {
    let mut bystander = bystander(&server.app).await;
    // Every series the loop touches exists before it is counted: a recovery, a served
    // bystander, a read of /metrics.
    recovers_whole(server, position, ids).await;
    still_served(&server.app, &mut bystander).await;
    server.metrics().await;
    let before = series(&server.metrics().await);
    let length = server.metrics().await.len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    reset_peak(server);
    let baseline = server.rss_kib();
    let started = Instant::now();
    for i in 0..LOOPS {
        if i % 5 == 0 {
            // Served while a replay is under way, not only between two.
            tokio::join!(recovers_whole(server, position, ids), still_served(&server.app, &mut bystander));
        } else {
            recovers_whole(server, position, ids).await;
        }
    }
    let (peak, now) = (server.peak_rss_kib(), server.rss_kib());
    eprintln!(
        "{LOOPS} recoveries of {} events in {:?}: RSS {baseline} KiB before, {now} KiB after, peak {peak} KiB (+{} KiB)",
        ids.len(),
        started.elapsed(),
        peak.saturating_sub(baseline)
    );
    still_served(&server.app, &mut bystander).await;
    bystander.expect_nothing().await;
    let metrics = server.metrics().await;
    eprintln!("/metrics: {length} bytes before, {} after (counters only)", metrics.len());
    assert_eq!(series(&metrics), before, "the loop added or removed /metrics series");
    assert_eq!(server.metric("fixrx_delivery_disconnects_total", &[]).await, 0.0, "a recovering socket was let go");
    peak
}

/// The peak over the loop against the resident size once the room was filled.
fn bounded_peak(baseline: u64, peak: u64) {
    eprintln!("RSS once filled {baseline} KiB; peak over the loop {peak} KiB (+{} KiB)", peak.saturating_sub(baseline));
    assert!(
        peak <= baseline + RSS_MARGIN_KIB,
        "peak RSS {peak} KiB over {baseline} KiB + {RSS_MARGIN_KIB} KiB: memory grows with the replay"
    );
}

#[tokio::test]
async fn reconnecting_in_a_loop_from_an_old_position_replays_all_each_time_in_bounded_memory() {
    let server = Binary::start(&[("HISTORY_SIZE", "6000")]).await;
    let (position, ids) = fill(&server, EVENTS, BLOB).await;
    let baseline = server.rss_kib();
    let peak = reconnect_loop(&server, &position, &ids).await;
    bounded_peak(baseline, peak);
}

/// The bytes of Redis's reply to `command`, read until Redis has said nothing for a while.
fn reply_bytes(redis: &RedisServer, command: &str) -> usize {
    let mut stream = TcpStream::connect(("127.0.0.1", redis.port)).expect("redis answers");
    stream.write_all(format!("{command}\r\n").as_bytes()).expect("command sent");
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let (mut total, mut buf) = (0, vec![0u8; 64 * 1024]);
    while let Ok(n @ 1..) = stream.read(&mut buf) {
        total += n;
    }
    total
}

/// From `INFO`: the connections Redis accepted so far (this one included), and
/// `cmdstat_xrange`'s calls and microseconds per call.
fn redis_info(redis: &RedisServer) -> (u64, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", redis.port)).expect("redis answers");
    stream.write_all(b"INFO everything\r\n").expect("command sent");
    let _ = stream.set_read_timeout(Some(Duration::from_millis(300)));
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    let field = |name: &str| text.lines().find_map(|l| l.strip_prefix(name)).unwrap_or("none").trim().to_owned();
    let connections = field("total_connections_received:").parse().expect("total_connections_received");
    let xrange = field("cmdstat_xrange:").split(',').take(3).collect::<Vec<_>>().join(",");
    (connections, xrange)
}

#[tokio::test]
async fn reconnecting_in_a_loop_from_an_old_position_never_makes_redis_build_more_than_a_page() {
    let redis = RedisServer::start();
    let server = Binary::start(&[("REDIS_URL", &redis.url()), ("HISTORY_SIZE", "6000")]).await;
    let (position, ids) = fill(&server, EVENTS, BLOB).await;
    let key = format!("fixrx:{{history}}:room:{ROOM}");
    let whole = reply_bytes(&redis, &format!("XRANGE {key} - +"));
    let page = reply_bytes(&redis, &format!("XRANGE {key} - + COUNT {PAGE}"));
    // Past this, Redis drops the connection instead of sending the reply. The server's
    // command connection also carries its subscriptions (RESP3), so Redis counts it as a
    // `pubsub` client: both classes get the limit.
    let limit = page * 3 / 2;
    eprintln!("the room in one reply: {whole} bytes; a page: {page} bytes; output limit {limit} bytes");
    assert!(whole > 4 * limit, "the room must be many pages long for this test to prove anything");
    let set =
        redis.command(&format!("CONFIG SET client-output-buffer-limit \"normal {limit} 0 0 pubsub {limit} 0 0\""));
    assert_eq!(set, "+OK");
    let (connections, xrange) = redis_info(&redis);
    let baseline = server.rss_kib();
    let peak = reconnect_loop(&server, &position, &ids).await;
    let (connections_after, xrange_after) = redis_info(&redis);
    eprintln!("XRANGE {xrange} before the loop, {xrange_after} after");
    // The one new connection is the second `INFO`'s: a reply past the limit would have
    // cost the server its connection, and it reconnects on its own.
    let dropped = connections_after - connections - 1;
    eprintln!("Redis dropped the server's connection {dropped} times for too large a reply");
    assert_eq!(dropped, 0, "Redis built replies past {limit} bytes");
    bounded_peak(baseline, peak);
}

/// A replay slower than the room's trimming: pages read later find their events gone.
const TRIMMED: usize = 1_000;
const BIG: usize = 20_000;

/// A client reads its replay slowly (one event every 50 ms: never stalled, always behind)
/// while the room is written over whole. It must get a gap-free prefix and then lose
/// its connection (`history_gap`), never an event after a hole nor a `recovery` that
/// claims the room whole; back with its last position, the room is `expired`.
async fn a_replay_overtaken_by_trimming_ends_in_a_disconnect_not_a_hole(server: &Binary) {
    let (position, ids) = fill(server, TRIMMED, BIG).await;
    let mut raw = connect_from(server, &position).await;
    let (fast, mut go) = tokio::sync::oneshot::channel::<()>();
    let reader = tokio::spawn(async move {
        let mut frames = Vec::new();
        let mut slow = true;
        loop {
            if slow && go.try_recv().is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            } else {
                slow = false;
            }
            match next_frame(&mut raw).await {
                Ok(frame) => frames.push(packet(&frame)),
                Err(why) => return (frames, why),
            }
        }
    });
    post_many(server, TRIMMED, BIG).await;
    let _ = fast.send(());
    let (frames, end) = reader.await.expect("the reader");
    let got: Vec<String> = frames.iter().map(|p| p[1]["id"].as_str().unwrap_or("recovery").to_owned()).collect();
    eprintln!("a slow replay of {TRIMMED} events: {} received before {end}", got.len());
    assert!(frames.iter().all(|p| p[0] != "recovery"), "the replay finished before the trimming reached it");
    assert_eq!(end, "the server closed the connection");
    assert_eq!(got[..], ids[..got.len()], "what arrived is the room's first events, in order, without a hole");
    let gap = server.metric("fixrx_delivery_disconnects_total", &["reason=\"history_gap\""]).await;
    assert_eq!(gap, 1.0, "counted as history_gap");
    let last = frames.last().and_then(|p| p[1]["offsets"][ROOM].as_str()).unwrap_or(&position);
    let (replayed, report) = recover(server, last).await.expect("a recovery");
    assert!(replayed.is_empty(), "{} events replayed after a hole", replayed.len());
    assert_eq!(report["rooms"][ROOM], "expired", "{report}");
}

#[tokio::test]
async fn a_replay_overtaken_by_trimming_in_memory_ends_in_a_disconnect_not_a_hole() {
    let server = Binary::start(&[("HISTORY_SIZE", "1000"), ("SOCKET_BUFFER_PACKETS", "64")]).await;
    a_replay_overtaken_by_trimming_ends_in_a_disconnect_not_a_hole(&server).await;
}

#[tokio::test]
async fn a_replay_overtaken_by_trimming_in_redis_ends_in_a_disconnect_not_a_hole() {
    let redis = RedisServer::start();
    let vars = [("REDIS_URL", redis.url()), ("HISTORY_SIZE", "1000".into()), ("SOCKET_BUFFER_PACKETS", "64".into())];
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Binary::start(&vars).await;
    a_replay_overtaken_by_trimming_ends_in_a_disconnect_not_a_hole(&server).await;
}
