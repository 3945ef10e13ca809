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
//! A caller delivers for others for at most [`DELIVER_SLICE`]: then, inside a runtime, it
//! hands the rest to a task (passing on `delivering`, so the rules above still hold) and
//! returns, so that no request waits for its answer while a burst of others is handed on.
//!
//! Bounded in entries ([`LOG_CAPACITY`]) and in bytes (`HISTORY_MAX_BYTES`), so a deliverer
//! that falls behind (a starved CPU, a huge room) turns appends away with
//! [`HistoryError::Unavailable`] (`503`, an `unavailable` ack) instead of queueing without
//! end. A place is taken before the event gets a `Seq` or a slot in any room, under the
//! history's lock: a refused event was never accepted, an accepted one is never dropped.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::{Entry, HistoryError, LogSink};
use crate::sync::lock;

/// Most entries waiting for the sink: a 500-event batch many times over, while a deliverer
/// that is this far behind is better answered with `503` than followed further.
pub const LOG_CAPACITY: usize = 16_384;
/// What one queued entry costs besides its strings (the `Arc`, the queue's slot).
const ENTRY_OVERHEAD: usize = 160;
/// Most entries handed to the sink at once: the hub holds its registry lock per call.
const DELIVER_MAX: usize = 256;
/// How long one caller hands on entries (its own and others') before a task takes over.
const DELIVER_SLICE: Duration = Duration::from_millis(2);
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
    pub fn deliver(self: &Arc<Self>) {
        let Some(sink) = self.sink.get() else { return };
        let mut batch = {
            let mut state = lock(&self.state);
            if state.delivering || state.queue.is_empty() {
                return;
            }
            state.delivering = true;
            take(&mut state)
        };
        let started = Instant::now();
        loop {
            let Some(next) = self.hand_on(sink, batch) else { return };
            batch = next;
            if started.elapsed() >= DELIVER_SLICE
                && let Ok(runtime) = tokio::runtime::Handle::try_current()
            {
                runtime.spawn(self.clone().deliver_in_task(batch));
                return;
            }
        }
    }

    /// Goes on delivering where a caller's slice ended, `delivering` still set for it.
    async fn deliver_in_task(self: Arc<Self>, mut batch: Vec<Arc<Entry>>) {
        let Some(sink) = self.sink.get() else { return };
        while let Some(next) = self.hand_on(sink, batch) {
            batch = next;
            tokio::task::yield_now().await;
        }
    }

    /// Hands `batch` to the sink; the next batch, or `None` once the queue was found
    /// empty and `delivering` cleared (under the lock an appender queues under: it finds
    /// either its entry taken or nobody delivering).
    fn hand_on(&self, sink: &Arc<dyn LogSink>, batch: Vec<Arc<Entry>>) -> Option<Vec<Arc<Entry>>> {
        let mut guard = Delivering { state: &self.state, done: false };
        sink.deliver(&batch);
        let bytes: usize = batch.iter().map(|e| cost(e)).sum();
        let mut state = lock(&self.state);
        state.bytes -= bytes;
        guard.done = true;
        if state.queue.is_empty() {
            state.delivering = false;
            return None;
        }
        Some(take(&mut state))
    }

    /// Sets the sink and delivers what was appended before.
    pub fn start(self: &Arc<Self>, sink: Arc<dyn LogSink>) -> Result<(), Arc<dyn LogSink>> {
        self.sink.set(sink)?;
        self.deliver();
        Ok(())
    }

    /// Refuses later entries and returns once every accepted one has been handed to the
    /// sink (by this caller or by one delivering now), or after `timeout`. Without a sink
    /// nothing will be delivered: returns at once.
    pub async fn close(self: &Arc<Self>, timeout: Duration) -> bool {
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
#[path = "log_tests.rs"]
mod tests;
