//! Delivery: the seam between the history's log and this instance's sockets, and the
//! policy for a socket that cannot keep up.
//!
//! The history is the transport. Every event reaches sockets one way only: the history's
//! log, read in `Seq` order by one reader per instance, which hands each event to
//! [`Hub::deliver`] (in memory the "reader" is whichever appender is emptying the log, one
//! at a time: `history::log`; with Redis, a task). socketioxide's room broadcast is not
//! used for room events (it cannot be filtered per socket, so neither "join, then replay"
//! nor "replay, then join" is free of a window for a loss or a duplicate).
//!
//! Why a socket gets every event of its rooms exactly once, in order:
//! 1. One lock guards the registry (members, their rooms, their state) and the reader's
//!    position. [`Hub::deliver`] takes it per batch, so for any member the events it is
//!    handed are in `Seq` order, each once; an event to several of a member's rooms is
//!    sent once (targets are deduplicated per event).
//! 2. Every socket is attached as *pending* at the reader's position `A`, before its
//!    CONNECT is acknowledged: from then on, every event of its rooms is kept in the
//!    member's buffer instead of being sent. Nothing after `A` can pass it by. A socket
//!    without `auth.offsets` goes live as soon as it is connected (step 4, nothing replayed).
//! 3. The recovery reads a snapshot of its rooms: the first page of held events after the
//!    client's position in each recovered room, the room's newest event `L` (at most `H`),
//!    and a tick `H` appended to the log atomically with the read, so every event of those
//!    rooms before `H` is held up to `L` or gone, and every later one comes through the
//!    log. The rest of each room up to `L` is read a page at a time (`history::pages`),
//!    each page checked against the room predecessors; if one does not follow on, the
//!    socket is disconnected before going live. It sends the events the client
//!    lacks (a [`Filter`] decides: per recovered room, after the client's position; in the
//!    other rooms, after `A`), merged in `Seq` order, outside the lock and paced to the
//!    socket's queue.
//! 4. [`Hub::go_live`] then takes the lock, flushes the buffer through the same filter,
//!    skipping what the replay sent (events of recovered rooms before `H`, which the
//!    snapshot held whole), emits `recovery`, and marks the member live, all before the
//!    lock is released: no event is delivered between the flush and `recovery`, and
//!    every later event comes from the reader, in order. If the reader is behind `H`
//!    (Redis), the filter goes on skipping the replayed events as they arrive. The
//!    positions `recovery` gives are the reader's (recovered rooms: at least `H`), up to
//!    which the socket has every event of the room.
//! 5. A send that fails because the socket's queue is full ends delivery to that socket
//!    there and then: it is removed from the registry before anything else can be sent to
//!    it (a later event slipping into a freed slot would move the client's offsets past
//!    the lost one), and its transport is closed, so it reconnects and recovers from its
//!    offsets. The same goes for a send that would take the bytes the socket may have
//!    queued past `SOCKET_BUFFER_BYTES` (see [`outbox`]): it is not sent.
//!
//! With the history in partitions (`history::partition`, Redis only), steps 1 to 5 hold
//! per partition: each has its own reader, log and `Seq`s, and the registry keeps one
//! reader position per partition (a member is attached at all of them, and a recovery
//! waits for each reader to pass its partition's snapshot). A partition's reader starts
//! when a socket first needs it, and that socket is attached only once the reader holds
//! its place in the log (`history::redis_reader`), so step 2 holds for it. A room lives in one
//! partition, so each room's events reach its sockets in its log's order, each once.
//! What is left is an event to rooms of two partitions, stored as one copy in each, the
//! later copy naming the earlier one's place in its rooms (`Entry::also`):
//! 6. A socket in rooms of both takes the event through the first copy that reaches it
//!    through one of its rooms ([`covered_elsewhere`]): a later copy is skipped for a
//!    member that is in a room of an earlier copy from a position before that copy
//!    (it received that copy, or will), or that recovered such a room (its client had
//!    the event, or is replayed it there). Every member keeps, per room, the position in
//!    that room's partition from which it receives it (`Seq::ZERO` once recovered), so
//!    the rule is decided the same way live, in the flush of step 4, and in the replay
//!    (through [`Filter`]). Each copy is in the history whole or not at all, so a member
//!    gets the event once whichever copies exist; a half-done append is completed (by
//!    its keyed retry, or by a sweep from the record its first copy left,
//!    `history::redis_spread`), the missing copy naming the first, and skipped alike.
//!    Order: the event takes its place in the order of its room in the lowest partition
//!    (copies are appended lowest partition first, for every append alike), so the
//!    events to both rooms reach such a socket through one reader, in order among
//!    themselves. Relative to events of the other room alone it may arrive early or late
//!    by as much as one partition's reader runs ahead of the other's; the positions stay
//!    consistent, because a copy's
//!    `offsets` name only rooms whose place it knows (its own, and the earlier copies'),
//!    so a client's position in the second room never passes an event of that room it
//!    has not received.

