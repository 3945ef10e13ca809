//! The history: every event sent to rooms (the catalog events and `chat:message`),
//! kept per room so a client that was away can recover what it missed, and the ordered
//! logs from which every instance delivers to its own sockets.
//!
//! A history is one or more *partitions* ([`partition`]): in memory and on one Redis by
//! default, one; on Redis with `REDIS_HISTORY_PARTITIONS` above 1, several, each a whole
//! history of its own (epoch, log, rooms) under its own hash tag, so that a cluster's
//! primaries share the work. A room lives in one partition. An event to rooms of several
//! partitions is a *copy* in each ([`Entry`]: `part`, `rooms` of that partition, and in
//! `also` its places in the partitions appended before).
//!
//! Contract kept by both stores ([`memory`] without Redis, [`redis`] with it), per
//! partition:
//! - [`History::append`] returns only once the event is in its rooms' histories and
//!   their partitions' logs, or decided and bound to reach those (`redis_spread`): a
//!   `202` answered after it is durable (as durable as the store).
//! - Copies get one [`Seq`] each from their partition's single sequence, strictly
//!   increasing in the order its log hands them to readers. A room's positions are the
//!   `Seq`s of its events in its partition, so they increase in the order that room's
//!   sockets receive them.
//! - Each room keeps at least its last `HISTORY_SIZE` events that are younger than
//!   `HISTORY_TTL_SECS` (the recovery window); older ones are trimmed from the front.
//! - Every event a room holds records the `Seq` of the room's previous event, so a
//!   recovery can prove there is no gap between a client's position and what is held
//!   ([`classify`]); when it cannot, the room is `expired`, never silently short.
//! - A recovery reads at most [`RECOVERY_PAGE`] events per read and partition: the
//!   snapshot holds the first page of each room, and [`pages::Replay`] reads the rest a
//!   page at a time, each page only once the previous one was handed on, proving with the
//!   same predecessors that nothing was trimmed between two pages. Neither Redis nor the
//!   server ever builds a reply, or holds a replay, of more than a page per room.
//!
//! What a socket in rooms of two partitions receives, and why exactly once, is argued in
//! `delivery` (step 6).

mod log;
pub mod memory;
pub mod pages;
pub mod partition;
pub mod position;
pub mod redis;
mod redis_append;
mod redis_keys;
mod redis_read;
mod redis_reader;
mod redis_reply;
mod redis_settle;
mod redis_spread;
mod replicas;

use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;

pub use crate::config::HistoryConfig;
pub use partition::{Also, Partitioner};
pub use position::{Epoch, Position, Seq, payload_with_also, payload_with_offsets};

/// Most events one read of a recovery returns: a snapshot's first pages together, or a
/// later page of one room. 256 events of the 256 KiB a REST body may carry is at most
/// 64 MiB in theory, and a few hundred KiB for ordinary events.
pub const RECOVERY_PAGE: usize = 256;

/// One event as every reader delivers it: its copy in one partition of the history
/// ([`partition`]), the only one with a single partition.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its place in its partition's sequence.
    pub seq: Seq,
    /// The partition whose log and rooms hold this copy.
    pub part: usize,
    /// The Socket.IO event name.
    pub event: String,
    /// The rooms of this partition it was sent to.
    pub rooms: Vec<String>,
    /// Its rooms in the partitions appended before this one, with its place there: a
    /// socket in one of them receives the event through that room's copy, not this one.
    pub also: Vec<Also>,
    /// A socket (by sid) that must not receive it: the sender of a `chat:send`, whose ack
    /// carries the message.
    pub except: Option<String>,
    /// The envelope as sent, `offsets` included when history is on.
    pub payload: Box<RawValue>,
}

impl Entry {
    /// An event in a history of one partition: the whole of it, in partition 0.
    pub fn whole(seq: Seq, publish: Publish, payload: Box<RawValue>) -> Entry {
        let (event, rooms, except) = (publish.event.to_owned(), publish.rooms, publish.except);
        Entry { seq, part: 0, event, rooms, also: Vec::new(), except, payload }
    }

