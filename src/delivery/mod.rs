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

mod close;
mod filter;
mod outbox;
mod recovery;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;
use socketioxide::socket::Sid;
use socketioxide::{SendError, SocketError};

use crate::history::{Entry, LogSink, Seq};
use crate::metrics::Metrics;
use crate::net::Transports;
use crate::sync::lock;

pub use close::Close;
pub use filter::Filter;
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
    rooms: Vec<String>,
    state: State,
    outbox: Outbox,
    /// The connection carrying the socket's session, whose writes free its outbox.
    carrier: Option<Carrier>,
}

struct Registry<A: Adapter> {
    /// The `Seq` of the last event handed to [`Hub::deliver`].
    position: Seq,
    /// Bumped when the log lost continuity: a recovery begun before cannot go live.
    generation: u64,
    rooms: HashMap<String, Vec<Sid>>,
    members: HashMap<Sid, Member<A>>,
}

/// Proof of where a pending member was attached.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    pub since: Seq,
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
    /// The reader's position, for recoveries waiting for it to pass their snapshot.
    position: watch::Sender<Seq>,
}

impl<A: Adapter> Hub<A> {
    pub fn new(metrics: Arc<Metrics>, transports: Arc<Transports>, budget: Budget) -> Hub<A> {
        let registry = Registry { position: Seq::ZERO, generation: 0, rooms: HashMap::new(), members: HashMap::new() };
        let position = watch::Sender::new(Seq::ZERO);
        Hub { inner: Mutex::new(registry), metrics, transports, budget, epoch: Instant::now(), position }
    }

    /// The connections carrying this instance's sessions.
    pub fn transports(&self) -> &Transports {
        &self.transports
    }

    /// Waits (up to `timeout`) until the reader has delivered everything up to `seq`.
    pub async fn reached(&self, seq: Seq, timeout: Duration) -> bool {
        let mut rx = self.position.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|p| *p >= seq)).await.is_ok_and(|r| r.is_ok())
    }

    /// Adds a socket in `rooms`, pending: its events are kept from now on, and sent from
    /// [`Hub::go_live`]. Called before its CONNECT is acknowledged, so that nothing
    /// accepted after the client learns it is connected can miss it, and after its
    /// session's transport is known ([`Transports::opened`]), whose writes free its outbox.
    pub fn attach(&self, socket: &SocketRef<A>, rooms: Vec<String>) -> Ticket {
        let carrier = self.transports.route(&socket.id.to_string()).map(Carrier::new);
        let mut reg = lock(&self.inner);
        let since = reg.position;
        let state = State::Pending { buffer: Vec::new() };
        for room in &rooms {
            reg.rooms.entry(room.clone()).or_default().push(socket.id);
        }
        let member = Member { socket: socket.clone(), rooms, state, outbox: Outbox::default(), carrier };
        reg.members.insert(socket.id, member);
        Ticket { since, generation: reg.generation }
    }

    /// The socket joined `room`: it receives the room's events from now on.
    pub fn join(&self, sid: Sid, room: &str) {
        let mut reg = lock(&self.inner);
        let Some(member) = reg.members.get_mut(&sid) else { return };
        if member.rooms.iter().any(|r| r == room) {
            return;
        }
        member.rooms.push(room.to_owned());
        reg.rooms.entry(room.to_owned()).or_default().push(sid);
    }

    pub fn leave(&self, sid: Sid, room: &str) {
        let mut reg = lock(&self.inner);
        let Some(member) = reg.members.get_mut(&sid) else { return };
        member.rooms.retain(|r| r != room);
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
        let position = reg.position;
        let now = outbox::now_ms(self.epoch);
        let Some(member) = reg.members.get_mut(&sid) else { return Err(GoLiveError::Gone) };
        let State::Pending { buffer, .. } = std::mem::replace(&mut member.state, State::Live(None)) else {
            return Ok(0);
        };
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
            sent = member.socket.emit(crate::events::wire::RECOVERY, &report.to_json(position)).map_err(|e| e.into());
        }
        let spent = filter.spent(position);
        let Some(member) = reg.members.get_mut(&sid) else { return Err(GoLiveError::Gone) };
        member.state = State::Live((!spent).then_some(filter));
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

impl<A: Adapter> Registry<A> {
    fn unlist(&mut self, sid: Sid, room: &str) {
        if let Some(list) = self.rooms.get_mut(room) {
            list.retain(|s| *s != sid);
            if list.is_empty() {
                self.rooms.remove(room);
            }
        }
    }

    fn remove(&mut self, sid: Sid) -> Option<Member<A>> {
        let member = self.members.remove(&sid)?;
        for room in &member.rooms {
            self.unlist(sid, room);
        }
        Some(member)
    }

    /// Hands one event to its members; returns the sockets that must be evicted, and why.
    fn deliver_one(&mut self, e: &Arc<Entry>, out: &Outgoing, evicted: &mut Vec<(SocketRef<A>, Close)>) {
        self.position = self.position.max(e.seq);
        let mut targets: Vec<Sid> = Vec::new();
        for room in &e.rooms {
            if let Some(list) = self.rooms.get(room) {
                targets.extend_from_slice(list);
            }
        }
        if e.rooms.len() > 1 {
            targets.sort_unstable();
            targets.dedup();
        }
        let except = e.except.as_deref().and_then(|s| s.parse::<Sid>().ok());
        for sid in targets {
            if Some(sid) == except {
                continue;
            }
            let Some(member) = self.members.get_mut(&sid) else { continue };
            let outcome = match &mut member.state {
                State::Pending { buffer, .. } => {
                    buffer.push(e.clone());
                    if buffer.len() > PENDING_MAX { Err(Failure::Full) } else { Ok(()) }
                }
                State::Live(Some(filter)) if filter.replayed(e) || !filter.wanted(e) => Ok(()),
                State::Live(filter) => {
                    if filter.as_ref().is_some_and(|f| f.spent(e.seq)) {
                        *filter = None;
                    }
                    member.send(e, out.budget, out.now)
                }
            };
            match outcome {
                Ok(()) => {}
                Err(Failure::Closed) => {
                    self.remove(sid);
                }
                Err(failure) => {
                    if let Some(member) = self.remove(sid) {
                        evicted.push((member.socket, Close::from(&failure)));
                    }
                }
            }
        }
    }
}

impl<A: Adapter> LogSink for Hub<A> {
    fn deliver(&self, entries: &[Arc<Entry>]) {
        if entries.is_empty() {
            return;
        }
        let mut evicted = Vec::new();
        let out = Outgoing { budget: &self.budget, now: outbox::now_ms(self.epoch) };
        let position = {
            let mut reg = lock(&self.inner);
            for e in entries {
                reg.deliver_one(e, &out, &mut evicted);
            }
            reg.position
        };
        self.position.send_if_modified(|p| std::mem::replace(p, position) != position);
        for (socket, why) in evicted {
            self.evict(socket, why);
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
