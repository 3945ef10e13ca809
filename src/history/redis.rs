//! The history in Redis, shared by every instance: Redis Streams.
//!
//! Why streams: an entry id is a `<ms>-<n>` sequence that Redis keeps strictly
//! increasing, a range read after a position is one command, trimming by count
//! (`MAXLEN`) and by age (`MINID`) is built in, and a reader can block on the log and
//! resume from its last id after a lost connection, so nothing published while it was
//! reconnecting is skipped (pub/sub would have dropped it).
//!
//! Its keys are laid out in `history/redis_keys.rs`.
//!
//! Every read of a room has a `COUNT`: a snapshot's first pages share one page between
//! them, and a recovery reads the rest with `XRANGE room (<last sent> <room's newest>
//! COUNT <page>`, so no reply Redis builds for a recovery holds more than a page, however
//! long the room's history or however often a client comes back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use redis::{Script, Value};

use crate::config::ReplicaPolicy;
use crate::redis_link::RedisConn;
use crate::redis_link::{RedisHealth, RedisSource};

use super::redis_keys::Keys;
use super::redis_reply::{array, int, room_entries, room_view, text};
use super::replicas::ReplicaGate;
use super::{
    Appended, AppendedOnce, Entry, Epoch, HistoryConfig, HistoryError, LogSink, OnceKey, Publish, Seq, Snapshot,
};

/// Events the log keeps for readers that fall behind (a reader further behind than this
/// sees a gap and tells its sockets); approximate, as Redis trims whole nodes.
const LOG_MAXLEN: u64 = 50_000;
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
/// `KEYS`: epoch, head, log, this call's record, then for each event its rooms' streams,
/// their `last:` keys in the same order, and its idempotency key when it has one.
/// `ARGV[1..7]`: a fresh epoch, history on (`1`), room size, TTL (ms), log length, a
/// deadline in Redis's own clock (unix ms, or empty for none), and how long the call's
/// record is kept (ms); then eight per event: name, rooms (`\n`-joined), except, payload,
/// room count, keyed (`1`), answer, key TTL (ms).
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
/// Returns `{epoch, now, tag, value, tag, value, ...}` (`now`: Redis's clock, unix ms):
/// per event `a` and its log id, or `r` and the recorded answer; or `{'late', now}`. Its work is bounded by the batch:
/// at most `MAX_BATCH` (500) events of at most a REST body (256 KiB) in all, each with
/// about 4 commands per room, a few milliseconds of Redis's time.
const APPEND: &str = include_str!("append.lua");

const SNAPSHOT: &str = include_str!("snapshot.lua");

pub struct RedisHistory {
    config: HistoryConfig,
    replicas: Arc<ReplicaGate>,
    /// Where round trips are timed (`fixrx_redis_round_trip_seconds`).
    health: Arc<RedisHealth>,
    /// Redis's clock minus ours (ms), learned from every answer: deadlines are in
    /// Redis's clock.
    clock_offset_ms: std::sync::atomic::AtomicI64,
    conn: RedisConn,
    source: RedisSource,
    keys: Arc<Keys>,
    closed: Arc<AtomicBool>,
    append: Script,
    snapshot: Script,
}

enum AppendReply {
    Done(Vec<String>),
    /// The script started past its deadline and appended nothing.
    Late,
}

fn unavailable(e: impl std::fmt::Display) -> HistoryError {
    HistoryError::Unavailable(e.to_string())
}

