//! The Redis side of scale-out: a pub/sub driver for socketioxide's Redis adapter on
//! a self-healing connection, and the health of that connection.
//!
//! socketioxide-redis ships a driver on a plain multiplexed connection, which stays
//! dead after Redis restarts. This driver uses redis-rs's `ConnectionManager`, which
//! reconnects with backoff and re-subscribes every channel by itself.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use redis::aio::ConnectionManagerConfig;
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::{AsyncConnectionConfig, FromRedisValue, IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind};
use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use tokio::sync::mpsc;

use super::conn::RedisConn;
use crate::config::RedisTls;
use crate::metrics::OpLabels;

/// How long one Redis command may take before it counts as failed. Short, so that a
/// REST call answers 503 promptly instead of hanging while Redis is away.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the health check pings Redis.
const HEALTH_INTERVAL: Duration = Duration::from_millis(500);

type Handlers = Arc<RwLock<HashMap<String, mpsc::Sender<ChanItem>>>>;

#[derive(Debug, thiserror::Error)]
#[error("redis: {0}")]
pub struct RedisError(#[from] redis::RedisError);

/// Whether Redis answers, as last seen by the health check; on a cluster, also how many
/// replicas the history's shard has connected, as last seen by an append; and how long
/// the history's round trips take.
#[derive(Debug)]
pub struct RedisHealth {
    up: AtomicBool,
    /// `-1` until known (and always on a single Redis).
    history_replicas: Gauge,
    round_trips: Family<OpLabels, Histogram>,
}

impl RedisHealth {
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

    /// The histograms behind [`Self::timed`], for `/metrics`.
    pub fn round_trips(&self) -> Family<OpLabels, Histogram> {
        self.round_trips.clone()
    }
}

/// A socketioxide-redis [`Driver`] on a reconnecting connection: one Redis, or a
/// Redis Cluster with sharded pub/sub.
#[derive(Clone)]
pub struct ManagedDriver {
    conn: RedisConn,
    /// Where the history reader opens its own connection (its reads block).
    source: RedisSource,
    handlers: Handlers,
    pub health: Arc<RedisHealth>,
}

/// How to open another connection to the same Redis (or cluster).
#[derive(Clone)]
pub enum RedisSource {
    // Boxed: a client holds its TLS settings (a root store) inline.
    Single(Box<redis::Client>),
    /// The cluster, one seed's URL (its scheme and credentials reach any node) and the
    /// TLS settings every node is reached with.
    Cluster {
        client: Box<ClusterClient>,
        seed: String,
        tls: Box<RedisTls>,
    },
}

impl RedisSource {
    /// A connection of its own whose commands may wait up to `response_timeout`.
    pub async fn connect(&self, response_timeout: Duration) -> redis::RedisResult<RedisConn> {
        match self {
            RedisSource::Single(client) => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(Some(response_timeout));
                Ok(RedisConn::Plain(client.get_multiplexed_async_connection_with_config(&config).await?))
            }
            RedisSource::Cluster { client, .. } => {
                let config = ClusterConfig::new()
                    .set_connection_timeout(Duration::from_secs(2))
                    .set_response_timeout(response_timeout);
                Ok(RedisConn::Cluster(client.get_async_connection_with_config(config).await?))
            }
        }
    }

    /// On a cluster, a connection to one of its nodes (`host:port`, as the cluster names
    /// it) that may read a replica (`READONLY`); `None` on a single Redis.
    pub async fn connect_node(
        &self,
        (host, port): (&str, u16),
        response_timeout: Duration,
    ) -> redis::RedisResult<Option<RedisConn>> {
        let RedisSource::Cluster { seed, tls, .. } = self else { return Ok(None) };
        let mut url = url::Url::parse(seed).map_err(|_| invalid_seed())?;
        url.set_host(Some(host)).map_err(|_| invalid_seed())?;
        url.set_port(Some(port)).map_err(|()| invalid_seed())?;
        let info = url.as_str().into_connection_info()?;
        let settings = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
        let info = info.set_redis_settings(settings);
        let client = match super::tls::certificates(tls) {
            Some(certs) => redis::Client::build_with_tls(info, certs)?,
            None => redis::Client::open(info)?,
        };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(response_timeout));
        let mut conn = client.get_multiplexed_async_connection_with_config(&config).await?;
        redis::cmd("READONLY").query_async::<()>(&mut conn).await?;
        Ok(Some(RedisConn::Plain(conn)))
    }
}

fn invalid_seed() -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "unusable Redis Cluster seed URL"))
}

fn push_sender(
    handlers: &Handlers,
) -> impl Fn(PushInfo) -> Result<(), std::convert::Infallible> + Send + Sync + 'static {
    let dispatch = handlers.clone();
    move |msg: PushInfo| {
        dispatch_push(msg, &dispatch);
        Ok(())
    }
}

fn timed_out() -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Io, "connection timed out"))
}

