//! The in-memory history's log: the channel from appends to this instance's reader.
//!
//! Bounded in entries ([`LOG_CAPACITY`]) and in bytes (`HISTORY_MAX_BYTES`), so a reader
//! that falls behind (a starved CPU, a huge room) turns appends away with
//! [`HistoryError::Unavailable`] (`503`, an `unavailable` ack) instead of queueing without
//! end. A place is taken with `try_send` before the event gets a `Seq` or a slot in any
//! room, under the history's lock: a refused event was never accepted, an accepted one is
//! never dropped, and the lock never waits for the reader.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::{Entry, HistoryError};

/// Most entries waiting for the reader: a 500-event batch many times over, while a reader
/// that is this far behind is better answered with `503` than followed further.
pub const LOG_CAPACITY: usize = 16_384;
/// What one queued entry costs besides its strings (the `Arc`, the channel's slot).
const ENTRY_OVERHEAD: usize = 160;

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

/// The appending side, kept under the history's lock.
#[derive(Clone)]
pub(super) struct LogTx {
    tx: mpsc::Sender<Arc<Entry>>,
    queued: Arc<AtomicUsize>,
    max_bytes: usize,
}

/// The reader's side.
pub(super) struct LogRx {
    pub(super) rx: mpsc::Receiver<Arc<Entry>>,
    queued: Arc<AtomicUsize>,
}

pub(super) fn channel(capacity: usize, max_bytes: usize) -> (LogTx, LogRx) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let queued = Arc::new(AtomicUsize::new(0));
    (LogTx { tx, queued: queued.clone(), max_bytes }, LogRx { rx, queued })
}

impl LogTx {
    /// Queues `entry` for the reader, or refuses it at once (full, or closed). An entry
    /// larger than the whole byte bound still goes into an empty log: it must not be
    /// refused for ever.
    pub fn try_send(&self, entry: Arc<Entry>) -> Result<(), HistoryError> {
        let bytes = cost(&entry);
        let queued = self.queued.load(Ordering::Acquire);
        if queued > 0 && queued.saturating_add(bytes) > self.max_bytes {
            return Err(full());
        }
        // Counted before the reader can see it, so its subtraction never comes first.
        self.queued.fetch_add(bytes, Ordering::AcqRel);
        self.tx.try_send(entry).map_err(|e| {
            self.queued.fetch_sub(bytes, Ordering::AcqRel);
            match e {
                TrySendError::Full(_) => full(),
                TrySendError::Closed(_) => HistoryError::Closed,
            }
        })
    }

    /// Queues every entry of a batch for the reader, in order, or refuses them all at
    /// once (full, or closed): places for the whole batch are reserved before any entry
    /// is sent. A batch larger than the byte bound still goes into an empty log.
    pub fn try_send_all(&self, entries: Vec<Arc<Entry>>) -> Result<(), HistoryError> {
        let bytes: usize = entries.iter().map(|e| cost(e)).sum();
        let queued = self.queued.load(Ordering::Acquire);
        if queued > 0 && queued.saturating_add(bytes) > self.max_bytes {
            return Err(full());
        }
        let permits = self.tx.try_reserve_many(entries.len()).map_err(|e| match e {
            TrySendError::Full(()) => full(),
            TrySendError::Closed(()) => HistoryError::Closed,
        })?;
        // Counted before the reader can see them, so its subtraction never comes first.
        self.queued.fetch_add(bytes, Ordering::AcqRel);
        for (permit, entry) in permits.zip(entries) {
            permit.send(entry);
        }
        Ok(())
    }

    #[cfg(test)]
    pub fn queued_bytes(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }
}

impl LogRx {
    /// The next entries, at most `limit`; 0 once the log is closed and drained.
    pub async fn recv_many(&mut self, batch: &mut Vec<Arc<Entry>>, limit: usize) -> usize {
        self.rx.recv_many(batch, limit).await
    }

    /// The reader handed `batch` on: its bytes leave the bound.
    pub fn delivered(&self, batch: &[Arc<Entry>]) {
        let bytes: usize = batch.iter().map(|e| cost(e)).sum();
        self.queued.fetch_sub(bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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

    #[test]
    fn a_full_log_refuses_an_append_whole_and_takes_appends_again_once_the_reader_caught_up() {
        let h = MemoryHistory::with_log(config(usize::MAX), 4);
        let accepted: Vec<Seq> = (0..4).map(|_| h.append(publish("user:u1", 10)).unwrap().seq).collect();
        let refused = h.append(publish("user:u1", 10));
        assert!(matches!(refused, Err(HistoryError::Unavailable(_))), "{refused:?}");
        // Refused whole: no room holds it, and a recovery's tick is refused alike.
        assert_eq!(h.recent("user:u1", 10).len(), 4);
        assert!(matches!(h.snapshot(&[("user:u1".into(), Seq::ZERO)], 8), Err(HistoryError::Unavailable(_))));
        let delivered: Vec<Seq> = h.drain_log().iter().map(|e| e.seq).collect();
        assert_eq!(delivered, accepted, "everything accepted reaches the reader, in order");
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
    fn what_the_reader_took_leaves_the_byte_count() {
        let (tx, mut rx) = channel(8, 1 << 20);
        let entry = |n: u64| {
            let payload = serde_json::value::RawValue::from_string("{}".into()).unwrap();
            Arc::new(Entry {
                seq: Seq { ms: n, n: 0 },
                part: 0,
                also: vec![],
                event: "e".into(),
                rooms: vec![],
                except: None,
                payload,
            })
        };
        tx.try_send(entry(1)).unwrap();
        tx.try_send(entry(2)).unwrap();
        assert_eq!(tx.queued_bytes(), 2 * (ENTRY_OVERHEAD + 3));
        let mut batch = Vec::new();
        rx.rx.try_recv().map(|e| batch.push(e)).unwrap();
        rx.delivered(&batch);
        assert_eq!(tx.queued_bytes(), ENTRY_OVERHEAD + 3);
    }
}
