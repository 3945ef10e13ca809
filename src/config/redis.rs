//! Where Redis is and how much an append trusts it: `REDIS_URL` or `REDIS_CLUSTER_URLS`,
//! and on a cluster, how appends wait for the history shard's replica. TLS settings for
//! `rediss://` are in `redis_tls.rs`.

use std::time::Duration;

use secrecy::SecretString;

use super::redis_tls::{RedisTls, parse_redis_tls};
use super::{ConfigError, err, parse_bool, parse_bounded};

/// The shared Redis, if any.
#[derive(Debug, Clone, Default)]
pub struct RedisConfig {
    /// `REDIS_URL`: one Redis.
    pub url: Option<SecretString>,
    /// `REDIS_CLUSTER_URLS`: seed nodes of a Redis Cluster (instead of `REDIS_URL`).
    pub cluster_urls: Vec<SecretString>,
    pub replicas: ReplicaPolicy,
    /// `REDIS_HISTORY_PARTITIONS`: how many parts the history is split into, each under
    /// its own hash tag, so that a cluster's primaries share its work (1: one part).
    pub history_partitions: u16,
    /// `REDIS_TLS_*`: trust and identity on `rediss://` (empty otherwise).
    pub tls: RedisTls,
}

/// On a Redis Cluster, what `202` waits for: Redis replicates asynchronously, and a
/// primary that fails right after answering would take an accepted event with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaPolicy {
    /// `REDIS_REPLICA_WAIT_MS`: how long an append waits for a connected replica of the
    /// history's shard to acknowledge it; past it the append is refused (`503`).
    pub wait: Duration,
    /// `REDIS_REQUIRE_REPLICA`: refuse appends while the shard has no connected replica
    /// at all (by default they go on, and the shard is reported).
    pub required: bool,
}

impl Default for ReplicaPolicy {
    fn default() -> Self {
        ReplicaPolicy { wait: Duration::from_millis(500), required: false }
    }
}

impl RedisConfig {
    pub fn is_configured(&self) -> bool {
        self.url.is_some() || !self.cluster_urls.is_empty()
    }

    /// Whether the connections are `rediss://` (TLS).
    pub fn uses_tls(&self) -> bool {
        use secrecy::ExposeSecret;
        let url = self.url.iter().chain(&self.cluster_urls).next();
        url.is_some_and(|u| u.expose_secret().starts_with("rediss://"))
    }
}

pub(super) fn parse_redis(get: &impl Fn(&str) -> Option<String>) -> Result<RedisConfig, ConfigError> {
    let url = match get("REDIS_URL") {
        None => None,
        Some(url) => {
            let scheme_ok = ["redis://", "rediss://", "redis+unix://", "unix://"].iter().any(|s| url.starts_with(s));
            if !scheme_ok || url.len() <= "redis://".len() {
                return Err(err("REDIS_URL", "expected a URL such as redis://host:6379/0"));
            }
            Some(SecretString::from(url))
        }
    };
    let cluster_urls = parse_cluster_urls(get("REDIS_CLUSTER_URLS").as_deref())?;
    if url.is_some() && !cluster_urls.is_empty() {
        return Err(err("REDIS_CLUSTER_URLS", "set either REDIS_URL or REDIS_CLUSTER_URLS, not both"));
    }
    let wait = parse_bounded(get, "REDIS_REPLICA_WAIT_MS", 500, 60_000)?;
    if wait == 0 {
        return Err(err("REDIS_REPLICA_WAIT_MS", "must be at least 1 ms"));
    }
    let replicas =
        ReplicaPolicy { wait: Duration::from_millis(wait), required: parse_bool(get, "REDIS_REQUIRE_REPLICA", false)? };
    let partitions = parse_bounded(get, "REDIS_HISTORY_PARTITIONS", 1, u64::from(MAX_PARTITIONS))?;
    if partitions == 0 {
        return Err(err("REDIS_HISTORY_PARTITIONS", "must be at least 1"));
    }
    let history_partitions = u16::try_from(partitions).unwrap_or(MAX_PARTITIONS);
    let mut config = RedisConfig { url, cluster_urls, replicas, history_partitions, tls: RedisTls::default() };
    config.tls = parse_redis_tls(get, config.uses_tls())?;
    Ok(config)
}

/// Most history partitions: each is one reading connection per instance.
const MAX_PARTITIONS: u16 = 256;

/// `redis://host:port` (or `rediss://`) seed nodes, comma-separated.
fn parse_cluster_urls(value: Option<&str>) -> Result<Vec<SecretString>, ConfigError> {
    let Some(value) = value else { return Ok(Vec::new()) };
    let mut seeds = Vec::new();
    for url in value.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        let host = url.strip_prefix("redis://").or_else(|| url.strip_prefix("rediss://"));
        if host.is_none_or(|h| h.is_empty() || h.starts_with('/')) {
            return Err(err(
                "REDIS_CLUSTER_URLS",
                "expected seed nodes such as redis://10.0.0.1:6379,redis://10.0.0.2:6379",
            ));
        }
        seeds.push(SecretString::from(url.to_owned()));
    }
    Ok(seeds)
}
