//! `INTERNAL_PORT`: `/metrics` and the admin console only on the internal port, `404` for
//! them on the public one; `/health` and `/ready` on both.

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

/// The status line's code for `method target` sent byte for byte (no client library
/// between: `url` would normalise some of these spellings before they left).
async fn raw_status(base: std::net::SocketAddr, method: &str, target: &str) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(base).await.unwrap();
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {base}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    let status = answer.split(' ').nth(1).and_then(|code| code.parse().ok());
    status.unwrap_or_else(|| panic!("{method} {target}: no status line in {answer:?}"))
}

#[tokio::test]
async fn no_other_spelling_of_an_operator_path_reaches_it_on_the_public_port() {
    let app = spawn_app_with(&[("ADMIN_TOKEN", ADMIN_TOKEN), ("INTERNAL_PORT", "0")]).await;
    let internal = app.internal.unwrap();
    let spellings = [
        "/metrics/",
        "//metrics",
        "/metrics?x=1",
        "/metrics;x=1",
        "/metrics%2F",
        "/%6Detrics",
        "/%6detrics",
        "/METRICS",
        "/Metrics",
        "/./metrics",
        "/api/../metrics",
        "/health/../metrics",
        "http://127.0.0.1/metrics",
        "/admin",
        "/admin/",
        "//admin",
        "/ADMIN",
        "/%61dmin",
        "/admin%2F",
        "/admin/console.js",
        "/admin/api/",
        "/admin/api/overview",
        "/admin/api/overview/",
        "//admin/api/overview",
        "/admin//api/overview",
        "/admin/api/%6Fverview",
        "/Admin/api/overview",
        "/admin/api/lookup/user/someone",
        "/./admin/api/overview",
        "http://127.0.0.1/admin/api/overview",
    ];
    for target in spellings {
        for method in ["GET", "HEAD", "POST"] {
            assert_eq!(raw_status(app.addr, method, target).await, 404, "public {method} {target}");
        }
    }
    // The same bytes reach the internal port's routes where they name one exactly.
    assert_eq!(raw_status(internal, "GET", "/metrics").await, 200);
    assert_eq!(raw_status(internal, "GET", "/metrics?x=1").await, 200);
    assert_eq!(raw_status(internal, "GET", "/admin/api/overview").await, 200);
    assert_eq!(raw_status(internal, "POST", "/admin/api/disconnect/user/nobody").await / 100, 2);
    assert_eq!(raw_status(app.addr, "POST", "/admin/api/disconnect/user/nobody").await, 404);
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
