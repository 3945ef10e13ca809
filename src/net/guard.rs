//! Checks made on the Socket.IO path before socketioxide sees a request: origin,
//! announced body size, and the per-address limits on new sessions. Which requests open a
//! session is [`SessionQuery`]'s call, the transport's own rule; an address is counted by
//! its [`LimitKey`].

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::{ConnectInfo, Request};
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};

use super::limits::LimitKey;
use super::session_query::SessionQuery;
use super::{ClientAddr, ClientIp, ForwardedConns, Transports, TrustedProxies};
use crate::config::{AllowedOrigins, Config};
use crate::http::ApiError;
use crate::http::edge::{Edge, EdgeLayer};

/// Checks made on the Socket.IO path before socketioxide sees a request.
#[derive(Clone)]
pub struct HandshakeGuard {
    ws_path: Arc<str>,
    origins: Arc<AllowedOrigins>,
    /// New Engine.IO sessions per client address (IPv6: per prefix).
    per_ip: Option<Arc<governor::DefaultKeyedRateLimiter<LimitKey>>>,
    ipv6_prefix: u8,
    checks: Arc<AtomicUsize>,
    proxies: Arc<TrustedProxies>,
    /// Sockets per client behind a trusted proxy, and how many one address may hold.
    forwarded: Arc<ForwardedConns>,
    forwarded_max: Option<usize>,
    max_payload: u64,
    transports: Arc<Transports>,
}

impl HandshakeGuard {
    pub fn new(config: &Config, transports: Arc<Transports>, forwarded: Arc<ForwardedConns>) -> HandshakeGuard {
        let per_ip = config.limits.handshakes_per_ip.map(|r| {
            Arc::new(governor::RateLimiter::keyed(governor::Quota::per_second(r.per_second).allow_burst(r.burst)))
        });
        HandshakeGuard {
            ws_path: Arc::from(config.ws_path.as_str()),
            origins: Arc::new(config.cors.clone()),
            per_ip,
            ipv6_prefix: config.limits.ipv6_prefix,
            checks: Arc::new(AtomicUsize::new(0)),
            proxies: Arc::new(config.trusted_proxies.clone()),
            forwarded,
            forwarded_max: config.limits.connections.per_ip.map(|p| p.max),
            max_payload: config.socket.max_payload,
            transports,
        }
    }

    /// The client's address: the peer's, or what a trusted proxy says it is.
    fn client_ip(&self, req: &Request) -> Option<ClientIp> {
        let peer = req.extensions().get::<ConnectInfo<ClientAddr>>()?.0.0;
        let ip = self.proxies.client_ip(peer, req.headers());
        Some(ClientIp { ip, proxied: self.proxies.trusts(peer.ip()) })
    }

    fn over_rate(&self, ip: IpAddr) -> Option<u64> {
        let limiter = self.per_ip.as_ref()?;
        // Forget idle addresses now and then, so the table cannot grow without bound.
        if self.checks.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        let not_until = limiter.check_key(&LimitKey::of(ip, self.ipv6_prefix)).err()?;
        let wait = not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
        Some(wait.as_secs().max(1))
    }
}

/// On the Socket.IO path:
/// - Browsers do not apply CORS to WebSocket upgrades, so a page on any site could
///   open a socket with a user's token. A handshake that carries an `Origin` outside
///   `CLIENT_ORIGIN` is refused with 403 on every transport; clients that send no
///   `Origin` (mobile apps, servers) are unaffected.
/// - New sessions are rate limited per client address (429).
/// - A long-polling body announced larger than `MAX_PAYLOAD_BYTES` is refused (413) before
///   it is read; engineioxide would otherwise wait for the bytes it is going to refuse.
fn check(guard: &HandshakeGuard, req: &mut Request) -> Result<(), ApiError> {
    let on_socket_path = req.uri().path().starts_with(&*guard.ws_path);
    if on_socket_path && req.method() != Method::OPTIONS {
        let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|len| len > guard.max_payload) {
            let limit = usize::try_from(guard.max_payload).unwrap_or(usize::MAX);
            return Err(ApiError::PayloadTooLarge { limit });
        }
        if let Some(origin) = req.headers().get(header::ORIGIN) {
            let allowed = origin.to_str().map(|o| guard.origins.allows(o)).unwrap_or(false);
            if !allowed {
                tracing::info!(origin = ?origin, "handshake from a disallowed origin refused");
                return Err(ApiError::OriginNotAllowed);
            }
        }
        let client = guard.client_ip(req);
        match SessionQuery::of(req.uri().query()) {
            SessionQuery::New => {
                if let Some(client) = client {
                    if let Some(retry_after_secs) = guard.over_rate(client.ip) {
                        tracing::debug!(ip = %client.ip, "handshake refused: over the per-address rate");
                        return Err(ApiError::RateLimited { retry_after_secs });
                    }
                    if client.proxied && guard.forwarded_max.is_some_and(|max| guard.forwarded.count(client.ip) >= max)
                    {
                        tracing::debug!(ip = %client.ip, "handshake refused: MAX_CONNECTIONS_PER_IP behind a proxy");
                        return Err(ApiError::TooManyConnections);
                    }
                    req.extensions_mut().insert(client);
                }
                crate::net::head::detach(req);
            }
            SessionQuery::Existing(sid) => {
                let conn = req.extensions().get::<ConnectInfo<ClientAddr>>().map(|c| c.0.1.clone());
                let carrier = req.method() == Method::GET;
                if let Some(conn) = conn
                    && !guard.transports.seen(sid, &conn, carrier)
                {
                    // A session we closed (its client must reconnect): it cannot go on.
                    return Err(ApiError::SessionClosed);
                }
            }
            // engineioxide refuses it as an unknown session: it opens nothing.
            SessionQuery::Malformed => {}
        }
    }
    Ok(())
}

/// [`check`] as a layer at the edge ([`Edge`]), the guard shared behind one `Arc`.
#[derive(Clone)]
pub struct GuardLayer(Arc<HandshakeGuard>);

impl GuardLayer {
    pub fn new(guard: HandshakeGuard) -> EdgeLayer<GuardLayer> {
        EdgeLayer(GuardLayer(Arc::new(guard)))
    }
}

impl Edge for GuardLayer {
    type Carry = ();

    fn before(&self, mut req: Request) -> Result<(Request, ()), Response> {
        match check(&self.0, &mut req) {
            Ok(()) => Ok((req, ())),
            Err(refusal) => Err(refusal.into_response()),
        }
    }

    fn after((): (), _: &mut Response) {}
}
