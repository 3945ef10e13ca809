//! Configuration: read once from the environment (and `.env`), validated, typed.
//!
//! Nothing else in the crate reads environment variables. Every error names the
//! variable and what is wrong with it, so a bad deployment fails with one clear line.

use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

mod admin;
mod hooks;
mod jwt;
mod log;
mod net;
mod origins;
mod redis;
mod redis_tls;
mod secrets;

pub use crate::history::HistoryConfig;
pub use admin::AdminConfig;
pub use hooks::{DEV_WEBHOOK_SECRET, HookTarget, HooksConfig};
pub use jwt::{DEV_JWT_SECRET, JwtConfig, PublicKey, PublicKeyKind};
pub use log::{LogConfig, LogFormat};
pub use net::NetLimits;
pub use origins::AllowedOrigins;
pub use redis::{RedisConfig, ReplicaPolicy};
pub use redis_tls::{ClientIdentity, RedisTls};
pub use secrets::{MIN_API_TOKEN_CHARS, MIN_JWT_SECRET_BYTES};

/// The REST bearer token used when development mode runs without `API_TOKEN`.
pub const DEV_API_TOKEN: &str = "dev-api-token";

/// The whole configuration of one server instance.
#[derive(Debug, Clone)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    pub env: AppEnv,
    pub cors: AllowedOrigins,
    pub ws_path: String,
    pub jwt: JwtConfig,
    pub api: ApiConfig,
    pub redis: RedisConfig,
    pub log: LogConfig,
    pub socket: SocketConfig,
    pub limits: NetLimits,
    pub history: HistoryConfig,
    pub hooks: HooksConfig,
    /// `ADMIN_TOKEN`: the admin console; `None`: off (`/admin` answers 404).
    pub admin: Option<AdminConfig>,
    /// `TRUSTED_PROXIES`: peers whose `X-Forwarded-For` / `Forwarded` name the client.
    pub trusted_proxies: crate::net::TrustedProxies,
    /// How long shutdown waits for in-flight requests and sockets before giving up.
    pub shutdown_timeout: Duration,
    /// Runtime worker threads; `None`: one per CPU core.
    pub worker_threads: Option<usize>,
    /// `INTERNAL_PORT`: when set, `/metrics` and the admin console are served only on a
    /// second listener on `HOST` and this port (`/health` and `/ready` on both), and the
    /// public port answers 404 for them. `None`: everything on `PORT`.
    pub internal_port: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnv {
    Development,
    Production,
}

/// The controllers' REST API.
#[derive(Clone)]
pub struct ApiConfig {
    /// Accepted bearer tokens; more than one so a token can be rotated without downtime.
    pub tokens: Vec<SecretString>,
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
    /// Per-token rate limit; `None` disables it.
    pub rate_limit: Option<RateLimit>,
    /// How long an idempotency key is remembered.
    pub idempotency_ttl: Duration,
}

impl fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiConfig")
            .field("tokens", &format_args!("[{} REDACTED]", self.tokens.len()))
            .field("body_limit", &self.body_limit)
            .field("rate_limit", &self.rate_limit)
            .field("idempotency_ttl", &self.idempotency_ttl)
            .finish()
    }
}

/// A token-bucket limit: `per_second` sustained, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

/// Engine.IO / Socket.IO transport settings.
#[derive(Debug, Clone)]
pub struct SocketConfig {
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// Time a client has to send its Socket.IO CONNECT after the Engine.IO handshake.
    pub connect_timeout: Duration,
    /// Time a client has to finish upgrading from long-polling to WebSocket.
    pub upgrade_timeout: Duration,
    /// Largest incoming message, in bytes, on every transport.
    pub max_payload: u64,
    /// Most binary attachments in one incoming packet.
    pub max_attachments: usize,
    /// Most outgoing packets queued per connection.
    pub buffer_packets: usize,
    /// `SOCKET_BUFFER_BYTES`: most outgoing bytes queued per socket; past it the socket
    /// is disconnected and recovers on reconnect, as with a full queue.
    pub buffer_bytes: usize,
    /// `MAX_SOCKETS_PER_USER`: sockets one token subject may hold at once; `None`: no cap.
    pub max_per_user: Option<usize>,
    /// Per-socket limit on client events; `None` disables it.
    pub rate_limit: Option<RateLimit>,
    /// A socket that stays over its rate this long is disconnected.
    pub flood_disconnect_after: Duration,
}

