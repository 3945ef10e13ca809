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

pub mod memory;
pub mod position;
pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;

pub use position::{Epoch, Position, Seq};

/// How the history is kept.
#[derive(Debug, Clone)]
pub struct HistoryConfig {
    /// `HISTORY_ENABLED=false` turns history (and with it `offsets` and recovery) off.
    pub enabled: bool,
    /// `HISTORY_TTL_SECS`: how long an event stays recoverable.
    pub ttl: Duration,
    /// `HISTORY_SIZE`: how many recent events of a room stay recoverable.
    pub size: usize,
    /// `HISTORY_MAX_BYTES`: the in-memory history's total bound; past it the rooms
    /// written longest ago are dropped whole.
    pub max_bytes: usize,
}

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

/// Where an appended event went.
#[derive(Debug, Clone)]
pub struct Appended {
    pub seq: Seq,
    /// One position per room, when history is on.
    pub offsets: Vec<(String, Position)>,
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
    /// Held events after the position, oldest first, each with its room predecessor.
    pub after: Vec<(Arc<Entry>, Seq)>,
    /// The oldest and newest held `Seq` of the room.
    pub first: Option<Seq>,
    pub last: Option<Seq>,
    /// Whether an event at exactly the position is held.
    pub has_position: bool,
}

/// Decides a room's recovery from what the store holds. The rule: recovered only when
/// the first held event after `p` names `p` as its predecessor (nothing between them
/// was trimmed), or nothing came after `p`.
pub fn classify(p: Seq, view: &RoomView) -> RoomStatus {
    if !view.exists {
        return RoomStatus::Expired;
    }
    match (view.after.first(), view.last) {
        (Some((_, prev)), _) if *prev == p => RoomStatus::Recovered,
        // Inside the held range but not an event of this room.
        (Some(_), _) if view.first.is_some_and(|first| p >= first) && !view.has_position => RoomStatus::Unknown,
        (Some(_), _) => RoomStatus::Expired,
        (None, Some(last)) if last == p => RoomStatus::Recovered,
        // Past the newest event of the room: a position never issued.
        (None, Some(last)) if last < p => RoomStatus::Unknown,
        (None, _) => RoomStatus::Expired,
    }
}

/// A consistent read of several rooms for one recovery.
#[derive(Debug)]
pub struct Snapshot {
    pub epoch: Epoch,
    /// The newest `Seq` of the whole history at the time of the read: every event of the
    /// named rooms up to it is in `rooms`; later ones arrive through the log.
    pub head: Seq,
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

    /// Reads the rooms after the given sequences, atomically with the history's head.
    pub async fn snapshot(&self, rooms: &[(String, Seq)]) -> Result<Snapshot, HistoryError> {
        match self {
            History::Memory(h) => Ok(h.snapshot(rooms)),
            History::Redis(h) => h.snapshot(rooms).await,
        }
    }

    /// Starts the reader that hands the log to `sink`, in order, on this instance.
    pub fn start_reader(&self, sink: Arc<dyn LogSink>) {
        match self {
            History::Memory(h) => h.start_reader(sink),
            History::Redis(h) => h.start_reader(sink),
        }
    }

    /// Stops the log: later appends answer [`HistoryError::Closed`]; returns once this
    /// instance's reader has delivered what was accepted here (in memory) or has stopped
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

/// Builds the delivered payload: the envelope, with `offsets` when history is on.
pub fn payload_with_offsets(
    envelope: &str,
    epoch: Option<Epoch>,
    seq: Seq,
    rooms: &[String],
) -> Result<Box<RawValue>, serde_json::Error> {
    let json = match epoch {
        Some(epoch) => position::with_offsets(envelope, &position::offsets_json(epoch, seq, rooms)),
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

    fn view(after: &[(u64, u64)], first: u64, last: u64, has: bool) -> RoomView {
        RoomView {
            exists: true,
            after: after.iter().map(|(seq, prev)| (entry(*seq), s(*prev))).collect(),
            first: Some(s(first)),
            last: Some(s(last)),
            has_position: has,
        }
    }

    #[test]
    fn a_room_recovers_only_without_a_gap() {
        // Held 10, 20, 30: from 10 the next names 10 as predecessor.
        assert_eq!(classify(s(10), &view(&[(20, 10), (30, 20)], 10, 30, true)), RoomStatus::Recovered);
        // 5 was trimmed but was the predecessor of the oldest held event.
        assert_eq!(classify(s(5), &view(&[(10, 5), (20, 10)], 10, 20, false)), RoomStatus::Recovered);
        // Something between 3 and the oldest held event is gone.
        assert_eq!(classify(s(3), &view(&[(10, 5), (20, 10)], 10, 20, false)), RoomStatus::Expired);
        // Inside the held range, yet not one of the room's events.
        assert_eq!(classify(s(15), &view(&[(20, 10)], 10, 20, false)), RoomStatus::Unknown);
        // Up to date; or past the newest event.
        assert_eq!(classify(s(30), &view(&[], 10, 30, true)), RoomStatus::Recovered);
        assert_eq!(classify(s(31), &view(&[], 10, 30, false)), RoomStatus::Unknown);
        // The room is gone.
        assert_eq!(classify(s(30), &RoomView::default()), RoomStatus::Expired);
    }
}
