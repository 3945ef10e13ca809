//! An identity provider's keys (`JWT_JWKS_URL`), kept by `kid`.
//!
//! Fetched at start-up (retried with backoff until it loads), refreshed when the document's
//! `Cache-Control: max-age` runs out, and when a token names a `kid` not yet known: one fetch
//! at a time (handshakes arriving meanwhile share its answer), and for unknown kids at most one
//! per [`REFRESH_FLOOR`], however many arrive. A failed fetch changes nothing: the keys already
//! known keep verifying while the endpoint is down. Each key's algorithm comes from the JWK
//! (`kty`, `crv`, `alg`), never from a token.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::time::Instant;
use url::Url;

/// Longest one fetch may take, from connecting to the last byte.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Fewest seconds between two fetches caused by unknown `kid`s.
pub const REFRESH_FLOOR: Duration = Duration::from_secs(5);
/// Bounds on the document's `Cache-Control: max-age`, and the age used without one.
const MIN_MAX_AGE: Duration = Duration::from_secs(60);
const MAX_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(600);
/// Retries while the endpoint fails: from the first to the longest wait, doubling.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// A key set is a few KiB; a larger answer is not one.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// Redirects followed to reach the document.
const MAX_REDIRECTS: usize = 3;

/// One verification key of the set, with the one algorithm it verifies.
pub struct JwksKey {
    pub key: DecodingKey,
    pub alg: Algorithm,
}

/// Why a fetch brought no key set. The keys known before stay in use.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("no answer within {FETCH_TIMEOUT:?}")]
    Timeout,
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("answered HTTP {0}")]
    Status(u16),
    #[error("the document is larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge,
    #[error("not a JWKS document: {0}")]
    Invalid(String),
    #[error("the document holds no usable signing key (RS256, ES256 or EdDSA, with a kid)")]
    NoKeys,
}

/// What the last fetch did, to log each change of state once.
const STATE_NEVER: u8 = 0;
const STATE_OK: u8 = 1;
const STATE_FAILING: u8 = 2;

/// The cached key set. Shared by every verifier clone and by `/ready`.
pub struct Jwks {
    url: Url,
    client: reqwest::Client,
    keys: RwLock<Arc<HashMap<String, Arc<JwksKey>>>>,
    loaded: AtomicBool,
    state: AtomicU8,
    /// Attempts finished, so a handshake that waited for a fetch knows one ended meanwhile.
    attempts: AtomicU64,
    /// Held for the whole of a fetch (one in flight at a time); holds when the last fetch
    /// for an unknown `kid` began.
    fetching: tokio::sync::Mutex<Option<Instant>>,
    /// Fetches sent, for the metrics and the tests.
    fetches: AtomicU64,
}