impl ManagedDriver {
    /// Connects to one Redis (failing after `connect_timeout`) and starts the health check.
    /// On `rediss://`, every connection (this one and the [`RedisSource`]'s) trusts and
    /// presents what `tls` says.
    pub async fn connect(url: &str, tls: &RedisTls, connect_timeout: Duration) -> Result<ManagedDriver, RedisError> {
        // The pub/sub push messages need RESP3 (Redis 6+).
        let info = url.into_connection_info()?;
        let settings = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
        let info = info.set_redis_settings(settings);
        let client = match super::tls::certificates(tls) {
            Some(certs) => redis::Client::build_with_tls(info, certs)?,
            None => redis::Client::open(info)?,
        };
        let handlers: Handlers = Arc::new(RwLock::new(HashMap::new()));
        let config = ConnectionManagerConfig::new()
            .set_push_sender(push_sender(&handlers))
            .set_automatic_resubscription()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_max_delay(Duration::from_secs(2))
            .set_number_of_retries(2);
        let conn = tokio::time::timeout(connect_timeout, client.get_connection_manager_with_config(config))
            .await
            .map_err(|_| timed_out())??;
        Ok(ManagedDriver::start(RedisConn::Single(conn), RedisSource::Single(Box::new(client)), handlers))
    }

    /// Connects to a Redis Cluster through any of its `seeds`. redis-rs's cluster
    /// connection follows the slot map, reconnects, and renews sharded subscriptions on
    /// the node that owns each channel after a failover.
    ///
    /// Its retries follow `MOVED`/`ASK` and wait out `TRYAGAIN`/`CLUSTERDOWN` (the command
    /// did not run), and resend a command whose connection dropped (it may have run),
    /// all within the 2 s response timeout: a timed-out command is never resent. What it
    /// may resend is safe to run twice: the history's append is idempotent by its call's
    /// record, presence scripts set absolute counts, and the adapter's messages are
    /// requests or volatile relays.
    pub async fn connect_cluster(
        seeds: &[String],
        tls: &RedisTls,
        connect_timeout: Duration,
    ) -> Result<ManagedDriver, RedisError> {
        let handlers: Handlers = Arc::new(RwLock::new(HashMap::new()));
        let mut builder = ClusterClient::builder(seeds.iter().map(String::as_str))
            .use_protocol(ProtocolVersion::RESP3)
            .push_sender(push_sender(&handlers))
            .connection_timeout(connect_timeout)
            .response_timeout(RESPONSE_TIMEOUT)
            .retries(2);
        // On `rediss://` seeds, the nodes found through them are reached with TLS too.
        if let Some(certs) = super::tls::certificates(tls) {
            builder = builder.certs(certs);
        }
        let client = builder.build()?;
        let conn =
            tokio::time::timeout(connect_timeout, client.get_async_connection()).await.map_err(|_| timed_out())??;
        let seed = seeds.first().cloned().unwrap_or_default();
        let source = RedisSource::Cluster { client: Box::new(client), seed, tls: Box::new(tls.clone()) };
        Ok(ManagedDriver::start(RedisConn::Cluster(conn), source, handlers))
    }

    fn start(conn: RedisConn, source: RedisSource, handlers: Handlers) -> ManagedDriver {
        let history_replicas = Gauge::default();
        history_replicas.set(-1);
        let health = Arc::new(RedisHealth {
            up: AtomicBool::new(true),
            history_replicas,
            round_trips: crate::metrics::redis_round_trips(),
        });
        tokio::spawn(watch_health(conn.clone(), health.clone()));
        ManagedDriver { conn, source, handlers, health }
    }

    /// A command connection on the same manager (history, idempotency keys, presence).
    pub fn commands(&self) -> RedisConn {
        self.conn.clone()
    }

    pub fn source(&self) -> RedisSource {
        self.source.clone()
    }
}

fn dispatch_push(msg: PushInfo, handlers: &Handlers) {
    if !matches!(msg.kind, PushKind::Message | PushKind::SMessage) || msg.data.len() < 2 {
        return;
    }
    let mut data = msg.data.into_iter();
    let (Some(chan), Some(payload)) = (data.next(), data.next()) else { return };
    let (Ok(chan), Ok(payload)) = (String::from_redis_value(chan), Vec::<u8>::from_redis_value(payload)) else {
        tracing::warn!("unreadable pub/sub message from redis");
        return;
    };
    let handlers = handlers.read().unwrap_or_else(|p| p.into_inner());
    if let Some(tx) = handlers.get(&chan)
        && let Err(e) = tx.try_send((chan, payload))
    {
        tracing::warn!(error = %e, "redis pub/sub buffer full: message dropped");
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
async fn watch_health(conn: RedisConn, health: Arc<RedisHealth>) {
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

impl Driver for ManagedDriver {
    type Error = RedisError;

    async fn publish(&self, chan: String, val: Vec<u8>) -> Result<(), RedisError> {
        Ok(self.conn.publish(chan, val).await?)
    }

    async fn subscribe(&self, chan: String, size: usize) -> Result<MessageStream<ChanItem>, RedisError> {
        let (tx, rx) = mpsc::channel(size);
        // Register first: a message may arrive as soon as SUBSCRIBE is acknowledged.
        self.handlers.write().unwrap_or_else(|p| p.into_inner()).insert(chan.clone(), tx);
        self.conn.subscribe(&chan).await?;
        Ok(MessageStream::new(rx))
    }

    async fn unsubscribe(&self, chan: String) -> Result<(), RedisError> {
        self.handlers.write().unwrap_or_else(|p| p.into_inner()).remove(&chan);
        self.conn.unsubscribe(&chan).await?;
        Ok(())
    }

    async fn num_serv(&self, chan: &str) -> Result<u16, RedisError> {
        Ok(self.conn.subscribers(chan).await?)
    }
}
