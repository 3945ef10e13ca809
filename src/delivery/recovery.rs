//! Recovery after a reconnect: `auth.offsets` in, missed events and a `recovery`
//! event out. The ordering argument is in the parent module's documentation; its step 3
//! reads the snapshot's rooms in pages:
//!
//! The snapshot holds the first page of each recovered room and the room's newest event
//! then (`last`, at most the tick `H`); [`Replay`] reads the rest of each room up to its
//! `last`, a page at a time, each page once the previous one is in the socket's queue.
//! Together the pages are exactly what one unbounded read at the snapshot would have held
//! (every event of the room in `(position, last]`, and the room has none in `(last, H]`),
//! because each event names its room predecessor and the replay checks the chain across
//! pages; where events were trimmed meanwhile it stops, and the socket is disconnected
//! (`history_gap`) before going live, so it never receives a room with a hole in it and
//! recovers again from the last position it got (finding it `expired` if that is so).
//!
//! Work is bounded per socket: it names at most its own rooms (`user:<sub>` and at most
//! one `vendor:<id>`: [`OffsetsRequest::from_auth`] drops every other), each is read in
//! at most `HISTORY_SIZE / RECOVERY_PAGE + 1` pages, and a page is read only once the
//! previous one was queued to the socket, so a client reading slowly slows its own
//! replay, holding one page per room, and one that stops reading is let go after
//! [`REPLAY_STALL`] (`recovery_stalled`), as a replay longer than the socket's queue
//! always was.

use std::time::Duration;

use serde_json::{Map, Value, json};
use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;
use socketioxide::{SendError, SocketError};

use super::{Close, Filter, GoLiveError, Hub, Ticket};
use crate::history::pages::{Replay, ReplayError};
use crate::history::{
    Entry, Epoch, History, PartSnapshot, Position, RECOVERY_PAGE, RoomStatus, RoomView, Seq, Snapshot, classify,
};
use crate::metrics::StatusLabels;

/// How long a replay waits for a client whose queue stays full before giving up on it.
const REPLAY_STALL: Duration = Duration::from_secs(10);
const REPLAY_RETRY: Duration = Duration::from_millis(5);

/// The positions a client sent for its own rooms in `auth.offsets`. `None`: the room
/// was named with something that is not a position of ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetsRequest {
    pub named: Vec<(String, Option<Position>)>,
}

impl OffsetsRequest {
    /// Reads `auth.offsets` for the socket's `own` rooms; `None` when the client sent no
    /// `offsets` (no recovery, no `recovery` event). Entries for other rooms are ignored;
    /// `offsets` that is not an object names every own room with nothing usable.
    pub fn from_auth(auth: Option<&Value>, own: &[String]) -> Option<OffsetsRequest> {
        let offsets = auth?.get("offsets").filter(|v| !v.is_null())?;
        let named = match offsets.as_object() {
            None => own.iter().map(|room| (room.clone(), None)).collect(),
            Some(map) => own
                .iter()
                .filter_map(|room| {
                    let value = map.get(room)?;
                    Some((room.clone(), value.as_str().and_then(Position::parse)))
                })
                .collect(),
        };
        Some(OffsetsRequest { named })
    }
}

/// One of the socket's own rooms, as the `recovery` event gives its position.
#[derive(Debug, Clone)]
pub struct OwnRoom {
    pub room: String,
    pub part: usize,
    /// Its partition's history, once a snapshot read it.
    pub epoch: Option<Epoch>,
}

/// What the `recovery` event reports.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    pub replayed: usize,
    /// The rooms the client named, with their outcome.
    pub rooms: Vec<(String, RoomStatus)>,
    /// The socket's own rooms, each given a position in the report (history on).
    pub own: Vec<OwnRoom>,
    /// The history was read (it is on, and the snapshots were taken).
    pub read: bool,
    /// Per partition, the snapshot's head (`Seq::ZERO` where none was taken).
    pub heads: Vec<Seq>,
    /// The rooms replayed up to their partition's head.
    pub known: Vec<String>,
}

impl RecoveryReport {
    /// True when every room the client named recovered (and history is on).
    pub fn recovered(&self) -> bool {
        self.read && self.rooms.iter().all(|(_, s)| *s == RoomStatus::Recovered)
    }

