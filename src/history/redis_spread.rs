//! Appends that meet several partitions of the Redis history (`history::partition`).
//!
//! An event is appended to each partition its rooms live in, one script per partition;
//! a batch's events likewise, each partition's share in one script, in the batch's order.
//! The partitions are taken lowest first, whatever the rooms' order. Each copy holds the
//! event's rooms of that partition, and, in `also`, its place in each room of the
//! partitions appended before it: a socket in rooms of two partitions receives the event
//! once, through the first of them that gives it (`delivery`), and the later copies'
//! `offsets` name the earlier rooms too.
//!
//! All or nothing, across partitions: the first partition's script **decides** the
//! append. With its share of the events it records the whole append (`spread:<id>`, and
//! `<id>` in `spreads` with Redis's time); a batch's has the batch's deadline (a batch
//! answered with an error never decides later). Before it, nothing is stored anywhere.
//! After it, the append will be applied in every partition:
//! - each later partition's script is named by the append and its step
//!   (`call:<id>:<step>`), so it runs once however often it is sent, and by whom: a step
//!   that ran already is answered from its record (kept a day, longer than the append's
//!   record, so no step outlives its answer);
//! - the caller applies the steps in turn, retrying partitions that do not answer for
//!   [`APPLY_FOR`] in all, then answers. A batch is answered `202` (stored, to be
//!   delivered) even if one still did not answer, its events there then
//!   [`AppendedOnce::Decided`]. A single event is answered with an error, as an append
//!   that cannot be told done: the retry with its key completes it (and the sweep does
//!   without one), so a client that waits for its `202` before its next event keeps its
//!   order in every room;
//! - the caller's instance goes on applying it in the background until the sweep's turn
//!   ([`RedisHistory::go_on_later`]), so its events follow soon after the partition
//!   answers again;
//! - every instance sweeps, every [`SWEEP_EVERY`], the appends decided in its partitions
//!   more than [`SWEEP_AFTER_MS`] ago and still recorded, and applies them again from
//!   their record, step by step: steps that ran answer from their record, the others
//!   run. An append whose caller died between two steps is so completed by any instance.
//!   Once every step ran, the record is deleted (in bulk: `redis_settle`).
//!
//! What a batch's delayed step costs is order, not delivery: events sent to a room of
//! that partition after the batch's `202` may be placed before the batch's events in that
//! room, if they are accepted once the partition answers and before the batch was
//! applied there (by its instance, within [`RETRY_EVERY`] of the partition answering,
//! or by the sweep). Each event still reaches each socket once, and the positions stay
//! consistent (a copy's `offsets` name only rooms whose place it knows). Holding the
//! batch's rooms in the later partitions before deciding would close that window, at
//! two more round trips per spanning append.
//!
//! Idempotency keys are recorded with each copy, in each partition: a retry under the
//! same keys appends nothing where they are recorded, and where they are not (a step
//! that had not run yet) appends the event; the sweep's step then finds the key and
//! appends nothing.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::redis::{Call, Item, RedisHistory, Step, unavailable};
use super::{Also, Appended, AppendedOnce, Epoch, HistoryError, OnceKey, Publish};

/// How long a caller goes on applying a decided append to partitions that do not answer
/// before it answers, leaving the rest to the sweep: a short failover's time, and well
/// under the 5 s a client waits by default (the Node package's `timeoutMs`).
const APPLY_FOR: Duration = Duration::from_millis(2_500);
const RETRY_EVERY: Duration = Duration::from_millis(250);
/// A decided append older than this is the sweep's: its caller answered or died (well
/// past [`APPLY_FOR`]).
const SWEEP_AFTER_MS: i64 = 6_000;
const SWEEP_EVERY: Duration = Duration::from_secs(2);
/// Decided appends a sweep takes per partition: the rest wait for the next sweep.
const SWEEP_PAGE: usize = 16;

type Batch = [(Publish, Option<OnceKey>)];

