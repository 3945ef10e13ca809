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
use super::{Appended, AppendedOnce, Epoch, HistoryConfig, HistoryError, LogSink, OnceKey, Publish, Seq};

/// Events the log keeps for readers that fall behind (a reader further behind than this
/// sees a gap and tells its sockets); approximate, as Redis trims whole nodes.
pub(super) const LOG_MAXLEN: u64 = 50_000;
/// How long after it was sent an append script may still start: less than the 2 s the
/// connection waits for an answer (`redis_link::driver`), so a script that starts at all
/// answers before its caller gives up, and one the caller gave up on never appends.
const SCRIPT_DEADLINE_MS: i64 = 1_500;
/// How long an append's answer is kept under its call's key, for a resent call to be
/// answered from it rather than append again (see [`APPEND`]): the cluster client resends
/// a command after a dropped connection, and so does `invoke_append` on one Redis, both
/// within seconds; the margin covers a resent call that waited in a paused Redis. Each record is about 150 bytes:
/// at 1,000 appends a second, 4.5 MB.
const CALL_RECORD_MS: u64 = 30_000;

/// Appends a batch of events to the log (and, with history on, to their rooms), in
/// order, all in one script: Redis runs a script whole, so either every event of the
/// batch is appended or none is. A single event is a batch of one.
///
/// It runs on one partition: every key is under the partition's hash tag, and the events'
/// rooms are that partition's rooms.
///
/// `KEYS`: epoch, head, log, this call's record, then for each event its rooms' streams,
/// their `last:` keys in the same order, and its idempotency key when it has one.
/// `ARGV[1..7]`: a fresh epoch, history on (`1`), room size, TTL (ms), log length, a
/// deadline in Redis's own clock (unix ms, or empty for none), and how long the call's
/// record is kept (ms); then nine per event: name, rooms (`\n`-joined), except, payload,
/// room count, keyed (`1`), answer, key TTL (ms), and its places in earlier partitions
/// ([`super::Also::encode`], empty for most).
///
/// The call's record makes the script idempotent: each call has a random key, and its
/// answer is recorded there. A call whose connection dropped (a `CLIENT KILL`, a
/// failover) may have run with its answer lost; it is resent on a new connection (by the
/// cluster client, or by `invoke_append`), and a resent call that ran already is
/// answered from its record and appends nothing.
///
/// An event whose key is recorded already is answered from it and not appended again;
/// otherwise its key is recorded right after the log entry that delivers it. A batch's
/// script that starts after its deadline (it waited behind a `CLIENT PAUSE` or a slow
/// command for longer than the caller waits for an answer) appends nothing and answers
/// `late`: a batch answered with an error must never be delivered later, even in part,
/// as a retry without ids would emit it twice. A single event has no deadline: a late
/// run is settled by its key's retry (`Publisher::emit_once`).
///
/// A key is recorded as `<log id>\n<answer>`, so that a retry knows the event's place.
///
/// Returns `{epoch, now, tag, value, tag, value, ...}` (`now`: Redis's clock, unix ms):
/// per event `a` and its log id, or `r` and the recorded key; or `{'late', now}`. Its work is bounded by the batch:
/// at most `MAX_BATCH` (500) events of at most a REST body (256 KiB) in all, each with
/// about 4 commands per room, a few milliseconds of Redis's time.
const APPEND: &str = include_str!("append.lua");

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
    clock_offset_ms: std::sync::atomic::AtomicI64,
    pub(super) conn: RedisConn,
    source: RedisSource,
    closed: Arc<AtomicBool>,
    append: Script,
    pub(super) snapshot: Script,
}

enum AppendReply {
    Done(Vec<String>),
    /// The script started past its deadline and appended nothing.
    Late,
}

/// One event of an append on one partition, with its places in earlier partitions
/// ([`super::Also::encode`]).
pub(super) struct Item<'a> {
    pub(super) publish: &'a Publish,
    pub(super) once: Option<&'a OnceKey>,
    pub(super) also: String,
}

