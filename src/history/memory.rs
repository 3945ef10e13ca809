//! The history of a single instance, in memory.
//!
//! One lock orders everything: an append takes the next [`Seq`], queues the event in the
//! log (bounded: see [`super::log`]; refused there, it is refused whole) and stores it in
//! the ring of each of its rooms before the lock is released, so the log holds events in
//! `Seq` order. Then, outside the lock, the appender hands the log to the sink unless
//! another caller is doing so ([`super::log`] says why that is each event once, in
//! order, with no task woken per event). Memory is bounded three ways: a room keeps at most
//! `HISTORY_SIZE` events, none older than `HISTORY_TTL_SECS`, and all rooms together at
//! most `HISTORY_MAX_BYTES` (the rooms written longest ago go first, whole). A recovery
//! copies at most a page of a ring per lock ([`MemoryHistory::page`]).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::log::{self, Log};
use super::{
    Appended, Entry, Epoch, HistoryConfig, HistoryError, LogSink, Publish, RoomView, Seq, Snapshot,
    payload_with_offsets,
};
use crate::sync::lock;

/// What one held event costs besides its payload and room names (the slot, the `Arc`,
/// the entry's fields), so the byte bound counts memory, not just JSON.
const SLOT_OVERHEAD: usize = 160;
/// Rooms whose newest event is past the TTL, dropped per append (the rest go in the sweep).
const SWEEP_PER_APPEND: usize = 4;
/// How often idle rooms are swept while nothing is appended.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

pub struct MemoryHistory {
    config: HistoryConfig,
    epoch: Epoch,
    inner: Arc<Mutex<Inner>>,
    log: Arc<Log>,
    /// Drops idle rooms while nothing is appended; stopped on close.
    sweeper: Mutex<Option<tokio::task::JoinHandle<()>>>,
    closed: AtomicBool,
}

struct Inner {
    head: Seq,
    rooms: HashMap<String, Ring>,
    /// Rooms by the `Seq` of their newest event: the front was written longest ago.
    by_age: BTreeSet<(Seq, Arc<str>)>,
    bytes: usize,
    /// The head when whole rooms were last dropped for the byte bound.
    evicted_at: Seq,
}

struct Ring {
    /// The room's name, shared with its place in `by_age`.
    name: Arc<str>,
    slots: VecDeque<Slot>,
    last: Seq,
}

struct Slot {
    entry: Arc<Entry>,
    prev: Seq,
    at: Instant,
    bytes: usize,
}

impl MemoryHistory {
    /// The tests' view of the state (the code takes [`lock`] on `inner` directly).
    #[cfg(test)]
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    pub fn new(config: HistoryConfig) -> MemoryHistory {
        MemoryHistory::with_log(config, log::LOG_CAPACITY)
    }

