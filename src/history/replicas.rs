//! On a Redis Cluster, whether an append may be acknowledged: Redis replicates
//! asynchronously, so a primary that fails right after answering takes the event with it
//! unless a replica had it. After each append, `WAIT 1 <wait>` on the history's primary
//! (same connection as the append, so it covers it):
//! - a replica acknowledged: `202`;
//! - none did, yet one is connected (`INFO replication`): the append fails (`503`). It is
//!   stored on the primary and may still be delivered; the caller's retry with the same
//!   key finds it and waits for a replica again, so it is delivered once either way;
//! - no replica is connected at all (its replica is down for good): reported in the
//!   log, in `fixrx_redis_history_replicas` and in `/ready`'s body, and the append goes
//!   on, unless `REDIS_REQUIRE_REPLICA` makes it fail (then before anything is stored,
//!   once the shard is known alone). `WAIT` would block for its whole timeout on every
//!   append then, so the replicas are counted again at most once a second instead, and
//!   `WAIT` resumes when one is back.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::config::ReplicaPolicy;
use crate::scale::conn::RedisConn;
use crate::scale::redis::RedisHealth;

use super::HistoryError;

/// How long a shard seen without any connected replica is taken to still have none.
const RECHECK_MS: u64 = 1_000;

pub(super) struct ReplicaGate {
    policy: ReplicaPolicy,
    health: Arc<RedisHealth>,
    /// When (ms since `started`) the shard was last seen with no connected replica;
    /// `0`: it had one.
    alone_since: AtomicU64,
    started: Instant,
}

impl ReplicaGate {
    pub(super) fn new(policy: ReplicaPolicy, health: Arc<RedisHealth>) -> ReplicaGate {
        ReplicaGate { policy, health, alone_since: AtomicU64::new(0), started: Instant::now() }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX).max(1)
    }

    /// Before an append: with a replica required, a shard seen without one refuses at
    /// once, before anything is stored.
    pub(super) async fn admit(&self, conn: &RedisConn, key: &str) -> Result<(), HistoryError> {
        match self.policy.required && self.still_alone(conn, key).await? {
            true => self.alone(),
            false => Ok(()),
        }
    }

    /// `Ok` when the appends just made on `conn` (to `key`'s shard) may be acknowledged.
    pub(super) async fn check(&self, conn: &RedisConn, key: &str) -> Result<(), HistoryError> {
        if !conn.is_cluster() {
            return Ok(());
        }
        if self.still_alone(conn, key).await? {
            return self.alone();
        }
        let wait_ms = u64::try_from(self.policy.wait.as_millis()).unwrap_or(u64::MAX);
        if matches!(conn.replicas_with_writes(key, wait_ms).await, Ok(Some(1..))) {
            self.seen(1, false);
            return Ok(());
        }
        match self.count(conn, key).await? {
            0 => self.alone(),
            _ => Err(unacknowledged(wait_ms)),
        }
    }

    /// Whether the shard was last seen without a connected replica and still has none:
    /// taken as known for a second, then counted again (`WAIT` would block its whole
    /// timeout on a shard without replica).
    async fn still_alone(&self, conn: &RedisConn, key: &str) -> Result<bool, HistoryError> {
        let alone_since = self.alone_since.load(Ordering::Relaxed);
        if alone_since == 0 {
            return Ok(false);
        }
        if self.now_ms() - alone_since < RECHECK_MS {
            return Ok(true);
        }
        Ok(self.count(conn, key).await? == 0)
    }

    /// Counts the shard's connected replicas, and records it.
    async fn count(&self, conn: &RedisConn, key: &str) -> Result<u64, HistoryError> {
        match conn.connected_replicas(key).await {
            Ok(Some(n)) => {
                self.seen(n, true);
                Ok(n)
            }
            // One Redis: nothing to wait for.
            Ok(None) => Ok(1),
            Err(e) => Err(HistoryError::Unavailable(format!(
                "could not tell whether a replica of the history's Redis shard has the event: {e}"
            ))),
        }
    }

    fn alone(&self) -> Result<(), HistoryError> {
        match self.policy.required {
            true => Err(HistoryError::Unavailable(
                "the history's Redis shard has no connected replica (REDIS_REQUIRE_REPLICA=true)".into(),
            )),
            false => Ok(()),
        }
    }

    /// Records what was seen (`exact`: counted, else "at least"), logging each change
    /// between "alone" and "replicated" once.
    fn seen(&self, replicas: u64, exact: bool) {
        let was_alone = self.alone_since.load(Ordering::Relaxed) != 0;
        let alone = replicas == 0;
        self.alone_since.store(if alone { self.now_ms() } else { 0 }, Ordering::Relaxed);
        if exact || self.health.history_replicas().is_none_or(|known| known < replicas) {
            self.health.set_history_replicas(replicas);
        }
        match (was_alone, alone) {
            (false, true) => tracing::error!(
                required = self.policy.required,
                "the history's Redis shard has no connected replica: a failover now would lose recent events"
            ),
            (true, false) => tracing::info!("the history's Redis shard has a connected replica again"),
            _ => {}
        }
    }
}

fn unacknowledged(wait_ms: u64) -> HistoryError {
    HistoryError::Unavailable(format!(
        "no replica of the history's Redis shard acknowledged the event within {wait_ms} ms \
         (REDIS_REPLICA_WAIT_MS); it may still be delivered: retry with the same id or Idempotency-Key"
    ))
}