    /// A log entry with no rooms: a snapshot's tick, in partition 0.
    pub fn tick(seq: Seq, payload: Box<RawValue>) -> Entry {
        Entry { seq, part: 0, event: String::new(), rooms: Vec::new(), also: Vec::new(), except: None, payload }
    }
}

/// What to publish: an event name, its rooms and its envelope (a JSON object, without
/// `offsets`: the history adds them once it knows the event's place).
#[derive(Debug, Clone)]
pub struct Publish {
    pub event: &'static str,
    pub rooms: Vec<String>,
    pub except: Option<String>,
    pub payload: String,
}

/// An idempotency key an append records atomically with its event (Redis only): if the
/// key is recorded already, nothing is appended and its answer is returned; otherwise
/// the event is appended and `answer` is recorded under the key for `ttl`, in one step.
/// So "stored" is a fact in the store, never a guess: a request that timed out or was
/// cancelled either appended and recorded both, or neither, and its retry finds out.
#[derive(Debug, Clone)]
pub struct OnceKey {
    pub key: String,
    /// The answer a retry with the same key gets (JSON).
    pub answer: String,
    pub ttl: Duration,
}

/// What an append under an [`OnceKey`] did.
#[derive(Debug, Clone)]
pub enum AppendedOnce {
    Appended(Appended),
    /// The key was recorded already: the first answer, as stored; nothing was appended.
    Replayed(String),
    /// Decided and stored, to be delivered, its place not known yet: an event of an
    /// append spanning partitions whose partition did not answer in time; it is applied
    /// there as soon as it answers (`history::redis_spread`).
    Decided,
}

/// Where an appended event went.
#[derive(Debug, Clone, Copy)]
pub struct Appended {
    pub seq: Seq,
    /// The history it is in, when history is on.
    pub epoch: Option<Epoch>,
}

impl Appended {
    /// The event's position in `room` (one of its rooms), when history is on.
    pub fn position(&self, room: &str) -> Option<Position> {
        self.epoch.map(|epoch| Position::new(epoch, self.seq, room))
    }
}

/// The outcome of recovering one room, as the `recovery` event names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomStatus {
    Recovered,
    /// The position is older than what the history still holds.
    Expired,
    /// Not a position of this room's history (another epoch, another room, malformed).
    Unknown,
}

impl RoomStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RoomStatus::Recovered => "recovered",
            RoomStatus::Expired => "expired",
            RoomStatus::Unknown => "unknown",
        }
    }
}

/// What a store holds of one room after a position, read atomically with the others.
#[derive(Debug, Default)]
pub struct RoomView {
    /// Whether the store has the room at all (it drops idle and evicted rooms).
    pub exists: bool,
    /// The first held events after the position (a page at most), oldest first, each
    /// with its room predecessor.
    pub after: Vec<(Arc<Entry>, Seq)>,
    /// The room's newest event when the snapshot was taken: the replay reads pages up to
    /// it. `Seq::ZERO` (or anything not past `after`) when `after` is all there is.
    pub last: Seq,
}

/// How far apart the history's clock and a position's time may be before a quiet room
/// is no longer taken as untouched (clock steps, `Instant` against wall time).
const CLOCK_MARGIN_MS: u64 = 1_000;

/// Decides a room's recovery from what the store holds:
/// - a position past the snapshot's head was never issued: `unknown`;
/// - the room is held: recovered when the first held event after `p` names, as its
///   predecessor in the room, `p` or something before it (nothing between was trimmed);
/// - the room is not held: recovered only when nothing can have been written to it since
///   `p` (a write keeps a room for a TTL, so `p` younger than the TTL and no eviction of
///   whole rooms since proves the room untouched); otherwise `expired`.
pub fn classify(p: Seq, view: &RoomView, snap: &Snapshot) -> RoomStatus {
    if p > snap.head {
        return RoomStatus::Unknown;
    }
    if !view.exists {
        let age = snap.now_ms.saturating_sub(p.ms).saturating_add(CLOCK_MARGIN_MS);
        let untouched = age < snap.ttl_ms && p >= snap.evicted_at;
        return if untouched { RoomStatus::Recovered } else { RoomStatus::Expired };
    }
    match view.after.first() {
        Some((_, prev)) if *prev > p => RoomStatus::Expired,
        _ => RoomStatus::Recovered,
    }
}