mod close;
mod filter;
mod outbox;
mod recovery;
mod registry;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;
use socketioxide::socket::Sid;
use socketioxide::{SendError, SocketError};

use crate::history::{Entry, LogSink, Partitioner, Seq};
use crate::metrics::Metrics;
use crate::net::Transports;
use crate::sync::lock;

pub use close::Close;
pub use filter::{Filter, covered_elsewhere};
pub use outbox::Budget;
use outbox::{Carrier, Outbox, Outgoing};
pub use recovery::{OffsetsRequest, RecoveryReport, recover};

/// Most events a pending member buffers while its replay runs; past it the member is
/// disconnected (it recovers again, from the offsets the replay gave it).
const PENDING_MAX: usize = 20_000;

enum State {
    /// Recovering: events are kept, not sent, until [`Hub::go_live`].
    Pending {
        buffer: Vec<Arc<Entry>>,
    },
    Live(Option<Filter>),
}

struct Member<A: Adapter> {
    socket: SocketRef<A>,
    /// Its rooms, each with the position (in the room's partition) from which it
    /// receives them; `Seq::ZERO` for a room it recovered ([`covered_elsewhere`]).
    rooms: Vec<(String, Seq)>,
    state: State,
    outbox: Outbox,
    /// The connection carrying the socket's session, whose writes free its outbox.
    carrier: Option<Carrier>,
}

struct Registry<A: Adapter> {
    /// Per partition, the `Seq` of the last event handed to [`Hub::deliver`].
    position: Vec<Seq>,
    /// Bumped when the log lost continuity: a recovery begun before cannot go live.
    generation: u64,
    rooms: HashMap<String, Vec<Sid>>,
    members: HashMap<Sid, Member<A>>,
}

/// Proof of where a pending member was attached.
#[derive(Debug, Clone)]
pub struct Ticket {
    /// Per partition, the position it was attached at.
    pub since: Vec<Seq>,
    /// Its rooms, each with the position it receives them from.
    pub rooms: Vec<(String, Seq)>,
    generation: u64,
}

/// Why a recovering socket could not be switched to live delivery.
#[derive(Debug, thiserror::Error)]
pub enum GoLiveError {
    #[error("the socket is gone")]
    Gone,
    #[error("the history log lost continuity during the recovery")]
    Gap,
    #[error("the socket's outgoing queue is full")]
    Full,
}

/// This instance's sockets, by room, fed by the history's reader.
pub struct Hub<A: Adapter> {
    inner: Mutex<Registry<A>>,
    metrics: Arc<Metrics>,
    transports: Arc<Transports>,
    budget: Budget,
    /// Where outbox times count from.
    epoch: Instant,
    partitioner: Partitioner,
    /// The readers' positions, for recoveries waiting for them to pass their snapshots.
    position: watch::Sender<Vec<Seq>>,
}

impl<A: Adapter> Hub<A> {
    pub fn new(metrics: Arc<Metrics>, transports: Arc<Transports>, budget: Budget, partitioner: Partitioner) -> Hub<A> {
        let start = vec![Seq::ZERO; partitioner.count()];
        let registry =
            Registry { position: start.clone(), generation: 0, rooms: HashMap::new(), members: HashMap::new() };
        let position = watch::Sender::new(start);
        let inner = Mutex::new(registry);
        Hub { inner, metrics, transports, budget, epoch: Instant::now(), partitioner, position }
    }

