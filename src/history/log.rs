//! The in-memory history's log: the queue from appends to this instance's sink, emptied
//! by the appenders themselves.
//!
//! Waking a reader task for every event cost a task wake-up (often a futex and a context
//! switch) per REST call or chat message. Instead the appender that finds nobody
//! delivering becomes the deliverer: it hands the queue to the sink, in order, until it
//! finds it empty; appenders that come meanwhile only queue their events, which it takes
//! too. Why the sink gets every accepted event once, in `Seq` order:
//! - entries are queued under the history's lock, where they get their `Seq`, so the
//!   queue's order is the `Seq` order;
//! - at most one caller delivers at a time (`delivering`), taking entries from the front,
//!   so each is handed on once, in queue order;
//! - the deliverer stops only after finding the queue empty under the queue's lock, and
//!   an appender queues under that same lock: an entry queued before that check is taken
//!   by the deliverer, one queued after it finds nobody delivering and delivers itself.
//!
//! The sink runs outside the history's lock, so a sink that appends again (an eviction
//! whose disconnect handler emits) only queues: the deliverer already running takes it.
//!
//! Bounded in entries ([`LOG_CAPACITY`]) and in bytes (`HISTORY_MAX_BYTES`), so a deliverer
//! that falls behind (a starved CPU, a huge room) turns appends away with
//! [`HistoryError::Unavailable`] (`503`, an `unavailable` ack) instead of queueing without
//! end. A place is taken before the event gets a `Seq` or a slot in any room, under the
//! history's lock: a refused event was never accepted, an accepted one is never dropped.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use super::{Entry, HistoryError, LogSink};
use crate::sync::lock;

/// Most entries waiting for the sink: a 500-event batch many times over, while a deliverer
/// that is this far behind is better answered with `503` than followed further.
pub const LOG_CAPACITY: usize = 16_384;
/// What one queued entry costs besides its strings (the `Arc`, the queue's slot).
const ENTRY_OVERHEAD: usize = 160;
/// Most entries handed to the sink at once: the hub holds its registry lock per call.
const DELIVER_MAX: usize = 256;
/// How often `close` looks whether another caller's delivery has finished.
const CLOSE_POLL: Duration = Duration::from_millis(2);

fn full() -> HistoryError {
    HistoryError::Unavailable("delivery is behind: this instance's log is full".into())
}

/// What an entry counts for against the byte bound.
fn cost(entry: &Entry) -> usize {
    let rooms: usize = entry.rooms.iter().map(String::len).sum();
    ENTRY_OVERHEAD
        + entry.payload.get().len()
        + entry.event.len()
        + rooms
        + entry.except.as_ref().map_or(0, String::len)
}

/// The queue and who is emptying it.
pub(super) struct Log {
    state: Mutex<State>,
    /// Set once, by `start_reader`; until then entries wait in the queue.
    sink: OnceLock<Arc<dyn LogSink>>,
    capacity: usize,
    max_bytes: usize,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Arc<Entry>>,
    /// Bytes of the entries queued or being handed to the sink.
    bytes: usize,
    /// A caller is handing entries to the sink: nobody else may.
    delivering: bool,
    closed: bool,
}

/// Clears `delivering` if the delivery ends in a panic of the sink: the log must not wait
/// for a deliverer that is gone. (An ordinary end clears it under the lock of its last
/// look at the queue, `done`, never after it.)
struct Delivering<'a> {
    state: &'a Mutex<State>,
    done: bool,
}

impl Drop for Delivering<'_> {
    fn drop(&mut self) {
        if !self.done {
            lock(self.state).delivering = false;
        }
    }
}

impl Log {
    pub fn new(capacity: usize, max_bytes: usize) -> Log {
        Log { state: Mutex::default(), sink: OnceLock::new(), capacity: capacity.max(1), max_bytes }
    }

    /// Queues every entry of a batch, in order, or refuses them all at once (full, or
    /// closed). Called under the history's lock; [`Log::deliver`] is called after it is
    /// released. A batch larger than the byte bound still goes into an empty log: it
    /// must not be refused for ever.
    pub fn push_all(&self, entries: &[Arc<Entry>]) -> Result<(), HistoryError> {
        let bytes: usize = entries.iter().map(|e| cost(e)).sum();
        let mut state = lock(&self.state);
        if state.closed {
            return Err(HistoryError::Closed);
        }
        if state.queue.len() + entries.len() > self.capacity {
            return Err(full());
        }
        if state.bytes > 0 && state.bytes.saturating_add(bytes) > self.max_bytes {
            return Err(full());
        }
        state.bytes += bytes;
        state.queue.extend(entries.iter().cloned());
        Ok(())
    }

