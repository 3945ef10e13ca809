//! On a Redis Cluster, whether an append may be acknowledged, and where the log is read.
//! One gate per partition of the history (each partition's keys live on one shard);
//! what follows is about that partition's shard.
//! Redis replicates asynchronously: a primary that fails right after answering takes the
//! event with it unless a replica had it. After each append, `WAIT 1 <wait>` on the
//! history's primary (same connection as the append, so it covers it):
//! - a replica acknowledged: `202`;
//! - none did, yet one is connected (`INFO replication`): the append fails (`503`). It is
//!   stored on the primary; the caller's retry with the same key finds it and waits for a
//!   replica again;
//! - none is connected, yet the cluster knows a replica of the shard that it does not
//!   flag as failing (`CLUSTER NODES`): it may be reconnecting, so appends fail too, and
//!   are refused before anything is stored, for at most [`GONE_AFTER_MS`];
//! - none is connected and none is known (after a failover, the old primary is down), or
//!   none has been connected for [`GONE_AFTER_MS`]: the shard is *alone*. That is
//!   reported in the log, in `fixrx_redis_history_replicas` and in `/ready`'s body, and
//!   appends go on, unless `REDIS_REQUIRE_REPLICA` makes them fail (before anything is
//!   stored). `WAIT` would block for its whole timeout on every append then, so the
//!   replicas are counted again each second instead, and `WAIT` resumes when one is back.
//!
//! What is delivered follows the same rule: each instance's reader reads the log on a
//! replica of the shard in sync with its primary, and on the primary only when the shard
//! is alone. An event on the primary alone (answered `503`) is then never delivered from a
//! primary that may still lose it: were it to fail before its replica had the event, the
//! retry stores it again and it is delivered once, from the new primary. A recovery reads
//! the rooms on the primary, so an event stored less than the replica wait before a
//! failover can still reach a recovering socket and be lost with that primary.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use crate::config::ReplicaPolicy;
use crate::redis_link::RedisConn;
use crate::redis_link::RedisHealth;

use super::HistoryError;

/// How long the replicas counted last are taken as still true.
const RECHECK_MS: u64 = 1_000;
/// A shard counts as without replica once none has been connected for this long: a
/// replica that is reconnecting (a dropped link, a restart) is waited for, with `503`s,
/// not skipped.
const GONE_AFTER_MS: u64 = 10_000;

/// The replicas last counted for each partition's shard (`-1`: not counted yet): the
/// gauge `/ready` and `/metrics` read shows the fewest, so that one shard without a
/// replica is reported whatever the others have.
pub(super) struct ShardCounts {
    health: Arc<RedisHealth>,
    counts: Vec<AtomicI64>,
}

impl ShardCounts {
    pub(super) fn new(health: Arc<RedisHealth>, partitions: usize) -> Arc<ShardCounts> {
        Arc::new(ShardCounts { health, counts: (0..partitions.max(1)).map(|_| AtomicI64::new(-1)).collect() })
    }

    fn get(&self, part: usize) -> Option<u64> {
        self.counts.get(part).and_then(|c| u64::try_from(c.load(Ordering::Relaxed)).ok())
    }

    fn set(&self, part: usize, replicas: u64) {
        if let Some(c) = self.counts.get(part) {
            c.store(i64::try_from(replicas).unwrap_or(i64::MAX), Ordering::Relaxed);
        }
        let fewest = self.counts.iter().filter_map(|c| u64::try_from(c.load(Ordering::Relaxed)).ok()).min();
        if let Some(fewest) = fewest {
            self.health.set_history_replicas(fewest);
        }
    }
}

pub(super) struct ReplicaGate {
    policy: ReplicaPolicy,
    shards: Arc<ShardCounts>,
    /// This gate's partition, its place in `shards`.
    part: usize,
    /// Since when (ms since `started`) no replica has been seen connected; `0`: one was.
    none_since: AtomicU64,
    /// When the replicas were last counted.
    counted_at: AtomicU64,
    /// At the last count, the cluster knew a replica of the shard, not failing.
    known: AtomicBool,
    started: Instant,
}