/// What an append did to one event on one partition.
pub(super) enum Step {
    Appended(Seq),
    /// Its key was recorded: where the event was then (unknown for a key an older
    /// version recorded), and the recorded answer.
    Replayed(Option<Seq>, String),
}

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
        Ok(RedisHistory {
            partitioner,
            parts,
            health,
            clock_offset_ms: std::sync::atomic::AtomicI64::new(0),
            config,
            conn,
            source,
            closed: Arc::new(AtomicBool::new(false)),
            append: Script::new(APPEND),
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

    /// Appends `items` on partition `part` in one script, in order, all or none; with
    /// `deadline`, never later than the caller waits ([`SCRIPT_DEADLINE_MS`]). Returns the
    /// partition's epoch and what happened to each item.
    pub(super) async fn append_in(
        &self,
        part: usize,
        items: &[Item<'_>],
        deadline: bool,
    ) -> Result<(Epoch, Vec<Step>), HistoryError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(HistoryError::Closed);
        }
        let Some(p) = self.parts.get(part) else { return Err(unavailable("no such history partition")) };
        p.replicas.admit(&self.conn, &p.keys.log).await?;
        let call = p.keys.call();
        let reply = match self.invoke_append(p, items, &call, deadline).await? {
            AppendReply::Late => {
                // Answered in time, yet late by Redis's clock: it waited (a stall shorter
                // than the connection's timeout), or the clocks differ. Nothing was
                // appended, and the clocks' difference is learned: try once more.
                match self.invoke_append(p, items, &call, deadline).await? {
                    AppendReply::Done(reply) => reply,
                    AppendReply::Late => return Err(unavailable("Redis's clock is running away")),
                }
            }
            AppendReply::Done(reply) => reply,
        };
        // On a cluster the replica wait covers the keys too: same slot, same connection.
        p.replicas.check(&self.conn, &p.keys.log).await?;
        let malformed = || unavailable("unexpected append reply from Redis");
        let mut parts = reply.into_iter();
        let epoch = parts.next().and_then(|e| Epoch::parse(&e)).ok_or_else(malformed)?;
        let _redis_now = parts.next().ok_or_else(malformed)?;
        let mut steps = Vec::with_capacity(items.len());
        for item in items {
            let (tag, value) = parts.next().zip(parts.next()).ok_or_else(malformed)?;
            steps.push(match tag.as_str() {
                "a" => Step::Appended(
                    Seq::parse(&value).ok_or_else(|| unavailable("Redis returned a malformed stream id"))?,
                ),
                "r" if item.once.is_some() => match value.split_once('\n') {
                    Some((seq, answer)) if Seq::parse(seq).is_some() => {
                        Step::Replayed(Seq::parse(seq), answer.to_owned())
                    }
                    _ => Step::Replayed(None, value),
                },
                _ => return Err(malformed()),
            });
        }
        Ok((epoch, steps))
    }

    /// The answer to an append on one partition, event by event.
    pub(super) fn answers(&self, epoch: Epoch, steps: Vec<Step>) -> Vec<AppendedOnce> {
        let epoch = self.config.enabled.then_some(epoch);
        let answer = |step| match step {
            Step::Appended(seq) => AppendedOnce::Appended(Appended { seq, epoch }),
            Step::Replayed(_, answer) => AppendedOnce::Replayed(answer),
        };
        steps.into_iter().map(answer).collect()
    }

    async fn invoke_append(
        &self,
        p: &Part,
        items: &[Item<'_>],
        call_key: &str,
        deadline: bool,
    ) -> Result<AppendReply, HistoryError> {
        let ttl_ms = u64::try_from(self.config.ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let local_ms = i64::try_from(crate::clock::unix_ms()).unwrap_or(i64::MAX);
        let deadline = match deadline {
            true => (local_ms + self.clock_offset_ms.load(Ordering::Relaxed) + SCRIPT_DEADLINE_MS).to_string(),
            false => String::new(),
        };
        let keys = &p.keys;
        let mut call = self.append.key(&keys.epoch);
        call.key(&keys.head).key(&keys.log).key(call_key);
        // A fresh epoch each time, used only if the store has none: a history recreated
        // (Redis restarted empty) must never get back an epoch it had before.
        call.arg(Epoch::random().to_string())
            .arg(if self.config.enabled { "1" } else { "0" })
            .arg(self.config.size)
            .arg(ttl_ms)
            .arg(LOG_MAXLEN)
            .arg(deadline)
            .arg(CALL_RECORD_MS);
        for Item { publish, once, also } in items {
            // The rooms' streams, then their newest ids, in the same order.
            for room in &publish.rooms {
                call.key(keys.room(room));
            }
            for room in &publish.rooms {
                call.key(keys.last(room));
            }
            call.arg(publish.event)
                .arg(publish.rooms.join("\n"))
                .arg(publish.except.as_deref().unwrap_or(""))
                .arg(&publish.payload)
                .arg(publish.rooms.len());
            match once {
                Some(once) => {
                    let key_ttl_ms = u64::try_from(once.ttl.as_millis()).unwrap_or(u64::MAX).max(1);
                    call.key(keys.idem(&once.key)).arg("1").arg(&once.answer).arg(key_ttl_ms);
                }
                None => {
                    call.arg("0").arg("").arg(0);
                }
            }
            call.arg(also);
        }
        let append = || async { self.health.timed("append", call.invoke_async(&mut self.conn.clone())).await };
        let reply: Vec<String> = match append().await {
            // The connection dropped: the call may have run, its answer lost. Once more,
            // under the same call key: a call that ran is answered from its record, one
            // that did not runs now (a batch still within its deadline).
            Err(e) if e.is_connection_dropped() => append().await.map_err(unavailable)?,
            other => other.map_err(unavailable)?,
        };
        // Redis's clock when the script ran, against ours now that its answer is here:
        // their difference is the clocks', less the answer's way back (a deadline set
        // from it comes early, never late). Learned from every answer, so a clock that
        // drifts is followed.
        let now = i64::try_from(crate::clock::unix_ms()).unwrap_or(i64::MAX);
        let redis_ms = reply.get(1).and_then(|n| n.parse::<i64>().ok()).unwrap_or(now);
        self.clock_offset_ms.store(redis_ms - now, Ordering::Relaxed);
        if reply.first().is_some_and(|t| t == "late") {
            return Ok(AppendReply::Late);
        }
        Ok(AppendReply::Done(reply))
    }

    /// Starts one reader per partition, each on its own connection.
    pub fn start_reader(&self, sink: Arc<dyn LogSink>) {
        for (part, p) in self.parts.iter().enumerate() {
            let reader = super::redis_reader::Reader {
                source: self.source.clone(),
                keys: p.keys.clone(),
                part,
                closed: self.closed.clone(),
                offsets: self.config.enabled,
                replicas: p.replicas.clone(),
            };
            tokio::spawn(reader.run(sink.clone()));
        }
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
}