impl Jwks {
    pub fn new(url: Url) -> Result<Jwks, reqwest::Error> {
        // A redirect is followed (providers move documents behind CDNs), but never from
        // https:// to clear text: a key set read in clear text can be swapped on the way.
        let https = url.scheme() == "https";
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                attempt.error("too many redirects")
            } else if https && attempt.url().scheme() != "https" {
                attempt.error("redirected from https:// to another scheme")
            } else {
                attempt.follow()
            }
        });
        let client = reqwest::Client::builder()
            .user_agent(concat!("fixrx-realtime/", env!("CARGO_PKG_VERSION")))
            .timeout(FETCH_TIMEOUT)
            .redirect(redirects)
            .build()?;
        Ok(Jwks {
            url,
            client,
            keys: RwLock::new(Arc::default()),
            loaded: AtomicBool::new(false),
            state: AtomicU8::new(STATE_NEVER),
            attempts: AtomicU64::new(0),
            fetching: tokio::sync::Mutex::new(None),
            fetches: AtomicU64::new(0),
        })
    }

    /// Whether a key set was ever loaded (`/ready` answers 503 until it is).
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Fetches sent so far.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// The key named `kid` in the set as last loaded.
    pub fn get(&self, kid: &str) -> Option<Arc<JwksKey>> {
        let keys = self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        keys.get(kid).cloned()
    }

    /// The key named `kid`; when unknown, the set is fetched again first if the floor allows,
    /// or the fetch in flight is waited for.
    pub async fn find(&self, kid: &str) -> Option<Arc<JwksKey>> {
        if let Some(key) = self.get(kid) {
            return Some(key);
        }
        self.refresh_for_unknown_kid().await;
        self.get(kid)
    }

    async fn refresh_for_unknown_kid(&self) {
        let seen = self.attempts.load(Ordering::Acquire);
        let mut last = self.fetching.lock().await;
        // A fetch ended while this one waited: its answer is the one to use.
        if self.attempts.load(Ordering::Acquire) != seen {
            return;
        }
        if last.is_some_and(|at| at.elapsed() < REFRESH_FLOOR) {
            return;
        }
        *last = Some(Instant::now());
        let _ = self.fetch_and_store().await;
    }

    /// Loads the set now and keeps it fresh for as long as this cache is in use.
    pub fn start(self: &Arc<Self>) {
        tokio::spawn(refresh_loop(Arc::downgrade(self)));
    }

    /// One fetch; on success the set is replaced and its `max-age` returned.
    async fn fetch_and_store(&self) -> Result<Duration, FetchError> {
        let result = self.fetch().await.and_then(|(doc, max_age)| Ok((parse_keys(&doc)?, max_age)));
        self.attempts.fetch_add(1, Ordering::AcqRel);
        match result {
            Ok((keys, max_age)) => {
                let count = keys.len();
                *self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(keys);
                self.loaded.store(true, Ordering::Release);
                if self.state.swap(STATE_OK, Ordering::AcqRel) != STATE_OK {
                    tracing::info!(keys = count, url = %self.url.origin().ascii_serialization(), "JWKS loaded");
                }
                Ok(max_age)
            }
            Err(e) => {
                self.log_failure(&e);
                Err(e)
            }
        }
    }

    fn log_failure(&self, e: &FetchError) {
        let url = self.url.origin().ascii_serialization();
        match self.state.swap(STATE_FAILING, Ordering::AcqRel) {
            STATE_FAILING => tracing::debug!(%url, error = %e, "JWKS fetch failed again"),
            STATE_NEVER => {
                tracing::warn!(%url, error = %e, "JWKS not loaded yet: tokens cannot be verified by kid; retrying")
            }
            _ => tracing::warn!(%url, error = %e, "JWKS refresh failed: the keys already known stay in use; retrying"),
        }
    }

    /// GETs the document: its JSON and how long it may be cached.
    async fn fetch(&self) -> Result<(serde_json::Value, Duration), FetchError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let mut response = self.client.get(self.url.clone()).send().await.map_err(request_error)?;
        if !response.status().is_success() {
            return Err(FetchError::Status(response.status().as_u16()));
        }
        let max_age = max_age(response.headers());
        if response.content_length().is_some_and(|len| len > MAX_DOCUMENT_BYTES as u64) {
            return Err(FetchError::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(request_error)? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_DOCUMENT_BYTES {
                return Err(FetchError::TooLarge);
            }
        }
        let doc = serde_json::from_slice(&body).map_err(|e| FetchError::Invalid(e.to_string()))?;
        Ok((doc, max_age))
    }
}

fn request_error(e: reqwest::Error) -> FetchError {
    if e.is_timeout() {
        return FetchError::Timeout;
    }
    // The chain names the cause (connection refused, TLS, ...), not only "error sending request".
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    FetchError::Unreachable(text)
}

