//! Presence on one instance: the same decisions as the Redis store, in a mutex.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::{Applied, Change, Queued, Transition};
use crate::sync::lock;

/// Transitions kept for a receiver that does not answer; past it new ones are given up.
pub const OUTBOX_CAP: usize = 10_000;

pub struct MemoryStore {
    grace: Duration,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Identities announced online, and when their last socket left if it did.
    online: HashMap<String, Option<Pending>>,
    outbox: BTreeMap<u64, Transition>,
    next: u64,
}

#[derive(Clone, Copy)]
struct Pending {
    due: Instant,
    left_ms: i64,
}

fn now_ms() -> i64 {
    i64::try_from(crate::clock::unix_ms()).unwrap_or(i64::MAX)
}

impl MemoryStore {
    pub fn new(grace: Duration) -> MemoryStore {
        MemoryStore { grace, inner: Mutex::new(Inner::default()) }
    }

    pub fn apply(&self, counts: &[(String, u32)]) -> Applied {
        let mut inner = lock(&self.inner);
        let mut applied = Applied::default();
        for (who, n) in counts {
            match (inner.online.get(who).copied(), *n > 0) {
                // First socket: online. Back within the grace: nothing to say.
                (None, true) => inner.announce(Change::Online, who, now_ms(), &mut applied),
                (Some(Some(_)), true) => {
                    inner.online.insert(who.clone(), None);
                }
                (Some(None), false) => {
                    let pending = Pending { due: Instant::now() + self.grace, left_ms: now_ms() };
                    inner.online.insert(who.clone(), Some(pending));
                }
                (Some(None), true) | (Some(Some(_)), false) | (None, false) => {}
            }
        }
        applied
    }

    pub fn sweep(&self) -> Applied {
        self.expire(Some(Instant::now()))
    }

    /// The instance is stopping, and with it every socket: everyone online goes offline
    /// now (those still connected included: their departures may not be counted yet).
    pub fn close_all(&self) -> Applied {
        self.expire(None)
    }

    /// Offline for the identities whose grace ended by `now` (`None`: all of them).
    fn expire(&self, now: Option<Instant>) -> Applied {
        let mut inner = lock(&self.inner);
        let due: Vec<(String, i64)> = inner
            .online
            .iter()
            .filter_map(|(who, p)| match (p, now) {
                (_, None) => Some((who.clone(), p.map_or_else(now_ms, |p| p.left_ms))),
                (Some(p), Some(now)) => (p.due <= now).then(|| (who.clone(), p.left_ms)),
                (None, Some(_)) => None,
            })
            .collect();
        let mut applied = Applied::default();
        for (who, left_ms) in due {
            inner.online.remove(&who);
            inner.announce(Change::Offline, &who, left_ms, &mut applied);
        }
        applied
    }

    pub fn read(&self, after: Option<&str>, max: usize) -> Vec<Queued> {
        let inner = lock(&self.inner);
        let from = after.and_then(|k| k.parse::<u64>().ok()).map_or(0, |k| k.saturating_add(1));
        inner
            .outbox
            .range(from..)
            .take(max)
            .map(|(k, t)| Queued { key: k.to_string(), transition: t.clone() })
            .collect()
    }

    pub fn depth(&self) -> u64 {
        let len = lock(&self.inner).outbox.len();
        u64::try_from(len).unwrap_or(u64::MAX)
    }

    pub fn ack(&self, key: &str) {
        if let Ok(k) = key.parse::<u64>() {
            lock(&self.inner).outbox.remove(&k);
        }
    }
}

impl Inner {
    fn announce(&mut self, change: Change, who: &str, at_ms: i64, applied: &mut Applied) {
        if change == Change::Online {
            self.online.insert(who.to_owned(), None);
        }
        if self.outbox.len() >= OUTBOX_CAP {
            applied.dropped += 1;
            return;
        }
        let id = uuid::Uuid::now_v7().simple().to_string();
        self.next += 1;
        self.outbox.insert(self.next, Transition { id, change, who: who.to_owned(), at_ms });
        applied.announced += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(store: &MemoryStore) -> Vec<(Change, String)> {
        store.read(None, 100).into_iter().map(|q| (q.transition.change, q.transition.who)).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn online_once_offline_after_the_grace_and_nothing_for_a_quick_return() {
        let store = MemoryStore::new(Duration::from_secs(5));
        let u = "user:1".to_owned();
        store.apply(&[(u.clone(), 1)]);
        store.apply(&[(u.clone(), 2)]);
        assert_eq!(changes(&store), vec![(Change::Online, u.clone())]);
        store.apply(&[(u.clone(), 0)]);
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(store.sweep(), Applied::default());
        store.apply(&[(u.clone(), 1)]);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(store.sweep(), Applied::default());
        store.apply(&[(u.clone(), 0)]);
        tokio::time::advance(Duration::from_millis(5_001)).await;
        assert_eq!(store.sweep().announced, 1);
        assert_eq!(changes(&store), vec![(Change::Online, u.clone()), (Change::Offline, u.clone())]);
        let keys: Vec<String> = store.read(None, 10).into_iter().map(|q| q.key).collect();
        assert_eq!(store.read(Some(&keys[0]), 10).len(), 1);
        store.ack(&keys[0]);
        assert_eq!(store.read(None, 10).len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_outbox_gives_up_new_transitions_and_says_so() {
        let store = MemoryStore::new(Duration::from_secs(5));
        let all: Vec<(String, u32)> = (0..OUTBOX_CAP + 3).map(|i| (format!("user:{i}"), 1)).collect();
        let applied = store.apply(&all);
        assert_eq!(applied, Applied { announced: OUTBOX_CAP as u64, dropped: 3 });
    }

    #[tokio::test(start_paused = true)]
    async fn stopping_sends_offline_for_everyone_at_once() {
        let store = MemoryStore::new(Duration::from_secs(60));
        store.apply(&[("vendor:2".into(), 1), ("user:3".into(), 2)]);
        store.apply(&[("vendor:2".into(), 0)]);
        assert_eq!(store.sweep().announced, 0);
        assert_eq!(store.close_all().announced, 2);
        assert_eq!(changes(&store).iter().filter(|(c, _)| *c == Change::Offline).count(), 2);
        assert_eq!(store.close_all().announced, 0);
    }
}
