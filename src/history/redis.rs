//! The history in Redis, shared by every instance: Redis Streams.
//!
//! Why streams: an entry id is a `<ms>-<n>` sequence that Redis keeps strictly
//! increasing, a range read after a position is one command, trimming by count
//! (`MAXLEN`) and by age (`MINID`) is built in, and a reader can block on the log and
//! resume from its last id after a lost connection, so nothing published while it was
//! reconnecting is skipped (pub/sub would have dropped it).
//!
//! Its keys are laid out in `history/redis_keys.rs`, once per partition
//! (`history/partition.rs`); an event to rooms of several partitions is appended to each
//! in turn (`history/redis_spread.rs`).
//!
//! Every read of a room has a `COUNT`: a snapshot's first pages share one page between
//! them, and a recovery reads the rest with `XRANGE room (<last sent> <room's newest>
//! COUNT <page>`, so no reply Redis builds for a recovery holds more than a page, however
//! long the room's history or however often a client comes back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use redis::Script;

use crate::config::ReplicaPolicy;
use crate::redis_link::RedisConn;
use crate::redis_link::{RedisHealth, RedisSource};

use super::partition::{Partitioner, hash_tag};
use super::redis_keys::Keys;
use super::replicas::{ReplicaGate, ShardCounts};
use super::{Appended, AppendedOnce, HistoryConfig, HistoryError, LogSink, OnceKey, Publish};

pub(super) use super::redis_append::{Call, Item, Step};

/// Events the log keeps for readers that fall behind (a reader further behind than this
/// sees a gap and tells its sockets); approximate, as Redis trims whole nodes.
pub(super) const LOG_MAXLEN: u64 = 50_000;

const SNAPSHOT: &str = include_str!("snapshot.lua");

/// Records the partition count the first time, and answers the one recorded.
const LAYOUT: &str = r"
if redis.call('SETNX', KEYS[1], ARGV[1]) == 1 then return ARGV[1] end
return redis.call('GET', KEYS[1])
";

/// Where the partition count is recorded (one Redis, or the cluster slot of the
/// single-partition history).
const LAYOUT_KEY: &str = "fixrx:{history}:partitions";

/// One partition of the history: its keys, and the state of its shard's replicas.
pub(super) struct Part {
    pub(super) keys: Arc<Keys>,
    pub(super) replicas: Arc<ReplicaGate>,
}

pub struct RedisHistory {
    pub(super) config: HistoryConfig,
    pub(super) partitioner: Partitioner,
    pub(super) parts: Vec<Part>,
    /// Where round trips are timed (`fixrx_redis_round_trip_seconds`).
    pub(super) health: Arc<RedisHealth>,
    /// Redis's clock minus ours (ms), learned from every answer: deadlines are in
    /// Redis's clock.
    pub(super) clock_offset_ms: std::sync::atomic::AtomicI64,
    pub(super) conn: RedisConn,
    source: RedisSource,
    closed: Arc<AtomicBool>,
    pub(super) append: Script,
    pub(super) snapshot: Script,
    readers: super::redis_reader::Readers,
    pub(super) settler: super::redis_settle::Settler,
    /// Itself, for the background tasks an append starts (`redis_spread`).
    pub(super) this: std::sync::OnceLock<std::sync::Weak<RedisHistory>>,
}

/// How long a socket waits for the reader of a partition it needs to take its place.
const NEED_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

pub(super) fn unavailable(e: impl std::fmt::Display) -> HistoryError {
    HistoryError::Unavailable(e.to_string())
}

