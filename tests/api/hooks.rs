//! Backend hooks seen from a real HTTP receiver in the test: signatures checked with an
//! HMAC computed here, start-up refusals of the real binary, and a clean shutdown.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::process::Command;

use crate::helpers::*;

pub const SECRET: &str = "rust-suite-webhook-secret-0123456789";

#[derive(Clone, Default)]
pub struct Received(pub Arc<Mutex<Vec<(Value, bool)>>>);

impl Received {
    pub fn types(&self, who: &str) -> Vec<String> {
        let all = self.0.lock().unwrap();
        all.iter()
            .filter(|(b, _)| {
                format!("{}:{}", b["data"]["type"].as_str().unwrap_or(""), b["data"]["id"].as_str().unwrap_or(""))
                    == who
            })
            .map(|(b, _)| b["type"].as_str().unwrap_or("").to_owned())
            .collect()
    }

    pub fn all_signed(&self) -> bool {
        self.0.lock().unwrap().iter().all(|(_, valid)| *valid)
    }
}

/// HMAC-SHA256 over "<timestamp>.<body>", computed here rather than with the server's code.
pub fn valid(headers: &HeaderMap, body: &[u8]) -> bool {
    let (Some(ts), Some(sig)) = (headers.get("x-webhook-timestamp"), headers.get("x-webhook-signature")) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    sig.as_bytes() == format!("sha256={expected}").as_bytes()
}

/// A receiver on 127.0.0.1:0 that checks every signature and answers 204.
pub async fn receiver() -> (String, Received) {
    let received = Received::default();
    let store = received.clone();
    let app = axum::Router::new().route(
        "/hooks",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let store = store.clone();
            async move {
                let ok = valid(&headers, &body);
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                store.0.lock().unwrap().push((v, ok));
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

pub async fn wait_for(received: &Received, who: &str, n: usize, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while received.types(who).len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "webhook #{n} for {who} not received: {:?}",
            received.types(who)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_clean_shutdown_of_a_single_instance_sends_every_offline_at_once() {
    let (url, received) = receiver().await;
    let app =
        spawn_app_with(&[("WEBHOOK_URL", &url), ("WEBHOOK_SECRET", SECRET), ("PRESENCE_OFFLINE_GRACE_MS", "60000")])
            .await;
    let _staying = connect_user(&app, "sd-stays").await;
    let leaving = connect_user(&app, "sd-left").await;
    wait_for(&received, "user:sd-stays", 1, WAIT).await;
    wait_for(&received, "user:sd-left", 1, WAIT).await;
    leaving.client.disconnect().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(received.types("user:sd-left"), ["presence.online"], "the grace is a minute: nothing yet");

    let stopped = tokio::time::Instant::now();
    app.stop().await;
    // Well within the minute of grace: a stopping single instance has nobody to hand them to.
    assert!(stopped.elapsed() < Duration::from_secs(10), "{:?}", stopped.elapsed());
    assert_eq!(received.types("user:sd-left"), ["presence.online", "presence.offline"]);
    assert_eq!(received.types("user:sd-stays"), ["presence.online", "presence.offline"]);
    assert!(received.all_signed());
}

#[tokio::test]
async fn hooks_stay_off_without_a_url() {
    let (_url, received) = receiver().await;
    let app = spawn_app_with(&[("WEBHOOK_SECRET", SECRET)]).await;
    let mut client = connect_user(&app, "no-hooks").await;
    client.expect_nothing().await;
    assert!(received.0.lock().unwrap().is_empty());
    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(!metrics.contains("fixrx_webhooks_total{"), "{metrics}");
}

async fn start_binary(vars: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fixrx-realtime"))
        .current_dir(std::env::temp_dir())
        .env_clear()
        .envs([("PORT", "0"), ("HOST", "127.0.0.1"), ("PATH", "/usr/bin:/bin")])
        .envs(vars.iter().copied())
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), out).await.expect("exits").expect("runs");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test]
async fn production_refuses_a_hook_url_without_a_secret_and_any_url_that_is_not_http() {
    let prod = [
        ("APP_ENV", "production"),
        ("JWT_SECRET", "a-production-jwt-secret-0123456789"),
        ("API_TOKEN", "a-production-api-token"),
    ];
    let with =
        |extra: &[(&'static str, &'static str)]| prod.iter().copied().chain(extra.iter().copied()).collect::<Vec<_>>();

    let (code, stderr) = start_binary(&with(&[("WEBHOOK_URL", "https://backend.example/hooks")])).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("WEBHOOK_SECRET"), "{stderr}");

    let (code, stderr) =
        start_binary(&with(&[("CHAT_HOOK_URL", "ftp://backend.example/chat"), ("WEBHOOK_SECRET", SECRET)])).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("CHAT_HOOK_URL"), "{stderr}");
    assert!(!stderr.contains(SECRET), "the secret must not be printed: {stderr}");
}
