//! The wall clock, read one way everywhere: Unix time since the epoch, a clock set before
//! 1970 reading as 0. Durations and deadlines use `Instant` instead; this is for what is
//! stored or shown (history timestamps, presence grace across instances, the console).

use std::time::{SystemTime, UNIX_EPOCH};

fn since_epoch() -> std::time::Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    u64::try_from(since_epoch().as_millis()).unwrap_or(u64::MAX)
}

/// Whole seconds since the Unix epoch.
pub fn unix_secs() -> u64 {
    since_epoch().as_secs()
}

/// Seconds since the Unix epoch, with the fraction (token expiries are compared to it).
pub fn unix_secs_f64() -> f64 {
    since_epoch().as_secs_f64()
}
