//! Adapter selection: the one place where a single instance and a Redis-backed
//! cluster differ (adapter, idempotency keys, history). Everything else is generic
//! over the adapter.

use std::time::Duration;

use socketioxide::adapter::{Emitter, LocalAdapter};
use socketioxide_redis::{CustomRedisAdapter, RedisAdapterConfig, RedisAdapterCtr};

use crate::app::{self, App, BuildError, Bus};
use crate::config::{Config, RedisTls};
use crate::history::History;
use crate::history::redis::RedisHistory;
use crate::idempotency::{IdempotencyStore, RedisStore};
use crate::redis_link::{self, ManagedDriver, RedisError, tls};

/// The Socket.IO adapter over Redis pub/sub, on our reconnecting driver.
pub type RedisAdapter = CustomRedisAdapter<Emitter, ManagedDriver>;

/// The server built on the adapter the configuration chose, ready to serve.
pub enum Built {
    Memory(App<LocalAdapter>),
    Redis(App<RedisAdapter>),
}

#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    #[error("{0}")]
    Build(#[from] BuildError),
    #[error("REDIS_URL: cannot connect to Redis: {0}")]
    Connect(#[from] RedisError),
    #[error("REDIS_URL: cannot subscribe to Redis: {0}")]
    Subscribe(String),
    #[error("REDIS_URL: {0}")]
    Url(#[from] ::redis::RedisError),
    #[error("REDIS_CLUSTER_URLS: cannot connect to the Redis Cluster: {0}")]
    Cluster(RedisError),
    /// A TLS handshake refused, one way or the other: the line names the variable to fix.
    #[error("{0}")]
    Tls(String),
    /// The history in Redis is laid out otherwise than this instance would write it.
    #[error("{0}")]
    Layout(String),
}

/// A refused TLS handshake names the TLS variable to fix; anything else, the URL's.
fn connect_error(
    e: RedisError,
    tls: &RedisTls,
    url_var: &'static str,
    other: fn(RedisError) -> ScaleError,
) -> ScaleError {
    match tls::blame(&e.to_string(), tls, url_var) {
        Some(line) => ScaleError::Tls(line),
        None => other(e),
    }
}

/// How long start-up waits for Redis before giving up with a clear error.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a cross-instance request (presence, disconnect) waits for the other instances.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

pub async fn build(config: &Config) -> Result<Built, ScaleError> {
    use secrecy::ExposeSecret;
    let tls = &config.redis.tls;
    if config.redis.uses_tls() {
        tls::install_crypto_provider();
    }
    let driver = match (&config.redis.url, config.redis.cluster_urls.as_slice()) {
        (Some(url), _) => ManagedDriver::connect(url.expose_secret(), tls, CONNECT_TIMEOUT)
            .await
            .map_err(|e| connect_error(e, tls, "REDIS_URL", ScaleError::Connect))?,
        (None, []) => {
            let (app, ()) = app::build::<LocalAdapter>(config, (), Bus::memory(config))?;
            return Ok(Built::Memory(app));
        }
        (None, seeds) => {
            let seeds: Vec<String> = seeds.iter().map(|s| s.expose_secret().to_owned()).collect();
            ManagedDriver::connect_cluster(&seeds, tls, CONNECT_TIMEOUT)
                .await
                .map_err(|e| connect_error(e, tls, "REDIS_CLUSTER_URLS", ScaleError::Cluster))?
        }
    };
    let history = RedisHistory::new(
        config.history.clone(),
        (config.redis.replicas, config.redis.history_partitions),
        driver.health.clone(),
        (driver.commands(), driver.source()),
    )?;
    history.check_layout().await.map_err(ScaleError::Layout)?;
    if config.history.enabled {
        redis_link::check_eviction_policy(driver.commands()).await;
    }
    let bus = Bus {
        idempotency: IdempotencyStore::Redis(RedisStore::new(config.api.idempotency_ttl)),
        history: History::Redis(std::sync::Arc::new(history)),
        redis: Some(driver.health.clone()),
        redis_conn: Some(driver.commands()),
        pubsub: config.admin.is_some().then(|| driver.clone()),
    };
    let adapter_config = RedisAdapterConfig::new().with_prefix("fixrx-realtime").with_request_timeout(REQUEST_TIMEOUT);
    let ctr = RedisAdapterCtr::new_with_driver(driver, adapter_config);
    let (app, init) = app::build::<RedisAdapter>(config, ctr, bus)?;
    init.await.map_err(|e| ScaleError::Subscribe(e.to_string()))?;
    let through = if config.redis.url.is_some() { "Redis" } else { "a Redis Cluster (sharded pub/sub)" };
    tracing::info!(through, "scale-out: rooms and events span every instance");
    Ok(Built::Redis(app))
}
