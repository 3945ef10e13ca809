//! Attacks through the chat hook: a flood of chat messages cannot open unbounded requests
//! to the backend, whatever the backend's speed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::*;
use crate::raw::{Binary, bystander, still_served};

/// How long the slow backend takes over each message.
const BACKEND: Duration = Duration::from_millis(1500);

/// A backend that answers every chat hook request after [`BACKEND`], and records how many
/// it held at once.
async fn slow_backend() -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let (now, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (in_flight, most) = (now.clone(), peak.clone());
    let app = axum::Router::new().route(
        "/chat",
        axum::routing::post(move || {
            let (in_flight, most) = (in_flight.clone(), most.clone());
            async move {
                let held = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(held, Ordering::SeqCst);
                tokio::time::sleep(BACKEND).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/chat", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, now, peak)
}

#[tokio::test]
async fn a_chat_flood_holds_at_most_chat_hook_concurrency_requests_and_the_rest_are_refused_at_once() {
    let (url, _, peak) = slow_backend().await;
    let server = Binary::start(&[
        ("CHAT_HOOK_URL", &url),
        ("WEBHOOK_SECRET", "attack-suite-webhook-secret-0123"),
        ("CHAT_HOOK_CONCURRENCY", "2"),
        ("CHAT_HOOK_TIMEOUT_MS", "5000"),
    ])
    .await;
    let mut neighbour = bystander(&server.app).await;
    let rss = server.rss_kib();
    let metrics = server.metrics().await.len();

    // Eight users (so no per-user rate is in play), one message each, all at once.
    let mut senders = Vec::new();
    for i in 0..8 {
        senders.push(connect_user(&server.app, &format!("flooder-{i}")).await);
    }
    let started = Instant::now();
    let acks = futures_util::future::join_all(senders.iter().map(|c| async {
        let ack = c.ack("chat:send", json!({ "to": { "type": "vendor", "id": "v1" }, "text": "hello" })).await;
        (ack, started.elapsed())
    }))
    .await;

    let refused: Vec<_> = acks.iter().filter(|(a, _)| a["error"] == "unavailable").collect();
    let accepted: Vec<_> = acks.iter().filter(|(a, _)| a["ok"] == true).collect();
    assert_eq!(peak.load(Ordering::SeqCst), 2, "the backend held more than CHAT_HOOK_CONCURRENCY requests");
    assert_eq!((accepted.len(), refused.len()), (2, 6), "acks: {acks:?}");
    for (ack, at) in &refused {
        assert!(*at < BACKEND, "refused only after {at:?}, not at once: {ack}");
    }
    for (ack, at) in &accepted {
        assert!(*at >= BACKEND, "accepted before the backend answered ({at:?}): {ack}");
    }
    // Once the backend is free again, a message goes through.
    let ack = senders[7].ack("chat:send", json!({ "to": { "type": "vendor", "id": "v1" }, "text": "again" })).await;
    assert_eq!(ack["ok"], true, "{ack}");

    still_served(&server.app, &mut neighbour).await;
    let after = server.rss_kib();
    let metrics_after = server.metrics().await.len();
    eprintln!(
        "chat hook flood: 8 at once, backend held at most {}; 2 accepted, 6 refused within {:?}; RSS {rss} -> {after} KiB; /metrics {metrics} -> {metrics_after} B",
        peak.load(Ordering::SeqCst),
        refused.iter().map(|(_, at)| *at).max().unwrap_or_default(),
    );
    assert!(after < rss + 4 * 1024, "RSS {rss} -> {after} KiB");
}
