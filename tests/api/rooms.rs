//! Client events: `ping`, `join`, `leave`, with acks and authorization.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn ping_is_answered_with_pong_and_server_time() {
    let app = spawn_app().await;
    let user = connect_user(&app, "u1").await;
    let ack = user.ack("ping", json!({})).await;
    assert_eq!(ack["ok"], true);
    assert_eq!(ack["pong"], true);
    let at = ack["serverTime"].as_str().expect("serverTime");
    assert!(time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).is_ok());
}

#[tokio::test]
async fn a_user_may_join_its_own_room() {
    let app = spawn_app().await;
    let user = connect_user(&app, "u1").await;
    assert_eq!(user.ack("join", json!({ "type": "user", "id": "u1" })).await, json!({ "ok": true, "room": "user:u1" }));
}

#[tokio::test]
async fn a_user_cannot_join_another_users_room_nor_receive_its_events() {
    let app = spawn_app().await;
    let mut user = connect_user(&app, "u1").await;
    let ack = user.ack("join", json!({ "type": "user", "id": "u2" })).await;
    assert_eq!(ack["ok"], false);
    assert_eq!(ack["error"], "forbidden");
    let ack = user.ack("join", json!({ "type": "vendor", "id": "v1" })).await;
    assert_eq!(ack["error"], "forbidden");
    app.post_event(event_body("booking:created", "u2", "v1")).await;
    user.expect_nothing().await;
}

#[tokio::test]
async fn a_vendor_may_join_its_vendor_room_but_not_another() {
    let app = spawn_app().await;
    let vendor = connect_vendor(&app, "owner", "v1").await;
    assert_eq!(vendor.ack("join", json!({ "type": "vendor", "id": "v1" })).await["ok"], true);
    assert_eq!(vendor.ack("join", json!({ "type": "user", "id": "owner" })).await["ok"], true);
    assert_eq!(vendor.ack("join", json!({ "type": "vendor", "id": "v2" })).await["error"], "forbidden");
}

#[tokio::test]
async fn an_admin_may_join_any_room_and_then_receives_its_events() {
    let app = spawn_app().await;
    let mut admin = connect(&app, TokenAt::Auth(token(json!({ "sub": "root", "role": "admin" })))).await.unwrap();
    assert_eq!(
        admin.ack("join", json!({ "type": "vendor", "id": "v9" })).await,
        json!({ "ok": true, "room": "vendor:v9" })
    );
    app.post_event(event_body("service:updated", "u1", "v9")).await;
    admin.expect_event("service:updated").await;
}

#[tokio::test]
async fn after_leaving_a_room_its_events_no_longer_arrive() {
    let app = spawn_app().await;
    let mut user = connect_user(&app, "u1").await;
    assert_eq!(
        user.ack("leave", json!({ "type": "user", "id": "u1" })).await,
        json!({ "ok": true, "room": "user:u1" })
    );
    app.post_event(event_body("booking:created", "u1", "v1")).await;
    user.expect_nothing().await;
    // Joining back restores delivery.
    assert_eq!(user.ack("join", json!({ "type": "user", "id": "u1" })).await["ok"], true);
    app.post_event(event_body("booking:created", "u1", "v1")).await;
    user.expect_event("booking:created").await;
}

#[tokio::test]
async fn leaving_a_room_one_is_not_in_is_a_no_op() {
    let app = spawn_app().await;
    let user = connect_user(&app, "u1").await;
    assert_eq!(
        user.ack("leave", json!({ "type": "vendor", "id": "v5" })).await,
        json!({ "ok": true, "room": "vendor:v5" })
    );
}

#[tokio::test]
async fn malformed_join_and_leave_payloads_are_answered_and_the_socket_keeps_working() {
    let app = spawn_app().await;
    let mut user = connect_user(&app, "u1").await;
    for payload in [
        json!("user:u1"),
        json!(42),
        json!(null),
        json!([]),
        json!({}),
        json!({ "type": "user" }),
        json!({ "type": "room", "id": "u1" }),
        json!({ "type": "user", "id": "" }),
        json!({ "type": "user", "id": { "$ne": 1 } }),
        json!({ "type": "user", "id": "x".repeat(10_000) }),
    ] {
        for event in ["join", "leave"] {
            let ack = user.ack(event, payload.clone()).await;
            assert_eq!(ack["ok"], false, "{event} {payload}: {ack}");
            assert_eq!(ack["error"], "invalid_payload", "{event} {payload}: {ack}");
            assert!(ack["message"].is_string());
        }
    }
    assert_eq!(user.ack("ping", json!(null)).await["pong"], true);
    app.post_event(event_body("booking:created", "u1", "v1")).await;
    user.expect_event("booking:created").await;
}

#[tokio::test]
async fn an_event_sent_right_after_connect_is_answered() {
    let app = spawn_app().await;
    // The client sends at once when it sees the CONNECT ack: handlers must already be there.
    for i in 0..50 {
        let mut raw = crate::raw::RawSocket::connect(app.addr, &user_token(&format!("fast-{i}"))).await;
        let ack = raw.ping().await;
        assert!(ack.is_some_and(|a| a.contains("\"pong\":true")), "connection {i}: no answer to an immediate ping");
    }
}
