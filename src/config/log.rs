//! `RUST_LOG`, `DEBUG` and `LOG_FORMAT`: the log filter and format.

use super::{ConfigError, err};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    /// A `tracing_subscriber::EnvFilter` directive string, already validated.
    pub filter: String,
    pub format: LogFormat,
}

/// The transport crates, quiet (`warn`) unless `RUST_LOG` or `DEBUG` names them.
const UPSTREAM_TARGETS: [&str; 2] = ["socketioxide", "engineioxide"];

pub(super) fn parse_log(get: &impl Fn(&str) -> Option<String>) -> Result<LogConfig, ConfigError> {
    // Directives are trimmed: tracing-subscriber 0.3 mis-slices `info, a=debug` (space
    // after the comma) and can panic on non-ASCII there (found by fuzzing).
    let raw = get("RUST_LOG").unwrap_or_else(|| "info".to_owned());
    let mut filter = raw.split(',').map(str::trim).filter(|d| !d.is_empty()).collect::<Vec<_>>().join(",");
    // The Node convention: DEBUG=socket.io* (or engine*) turns on the transport's debug logs.
    if let Some(debug) = get("DEBUG") {
        let wants = |p: &str| debug.split([',', ' ']).any(|d| d.starts_with(p) || d == "*");
        if wants("socket.io") {
            filter.push_str(",socketioxide=debug,engineioxide=debug");
        } else if wants("engine") {
            filter.push_str(",engineioxide=debug");
        }
    }
    // The transport crates open an info-level span for every connection and disconnection
    // (`tracing::instrument` in socketioxide's `Client::on_connect`/`on_disconnect` and
    // engineioxide's `EngineIo::close_session`): about 30 allocations per socket, formatted
    // for nobody. They log at `warn` unless named here or turned on with `DEBUG`.
    for upstream in UPSTREAM_TARGETS {
        if !filter.contains(upstream) {
            filter.push_str(&format!(",{upstream}=warn"));
        }
    }
    let valid = std::panic::catch_unwind(|| tracing_subscriber::EnvFilter::try_new(&filter).is_ok()).unwrap_or(false);
    if !valid {
        return Err(err("RUST_LOG", format!("not a valid log filter: `{filter}`")));
    }
    let format = match get("LOG_FORMAT").as_deref() {
        None | Some("text") | Some("pretty") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => return Err(err("LOG_FORMAT", format!("expected `text` or `json`, got `{other}`"))),
    };
    Ok(LogConfig { filter, format })
}
