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
//! What can be proved instead is when a packet has *certainly* left the queue:
//! - the queue holds at most `SOCKET_BUFFER_PACKETS` packets, so at most the last that
//!   many we handed over;
//! - Engine.IO's heartbeat queues a ping behind every packet within `PING_INTERVAL_MS`
//!   and closes the session unless the client answers it within `PING_TIMEOUT_MS`, after
//!   reading everything queued before it: a packet handed over longer ago than both
//!   has been written, or its socket is closing.
//!
//! The bytes handed over that could still be queued are therefore an upper bound of
//! what is queued, exact for a client that stopped reading. A socket whose bound passes
//! the budget is treated as a slow reader; a fast reader is only caught when it is
//! handed more than the budget within one heartbeat window.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;

use super::{Failure, Hub, Member, reason, send};
use crate::history::Entry;

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
}

impl Outbox {
    /// Counts `size` bytes about to be handed over at `now` (ms since the hub's epoch).
    /// `false`: with them, what may be queued passes the budget (the packet is not
    /// counted, and must not be sent). A packet alone in the outbox always passes, so an
    /// event larger than the budget still reaches a socket that keeps up.
    pub(super) fn charge(&mut self, now: u64, size: usize, budget: &Budget) -> bool {
        let horizon = u64::try_from(budget.horizon.as_millis()).unwrap_or(u64::MAX);
        if now.saturating_sub(self.last) >= horizon {
            self.clear();
        }
        while let Some(&(at, n)) = self.sent.front() {
            let at = self.last - u64::from((self.last as u32).wrapping_sub(at));
            if now.saturating_sub(at) < horizon && self.sent.len() < budget.packets {
                break;
            }
            self.sent.pop_front();
            self.bytes -= n as usize;
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

    fn clear(&mut self) {
        self.sent = VecDeque::new();
        self.bytes = 0;
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
        let mut reg = self.lock();
        let Some(member) = reg.members.get_mut(&socket.id) else { return true };
        if member.outbox.charge(now, bytes, &self.budget) {
            return true;
        }
        reg.remove(socket.id);
        drop(reg);
        self.evict(socket.clone(), reason(&Failure::Bytes));
        false
    }
}

impl<A: Adapter> Member<A> {
    /// Sends one event, unless its bytes would take the socket's queue past the budget.
    pub(super) fn send(&mut self, e: &Entry, budget: &Budget, now: u64) -> Result<(), Failure> {
        if !self.outbox.charge(now, packet_size(e), budget) {
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
            assert!(o.charge(i, 300, &BUDGET), "packet {i}");
        }
        assert!(!o.charge(3, 300, &BUDGET), "1200 bytes may be queued");
        assert_eq!(o.bytes(), 900, "the refused packet is not counted");
    }

    #[test]
    fn what_the_heartbeat_or_the_packet_bound_proves_written_no_longer_counts() {
        let mut o = Outbox::default();
        assert!(o.charge(0, 600, &BUDGET));
        assert!(!o.charge(5_000, 600, &BUDGET));
        assert!(o.charge(10_001, 600, &BUDGET), "the first left within the heartbeat window");
        // Small packets: the queue holds at most 4, so older ones are out.
        let mut o = Outbox::default();
        for i in 0..100 {
            assert!(o.charge(i, 200, &BUDGET), "packet {i}");
        }
        assert_eq!(o.bytes(), 800);
    }

    #[test]
    fn one_packet_larger_than_the_budget_passes_alone() {
        let mut o = Outbox::default();
        assert!(o.charge(0, 5_000, &BUDGET));
        assert!(!o.charge(1, 1, &BUDGET));
        assert!(o.charge(20_000, 5_000, &BUDGET), "after a pause, alone again");
    }
}
