//! The typed Rust emitters deliver exactly what the REST path delivers.

use fixrx_realtime::events::{Actor, Booking, Id, Payment, Service};
use serde_json::{Map, json};

use crate::helpers::*;

fn id(s: &str) -> Id {
    Id::new(s).unwrap()
}

#[tokio::test]
async fn typed_emitters_reach_the_same_rooms_with_the_same_envelope() {
    let app = spawn_app().await;
    let emitter = app.emitter.clone().expect("single-instance app");
    let mut user = connect_user(&app, "u1").await;
    let mut vendor = connect_vendor(&app, "owner", "v1").await;
    let mut fields = Map::new();
    fields.insert("status".into(), json!("confirmed"));
    let booking = Booking { id: id("b1"), user_id: id("u1"), vendor_id: id("v1"), fields };
    let actor = Some(Actor { id: id("owner"), role: Some("vendor".into()) });
    let emitted = emitter.booking_status_changed(booking, Some("pending".into()), actor).await.unwrap();
    assert_eq!(emitted.rooms.iter().map(|r| r.name()).collect::<Vec<_>>(), ["user:u1", "vendor:v1"]);

    let got = user.expect_event("booking:status_changed").await;
    assert_eq!(got["id"], emitted.id.as_str());
    assert_eq!(got["booking"], json!({ "id": "b1", "userId": "u1", "vendorId": "v1", "status": "confirmed" }));
    assert_eq!(got["previousStatus"], "pending");
    assert_eq!(got["actor"], json!({ "id": "owner", "role": "vendor" }));
    assert_eq!(vendor.expect_event("booking:status_changed").await, got);

    let service = Service { id: id("s1"), vendor_id: id("v1"), fields: Map::new() };
    emitter.service_created(service, None).await.unwrap();
    vendor.expect_event("service:created").await;
    user.expect_nothing().await;

    let payment = Payment { id: id("p1"), user_id: id("u1"), vendor_id: None, fields: Map::new() };
    emitter.payment_failed(payment, Some("card declined".into()), None).await.unwrap();
    assert_eq!(user.expect_event("payment:failed").await["reason"], "card declined");
    vendor.expect_nothing().await;
}
