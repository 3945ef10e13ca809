//! How the event history is kept: `HISTORY_ENABLED`, `HISTORY_TTL_SECS`, `HISTORY_SIZE`,
//! `HISTORY_MAX_BYTES`.

use std::time::Duration;

use super::{ConfigError, err, parse_bool, parse_bounded};

/// How the history is kept.
#[derive(Debug, Clone)]
pub struct HistoryConfig {
    /// `HISTORY_ENABLED=false` turns history (and with it `offsets` and recovery) off.
    pub enabled: bool,
    /// `HISTORY_TTL_SECS`: how long an event stays recoverable.
    pub ttl: Duration,
    /// `HISTORY_SIZE`: how many recent events of a room stay recoverable.
    pub size: usize,
    /// `HISTORY_MAX_BYTES`: the in-memory history's total bound; past it the rooms
    /// written longest ago are dropped whole.
    pub max_bytes: usize,
}

pub(super) fn parse_history(get: &impl Fn(&str) -> Option<String>) -> Result<HistoryConfig, ConfigError> {
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
