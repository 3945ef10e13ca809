//! Who may use the console: the bearer of `ADMIN_TOKEN`, compared in constant time, from
//! an address that has not just sent a run of wrong tokens.
//!
//! A blocked address is refused (429) before its token is looked at, so a correct guess
//! made while blocked is never told apart from a wrong one.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use secrecy::SecretString;

use crate::auth::api_token::ApiAuth;
use crate::sync::lock;

/// Wrong tokens an address may send within [`WINDOW`] before it is blocked until the
/// window ends.
const MAX_FAILURES: u32 = 10;
const WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at once; past it, new addresses share one count (a flood from
/// many addresses blocks them together rather than growing the table).
const MAX_TRACKED: usize = 10_000;

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Unauthorized,
    Blocked { retry_after_secs: u64 },
}

struct Strikes {
    count: u32,
    since: Instant,
}

/// Checks the admin token and counts wrong ones per address.
pub struct Guard {
    token: ApiAuth,
    strikes: Mutex<HashMap<IpAddr, Strikes>>,
}

/// The key an address is counted under: IPv6 clients by their /64, which one host
/// usually holds whole.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

impl Guard {
    pub fn new(token: SecretString) -> Guard {
        Guard { token: ApiAuth::new(vec![token], None), strikes: Mutex::new(HashMap::new()) }
    }

    /// Checks an `Authorization` header value sent from `ip`.
    pub fn check(&self, ip: IpAddr, authorization: Option<&[u8]>, now: Instant) -> Result<(), Refusal> {
        let key = key(ip);
        let mut strikes = lock(&self.strikes);
        let key = if strikes.contains_key(&key) || strikes.len() < MAX_TRACKED {
            key
        } else {
            strikes.retain(|_, s| now.duration_since(s.since) < WINDOW);
            if strikes.len() < MAX_TRACKED { key } else { IpAddr::V6(Ipv6Addr::UNSPECIFIED) }
        };
        if let Some(s) = strikes.get(&key) {
            let age = now.duration_since(s.since);
            if age >= WINDOW {
                strikes.remove(&key);
            } else if s.count >= MAX_FAILURES {
                let left = WINDOW - age;
                return Err(Refusal::Blocked { retry_after_secs: left.as_secs() + u64::from(left.subsec_nanos() > 0) });
            }
        }
        if self.token.check(authorization).is_ok() {
            return Ok(());
        }
        let s = strikes.entry(key).or_insert(Strikes { count: 0, since: now });
        s.count += 1;
        let failures = s.count;
        drop(strikes);
        tracing::warn!(ip = %ip, failures, "admin console: missing or wrong token");
        if failures == MAX_FAILURES {
            tracing::warn!(ip = %ip, window = ?WINDOW, "admin console: address blocked after repeated wrong tokens");
        }
        Err(Refusal::Unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RIGHT: &[u8] = b"Bearer the-admin-token";

    fn guard() -> Guard {
        Guard::new(SecretString::from("the-admin-token"))
    }

    #[test]
    fn the_token_opens_and_anything_else_does_not() {
        let g = guard();
        let ip: IpAddr = [10, 0, 0, 1].into();
        let now = Instant::now();
        assert_eq!(g.check(ip, Some(RIGHT), now), Ok(()));
        for wrong in [&b"Bearer the-admin-toke"[..], b"Bearer the-admin-token2", b"the-admin-token", b"Basic x", b""] {
            assert_eq!(g.check(ip, Some(wrong), now), Err(Refusal::Unauthorized));
        }
        assert_eq!(g.check(ip, None, now), Err(Refusal::Unauthorized));
    }

    #[test]
    fn after_a_run_of_wrong_tokens_even_the_right_one_waits_out_the_window() {
        let g = guard();
        let ip: IpAddr = [10, 0, 0, 2].into();
        let other: IpAddr = [10, 0, 0, 3].into();
        let t0 = Instant::now();
        for _ in 0..MAX_FAILURES {
            assert_eq!(g.check(ip, Some(b"Bearer nope"), t0), Err(Refusal::Unauthorized));
        }
        assert_eq!(g.check(ip, Some(RIGHT), t0), Err(Refusal::Blocked { retry_after_secs: 60 }));
        assert_eq!(
            g.check(ip, Some(b"Bearer nope"), t0 + Duration::from_secs(30)),
            Err(Refusal::Blocked { retry_after_secs: 30 })
        );
        assert_eq!(g.check(other, Some(RIGHT), t0), Ok(()), "another address is not blocked");
        assert_eq!(g.check(ip, Some(RIGHT), t0 + WINDOW), Ok(()), "the block ends with the window");
    }

    #[test]
    fn ipv6_clients_count_per_64_and_mapped_v4_as_v4() {
        let g = guard();
        let t0 = Instant::now();
        for i in 0..MAX_FAILURES {
            let ip = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, u16::try_from(i).unwrap_or(0)));
            assert_eq!(g.check(ip, Some(b"Bearer nope"), t0), Err(Refusal::Unauthorized));
        }
        let neighbour = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 9, 9, 9, 9));
        assert!(matches!(g.check(neighbour, Some(RIGHT), t0), Err(Refusal::Blocked { .. })));
        assert_eq!(key("::ffff:10.1.2.3".parse().expect("ip")), IpAddr::from([10, 1, 2, 3]));
    }

    #[test]
    fn the_table_stays_bounded_under_a_flood_of_addresses() {
        let g = guard();
        let t0 = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 50) {
            let _ = g.check(IpAddr::from(i.to_be_bytes()), Some(b"Bearer nope"), t0);
        }
        assert!(g.strikes.lock().expect("lock").len() <= MAX_TRACKED + 1);
    }
}