/// A configuration error: one line naming the variable and the problem.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {problem}")]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

fn err(var: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError { var, problem: problem.into() }
}

impl Config {
    /// Reads the process environment. Call `dotenvy` before this to honour `.env`.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds the configuration from any variable lookup (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        // An empty variable counts as unset: `.env` templates often leave `FOO=`.
        let get = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());

        let env = match get("APP_ENV").as_deref() {
            None | Some("development") | Some("dev") => AppEnv::Development,
            Some("production") | Some("prod") => AppEnv::Production,
            Some(other) => {
                return Err(err("APP_ENV", format!("expected `development` or `production`, got `{other}`")));
            }
        };

        let port = match get("PORT") {
            None => 3000,
            Some(v) => v.parse::<u16>().map_err(|_| err("PORT", format!("not a port number (0-65535): `{v}`")))?,
        };
        let host = net::parse_host(&get, env)?;

        let mut cors = origins::parse_origins(get("CLIENT_ORIGIN").as_deref().unwrap_or("http://localhost:3000"))?;
        if env == AppEnv::Development {
            cors = cors.with_loopback();
        }

        let raw_path = get("WS_PATH").unwrap_or_else(|| "/socket.io".to_owned());
        // Trailing slashes go first: `//` must not become an empty path matching everything.
        let ws_path = raw_path.trim_end_matches('/').to_owned();
        if !ws_path.starts_with('/') || ws_path.len() < 2 || ws_path.contains(['?', '#', ' ']) {
            return Err(err("WS_PATH", format!("must be a path such as `/socket.io`, got `{raw_path}`")));
        }
        if ws_path.starts_with("/api/")
            || ws_path == "/api"
            || ["/health", "/ready", "/metrics"].contains(&ws_path.as_str())
        {
            return Err(err("WS_PATH", format!("`{ws_path}` collides with a built-in route")));
        }

        let jwt = jwt::parse_jwt(&get, env)?;

        let tokens: Vec<SecretString> = match get("API_TOKEN") {
            Some(v) => v
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(|t| SecretString::from(t.to_owned()))
                .collect(),
            None => Vec::new(),
        };
        let tokens = match (tokens.is_empty(), env) {
            (false, _) => tokens,
            (true, AppEnv::Development) => vec![SecretString::from(DEV_API_TOKEN)],
            (true, AppEnv::Production) => {
                return Err(err("API_TOKEN", "required in production (APP_ENV=production)"));
            }
        };
        if env == AppEnv::Production && tokens.iter().any(|t| t.expose_secret() == DEV_API_TOKEN) {
            return Err(err("API_TOKEN", "the development token cannot be used in production"));
        }

        let body_limit = parse_num::<usize>(&get, "REST_BODY_LIMIT", 256 * 1024)?;
        if body_limit == 0 {
            return Err(err("REST_BODY_LIMIT", "must be at least 1 byte"));
        }
        let rate_limit = parse_rate(&get, ("API_RATE_LIMIT", 10_000), "API_RATE_BURST", None)?;
        let idempotency_ttl = Duration::from_secs(parse_bounded(&get, "IDEMPOTENCY_TTL_SECS", 600, 30 * 86_400)?);

        let redis = redis::parse_redis(&get)?;

        let log = log::parse_log(&get)?;

        let socket = SocketConfig {
            ping_interval: Duration::from_millis(parse_bounded(&get, "PING_INTERVAL_MS", 25_000, 3_600_000)?),
            ping_timeout: Duration::from_millis(parse_bounded(&get, "PING_TIMEOUT_MS", 20_000, 3_600_000)?),
            connect_timeout: Duration::from_millis(parse_bounded(&get, "CONNECT_TIMEOUT_MS", 45_000, 3_600_000)?),
            upgrade_timeout: Duration::from_millis(parse_bounded(&get, "UPGRADE_TIMEOUT_MS", 10_000, 3_600_000)?),
            max_payload: parse_num(&get, "MAX_PAYLOAD_BYTES", 1_000_000)?,
            max_attachments: parse_num(&get, "MAX_BINARY_ATTACHMENTS", 10)?,
            buffer_packets: parse_num(&get, "SOCKET_BUFFER_PACKETS", DEFAULT_BUFFER_PACKETS)?,
            buffer_bytes: parse_num(&get, "SOCKET_BUFFER_BYTES", DEFAULT_BUFFER_BYTES)?,
            max_per_user: match parse_num::<usize>(&get, "MAX_SOCKETS_PER_USER", 100)? {
                0 => None,
                n => Some(n),
            },
            rate_limit: parse_rate(&get, ("SOCKET_RATE_LIMIT", 20), "SOCKET_RATE_BURST", Some(40))?,
            flood_disconnect_after: Duration::from_millis(parse_bounded(
                &get,
                "SOCKET_FLOOD_DISCONNECT_MS",
                5_000,
                3_600_000,
            )?),
        };
        for (var, value) in [
            ("PING_INTERVAL_MS", socket.ping_interval),
            ("PING_TIMEOUT_MS", socket.ping_timeout),
            ("CONNECT_TIMEOUT_MS", socket.connect_timeout),
            ("UPGRADE_TIMEOUT_MS", socket.upgrade_timeout),
        ] {
            if value.is_zero() {
                return Err(err(var, "must be at least 1 ms"));
            }
        }
        if socket.buffer_bytes < 1024 {
            return Err(err("SOCKET_BUFFER_BYTES", "must be at least 1024"));
        }
        if socket.buffer_packets == 0 {
            return Err(err("SOCKET_BUFFER_PACKETS", "must be at least 1"));
        }
        if socket.max_payload < 1024 {
            return Err(err("MAX_PAYLOAD_BYTES", "must be at least 1024"));
        }
        let shutdown_timeout = Duration::from_secs(parse_bounded(&get, "SHUTDOWN_TIMEOUT_SECS", 10, 3_600)?);
        let worker_threads = match parse_bounded(&get, "WORKER_THREADS", 0, 1_024)? {
            0 => None,
            n => usize::try_from(n).ok(),
        };
        let limits = net::parse_net_limits(&get, &socket)?;

        let history = parse_history(&get)?;
        let hooks = hooks::parse_hooks(&get, env)?;
        let admin = admin::parse_admin(get("ADMIN_TOKEN"), env, &tokens)?;
        let trusted_proxies =
            get("TRUSTED_PROXIES").unwrap_or_default().parse().map_err(|e| err("TRUSTED_PROXIES", e))?;
        let internal_port = parse_internal_port(&get, port)?;

        let config = Config {
            history,
            hooks,
            admin,
            trusted_proxies,
            host,
            port,
            env,
            cors,
            ws_path,
            jwt,
            api: ApiConfig { tokens, body_limit, rate_limit, idempotency_ttl },
            redis,
            log,
            socket,
            limits,
            shutdown_timeout,
            worker_threads,
            internal_port,
        };
        secrets::check(&config)?;
        Ok(config)
    }
}

