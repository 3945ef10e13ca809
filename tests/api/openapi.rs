//! The OpenAPI document against the running server: every documented operation is
//! served (the router is built from the document, this proves it end to end), and
//! nothing else under `/api/v1` is.

use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn every_operation_of_the_served_document_is_a_route_and_nothing_else_is() {
    let app = spawn_app().await;
    let doc: Value = app.http.get(app.url("/api/v1/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    let mut seen = Vec::new();
    for (path, item) in paths {
        let concrete = path.replace("{kind}", "user").replace("{id}", "u1");
        for (method, op) in item.as_object().unwrap() {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let res = app.http.request(method.clone(), app.url(&concrete)).send().await.unwrap();
            let status = res.status().as_u16();
            assert!(status != 404 && status != 405, "{method} {path} is documented but answers {status}");
            // A route that needs the API token says so in the document, and refuses without it.
            let secured = op.get("security").is_some();
            assert_eq!(secured, path.starts_with("/api/v1/") && path != "/api/v1/openapi.json", "{method} {path}");
            if secured {
                assert_eq!(status, 401, "{method} {path} without a token");
            }
            seen.push(format!("{method} {path}"));
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "GET /api/v1/openapi.json",
            "GET /api/v1/presence/{kind}/{id}",
            "GET /health",
            "GET /metrics",
            "GET /ready",
            "POST /api/v1/chat/messages",
            "POST /api/v1/events",
            "POST /api/v1/events/batch",
            "POST /api/v1/users/{id}/disconnect",
        ]
    );
    // Not documented, not served (other than development's /dev/token).
    for (method, path) in [
        ("GET", "/api/v1/events"),
        ("DELETE", "/api/v1/events"),
        ("POST", "/api/v1/presence/user/u1"),
        ("GET", "/api/v1/nope"),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let status = app.http.request(method.clone(), app.url(path)).send().await.unwrap().status().as_u16();
        assert!(status == 404 || status == 405, "{method} {path} answered {status}");
    }
}

#[tokio::test]
async fn every_answer_of_a_documented_operation_is_documented_with_its_status() {
    let app = spawn_app().await;
    let doc: Value = app.http.get(app.url("/api/v1/openapi.json")).send().await.unwrap().json().await.unwrap();
    let responses = |path: &str, method: &str| doc["paths"][path][method]["responses"].clone();
    let ok = app
        .http
        .post(app.url("/api/v1/events"))
        .bearer_auth(API_TOKEN)
        .json(&serde_json::json!({ "type": "booking:created", "booking": { "id": "b1", "userId": "u1", "vendorId": "v1" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 202);
    let body: Value = ok.json().await.unwrap();
    assert!(responses("/api/v1/events", "post")["202"].is_object());
    let emitted = &doc["components"]["schemas"]["Emitted"]["properties"];
    for key in body.as_object().unwrap().keys() {
        assert!(emitted.get(key).is_some(), "answer field `{key}` is not in the Emitted schema");
    }
    let bad = app
        .http
        .post(app.url("/api/v1/events"))
        .bearer_auth(API_TOKEN)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    assert!(responses("/api/v1/events", "post")["422"].is_object());
}