    /// With a log of `capacity` entries (and `HISTORY_MAX_BYTES` bytes).
    pub(super) fn with_log(config: HistoryConfig, capacity: usize) -> MemoryHistory {
        let inner =
            Inner { head: Seq::ZERO, rooms: HashMap::new(), by_age: BTreeSet::new(), bytes: 0, evicted_at: Seq::ZERO };
        MemoryHistory {
            log: Arc::new(Log::new(capacity, config.max_bytes)),
            config,
            epoch: Epoch::random(),
            inner: Arc::new(Mutex::new(inner)),
            sweeper: Mutex::new(None),
            closed: AtomicBool::new(false),
        }
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    pub fn append(&self, publish: Publish) -> Result<Appended, HistoryError> {
        let mut appended = self.append_batch(vec![publish])?;
        appended.pop().ok_or_else(|| HistoryError::Unavailable("an empty append".into()))
    }

    /// Appends a batch under one lock: every event gets the next `Seq`, in order, and the
    /// log takes all of them or none ([`Log::push_all`]); refused, no event of the batch
    /// has a `Seq` or a slot in any room. Then delivers, outside the lock ([`Log::deliver`]).
    pub fn append_batch(&self, batch: Vec<Publish>) -> Result<Vec<Appended>, HistoryError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(HistoryError::Closed);
        }
        let mut inner = lock(&self.inner);
        let epoch = self.config.enabled.then_some(self.epoch);
        let now = crate::clock::unix_ms();
        let mut head = inner.head;
        let mut entries = Vec::with_capacity(batch.len());
        for publish in batch {
            let seq = head.next(now);
            head = seq;
            let payload = payload_with_offsets(&publish.payload, epoch, seq, &publish.rooms)
                .map_err(|e| HistoryError::Unavailable(format!("envelope is not JSON: {e}")))?;
            entries.push(Arc::new(Entry::whole(seq, publish, payload)));
        }
        // Queued under the lock: the log's order is the `Seq` order. Refused (full), the
        // events have no `Seq` yet and no room holds them: nothing was accepted.
        self.log.push_all(&entries)?;
        inner.head = head;
        if self.config.enabled {
            for entry in &entries {
                inner.store(entry, &self.config);
            }
        }
        drop(inner);
        self.log.deliver();
        Ok(entries.iter().map(|e| Appended { seq: e.seq, epoch }).collect())
    }

    /// Reads the rooms (at most `page` events in all) and appends a tick (an entry with
    /// no rooms) under one lock.
    pub fn snapshot(&self, rooms: &[(String, Seq)], page: usize) -> Result<Snapshot, HistoryError> {
        let count = super::first_page(page, rooms.len());
        let mut inner = lock(&self.inner);
        let views = rooms.iter().map(|(room, p)| inner.view(room, *p, count)).collect();
        let now = crate::clock::unix_ms();
        let tick = inner.head.next(now);
        let payload =
            payload_with_offsets("{}", None, tick, &[]).map_err(|e| HistoryError::Unavailable(format!("tick: {e}")))?;
        let entry = Arc::new(Entry::tick(tick, payload));
        self.log.push_all(&[entry])?;
        inner.head = tick;
        let evicted_at = inner.evicted_at;
        drop(inner);
        self.log.deliver();
        let ttl_ms = u64::try_from(self.config.ttl.as_millis()).unwrap_or(u64::MAX);
        Ok(Snapshot { epoch: self.epoch, head: tick, now_ms: now, ttl_ms, evicted_at, rooms: views })
    }

    /// The room's latest `max` held events, newest first.
    pub fn recent(&self, room: &str, max: usize) -> Vec<Arc<Entry>> {
        let inner = lock(&self.inner);
        let Some(ring) = inner.rooms.get(room) else { return Vec::new() };
        ring.slots.iter().rev().take(max).map(|s| s.entry.clone()).collect()
    }

    /// At most `count` of the room's held events in `(after, upto]`, oldest first: a
    /// recovery's next page, copied under the lock a page at a time.
    pub fn page(&self, room: &str, (after, upto): (Seq, Seq), count: usize) -> Vec<(Arc<Entry>, Seq)> {
        let inner = lock(&self.inner);
        let Some(ring) = inner.rooms.get(room) else { return Vec::new() };
        let start = ring.slots.partition_point(|s| s.entry.seq <= after);
        let held = ring.slots.range(start..).take_while(|s| s.entry.seq <= upto).take(count);
        held.map(|s| (s.entry.clone(), s.prev)).collect()
    }

    /// Takes what the log holds, as the sink would (unit tests run without one).
    #[cfg(test)]
    pub(super) fn drain_log(&self) -> Vec<Arc<Entry>> {
        self.log.take_all()
    }

    /// Makes `sink` the log's: what was appended before is delivered now, later events as
    /// they are appended. Starts the sweep of idle rooms.
    pub fn start_reader(&self, sink: Arc<dyn LogSink>) {
        if self.log.start(sink).is_err() {
            tracing::error!("history reader started twice; ignored");
            return;
        }
        let inner = self.inner.clone();
        let ttl = self.config.ttl;
        let sweeper = tokio::spawn(async move {
            let mut sweep = tokio::time::interval(SWEEP_EVERY);
            loop {
                sweep.tick().await;
                lock(&inner).sweep(ttl, usize::MAX);
            }
        });
        *lock(&self.sweeper) = Some(sweeper);
    }

    /// Refuses later appends, and returns once every event accepted before has been
    /// delivered (a `202` given during shutdown still reaches the sockets).
    pub async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        if !self.log.close(Duration::from_secs(2)).await {
            tracing::warn!("history log still delivering at shutdown");
        }
        if let Some(sweeper) = lock(&self.sweeper).take() {
            sweeper.abort();
        }
    }
}

