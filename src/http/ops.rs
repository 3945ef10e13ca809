//! Unauthenticated operator endpoints: liveness, readiness, metrics.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use socketioxide::adapter::Adapter;

use super::{ApiError, AppState};

/// Alive: the process answers.
pub async fn health() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

/// Ready to serve: not shutting down and, with Redis, Redis reachable.
pub async fn ready<A: Adapter>(State(state): State<AppState<A>>) -> Response {
    match state.readiness.check() {
        Ok(()) => Json(json!({ "status": "ready" })).into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": reason }))).into_response(),
    }
}

pub async fn metrics<A: Adapter>(State(state): State<AppState<A>>) -> Response {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.render())
        .into_response()
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
