//! The HTTP side: the controllers' REST API under `/api/v1`, and the operators'
//! `/health`, `/ready` and `/metrics`.

pub mod chat;
pub mod dev;
pub mod error;
pub mod events;
pub mod json;
pub mod ops;
pub mod presence;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;

use crate::auth::JwtVerifier;
use crate::auth::api_token::{ApiAuth, ApiAuthError};
use crate::config::ApiConfig;
use crate::emit::{Emitted, Emitter};
use crate::idempotency::IdempotencyStore;
use crate::metrics::Metrics;

pub use error::ApiError;

/// Everything the HTTP handlers share. Cheap to clone.
pub struct AppState<A: Adapter> {
    pub io: SocketIo<A>,
    pub emitter: Emitter<A>,
    pub api: Arc<ApiConfig>,
    pub api_auth: Arc<ApiAuth>,
    pub idempotency: Arc<IdempotencyStore<Emitted>>,
    pub metrics: Arc<Metrics>,
    pub verifier: JwtVerifier,
    /// Cleared when shutdown begins, so load balancers stop sending traffic.
    pub accepting: Arc<AtomicBool>,
}

impl<A: Adapter> Clone for AppState<A> {
    fn clone(&self) -> Self {
        AppState {
            io: self.io.clone(),
            emitter: self.emitter.clone(),
            api: self.api.clone(),
            api_auth: self.api_auth.clone(),
            idempotency: self.idempotency.clone(),
            metrics: self.metrics.clone(),
            verifier: self.verifier.clone(),
            accepting: self.accepting.clone(),
        }
    }
}

/// A controller that presented a valid API token and is within its rate.
pub struct ApiClient {
    /// Which configured token it used (never the token itself).
    pub token_index: usize,
}

impl<A: Adapter> FromRequestParts<AppState<A>> for ApiClient {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState<A>) -> Result<Self, ApiError> {
        let header = parts.headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
        match state.api_auth.check(header) {
            Ok(token_index) => Ok(ApiClient { token_index }),
            Err(ApiAuthError::Unauthorized) => Err(ApiError::Unauthorized),
            Err(ApiAuthError::RateLimited { retry_after_secs }) => Err(ApiError::RateLimited { retry_after_secs }),
        }
    }
}
