//! One connection type for a single Redis and a Redis Cluster, so that everything
//! shared through Redis (history, idempotency keys, presence, the adapter) is written
//! once. On a cluster, pub/sub is sharded (`SPUBLISH`/`SSUBSCRIBE`): a message goes to
//! the one shard that owns its channel instead of being copied to every node.

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// A cheap-to-clone, self-reconnecting connection (single Redis or cluster), or a plain
/// multiplexed one (the history reader's blocking reads, which reconnect themselves).
#[derive(Clone)]
pub enum RedisConn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Plain(MultiplexedConnection),
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
            RedisConn::Plain(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Plain(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
            RedisConn::Plain(c) => c.get_db(),
        }
    }
}

impl RedisConn {
    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisConn::Cluster(_))
    }

    /// On a cluster: `WAIT 1 timeout_ms` on the primary that owns `key`'s slot, i.e. how
    /// many replicas have this connection's writes there. `None` for a single Redis.
    pub async fn replicas_with_writes(&self, key: &str, timeout_ms: u64) -> redis::RedisResult<Option<i64>> {
        let RedisConn::Cluster(conn) = self else { return Ok(None) };
        let route = Route::with_key(key, SlotAddr::Master);
        let mut wait = redis::cmd("WAIT");
        wait.arg(1).arg(timeout_ms);
        let reply = conn
            .clone()
            .route_command(wait, RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)))
            .await?;
        Ok(Some(redis::FromRedisValue::from_redis_value(reply)?))
    }

    /// On a cluster: how many replicas are connected to the primary that owns `key`'s
    /// slot (`connected_slaves` of `INFO replication`). `None` for a single Redis.
    pub async fn connected_replicas(&self, key: &str) -> redis::RedisResult<Option<u64>> {
        let RedisConn::Cluster(conn) = self else { return Ok(None) };
        let route = Route::with_key(key, SlotAddr::Master);
        let mut info = redis::cmd("INFO");
        info.arg("replication");
        let reply = conn
            .clone()
            .route_command(info, RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)))
            .await?;
        let text: String = redis::FromRedisValue::from_redis_value(reply)?;
        let connected = text.lines().find_map(|l| l.trim().strip_prefix("connected_slaves:")?.parse().ok());
        connected
            .map(Some)
            .ok_or_else(|| (redis::ErrorKind::UnexpectedReturnType, "no connected_slaves in INFO").into())
    }

    /// On a cluster: the address of a replica in sync with the primary that owns `key`'s
    /// slot (`slave<n>:ip=…,port=…,state=online` of its `INFO replication`), if any.
    pub async fn online_replica(&self, key: &str) -> redis::RedisResult<Option<(String, u16)>> {
        let mut info = redis::cmd("INFO");
        info.arg("replication");
        let text: String = redis::FromRedisValue::from_redis_value(self.query_on_primary(info, key).await?)?;
        Ok(text.lines().filter(|l| l.starts_with("slave")).find_map(|line| {
            let fields = line.split_once(':')?.1;
            let field = |name: &str| fields.split(',').find_map(|f| f.strip_prefix(name));
            (field("state=")? == "online").then_some(())?;
            Some((field("ip=")?.to_owned(), field("port=")?.parse().ok()?))
        }))
    }

    /// On a cluster: how many replicas the cluster knows for the primary that owns `key`'s
    /// slot and does not flag as failing (`CLUSTER NODES` seen from that primary), whether
    /// or not they are connected to it now. `None` for a single Redis.
    pub async fn known_replicas(&self, key: &str) -> redis::RedisResult<Option<u64>> {
        if !self.is_cluster() {
            return Ok(None);
        }
        let nodes: String = redis::FromRedisValue::from_redis_value(
            self.query_on_primary(redis::cmd("CLUSTER").arg("NODES").clone(), key).await?,
        )?;
        // `<id> <addr> <flags> <primary id> ...`, one line per node.
        let lines: Vec<Vec<&str>> = nodes.lines().map(|l| l.split_whitespace().take(4).collect()).collect();
        let lines: Vec<&[&str]> = lines.iter().filter(|f| f.len() == 4).map(Vec::as_slice).collect();
        let Some(me) = lines.iter().find(|f| f[2].contains("myself")).map(|f| f[0]) else { return Ok(Some(0)) };
        let healthy = |flags: &str| flags.contains("slave") && !flags.contains("fail");
        let known = lines.iter().filter(|f| healthy(f[2]) && f[3] == me).count();
        Ok(Some(u64::try_from(known).unwrap_or(u64::MAX)))
    }

    /// Runs `cmd` on the primary that owns `key`'s slot (on one Redis: there).
    pub async fn query_on_primary(&self, cmd: Cmd, key: &str) -> redis::RedisResult<Value> {
        let RedisConn::Cluster(conn) = self else { return cmd.query_async(&mut self.clone()).await };
        let route =
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::with_key(key, SlotAddr::Master)));
        conn.clone().route_command(cmd, route).await
    }

    /// `PUBLISH`, or `SPUBLISH` on a cluster.
    pub async fn publish(&self, chan: String, val: Vec<u8>) -> redis::RedisResult<()> {
        let name = if self.is_cluster() { "SPUBLISH" } else { "PUBLISH" };
        let _: Value = redis::cmd(name).arg(chan).arg(val).query_async(&mut self.clone()).await?;
        Ok(())
    }

    /// `SUBSCRIBE`, or `SSUBSCRIBE` on a cluster; both are renewed after reconnects.
    pub async fn subscribe(&self, chan: &str) -> redis::RedisResult<()> {
        match self.clone() {
            RedisConn::Single(mut c) => c.subscribe(chan).await,
            RedisConn::Cluster(mut c) => c.ssubscribe(chan).await,
            RedisConn::Plain(mut c) => c.subscribe(chan).await,
        }
    }

    pub async fn unsubscribe(&self, chan: &str) -> redis::RedisResult<()> {
        match self.clone() {
            RedisConn::Single(mut c) => c.unsubscribe(chan).await,
            RedisConn::Cluster(mut c) => c.sunsubscribe(chan).await,
            RedisConn::Plain(mut c) => c.unsubscribe(chan).await,
        }
    }

    /// How many subscribers a channel has (on a cluster: on the shard that owns it).
    pub async fn subscribers(&self, chan: &str) -> redis::RedisResult<u16> {
        let sub = if self.is_cluster() { "SHARDNUMSUB" } else { "NUMSUB" };
        // A flat pair from one Redis; a map summed over the nodes from a cluster.
        let counts: std::collections::HashMap<String, u16> =
            redis::cmd("PUBSUB").arg(sub).arg(chan).query_async(&mut self.clone()).await?;
        Ok(counts.get(chan).copied().unwrap_or(0))
    }
}
