//! `INTERNAL_PORT`: `/metrics` and the admin console only on the internal port, `404` for
//! them on the public one; `/health` and `/ready` on both.

use reqwest::StatusCode;

use crate::helpers::*;

const ADMIN_TOKEN: &str = "internal-port-admin-token-0123456789";

async fn get(app: &TestApp, base: std::net::SocketAddr, path: &str) -> (StatusCode, String) {
    let res = app.http.get(format!("http://{base}{path}")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    (res.status(), res.text().await.unwrap())
}

async fn assert_split(app: &TestApp) {
    let internal = app.internal.expect("an internal port");
    for path in ["/metrics", "/admin", "/admin/api/overview", "/admin/console.js"] {
        let (status, body) = get(app, app.addr, path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "public {path}: {body}");
        assert!(!body.contains("fixrx_"), "public {path} leaked metrics: {body}");
    }
    let (status, metrics) = get(app, internal, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(metrics.contains("fixrx_connections"), "{metrics}");
    let (status, page) = get(app, internal, "/admin").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<html") || page.contains("<!doctype") || page.contains("<!DOCTYPE"), "{page}");
    let (status, overview) = get(app, internal, "/admin/api/overview").await;
    assert_eq!(status, StatusCode::OK, "{overview}");
    let anonymous = app.http.get(format!("http://{internal}/admin/api/overview")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED, "the console's API still wants its token");
    for base in [app.addr, internal] {
        for path in ["/health", "/ready"] {
            assert_eq!(get(app, base, path).await.0, StatusCode::OK, "{base}{path}");
        }
    }
    // The REST API and Socket.IO stay public only.
    assert_eq!(get(app, internal, "/api/v1/openapi.json").await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(app, app.addr, "/api/v1/openapi.json").await.0, StatusCode::OK);
}

#[tokio::test]
async fn with_an_internal_port_metrics_and_the_console_are_served_only_there() {
    let app = spawn_app_with(&[("ADMIN_TOKEN", ADMIN_TOKEN), ("INTERNAL_PORT", "0")]).await;
    assert_split(&app).await;
    let _client = connect_user(&app, "internal-port-user").await;
    let (_, metrics) = get(&app, app.internal.unwrap(), "/metrics").await;
    assert!(metrics.contains("fixrx_connections 1"), "sockets on the public port are counted: {metrics}");
    app.stop().await;
}

#[tokio::test]
async fn run_serves_the_internal_port_as_well() {
    let app = spawn_node(&[("ADMIN_TOKEN", ADMIN_TOKEN), ("INTERNAL_PORT", "0")]).await;
    assert_split(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn without_an_internal_port_metrics_and_the_console_stay_on_the_public_port() {
    let app = spawn_app_with(&[("ADMIN_TOKEN", ADMIN_TOKEN)]).await;
    assert!(app.internal.is_none());
    assert_eq!(get(&app, app.addr, "/metrics").await.0, StatusCode::OK);
    assert_eq!(get(&app, app.addr, "/admin/api/overview").await.0, StatusCode::OK);
}
