//! Per-socket rate limits, flood disconnects, and malformed client payloads.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn the_default_limit_is_a_burst_of_40() {
    let app = spawn_app().await;
    let user = connect_user(&app, "u1").await;
    let started = std::time::Instant::now();
    let mut passed = 0;
    loop {
        let ack = user.ack("ping", json!({})).await;
        if ack["error"] == "rate_limited" {
            break;
        }
        assert_eq!(ack["pong"], true);
        passed += 1;
        assert!(passed <= 200, "never limited");
    }
    // The burst, plus what refilled at 20/s while the pings were in flight.
    let refilled = (started.elapsed().as_secs_f64() * 20.0).ceil() as usize;
    assert!((40..=40 + refilled).contains(&passed), "passed {passed}, refilled {refilled}");
}

#[tokio::test]
async fn over_the_limit_events_are_refused_then_accepted_again_after_the_window() {
    let app = spawn_app_with(&[("SOCKET_RATE_LIMIT", "5"), ("SOCKET_RATE_BURST", "5")]).await;
    let user = connect_user(&app, "u1").await;
    for _ in 0..5 {
        assert_eq!(user.ack("ping", json!({})).await["pong"], true);
    }
    let refused = user.ack("ping", json!({})).await;
    assert_eq!(refused, json!({ "ok": false, "error": "rate_limited", "message": refused["message"] }));
    let refused = user.ack("join", json!({ "type": "user", "id": "u1" })).await;
    assert_eq!(refused["error"], "rate_limited");
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(user.ack("ping", json!({})).await["pong"], true);
    // Other sockets have their own budget.
    let other = connect_user(&app, "u2").await;
    assert_eq!(other.ack("ping", json!({})).await["pong"], true);
}

#[tokio::test]
async fn a_socket_that_keeps_flooding_is_disconnected_and_others_are_not() {
    let app = spawn_app_with(&[
        ("SOCKET_RATE_LIMIT", "5"),
        ("SOCKET_RATE_BURST", "5"),
        ("SOCKET_FLOOD_DISCONNECT_MS", "1000"),
    ])
    .await;
    let mut flooder = connect_user(&app, "flooder").await;
    let mut neighbour = connect_user(&app, "u2").await;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        if flooder.client.emit("ping", json!({})).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    flooder.expect_disconnect().await;
    assert_eq!(app.get("/api/v1/presence/user/flooder").await.1["connections"], 0);
    assert_eq!(neighbour.ack("ping", json!({})).await["pong"], true);
    app.post_event(event_body("booking:created", "u2", "v1")).await;
    neighbour.expect_event("booking:created").await;
}

#[tokio::test]
async fn every_malformed_payload_is_answered_and_the_socket_keeps_working() {
    let app = spawn_app().await;
    let mut user = connect_user(&app, "u1").await;
    let huge = "x".repeat(100_000);
    let cases = [
        ("chat:send", json!(null)),
        ("chat:send", json!("hello")),
        ("chat:send", json!([1, 2, 3])),
        ("chat:send", json!({})),
        ("chat:send", json!({ "to": "v1", "text": "hi" })),
        ("chat:send", json!({ "to": { "type": "vendor" }, "text": "hi" })),
        ("chat:send", json!({ "to": { "type": "vendor", "id": [] }, "text": "hi" })),
        ("chat:send", json!({ "to": { "type": "vendor", "id": "v1" }, "text": { "a": 1 } })),
        ("chat:send", json!({ "to": { "type": "vendor", "id": "v1" }, "text": huge })),
        ("chat:send", json!({ "to": { "type": "vendor", "id": huge }, "text": "hi" })),
        ("chat:send", json!({ "to": { "type": "vendor", "id": "v1" }, "text": "hi", "clientMsgId": [1] })),
        ("chat:typing", json!(7)),
        ("chat:typing", json!({ "to": null })),
        ("auth:refresh", json!({})),
        ("auth:refresh", json!("token")),
        ("join", json!(true)),
        ("leave", json!({ "type": ["user"], "id": "u1" })),
    ];
    for (event, payload) in cases {
        let ack = user.ack(event, payload.clone()).await;
        assert_eq!(ack["ok"], false, "{event} {payload}");
        assert_eq!(ack["error"], "invalid_payload", "{event} {payload}: {ack}");
        assert!(ack["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert_eq!(user.ack("ping", json!({})).await["pong"], true);
    app.post_event(event_body("booking:created", "u1", "v1")).await;
    user.expect_event("booking:created").await;
}

#[tokio::test]
async fn malformed_payloads_without_an_ack_are_ignored_silently() {
    let app = spawn_app().await;
    let mut user = connect_user(&app, "u1").await;
    for event in ["chat:send", "chat:typing", "join", "leave", "auth:refresh", "ping"] {
        user.client.emit(event, json!({ "nonsense": [1, { "deep": null }] })).await.unwrap();
        user.client.emit(event, json!(12)).await.unwrap();
    }
    user.expect_nothing().await;
    assert_eq!(user.ack("ping", json!({})).await["pong"], true);
}

#[tokio::test]
async fn unknown_and_reserved_event_names_are_ignored_safely() {
    let app = spawn_app().await;
    let mut user = connect_user(&app, "u1").await;
    for event in ["nope", "booking:created", "chat:message", "connect", "error", "disconnecting", "__proto__"] {
        let ack = user.ack(event, json!({ "x": 1 })).await;
        assert_eq!(ack["error"], "unknown_event", "{event}: {ack}");
        user.client.emit(event, json!({ "x": 1 })).await.unwrap();
    }
    user.expect_nothing().await;
    assert_eq!(user.ack("ping", json!({})).await["pong"], true);
}
