//! Idempotency keys: an event id seen again within the TTL is not emitted twice,
//! and the retry gets the first answer.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

/// Most keys remembered at once; past it the oldest are forgotten early (and logged),
/// so a flood of unique keys cannot grow memory without bound.
const MAX_KEYS: usize = 1_000_000;

/// In-memory key store for one instance. Concurrent requests with the same key
/// wait for the first one; only one of them runs the operation.
pub struct IdempotencyStore<T> {
    ttl: Duration,
    inner: Mutex<Inner<T>>,
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

impl<T: Clone> IdempotencyStore<T> {
    pub fn new(ttl: Duration) -> Self {
        IdempotencyStore { ttl, inner: Mutex::new(Inner { cells: HashMap::new(), order: VecDeque::new() }) }
    }

    /// Runs `op` unless `key` already succeeded within the TTL. A failed `op` leaves
    /// the key free, so the caller's retry runs it again.
    pub async fn run_once<E, F, Fut>(&self, key: &str, op: F) -> Result<(T, Outcome), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
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
        let store = IdempotencyStore::<u32>::new(Duration::from_secs(60));
        let first = store.run_once("k", || async { Ok::<_, ()>(1) }).await.unwrap();
        let second = store.run_once("k", || async { Ok::<_, ()>(2) }).await.unwrap();
        assert_eq!(first, (1, Outcome::Fresh));
        assert_eq!(second, (1, Outcome::Replayed));
    }

    #[tokio::test]
    async fn a_failed_run_leaves_the_key_free() {
        let store = IdempotencyStore::<u32>::new(Duration::from_secs(60));
        assert!(store.run_once("k", || async { Err::<u32, _>("down") }).await.is_err());
        assert_eq!(store.run_once("k", || async { Ok::<_, ()>(3) }).await.unwrap(), (3, Outcome::Fresh));
    }

    #[tokio::test]
    async fn keys_expire_after_the_ttl() {
        let store = IdempotencyStore::<u32>::new(Duration::from_millis(20));
        store.run_once("k", || async { Ok::<_, ()>(1) }).await.unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(store.run_once("k", || async { Ok::<_, ()>(2) }).await.unwrap(), (2, Outcome::Fresh));
    }
}
