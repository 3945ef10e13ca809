//! Idempotency keys: an event id seen again within the TTL is not emitted twice,
//! and the retry gets the first answer. In memory for one instance; in Redis (with
//! the same TTL) when instances share rooms, so a retry that lands on another
//! instance is not emitted twice either. In Redis the key is recorded by the append
//! itself, in one script with the event: a stalled, timed-out or cancelled request
//! leaves nothing behind that could block its retry, and never lets it emit twice.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::OnceCell;

/// Most keys remembered at once; past it the oldest are forgotten early (and logged),
/// so a flood of unique keys cannot grow memory without bound.
const MAX_KEYS: usize = 1_000_000;

/// In-memory key store for one instance. Concurrent requests with the same key
/// wait for the first one; only one of them runs the operation.
pub struct MemoryStore<T> {
    ttl: Duration,
    inner: Mutex<Inner<T>>,
    /// Held by every keyed run and every batch, from reading its keys to recording them:
    /// a batch reads and records many keys, so a per-key cell alone would let a single
    /// request with one of its keys run between the two. In memory an append is
    /// microseconds, never I/O, so holding it costs next to nothing.
    serial: tokio::sync::Mutex<()>,
}

struct Inner<T> {
    cells: HashMap<String, Arc<OnceCell<T>>>,
    /// Insertion order, for expiry from the front.
    order: VecDeque<(Instant, String)>,
}

/// Whether an answer was produced now or replayed from an earlier request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Fresh,
    Replayed,
}

impl<T: Clone> MemoryStore<T> {
    pub fn new(ttl: Duration) -> Self {
        let inner = Mutex::new(Inner { cells: HashMap::new(), order: VecDeque::new() });
        MemoryStore { ttl, inner, serial: tokio::sync::Mutex::new(()) }
    }

    /// Runs `op` unless `key` already succeeded within the TTL. A failed `op` leaves
    /// the key free, so the caller's retry runs it again.
    pub async fn run_once<E, F, Fut>(&self, key: &str, op: F) -> Result<(T, Outcome), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let _serial = self.serial.lock().await;
        let cell = self.cell(key);
        let mut ran = false;
        let value = cell
            .get_or_try_init(|| {
                ran = true;
                op()
            })
            .await?;
        Ok((value.clone(), if ran { Outcome::Fresh } else { Outcome::Replayed }))
    }

    /// Holds off every keyed run until dropped (see `serial`).
    pub async fn hold(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.serial.lock().await
    }

    /// The answer recorded under `key`, if a run succeeded within the TTL.
    pub fn recorded(&self, key: &str) -> Option<T> {
        self.cell(key).get().cloned()
    }

    /// Records `value` under `key` unless an answer is there already.
    pub fn record(&self, key: &str, value: T) {
        let _ = self.cell(key).set(value);
    }

    fn cell(&self, key: &str) -> Arc<OnceCell<T>> {
        let now = Instant::now();
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        while let Some((at, _)) = inner.order.front() {
            let expired = now.duration_since(*at) >= self.ttl;
            if !expired && inner.order.len() < MAX_KEYS {
                break;
            }
            if !expired {
                tracing::warn!(max = MAX_KEYS, "idempotency store full: forgetting the oldest key early");
            }
            if let Some((_, old)) = inner.order.pop_front() {
                inner.cells.remove(&old);
            }
        }
        if let Some(cell) = inner.cells.get(key) {
            return cell.clone();
        }
        let cell = Arc::new(OnceCell::new());
        inner.cells.insert(key.to_owned(), cell.clone());
        inner.order.push_back((now, key.to_owned()));
        cell
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_runs_once_and_replays_the_first_answer() {
        let store = MemoryStore::<u32>::new(Duration::from_secs(60));
        let first = store.run_once("k", || async { Ok::<_, ()>(1) }).await.unwrap();
        let second = store.run_once("k", || async { Ok::<_, ()>(2) }).await.unwrap();
        assert_eq!(first, (1, Outcome::Fresh));
        assert_eq!(second, (1, Outcome::Replayed));
    }

    #[tokio::test]
    async fn a_failed_run_leaves_the_key_free() {
        let store = MemoryStore::<u32>::new(Duration::from_secs(60));
        assert!(store.run_once("k", || async { Err::<u32, _>("down") }).await.is_err());
        assert_eq!(store.run_once("k", || async { Ok::<_, ()>(3) }).await.unwrap(), (3, Outcome::Fresh));
    }

    #[tokio::test]
    async fn keys_expire_after_the_ttl() {
        let store = MemoryStore::<u32>::new(Duration::from_millis(20));
        store.run_once("k", || async { Ok::<_, ()>(1) }).await.unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(store.run_once("k", || async { Ok::<_, ()>(2) }).await.unwrap(), (2, Outcome::Fresh));
    }
}

