//! The HTTP side: the controllers' REST API under `/api/v1`, and the operators'
//! `/health`, `/ready` and `/metrics`; every request's `X-Request-Id` ([`request_id`]).

pub mod chat_messages;
pub mod dev;
pub mod edge;
pub mod error;
pub mod events;
pub mod json;
pub mod openapi;
pub mod ops;
pub mod presence;
pub mod record;
pub mod request_id;
pub mod schema;
pub mod unread_body;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use socketioxide::adapter::Adapter;

use crate::auth::JwtVerifier;
use crate::auth::api_token::{ApiAuth, ApiAuthError};
use crate::auth::jwks::Jwks;
use crate::config::ApiConfig;
use crate::emit::Emitter;
use crate::idempotency::{IdempotencyStore, StoreError};
use crate::metrics::Metrics;
use crate::redis_link::RedisHealth;
use crate::shutdown::InFlight;

pub use error::ApiError;

/// Everything the HTTP handlers share, behind one `Arc`: axum clones the state for every
/// layer and extractor of every request.
pub struct AppState<A: Adapter>(Arc<Shared<A>>);

impl<A: Adapter> AppState<A> {
    pub fn new(shared: Shared<A>) -> AppState<A> {
        AppState(Arc::new(shared))
    }
}

impl<A: Adapter> std::ops::Deref for AppState<A> {
    type Target = Shared<A>;
    fn deref(&self) -> &Shared<A> {
        &self.0
    }
}

/// What [`AppState`] holds.
pub struct Shared<A: Adapter> {
    pub emitter: Emitter<A>,
    pub api: Arc<ApiConfig>,
    pub api_auth: Arc<ApiAuth>,
    pub idempotency: Arc<IdempotencyStore>,
    pub metrics: Arc<Metrics>,
    pub verifier: JwtVerifier,
    pub readiness: Arc<Readiness>,
    pub in_flight: Arc<InFlight>,
    pub hooks: Arc<crate::hooks::Hooks>,
}

/// Whether this instance should get traffic: not shutting down, its event bus (Redis, when
/// configured) reachable, and its identity provider's keys (a JWKS, when configured) loaded once.
pub struct Readiness {
    accepting: AtomicBool,
    redis: Option<Arc<RedisHealth>>,
    jwks: Option<Arc<Jwks>>,
}

impl Readiness {
    pub fn new(redis: Option<Arc<RedisHealth>>) -> Readiness {
        Readiness { accepting: AtomicBool::new(true), redis, jwks: None }
    }

    /// Not ready until this key set has loaded once (later failures keep the known keys).
    pub fn with_jwks(mut self, jwks: Option<Arc<Jwks>>) -> Readiness {
        self.jwks = jwks;
        self
    }

    /// Shutdown has begun: load balancers should stop sending traffic.
    pub fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::Release);
    }

    /// `Ok`, or why not ready.
    pub fn check(&self) -> Result<(), &'static str> {
        if !self.accepting.load(Ordering::Acquire) {
            return Err("shutting_down");
        }
        if self.redis.as_ref().is_some_and(|r| !r.is_up()) {
            return Err("redis_unreachable");
        }
        if self.jwks.as_ref().is_some_and(|j| !j.is_loaded()) {
            return Err("jwks_unavailable");
        }
        Ok(())
    }

    /// Ready, yet at risk: the history's Redis shard has no connected replica.
    pub fn warning(&self) -> Option<&'static str> {
        let alone = self.redis.as_ref().and_then(|r| r.history_replicas()) == Some(0);
        alone.then_some("redis_history_shard_without_replica")
    }

    /// Whether Redis answers, as last seen; `None` without Redis.
    pub fn redis_up(&self) -> Option<bool> {
        self.redis.as_ref().map(|r| r.is_up())
    }

    /// Whether the event bus can carry events now.
    pub fn bus_up(&self) -> bool {
        self.redis.as_ref().is_none_or(|r| r.is_up())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Unavailable(e.0)
    }
}

impl<A: Adapter> Clone for AppState<A> {
    fn clone(&self) -> Self {
        AppState(self.0.clone())
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
            // Answer at once rather than hang on a bus that cannot carry the request.
            Ok(_) if !state.readiness.bus_up() => Err(ApiError::Unavailable("redis unreachable".into())),
            Ok(token_index) => Ok(ApiClient { token_index }),
            Err(ApiAuthError::Unauthorized) => Err(ApiError::Unauthorized),
            Err(ApiAuthError::RateLimited { retry_after_secs }) => Err(ApiError::RateLimited { retry_after_secs }),
        }
    }
}
