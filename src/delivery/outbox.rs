//! How many bytes a socket may have waiting to be written (`SOCKET_BUFFER_BYTES`).
//!
//! Upstream counts packets, not bytes, and says nothing of what it wrote: engineioxide
//! queues each socket's packets in a channel bounded by `max_buffer_size` packets
//! (`Socket::new` and `Socket::reserve` in engineioxide 0.17 `socket.rs`; the channel
//! `internal_tx` is crate-private), its WebSocket writer (`forward_to_socket` in
//! `transport/ws.rs`) reports nothing, and socketioxide hides the Engine.IO socket
//! (`Socket::esocket`) and encodes every emit into a fresh buffer (the common parser's
//! `serialize_packet`), so nothing we hand over can tell us when it leaves.
//!
//! What does tell is the connection: every accepted stream counts the bytes it wrote
//! ([`ConnHandle::written`]), and [`Route`] says which connection carries the session
//! now. An [`Outbox`] records the size of each packet handed over, oldest first, and
//! forgets packets by three rules, each proving that they left the queue:
//! - **written**: between two charges on the same carrier, `delta` bytes were written;
//!   the packets at the front whose sizes add up to at most `delta` are out (a packet
//!   partly written is kept, and its written part credited once the rest is out). The
//!   written bytes include what we never charged (WebSocket and HTTP framing, Engine.IO
//!   pings, acks other than chat's, a recovery's replay), so this over-credits by that
//!   much; never by more than was written, and credit left over once the outbox is empty
//!   is dropped, so it never pays for a packet not yet handed over. When the carrier
//!   changes, its count starts again from the new connection: nothing is credited.
//! - **packets**: the queue holds at most `SOCKET_BUFFER_PACKETS` packets, so at most
//!   the last that many we handed over;
//! - **heartbeat**: Engine.IO queues a ping behind every packet within `PING_INTERVAL_MS`
//!   and closes the session unless the client answers it within `PING_TIMEOUT_MS`, after
//!   reading everything queued before it: a packet handed over longer ago than both has
//!   been written, or its socket is closing.
//!
//! What is left is an upper bound of what is queued, up to the over-credit above. Over
//! WebSocket a connection carries one session for its whole life, so the written rule is
//! exact but for framing: a client that stopped reading stops the count (once the kernel's
//! socket buffers are full) and is cut after at most the budget more, and a client that
//! keeps reading is never cut, however much it is sent, unless more than the budget is
//! handed over faster than it is written. Over long-polling it is approximate: a
//! keep-alive connection (or a proxy's pooled one) may carry several sessions in turn,
//! whose bytes then count for each other, and a `GET` on a new connection is a move,
//! which credits nothing. The bound still holds there through the other two rules: the
//! queue never holds more than `SOCKET_BUFFER_PACKETS` packets, and a session that does
//! not poll misses its heartbeat and is closed.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;

use super::{Close, Failure, Hub, Member, send};
use crate::history::Entry;
use crate::net::{ConnHandle, Route};
use crate::sync::lock;

/// The limits every socket's outbox is held to.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// `SOCKET_BUFFER_BYTES`.
    pub bytes: usize,
    /// `SOCKET_BUFFER_PACKETS`: the queue's own bound.
    pub packets: usize,
    /// `PING_INTERVAL_MS + PING_TIMEOUT_MS`: older packets have left the queue.
    pub horizon: Duration,
}

/// What the connection carrying a session had written, read at a charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Written {
    /// Which carrier: [`Route::moves`] when it was read.
    pub(super) carrier: u32,
    pub(super) bytes: u64,
}

/// A member's cached view of its session's [`Route`]: on the hot path, one atomic load
/// to see that the session did not move, and one to read what its connection wrote.
#[derive(Debug)]
pub(super) struct Carrier {
    route: Arc<Route>,
    conn: Arc<ConnHandle>,
    moves: u32,
}

impl Carrier {
    pub(super) fn new(route: Arc<Route>) -> Carrier {
        let (conn, moves) = route.carrier();
        Carrier { route, conn, moves }
    }

    /// What the session's connection has written so far; after a move, the new one's.
    pub(super) fn written(&mut self) -> Written {
        if self.route.moves() != self.moves {
            (self.conn, self.moves) = self.route.carrier();
        }
        Written { carrier: self.moves, bytes: self.conn.written() }
    }
}

/// One socket's record of what it was handed that may still be queued.
#[derive(Debug, Default)]
pub(super) struct Outbox {
    /// When each packet was handed over (ms since the hub's epoch) and its size, oldest
    /// first. Eight bytes a packet, and nothing for a socket with nothing in flight.
    sent: VecDeque<(u32, u32)>,
    bytes: usize,
    /// When the last packet was handed over, to forget everything after a long pause
    /// (and so never misread a wrapped `u32`).
    last: u64,
    /// The carrier's count at the last charge.
    seen: Option<Written>,
    /// Bytes written and not yet matched to whole packets: part of the front packet.
    credit: u64,
}

