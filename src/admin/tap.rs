//! What the console shows of the events: a tap on the ordered log every instance reads,
//! so each instance sees the events accepted anywhere, once, in order (with the history
//! in partitions, those of the partitions it reads: `history::redis_reader`). It only reads
//! what delivery hands it, after delivery: it is never on the path to a socket.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::history::{Entry, LogSink, Seq};
use crate::sync::lock;

/// Latest events kept for the console (and for lookups when history is off).
const LATEST: usize = 500;
/// Seconds of events-per-second kept; the console plots the last [`PLOT_SECS`].
const SECONDS: usize = 600;
pub const PLOT_SECS: usize = 300;
/// Event names counted apart; past it (never with our catalog) they share one row.
const MAX_TYPES: usize = 32;

/// One event as the console lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Seen {
    /// When the history accepted it, in Unix milliseconds.
    pub at: u64,
    #[serde(rename = "type")]
    pub event: String,
    pub id: String,
    pub rooms: Vec<String>,
}

impl Seen {
    /// The console's view of a log entry: `None` for the log's ticks, which have no rooms.
    pub fn of(entry: &Entry) -> Option<Seen> {
        if entry.rooms.is_empty() {
            return None;
        }
        #[derive(serde::Deserialize)]
        struct Head<'a> {
            #[serde(borrow)]
            id: Option<Cow<'a, str>>,
        }
        let id = serde_json::from_str::<Head>(entry.payload.get()).ok().and_then(|h| h.id).unwrap_or_default();
        Some(Seen { at: entry.seq.ms, event: entry.event.clone(), id: id.into_owned(), rooms: entry.rooms.clone() })
    }
}

/// Counts per second over a sliding window of `N` seconds.
struct Seconds<const N: usize> {
    stamp: [u64; N],
    count: [u32; N],
}

impl<const N: usize> Seconds<N> {
    fn new() -> Self {
        Seconds { stamp: [0; N], count: [0; N] }
    }

    fn slot(second: u64) -> usize {
        usize::try_from(second % N as u64).unwrap_or(0)
    }

    fn add(&mut self, second: u64) {
        let i = Self::slot(second);
        if self.stamp[i] != second {
            self.stamp[i] = second;
            self.count[i] = 0;
        }
        self.count[i] = self.count[i].saturating_add(1);
    }

    fn at(&self, second: u64) -> u32 {
        let i = Self::slot(second);
        if self.stamp[i] == second { self.count[i] } else { 0 }
    }

    /// The `len` seconds ending at `end` (included), oldest first.
    fn window(&self, end: u64, len: usize) -> Vec<u32> {
        let len = len.min(N) as u64;
        (0..len).map(|back| self.at(end.saturating_sub(len - 1 - back))).collect()
    }

    fn last_minute(&self, end: u64) -> u64 {
        self.window(end, 60).iter().map(|&c| u64::from(c)).sum()
    }
}

struct TypeCount {
    name: String,
    total: u64,
    recent: Seconds<60>,
}

struct Inner {
    latest: VecDeque<Seen>,
    seconds: Seconds<SECONDS>,
    types: Vec<TypeCount>,
    total: u64,
}

/// Events seen on the log: the latest ones, per second, per type.
pub struct Tap {
    inner: Mutex<Inner>,
}

/// The figures the console shows, read at one instant.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    pub per_second: PerSecond,
    pub last_minute: u64,
    pub total: u64,
    pub by_type: Vec<TypeFigures>,
    /// Newest first.
    pub latest: Vec<Seen>,
}

#[derive(Debug, serde::Serialize)]
pub struct PerSecond {
    /// The Unix second the last count ends.
    pub end: u64,
    /// Oldest first.
    pub counts: Vec<u32>,
}

#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TypeFigures {
    #[serde(rename = "type")]
    pub event: String,
    pub last_minute: u64,
    pub total: u64,
}

impl Default for Tap {
    fn default() -> Self {
        let inner =
            Inner { latest: VecDeque::with_capacity(LATEST), seconds: Seconds::new(), types: Vec::new(), total: 0 };
        Tap { inner: Mutex::new(inner) }
    }
}

impl Tap {
    /// Counts events in the second they were seen here (not their history time: another
    /// machine's clock must not move them out of the plotted window).
    pub fn record(&self, entries: &[Arc<Entry>], now_secs: u64) {
        let seen: Vec<(bool, Seen)> = entries.iter().filter_map(|e| Some((e.also.is_empty(), Seen::of(e)?))).collect();
        if seen.is_empty() {
            return;
        }
        let mut inner = lock(&self.inner);
        for (first, s) in seen {
            // An event stored in two partitions is counted once, by its first copy (the
            // one naming no earlier place); a later copy adds its rooms to it.
            if !first && inner.merge_rooms(&s) {
                continue;
            }
            if first {
                inner.total += 1;
                inner.seconds.add(now_secs);
                inner.count_type(&s.event, now_secs);
            }
            if inner.latest.len() == LATEST {
                inner.latest.pop_front();
            }
            inner.latest.push_back(s);
        }
    }

    pub fn figures(&self, now_secs: u64, latest: usize) -> Figures {
        let inner = lock(&self.inner);
        let mut by_type: Vec<TypeFigures> = inner
            .types
            .iter()
            .map(|t| TypeFigures { event: t.name.clone(), last_minute: t.recent.last_minute(now_secs), total: t.total })
            .collect();
        by_type.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.event.cmp(&b.event)));
        Figures {
            per_second: PerSecond { end: now_secs, counts: inner.seconds.window(now_secs, PLOT_SECS) },
            last_minute: inner.seconds.last_minute(now_secs),
            total: inner.total,
            by_type,
            latest: inner.latest.iter().rev().take(latest).cloned().collect(),
        }
    }

    /// The latest events seen that went to `room`, newest first.
    pub fn latest_in(&self, room: &str, max: usize) -> Vec<Seen> {
        let inner = lock(&self.inner);
        inner.latest.iter().rev().filter(|s| s.rooms.iter().any(|r| r == room)).take(max).cloned().collect()
    }
}