    /// The `recovery` event, once the member is live at `position` (per partition). Its
    /// `offsets` give a position in each of the socket's own rooms, up to which it has
    /// every event, so a room that sent it nothing yet is recoverable too (the recipe's
    /// `onAny` keeps them).
    pub fn to_json(&self, position: &[Seq]) -> Value {
        let rooms: Map<String, Value> =
            self.rooms.iter().map(|(room, status)| (room.clone(), json!(status.as_str()))).collect();
        let mut event = json!({ "recovered": self.recovered(), "replayed": self.replayed, "rooms": rooms });
        if let (true, Some(fields)) = (self.read, event.as_object_mut()) {
            let at = |bounds: &[Seq], part: usize| bounds.get(part).copied().unwrap_or(Seq::ZERO);
            let offsets: Map<String, Value> = self
                .own
                .iter()
                .filter_map(|own| {
                    let mut seq = at(position, own.part);
                    if self.known.contains(&own.room) {
                        seq = seq.max(at(&self.heads, own.part));
                    }
                    let position = Position::new(own.epoch?, seq, &own.room);
                    Some((own.room.clone(), json!(position.to_string())))
                })
                .collect();
            fields.insert("offsets".into(), Value::Object(offsets));
        }
        event
    }
}

/// How long a recovery waits for this instance's reader to pass its snapshot, so the
/// positions the `recovery` event gives are current.
const READER_CATCH_UP: Duration = Duration::from_secs(1);

/// Starts live delivery to a socket attached (pending) before its CONNECT was
/// acknowledged: at once without `auth.offsets`, otherwise after replaying what it
/// missed (see the module docs of [`super`]).
pub async fn recover<A: Adapter>(
    hub: &Hub<A>,
    history: &History,
    socket: &SocketRef<A>,
    ticket: Ticket,
    own: Vec<String>,
    request: Option<OffsetsRequest>,
) {
    let plain = Filter::new(ticket.since.clone(), Vec::new(), Vec::new(), &ticket.rooms);
    let Some(request) = request else {
        if let Err(e) = hub.go_live(socket.id, ticket, plain, None) {
            tracing::debug!(sid = %crate::telemetry::log_id(socket.id), error = %e, "delivery did not start");
        }
        return;
    };
    let partitioner = hub.partitioner();
    let own_rooms = own.iter().map(|room| OwnRoom { room: room.clone(), part: partitioner.of(room), epoch: None });
    let mut report = RecoveryReport { own: own_rooms.collect(), ..RecoveryReport::default() };
    if !history.enabled() {
        report.rooms = own.iter().map(|room| (room.clone(), RoomStatus::Unknown)).collect();
        finish(hub, socket, ticket, plain, report);
        return;
    }
    let mut candidates = Vec::new();
    for (room, position) in request.named {
        match position {
            Some(p) => candidates.push((room, p)),
            None => report.rooms.push((room, RoomStatus::Unknown)),
        }
    }
    let seqs: Vec<(String, Seq)> = candidates.iter().map(|(r, p)| (r.clone(), p.seq)).collect();
    // Its own rooms' partitions are read already (the socket was attached to them).
    history.need(|| seqs.iter().map(|(room, _)| room.clone()).collect()).await;
    let snapshots = match history.snapshot(&seqs, RECOVERY_PAGE, &own).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(sid = %crate::telemetry::log_id(socket.id), error = %e, "recovery impossible now: history unreadable");
            hub.detach(socket.id);
            hub.evict(socket.clone(), Close::HistoryUnavailable);
            return;
        }
    };
    report.heads = vec![Seq::ZERO; partitioner.count()];
    let (known, replays) = judge(&candidates, snapshots, &mut report);
    let rooms = hub.rooms_of(socket.id).unwrap_or_else(|| ticket.rooms.clone());
    let filter = Filter::new(ticket.since.clone(), report.heads.clone(), known, &rooms);
    for (epoch, recovered) in replays {
        let replayed = match Replay::new(history, epoch, RECOVERY_PAGE, recovered) {
            Ok(replay) => replay_paced(hub, socket, &filter, replay, &mut report).await,
            Err(e) => stop(hub, socket, &e),
        };
        if !replayed {
            return;
        }
    }
    if !hub.reached(&report.heads, READER_CATCH_UP).await {
        tracing::debug!(sid = %crate::telemetry::log_id(socket.id), "reader behind the recovery snapshot; positions given are older");
    }
    finish(hub, socket, ticket, filter, report);
}