impl RedisHistory {
    /// `conn` carries appends and snapshots; the readers open their own connections from
    /// `source` (their blocking reads must not hold up commands).
    /// `health` carries what the replica check sees to `/ready` and `/metrics`.
    pub fn new(
        config: HistoryConfig,
        (policy, partitions): (ReplicaPolicy, u16),
        health: Arc<RedisHealth>,
        (conn, source): (RedisConn, RedisSource),
    ) -> Result<RedisHistory, redis::RedisError> {
        let partitioner = Partitioner::new(partitions);
        let n = partitioner.count();
        let shards = ShardCounts::new(health.clone(), n);
        let parts = (0..n)
            .map(|k| Part {
                keys: Arc::new(Keys::new(&hash_tag(k, n))),
                replicas: Arc::new(ReplicaGate::new(policy, (shards.clone(), k))),
            })
            .collect();
        let readers = super::redis_reader::Readers::new(n, health.log_reads().clone());
        Ok(RedisHistory {
            readers,
            settler: super::redis_settle::Settler::new(),
            this: std::sync::OnceLock::new(),
            partitioner,
            parts,
            health,
            clock_offset_ms: std::sync::atomic::AtomicI64::new(0),
            config,
            conn,
            source,
            closed: Arc::new(AtomicBool::new(false)),
            append: Script::new(super::redis_append::APPEND),
            snapshot: Script::new(SNAPSHOT),
        })
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// Checks that the history in this Redis is split as ours is, recording our count the
    /// first time: instances with different counts would write and read different keys,
    /// and miss each other's events. `Err` names both counts.
    pub async fn check_layout(&self) -> Result<(), String> {
        let ours = self.parts.len().to_string();
        let recorded: String = Script::new(LAYOUT)
            .key(LAYOUT_KEY)
            .arg(&ours)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(|e| format!("cannot read the history's layout: {e}"))?;
        if recorded == ours {
            return Ok(());
        }
        Err(format!(
            "REDIS_HISTORY_PARTITIONS={ours}, but the history in this Redis is split into {recorded}: every \
             instance must use the same value (to change it on purpose, stop every instance and delete the \
             key {LAYOUT_KEY}; positions issued before become unknown)"
        ))
    }

    pub async fn append(&self, publish: Publish) -> Result<Appended, HistoryError> {
        match self.append_events(vec![(publish, None)], false).await?.pop() {
            Some(AppendedOnce::Appended(appended)) => Ok(appended),
            _ => Err(unavailable("an append without a key was answered as a replay")),
        }
    }

    /// Appends unless `once`'s key is recorded, recording it with the event, in one script
    /// (see [`super::OnceKey`]). A timed-out call may still run later: its retry then
    /// finds the key and appends nothing.
    pub async fn append_once(&self, publish: Publish, once: &OnceKey) -> Result<AppendedOnce, HistoryError> {
        self.append_events(vec![(publish, Some(once.clone()))], false)
            .await?
            .pop()
            .ok_or_else(|| unavailable("unexpected append reply from Redis"))
    }

    /// Appends a batch in one script ([`APPEND`]): all of it or none of it, in order,
    /// each keyed event at most once per key. One answer per event, in order.
    /// A batch has a deadline ([`SCRIPT_DEADLINE_MS`]): answered with an error, it is
    /// never appended later.
    pub async fn append_batch(
        &self,
        batch: Vec<(Publish, Option<OnceKey>)>,
    ) -> Result<Vec<AppendedOnce>, HistoryError> {
        self.append_events(batch, true).await
    }

    /// Sets where the readers hand the logs, and starts the reader of a single partition
    /// (with several, each starts when a socket needs it: [`Self::need`]); with several,
    /// also the sweep that completes appends spanning them (`redis_spread`) and the task
    /// that deletes their records (`redis_settle`).
    pub fn start_reader(self: &Arc<Self>, sink: Arc<dyn LogSink>) {
        self.readers.set_sink(sink);
        let _ = self.this.set(Arc::downgrade(self));
        if self.spreads() {
            let (sweeper, settler) = (self.clone(), self.clone());
            tokio::spawn(async move { sweeper.sweep_forever().await });
            tokio::spawn(async move { settler.settle_forever().await });
        } else {
            let _ = self.start_reading(0);
        }
    }

    /// Starts the readers of `parts` not yet reading, and waits until each has taken its
    /// place in its log (at most [`NEED_WAIT`]: a reader that cannot reach Redis yet
    /// raises the positions of the sockets attached meanwhile when it starts, see
    /// `LogSink::started`).
    pub async fn need(&self, parts: impl IntoIterator<Item = usize>) {
        let waits: Vec<_> = parts.into_iter().filter_map(|part| self.start_reading(part)).collect();
        for mut started in waits {
            let _ = tokio::time::timeout(NEED_WAIT, started.wait_for(|s| *s)).await;
        }
    }

    fn start_reading(&self, part: usize) -> Option<tokio::sync::watch::Receiver<bool>> {
        let p = self.parts.get(part)?;
        self.readers.start(part, |started| super::redis_reader::Reader {
            source: self.source.clone(),
            keys: p.keys.clone(),
            part,
            closed: self.closed.clone(),
            offsets: self.config.enabled,
            replicas: p.replicas.clone(),
            started,
            reads: self.readers.reads.clone(),
        })
    }

    pub fn partitioner(&self) -> Partitioner {
        self.partitioner
    }

    /// The keys of partition `part` (of a room the partitioner placed: always there).
    pub(super) fn keys_of(&self, part: usize) -> &Keys {
        &self.parts[part.min(self.parts.len() - 1)].keys
    }

    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Whether appends may span partitions, and so need a sweep.
    pub(super) fn spreads(&self) -> bool {
        self.parts.len() > 1
    }
}
