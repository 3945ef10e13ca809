//! One call of the history's append script on one partition of the Redis history
//! (`history::redis`): its arguments, its deadline, its record, and its answer.

use std::sync::atomic::Ordering;

use super::redis::{LOG_MAXLEN, Part, RedisHistory, unavailable};
use super::{Appended, AppendedOnce, Epoch, HistoryError, OnceKey, Publish, Seq};

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
/// How long the steps of an append spanning partitions keep their answers: a step is
/// re-run (by any instance's sweep, `history::redis_spread`) until every partition has
/// the events, and must then be answered from its record, never appended again.
const SPREAD_RECORD_MS: u64 = 24 * 3_600_000;

/// Appends a batch of events to the log (and, with history on, to their rooms), in
/// order, all in one script: Redis runs a script whole, so either every event of the
/// batch is appended or none is. A single event is a batch of one.
///
/// It runs on one partition: every key is under the partition's hash tag, and the events'
/// rooms are that partition's rooms.
///
/// `KEYS`: epoch, head, log, this call's record, `spreads`, a `spread:` record, then for
/// each event its rooms' streams, their `last:` keys in the same order, and its
/// idempotency key when it has one.
/// `ARGV[1..9]`: a fresh epoch, history on (`1`), room size, TTL (ms), log length, a
/// deadline in Redis's own clock (unix ms, or empty for none), how long the call's
/// record is kept (ms), and for the call that decides an append spanning partitions its
/// events and id (recorded under `spread:` for half the call record's time, so the call's
/// answer outlives it; empty for others, `history::redis_spread`); then nine per event:
/// name, rooms (`\n`-joined), except, payload, room count, keyed (`1`), answer, key TTL
/// (ms), and its places in earlier partitions ([`super::Also::encode`], empty for most).
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
pub(super) const APPEND: &str = include_str!("append.lua");

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

/// How an append call is named and run.
#[derive(Clone, Copy)]
pub(super) enum Call<'a> {
    /// A call of its own: a random record, kept [`CALL_RECORD_MS`]; with `deadline`,
    /// never run later than its caller waits.
    Own { deadline: bool },
    /// Step `step` of spread append `id` (`history::redis_spread`); the first step
    /// `decides` it, recording its events.
    Spread { id: &'a str, step: usize, deadline: bool, decides: Option<&'a str> },
}

/// What an append did to one event on one partition.
pub(super) enum Step {
    Appended(Seq),
    /// Its key was recorded: where the event was then (unknown for a key an older
    /// version recorded), and the recorded answer.
    Replayed(Option<Seq>, String),
}

impl RedisHistory {
    /// Appends `items` on partition `part` in one script, in order, all or none; with
    /// `deadline`, never later than the caller waits ([`SCRIPT_DEADLINE_MS`]). Returns the
    /// partition's epoch and what happened to each item.
    pub(super) async fn append_in(
        &self,
        part: usize,
        items: &[Item<'_>],
        how: Call<'_>,
    ) -> Result<(Epoch, Vec<Step>), HistoryError> {
        if self.is_closed() {
            return Err(HistoryError::Closed);
        }
        let Some(p) = self.parts.get(part) else { return Err(unavailable("no such history partition")) };
        p.replicas.admit(&self.conn, &p.keys.log).await?;
        let reply = match self.invoke_append(p, items, &how).await? {
            AppendReply::Late => {
                // Answered in time, yet late by Redis's clock: it waited (a stall shorter
                // than the connection's timeout), or the clocks differ. Nothing was
                // appended, and the clocks' difference is learned: try once more.
                match self.invoke_append(p, items, &how).await? {
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

    async fn invoke_append(&self, p: &Part, items: &[Item<'_>], how: &Call<'_>) -> Result<AppendReply, HistoryError> {
        let ttl_ms = u64::try_from(self.config.ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let keys = &p.keys;
        let (call_key, record_ms, deadline, decides) = match *how {
            Call::Own { deadline } => (keys.call(), CALL_RECORD_MS, deadline, None),
            Call::Spread { id, step, deadline, decides } => {
                (keys.spread_call(id, step), SPREAD_RECORD_MS, deadline, decides.map(|events| (id, events)))
            }
        };
        let deadline = match deadline {
            true => (self.redis_now_ms() + SCRIPT_DEADLINE_MS).to_string(),
            false => String::new(),
        };
        let mut call = self.append.key(&keys.epoch);
        call.key(&keys.head).key(&keys.log).key(&call_key).key(&keys.spreads);
        call.key(decides.map_or_else(|| keys.spreads.clone(), |(id, _)| keys.spread(id)));
        // A fresh epoch each time, used only if the store has none: a history recreated
        // (Redis restarted empty) must never get back an epoch it had before.
        call.arg(Epoch::random().to_string())
            .arg(if self.config.enabled { "1" } else { "0" })
            .arg(self.config.size)
            .arg(ttl_ms)
            .arg(LOG_MAXLEN)
            .arg(deadline)
            .arg(record_ms)
            .arg(decides.map_or("", |(_, events)| events))
            .arg(decides.map_or("", |(id, _)| id));
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

    /// Now by Redis's clock (unix ms), as last learned.
    pub(super) fn redis_now_ms(&self) -> i64 {
        let local_ms = i64::try_from(crate::clock::unix_ms()).unwrap_or(i64::MAX);
        local_ms.saturating_add(self.clock_offset_ms.load(Ordering::Relaxed))
    }
}
