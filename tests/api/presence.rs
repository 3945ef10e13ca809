//! Presence counts sockets; the disconnect endpoint cuts every socket of a user.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn presence_counts_the_sockets_in_a_room() {
    let app = spawn_app().await;
    assert_eq!(app.get("/api/v1/presence/user/u1").await, (200, json!({ "online": false, "connections": 0 })));
    let _phone = connect_user(&app, "u1").await;
    let _laptop = connect_user(&app, "u1").await;
    let _vendor = connect_vendor(&app, "owner", "v1").await;
    assert_eq!(app.get("/api/v1/presence/user/u1").await, (200, json!({ "online": true, "connections": 2 })));
    assert_eq!(app.get("/api/v1/presence/vendor/v1").await, (200, json!({ "online": true, "connections": 1 })));
    assert_eq!(app.get("/api/v1/presence/vendor/owner").await, (200, json!({ "online": false, "connections": 0 })));
    assert_eq!(app.get("/api/v1/presence/user/owner").await.1["connections"], 1);
}

#[tokio::test]
async fn presence_drops_when_a_client_leaves() {
    let app = spawn_app().await;
    let phone = connect_user(&app, "u1").await;
    phone.client.disconnect().await.unwrap();
    let mut last = json!(null);
    for _ in 0..50 {
        last = app.get("/api/v1/presence/user/u1").await.1;
        if last["connections"] == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(last, json!({ "online": false, "connections": 0 }));
}

#[tokio::test]
async fn disconnecting_a_user_closes_all_its_sockets_and_no_others() {
    let app = spawn_app().await;
    let mut phone = connect_user(&app, "u1").await;
    let mut laptop = connect_user(&app, "u1").await;
    let mut bystander = connect_user(&app, "u2").await;
    let (status, body) = app.post("/api/v1/users/u1/disconnect", json!({})).await;
    assert_eq!((status, body), (200, json!({ "disconnected": 2 })));
    phone.expect_disconnect().await;
    laptop.expect_disconnect().await;
    assert_eq!(app.get("/api/v1/presence/user/u1").await.1["connections"], 0);
    // The others are untouched and still receive their events.
    app.post_event(event_body("booking:created", "u2", "v1")).await;
    bystander.expect_event("booking:created").await;
    assert_eq!(bystander.ack("ping", json!({})).await["pong"], true);
}

#[tokio::test]
async fn disconnecting_a_user_with_no_sockets_reports_zero() {
    let app = spawn_app().await;
    let res = app.http.post(app.url("/api/v1/users/nobody/disconnect")).bearer_auth(API_TOKEN).send().await.unwrap();
    assert_eq!(read(res).await, (200, json!({ "disconnected": 0 })));
}

#[tokio::test]
async fn an_over_long_id_in_the_path_is_422() {
    let app = spawn_app().await;
    let long = "x".repeat(200);
    let (status, body) = app.get(&format!("/api/v1/presence/user/{long}")).await;
    assert_eq!((status, body["error"]["field"].clone()), (422, json!("id")));
}

#[tokio::test]
async fn a_client_that_leaves_its_own_room_is_still_counted_and_still_disconnected() {
    let app = spawn_app().await;
    let mut user = connect_user(&app, "u9").await;
    assert_eq!(user.ack("leave", json!({ "type": "user", "id": "u9" })).await["ok"], true);
    assert_eq!(app.get("/api/v1/presence/user/u9").await.1, json!({ "online": true, "connections": 1 }));
    let (status, body) = app.post("/api/v1/users/u9/disconnect", json!({})).await;
    assert_eq!((status, body), (200, json!({ "disconnected": 1 })));
    user.expect_disconnect().await;
}

#[tokio::test]
async fn an_admin_watching_a_vendor_room_is_not_that_vendor_online() {
    let app = spawn_app().await;
    let admin = connect(&app, TokenAt::Auth(token(json!({ "sub": "root", "role": "admin" })))).await.unwrap();
    assert_eq!(admin.ack("join", json!({ "type": "vendor", "id": "v7" })).await["ok"], true);
    assert_eq!(app.get("/api/v1/presence/vendor/v7").await.1, json!({ "online": false, "connections": 0 }));
}
