//! Whether the shared Redis answers: the health check's loop, the history's replica count
//! and round-trip timings, and the start-up warning about an evicting Redis.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use super::conn::RedisConn;
use super::driver::RESPONSE_TIMEOUT;
use crate::metrics::OpLabels;

/// How often the health check pings Redis.
const HEALTH_INTERVAL: Duration = Duration::from_millis(500);

/// Whether Redis answers, as last seen by the health check; on a cluster, also how many
/// replicas the history's shard has connected, as last seen by an append; and how long
/// the history's round trips take.
#[derive(Debug)]
pub struct RedisHealth {
    up: AtomicBool,
    /// `-1` until known (and always on a single Redis).
    history_replicas: Gauge,
    round_trips: Family<OpLabels, Histogram>,
    /// What this instance's readers read of the history's logs.
    log_reads: LogReads,
}

/// `fixrx_history_log_entries_read_total` and `fixrx_history_partitions_read`: with the
/// history in partitions, an instance reads only those its sockets' rooms live in.
#[derive(Debug, Clone, Default)]
pub struct LogReads {
    pub entries: prometheus_client::metrics::counter::Counter,
    pub partitions: Gauge,
}

impl RedisHealth {
    /// Up, replicas unknown; [`watch`] keeps `up` current from then on.
    pub(super) fn new() -> RedisHealth {
        let history_replicas = Gauge::default();
        history_replicas.set(-1);
        let round_trips = crate::metrics::redis_round_trips();
        RedisHealth { up: AtomicBool::new(true), history_replicas, round_trips, log_reads: LogReads::default() }
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// `Some(0)`: the history's shard has no connected replica (a failover now would lose
    /// recent events).
    pub fn history_replicas(&self) -> Option<u64> {
        u64::try_from(self.history_replicas.get()).ok()
    }

    pub fn set_history_replicas(&self, n: u64) {
        self.history_replicas.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The gauge behind [`Self::history_replicas`], for `/metrics`.
    pub fn history_replicas_gauge(&self) -> Gauge {
        self.history_replicas.clone()
    }

    /// Runs one round trip to Redis, timed under `op` (a fixed name: `append`, `snapshot`,
    /// `page`, `recent`), whether it is answered or fails; one given up (dropped) is not.
    pub async fn timed<T>(&self, op: &'static str, round_trip: impl Future<Output = T>) -> T {
        let started = std::time::Instant::now();
        let out = round_trip.await;
        self.round_trips.get_or_create(&OpLabels { op }).observe(started.elapsed().as_secs_f64());
        out
    }

    /// What the history's readers read, counted by them and shown in `/metrics`.
    pub fn log_reads(&self) -> &LogReads {
        &self.log_reads
    }

    /// The histograms behind [`Self::timed`], for `/metrics`.
    pub fn round_trips(&self) -> Family<OpLabels, Histogram> {
        self.round_trips.clone()
    }
}

/// Logs an error when Redis may evict keys: a room's history evicted under clients that
/// hold positions in it would look like a quiet room to a recovery.
pub async fn check_eviction_policy(mut conn: RedisConn) {
    // A map in RESP3, a flat pair in RESP2: both read as a map.
    let reply: Result<HashMap<String, String>, _> =
        redis::cmd("CONFIG").arg("GET").arg("maxmemory-policy").query_async(&mut conn).await;
    match reply.as_ref().ok().and_then(|m| m.get("maxmemory-policy")) {
        Some(policy) if policy == "noeviction" => {}
        Some(policy) => tracing::error!(
            policy = %policy,
            "Redis maxmemory-policy may evict the event history: recoveries could miss events; set maxmemory-policy noeviction"
        ),
        None => tracing::debug!("could not read Redis maxmemory-policy (CONFIG GET not allowed?)"),
    }
}

/// Pings Redis; logs each change of state once, so operators see the outage and the recovery.
pub(super) async fn watch(conn: RedisConn, health: Arc<RedisHealth>) {
    let mut interval = tokio::time::interval(HEALTH_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        // The health task ends with the process; a weak check keeps it from outliving tests.
        if Arc::strong_count(&health) == 1 {
            return;
        }
        let ok = tokio::time::timeout(RESPONSE_TIMEOUT, answers(&conn)).await.unwrap_or(false);
        let was = health.up.swap(ok, Ordering::AcqRel);
        match (was, ok) {
            (true, false) => tracing::error!("redis unreachable: not ready; cross-instance delivery paused"),
            (false, true) => tracing::info!("redis reachable again: reconnected and re-subscribed; ready"),
            _ => {}
        }
    }
}

/// One Redis answers `PING`; a cluster says `cluster_state:ok` (every slot has a primary).
async fn answers(conn: &RedisConn) -> bool {
    let mut conn = conn.clone();
    if conn.is_cluster() {
        let info: Result<String, _> = redis::cmd("CLUSTER").arg("INFO").query_async(&mut conn).await;
        info.is_ok_and(|i| i.lines().any(|l| l.trim() == "cluster_state:ok"))
    } else {
        redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok()
    }
}
