//! Idempotency keys: an event id seen again within the TTL is not emitted twice,
//! and the retry gets the first answer. In memory for one instance; in Redis (with
//! the same TTL) when instances share rooms, so a retry that lands on another
//! instance is not emitted twice either.

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
        MemoryStore { ttl, inner: Mutex::new(Inner { cells: HashMap::new(), order: VecDeque::new() }) }
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

impl IdempotencyStore {
    /// Runs `op` unless `key` already succeeded within the TTL, on any instance.
    pub async fn run_once<E, F, Fut>(&self, key: &str, op: F) -> Result<(Value, Outcome), E>
    where
        E: From<StoreError>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Value, E>>,
    {
        match self {
            IdempotencyStore::Memory(store) => store.run_once(key, op).await,
            IdempotencyStore::Redis(store) => store.run_once(key, op).await,
        }
    }
}

/// Keys in Redis: `SET NX` claims a key with a pending marker, the answer replaces it,
/// a failure deletes it. A retry that finds the marker waits for the answer.
/// On a cluster, how long storing a key's answer waits for a replica to have it, and
/// how long after a replica failed to answer in time the store stops waiting.
const REPLICA_WAIT_MS: u64 = 200;
const REPLICA_RETRY: Duration = Duration::from_secs(10);

pub struct RedisStore {
    conn: crate::scale::conn::RedisConn,
    ttl: Duration,
    prefix: String,
    /// Until when replicas are not waited for (one did not answer in time).
    skip_wait_until: std::sync::Mutex<Option<tokio::time::Instant>>,
}

/// Marks a key whose first request is still running.
const PENDING: &str = "\u{0}pending";
/// How long a retry waits for a concurrent first request before giving up.
const PENDING_WAIT: Duration = Duration::from_secs(5);

impl RedisStore {
    pub fn new(conn: crate::scale::conn::RedisConn, ttl: Duration) -> RedisStore {
        RedisStore { conn, ttl, prefix: "fixrx:idem:".to_owned(), skip_wait_until: std::sync::Mutex::new(None) }
    }

    /// On a cluster, waits (briefly) until a replica has `key`: a failover must not
    /// forget a key whose event the history kept, or a retry would emit it twice.
    async fn replicated(&self, key: &str) {
        let now = tokio::time::Instant::now();
        let until = *self.skip_wait_until.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if until.is_some_and(|t| now < t) {
            return;
        }
        if !matches!(self.conn.replicas_with_writes(key, REPLICA_WAIT_MS).await, Ok(None) | Ok(Some(1..))) {
            *self.skip_wait_until.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(now + REPLICA_RETRY);
            tracing::warn!("no replica acknowledged an idempotency key in {REPLICA_WAIT_MS} ms: not waiting for 10 s");
        }
    }

    async fn run_once<E, F, Fut>(&self, key: &str, op: F) -> Result<(Value, Outcome), E>
    where
        E: From<StoreError>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Value, E>>,
    {
        let redis_key = format!("{}{key}", self.prefix);
        let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut conn = self.conn.clone();
        let store_err = |e: redis::RedisError| E::from(StoreError(e.to_string()));
        let deadline = tokio::time::Instant::now() + PENDING_WAIT;
        loop {
            let claimed: Option<String> = redis::cmd("SET")
                .arg(&redis_key)
                .arg(PENDING)
                .arg("NX")
                .arg("PX")
                .arg(ttl_ms)
                .query_async(&mut conn)
                .await
                .map_err(store_err)?;
            if claimed.is_some() {
                return match op().await {
                    Ok(answer) => {
                        let _: () = redis::cmd("SET")
                            .arg(&redis_key)
                            .arg(answer.to_string())
                            .arg("PX")
                            .arg(ttl_ms)
                            .query_async(&mut conn)
                            .await
                            .map_err(store_err)?;
                        // On a cluster, the key's replica too before the answer: a failover
                        // must not forget a key whose event it kept (a retry would emit twice).
                        self.replicated(&redis_key).await;
                        Ok((answer, Outcome::Fresh))
                    }
                    Err(e) => {
                        // Free the key so the caller's retry runs again.
                        let _: Result<(), _> = redis::cmd("DEL").arg(&redis_key).query_async(&mut conn).await;
                        Err(e)
                    }
                };
            }
            let seen: Option<String> =
                redis::cmd("GET").arg(&redis_key).query_async(&mut conn).await.map_err(store_err)?;
            match seen.as_deref() {
                // Expired between our SET and GET: claim it again.
                None => continue,
                Some(PENDING) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Some(PENDING) => {
                    return Err(E::from(StoreError("the first request with this key is still running".into())));
                }
                Some(answer) => {
                    let answer = serde_json::from_str(answer).map_err(|e| E::from(StoreError(e.to_string())))?;
                    return Ok((answer, Outcome::Replayed));
                }
            }
        }
    }
}
