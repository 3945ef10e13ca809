//! The REST API's errors: one enum, one mapping to HTTP answers.
//!
//! Body: `{ "error": { "code", "message", "field"? } }`. Codes are stable; 5xx
//! messages stay generic and the detail goes to the log.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::emit::EmitError;
use crate::events::ParseError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("malformed JSON: {0}")]
    BadJson(String),
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("origin not allowed")]
    OriginNotAllowed,
    /// A Socket.IO session the server closed so that its client reconnects.
    #[error("session closed by the server: reconnect")]
    SessionClosed,
    #[error("no such route")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("{message}")]
    Validation { field: String, message: String },
    #[error("rate limit exceeded; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// A client behind a trusted proxy over `MAX_CONNECTIONS_PER_IP` sockets.
    #[error("too many connections from this address")]
    TooManyConnections,
    /// The chat hook refused the message: the backend's reason, if it gave one.
    #[error("{}", .0.as_deref().unwrap_or("the backend rejected the message"))]
    Rejected(Option<String>),
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// The chat hook could not be asked (5xx, timeout, unreachable).
    #[error("the backend could not accept the message; retry later")]
    HookUnavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::Validation { field: field.into(), message: message.into() }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadJson(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::OriginNotAllowed => StatusCode::FORBIDDEN,
            ApiError::SessionClosed => StatusCode::BAD_REQUEST,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RateLimited { .. } | ApiError::TooManyConnections => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Rejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) | ApiError::HookUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable code on the wire.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadJson(_) => "invalid_json",
            ApiError::Unauthorized => "unauthorized",
            ApiError::OriginNotAllowed => "origin_not_allowed",
            ApiError::SessionClosed => "session_closed",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::Validation { .. } => "validation_failed",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::TooManyConnections => "too_many_connections",
            ApiError::Rejected(_) => "rejected",
            ApiError::Unavailable(_) | ApiError::HookUnavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl From<ParseError> for ApiError {
    fn from(e: ParseError) -> Self {
        ApiError::Validation { field: e.field, message: e.message }
    }
}

impl From<EmitError> for ApiError {
    fn from(e: EmitError) -> Self {
        match e {
            EmitError::Unavailable(detail) => ApiError::Unavailable(detail),
            EmitError::Closed => ApiError::Unavailable("shutting down".into()),
            EmitError::Serialize(detail) => ApiError::Internal(detail),
            EmitError::Rejected(reason) => ApiError::Rejected(reason),
            EmitError::HookUnavailable(detail) => ApiError::HookUnavailable(detail),
        }
    }
}

/// Every error answer: `{ "error": { "code", "message", "field"? } }`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable: `invalid_json`, `unauthorized`, `validation_failed`, `rejected`, `rate_limited`, `unavailable`, ...
    pub code: &'static str,
    pub message: String,
    /// The field at fault (a JSON path such as `booking.userId`), on some `422`s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// The refusals every authenticated route may answer before reading its input, for the
/// OpenAPI document (never built: the answers are `ApiError`s).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum AuthErrors {
    /// No or a wrong API token
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// Over the per-token rate
    #[response(status = 429, headers(("Retry-After" = u64, description = "seconds")))]
    RateLimited(ErrorBody),
}

/// The refusals of a JSON body, before its shape is checked (OpenAPI only, as above).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum BodyErrors {
    /// The body is not JSON
    #[response(status = 400)]
    BadJson(ErrorBody),
    /// The body is over REST_BODY_LIMIT
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// Not application/json
    #[response(status = 415)]
    NotJson(ErrorBody),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                "internal server error".to_owned()
            }
            ApiError::Unavailable(detail) => {
                tracing::warn!(%detail, "service unavailable");
                "the event bus is unavailable; retry later".to_owned()
            }
            ApiError::HookUnavailable(detail) => {
                tracing::warn!(%detail, "chat hook unavailable");
                self.to_string()
            }
            other => other.to_string(),
        };
        let field = match &self {
            ApiError::Validation { field, .. } if !field.is_empty() => Some(field.clone()),
            _ => None,
        };
        let body = ErrorBody { error: ErrorDetail { code: self.code(), message, field } };
        let mut response = (status, Json(body)).into_response();
        match self {
            ApiError::RateLimited { retry_after_secs } => {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            ApiError::Unauthorized => {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}
