//! Operations metrics on `/metrics`: the process's CPU, memory and descriptors under the
//! standard names, the build's version, the webhook outbox's depth, and the history's
//! round trips to Redis.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::StatusCode;

use crate::helpers::*;
use crate::hooks::SECRET;
use crate::raw::{Binary, RawSocket};
use crate::redis_server::RedisServer;

async fn scrape(app: &TestApp) -> String {
    let res = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.text().await.unwrap()
}

/// The value of the series written exactly `series` (name and labels), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

fn must(text: &str, series: &str) -> f64 {
    value(text, series).unwrap_or_else(|| panic!("no `{series}` in:\n{text}"))
}

#[tokio::test]
async fn the_process_and_the_build_are_described_under_the_standard_names_with_sane_values() {
    // The binary in its own process: in this one, other tests open and close descriptors.
    let server = Binary::start(&[]).await;
    let text = server.metrics().await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();

    assert!(must(&text, "process_cpu_seconds_total") > 0.0, "{text}");
    let rss = must(&text, "process_resident_memory_bytes");
    assert!(rss > 1_000_000.0 && rss < 1e10, "{rss}");
    // What /proc says of the same process a moment later, within 25 %.
    let now_rss = (server.rss_kib() * 1024) as f64;
    assert!((rss - now_rss).abs() < now_rss / 4.0, "{rss} against {now_rss}");
    let open = must(&text, "process_open_fds");
    assert!(open > 0.0);
    assert!(must(&text, "process_max_fds") >= open);
    let started = must(&text, "process_start_time_seconds");
    assert!(started <= now + 1.0 && started > now - 60.0, "started {started}, now {now}");
    assert!(must(&text, "process_threads") >= 1.0);

    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(must(&text, &format!("fixrx_build_info{{version=\"{version}\"}}")), 1.0);
    assert_eq!(text.lines().filter(|l| l.starts_with("fixrx_build_info")).count(), 1);
    assert_eq!(must(&text, "fixrx_webhook_outbox"), 0.0);
    // `fixrx_delivery_disconnects_total{reason}` appears with its first disconnect: see
    // tests/api/recovery.rs (`queue_full`) and attack_history.rs (`history_gap`).
    // One exposition: two registries, one end marker, and it is the last line.
    assert_eq!(text.matches("# EOF").count(), 1);
    assert!(text.ends_with("# EOF\n"));
    // Without Redis there are no round trips to time.
    assert!(!text.contains("fixrx_redis_round_trip_seconds"));

    // The descriptors follow the sockets, and the CPU counter only grows.
    let mut held = Vec::new();
    for i in 0..20 {
        held.push(RawSocket::connect(server.addr, &user_token(&format!("fds-{i}"))).await);
    }
    let later = server.metrics().await;
    assert!(must(&later, "process_open_fds") >= open + 20.0, "{open} -> {later}");
    assert!(must(&later, "process_cpu_seconds_total") >= must(&text, "process_cpu_seconds_total"));
}

