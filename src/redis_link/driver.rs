//! The connection to the shared Redis: a pub/sub driver for socketioxide's Redis adapter
//! (and the console's cross-instance asks) on a self-healing connection.
//!
//! socketioxide-redis ships a driver on a plain multiplexed connection, which stays
//! dead after Redis restarts. This driver uses redis-rs's `ConnectionManager`, which
//! reconnects with backoff and re-subscribes every channel by itself.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::ConnectionManagerConfig;
use redis::cluster::ClusterClient;
use redis::{FromRedisValue, IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind};
use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use tokio::sync::mpsc;

use super::conn::RedisConn;
use super::health::RedisHealth;
use super::source::RedisSource;
use crate::config::RedisTls;

/// How long one Redis command may take before it counts as failed. Short, so that a
/// REST call answers 503 promptly instead of hanging while Redis is away.
pub(super) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

type Handlers = Arc<RwLock<HashMap<String, mpsc::Sender<ChanItem>>>>;

#[derive(Debug, thiserror::Error)]
#[error("redis: {0}")]
pub struct RedisError(#[from] redis::RedisError);

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
        let health = Arc::new(RedisHealth::new());
        tokio::spawn(super::health::watch(conn.clone(), health.clone()));
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