/// A consistent read of several rooms for one recovery.
#[derive(Debug)]
pub struct Snapshot {
    pub epoch: Epoch,
    /// A `Seq` taken by the snapshot itself (an entry with no rooms appended to the log,
    /// atomically with the read): every event of the named rooms up to it is in `rooms`,
    /// later ones arrive through the log, and the reader passing it proves this
    /// instance has delivered everything before it.
    pub head: Seq,
    /// The history's clock when the snapshot was taken, in milliseconds.
    pub now_ms: u64,
    pub ttl_ms: u64,
    /// The head when whole rooms were last dropped to keep the memory bound.
    pub evicted_at: Seq,
    pub rooms: Vec<RoomView>,
}

/// A recovery's snapshot of the rooms of one partition: `rooms` (with the positions
/// asked) in the order of `snapshot.rooms`.
#[derive(Debug)]
pub struct PartSnapshot {
    pub part: usize,
    pub rooms: Vec<(String, Seq)>,
    pub snapshot: Snapshot,
}

/// Why the history could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("history store unavailable: {0}")]
    Unavailable(String),
    #[error("the server is shutting down")]
    Closed,
}

/// A server's history, in memory or in Redis; built once and kept behind an `Arc`.
#[allow(clippy::large_enum_variant)]
pub enum History {
    Memory(memory::MemoryHistory),
    Redis(Arc<redis::RedisHistory>),
}

impl History {
    pub fn enabled(&self) -> bool {
        match self {
            History::Memory(h) => h.enabled(),
            History::Redis(h) => h.enabled(),
        }
    }

    /// Appends one event to its rooms' histories and to the log; see the module contract.
    pub async fn append(&self, publish: Publish) -> Result<Appended, HistoryError> {
        match self {
            History::Memory(h) => h.append(publish),
            History::Redis(h) => h.append(publish).await,
        }
    }

    /// Appends one event unless its idempotency key is recorded, and records the key with
    /// it, atomically ([`OnceKey`]). Only the Redis history keeps keys: in memory the
    /// caller's in-process key store runs an append at most once, so this is refused.
    pub async fn append_once(&self, publish: Publish, once: &OnceKey) -> Result<AppendedOnce, HistoryError> {
        match self {
            History::Memory(_) => Err(HistoryError::Unavailable(
                "the in-memory history keeps no idempotency keys (the in-memory key store does)".into(),
            )),
            History::Redis(h) => h.append_once(publish, once).await,
        }
    }

    /// Appends a batch, in order, all or nothing: one atomic step (one lock in memory, one
    /// script in Redis), so an error means no event of it was accepted, then or later.
    /// An event with an [`OnceKey`] (Redis only, as [`History::append_once`]) whose key is
    /// recorded is answered from it and not appended again. One answer per event.
    pub async fn append_batch(
        &self,
        batch: Vec<(Publish, Option<OnceKey>)>,
    ) -> Result<Vec<AppendedOnce>, HistoryError> {
        match self {
            History::Memory(h) => {
                if batch.iter().any(|(_, once)| once.is_some()) {
                    return Err(HistoryError::Unavailable(
                        "the in-memory history keeps no idempotency keys (the in-memory key store does)".into(),
                    ));
                }
                let appended = h.append_batch(batch.into_iter().map(|(publish, _)| publish).collect())?;
                Ok(appended.into_iter().map(AppendedOnce::Appended).collect())
            }
            History::Redis(h) => h.append_batch(batch).await,
        }
    }