    /// Hands the queue to the sink, unless another caller is doing so (it takes what
    /// this one queued) or no sink is set yet (`start_reader` delivers it).
    pub fn deliver(&self) {
        let Some(sink) = self.sink.get() else { return };
        let mut batch = {
            let mut state = lock(&self.state);
            if state.delivering || state.queue.is_empty() {
                return;
            }
            state.delivering = true;
            take(&mut state)
        };
        let mut guard = Delivering { state: &self.state, done: false };
        loop {
            sink.deliver(&batch);
            let bytes: usize = batch.iter().map(|e| cost(e)).sum();
            let mut state = lock(&self.state);
            state.bytes -= bytes;
            if state.queue.is_empty() {
                // Under the lock an appender queues under: it finds either this entry
                // taken or nobody delivering.
                state.delivering = false;
                guard.done = true;
                return;
            }
            batch = take(&mut state);
        }
    }

    /// Sets the sink and delivers what was appended before.
    pub fn start(&self, sink: Arc<dyn LogSink>) -> Result<(), Arc<dyn LogSink>> {
        self.sink.set(sink)?;
        self.deliver();
        Ok(())
    }

    /// Refuses later entries and returns once every accepted one has been handed to the
    /// sink (by this caller or by one delivering now), or after `timeout`. Without a sink
    /// nothing will be delivered: returns at once.
    pub async fn close(&self, timeout: Duration) -> bool {
        lock(&self.state).closed = true;
        if self.sink.get().is_none() {
            return true;
        }
        let drained = async {
            loop {
                self.deliver();
                if self.idle() {
                    return;
                }
                tokio::time::sleep(CLOSE_POLL).await;
            }
        };
        tokio::time::timeout(timeout, drained).await.is_ok()
    }

    fn idle(&self) -> bool {
        let state = lock(&self.state);
        state.queue.is_empty() && !state.delivering
    }

    /// Takes what the queue holds, as the sink would (unit tests run without one).
    #[cfg(test)]
    pub fn take_all(&self) -> Vec<Arc<Entry>> {
        let mut state = lock(&self.state);
        let taken: Vec<Arc<Entry>> = state.queue.drain(..).collect();
        state.bytes -= taken.iter().map(|e| cost(e)).sum::<usize>();
        taken
    }

    #[cfg(test)]
    pub fn queued_bytes(&self) -> usize {
        lock(&self.state).bytes
    }
}

