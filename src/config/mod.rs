//! Configuration: read once from the environment (and `.env`), validated, typed.
//!
//! Nothing else in the crate reads environment variables. Every error names the
//! variable and what is wrong with it, so a bad deployment fails with one clear line.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

mod admin;
mod api;
mod history;
mod hooks;
mod jwt;
mod log;
mod net;
mod origins;
mod proxies;
mod redis;
mod redis_tls;
mod secrets;
mod socket;

pub use admin::AdminConfig;
pub use api::ApiConfig;
pub use history::HistoryConfig;
pub use hooks::{DEV_WEBHOOK_SECRET, HookTarget, HooksConfig};
pub use jwt::{DEV_JWT_SECRET, JwtConfig, PublicKey, PublicKeyKind};
pub use log::{LogConfig, LogFormat};
pub use net::{ConnLimits, NetLimits, PerAddress};
pub use origins::AllowedOrigins;
pub use proxies::TrustedProxies;
pub(crate) use proxies::canonical;
pub use redis::{RedisConfig, ReplicaPolicy};
pub use redis_tls::{ClientIdentity, RedisTls};
pub use secrets::{MIN_API_TOKEN_CHARS, MIN_JWT_SECRET_BYTES};
pub use socket::{DEFAULT_BUFFER_BYTES, DEFAULT_BUFFER_PACKETS, SocketConfig};

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
    pub trusted_proxies: TrustedProxies,
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

/// A token-bucket limit: `per_second` sustained, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
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

    /// Builds the configuration from any variable lookup (tests pass a map). One parser
    /// per section, in a fixed order: the first bad variable is the one reported.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        // An empty variable counts as unset: `.env` templates often leave `FOO=`.
        let get = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());

        let env = parse_app_env(&get)?;
        let port = parse_port(&get, "PORT")?.unwrap_or(3000);
        let host = net::parse_host(&get, env)?;
        let mut cors = origins::parse_origins(get("CLIENT_ORIGIN").as_deref().unwrap_or("http://localhost:3000"))?;
        if env == AppEnv::Development {
            cors = cors.with_loopback();
        }
        let ws_path = parse_ws_path(&get)?;
        let jwt = jwt::parse_jwt(&get, env)?;
        let api = api::parse_api(&get, env)?;
        let redis = redis::parse_redis(&get)?;
        let log = log::parse_log(&get)?;
        let socket = socket::parse_socket(&get)?;
        let shutdown_timeout = Duration::from_secs(parse_bounded(&get, "SHUTDOWN_TIMEOUT_SECS", 10, 3_600)?);
        let worker_threads = match parse_bounded(&get, "WORKER_THREADS", 0, 1_024)? {
            0 => None,
            n => usize::try_from(n).ok(),
        };
        let limits = net::parse_net_limits(&get, &socket)?;
        let history = history::parse_history(&get)?;
        let hooks = hooks::parse_hooks(&get, env)?;
        let admin = admin::parse_admin(get("ADMIN_TOKEN"), env, &api.tokens)?;
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
            api,
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

/// `APP_ENV`: `development` (the default, also `dev`) or `production` (also `prod`).
fn parse_app_env(get: &impl Fn(&str) -> Option<String>) -> Result<AppEnv, ConfigError> {
    match get("APP_ENV").as_deref() {
        None | Some("development") | Some("dev") => Ok(AppEnv::Development),
        Some("production") | Some("prod") => Ok(AppEnv::Production),
        Some(other) => Err(err("APP_ENV", format!("expected `development` or `production`, got `{other}`"))),
    }
}

/// A port number, when the variable is set.
fn parse_port(get: &impl Fn(&str) -> Option<String>, var: &'static str) -> Result<Option<u16>, ConfigError> {
    let Some(v) = get(var) else { return Ok(None) };
    v.parse::<u16>().map(Some).map_err(|_| err(var, format!("not a port number (0-65535): `{v}`")))
}

/// `WS_PATH`: where Socket.IO is served; a path that no built-in route uses.
fn parse_ws_path(get: &impl Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
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
    Ok(ws_path)
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
    let Some(internal) = parse_port(get, "INTERNAL_PORT")? else { return Ok(None) };
    if internal == port && port != 0 {
        return Err(err("INTERNAL_PORT", format!("must differ from PORT ({port})")));
    }
    Ok(Some(internal))
}

#[cfg(test)]
mod tests;
