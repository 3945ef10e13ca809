//! Live tokens: disconnected at expiry unless refreshed with `auth:refresh`.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

fn short_token(sub: &str, secs: u64) -> String {
    token(json!({ "sub": sub, "exp": jsonwebtoken::get_current_timestamp() + secs }))
}

#[tokio::test]
async fn a_socket_is_disconnected_when_its_token_expires() {
    let app = spawn_app().await;
    let mut user = connect(&app, TokenAt::Auth(short_token("u1", 2))).await.unwrap();
    let mut other = connect_user(&app, "u2").await;
    let notice = user.expect_event_within("auth:expired", Duration::from_secs(5)).await;
    assert!(notice["exp"].is_u64());
    user.expect_disconnect().await;
    other.expect_nothing().await;
    assert_eq!(other.ack("ping", json!({})).await["pong"], true);
}

#[tokio::test]
async fn a_refreshed_token_keeps_the_socket_alive_past_the_old_expiry() {
    let app = spawn_app().await;
    let mut user = connect(&app, TokenAt::Auth(short_token("u1", 2))).await.unwrap();
    let fresh = short_token("u1", 600);
    let ack = user.ack("auth:refresh", json!({ "token": fresh })).await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert!(ack["exp"].as_u64().is_some_and(|e| e > jsonwebtoken::get_current_timestamp() + 500));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(user.ack("ping", json!({})).await["pong"], true);
    app.post_event(event_body("booking:created", "u1", "v1")).await;
    user.expect_event("booking:created").await;
}

#[tokio::test]
async fn a_refresh_with_a_bad_or_foreign_token_is_refused() {
    let app = spawn_app().await;
    let user = connect_user(&app, "u1").await;
    let expired = token(json!({ "sub": "u1", "exp": jsonwebtoken::get_current_timestamp() - 5 }));
    for bad in [short_token("someone-else", 600), expired, "junk".into(), vendor_token("u1", "v1")] {
        let ack = user.ack("auth:refresh", json!({ "token": bad })).await;
        assert_eq!((ack["ok"].clone(), ack["error"].clone()), (json!(false), json!("invalid_token")), "{ack}");
    }
    assert_eq!(user.ack("ping", json!({})).await["pong"], true);
}

#[tokio::test]
async fn each_socket_expires_on_time_whatever_the_others_expiries() {
    let app = spawn_app().await;
    // One watcher serves every socket: a later expiry must not delay an earlier one
    // added after it, and a socket that left must not be disconnected for it.
    let mut late = connect(&app, TokenAt::Auth(short_token("late", 40))).await.unwrap();
    let gone = connect(&app, TokenAt::Auth(short_token("gone", 2))).await.unwrap();
    let _ = gone.client.disconnect().await;
    let started = std::time::Instant::now();
    let mut soon = connect(&app, TokenAt::Auth(short_token("soon", 2))).await.unwrap();
    soon.expect_event_within("auth:expired", Duration::from_secs(4)).await;
    soon.expect_disconnect().await;
    assert!(started.elapsed() < Duration::from_millis(3_500), "expired after {:?}", started.elapsed());
    late.expect_nothing().await;
    assert_eq!(late.ack("ping", json!({})).await["pong"], true);
    // The refreshed socket is watched at its new expiry only.
    let mut refreshed = connect(&app, TokenAt::Auth(short_token("r", 2))).await.unwrap();
    let ack = refreshed.ack("auth:refresh", json!({ "token": short_token("r", 3) })).await;
    assert_eq!(ack["ok"], true, "{ack}");
    tokio::time::sleep(Duration::from_millis(2_300)).await;
    assert_eq!(refreshed.ack("ping", json!({})).await["pong"], true, "alive past its first expiry");
    refreshed.expect_event_within("auth:expired", Duration::from_secs(3)).await;
}