    /// Reads the rooms after the given sequences and takes a tick ([`Snapshot::head`]),
    /// atomically within each partition the rooms live in: one snapshot per partition
    /// (at most `page` events in each: the first page of each of its rooms, [`first_page`]).
    /// The partitions of the `also` rooms are snapshotted too (a tick, no room read), so
    /// that the caller learns their epochs and heads.
    pub async fn snapshot(
        &self,
        rooms: &[(String, Seq)],
        page: usize,
        also: &[String],
    ) -> Result<Vec<PartSnapshot>, HistoryError> {
        match self {
            History::Memory(h) => {
                let snapshot = h.snapshot(rooms, page)?;
                Ok(vec![PartSnapshot { part: 0, rooms: rooms.to_vec(), snapshot }])
            }
            History::Redis(h) => h.snapshot(rooms, page, also).await,
        }
    }

    /// Before a socket is attached to `rooms`: makes this instance read their partitions
    /// (a history in partitions is read on demand, `redis_reader`); otherwise free.
    pub async fn need(&self, rooms: impl FnOnce() -> Vec<String>) {
        if let History::Redis(h) = self
            && h.spreads()
        {
            h.need(rooms().iter().map(|room| h.partitioner().of(room))).await;
        }
    }

    /// Which partition each room lives in.
    pub fn partitioner(&self) -> Partitioner {
        match self {
            History::Memory(_) => Partitioner::ONE,
            History::Redis(h) => h.partitioner(),
        }
    }

    /// At most `count` of `room`'s held events after `after` and up to `upto`, oldest
    /// first, each with its room predecessor; `epoch` is the snapshot's (for `offsets`).
    pub async fn page(
        &self,
        epoch: Epoch,
        room: &str,
        (after, upto): (Seq, Seq),
        count: usize,
    ) -> Result<Vec<(Arc<Entry>, Seq)>, HistoryError> {
        match self {
            History::Memory(h) => Ok(h.page(room, (after, upto), count)),
            History::Redis(h) => h.page(epoch, room, (after, upto), count).await,
        }
    }

    /// The latest `max` events `room` holds, newest first; empty with history off.
    pub async fn recent(&self, room: &str, max: usize) -> Result<Vec<Arc<Entry>>, HistoryError> {
        match self {
            History::Memory(h) => Ok(h.recent(room, max)),
            History::Redis(h) => h.recent(room, max).await,
        }
    }

    /// Makes `sink` the receiver of the log on this instance, in order: in memory the
    /// appenders hand it their events themselves ([`log`]), with Redis a reader task reads
    /// the shared log.
    pub fn start_reader(&self, sink: Arc<dyn LogSink>) {
        match self {
            History::Memory(h) => h.start_reader(sink),
            History::Redis(h) => h.start_reader(sink),
        }
    }

    /// Stops the log: later appends answer [`HistoryError::Closed`]; returns once what was
    /// accepted here has been handed to the sink (in memory) or the reader has stopped
    /// (Redis: other instances deliver, and this one's clients recover there).
    pub async fn close(&self) {
        match self {
            History::Memory(h) => h.close().await,
            History::Redis(h) => h.close(),
        }
    }
}

/// Where a history's log delivers, in order: the instance's [`crate::delivery::Hub`].
pub trait LogSink: Send + Sync + 'static {
    /// The next events of the log, in order, each once.
    fn deliver(&self, entries: &[Arc<Entry>]);
    /// The log lost continuity (events may be missing): every socket must be told.
    fn gap(&self, why: &str);
    /// Partition `part`'s reader starts reading after `at` (its log's head when it
    /// started): nothing up to `at` will be delivered here.
    fn started(&self, _part: usize, _at: Seq) {}
}

/// How many events a snapshot of `rooms` rooms reads in each: `page` shared out, so the
/// snapshot's reply is a page too (one for each room at least).
pub fn first_page(page: usize, rooms: usize) -> usize {
    (page / rooms.max(1)).max(1)
}

#[cfg(test)]
mod tests;
