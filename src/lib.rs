//! fixrx-realtime: a standalone Socket.IO server for FixRX.
//!
//! Map of the crate, by floor: a module uses only modules on floors below its own
//! (`python3 dev/modgraph.py` prints the graph, which has no loop).
//!
//! Ground floor, using nothing of ours:
//! - [`config`]: environment to a typed, validated [`Config`], once, one parser per section.
//! - [`events`]: the vocabulary on the wire, declared once: the catalog, rooms, the envelope,
//!   chat messages, parsing untrusted bodies, and [`events::wire`] (client events, the
//!   other server events, ack codes).
//! - [`clock`]: the wall clock; [`sync`]: taking a lock; [`metrics`]: the registry;
//!   [`shutdown`]: requests in flight; [`idempotency`]: REST idempotency keys.
//!
//! Plumbing:
//! - [`redis_link`]: the shared Redis (connection, reconnecting driver, health, TLS), for
//!   whoever needs Redis. Not named `redis`: inside the crate that would make every
//!   `redis::...` path ambiguous with the redis-rs crate.
//! - [`auth`]: who a client is (JWTs, [`auth::Identity`]) and the controllers' bearer tokens.
//! - [`telemetry`]: logs that carry no credential; [`engine`]: Engine.IO settings.
//!
//! The data path, REST or emitter -> history -> delivery -> sockets:
//! - [`history`]: per-room history (memory or Redis Streams) and the ordered log every
//!   instance reads; [`hooks`]: what the backend hears (signed presence webhooks) and is
//!   asked (the chat hook, before a message is relayed).
//! - [`emit`]: typed emitters, the one path by which events enter the history.
//! - [`http`]: the REST API and the operator endpoints; [`http::ApiError`] maps errors.
//! - [`net`]: listener limits, trusted proxies, the client address, and the handshake
//!   guard (which refuses in [`http::ApiError`]'s shape).
//! - [`delivery`]: from the log to sockets, and recovery after reconnects.
//! - [`socket`]: the connect middleware, what a connected client may send (`ping`,
//!   `join`, `leave`, chat, `auth:refresh`), room membership, rate limits, token expiry.
//!
//! On top, choosing and assembling:
//! - [`admin`]: the admin console (`ADMIN_TOKEN`): its page, and an API that reads the
//!   log and asks every instance.
//! - [`app`]: assembles routes, Socket.IO and tower-http layers for one adapter.
//! - [`scale`]: picks the adapter (memory, one Redis, a Redis Cluster) and builds the app.
//! - [`run`]: serves on a bound listener (and the internal one, [`Listeners`]) until the
//!   shutdown future resolves.

#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod auth;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod emit;
pub mod engine;
pub mod events;
pub mod history;
pub mod hooks;
pub mod http;
pub mod idempotency;
pub mod metrics;
pub mod net;
pub mod redis_link;
pub mod scale;
pub mod shutdown;
pub mod socket;
pub mod sync;
pub mod telemetry;

use std::future::Future;
use std::net::SocketAddr;

use socketioxide::adapter::Adapter;
use tokio::net::TcpListener;

pub use config::Config;
pub use emit::{Emitted, Emitter};

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Start(#[from] scale::ScaleError),
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot listen on {addr} (INTERNAL_PORT/HOST): {source}")]
    Internal { addr: SocketAddr, source: std::io::Error },
}

/// Where the server listens: the public port, and with `INTERNAL_PORT` the internal one.
/// A bare [`TcpListener`] converts into one without an internal listener; when the
/// configuration asks for an internal port and none is given, [`serve`] binds
/// `HOST:INTERNAL_PORT` itself.
pub struct Listeners {
    pub public: TcpListener,
    pub internal: Option<TcpListener>,
}

impl From<TcpListener> for Listeners {
    fn from(public: TcpListener) -> Listeners {
        Listeners { public, internal: None }
    }
}

/// Serves on `listener` until `shutdown` resolves, then stops accepting, closes every
/// socket cleanly and returns within `config.shutdown_timeout`. Meanwhile connections that
/// send nothing in time are closed ([`net::serve`]).
pub async fn run(
    listeners: impl Into<Listeners>,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let listener = listeners.into();
    let built = scale::build(&config).await?;
    if let Ok(addr) = listener.public.local_addr() {
        announce(&config, addr);
    }
    match built {
        scale::Built::Memory(app) => serve(listener, app, &config, shutdown).await,
        scale::Built::Redis(app) => serve(listener, app, &config, shutdown).await,
    }
}