/// Outgoing packets queued per socket by default: a whole 500-event batch to one socket,
/// with room to spare, for a client that reads normally.
pub const DEFAULT_BUFFER_PACKETS: usize = 1024;

/// Outgoing bytes queued per socket by default: 1 MiB, as Centrifugo's client queue.
pub const DEFAULT_BUFFER_BYTES: usize = 1024 * 1024;

fn parse_history(get: &impl Fn(&str) -> Option<String>) -> Result<HistoryConfig, ConfigError> {
    let enabled = parse_bool(get, "HISTORY_ENABLED", true)?;
    let ttl = parse_bounded(get, "HISTORY_TTL_SECS", 300, 7 * 86_400)?;
    let size = parse_bounded(get, "HISTORY_SIZE", 1_000, 100_000)?;
    let max_bytes = parse_bounded(get, "HISTORY_MAX_BYTES", 64 * 1024 * 1024, 1 << 40)?;
    if ttl == 0 {
        return Err(err("HISTORY_TTL_SECS", "must be at least 1 (set HISTORY_ENABLED=false to turn history off)"));
    }
    if size == 0 {
        return Err(err("HISTORY_SIZE", "must be at least 1 (set HISTORY_ENABLED=false to turn history off)"));
    }
    if max_bytes < 1024 * 1024 {
        return Err(err("HISTORY_MAX_BYTES", "must be at least 1048576 (1 MiB)"));
    }
    Ok(HistoryConfig {
        enabled,
        ttl: Duration::from_secs(ttl),
        size: usize::try_from(size).unwrap_or(usize::MAX),
        max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
    })
}

