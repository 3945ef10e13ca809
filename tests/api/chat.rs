//! Live chat: relay, identity from the token, pairing rules, limits, typing, REST.

use serde_json::{Value, json};

use crate::helpers::*;

fn to_vendor(id: &str, text: &str) -> Value {
    json!({ "to": { "type": "vendor", "id": id }, "text": text })
}

#[tokio::test]
async fn a_message_reaches_the_recipient_and_the_senders_other_devices_but_not_the_sending_socket() {
    let app = spawn_app().await;
    let mut phone = connect_user(&app, "u1").await;
    let mut laptop = connect_user(&app, "u1").await;
    let mut vendor = connect_vendor(&app, "owner", "v1").await;
    let mut bystander = connect_user(&app, "u2").await;

    let mut payload = to_vendor("v1", "Is 3pm still fine?");
    payload["clientMsgId"] = json!("c-17");
    let ack = phone.ack("chat:send", payload).await;
    assert_eq!(ack["ok"], true, "{ack}");
    let message = &ack["message"];
    assert_eq!(message["from"], json!({ "type": "user", "id": "u1" }));
    assert_eq!(message["to"], json!({ "type": "vendor", "id": "v1" }));
    assert_eq!(message["text"], "Is 3pm still fine?");
    assert_eq!(message["clientMsgId"], "c-17");
    assert!(message["id"].is_string() && message["sentAt"].is_string());

    let rooms = ["vendor:v1", "user:u1"];
    assert_eq!(&without_offsets(vendor.expect_event("chat:message").await, &rooms), message);
    assert_eq!(&without_offsets(laptop.expect_event("chat:message").await, &rooms), message);
    tokio::join!(phone.expect_nothing(), laptop.expect_nothing(), vendor.expect_nothing(), bystander.expect_nothing());
}

#[tokio::test]
async fn a_vendor_replies_to_a_user() {
    let app = spawn_app().await;
    let mut user = connect_user(&app, "u1").await;
    let vendor = connect_vendor(&app, "owner", "v1").await;
    let ack = vendor.ack("chat:send", json!({ "to": { "type": "user", "id": "u1" }, "text": "Yes, see you" })).await;
    assert_eq!(ack["message"]["from"], json!({ "type": "vendor", "id": "v1" }));
    assert_eq!(user.expect_event("chat:message").await["text"], "Yes, see you");
}

#[tokio::test]
async fn a_spoofed_from_in_the_payload_is_ignored() {
    let app = spawn_app().await;
    let mut vendor = connect_vendor(&app, "owner", "v1").await;
    let mut victim = connect_user(&app, "victim").await;
    let attacker = connect_user(&app, "attacker").await;
    let mut payload = to_vendor("v1", "cancel my booking");
    payload["from"] = json!({ "type": "user", "id": "victim" });
    let ack = attacker.ack("chat:send", payload).await;
    assert_eq!(ack["message"]["from"], json!({ "type": "user", "id": "attacker" }));
    assert_eq!(vendor.expect_event("chat:message").await["from"]["id"], "attacker");
    victim.expect_nothing().await;
}

#[tokio::test]
async fn user_to_user_and_vendor_to_vendor_are_forbidden_and_deliver_nothing() {
    let app = spawn_app().await;
    let user = connect_user(&app, "u1").await;
    let mut other = connect_user(&app, "u2").await;
    let vendor = connect_vendor(&app, "owner", "v1").await;
    let mut other_vendor = connect_vendor(&app, "owner2", "v2").await;
    let ack = user.ack("chat:send", json!({ "to": { "type": "user", "id": "u2" }, "text": "hi" })).await;
    assert_eq!((ack["ok"].clone(), ack["error"].clone()), (json!(false), json!("forbidden")));
    let ack = vendor.ack("chat:send", to_vendor("v2", "hi")).await;
    assert_eq!(ack["error"], "forbidden");
    let ack = user.ack("chat:typing", json!({ "to": { "type": "user", "id": "u2" } })).await;
    assert_eq!(ack["error"], "forbidden");
    tokio::join!(other.expect_nothing(), other_vendor.expect_nothing());
}

#[tokio::test]
async fn text_must_be_1_to_4000_characters() {
    let app = spawn_app().await;
    let user = connect_user(&app, "u1").await;
    let mut vendor = connect_vendor(&app, "owner", "v1").await;
    // 4000 characters of 4 bytes each: counted as characters, not bytes.
    let longest = "🙂".repeat(4000);
    assert_eq!(user.ack("chat:send", to_vendor("v1", &longest)).await["ok"], true);
    assert_eq!(vendor.expect_event("chat:message").await["text"], longest);
    for text in [String::new(), "a".repeat(4001)] {
        let ack = user.ack("chat:send", to_vendor("v1", &text)).await;
        assert_eq!(ack["error"], "invalid_payload", "{} chars", text.chars().count());
    }
    vendor.expect_nothing().await;
}

#[tokio::test]
async fn typing_is_relayed_to_the_recipient_only() {
    let app = spawn_app().await;
    let phone = connect_user(&app, "u1").await;
    let mut laptop = connect_user(&app, "u1").await;
    let mut vendor = connect_vendor(&app, "owner", "v1").await;
    let ack = phone.ack("chat:typing", json!({ "to": { "type": "vendor", "id": "v1" } })).await;
    assert_eq!(ack["ok"], true);
    assert_eq!(
        vendor.expect_event("chat:typing").await,
        json!({ "from": { "type": "user", "id": "u1" }, "to": { "type": "vendor", "id": "v1" } })
    );
    tokio::join!(laptop.expect_nothing(), vendor.expect_nothing());
}

#[tokio::test]
async fn a_controller_posts_a_chat_message_over_rest() {
    let app = spawn_app().await;
    let mut user = connect_user(&app, "u1").await;
    let mut vendor = connect_vendor(&app, "owner", "v1").await;
    let body = json!({
        "from": { "type": "vendor", "id": "v1" }, "to": { "type": "user", "id": "u1" },
        "text": "Your booking is confirmed.", "clientMsgId": "sys-1"
    });
    let (status, answer) = app.post("/api/v1/chat/messages", body).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["rooms"], json!(["user:u1", "vendor:v1"]));
    let rooms = ["user:u1", "vendor:v1"];
    assert_eq!(without_offsets(user.expect_event("chat:message").await, &rooms), answer["message"]);
    // Every socket of the sender gets it: there is no sending socket to leave out.
    assert_eq!(without_offsets(vendor.expect_event("chat:message").await, &rooms), answer["message"]);

    for (body, field) in [
        (json!({ "to": { "type": "user", "id": "u1" }, "text": "x" }), "from"),
        (json!({ "from": { "type": "user", "id": "u2" }, "to": { "type": "user", "id": "u1" }, "text": "x" }), "to"),
        (json!({ "from": { "type": "vendor", "id": "v1" }, "to": { "type": "user", "id": "u1" }, "text": "" }), "text"),
        (json!(["not", "an", "object"]), ""),
    ] {
        let (status, answer) = app.post("/api/v1/chat/messages", body.clone()).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(answer["error"]["field"].as_str().unwrap_or(""), field, "{answer}");
    }
    let res = app.http.post(app.url("/api/v1/chat/messages")).json(&json!({})).send().await.unwrap();
    assert_eq!(res.status(), 401);
    tokio::join!(user.expect_nothing(), vendor.expect_nothing());
}