impl Inner {
    /// Adds a later copy's rooms to its event among the latest listed; `false` if the
    /// event is not listed (its first copy is not read yet, or long gone).
    fn merge_rooms(&mut self, copy: &Seen) -> bool {
        let Some(listed) = self.latest.iter_mut().rev().take(LATEST).find(|s| s.id == copy.id) else { return false };
        for room in &copy.rooms {
            if !listed.rooms.contains(room) {
                listed.rooms.push(room.clone());
            }
        }
        true
    }

    fn count_type(&mut self, name: &str, now_secs: u64) {
        let index = match self.types.iter().position(|t| t.name == name) {
            Some(i) => i,
            None if self.types.len() < MAX_TYPES => {
                self.types.push(TypeCount { name: name.to_owned(), total: 0, recent: Seconds::new() });
                self.types.len() - 1
            }
            None => {
                let other = "(other)";
                match self.types.iter().position(|t| t.name == other) {
                    Some(i) => i,
                    None => {
                        // The last row becomes "(other)", its counts kept in it.
                        let last = self.types.len() - 1;
                        self.types[last].name = other.to_owned();
                        last
                    }
                }
            }
        };
        let t = &mut self.types[index];
        t.total += 1;
        t.recent.add(now_secs);
    }
}

/// The instance's log sink with the tap behind it.
pub struct Tapped {
    pub sink: Arc<dyn LogSink>,
    pub tap: Arc<Tap>,
}

impl LogSink for Tapped {
    fn deliver(&self, entries: &[Arc<Entry>]) {
        self.sink.deliver(entries);
        self.tap.record(entries, crate::clock::unix_secs());
    }

    fn gap(&self, why: &str) {
        self.sink.gap(why);
    }

    fn started(&self, part: usize, at: Seq) {
        self.sink.started(part, at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ms: u64, event: &str, id: &str, rooms: &[&str]) -> Arc<Entry> {
        let payload = serde_json::value::RawValue::from_string(format!(r#"{{"id":"{id}","x":[1,{{"y":2}}]}}"#))
            .expect("valid JSON");
        Arc::new(Entry {
            seq: Seq::ZERO.next(ms),
            part: 0,
            also: Vec::new(),
            event: event.into(),
            rooms: rooms.iter().map(|r| r.to_string()).collect(),
            except: None,
            payload,
        })
    }

    #[test]
    fn events_are_counted_per_second_and_type_and_listed_newest_first() {
        let tap = Tap::default();
        tap.record(&[entry(1, "booking:created", "e1", &["user:u1", "vendor:v1"])], 1_000);
        tap.record(
            &[entry(2, "booking:created", "e2", &["user:u2"]), entry(3, "chat:message", "m1", &["user:u1"])],
            1_002,
        );
        let f = tap.figures(1_002, 10);
        assert_eq!(f.total, 3);
        assert_eq!(f.last_minute, 3);
        assert_eq!(f.per_second.counts.len(), PLOT_SECS);
        assert_eq!(&f.per_second.counts[PLOT_SECS - 3..], &[1, 0, 2]);
        assert_eq!(f.latest.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["m1", "e2", "e1"]);
        assert_eq!(f.by_type[0].event, "booking:created");
        assert_eq!(f.by_type[0].total, 2);
        assert_eq!(tap.latest_in("user:u1", 5).iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["m1", "e1"]);
        // A minute later the rates are back to zero; the totals stay.
        let later = tap.figures(1_100, 10);
        assert_eq!(later.last_minute, 0);
        assert_eq!(later.by_type[0].last_minute, 0);
        assert_eq!(later.total, 3);
    }

    #[test]
    fn an_event_in_two_partitions_is_counted_once_and_listed_with_both_rooms() {
        let tap = Tap::default();
        tap.record(&[entry(1, "booking:created", "e1", &["user:u1"])], 1_000);
        let mut second = (*entry(2, "booking:created", "e1", &["vendor:v1"])).clone();
        second.also =
            vec![crate::history::Also { room: "user:u1".into(), epoch: crate::history::Epoch(1), seq: Seq::ZERO }];
        tap.record(&[Arc::new(second)], 1_000);
        let f = tap.figures(1_000, 10);
        assert_eq!((f.total, f.latest.len()), (1, 1));
        assert_eq!(f.latest[0].rooms, ["user:u1", "vendor:v1"]);
        assert_eq!(tap.latest_in("vendor:v1", 5).len(), 1);
    }

    #[test]
    fn ticks_are_not_events_and_the_lists_are_bounded() {
        let tap = Tap::default();
        tap.record(&[entry(1, "", "", &[])], 5);
        assert_eq!(tap.figures(5, 10).total, 0);
        let many: Vec<Arc<Entry>> = (0..LATEST + 10).map(|i| entry(1, &format!("t{i}"), "e", &["user:u"])).collect();
        tap.record(&many, 5);
        let f = tap.figures(5, LATEST * 2);
        assert_eq!(f.latest.len(), LATEST);
        assert_eq!(f.by_type.len(), MAX_TYPES);
        assert!(f.by_type.iter().any(|t| t.event == "(other)"));
        assert_eq!(f.by_type.iter().map(|t| t.total).sum::<u64>(), (LATEST + 10) as u64);
    }
}
