//! The in-memory log: bounds, order, re-entry, many appenders, the slice, close.

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
    let log = Arc::new(Log::new(8, 1 << 20));
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

/// Takes a millisecond per batch, and queues one more entry each time while told to.
struct Slow {
    inner: Recorder,
    left: AtomicUsize,
}

impl LogSink for Slow {
    fn deliver(&self, entries: &[Arc<Entry>]) {
        std::thread::sleep(Duration::from_millis(1));
        lock(&self.inner.seen).extend(entries.iter().map(|e| e.seq.ms));
        if let Some(log) = self.inner.log.get()
            && self.left.fetch_sub(1, Ordering::Relaxed) > 0
        {
            log.push_all(&[entry(entries.last().map_or(0, |e| e.seq.ms) + 1)]).unwrap();
        }
    }

    fn gap(&self, _why: &str) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_hands_on_others_events_for_a_slice_then_a_task_goes_on_in_order() {
    let log = Arc::new(Log::new(LOG_CAPACITY, usize::MAX));
    let sink = Arc::new(Slow { inner: Recorder::default(), left: AtomicUsize::new(100) });
    assert!(sink.inner.log.set(log.clone()).is_ok());
    assert!(log.start(sink.clone()).is_ok());
    log.push_all(&[entry(1)]).unwrap();
    let started = Instant::now();
    log.deliver();
    // 101 batches of a millisecond each: the caller gave up after its slice.
    assert!(started.elapsed() < Duration::from_millis(50), "the caller delivered for {:?}", started.elapsed());
    let deadline = Instant::now() + Duration::from_secs(5);
    while sink.inner.seqs().len() < 101 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(sink.inner.seqs(), (1..=101).collect::<Vec<_>>(), "the task delivered the rest, each once, in order");
    assert!(log.close(Duration::from_secs(1)).await);
}

#[tokio::test]
async fn a_closed_log_refuses_entries_and_close_returns_once_all_were_delivered() {
    let log = Arc::new(Log::new(8, 1 << 20));
    let sink = Arc::new(Recorder::default());
    assert!(log.start(sink.clone()).is_ok());
    log.push_all(&[entry(1)]).unwrap();
    // Queued, not yet delivered (as while another caller delivers): close delivers it.
    assert!(log.close(Duration::from_secs(1)).await);
    assert_eq!(sink.seqs(), [1]);
    assert!(matches!(log.push_all(&[entry(2)]), Err(HistoryError::Closed)));
}