impl Inner {
    fn store(&mut self, entry: &Arc<Entry>, config: &HistoryConfig) {
        let now = Instant::now();
        let bytes = SLOT_OVERHEAD + entry.payload.get().len() + entry.rooms.iter().map(String::len).sum::<usize>();
        for room in &entry.rooms {
            if !self.rooms.contains_key(room.as_str()) {
                let ring = Ring { name: Arc::from(room.as_str()), slots: VecDeque::new(), last: Seq::ZERO };
                self.rooms.insert(room.clone(), ring);
            }
            let Some(ring) = self.rooms.get_mut(room.as_str()) else { continue };
            let prev = ring.last;
            ring.slots.push_back(Slot { entry: entry.clone(), prev, at: now, bytes });
            ring.last = entry.seq;
            let mut freed = 0;
            while ring.slots.len() > config.size
                || ring.slots.front().is_some_and(|s| now.duration_since(s.at) > config.ttl)
            {
                freed += ring.slots.pop_front().map_or(0, |s| s.bytes);
            }
            self.bytes = self.bytes + bytes - freed;
            let name = ring.name.clone();
            if prev != Seq::ZERO {
                self.by_age.remove(&(prev, name.clone()));
            }
            self.by_age.insert((entry.seq, name));
        }
        self.sweep(config.ttl, SWEEP_PER_APPEND);
        while self.bytes > config.max_bytes {
            let Some((_, room)) = self.by_age.pop_first() else { break };
            tracing::debug!(room = %room, "history over HISTORY_MAX_BYTES: dropping the room written longest ago");
            self.drop_room(&room);
            self.evicted_at = self.head;
        }
    }

    /// Drops up to `most` rooms whose newest event is older than `ttl`.
    fn sweep(&mut self, ttl: Duration, most: usize) {
        for _ in 0..most {
            let Some((_, room)) = self.by_age.first() else { return };
            let idle = self.rooms.get(&**room).and_then(|r| r.slots.back()).is_none_or(|s| s.at.elapsed() > ttl);
            if !idle {
                return;
            }
            if let Some((_, room)) = self.by_age.pop_first() {
                self.drop_room(&room);
            }
        }
    }

    fn drop_room(&mut self, room: &str) {
        if let Some(ring) = self.rooms.remove(room) {
            self.bytes -= ring.slots.iter().map(|s| s.bytes).sum::<usize>();
        }
    }

