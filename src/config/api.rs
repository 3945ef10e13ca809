//! The controllers' REST API: `API_TOKEN` (several, for rotation), the body limit, the
//! per-token rate and how long an idempotency key is remembered.

use std::fmt;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::{AppEnv, ConfigError, DEV_API_TOKEN, RateLimit, err, parse_bounded, parse_num, parse_rate};

/// The controllers' REST API.
#[derive(Clone)]
pub struct ApiConfig {
    /// Accepted bearer tokens; more than one so a token can be rotated without downtime.
    pub tokens: Vec<SecretString>,
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
    /// Per-token rate limit; `None` disables it.
    pub rate_limit: Option<RateLimit>,
    /// How long an idempotency key is remembered.
    pub idempotency_ttl: Duration,
}

impl fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiConfig")
            .field("tokens", &format_args!("[{} REDACTED]", self.tokens.len()))
            .field("body_limit", &self.body_limit)
            .field("rate_limit", &self.rate_limit)
            .field("idempotency_ttl", &self.idempotency_ttl)
            .finish()
    }
}

pub(super) fn parse_api(get: &impl Fn(&str) -> Option<String>, env: AppEnv) -> Result<ApiConfig, ConfigError> {
    let tokens: Vec<SecretString> = match get("API_TOKEN") {
        Some(v) => {
            v.split(',').map(str::trim).filter(|t| !t.is_empty()).map(|t| SecretString::from(t.to_owned())).collect()
        }
        None => Vec::new(),
    };
    let tokens = match (tokens.is_empty(), env) {
        (false, _) => tokens,
        (true, AppEnv::Development) => vec![SecretString::from(DEV_API_TOKEN)],
        (true, AppEnv::Production) => {
            return Err(err("API_TOKEN", "required in production (APP_ENV=production)"));
        }
    };
    if env == AppEnv::Production && tokens.iter().any(|t| t.expose_secret() == DEV_API_TOKEN) {
        return Err(err("API_TOKEN", "the development token cannot be used in production"));
    }

    let body_limit = parse_num::<usize>(get, "REST_BODY_LIMIT", 256 * 1024)?;
    if body_limit == 0 {
        return Err(err("REST_BODY_LIMIT", "must be at least 1 byte"));
    }
    let rate_limit = parse_rate(get, ("API_RATE_LIMIT", 10_000), "API_RATE_BURST", None)?;
    let idempotency_ttl = Duration::from_secs(parse_bounded(get, "IDEMPOTENCY_TTL_SECS", 600, 30 * 86_400)?);
    Ok(ApiConfig { tokens, body_limit, rate_limit, idempotency_ttl })
}