    /// The connections carrying this instance's sessions.
    pub fn transports(&self) -> &Transports {
        &self.transports
    }

    /// Waits (up to `timeout`) until every partition's reader has delivered everything up
    /// to its `heads` entry.
    pub async fn reached(&self, heads: &[Seq], timeout: Duration) -> bool {
        let mut rx = self.position.subscribe();
        let passed = |p: &Vec<Seq>| heads.iter().enumerate().all(|(i, h)| p.get(i).is_some_and(|p| p >= h));
        tokio::time::timeout(timeout, rx.wait_for(passed)).await.is_ok_and(|r| r.is_ok())
    }

    /// Which partition each room lives in.
    pub fn partitioner(&self) -> Partitioner {
        self.partitioner
    }

    /// Adds a socket in `rooms`, pending: its events are kept from now on, and sent from
    /// [`Hub::go_live`]. Called before its CONNECT is acknowledged, so that nothing
    /// accepted after the client learns it is connected can miss it, and after its
    /// session's transport is known ([`Transports::opened`]), whose writes free its outbox.
    pub fn attach(&self, socket: &SocketRef<A>, rooms: Vec<String>) -> Ticket {
        let carrier = self.transports.route(&socket.id.to_string()).map(Carrier::new);
        let mut reg = lock(&self.inner);
        let since = reg.position.clone();
        let state = State::Pending { buffer: Vec::new() };
        let rooms: Vec<(String, Seq)> =
            rooms.into_iter().map(|room| (room.clone(), reg.at(&room, &self.partitioner))).collect();
        for (room, _) in &rooms {
            reg.rooms.entry(room.clone()).or_default().push(socket.id);
        }
        let member = Member { socket: socket.clone(), rooms: rooms.clone(), state, outbox: Outbox::default(), carrier };
        reg.members.insert(socket.id, member);
        Ticket { since, rooms, generation: reg.generation }
    }

    /// The socket's rooms, each with the position it receives it from (as raised since
    /// its attach, see [`LogSink::started`]).
    pub fn rooms_of(&self, sid: Sid) -> Option<Vec<(String, Seq)>> {
        lock(&self.inner).members.get(&sid).map(|m| m.rooms.clone())
    }

    /// The socket joined `room`: it receives the room's events from now on.
    pub fn join(&self, sid: Sid, room: &str) {
        let mut reg = lock(&self.inner);
        let since = reg.at(room, &self.partitioner);
        let Some(member) = reg.members.get_mut(&sid) else { return };
        if member.rooms.iter().any(|(r, _)| r == room) {
            return;
        }
        member.rooms.push((room.to_owned(), since));
        reg.rooms.entry(room.to_owned()).or_default().push(sid);
    }

    pub fn leave(&self, sid: Sid, room: &str) {
        let mut reg = lock(&self.inner);
        let Some(member) = reg.members.get_mut(&sid) else { return };
        member.rooms.retain(|(r, _)| r != room);
        reg.unlist(sid, room);
    }

    /// The socket is gone.
    pub fn detach(&self, sid: Sid) {
        lock(&self.inner).remove(sid);
    }