/// Serves an already built [`app::App`]: the same as [`run`], for callers that keep its emitter.
pub async fn serve<A: Adapter>(
    listeners: impl Into<Listeners>,
    app: app::App<A>,
    config: &Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let Listeners { public, internal } = listeners.into();
    let app::App { service, internal: internal_service, state, .. } = app;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let internal = match (internal_service, internal, config.internal_port) {
        (Some(service), Some(listener), _) => Some((service, listener)),
        (Some(service), None, Some(port)) => {
            let addr = SocketAddr::new(config.host, port);
            let listener = TcpListener::bind(addr).await.map_err(|source| RunError::Internal { addr, source })?;
            Some((service, listener))
        }
        _ => None,
    };
    let internal = internal.map(|(service, listener)| {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "internal port listening: /metrics and the admin console are served only here");
        }
        tokio::spawn(serve_one(listener, service, config, &state.metrics, stop_rx.clone()))
    });
    let mut server = tokio::spawn(serve_one(public, service, config, &state.metrics, stop_rx));

    tokio::select! {
        finished = &mut server => {
            // The loop only ends once asked to; a panic in it is the one way here.
            return finished.map_err(|join| RunError::Io(std::io::Error::other(join)));
        }
        () = shutdown => {}
    }

    let deadline = tokio::time::Instant::now() + config.shutdown_timeout;
    state.readiness.stop_accepting();
    let _ = stop_tx.send(true);
    tracing::info!(timeout = ?config.shutdown_timeout, "shutting down: no new connections");
    // In-flight REST requests emit into the Socket.IO server: let them finish first.
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    if !state.in_flight.wait_idle(left).await {
        tracing::warn!(in_flight = state.in_flight.current(), "shutdown: requests still in flight at the deadline");
    }
    tracing::info!("shutdown: closing sockets");
    let drain = async {
        state.emitter.close().await;
        let _ = server.await;
        if let Some(internal) = internal {
            let _ = internal.await;
        }
    };
    let drained = tokio::time::timeout_at(deadline, drain).await.is_ok();
    // The sockets' departures go to the presence store, and queued webhooks out, in what is left.
    state.hooks.shutdown(deadline).await;
    if drained {
        tracing::info!("shutdown complete");
    } else {
        tracing::warn!(timeout = ?config.shutdown_timeout, "shutdown timed out; exiting anyway");
    }
    Ok(())
}

/// One listener's accept loop, with the connection limits and timeouts, until `stop`.
fn serve_one(
    listener: TcpListener,
    service: app::HttpService,
    config: &Config,
    metrics: &metrics::Metrics,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send + 'static {
    let proxies = std::sync::Arc::new(config.trusted_proxies.clone());
    let listener = net::LimitedListener::new(listener, config.limits.connections, config.limits.write_stall, proxies);
    let timeouts = net::serve::Timeouts {
        header: config.limits.header_read_timeout,
        idle: config.limits.idle_timeout,
        counted: metrics.connection_timeouts.clone(),
    };
    net::serve::serve(listener, service, timeouts, async move {
        let _ = stop.wait_for(|stop| *stop).await;
    })
}

/// What to say when a development server listens where other machines can reach it.
fn exposure(config: &Config, addr: SocketAddr) -> Option<&'static str> {
    if config.env != config::AppEnv::Development || addr.ip().is_loopback() {
        return None;
    }
    Some(if config.jwt.is_dev_secret() {
        "HOST is set in development mode: this server is reachable from other machines, and anyone who \
         reaches it can mint any token (admin included) at /dev/token with the public development secret"
    } else {
        "HOST is set in development mode: this server is reachable from other machines, with development \
         defaults (set APP_ENV to production)"
    })
}

/// Logs what the server runs with, and shouts when development defaults are in use.
fn announce(config: &Config, addr: SocketAddr) {
    use config::AppEnv;
    if config.env == AppEnv::Development {
        tracing::warn!("DEVELOPMENT MODE: not for production (set APP_ENV to production)");
        if let Some(warning) = exposure(config, addr) {
            tracing::warn!(%addr, "{warning}");
        }
        if config.jwt.is_dev_secret() {
            tracing::warn!(
                "JWT_SECRET is unset: using the public development secret; GET /dev/token mints client tokens"
            );
        }
        if config.hooks.is_dev_secret() {
            tracing::warn!("WEBHOOK_SECRET is unset: hook requests are signed with the public development secret");
        }
        if config.api.tokens.iter().any(|t| secrecy::ExposeSecret::expose_secret(t) == config::DEV_API_TOKEN) {
            // In the message, not a `token` field: the log redacts every field named so,
            // and this one is public and the whole point of the line.
            tracing::warn!("API_TOKEN is unset: the REST API accepts the development token {}", config::DEV_API_TOKEN);
        }
    }
    tracing::info!(%addr, ws_path = %config.ws_path, env = ?config.env, cors = ?config.cors, "fixrx-realtime listening");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Config {
        let map: std::collections::HashMap<&str, &str> = vars.iter().copied().collect();
        Config::from_lookup(|k| map.get(k).map(|v| v.to_string())).expect("valid")
    }

    #[test]
    fn a_development_server_reachable_from_other_machines_is_warned_about_and_only_that() {
        let anywhere: SocketAddr = "0.0.0.0:3000".parse().expect("addr");
        let loopback: SocketAddr = "127.0.0.1:3000".parse().expect("addr");
        let v6: SocketAddr = "[::1]:3000".parse().expect("addr");
        let dev = config(&[]);
        assert!(exposure(&dev, anywhere).is_some_and(|w| w.contains("/dev/token")));
        assert_eq!(exposure(&dev, loopback), None);
        assert_eq!(exposure(&dev, v6), None);
        let own_secret = config(&[("JWT_SECRET", "a-development-secret-of-our-own")]);
        assert!(exposure(&own_secret, anywhere).is_some_and(|w| !w.contains("/dev/token")));
        let prod = config(&[
            ("APP_ENV", "production"),
            ("JWT_SECRET", "a-production-jwt-secret-0123456789abcdef"),
            ("API_TOKEN", "a-production-api-token"),
        ]);
        assert_eq!(exposure(&prod, anywhere), None);
    }
}
