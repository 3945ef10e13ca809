//! Unauthenticated operator endpoints: liveness, readiness, metrics.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use socketioxide::adapter::Adapter;

use super::{ApiError, AppState};

/// `{ "status": ... }` of the operator endpoints.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Status {
    /// `ok`, `ready`, `shutting_down`, `redis_unreachable` or `jwks_unavailable`.
    pub status: &'static str,
    /// `/ready` only, while ready yet at risk: `redis_history_shard_without_replica` (on a
    /// Redis Cluster, a failover of the history's shard now would lose recent events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<&'static str>,
}

/// Alive: the process answers.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "The process answers", body = Status)))]
pub async fn health() -> Response {
    Json(Status { status: "ok", warning: None }).into_response()
}

/// Ready to serve: not shutting down, with Redis, Redis reachable, and with a JWKS, its keys
/// loaded once.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Status),
        (status = 503, description = "`shutting_down`, `redis_unreachable`, or `jwks_unavailable` (a configured JWKS never loaded yet)", body = Status),
    ))]
pub async fn ready<A: Adapter>(State(state): State<AppState<A>>) -> Response {
    match state.readiness.check() {
        Ok(()) => Json(Status { status: "ready", warning: state.readiness.warning() }).into_response(),
        Err(reason) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(Status { status: reason, warning: None })).into_response()
        }
    }
}

/// Prometheus metrics (OpenMetrics text).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text")))]
pub async fn metrics<A: Adapter>(State(state): State<AppState<A>>) -> Result<Response, ApiError> {
    // Blocking: the process metrics read /proc, and counting open descriptors lists them
    // all (a hundred thousand sockets take milliseconds).
    let metrics = state.metrics.clone();
    let text = tokio::task::spawn_blocking(move || metrics.render())
        .await
        .map_err(|e| ApiError::Internal(format!("rendering /metrics: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response())
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