    /// The room's first `count` held events after `p`, and its newest.
    fn view(&self, room: &str, p: Seq, count: usize) -> RoomView {
        let Some(ring) = self.rooms.get(room) else { return RoomView::default() };
        let start = ring.slots.partition_point(|s| s.entry.seq <= p);
        RoomView {
            exists: !ring.slots.is_empty(),
            after: ring.slots.range(start..).take(count).map(|s| (s.entry.clone(), s.prev)).collect(),
            last: ring.slots.back().map_or(Seq::ZERO, |s| s.entry.seq),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{RoomStatus, classify};

    fn config(size: usize, max_bytes: usize) -> HistoryConfig {
        HistoryConfig { enabled: true, ttl: Duration::from_secs(300), size, max_bytes }
    }

    fn publish(rooms: &[&str]) -> Publish {
        Publish {
            event: "service:updated",
            rooms: rooms.iter().map(|r| r.to_string()).collect(),
            except: None,
            payload: r#"{"id":"x"}"#.into(),
        }
    }

    #[test]
    fn a_room_recovers_every_event_after_its_position_until_the_ring_wraps() {
        let h = MemoryHistory::new(config(3, usize::MAX));
        let seqs: Vec<Seq> = (0..5).map(|_| h.append(publish(&["vendor:v1"])).unwrap().seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
        let snap = h.snapshot(&[("vendor:v1".into(), seqs[1])], 256).unwrap();
        let view = &snap.rooms[0];
        assert_eq!(classify(seqs[1], view, &snap), RoomStatus::Recovered);
        assert_eq!(view.after.iter().map(|(e, _)| e.seq).collect::<Vec<_>>(), seqs[2..].to_vec());
        assert!(snap.head > seqs[4], "the snapshot's tick comes after every event");
        // seqs[0] is gone and seqs[1] (its successor) too: from seqs[0] there is a gap.
        let snap = h.snapshot(&[("vendor:v1".into(), seqs[0])], 256).unwrap();
        assert_eq!(classify(seqs[0], &snap.rooms[0], &snap), RoomStatus::Expired);
    }

    #[test]
    fn an_event_to_two_rooms_has_one_seq_and_a_position_in_each() {
        let h = MemoryHistory::new(config(10, usize::MAX));
        let a = h.append(publish(&["user:u1", "vendor:v1"])).unwrap();
        for room in ["user:u1", "vendor:v1"] {
            let p = a.position(room).unwrap();
            assert!(p.seq == a.seq && p.belongs_to(h.epoch(), room));
        }
        let entry = h.drain_log().remove(0);
        let v: serde_json::Value = serde_json::from_str(entry.payload.get()).unwrap();
        assert_eq!(v["offsets"]["vendor:v1"], a.position("vendor:v1").unwrap().to_string());
    }

    #[test]
    fn past_the_byte_bound_the_room_written_longest_ago_is_dropped() {
        let h = MemoryHistory::new(config(100, 3 * (SLOT_OVERHEAD + 40)));
        // The log shares the byte bound: drained as the reader would.
        let old = h.append(publish(&["user:old"])).unwrap().seq;
        for _ in 0..3 {
            h.drain_log();
            h.append(publish(&["user:new"])).unwrap();
        }
        h.drain_log();
        let snap = h.snapshot(&[("user:old".into(), old)], 256).unwrap();
        assert_eq!(classify(old, &snap.rooms[0], &snap), RoomStatus::Expired);
        assert!(h.lock().bytes <= 3 * (SLOT_OVERHEAD + 40));
    }

    #[test]
    fn a_batch_the_log_cannot_hold_whole_is_refused_whole() {
        let h = MemoryHistory::with_log(config(100, usize::MAX), 4);
        h.append(publish(&["user:u1"])).unwrap();
        // Three places left: a batch of four is refused, and leaves no trace.
        let refused = h.append_batch(vec![publish(&["user:u1"]); 4]);
        assert!(matches!(refused, Err(HistoryError::Unavailable(_))), "{refused:?}");
        assert_eq!(h.recent("user:u1", 10).len(), 1, "no event of the refused batch is held");
        assert_eq!(h.drain_log().len(), 1, "no event of the refused batch reaches the reader");
        // Once the reader caught up, the same batch is taken whole, in order.
        let seqs: Vec<Seq> = h.append_batch(vec![publish(&["user:u1"]); 4]).unwrap().iter().map(|a| a.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(h.drain_log().iter().map(|e| e.seq).collect::<Vec<_>>(), seqs);
    }

    #[test]
    fn with_history_off_events_still_reach_the_log_without_offsets() {
        let h = MemoryHistory::new(HistoryConfig { enabled: false, ..config(10, usize::MAX) });
        let a = h.append(publish(&["user:u1"])).unwrap();
        assert!(a.position("user:u1").is_none());
        let entry = h.drain_log().remove(0);
        assert_eq!(entry.payload.get(), r#"{"id":"x"}"#);
        assert!(!h.snapshot(&[("user:u1".into(), a.seq)], 256).unwrap().rooms[0].exists);
    }
}