/// The key store of a server: in memory, or shared through Redis.
pub enum IdempotencyStore {
    Memory(MemoryStore<Value>),
    Redis(RedisStore),
}

/// The shared store could not be reached.
#[derive(Debug, thiserror::Error)]
#[error("idempotency store unavailable: {0}")]
pub struct StoreError(pub String);

/// How an operation run under a key is kept to once per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// The store runs it at most once (in memory, on this instance): just run it.
    Held,
    /// The operation records the key itself, atomically with its effect, for `ttl`, and
    /// answers the recorded answer ([`Outcome::Replayed`]) when the key is there already
    /// (the Redis history does: [`crate::history::OnceKey`]).
    Record { ttl: Duration },
}

impl IdempotencyStore {
    /// Runs `op` unless `key` already succeeded within the TTL, on any instance.
    ///
    /// In memory, `op` gets [`Guard::Held`] and runs at most once per key on this instance
    /// (concurrent requests wait for the first; a failed run leaves the key free). An
    /// in-memory append cannot time out half-way, so a failure means nothing was emitted.
    ///
    /// With Redis, `op` gets [`Guard::Record`] and must record the key with its effect in
    /// one atomic step: there is no claim to expire, no pending marker a stall could leave
    /// behind, and nothing to delete; a timed-out or cancelled first request either
    /// recorded the key with its event or did neither, and its retry finds out which.
    pub async fn run_once<E, F, Fut>(&self, key: &str, op: F) -> Result<(Value, Outcome), E>
    where
        F: FnOnce(Guard) -> Fut,
        Fut: Future<Output = Result<(Value, Outcome), E>>,
    {
        match self {
            IdempotencyStore::Memory(store) => {
                store.run_once(key, move || async move { op(Guard::Held).await.map(|(answer, _)| answer) }).await
            }
            IdempotencyStore::Redis(store) => op(Guard::Record { ttl: store.ttl }).await,
        }
    }
}

impl IdempotencyStore {
    /// How a batch's keyed events are kept to once per key: in memory, the handler
    /// answers from [`IdempotencyStore::recorded`] and appends the rest, then records
    /// them; with Redis, the history's batch script records the keys with the events.
    pub fn batch_guard(&self) -> Guard {
        match self {
            IdempotencyStore::Memory(_) => Guard::Held,
            IdempotencyStore::Redis(store) => Guard::Record { ttl: store.ttl },
        }
    }

    /// In memory, holds off keyed requests while a batch reads, appends and records its
    /// keys; with Redis, nothing (the batch's script does all three at once).
    pub async fn hold_for_batch(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match self {
            IdempotencyStore::Memory(store) => Some(store.hold().await),
            IdempotencyStore::Redis(_) => None,
        }
    }

    /// In memory, the answer recorded under `key`; with Redis, `None` (the append finds it).
    pub fn recorded(&self, key: &str) -> Option<Value> {
        match self {
            IdempotencyStore::Memory(store) => store.recorded(key),
            IdempotencyStore::Redis(_) => None,
        }
    }

    /// In memory, records `answer` under `key`; with Redis the append recorded it already.
    pub fn record(&self, key: &str, answer: &Value) {
        if let IdempotencyStore::Memory(store) = self {
            store.record(key, answer.clone());
        }
    }
}

/// Keys shared through Redis, kept by the history's append script: the key's answer is
/// written in the same script as the event, under the history's hash tag (one slot on a
/// cluster), and a retry's append that finds it returns it instead of appending. On a
/// cluster the history's replica wait covers the key with the event.
pub struct RedisStore {
    ttl: Duration,
}

impl RedisStore {
    /// Needs no connection of its own: the history's records the keys with the events.
    pub fn new(ttl: Duration) -> RedisStore {
        RedisStore { ttl }
    }
}