/// The rooms a partition's replay reads: each with the client's position and its view.
type Recovered = Vec<(String, Seq, RoomView)>;
/// Per partition, its epoch and what its replay reads.
type Replays = Vec<(Epoch, Recovered)>;

/// Decides each named room against its partition's snapshot; returns the recovered rooms
/// with the client's positions, and, per partition, its epoch and what to replay (the
/// recovered rooms with their views: the first page of each).
fn judge(
    candidates: &[(String, Position)],
    snapshots: Vec<PartSnapshot>,
    report: &mut RecoveryReport,
) -> (Vec<(String, Seq)>, Replays) {
    let mut known = Vec::new();
    let mut replays = Vec::new();
    for PartSnapshot { part, rooms, mut snapshot } in snapshots {
        if let Some(head) = report.heads.get_mut(part) {
            *head = snapshot.head;
        }
        for own in report.own.iter_mut().filter(|own| own.part == part) {
            own.epoch = Some(snapshot.epoch);
        }
        let mut recovered = Vec::new();
        let views = std::mem::take(&mut snapshot.rooms);
        for ((room, _), view) in rooms.into_iter().zip(views) {
            let Some((_, p)) = candidates.iter().find(|(r, _)| *r == room) else { continue };
            let status = judge_room(p, &room, &view, &snapshot);
            if status == RoomStatus::Recovered {
                known.push((room.clone(), p.seq));
                recovered.push((room.clone(), p.seq, view));
            }
            report.rooms.push((room, status));
        }
        replays.push((snapshot.epoch, recovered));
    }
    report.read = true;
    report.known = known.iter().map(|(room, _)| room.clone()).collect();
    (known, replays)
}

fn judge_room(p: &Position, room: &str, view: &RoomView, snapshot: &Snapshot) -> RoomStatus {
    if p.belongs_to(snapshot.epoch, room) { classify(p.seq, view, snapshot) } else { RoomStatus::Unknown }
}

/// Sends what the client lacks, merged in `Seq` order, each once, a page at a time.
/// `false`: the socket is gone, stopped reading, or the history could not be read whole
/// (and the socket was let go).
async fn replay_paced<A: Adapter>(
    hub: &Hub<A>,
    socket: &SocketRef<A>,
    filter: &Filter,
    mut replay: Replay<'_>,
    report: &mut RecoveryReport,
) -> bool {
    let mut drain = Drain::default();
    loop {
        let e = match replay.next().await {
            Ok(Some(e)) => e,
            Ok(None) => {
                drain.wait().await;
                return true;
            }
            Err(e) => return stop(hub, socket, &e),
        };
        if !filter.wanted(&e) {
            continue;
        }
        match send_paced(socket, &e).await {
            Ok(waited) => {
                drain.sent(waited);
                report.replayed += 1;
            }
            Err(SocketError::Closed) => {
                hub.detach(socket.id);
                return false;
            }
            Err(SocketError::InternalChannelFull) => {
                hub.detach(socket.id);
                hub.evict(socket.clone(), Close::RecoveryStalled);
                return false;
            }
        }
    }
}

/// How fast the client drains its queue, as the replay saw it. A replay longer than the
/// queue leaves it full, and going live emits what was buffered and `recovery` at once,
/// unpaced, under the hub's lock: into a full queue that would disconnect the client
/// (`queue_full`) right at the end. So, once the queue was found full, the replay waits
/// before going live for as long as the client takes to drain a queue's worth at the
/// rate it has been reading. The client loses nothing by it: `recovery` queued sooner
/// would still reach it only after what is queued before it.
#[derive(Default)]
struct Drain {
    sent: usize,
    /// When the queue was first found full, and how many events it then held at most.
    full: Option<(tokio::time::Instant, usize)>,
}

impl Drain {
    fn sent(&mut self, waited: bool) {
        if waited && self.full.is_none() {
            self.full = Some((tokio::time::Instant::now(), self.sent));
        }
        self.sent += 1;
    }

