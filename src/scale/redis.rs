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

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, FromRedisValue, IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind};
use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use tokio::sync::mpsc;

/// How long one Redis command may take before it counts as failed. Short, so that a
/// REST call answers 503 promptly instead of hanging while Redis is away.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the health check pings Redis.
const HEALTH_INTERVAL: Duration = Duration::from_millis(500);

type Handlers = Arc<RwLock<HashMap<String, mpsc::Sender<ChanItem>>>>;

#[derive(Debug, thiserror::Error)]
#[error("redis: {0}")]
pub struct RedisError(#[from] redis::RedisError);

/// Whether Redis answers, as last seen by the health check.
#[derive(Debug)]
pub struct RedisHealth {
    up: AtomicBool,
}

impl RedisHealth {
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }
}

/// A socketioxide-redis [`Driver`] on a reconnecting connection.
#[derive(Clone)]
pub struct ManagedDriver {
    conn: ConnectionManager,
    handlers: Handlers,
    pub health: Arc<RedisHealth>,
}

impl ManagedDriver {
    /// Connects (failing after `connect_timeout`) and starts the health check.
    pub async fn connect(url: &str, connect_timeout: Duration) -> Result<ManagedDriver, RedisError> {
        // The pub/sub push messages need RESP3 (Redis 6+).
        let info = url.into_connection_info()?;
        let settings = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(settings))?;
        let handlers: Handlers = Arc::new(RwLock::new(HashMap::new()));
        let dispatch = handlers.clone();
        let config = ConnectionManagerConfig::new()
            .set_push_sender(move |msg: PushInfo| {
                dispatch_push(msg, &dispatch);
                Ok::<(), std::convert::Infallible>(())
            })
            .set_automatic_resubscription()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_max_delay(Duration::from_secs(2))
            .set_number_of_retries(2);
        let conn = tokio::time::timeout(connect_timeout, client.get_connection_manager_with_config(config))
            .await
            .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "connection timed out")))??;
        let health = Arc::new(RedisHealth { up: AtomicBool::new(true) });
        tokio::spawn(watch_health(conn.clone(), health.clone()));
        Ok(ManagedDriver { conn, handlers, health })
    }

    /// A plain command connection on the same manager (idempotency keys).
    pub fn commands(&self) -> ConnectionManager {
        self.conn.clone()
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
pub async fn check_eviction_policy(mut conn: ConnectionManager) {
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
async fn watch_health(mut conn: ConnectionManager, health: Arc<RedisHealth>) {
    let mut interval = tokio::time::interval(HEALTH_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        // The health task ends with the process; a weak check keeps it from outliving tests.
        if Arc::strong_count(&health) == 1 {
            return;
        }
        let ok = tokio::time::timeout(RESPONSE_TIMEOUT, redis::cmd("PING").query_async::<String>(&mut conn))
            .await
            .is_ok_and(|r| r.is_ok());
        let was = health.up.swap(ok, Ordering::AcqRel);
        match (was, ok) {
            (true, false) => tracing::error!("redis unreachable: not ready; cross-instance delivery paused"),
            (false, true) => tracing::info!("redis reachable again: reconnected and re-subscribed; ready"),
            _ => {}
        }
    }
}

impl Driver for ManagedDriver {
    type Error = RedisError;

    async fn publish(&self, chan: String, val: Vec<u8>) -> Result<(), RedisError> {
        self.conn.clone().publish::<_, _, redis::Value>(chan, val).await?;
        Ok(())
    }

    async fn subscribe(&self, chan: String, size: usize) -> Result<MessageStream<ChanItem>, RedisError> {
        let (tx, rx) = mpsc::channel(size);
        // Register first: a message may arrive as soon as SUBSCRIBE is acknowledged.
        self.handlers.write().unwrap_or_else(|p| p.into_inner()).insert(chan.clone(), tx);
        self.conn.clone().subscribe(chan.as_str()).await?;
        Ok(MessageStream::new(rx))
    }

    async fn unsubscribe(&self, chan: String) -> Result<(), RedisError> {
        self.handlers.write().unwrap_or_else(|p| p.into_inner()).remove(&chan);
        self.conn.clone().unsubscribe(chan).await?;
        Ok(())
    }

    async fn num_serv(&self, chan: &str) -> Result<u16, RedisError> {
        let (_, count): (String, u16) =
            redis::cmd("PUBSUB").arg("NUMSUB").arg(chan).query_async(&mut self.conn.clone()).await?;
        Ok(count)
    }
}
