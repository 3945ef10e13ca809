//! Every error of the REST API, as JSON with a stable code; and the operator endpoints.

use serde_json::{Value, json};

use crate::helpers::*;

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_else(|| panic!("not an error body: {body}"))
}

#[tokio::test]
async fn a_missing_or_wrong_api_token_is_401() {
    let app = spawn_app().await;
    let body = event_body("booking:created", "u1", "v1");
    let cases = [None, Some("Bearer wrong-token"), Some(&*format!("Basic {API_TOKEN}")), Some("Bearer ")];
    for auth in cases {
        let mut req = app.http.post(app.url("/api/v1/events")).json(&body);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.headers().get("www-authenticate").map(|v| v.to_str().unwrap()), Some("Bearer"));
        let (status, body) = read(res).await;
        assert_eq!((status, code(&body)), (401, "unauthorized"), "{auth:?}");
    }
    // Also on every other API route.
    let res = app.http.get(app.url("/api/v1/presence/user/u1")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let res = app.http.post(app.url("/api/v1/users/u1/disconnect")).send().await.unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn every_configured_api_token_is_accepted_so_tokens_can_rotate() {
    let app = spawn_app_with(&[("API_TOKEN", "old-token, new-token")]).await;
    for token in ["old-token", "new-token"] {
        let res = app
            .http
            .post(app.url("/api/v1/events"))
            .bearer_auth(token)
            .json(&event_body("service:created", "u1", "v1"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
    }
}

async fn post_raw(app: &TestApp, content_type: Option<&str>, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let mut req = app.http.post(app.url("/api/v1/events")).bearer_auth(API_TOKEN).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    read(req.send().await.unwrap()).await
}

#[tokio::test]
async fn malformed_json_is_400() {
    let app = spawn_app().await;
    for body in ["{", "{\"type\": }", "", "nul", "{\"a\":1}}", "\u{feff}{}"] {
        let (status, answer) = post_raw(&app, Some("application/json"), body).await;
        assert_eq!((status, code(&answer)), (400, "invalid_json"), "{body:?}");
    }
}

#[tokio::test]
async fn a_body_that_is_not_json_is_415() {
    let app = spawn_app().await;
    let json = event_body("booking:created", "u1", "v1").to_string();
    for ct in [None, Some("text/plain"), Some("application/x-www-form-urlencoded"), Some("multipart/form-data")] {
        let (status, answer) = post_raw(&app, ct, json.clone()).await;
        assert_eq!((status, code(&answer)), (415, "unsupported_media_type"), "{ct:?}");
    }
    let (status, _) = post_raw(&app, Some("application/json; charset=utf-8"), json).await;
    assert_eq!(status, 202);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let app = spawn_app_with(&[("REST_BODY_LIMIT", "2048")]).await;
    let mut body = event_body("booking:created", "u1", "v1");
    body["booking"]["notes"] = json!("x".repeat(4096));
    let (status, answer) = post_raw(&app, Some("application/json"), body.to_string()).await;
    assert_eq!((status, code(&answer)), (413, "payload_too_large"));
    // Without Content-Length (chunked), the limit still holds.
    let chunks: Vec<Result<String, std::io::Error>> = vec![Ok(body.to_string())];
    let stream = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let (status, answer) = post_raw(&app, Some("application/json"), stream).await;
    assert_eq!((status, code(&answer)), (413, "payload_too_large"));
}

#[tokio::test]
async fn the_default_body_limit_is_256_kib() {
    let app = spawn_app().await;
    let mut body = event_body("booking:created", "u1", "v1");
    body["booking"]["notes"] = json!("x".repeat(200 * 1024));
    assert_eq!(post_raw(&app, Some("application/json"), body.to_string()).await.0, 202);
    body["booking"]["notes"] = json!("x".repeat(300 * 1024));
    assert_eq!(post_raw(&app, Some("application/json"), body.to_string()).await.0, 413);
}

#[tokio::test]
async fn valid_json_of_the_wrong_shape_is_422_naming_the_field() {
    let app = spawn_app().await;
    let mut user = connect_user(&app, "u1").await;
    let cases = [
        (json!({ "type": "booking:deleted", "booking": {} }), "type"),
        (json!({ "booking": { "id": "b1", "userId": "u1", "vendorId": "v1" } }), "type"),
        (json!({ "type": "booking:created", "booking": { "id": "b1", "vendorId": "v1" } }), "booking.userId"),
        (
            json!({ "type": "booking:created", "booking": { "id": "b1", "userId": "", "vendorId": "v1" } }),
            "booking.userId",
        ),
        (json!({ "type": "service:created", "service": { "id": "s1" } }), "service.vendorId"),
        (json!({ "type": "payment:completed", "payment": { "userId": "u1" } }), "payment.id"),
        (json!({ "type": "booking:created", "payment": { "id": "p", "userId": "u1" } }), "payment"),
        (json!({ "type": "booking:created", "booking": [] }), "booking"),
        (
            json!({ "type": "booking:created", "booking": { "id": 1.5, "userId": "u1", "vendorId": "v1" } }),
            "booking.id",
        ),
        (
            json!({ "type": "booking:created", "booking": { "id": "b", "userId": "u1", "vendorId": "v1" }, "occurredAt": "now" }),
            "occurredAt",
        ),
        (
            json!({ "type": "booking:created", "booking": { "id": "b", "userId": "u1", "vendorId": "v1" }, "actor": "me" }),
            "actor",
        ),
        (json!([1, 2]), ""),
        (json!("booking:created"), ""),
    ];
    for (body, field) in cases {
        let (status, answer) = app.post_event(body.clone()).await;
        assert_eq!((status, code(&answer)), (422, "validation_failed"), "{body}");
        assert_eq!(answer["error"]["field"].as_str().unwrap_or(""), field, "{body}: {answer}");
        assert!(answer["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    user.expect_nothing().await;
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405_both_as_json() {
    let app = spawn_app().await;
    let (status, body) = app.get("/api/v1/nothing-here").await;
    assert_eq!((status, code(&body)), (404, "not_found"));
    let (status, body) = app.get("/api/v1/presence/team/t1").await;
    assert_eq!((status, code(&body)), (404, "not_found"));
    let (status, body) = app.get("/api/v1/events").await;
    assert_eq!((status, code(&body)), (405, "method_not_allowed"));
    // Development-only token minting does not exist outside the development secret.
    let (status, _) = app.get("/dev/token?sub=u1").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn over_the_per_token_rate_the_api_answers_429_with_retry_after() {
    let app = spawn_app_with(&[("API_RATE_LIMIT", "1"), ("API_RATE_BURST", "3")]).await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..5 {
        let res = app.http.get(app.url("/api/v1/presence/user/u1")).bearer_auth(API_TOKEN).send().await.unwrap();
        if res.status() == 429 {
            retry_after = res.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
            let (_, body) = read(res).await;
            assert_eq!(code(&body), "rate_limited");
        } else {
            statuses.push(res.status().as_u16());
        }
    }
    assert_eq!(statuses, vec![200, 200, 200], "the burst passes, the rest are limited");
    let secs: u64 = retry_after.expect("Retry-After header").parse().expect("whole seconds");
    assert!((1..=2).contains(&secs), "{secs}");
    // After the window, the token works again.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(app.get("/api/v1/presence/user/u1").await.0, 200);
}

#[tokio::test]
async fn health_ready_and_metrics_need_no_token() {
    let app = spawn_app().await;
    let _user = connect_user(&app, "u1").await;
    app.post_event(event_body("booking:created", "u1", "v1")).await;
    let res = app.http.get(app.url("/health")).send().await.unwrap();
    assert_eq!(read(res).await, (200, json!({ "status": "ok" })));
    let res = app.http.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(read(res).await, (200, json!({ "status": "ready" })));
    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("fixrx_connections 1"), "{metrics}");
    assert!(metrics.contains("fixrx_events_emitted_total{type=\"booking:created\"} 1"), "{metrics}");
    assert!(metrics.contains("fixrx_handshakes_total{result=\"accepted\",reason=\"\"} 1"), "{metrics}");
    assert!(metrics.contains("fixrx_http_requests_total{method=\"POST\",route=\"/api/v1/events\",status=\"202\"} 1"));
    assert!(metrics.contains("fixrx_http_request_duration_seconds_bucket"));
}

#[tokio::test]
async fn a_handshake_from_a_disallowed_browser_origin_is_refused() {
    let app = spawn_app_with(&[("CLIENT_ORIGIN", "https://app.fixrx.test")]).await;
    let handshake = app.url("/socket.io/?EIO=4&transport=polling");
    let res = app.http.get(&handshake).header("origin", "https://evil.test").send().await.unwrap();
    let (status, body) = read(res).await;
    assert_eq!((status, code(&body)), (403, "origin_not_allowed"));
    let res = app.http.get(&handshake).header("origin", "https://app.fixrx.test").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["access-control-allow-origin"], "https://app.fixrx.test");
    assert_cors_vary(res.headers());
    // No Origin at all (a mobile app, a server): accepted.
    let res = app.http.get(&handshake).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_cors_vary(res.headers());
    let preflight = app.http.request(reqwest::Method::OPTIONS, app.url("/api/v1/events"));
    let res = preflight
        .header("origin", "https://app.fixrx.test")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["access-control-allow-origin"], "https://app.fixrx.test");
    assert_cors_vary(res.headers());
}

/// Every answer through the CORS layer varies on the request's CORS headers.
fn assert_cors_vary(headers: &reqwest::header::HeaderMap) {
    let vary: Vec<_> = headers.get_all("vary").iter().collect();
    let expected = "origin, access-control-request-method, access-control-request-headers";
    assert!(vary.iter().any(|v| *v == expected), "{vary:?}");
}
