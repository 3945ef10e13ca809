//! The controllers' bearer tokens, and the per-token rate limit.

use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::config::RateLimit;

/// Checks REST bearer tokens in constant time, and limits each token's request rate.
pub struct ApiAuth {
    tokens: Vec<SecretString>,
    limiter: Option<DefaultKeyedRateLimiter<usize>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiAuthError {
    /// No `Authorization: Bearer`, or not a configured token.
    Unauthorized,
    /// The token is over its rate; retry after this many seconds.
    RateLimited { retry_after_secs: u64 },
}

impl ApiAuth {
    pub fn new(tokens: Vec<SecretString>, rate_limit: Option<RateLimit>) -> ApiAuth {
        let limiter = rate_limit.map(|r| {
            let quota = Quota::per_second(r.per_second).allow_burst(r.burst);
            RateLimiter::keyed(quota)
        });
        ApiAuth { tokens, limiter }
    }

    /// Checks an `Authorization` header value; returns which token matched.
    pub fn check(&self, authorization: Option<&[u8]>) -> Result<usize, ApiAuthError> {
        let value = authorization.ok_or(ApiAuthError::Unauthorized)?;
        let value = std::str::from_utf8(value).map_err(|_| ApiAuthError::Unauthorized)?.trim();
        let (scheme, token) = value.split_once(' ').ok_or(ApiAuthError::Unauthorized)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(ApiAuthError::Unauthorized);
        }
        let token = token.trim().as_bytes();
        // Compare against every token so timing does not reveal which one nearly matched.
        let mut matched = None;
        for (i, t) in self.tokens.iter().enumerate() {
            if bool::from(t.expose_secret().as_bytes().ct_eq(token)) {
                matched = Some(i);
            }
        }
        let index = matched.ok_or(ApiAuthError::Unauthorized)?;
        if let Some(limiter) = &self.limiter
            && let Err(not_until) = limiter.check_key(&index)
        {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let retry_after_secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            return Err(ApiAuthError::RateLimited { retry_after_secs: retry_after_secs.max(1) });
        }
        Ok(index)
    }
}

/// A quota helper for tests and configuration: `n` per second with burst `n`.
pub fn per_second(n: u32) -> Option<RateLimit> {
    NonZeroU32::new(n).map(|n| RateLimit { per_second: n, burst: n })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(limit: Option<RateLimit>) -> ApiAuth {
        ApiAuth::new(vec![SecretString::from("old"), SecretString::from("new")], limit)
    }

    #[test]
    fn any_configured_token_is_accepted_others_are_not() {
        let a = auth(None);
        assert_eq!(a.check(Some(b"Bearer old")), Ok(0));
        assert_eq!(a.check(Some(b"bearer new")), Ok(1));
        assert_eq!(a.check(Some(b"Bearer nope")), Err(ApiAuthError::Unauthorized));
        assert_eq!(a.check(Some(b"Basic old")), Err(ApiAuthError::Unauthorized));
        assert_eq!(a.check(Some(b"Bearer")), Err(ApiAuthError::Unauthorized));
        assert_eq!(a.check(None), Err(ApiAuthError::Unauthorized));
    }

    #[test]
    fn each_token_has_its_own_rate() {
        let a = auth(per_second(2));
        assert!(a.check(Some(b"Bearer old")).is_ok());
        assert!(a.check(Some(b"Bearer old")).is_ok());
        assert!(matches!(a.check(Some(b"Bearer old")), Err(ApiAuthError::RateLimited { retry_after_secs: 1 })));
        assert!(a.check(Some(b"Bearer new")).is_ok());
    }
}
