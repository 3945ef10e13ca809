//! REST-triggered events reach exactly the right rooms, once, in order.

use rust_socketio::TransportType;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn every_event_type_reaches_its_rooms_exactly_once_and_nobody_else() {
    let app = spawn_app().await;
    let mut user = connect_user(&app, "u1").await;
    let mut vendor = connect_vendor(&app, "vendor-owner", "v1").await;
    let mut other_user = connect_user(&app, "u2").await;
    let mut other_vendor = connect_vendor(&app, "other-owner", "v2").await;

    for event_type in ALL_TYPES {
        let (status, answer) = app.post_event(event_body(event_type, "u1", "v1")).await;
        assert_eq!(status, 202, "{event_type}: {answer}");
        assert_eq!(answer["type"], event_type);
        let to_user = !event_type.starts_with("service:");
        let expected_rooms = if to_user { json!(["user:u1", "vendor:v1"]) } else { json!(["vendor:v1"]) };
        assert_eq!(answer["rooms"], expected_rooms, "{event_type}");

        let got = vendor.expect_event(event_type).await;
        assert_eq!(got["id"], answer["id"]);
        if to_user {
            let got = user.expect_event(event_type).await;
            assert_eq!(got["type"], event_type);
        }
        tokio::join!(
            user.expect_nothing(),
            vendor.expect_nothing(),
            other_user.expect_nothing(),
            other_vendor.expect_nothing()
        );
    }
}

#[tokio::test]
async fn the_envelope_carries_the_contract_fields() {
    let app = spawn_app().await;
    let mut user = connect_user(&app, "u1").await;
    let (status, answer) = app
        .post_event(json!({
            "type": "booking:status_changed",
            "occurredAt": "2026-11-25T10:00:00Z",
            "actor": { "id": "v-owner", "role": "vendor" },
            "booking": { "id": "b1", "userId": "u1", "vendorId": "v1", "status": "confirmed", "notes": { "a": [1, 2] } },
            "previousStatus": "pending"
        }))
        .await;
    assert_eq!(status, 202);
    let envelope = without_offsets(user.expect_event("booking:status_changed").await, &["user:u1", "vendor:v1"]);
    assert_eq!(
        envelope,
        json!({
            "id": answer["id"], "type": "booking:status_changed", "occurredAt": "2026-11-25T10:00:00Z",
            "actor": { "id": "v-owner", "role": "vendor" },
            "booking": { "id": "b1", "userId": "u1", "vendorId": "v1", "status": "confirmed", "notes": { "a": [1, 2] } },
            "previousStatus": "pending"
        })
    );
}

#[tokio::test]
async fn the_server_stamps_id_and_time_when_not_given() {
    let app = spawn_app().await;
    let mut user = connect_user(&app, "u1").await;
    app.post_event(
        json!({ "type": "payment:failed", "payment": { "id": "p1", "userId": "u1" }, "reason": "card declined" }),
    )
    .await;
    let envelope = user.expect_event("payment:failed").await;
    assert!(envelope["id"].as_str().is_some_and(|id| id.len() >= 16), "{envelope}");
    let at = envelope["occurredAt"].as_str().expect("occurredAt");
    assert!(time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).is_ok(), "{at}");
    assert_eq!(envelope["reason"], "card declined");
    assert!(envelope.get("actor").is_none());
}

#[tokio::test]
async fn a_payment_without_vendor_reaches_the_user_only() {
    let app = spawn_app().await;
    let mut user = connect_user(&app, "u1").await;
    let mut vendor = connect_vendor(&app, "owner", "v1").await;
    let (status, answer) =
        app.post_event(json!({ "type": "payment:completed", "payment": { "id": "p1", "userId": "u1" } })).await;
    assert_eq!((status, answer["rooms"].clone()), (202, json!(["user:u1"])));
    user.expect_event("payment:completed").await;
    vendor.expect_nothing().await;
}

#[tokio::test]
async fn a_socket_in_two_target_rooms_receives_the_event_once() {
    let app = spawn_app().await;
    // A vendor whose user id is the booking's user: in user:u1 and vendor:v1.
    let mut both = connect_vendor(&app, "u1", "v1").await;
    app.post_event(event_body("booking:created", "u1", "v1")).await;
    both.expect_event("booking:created").await;
    both.expect_nothing().await;
}

#[tokio::test]
async fn every_device_of_a_user_receives_the_event() {
    let app = spawn_app().await;
    let mut phone = connect_user(&app, "u1").await;
    let mut laptop = connect_with(&app, TokenAt::Query(user_token("u1")), TransportType::Polling).await.unwrap();
    app.post_event(event_body("booking:cancelled", "u1", "v1")).await;
    phone.expect_event("booking:cancelled").await;
    laptop.expect_event("booking:cancelled").await;
    tokio::join!(phone.expect_nothing(), laptop.expect_nothing());
}

#[tokio::test]
async fn events_reach_each_socket_in_the_order_they_were_accepted() {
    let app = spawn_app().await;
    let mut user = connect_user(&app, "u1").await;
    let mut ids = Vec::new();
    for i in 0..30 {
        let mut body = event_body("booking:status_changed", "u1", "v1");
        body["booking"]["status"] = json!(format!("step-{i}"));
        let (status, answer) = app.post_event(body).await;
        assert_eq!(status, 202);
        ids.push(answer["id"].clone());
    }
    for id in ids {
        assert_eq!(user.expect_event("booking:status_changed").await["id"], id);
    }
    user.expect_nothing().await;
}

#[tokio::test]
async fn long_polling_clients_receive_events() {
    let app = spawn_app().await;
    let mut user = connect_with(&app, TokenAt::Auth(user_token("u1")), TransportType::Polling).await.unwrap();
    app.post_event(event_body("booking:created", "u1", "v1")).await;
    user.expect_event("booking:created").await;
    user.expect_nothing().await;
}
