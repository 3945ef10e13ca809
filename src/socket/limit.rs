//! Per-socket rate limiting of client events, and flood detection.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::config::RateLimit;
use crate::sync::lock;

/// A socket that goes this long without a refused event has stopped flooding.
const RECOVERY: Duration = Duration::from_secs(1);

/// What to do with one client event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Over the rate: refuse this event (`rate_limited`).
    Limited,
    /// Over the rate for longer than allowed: disconnect the socket.
    Flooding,
}

/// The limiter of one socket: a token bucket, plus how long it has been over it.
pub struct SocketLimiter {
    bucket: DefaultDirectRateLimiter,
    flood_after: Duration,
    over: Mutex<Option<Over>>,
}

struct Over {
    since: Instant,
    last_refused: Instant,
}

impl SocketLimiter {
    pub fn new(limit: RateLimit, flood_after: Duration) -> SocketLimiter {
        let quota = Quota::per_second(limit.per_second).allow_burst(limit.burst);
        SocketLimiter { bucket: RateLimiter::direct(quota), flood_after, over: Mutex::new(None) }
    }

    pub fn check(&self) -> Verdict {
        self.check_at(Instant::now())
    }

    fn check_at(&self, now: Instant) -> Verdict {
        if self.bucket.check().is_ok() {
            return Verdict::Allowed;
        }
        let mut over = lock(&self.over);
        // A socket is flooding while its refusals keep coming with no pause of RECOVERY;
        // an event that gets through now and then does not reset it.
        let state = match over.take() {
            Some(o) if now.duration_since(o.last_refused) < RECOVERY => Over { since: o.since, last_refused: now },
            _ => Over { since: now, last_refused: now },
        };
        let flooding = now.duration_since(state.since) >= self.flood_after;
        *over = Some(state);
        if flooding { Verdict::Flooding } else { Verdict::Limited }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    fn limiter(flood_ms: u64) -> SocketLimiter {
        let n = |v| NonZeroU32::new(v).unwrap();
        SocketLimiter::new(RateLimit { per_second: n(1), burst: n(2) }, Duration::from_millis(flood_ms))
    }

    #[test]
    fn the_burst_passes_then_events_are_limited() {
        let l = limiter(5_000);
        assert_eq!(l.check(), Verdict::Allowed);
        assert_eq!(l.check(), Verdict::Allowed);
        assert_eq!(l.check(), Verdict::Limited);
    }

    #[test]
    fn staying_over_the_limit_becomes_flooding_and_a_pause_forgives() {
        let l = limiter(0);
        l.check();
        l.check();
        assert_eq!(l.check(), Verdict::Flooding);
        let l = limiter(500);
        let t0 = Instant::now();
        l.check_at(t0);
        l.check_at(t0);
        assert_eq!(l.check_at(t0), Verdict::Limited);
        // Refusals keep coming for longer than 500 ms: flooding.
        let mut t = t0;
        let mut last = Verdict::Limited;
        for _ in 0..10 {
            t += Duration::from_millis(100);
            last = l.check_at(t);
            if last == Verdict::Flooding {
                break;
            }
        }
        assert_eq!(last, Verdict::Flooding);
    }
}