/// A webhook receiver that answers 503 until `up` is set, then 204.
async fn flaky_receiver(up: Arc<AtomicBool>) -> String {
    let app =
        axum::Router::new().route(
            "/hooks",
            axum::routing::post(move || {
                let up = up.clone();
                async move {
                    if up.load(Ordering::Acquire) { StatusCode::NO_CONTENT } else { StatusCode::SERVICE_UNAVAILABLE }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

async fn wait_for_metric(app: &TestApp, series: &str, within: Duration, ok: impl Fn(f64) -> bool) -> f64 {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let v = value(&scrape(app).await, series).unwrap_or(0.0);
        if ok(v) {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "{series} stayed at {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_webhook_outbox_depth_rises_while_the_receiver_is_down_and_falls_back_after() {
    let up = Arc::new(AtomicBool::new(false));
    let url = flaky_receiver(up.clone()).await;
    let app = spawn_app_with(&[("WEBHOOK_URL", &url), ("WEBHOOK_SECRET", SECRET)]).await;
    let _a = connect_user(&app, "outbox-a").await;
    let _b = connect_user(&app, "outbox-b").await;
    // Two `presence.online` transitions, refused: both wait in the outbox.
    wait_for_metric(&app, "fixrx_webhook_outbox", WAIT, |v| v == 2.0).await;
    wait_for_metric(&app, "fixrx_webhooks_total{outcome=\"failed\"}", WAIT, |v| v >= 2.0).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(must(&scrape(&app).await, "fixrx_webhook_outbox"), 2.0, "nothing delivered, nothing given up");

    up.store(true, Ordering::Release);
    // The next retry (at most a few seconds of backoff away) delivers both.
    wait_for_metric(&app, "fixrx_webhook_outbox", Duration::from_secs(10), |v| v == 0.0).await;
    assert_eq!(must(&scrape(&app).await, "fixrx_webhooks_total{outcome=\"sent\"}"), 2.0);
}

#[tokio::test]
async fn with_redis_every_instance_reports_the_shared_outbox_depth() {
    let redis = RedisServer::start();
    let up = Arc::new(AtomicBool::new(false));
    let url = flaky_receiver(up.clone()).await;
    let vars = [("REDIS_URL", redis.url()), ("WEBHOOK_URL", url), ("WEBHOOK_SECRET", SECRET.to_owned())];
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (a, b) = (spawn_node(&vars).await, spawn_node(&vars).await);
    let _on_a = connect_user(&a, "shared-outbox-a").await;
    let _on_b = connect_user(&b, "shared-outbox-b").await;
    // One outbox for both; whichever instance holds the lease is failing to send it.
    for node in [&a, &b] {
        wait_for_metric(node, "fixrx_webhook_outbox", WAIT, |v| v == 2.0).await;
    }
    up.store(true, Ordering::Release);
    for node in [&a, &b] {
        wait_for_metric(node, "fixrx_webhook_outbox", Duration::from_secs(10), |v| v == 0.0).await;
    }
    a.stop().await;
    b.stop().await;
}

/// The `_count` of `fixrx_redis_round_trip_seconds` for one operation.
fn round_trips(text: &str, op: &str) -> f64 {
    value(text, &format!("fixrx_redis_round_trip_seconds_count{{op=\"{op}\"}}")).unwrap_or(0.0)
}

#[tokio::test]
async fn the_redis_round_trip_histogram_counts_the_history_appends_and_reads() {
    let redis = RedisServer::start();
    let app = spawn_node(&[("REDIS_URL", &redis.url())]).await;
    let mut listener = connect_user(&app, "rt-user").await;
    let appends = round_trips(&scrape(&app).await, "append");

    for _ in 0..3 {
        let (status, answer) = app.post_event(event_body("booking:created", "rt-user", "rt-vendor")).await;
        assert_eq!(status, 202, "{answer}");
    }
    let batch = serde_json::json!({ "events": [event_body("booking:created", "rt-user", "rt-vendor")] });
    let (status, answer) = app.post("/api/v1/events/batch", batch).await;
    assert_eq!(status, 202, "{answer}");
    let mut offsets = serde_json::Value::Null;
    for _ in 0..4 {
        offsets = listener.expect_event("booking:created").await["offsets"].clone();
    }
    let after = scrape(&app).await;
    let count = round_trips(&after, "append");
    assert!(count >= appends + 4.0, "{appends} -> {count}:\n{after}");
    let sum = must(&after, "fixrx_redis_round_trip_seconds_sum{op=\"append\"}");
    assert!(sum > 0.0 && sum < count * 2.5, "{sum}");
    let inf = after
        .lines()
        .find(|l| {
            l.starts_with("fixrx_redis_round_trip_seconds_bucket{")
                && l.contains("op=\"append\"")
                && l.contains("le=\"+Inf\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no +Inf bucket in {after}"));
    assert_eq!(inf, count);

    // A socket that comes back with its offsets is recovered from a snapshot of its rooms.
    let snapshots = round_trips(&after, "snapshot");
    let auth = serde_json::json!({ "token": user_token("rt-user"), "offsets": offsets });
    let mut back = connect(&app, TokenAt::AuthObject(auth)).await.expect("reconnects");
    back.expect_event("recovery").await;
    let later = scrape(&app).await;
    assert!(round_trips(&later, "snapshot") > snapshots, "{later}");
    app.stop().await;
}
