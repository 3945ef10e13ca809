//! The history: every event sent to rooms (the catalog events and `chat:message`),
//! kept per room so a client that was away can recover what it missed, and the one
//! ordered log from which every instance delivers to its own sockets.
//!
//! Contract kept by both stores ([`memory`] without Redis, [`redis`] with it):
//! - [`History::append`] returns only once the event is in the history of each of its
//!   rooms and in the log: a `202` answered after it is durable (as durable as the store).
//! - Events get one [`Seq`] each from a single sequence per history, strictly increasing
//!   in the order the log hands them to readers. A room's positions are the `Seq`s of its
//!   events, so they increase in the order that room's sockets receive them.
//! - Each room keeps at least its last `HISTORY_SIZE` events that are younger than
//!   `HISTORY_TTL_SECS` (the recovery window); older ones are trimmed from the front.
//! - Every event a room holds records the `Seq` of the room's previous event, so a
//!   recovery can prove there is no gap between a client's position and what is held
//!   ([`classify`]); when it cannot, the room is `expired`, never silently short.
//! - A recovery reads at most [`RECOVERY_PAGE`] events per read: the snapshot holds the
//!   first page of each room, and [`pages::Replay`] reads the rest a page at a time, each
//!   page only once the previous one was handed on, proving with the same predecessors
//!   that nothing was trimmed between two pages. Neither Redis nor the server ever builds
//!   a reply, or holds a replay, of more than a page per room.

mod log;
pub mod memory;
pub mod pages;
pub mod position;
pub mod redis;
mod redis_keys;
mod redis_reader;
mod redis_reply;
mod replicas;

use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;

pub use crate::config::HistoryConfig;
pub use position::{Epoch, Position, Seq};

/// Most events one read of a recovery returns: a snapshot's first pages together, or a
/// later page of one room. 256 events of the 256 KiB a REST body may carry is at most
/// 64 MiB in theory, and a few hundred KiB for ordinary events.
pub const RECOVERY_PAGE: usize = 256;

/// One event as every reader delivers it.
#[derive(Debug)]
pub struct Entry {
    pub seq: Seq,
    /// The Socket.IO event name.
    pub event: String,
    /// The rooms it was sent to.
    pub rooms: Vec<String>,
    /// A socket (by sid) that must not receive it: the sender of a `chat:send`, whose ack
    /// carries the message.
    pub except: Option<String>,
    /// The envelope as sent, `offsets` included when history is on.
    pub payload: Box<RawValue>,
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

/// Why the history could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("history store unavailable: {0}")]
    Unavailable(String),
    #[error("the server is shutting down")]
    Closed,
}

/// The history of a server: in memory, or in Redis shared by every instance. Built
/// once per server and kept behind an `Arc`, so the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub enum History {
    Memory(memory::MemoryHistory),
    Redis(redis::RedisHistory),
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

    /// Reads the rooms after the given sequences (at most `page` events in all: the
    /// first page of each room, [`first_page`]) and takes a tick ([`Snapshot::head`]),
    /// atomically.
    pub async fn snapshot(&self, rooms: &[(String, Seq)], page: usize) -> Result<Snapshot, HistoryError> {
        match self {
            History::Memory(h) => h.snapshot(rooms, page),
            History::Redis(h) => h.snapshot(rooms, page).await,
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
}

/// How many events a snapshot of `rooms` rooms reads in each: `page` shared out, so the
/// snapshot's reply is a page too (one for each room at least).
pub fn first_page(page: usize, rooms: usize) -> usize {
    (page / rooms.max(1)).max(1)
}

/// Builds the delivered payload: the envelope, with `offsets` when history is on.
pub fn payload_with_offsets(
    envelope: &str,
    epoch: Option<Epoch>,
    seq: Seq,
    rooms: &[String],
) -> Result<Box<RawValue>, serde_json::Error> {
    let json = match epoch {
        Some(epoch) => position::splice_offsets(envelope, epoch, seq, rooms),
        None => envelope.to_owned(),
    };
    RawValue::from_string(json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(ms: u64) -> Seq {
        Seq { ms, n: 0 }
    }

    fn entry(ms: u64) -> Arc<Entry> {
        Arc::new(Entry {
            seq: s(ms),
            event: "e".into(),
            rooms: vec![],
            except: None,
            payload: RawValue::from_string("{}".into()).unwrap(),
        })
    }

    fn held(after: &[(u64, u64)]) -> RoomView {
        let after = after.iter().map(|(seq, prev)| (entry(*seq), s(*prev))).collect();
        RoomView { exists: true, after, last: Seq::ZERO }
    }

    fn snap(head: u64, now_ms: u64) -> Snapshot {
        Snapshot { epoch: Epoch(1), head: s(head), now_ms, ttl_ms: 300_000, evicted_at: Seq::ZERO, rooms: vec![] }
    }

    #[test]
    fn a_held_room_recovers_only_without_a_gap() {
        let at = snap(100, 100);
        // Held 10, 20, 30: from 10 the next names 10 as predecessor.
        assert_eq!(classify(s(10), &held(&[(20, 10), (30, 20)]), &at), RoomStatus::Recovered);
        // 5 was trimmed but was the predecessor of the oldest held event.
        assert_eq!(classify(s(5), &held(&[(10, 5), (20, 10)]), &at), RoomStatus::Recovered);
        // A position between two events of the room (e.g. given by a `recovery` event).
        assert_eq!(classify(s(15), &held(&[(20, 10)]), &at), RoomStatus::Recovered);
        // Something between 3 and the oldest held event is gone.
        assert_eq!(classify(s(3), &held(&[(10, 5), (20, 10)]), &at), RoomStatus::Expired);
        // Up to date.
        assert_eq!(classify(s(30), &held(&[]), &at), RoomStatus::Recovered);
        // Past the head: never issued.
        assert_eq!(classify(s(101), &held(&[]), &at), RoomStatus::Unknown);
    }

    #[test]
    fn a_room_not_held_recovers_only_while_it_cannot_have_been_written() {
        let gone = RoomView::default();
        assert_eq!(classify(s(1_000), &gone, &snap(2_000, 2_000)), RoomStatus::Recovered);
        assert_eq!(classify(s(1_000), &gone, &snap(2_000, 1_000 + 300_000)), RoomStatus::Expired);
        let evicted = Snapshot { evicted_at: s(1_500), ..snap(2_000, 2_000) };
        assert_eq!(classify(s(1_000), &gone, &evicted), RoomStatus::Expired);
        assert_eq!(classify(s(1_600), &gone, &evicted), RoomStatus::Recovered);
    }
}