impl Outbox {
    /// Counts `size` bytes about to be handed over at `now` (ms since the hub's epoch),
    /// once what `written` proves out has been forgotten (`None`: no carrier known).
    /// `false`: with them, what may be queued passes the budget (the packet is not
    /// counted, and must not be sent). A packet alone in the outbox always passes, so an
    /// event larger than the budget still reaches a socket that keeps up.
    pub(super) fn charge(&mut self, now: u64, size: usize, written: Option<Written>, budget: &Budget) -> bool {
        self.credit(written);
        let horizon = u64::try_from(budget.horizon.as_millis()).unwrap_or(u64::MAX);
        if now.saturating_sub(self.last) >= horizon {
            self.clear();
        }
        while let Some(&(at, n)) = self.sent.front() {
            let at = self.last - u64::from((self.last as u32).wrapping_sub(at));
            if now.saturating_sub(at) < horizon && self.sent.len() < budget.packets {
                break;
            }
            self.pop(n);
            // What was credited of it was part of this packet.
            self.credit = 0;
        }
        if !self.sent.is_empty() && self.bytes + size > budget.bytes {
            return false;
        }
        self.sent.push_back((now as u32, u32::try_from(size).unwrap_or(u32::MAX)));
        self.bytes += size;
        self.last = now;
        if self.sent.capacity() > 64 && self.sent.len() * 4 < self.sent.capacity() {
            self.sent.shrink_to(self.sent.len() * 2);
        }
        true
    }

    /// Forgets the packets that the bytes written since the last charge prove out.
    fn credit(&mut self, written: Option<Written>) {
        let then = std::mem::replace(&mut self.seen, written);
        match (then, written) {
            (Some(then), Some(now)) if then.carrier == now.carrier => {
                self.credit = self.credit.saturating_add(now.bytes.saturating_sub(then.bytes));
            }
            // A new carrier (or none): its count is a new baseline.
            _ => self.credit = 0,
        }
        while let Some(&(_, n)) = self.sent.front()
            && u64::from(n) <= self.credit
        {
            self.credit -= u64::from(n);
            self.pop(n);
        }
        if self.sent.is_empty() {
            // Framing and uncharged packets: never credit for packets not yet handed over.
            self.credit = 0;
        }
    }

    fn pop(&mut self, n: u32) {
        self.sent.pop_front();
        self.bytes -= n as usize;
    }

    fn clear(&mut self) {
        self.sent = VecDeque::new();
        self.bytes = 0;
        self.credit = 0;
    }

    /// Bytes that may still be queued.
    #[cfg(test)]
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }
}

/// What one delivery batch checks each send against.
pub(super) struct Outgoing<'a> {
    pub(super) budget: &'a Budget,
    pub(super) now: u64,
}

impl<A: Adapter> Hub<A> {
    /// Counts `bytes` the socket is about to be sent outside delivery (a chat
    /// acknowledgement carries the whole message). `false`: they would take it past its
    /// budget; the socket is disconnected, and the caller must not send them.
    pub fn charge(&self, socket: &SocketRef<A>, bytes: usize) -> bool {
        let now = now_ms(self.epoch);
        let mut reg = lock(&self.inner);
        let Some(member) = reg.members.get_mut(&socket.id) else { return true };
        if member.charge(now, bytes, &self.budget) {
            return true;
        }
        reg.remove(socket.id);
        drop(reg);
        self.evict(socket.clone(), Close::from(&Failure::Bytes));
        false
    }
}

impl<A: Adapter> Member<A> {
    /// Counts `size` bytes about to be handed to the socket (see [`Outbox::charge`]).
    fn charge(&mut self, now: u64, size: usize, budget: &Budget) -> bool {
        let written = self.carrier.as_mut().map(Carrier::written);
        self.outbox.charge(now, size, written, budget)
    }

    /// Sends one event, unless its bytes would take the socket's queue past the budget.
    pub(super) fn send(&mut self, e: &Entry, budget: &Budget, now: u64) -> Result<(), Failure> {
        if !self.charge(now, packet_size(e), budget) {
            return Err(Failure::Bytes);
        }
        send(&self.socket, e)
    }
}

/// The bytes an event takes in a socket's queue: `42["<event>",<payload>]` and the
/// Engine.IO framing.
fn packet_size(e: &Entry) -> usize {
    e.event.len() + e.payload.get().len() + 8
}