/// Fetches on start-up until the set loads, then whenever its `max-age` runs out; retries
/// with backoff while the endpoint fails. Ends once the cache is no longer in use.
async fn refresh_loop(jwks: Weak<Jwks>) {
    let mut retry = RETRY_FIRST;
    loop {
        let Some(cache) = jwks.upgrade() else { return };
        let result = {
            let _one_at_a_time = cache.fetching.lock().await;
            cache.fetch_and_store().await
        };
        drop(cache);
        let wait = match result {
            Ok(max_age) => {
                retry = RETRY_FIRST;
                max_age
            }
            Err(_) => {
                let wait = retry;
                retry = (retry * 2).min(RETRY_MAX);
                wait
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// `Cache-Control: max-age=N`, bounded; `no-cache` / `no-store` mean the shortest.
fn max_age(headers: &reqwest::header::HeaderMap) -> Duration {
    let Some(value) = headers.get(reqwest::header::CACHE_CONTROL).and_then(|v| v.to_str().ok()) else {
        return DEFAULT_MAX_AGE;
    };
    let mut age = DEFAULT_MAX_AGE;
    for directive in value.split(',').map(|d| d.trim().to_ascii_lowercase()) {
        if directive == "no-cache" || directive == "no-store" {
            return MIN_MAX_AGE;
        }
        if let Some(secs) = directive.strip_prefix("max-age=").and_then(|s| s.trim_matches('"').parse::<u64>().ok()) {
            age = Duration::from_secs(secs);
        }
    }
    age.clamp(MIN_MAX_AGE, MAX_MAX_AGE)
}

/// Every usable signing key of the document, by `kid`. Keys this server cannot use (other
/// algorithms, encryption keys, symmetric keys, no `kid`) are skipped, not fatal.
fn parse_keys(doc: &serde_json::Value) -> Result<HashMap<String, Arc<JwksKey>>, FetchError> {
    let listed = doc.get("keys").and_then(serde_json::Value::as_array);
    let listed = listed.ok_or_else(|| FetchError::Invalid("no `keys` array".to_owned()))?;
    let mut keys = HashMap::new();
    for value in listed {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value.clone()) else { continue };
        let (Some(kid), Some(alg)) = (jwk.common.key_id.clone(), algorithm(&jwk)) else { continue };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else { continue };
        keys.entry(kid).or_insert_with(|| Arc::new(JwksKey { key, alg }));
    }
    if keys.is_empty() {
        return Err(FetchError::NoKeys);
    }
    Ok(keys)
}

/// The one algorithm a JWK verifies, from its key type and curve; a stated `alg` must agree.
/// A symmetric (`oct`) key is never used: a public document cannot hold a shared secret.
fn algorithm(jwk: &Jwk) -> Option<Algorithm> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))) {
        return None;
    }
    let alg = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => Algorithm::EdDSA,
        _ => return None,
    };
    match jwk.common.key_algorithm {
        None => Some(alg),
        Some(stated) if stated == KeyAlgorithm::from(alg) => Some(alg),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn headers(value: &str) -> reqwest::header::HeaderMap {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::CACHE_CONTROL, value.parse().unwrap());
        h
    }

    #[test]
    fn max_age_is_read_and_bounded() {
        assert_eq!(max_age(&reqwest::header::HeaderMap::new()), DEFAULT_MAX_AGE);
        assert_eq!(max_age(&headers("public, max-age=3600, must-revalidate")), Duration::from_secs(3600));
        assert_eq!(max_age(&headers("Max-Age=5")), MIN_MAX_AGE);
        assert_eq!(max_age(&headers("max-age=99999999")), MAX_MAX_AGE);
        assert_eq!(max_age(&headers("no-store")), MIN_MAX_AGE);
        assert_eq!(max_age(&headers("max-age=abc")), DEFAULT_MAX_AGE);
    }

    #[test]
    fn keys_take_their_algorithm_from_the_jwk_and_unusable_ones_are_skipped() {
        let rsa = json!({"kty": "RSA", "kid": "r", "n": "sXch", "e": "AQAB"});
        let doc = json!({"keys": [
            rsa,
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "sXch", "e": "AQAB"},
            {"kty": "RSA", "kid": "ps", "alg": "PS256", "n": "sXch", "e": "AQAB"},
            {"kty": "RSA", "n": "sXch", "e": "AQAB"},
            {"kty": "oct", "kid": "secret", "k": "c2VjcmV0"},
            {"kty": "EC", "kid": "p384", "crv": "P-384", "x": "AA", "y": "AA"},
            {"kty": "EC", "kid": "e", "crv": "P-256", "alg": "ES256", "x": "AA", "y": "AA"},
            {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": "AA"},
            {"kty": "what"},
        ]});
        let keys = parse_keys(&doc).unwrap();
        let mut found: Vec<(&str, Algorithm)> = keys.iter().map(|(k, v)| (k.as_str(), v.alg)).collect();
        found.sort_by_key(|(k, _)| *k);
        assert_eq!(found, vec![("e", Algorithm::ES256), ("ed", Algorithm::EdDSA), ("r", Algorithm::RS256)]);
        assert!(matches!(parse_keys(&json!({"keys": []})), Err(FetchError::NoKeys)));
        assert!(matches!(parse_keys(&json!({"nope": 1})), Err(FetchError::Invalid(_))));
    }
}