/// A whole number of milliseconds (or seconds) up to `max`: huge values would overflow
/// the clock arithmetic of timers (found by fuzzing `SHUTDOWN_TIMEOUT_SECS`).
fn parse_bounded(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    let value = parse_num(get, var, default)?;
    if value > max {
        return Err(err(var, format!("must be at most {max}")));
    }
    Ok(value)
}

/// `true`/`false` (also `1`/`0`, `on`/`off`, `yes`/`no`, any case).
fn parse_bool(get: &impl Fn(&str) -> Option<String>, var: &'static str, default: bool) -> Result<bool, ConfigError> {
    match get(var).map(|v| v.to_ascii_lowercase()).as_deref() {
        None => Ok(default),
        Some("true" | "1" | "on" | "yes") => Ok(true),
        Some("false" | "0" | "off" | "no") => Ok(false),
        Some(other) => Err(err(var, format!("expected `true` or `false`, got `{other}`"))),
    }
}

fn parse_num<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: T,
) -> Result<T, ConfigError> {
    match get(var) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| err(var, format!("not a non-negative whole number: `{v}`"))),
    }
}

/// A rate and its burst (default: twice the rate); a rate of 0 turns the limit off.
fn parse_rate(
    get: &impl Fn(&str) -> Option<String>,
    (rate_var, default_rate): (&'static str, u32),
    burst_var: &'static str,
    default_burst: Option<u32>,
) -> Result<Option<RateLimit>, ConfigError> {
    let per_second = parse_num::<u32>(get, rate_var, default_rate)?;
    let burst = parse_num::<u32>(get, burst_var, default_burst.unwrap_or(per_second.saturating_mul(2)))?;
    match (NonZeroU32::new(per_second), NonZeroU32::new(burst)) {
        (Some(per_second), Some(burst)) => Ok(Some(RateLimit { per_second, burst })),
        (None, _) => Ok(None),
        (Some(_), None) => Err(err(burst_var, format!("must be at least 1 when {rate_var} is set"))),
    }
}

/// `INTERNAL_PORT`: a port other than `PORT` (both `0`, two ports the system picks, is fine).
fn parse_internal_port(get: &impl Fn(&str) -> Option<String>, port: u16) -> Result<Option<u16>, ConfigError> {
    let Some(v) = get("INTERNAL_PORT") else { return Ok(None) };
    let internal = v.parse::<u16>().map_err(|_| err("INTERNAL_PORT", format!("not a port number (0-65535): `{v}`")))?;
    if internal == port && port != 0 {
        return Err(err("INTERNAL_PORT", format!("must differ from PORT ({port})")));
    }
    Ok(Some(internal))
}

#[cfg(test)]
mod tests;
