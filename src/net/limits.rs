//! Open connections in total and per address, counted at accept; and [`LimitKey`], what
//! every per-address limit counts by.

use crate::sync::lock;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

pub use crate::config::{ConnLimits, PerAddress};

/// The unit a per-address limit counts: an IPv4 address (an IPv4-mapped IPv6 address is
/// that IPv4 address), or the network of the first `ipv6_prefix` bits of an IPv6 address.
/// One host is commonly given a whole /64, so counting IPv6 addresses one by one would give
/// it 2^64 budgets. Every per-address limit (connections at accept, handshakes, sockets
/// behind a trusted proxy) keys by this, so they all agree on who "one address" is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LimitKey(IpAddr);

impl LimitKey {
    pub fn of(ip: IpAddr, ipv6_prefix: u8) -> LimitKey {
        match ip {
            IpAddr::V4(_) => LimitKey(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => LimitKey(IpAddr::V4(v4)),
                None => {
                    let bits = u32::from(ipv6_prefix.min(128));
                    // A shift by 128 (a prefix of 0) overflows: no bit is kept.
                    let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                    LimitKey(IpAddr::V6((u128::from(v6) & mask).into()))
                }
            },
        }
    }
}

impl std::fmt::Display for LimitKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Open connections, in total and per address. Shared by every accepted stream.
#[derive(Default)]
pub struct ConnTable {
    inner: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    total: usize,
    per_ip: HashMap<LimitKey, usize>,
}

impl ConnTable {
    /// Counts a new connection from `ip` (by its [`LimitKey`]), unless a limit says no. A
    /// trusted proxy's connections carry many clients: they count in the total only, and
    /// its clients are limited per socket once their forwarded address is read
    /// ([`ForwardedConns`](super::ForwardedConns)).
    pub(super) fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        limits: ConnLimits,
        proxy: bool,
    ) -> Result<ConnGuard, &'static str> {
        let mut table = lock(&self.inner);
        if limits.total.is_some_and(|max| table.total >= max) {
            return Err("MAX_CONNECTIONS");
        }
        // Without a per-address cap the count is kept anyway (it is cheap), per address.
        let key = LimitKey::of(ip, limits.per_ip.map_or(128, |p| p.ipv6_prefix));
        let from_ip = table.per_ip.get(&key).copied().unwrap_or(0);
        if !proxy && limits.per_ip.is_some_and(|p| from_ip >= p.max) {
            return Err("MAX_CONNECTIONS_PER_IP");
        }
        table.total += 1;
        table.per_ip.insert(key, from_ip + 1);
        Ok(ConnGuard { table: self.clone(), key })
    }

    pub fn total(&self) -> usize {
        lock(&self.inner).total
    }
}

/// Uncounts its connection when dropped, however the connection ends.
pub struct ConnGuard {
    table: Arc<ConnTable>,
    key: LimitKey,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut table = lock(&self.table.inner);
        table.total = table.total.saturating_sub(1);
        if let Some(n) = table.per_ip.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                table.per_ip.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn per(max: usize) -> Option<PerAddress> {
        Some(PerAddress { max, ipv6_prefix: 64 })
    }

    #[test]
    fn limits_count_per_address_and_in_total_and_free_on_drop() {
        let table = Arc::new(ConnTable::default());
        let limits = ConnLimits { total: Some(3), per_ip: per(2) };
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let a1 = table.admit(a, limits, false).unwrap();
        let _a2 = table.admit(a, limits, false).unwrap();
        assert_eq!(table.admit(a, limits, false).err(), Some("MAX_CONNECTIONS_PER_IP"));
        let _b1 = table.admit(b, limits, false).unwrap();
        assert_eq!(table.admit(b, limits, false).err(), Some("MAX_CONNECTIONS"));
        drop(a1);
        let _b2 = table.admit(b, limits, false).unwrap();
        assert_eq!(table.total(), 3);
    }

    #[test]
    fn a_trusted_proxy_is_held_to_the_total_only() {
        let table = Arc::new(ConnTable::default());
        let limits = ConnLimits { total: Some(3), per_ip: per(1) };
        let proxy: IpAddr = [10, 0, 0, 9].into();
        let held: Vec<_> = (0..3).map(|_| table.admit(proxy, limits, true).unwrap()).collect();
        assert_eq!(table.admit(proxy, limits, true).err(), Some("MAX_CONNECTIONS"));
        drop(held);
    }

    fn key(ip: &str, prefix: u8) -> String {
        LimitKey::of(ip.parse().unwrap(), prefix).to_string()
    }

    #[test]
    fn an_ipv6_address_counts_by_its_prefix_and_ipv4_by_its_address() {
        assert_eq!(key("2001:db8:1:2:aaaa::1", 64), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2:ffff:ffff:ffff:ffff", 64), "2001:db8:1:2::");
        assert_ne!(key("2001:db8:1:3::1", 64), key("2001:db8:1:2::1", 64));
        assert_eq!(key("2001:db8:1:3::1", 48), key("2001:db8:1:2::1", 48));
        assert_eq!(key("2001:db8::1", 128), "2001:db8::1");
        assert_eq!(key("2001:db8::1", 1), "::");
        assert_eq!(key("ffff::1", 1), "8000::");
        assert_eq!(key("2001:db8::1", 0), "::", "a prefix of 0 must not overflow");
        assert_eq!(key("2001:db8::1", 200), "2001:db8::1", "past 128 is 128");
        assert_eq!(key("203.0.113.7", 64), "203.0.113.7");
        assert_eq!(key("203.0.113.7", 1), "203.0.113.7", "IPv4 is never grouped");
        assert_eq!(key("::ffff:203.0.113.7", 64), "203.0.113.7", "a mapped address is its IPv4 address");
    }

    #[test]
    fn connections_from_one_ipv6_prefix_share_the_cap() {
        let table = Arc::new(ConnTable::default());
        let limits = ConnLimits { total: None, per_ip: per(2) };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let _a = table.admit(ip("2001:db8::1"), limits, false).unwrap();
        let b = table.admit(ip("2001:db8::2"), limits, false).unwrap();
        assert_eq!(table.admit(ip("2001:db8::ffff"), limits, false).err(), Some("MAX_CONNECTIONS_PER_IP"));
        let _c = table.admit(ip("2001:db9::1"), limits, false).expect("another /64 has its own cap");
        drop(b);
        let _d = table.admit(ip("2001:db8::3"), limits, false).expect("a freed place is the prefix's again");
        let exact = ConnLimits { total: None, per_ip: Some(PerAddress { max: 1, ipv6_prefix: 128 }) };
        let _e = table.admit(ip("2001:dba::1"), exact, false).unwrap();
        let _f = table.admit(ip("2001:dba::2"), exact, false).expect("/128: one address each");
    }
}