    async fn wait(&self) {
        let Some((since, queued)) = self.full else { return };
        let (elapsed, after) = (since.elapsed(), self.sent.saturating_sub(queued).max(1));
        let per_event = elapsed / u32::try_from(after).unwrap_or(u32::MAX);
        let wait = per_event.saturating_mul(u32::try_from(queued).unwrap_or(u32::MAX)).min(REPLAY_STALL);
        tokio::time::sleep(wait).await;
    }
}

/// Lets a socket go whose replay could not be read whole; it recovers again from the
/// positions it received. Returns `false` (the replay did not finish).
fn stop<A: Adapter>(hub: &Hub<A>, socket: &SocketRef<A>, e: &ReplayError) -> bool {
    let why = Close::from(e);
    tracing::warn!(sid = %crate::telemetry::log_id(socket.id), error = %e, "recovery stopped part way: the client recovers again from what it received");
    hub.detach(socket.id);
    hub.evict(socket.clone(), why);
    false
}

/// Goes live with a `recovery` event, and counts the outcome.
fn finish<A: Adapter>(hub: &Hub<A>, socket: &SocketRef<A>, ticket: Ticket, filter: Filter, report: RecoveryReport) {
    let statuses: Vec<&'static str> = report.rooms.iter().map(|(_, s)| s.as_str()).collect();
    for status in &statuses {
        hub.metrics.recovered_rooms.get_or_create(&StatusLabels { status }).inc();
    }
    match hub.go_live(socket.id, ticket, filter, Some(report)) {
        Ok(replayed) => {
            hub.metrics.replayed_events.inc_by(replayed as u64);
            tracing::info!(sid = %crate::telemetry::log_id(socket.id), replayed, rooms = ?statuses, "socket recovered; live");
        }
        Err(GoLiveError::Gap) => hub.evict(socket.clone(), Close::HistoryGap),
        Err(e) => tracing::debug!(sid = %crate::telemetry::log_id(socket.id), error = %e, "recovery ended early"),
    }
}

/// Sends one replayed event, waiting while the socket's queue is full (the replay may be
/// longer than the queue), up to [`REPLAY_STALL`]. `Ok(true)`: it had to wait.
async fn send_paced<A: Adapter>(socket: &SocketRef<A>, e: &Entry) -> Result<bool, SocketError> {
    let deadline = tokio::time::Instant::now() + REPLAY_STALL;
    let mut waited = false;
    loop {
        match socket.emit(&e.event, &*e.payload) {
            Ok(()) => return Ok(waited),
            Err(SendError::Socket(SocketError::InternalChannelFull)) if tokio::time::Instant::now() < deadline => {
                waited = true;
                tokio::time::sleep(REPLAY_RETRY).await;
            }
            Err(SendError::Socket(SocketError::InternalChannelFull)) => return Err(SocketError::InternalChannelFull),
            Err(_) => return Err(SocketError::Closed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own() -> Vec<String> {
        vec!["user:u1".into(), "vendor:v1".into()]
    }

    #[test]
    fn only_the_sockets_own_rooms_are_read_from_offsets() {
        let p = Position::new(crate::history::Epoch(7), crate::history::Seq { ms: 1, n: 0 }, "user:u1");
        let auth = json!({ "token": "t", "offsets": { "user:u1": p.to_string(), "user:someone": p.to_string() } });
        let req = OffsetsRequest::from_auth(Some(&auth), &own()).unwrap();
        assert_eq!(req.named, vec![("user:u1".to_string(), Some(p))]);
    }

    #[test]
    fn no_offsets_means_no_recovery_and_garbage_means_unknown() {
        assert_eq!(OffsetsRequest::from_auth(Some(&json!({ "token": "t" })), &own()), None);
        assert_eq!(OffsetsRequest::from_auth(Some(&json!({ "offsets": null })), &own()), None);
        assert_eq!(OffsetsRequest::from_auth(None, &own()), None);
        let req = OffsetsRequest::from_auth(Some(&json!({ "offsets": "nope" })), &own()).unwrap();
        assert_eq!(req.named, vec![("user:u1".to_string(), None), ("vendor:v1".to_string(), None)]);
        let req = OffsetsRequest::from_auth(Some(&json!({ "offsets": { "vendor:v1": 5 } })), &own()).unwrap();
        assert_eq!(req.named, vec![("vendor:v1".to_string(), None)]);
    }
}