/// The next entries to hand on, oldest first.
fn take(state: &mut State) -> Vec<Arc<Entry>> {
    let n = state.queue.len().min(DELIVER_MAX);
    state.queue.drain(..n).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::history::memory::MemoryHistory;
    use crate::history::{HistoryConfig, Publish, Seq};

    fn config(max_bytes: usize) -> HistoryConfig {
        HistoryConfig { enabled: true, ttl: Duration::from_secs(300), size: 100, max_bytes }
    }

    fn publish(room: &str, size: usize) -> Publish {
        let payload = format!(r#"{{"blob":"{}"}}"#, "x".repeat(size));
        Publish { event: "service:updated", rooms: vec![room.into()], except: None, payload }
    }

    fn entry(n: u64) -> Arc<Entry> {
        let payload = serde_json::value::RawValue::from_string("{}".into()).unwrap();
        Arc::new(Entry { event: "e".into(), ..Entry::tick(Seq { ms: n, n: 0 }, payload) })
    }

    #[test]
    fn a_full_log_refuses_an_append_whole_and_takes_appends_again_once_the_sink_caught_up() {
        let h = MemoryHistory::with_log(config(usize::MAX), 4);
        let accepted: Vec<Seq> = (0..4).map(|_| h.append(publish("user:u1", 10)).unwrap().seq).collect();
        let refused = h.append(publish("user:u1", 10));
        assert!(matches!(refused, Err(HistoryError::Unavailable(_))), "{refused:?}");
        // Refused whole: no room holds it, and a recovery's tick is refused alike.
        assert_eq!(h.recent("user:u1", 10).len(), 4);
        assert!(matches!(h.snapshot(&[("user:u1".into(), Seq::ZERO)], 8), Err(HistoryError::Unavailable(_))));
        let delivered: Vec<Seq> = h.drain_log().iter().map(|e| e.seq).collect();
        assert_eq!(delivered, accepted, "everything accepted reaches the sink, in order");
        let next = h.append(publish("user:u1", 10)).unwrap().seq;
        let snap = h.snapshot(&[("user:u1".into(), accepted[3])], 8).unwrap();
        let (entry, prev) = &snap.rooms[0].after[0];
        assert_eq!((entry.seq, *prev), (next, accepted[3]), "the refused event left no trace in the room");
    }

    #[test]
    fn the_log_is_bounded_in_bytes_and_an_empty_log_takes_even_a_large_event() {
        let h = MemoryHistory::with_log(config(64 * 1024), LOG_CAPACITY);
        let mut accepted = 0;
        while h.append(publish("user:u1", 4_000)).is_ok() {
            accepted += 1;
            assert!(accepted < 100, "never refused");
        }
        assert!((14..=16).contains(&accepted), "64 KiB holds about 16 events of 4 KB, took {accepted}");
        assert_eq!(h.drain_log().len(), accepted);
        assert!(h.append(publish("user:u1", 100_000)).is_ok(), "one event past the bound, into an empty log");
        assert!(matches!(h.append(publish("user:u1", 10)), Err(HistoryError::Unavailable(_))));
    }

    #[test]
    fn what_the_sink_took_leaves_the_byte_count() {
        let log = Log::new(8, 1 << 20);
        log.push_all(&[entry(1), entry(2)]).unwrap();
        assert_eq!(log.queued_bytes(), 2 * (ENTRY_OVERHEAD + 3));
        let sink = Arc::new(Recorder::default());
        assert!(log.start(sink.clone()).is_ok());
        assert_eq!(sink.seqs(), [1, 2], "what was queued before the sink was set is delivered then");
        assert_eq!(log.queued_bytes(), 0);
    }

    /// Records what it is handed; appends to the log from inside `deliver` the first
    /// times, as an eviction's disconnect handler could.
    #[derive(Default)]
    struct Recorder {
        seen: Mutex<Vec<u64>>,
        log: OnceLock<Arc<Log>>,
        reentries: AtomicUsize,
    }

    impl Recorder {
        fn seqs(&self) -> Vec<u64> {
            lock(&self.seen).clone()
        }
    }

    impl LogSink for Recorder {
        fn deliver(&self, entries: &[Arc<Entry>]) {
            lock(&self.seen).extend(entries.iter().map(|e| e.seq.ms));
            if let Some(log) = self.log.get()
                && self.reentries.fetch_add(1, Ordering::Relaxed) < 3
            {
                let next = entries.last().map_or(0, |e| e.seq.ms) + 1;
                log.push_all(&[entry(next)]).unwrap();
                log.deliver();
            }
        }

        fn gap(&self, _why: &str) {}
    }

    #[test]
    fn an_append_from_inside_the_sink_is_queued_and_delivered_after_by_the_same_deliverer() {
        let log = Arc::new(Log::new(8, 1 << 20));
        let sink = Arc::new(Recorder::default());
        assert!(sink.log.set(log.clone()).is_ok());
        assert!(log.start(sink.clone()).is_ok());
        log.push_all(&[entry(1)]).unwrap();
        log.deliver();
        assert_eq!(sink.seqs(), [1, 2, 3, 4], "each once, in order, without a deadlock");
        assert_eq!(log.queued_bytes(), 0);
    }

    #[test]
    fn appenders_on_many_threads_deliver_every_event_once_in_queue_order() {
        let log = Arc::new(Log::new(LOG_CAPACITY, usize::MAX));
        let sink = Arc::new(Recorder::default());
        assert!(log.start(sink.clone()).is_ok());
        // The queue's order is the order of `push_all` under this lock, as under the history's.
        let order = Arc::new(Mutex::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (log, order) = (log.clone(), order.clone());
                std::thread::spawn(move || {
                    for _ in 0..2_000 {
                        {
                            let mut n = lock(&order);
                            *n += 1;
                            log.push_all(&[entry(*n)]).unwrap();
                        }
                        log.deliver();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(sink.seqs(), (1..=8_000).collect::<Vec<_>>());
        assert_eq!(log.queued_bytes(), 0);
    }

    #[tokio::test]
    async fn a_closed_log_refuses_entries_and_close_returns_once_all_were_delivered() {
        let log = Log::new(8, 1 << 20);
        let sink = Arc::new(Recorder::default());
        assert!(log.start(sink.clone()).is_ok());
        log.push_all(&[entry(1)]).unwrap();
        // Queued, not yet delivered (as while another caller delivers): close delivers it.
        assert!(log.close(Duration::from_secs(1)).await);
        assert_eq!(sink.seqs(), [1]);
        assert!(matches!(log.push_all(&[entry(2)]), Err(HistoryError::Closed)));
    }
}