    /// Switches a pending member to live delivery: flushes what it buffered (skipping what
    /// the replay sent), emits `recovery` (after a recovery), and marks it live, under one lock.
    /// Returns how many events it replayed in all (the report's count).
    pub fn go_live(
        &self,
        sid: Sid,
        ticket: Ticket,
        filter: Filter,
        mut report: Option<RecoveryReport>,
    ) -> Result<usize, GoLiveError> {
        let mut reg = lock(&self.inner);
        if reg.generation != ticket.generation {
            reg.remove(sid);
            return Err(GoLiveError::Gap);
        }
        let position = reg.position.clone();
        let now = outbox::now_ms(self.epoch);
        let Some(member) = reg.members.get_mut(&sid) else { return Err(GoLiveError::Gone) };
        let State::Pending { buffer, .. } = std::mem::replace(&mut member.state, State::Live(None)) else {
            return Ok(0);
        };
        for (room, since) in &mut member.rooms {
            if filter.rooms().iter().any(|(r, s)| r == room && *s == Seq::ZERO) {
                *since = Seq::ZERO;
            }
        }
        let mut sent = Ok(());
        for e in buffer.iter().filter(|e| !filter.replayed(e) && filter.wanted(e)) {
            sent = member.send(e, &self.budget, now);
            if sent.is_err() {
                break;
            }
            if let Some(report) = &mut report {
                report.replayed += 1;
            }
        }
        if let (Ok(()), Some(report)) = (&sent, &report) {
            sent = member.socket.emit(crate::events::wire::RECOVERY, &report.to_json(&position)).map_err(|e| e.into());
        }
        // Kept only while it can still turn an event away: a socket that recovered no
        // room takes everything after its attach, which live delivery does anyway.
        let keep = filter.recovered_any() && !filter.spent(&position);
        let Some(member) = reg.members.get_mut(&sid) else { return Err(GoLiveError::Gone) };
        member.state = State::Live(keep.then_some(filter));
        match sent {
            Ok(()) => Ok(report.map_or(0, |r| r.replayed)),
            Err(Failure::Closed) => Err(GoLiveError::Gone),
            Err(failure) => {
                let socket = member.socket.clone();
                reg.remove(sid);
                drop(reg);
                self.evict(socket, Close::from(&failure));
                Err(GoLiveError::Full)
            }
        }
    }
}

/// Why a send to a member failed.
enum Failure {
    Full,
    /// Not sent: it would take the bytes the socket may have queued past its budget.
    Bytes,
    Closed,
}

impl From<SendError> for Failure {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Socket(SocketError::InternalChannelFull) => Failure::Full,
            // Closed, or a payload the parser refused (cannot happen: it is valid JSON).
            _ => Failure::Closed,
        }
    }
}

fn send<A: Adapter>(socket: &SocketRef<A>, e: &Entry) -> Result<(), Failure> {
    socket.emit(&e.event, &*e.payload).map_err(Failure::from)
}

impl<A: Adapter> LogSink for Hub<A> {
    fn deliver(&self, entries: &[Arc<Entry>]) {
        if entries.is_empty() {
            return;
        }
        let mut evicted = Vec::new();
        let out = Outgoing { budget: &self.budget, now: outbox::now_ms(self.epoch) };
        {
            let mut reg = lock(&self.inner);
            for e in entries {
                reg.deliver_one(e, &out, &mut evicted);
            }
            // Published under the registry's lock, copied into the watch's own vector:
            // no allocation per delivery. (The watch's waiters never take this lock.)
            self.position.send_if_modified(|p| {
                let moved = *p != reg.position;
                if moved {
                    p.clone_from(&reg.position);
                }
                moved
            });
        }
        for (socket, why) in evicted {
            self.evict(socket, why);
        }
    }

    /// A socket attached before the reader started would otherwise count as receiving
    /// that partition from before its head, which no reader here delivers: an event's
    /// second copy would be skipped for it as if the first had reached it. (A room
    /// recovered before the reader started, which only a recovery that gave up waiting
    /// for it can do, is raised too: at worst such a socket gets a copy twice.)
    fn started(&self, part: usize, at: Seq) {
        let mut reg = lock(&self.inner);
        if reg.position.len() <= part {
            reg.position.resize(part + 1, Seq::ZERO);
        }
        reg.position[part] = reg.position[part].max(at);
        let partitioner = self.partitioner;
        for member in reg.members.values_mut() {
            for (room, since) in &mut member.rooms {
                if partitioner.of(room) == part && *since < at {
                    *since = at;
                }
            }
        }
    }

    fn gap(&self, why: &str) {
        let members: Vec<SocketRef<A>> = {
            let mut reg = lock(&self.inner);
            reg.generation += 1;
            reg.rooms.clear();
            reg.members.drain().map(|(_, m)| m.socket).collect()
        };
        tracing::error!(
            reason = why,
            sockets = members.len(),
            "delivery cannot prove continuity: disconnecting every socket so each recovers"
        );
        for socket in members {
            self.evict(socket, Close::HistoryGap);
        }
    }
}
