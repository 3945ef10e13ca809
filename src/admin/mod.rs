//! The admin console: one embedded page at `/admin` and its JSON API under
//! `/admin/api/`, for the bearer of `ADMIN_TOKEN`. Without the token none of it exists
//! (`404`).
//!
//! - [`guard`]: the token, in constant time, and a block on addresses that guess.
//! - [`tap`]: the events, read off the ordered log every instance follows.
//! - [`peers`]: the other instances' connections and sockets, asked over Redis.
//! - [`api`]: the routes; [`assets`]: the page.
//!
//! The console reads the data path and acts through the same emitter as the REST API
//! (disconnect, a test event through the history); it is never a second path.

pub mod api;
mod assets;
pub mod guard;
pub mod peers;
pub mod tap;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use socketioxide::SocketIo;
use socketioxide::TransportType;
use socketioxide::adapter::Adapter;

use crate::http::{ApiError, AppState, Readiness};
use crate::net::{ClientAddr, TrustedProxies};
use guard::{Guard, Refusal};
use peers::{Answer, InstanceInfo, LocalView, MAX_LISTED, Peers, Query, SocketInfo};
use tap::Tap;

/// This server, as the console names it.
pub struct Instance {
    /// Random per process: several instances may share a host name.
    pub id: String,
    pub host: String,
    pub started_at: u64,
    started: Instant,
}

impl Instance {
    pub fn new() -> Instance {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().chars().filter(|c| !c.is_control()).take(64).collect::<String>())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unknown".to_owned());
        let id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
        Instance { id, host, started_at: crate::clock::unix_ms(), started: Instant::now() }
    }
}

impl Default for Instance {
    fn default() -> Self {
        Instance::new()
    }
}

/// This instance's answers: its sockets, read from socketioxide's local rooms.
pub struct Local<A: Adapter> {
    pub io: SocketIo<A>,
    pub readiness: Arc<Readiness>,
    pub instance: Arc<Instance>,
    /// Fingerprints are keyed per process, so they cannot be matched to socket ids.
    salt: [u8; 16],
}

impl<A: Adapter> Local<A> {
    pub fn new(io: SocketIo<A>, readiness: Arc<Readiness>, instance: Arc<Instance>) -> Local<A> {
        Local { io, readiness, instance, salt: uuid::Uuid::new_v4().into_bytes() }
    }

    fn fingerprint(&self, sid: &str) -> String {
        let digest = Sha256::new().chain_update(self.salt).chain_update(sid.as_bytes()).finalize();
        digest[..4].iter().map(|b| format!("{b:02x}")).collect()
    }

    fn info(&self) -> InstanceInfo {
        let sockets = self.io.of("/").map(|ns| ns.sockets()).unwrap_or_default();
        let websocket = sockets.iter().filter(|s| s.transport_type() == TransportType::Websocket).count();
        InstanceInfo {
            id: self.instance.id.clone(),
            host: self.instance.host.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at: self.instance.started_at,
            uptime_secs: self.instance.started.elapsed().as_secs(),
            redis: match self.readiness.redis_up() {
                None => "none",
                Some(true) => "up",
                Some(false) => "down",
            }
            .to_owned(),
            ready: self.readiness.check().is_ok(),
            connections: sockets.len() as u64,
            websocket: websocket as u64,
            polling: (sockets.len() - websocket) as u64,
            is_self: false,
        }
    }
}

impl<A: Adapter> LocalView for Local<A> {
    fn answer(&self, query: &Query) -> Answer {
        let instance = self.info();
        let Query::Lookup { room } = query else { return Answer { instance, matched: 0, sockets: Vec::new() } };
        let held = self.io.of("/").map(|ns| ns.to(room.clone()).sockets()).unwrap_or_default();
        let sockets = held
            .iter()
            .take(MAX_LISTED)
            .map(|s| SocketInfo {
                fingerprint: self.fingerprint(&s.id.to_string()),
                since: s.extensions.get::<crate::socket::ConnectedAt>().map_or(0, |c| c.0),
                transport: match s.transport_type() {
                    TransportType::Websocket => "websocket",
                    TransportType::Polling => "polling",
                }
                .to_owned(),
            })
            .collect();
        Answer { instance, matched: held.len(), sockets }
    }
}

/// What the console's routes share.
pub struct Console<A: Adapter> {
    pub app: AppState<A>,
    pub guard: Arc<Guard>,
    pub tap: Arc<Tap>,
    pub peers: Arc<Peers>,
    pub local: Arc<Local<A>>,
    pub proxies: Arc<TrustedProxies>,
    /// `memory`, `redis` or `redis-cluster`.
    pub mode: &'static str,
}

impl<A: Adapter> Clone for Console<A> {
    fn clone(&self) -> Self {
        Console {
            app: self.app.clone(),
            guard: self.guard.clone(),
            tap: self.tap.clone(),
            peers: self.peers.clone(),
            local: self.local.clone(),
            proxies: self.proxies.clone(),
            mode: self.mode,
        }
    }
}

/// An operator who presented `ADMIN_TOKEN` from an address that is not blocked.
pub struct Operator {
    pub ip: std::net::IpAddr,
}

impl<A: Adapter> FromRequestParts<Console<A>> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, console: &Console<A>) -> Result<Self, ApiError> {
        let peer = parts.extensions.get::<ConnectInfo<ClientAddr>>().map(|c| c.0.0);
        let Some(peer) = peer else { return Err(ApiError::Internal("no client address".into())) };
        let ip = console.proxies.client_ip(peer, &parts.headers);
        let authorization = parts.headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
        match console.guard.check(ip, authorization, Instant::now()) {
            Ok(()) => Ok(Operator { ip }),
            Err(Refusal::Unauthorized) => Err(ApiError::Unauthorized),
            Err(Refusal::Blocked { retry_after_secs }) => Err(ApiError::RateLimited { retry_after_secs }),
        }
    }
}
