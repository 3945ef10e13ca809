//! The JSON body extractor: our own error shape for every way a body can be wrong.

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde_json::Value;

use super::AppState;
use super::error::ApiError;
use socketioxide::adapter::Adapter;

/// A request body that is JSON, within the configured size limit.
pub struct JsonBody(pub Value);

impl<A: Adapter> FromRequest<AppState<A>> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request<Body>, state: &AppState<A>) -> Result<Self, ApiError> {
        let limit = state.api.body_limit;
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let declared =
            req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit as u64) {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        let bytes = axum::body::to_bytes(req.into_body(), limit).await.map_err(|e| {
            // The only error a bounded in-memory read reports for a healthy peer is the limit.
            let too_large = std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                ApiError::PayloadTooLarge { limit }
            } else {
                ApiError::BadJson(format!("could not read body: {e}"))
            }
        })?;
        if bytes.is_empty() {
            return Err(ApiError::BadJson("the body is empty".into()));
        }
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| ApiError::BadJson(e.to_string()))
    }
}