impl RedisHistory {
    /// `conn` carries appends and snapshots; the reader opens its own connection from
    /// `source` (its blocking reads must not hold up commands).
    /// `health` carries what the replica check sees to `/ready` and `/metrics`.
    pub fn new(
        config: HistoryConfig,
        policy: ReplicaPolicy,
        health: Arc<RedisHealth>,
        (conn, source): (RedisConn, RedisSource),
    ) -> Result<RedisHistory, redis::RedisError> {
        Ok(RedisHistory {
            replicas: Arc::new(ReplicaGate::new(policy, health.clone())),
            health,
            clock_offset_ms: std::sync::atomic::AtomicI64::new(0),
            config,
            conn,
            source,
            keys: Arc::new(Keys::new()),
            closed: Arc::new(AtomicBool::new(false)),
            append: Script::new(APPEND),
            snapshot: Script::new(SNAPSHOT),
        })
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled
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

    async fn append_events(
        &self,
        batch: Vec<(Publish, Option<OnceKey>)>,
        deadline: bool,
    ) -> Result<Vec<AppendedOnce>, HistoryError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(HistoryError::Closed);
        }
        self.replicas.admit(&self.conn, &self.keys.log).await?;
        let call = self.keys.call();
        let reply = match self.invoke_append(&batch, &call, deadline).await? {
            AppendReply::Late => {
                // Answered in time, yet late by Redis's clock: it waited (a stall shorter
                // than the connection's timeout), or the clocks differ. Nothing was
                // appended, and the clocks' difference is learned: try once more.
                match self.invoke_append(&batch, &call, deadline).await? {
                    AppendReply::Done(reply) => reply,
                    AppendReply::Late => return Err(unavailable("Redis's clock is running away")),
                }
            }
            AppendReply::Done(reply) => reply,
        };
        // On a cluster the replica wait covers the keys too: same slot, same connection.
        self.replicas.check(&self.conn, &self.keys.log).await?;
        let malformed = || unavailable("unexpected append reply from Redis");
        let mut parts = reply.into_iter();
        let epoch = parts.next().and_then(|e| Epoch::parse(&e)).ok_or_else(malformed)?;
        let _redis_now = parts.next().ok_or_else(malformed)?;
        let mut answers = Vec::with_capacity(batch.len());
        for (_, once) in &batch {
            let (tag, value) = parts.next().zip(parts.next()).ok_or_else(malformed)?;
            answers.push(match tag.as_str() {
                "a" => {
                    let seq = Seq::parse(&value).ok_or_else(|| unavailable("Redis returned a malformed stream id"))?;
                    AppendedOnce::Appended(Appended { seq, epoch: self.config.enabled.then_some(epoch) })
                }
                "r" if once.is_some() => AppendedOnce::Replayed(value),
                _ => return Err(malformed()),
            });
        }
        Ok(answers)
    }

    async fn invoke_append(
        &self,
        batch: &[(Publish, Option<OnceKey>)],
        call_key: &str,
        deadline: bool,
    ) -> Result<AppendReply, HistoryError> {
        let ttl_ms = u64::try_from(self.config.ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let local_ms = i64::try_from(crate::clock::unix_ms()).unwrap_or(i64::MAX);
        let deadline = match deadline {
            true => (local_ms + self.clock_offset_ms.load(Ordering::Relaxed) + SCRIPT_DEADLINE_MS).to_string(),
            false => String::new(),
        };
        let mut call = self.append.key(&self.keys.epoch);
        call.key(&self.keys.head).key(&self.keys.log).key(call_key);
        // A fresh epoch each time, used only if the store has none: a history recreated
        // (Redis restarted empty) must never get back an epoch it had before.
        call.arg(Epoch::random().to_string())
            .arg(if self.config.enabled { "1" } else { "0" })
            .arg(self.config.size)
            .arg(ttl_ms)
            .arg(LOG_MAXLEN)
            .arg(deadline)
            .arg(CALL_RECORD_MS);
        for (publish, once) in batch {
            // The rooms' streams, then their newest ids, in the same order.
            for room in &publish.rooms {
                call.key(self.keys.room(room));
            }
            for room in &publish.rooms {
                call.key(self.keys.last(room));
            }
            call.arg(publish.event)
                .arg(publish.rooms.join("\n"))
                .arg(publish.except.as_deref().unwrap_or(""))
                .arg(&publish.payload)
                .arg(publish.rooms.len());
            match once {
                Some(once) => {
                    let key_ttl_ms = u64::try_from(once.ttl.as_millis()).unwrap_or(u64::MAX).max(1);
                    call.key(self.keys.idem(&once.key)).arg("1").arg(&once.answer).arg(key_ttl_ms);
                }
                None => {
                    call.arg("0").arg("").arg(0);
                }
            }
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

    /// Reads the rooms (at most `page` events in all) and appends a tick to the log, in
    /// one script.
    pub async fn snapshot(&self, rooms: &[(String, Seq)], page: usize) -> Result<Snapshot, HistoryError> {
        let mut call = self.snapshot.key(&self.keys.epoch);
        call.key(&self.keys.head).key(&self.keys.log).arg(Epoch::random().to_string()).arg(LOG_MAXLEN);
        call.arg(super::first_page(page, rooms.len()));
        for (room, p) in rooms {
            call.key(self.keys.room(room)).arg(p.to_string());
        }
        let reply: Value =
            self.health.timed("snapshot", call.invoke_async(&mut self.conn.clone())).await.map_err(unavailable)?;
        let malformed = || unavailable("unexpected snapshot reply from Redis");
        let mut parts = array(reply).ok_or_else(malformed)?.into_iter();
        let epoch = parts.next().and_then(text).and_then(|e| Epoch::parse(&e)).ok_or_else(malformed)?;
        let head = parts.next().and_then(text).and_then(|h| Seq::parse(&h)).ok_or_else(malformed)?;
        let now_ms = parts.next().and_then(int).ok_or_else(malformed)?;
        let mut views = Vec::with_capacity(rooms.len());
        for _ in rooms {
            let view = parts.next().and_then(|v| room_view(v, epoch, self.config.enabled)).ok_or_else(malformed)?;
            views.push(view);
        }
        Ok(Snapshot {
            epoch,
            head,
            now_ms: u64::try_from(now_ms).unwrap_or(0),
            ttl_ms: u64::try_from(self.config.ttl.as_millis()).unwrap_or(u64::MAX),
            evicted_at: Seq::ZERO,
            rooms: views,
        })
    }

    /// At most `count` of the room's held events in `(after, upto]`, oldest first.
    pub async fn page(
        &self,
        epoch: Epoch,
        room: &str,
        (after, upto): (Seq, Seq),
        count: usize,
    ) -> Result<Vec<(Arc<Entry>, Seq)>, HistoryError> {
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(self.keys.room(room)).arg(format!("({after}")).arg(upto.to_string()).arg("COUNT").arg(count);
        let reply: Value =
            self.health.timed("page", cmd.query_async(&mut self.conn.clone())).await.map_err(unavailable)?;
        Ok(room_entries(reply, self.config.enabled.then_some(epoch)))
    }

    /// The room's latest `max` held events, newest first (without `offsets`).
    pub async fn recent(&self, room: &str, max: usize) -> Result<Vec<Arc<Entry>>, HistoryError> {
        let mut cmd = redis::cmd("XREVRANGE");
        cmd.arg(self.keys.room(room)).arg("+").arg("-").arg("COUNT").arg(max);
        let reply: Value =
            self.health.timed("recent", cmd.query_async(&mut self.conn.clone())).await.map_err(unavailable)?;
        Ok(room_entries(reply, None).into_iter().map(|(entry, _)| entry).collect())
    }

    pub fn start_reader(&self, sink: Arc<dyn LogSink>) {
        let reader = super::redis_reader::Reader {
            source: self.source.clone(),
            keys: self.keys.clone(),
            closed: self.closed.clone(),
            offsets: self.config.enabled,
            replicas: self.replicas.clone(),
        };
        tokio::spawn(reader.run(sink));
    }

    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }
}