impl ReplicaGate {
    pub(super) fn new(policy: ReplicaPolicy, (shards, part): (Arc<ShardCounts>, usize)) -> ReplicaGate {
        let (none_since, counted_at, known) = (AtomicU64::new(0), AtomicU64::new(0), AtomicBool::new(true));
        ReplicaGate { policy, shards, part, none_since, counted_at, known, started: Instant::now() }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX).max(1)
    }

    /// The shard has no connected replica and none to wait for, as last counted.
    pub(super) fn alone(&self) -> bool {
        let since = self.none_since.load(Ordering::Relaxed);
        since != 0 && (!self.known.load(Ordering::Relaxed) || self.now_ms() - since >= GONE_AFTER_MS)
    }

    /// Before an append, on a shard last seen without a connected replica (counted again
    /// if that is older than [`RECHECK_MS`]): refused at once, before anything is stored,
    /// while one may be reconnecting, or when alone with a replica required.
    pub(super) async fn admit(&self, conn: &RedisConn, key: &str) -> Result<(), HistoryError> {
        if !conn.is_cluster() || self.none_since.load(Ordering::Relaxed) == 0 {
            return Ok(());
        }
        let stale = self.now_ms() - self.counted_at.load(Ordering::Relaxed) >= RECHECK_MS;
        if stale && self.count(conn, key).await? > 0 {
            return Ok(());
        }
        match self.alone() {
            true => self.verdict_alone(),
            false => Err(reconnecting()),
        }
    }

    /// `Ok` when the appends just made on `conn` (to `key`'s shard) may be acknowledged.
    pub(super) async fn check(&self, conn: &RedisConn, key: &str) -> Result<(), HistoryError> {
        if !conn.is_cluster() {
            return Ok(());
        }
        if self.still_alone(conn, key).await? {
            return self.verdict_alone();
        }
        let wait_ms = u64::try_from(self.policy.wait.as_millis()).unwrap_or(u64::MAX);
        if matches!(conn.replicas_with_writes(key, wait_ms).await, Ok(Some(1..))) {
            self.seen(1, false);
            return Ok(());
        }
        match self.count(conn, key).await? {
            0 if self.alone() => self.verdict_alone(),
            0 => Err(reconnecting()),
            _ => Err(unacknowledged(wait_ms)),
        }
    }

    /// Counts the replicas again when the last count is older than [`RECHECK_MS`]: the
    /// reader's way of knowing where to read, on an instance that appends nothing.
    pub(super) async fn refresh(&self, conn: &RedisConn, key: &str) {
        if conn.is_cluster() && self.now_ms() - self.counted_at.load(Ordering::Relaxed) >= RECHECK_MS {
            let _ = self.count(conn, key).await;
        }
    }

    /// Whether the shard is alone and still is: taken as known for [`RECHECK_MS`], then
    /// counted again (`WAIT` would block its whole timeout on a shard without replica).
    async fn still_alone(&self, conn: &RedisConn, key: &str) -> Result<bool, HistoryError> {
        if !self.alone() {
            return Ok(false);
        }
        if self.now_ms() - self.counted_at.load(Ordering::Relaxed) < RECHECK_MS {
            return Ok(true);
        }
        Ok(self.count(conn, key).await? == 0)
    }

    /// Counts the shard's connected replicas, and records it; with none connected, also
    /// whether the cluster knows one that may come back.
    async fn count(&self, conn: &RedisConn, key: &str) -> Result<u64, HistoryError> {
        let unknown = |e: redis::RedisError| {
            HistoryError::Unavailable(format!(
                "could not tell whether a replica of the history's Redis shard has the event: {e}"
            ))
        };
        // One Redis: nothing to wait for.
        let Some(n) = conn.connected_replicas(key).await.map_err(unknown)? else { return Ok(1) };
        if n == 0 {
            let known = conn.known_replicas(key).await.map_err(unknown)?.unwrap_or(0);
            self.known.store(known > 0, Ordering::Relaxed);
        }
        self.counted_at.store(self.now_ms(), Ordering::Relaxed);
        self.seen(n, true);
        Ok(n)
    }

    fn verdict_alone(&self) -> Result<(), HistoryError> {
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
        let was_alone = self.alone();
        match replicas {
            0 => {
                let _ = self.none_since.compare_exchange(0, self.now_ms(), Ordering::Relaxed, Ordering::Relaxed);
            }
            _ => self.none_since.store(0, Ordering::Relaxed),
        }
        if exact || self.shards.get(self.part).is_none_or(|known| known < replicas) {
            self.shards.set(self.part, replicas);
        }
        match (was_alone, self.alone()) {
            (false, true) => tracing::error!(
                required = self.policy.required,
                "the history's Redis shard has had no connected replica for {} s: a failover now would lose recent events",
                GONE_AFTER_MS / 1000
            ),
            (true, false) => tracing::info!("the history's Redis shard has a connected replica again"),
            _ => {}
        }
    }
}

fn reconnecting() -> HistoryError {
    HistoryError::Unavailable(format!(
        "the history's Redis shard has no connected replica right now (one may be reconnecting; \
         after {} s without one, appends go on): retry with the same id or Idempotency-Key",
        GONE_AFTER_MS / 1000
    ))
}

fn unacknowledged(wait_ms: u64) -> HistoryError {
    HistoryError::Unavailable(format!(
        "no replica of the history's Redis shard acknowledged the event within {wait_ms} ms \
         (REDIS_REPLICA_WAIT_MS); it may still be delivered: retry with the same id or Idempotency-Key"
    ))
}
