//! How to open more connections to the Redis (or cluster) the driver reached: the
//! history reader's own, and on a cluster one per node for replica reads.

use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterConfig};
use redis::{AsyncConnectionConfig, IntoConnectionInfo, ProtocolVersion};

use super::conn::RedisConn;
use crate::config::RedisTls;

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