impl RedisHistory {
    /// Appends a batch (a single event is a batch of one) on the partitions its rooms
    /// live in; see the module documentation.
    pub(super) async fn append_events(
        &self,
        batch: Vec<(Publish, Option<OnceKey>)>,
        deadline: bool,
    ) -> Result<Vec<AppendedOnce>, HistoryError> {
        let order = self.order(&batch);
        if let [] | [_] = order.as_slice() {
            let part = order.first().copied().unwrap_or(0);
            let items: Vec<Item> = batch
                .iter()
                .map(|(publish, once)| Item { publish, once: once.as_ref(), also: String::new() })
                .collect();
            let (epoch, steps) = self.append_in(part, &items, Call::Own { deadline }).await?;
            return Ok(self.answers(epoch, steps));
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let record = encode(&batch)?;
        Ok(self.spread(&id, &batch, &order, Some((&record, deadline))).await?.0)
    }

    /// The partitions of a batch's rooms, lowest first: the same order for every append,
    /// so that every event to a pair of rooms has its first copy in the same partition
    /// and reaches a socket in both rooms through that one reader, in order among
    /// themselves (the order of the rooms in a batch would differ from batch to batch).
    fn order(&self, batch: &Batch) -> Vec<usize> {
        let mut order: Vec<usize> =
            batch.iter().flat_map(|(publish, _)| &publish.rooms).map(|room| self.partitioner.of(room)).collect();
        order.sort_unstable();
        order.dedup();
        order
    }

    /// Runs append `id`'s steps in turn, one per partition of `order`. A caller passes
    /// `decide` (the record and its deadline) for the first step to decide it; a sweep
    /// passes none, the first step having run.
    async fn spread(
        &self,
        id: &str,
        batch: &Batch,
        order: &[usize],
        decide: Option<(&str, bool)>,
    ) -> Result<(Vec<AppendedOnce>, bool), HistoryError> {
        let mut tally = Tally::new(batch.len());
        let until = tokio::time::Instant::now() + APPLY_FOR;
        for (step, &part) in order.iter().enumerate() {
            let share = self.share(batch, part);
            let items: Vec<Item> = share
                .iter()
                .map(|(e, publish)| Item { publish, once: batch[*e].1.as_ref(), also: Also::encode(&tally.places[*e]) })
                .collect();
            let (decides, deadline) = match decide.filter(|_| step == 0) {
                Some((record, deadline)) => (Some(record), deadline),
                None => (None, false),
            };
            let how = Call::Spread { id, step, deadline, decides };
            let applied = match step {
                0 => self.append_in(part, &items, how).await,
                _ => self.apply(part, &items, how, until).await,
            };
            match applied {
                Ok((epoch, steps)) => tally.add((epoch, self.enabled()), &share, steps),
                Err(e) if step == 0 => return Err(e),
                Err(e) => {
                    tracing::warn!(id, partition = part, error = %e, "an append spanning history partitions \
                        is decided but not yet applied in every partition: the sweep will apply it");
                    // A single event is answered as any append that cannot be told done
                    // (`503`): its client's retry with the same key completes it, and the
                    // client's next event then follows it in every room. A batch must not
                    // be answered with an error once it will be delivered.
                    if decide.is_some() {
                        self.go_on_later(id, batch, order);
                    }
                    return match batch {
                        [_] => Err(e),
                        _ => Ok((tally.answers(), false)),
                    };
                }
            }
        }
        self.settler.settled(order[0], id);
        Ok((tally.answers(), true))
    }

    /// A decided append its caller could not complete: applied again every
    /// [`RETRY_EVERY`] until complete or the sweep's turn, so that its events follow soon
    /// after the partition answers again, ahead of most events sent there meanwhile.
    fn go_on_later(&self, id: &str, batch: &Batch, order: &[usize]) {
        let Some(this) = self.this.get().cloned() else { return };
        let (id, batch, order) = (id.to_owned(), batch.to_vec(), order.to_vec());
        tokio::spawn(async move {
            let until = tokio::time::Instant::now() + Duration::from_millis(SWEEP_AFTER_MS.unsigned_abs());
            while tokio::time::Instant::now() < until {
                tokio::time::sleep(RETRY_EVERY).await;
                let Some(history) = this.upgrade().filter(|h| !h.is_closed()) else { return };
                if let Ok((_, true)) = history.spread(&id, &batch, &order, None).await {
                    return;
                }
            }
        });
    }

    /// The batch's events with rooms in `part`, each with those rooms only.
    fn share(&self, batch: &Batch, part: usize) -> Vec<(usize, Publish)> {
        let local = |(e, (publish, _)): (usize, &(Publish, Option<OnceKey>))| {
            let rooms: Vec<String> =
                publish.rooms.iter().filter(|room| self.partitioner.of(room) == part).cloned().collect();
            (!rooms.is_empty()).then(|| {
                let copy =
                    Publish { rooms, except: publish.except.clone(), payload: publish.payload.clone(), ..*publish };
                (e, copy)
            })
        };
        batch.iter().enumerate().filter_map(local).collect()
    }

    /// A later step, retried while its partition does not answer, until `until`: the step
    /// is named, so a retry of one that ran (or a call given up on that runs later) is
    /// answered from its record.
    async fn apply(
        &self,
        part: usize,
        items: &[Item<'_>],
        how: Call<'_>,
        until: tokio::time::Instant,
    ) -> Result<(Epoch, Vec<Step>), HistoryError> {
        let retried = async {
            loop {
                match self.append_in(part, items, how).await {
                    Err(HistoryError::Closed) => return Err(HistoryError::Closed),
                    Err(e) => {
                        tracing::debug!(partition = part, error = %e, "retrying a step of an append spanning partitions");
                        tokio::time::sleep(RETRY_EVERY).await;
                    }
                    done => return done,
                }
            }
        };
        match tokio::time::timeout_at(until, retried).await {
            Ok(done) => done,
            Err(_) => Err(unavailable(format!("partition {part} did not answer in {APPLY_FOR:?}"))),
        }
    }

    /// Sweeps every partition until the history closes: see the module documentation.
    pub(super) async fn sweep_forever(&self) {
        while !self.is_closed() {
            tokio::time::sleep(SWEEP_EVERY).await;
            for part in 0..self.parts.len() {
                self.sweep(part).await;
            }
        }
    }

    async fn sweep(&self, part: usize) {
        let keys = self.keys_of(part);
        let before = self.redis_now_ms().saturating_sub(SWEEP_AFTER_MS);
        let ids: Result<Vec<String>, _> = redis::cmd("ZRANGEBYSCORE")
            .arg(&keys.spreads)
            .arg("-inf")
            .arg(before)
            .arg("LIMIT")
            .arg(0)
            .arg(SWEEP_PAGE)
            .query_async(&mut self.conn.clone())
            .await;
        match ids {
            Ok(ids) => {
                for id in ids {
                    self.sweep_one(part, &id).await;
                }
            }
            Err(e) => tracing::debug!(partition = part, error = %e, "sweep of spanning appends skipped"),
        }
    }

    async fn sweep_one(&self, part: usize, id: &str) {
        let record: Result<Option<String>, _> =
            redis::cmd("GET").arg(self.keys_of(part).spread(id)).query_async(&mut self.conn.clone()).await;
        let batch = match record.map(|r| r.map(|text| decode(&text))) {
            Err(e) => return tracing::debug!(id, error = %e, "sweep: the append's record is not readable now"),
            // Expired (after half a day undecided by any sweep): nothing left to apply.
            Ok(None) => return self.settle(part, std::iter::once(id)).await,
            Ok(Some(Err(why))) => {
                tracing::error!(id, partition = part, why, "sweep: an append's record cannot be read: dropped");
                return self.settle(part, std::iter::once(id)).await;
            }
            Ok(Some(Ok(batch))) => batch,
        };
        let order = self.order(&batch);
        if order.first() != Some(&part) {
            tracing::error!(id, partition = part, "sweep: an append recorded outside its first partition: dropped");
            return self.settle(part, std::iter::once(id)).await;
        }
        match self.spread(id, &batch, &order, None).await {
            Ok((_, true)) => {
                tracing::info!(id, events = batch.len(), "sweep: an append spanning partitions is complete")
            }
            Ok((_, false)) => tracing::warn!(id, "sweep: an append spanning partitions is not complete yet"),
            Err(e) => tracing::warn!(id, error = %e, "sweep: an append spanning partitions is not complete yet"),
        }
    }
}

/// What the steps of a spread append did to each event.
struct Tally {
    /// Each event's places so far, for its later copies' `also`.
    places: Vec<Vec<Also>>,
    first: Vec<Option<Appended>>,
    replayed: Vec<Option<String>>,
}

impl Tally {
    fn new(events: usize) -> Tally {
        Tally { places: vec![Vec::new(); events], first: vec![None; events], replayed: vec![None; events] }
    }

    /// One step's answers, for the events of its share; `epoch` is the partition's, when
    /// history is on.
    fn add(&mut self, (epoch, on): (Epoch, bool), share: &[(usize, Publish)], steps: Vec<Step>) {
        for ((e, publish), step) in share.iter().zip(steps) {
            let seq = match step {
                Step::Appended(seq) => {
                    self.first[*e].get_or_insert(Appended { seq, epoch: on.then_some(epoch) });
                    Some(seq)
                }
                Step::Replayed(seq, answer) => {
                    self.replayed[*e].get_or_insert(answer);
                    seq
                }
            };
            // A key recorded by an older version gives no place: the later copies then
            // cannot name it, and a socket in both rooms may get the event twice.
            if let Some(seq) = seq {
                self.places[*e].extend(publish.rooms.iter().map(|room| Also { room: room.clone(), epoch, seq }));
            }
        }
    }

    /// Per event: its recorded answer if a key was recorded anywhere, else its first
    /// copy, else decided with no copy yet.
    fn answers(self) -> Vec<AppendedOnce> {
        let answer = |(replayed, first): (Option<String>, Option<Appended>)| match (replayed, first) {
            (Some(answer), _) => AppendedOnce::Replayed(answer),
            (None, Some(appended)) => AppendedOnce::Appended(appended),
            (None, None) => AppendedOnce::Decided,
        };
        self.replayed.into_iter().zip(self.first).map(answer).collect()
    }
}

/// An event as a decided append records it, for a sweep to apply it again.
#[derive(Serialize, Deserialize)]
struct Recorded {
    n: String,
    r: Vec<String>,
    x: Option<String>,
    p: String,
    /// Its idempotency key, answer and the key's time to live (ms).
    k: Option<(String, String, u64)>,
}

fn encode(batch: &Batch) -> Result<String, HistoryError> {
    let recorded: Vec<Recorded> = batch
        .iter()
        .map(|(publish, once)| Recorded {
            n: publish.event.to_owned(),
            r: publish.rooms.clone(),
            x: publish.except.clone(),
            p: publish.payload.clone(),
            k: once
                .as_ref()
                .map(|o| (o.key.clone(), o.answer.clone(), u64::try_from(o.ttl.as_millis()).unwrap_or(u64::MAX))),
        })
        .collect();
    serde_json::to_string(&recorded).map_err(unavailable)
}

fn decode(text: &str) -> Result<Vec<(Publish, Option<OnceKey>)>, String> {
    let recorded: Vec<Recorded> = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let event = |r: Recorded| {
        let name = crate::events::wire::server_event(&r.n).ok_or_else(|| format!("unknown event {:?}", r.n))?;
        let once = r.k.map(|(key, answer, ms)| OnceKey { key, answer, ttl: Duration::from_millis(ms) });
        Ok((Publish { event: name, rooms: r.r, except: r.x, payload: r.p }, once))
    };
    recorded.into_iter().map(event).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_append_reads_back_whole_and_refuses_what_it_does_not_know() {
        let once = OnceKey { key: "k1".into(), answer: "{}".into(), ttl: Duration::from_secs(60) };
        let batch = vec![
            (
                Publish {
                    event: "booking:created",
                    rooms: vec!["user:a".into(), "vendor:b".into()],
                    except: None,
                    payload: "{\"x\":1}".into(),
                },
                Some(once),
            ),
            (
                Publish {
                    event: "chat:message",
                    rooms: vec!["user:c".into()],
                    except: Some("sid".into()),
                    payload: "{}".into(),
                },
                None,
            ),
        ];
        let back = decode(&encode(&batch).unwrap()).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!((back[0].0.event, &back[0].0.rooms), ("booking:created", &batch[0].0.rooms));
        assert_eq!(back[0].1.as_ref().map(|o| (o.key.as_str(), o.ttl)), Some(("k1", Duration::from_secs(60))));
        assert_eq!((back[1].0.except.as_deref(), back[1].1.is_none()), (Some("sid"), true));
        assert!(decode(r#"[{"n":"evil","r":[],"x":null,"p":"","k":null}]"#).is_err());
        assert!(decode("not json").is_err());
    }
}