/// Milliseconds since `epoch`.
pub(super) fn now_ms(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: Budget = Budget { bytes: 1000, packets: 4, horizon: Duration::from_secs(10) };

    #[test]
    fn a_reader_that_stops_passes_the_budget() {
        let mut o = Outbox::default();
        for i in 0..3 {
            assert!(o.charge(i, 300, None, &BUDGET), "packet {i}");
        }
        assert!(!o.charge(3, 300, None, &BUDGET), "1200 bytes may be queued");
        assert_eq!(o.bytes(), 900, "the refused packet is not counted");
    }

    #[test]
    fn what_the_heartbeat_or_the_packet_bound_proves_written_no_longer_counts() {
        let mut o = Outbox::default();
        assert!(o.charge(0, 600, None, &BUDGET));
        assert!(!o.charge(5_000, 600, None, &BUDGET));
        assert!(o.charge(10_001, 600, None, &BUDGET), "the first left within the heartbeat window");
        // Small packets: the queue holds at most 4, so older ones are out.
        let mut o = Outbox::default();
        for i in 0..100 {
            assert!(o.charge(i, 200, None, &BUDGET), "packet {i}");
        }
        assert_eq!(o.bytes(), 800);
    }

    #[test]
    fn one_packet_larger_than_the_budget_passes_alone() {
        let mut o = Outbox::default();
        assert!(o.charge(0, 5_000, None, &BUDGET));
        assert!(!o.charge(1, 1, None, &BUDGET));
        assert!(o.charge(20_000, 5_000, None, &BUDGET), "after a pause, alone again");
    }

    /// No packet bound and no heartbeat within the tests' few milliseconds: only writes free.
    const WIDE: Budget = Budget { bytes: 1000, packets: usize::MAX, horizon: Duration::from_secs(10) };

    fn on(carrier: u32, bytes: u64) -> Option<Written> {
        Some(Written { carrier, bytes })
    }

    #[test]
    fn bytes_written_on_the_carrier_free_the_budget() {
        let mut o = Outbox::default();
        for i in 0..3 {
            assert!(o.charge(i, 300, on(0, 0), &WIDE), "packet {i}");
        }
        assert!(!o.charge(3, 300, on(0, 0), &WIDE), "nothing written: 1200 bytes may be queued");
        // The first packet and part of the second left.
        assert!(o.charge(4, 300, on(0, 450), &WIDE));
        assert_eq!(o.bytes(), 900);
        // The rest of the second: it is out once all of it is, its first part counted too.
        assert!(o.charge(5, 100, on(0, 600), &WIDE));
        assert_eq!(o.bytes(), 700);
    }

    #[test]
    fn a_new_carrier_is_a_new_baseline_and_credits_nothing() {
        let mut o = Outbox::default();
        assert!(o.charge(0, 600, on(0, 0), &WIDE));
        // The upgrade: the WebSocket's count has nothing to do with the polling connection's.
        assert!(!o.charge(1, 600, on(1, 5_000), &WIDE), "a move credits nothing");
        assert!(o.charge(2, 600, on(1, 5_600), &WIDE), "what the new carrier writes counts");
        assert_eq!(o.bytes(), 600);
        // A session whose carrier is not known: nothing credited, as before writes were counted.
        assert!(!o.charge(3, 600, None, &WIDE));
    }

    #[test]
    fn a_reader_that_keeps_up_is_never_refused_however_much_it_is_sent() {
        let mut o = Outbox::default();
        let mut written = 0;
        // About 50 MB in 10 ms, far past the budget within one heartbeat window; by each
        // charge the client has read all but the last two packets (and framing: +4 each).
        let sizes = [300u64, 250, 120, 299, 7];
        let mut handed = std::collections::VecDeque::new();
        for i in 0..250_000u64 {
            let size = sizes[(i % 5) as usize];
            assert!(o.charge(i / 25_000, size as usize, on(0, written), &WIDE), "packet {i}");
            handed.push_back(size + 4);
            while handed.len() > 2 {
                written += handed.pop_front().unwrap_or_default();
            }
        }
        assert!(o.bytes() < 1000);
    }

    #[test]
    fn credit_never_pays_for_packets_not_yet_handed_over() {
        let mut o = Outbox::default();
        assert!(o.charge(0, 100, on(0, 0), &WIDE));
        // 50 kB of pings, replays and framing were written, then the client stopped reading.
        for i in 1..4 {
            assert!(o.charge(i, 300, on(0, 50_000), &WIDE), "packet {i}");
        }
        assert!(!o.charge(4, 300, on(0, 50_000), &WIDE), "only the 100 bytes charged were credited");
        assert_eq!(o.bytes(), 900);
    }
}
