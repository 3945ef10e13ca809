//! The client's address behind trusted proxies (`TRUSTED_PROXIES`).
//!
//! A connection from a trusted proxy carries its client's address in `Forwarded` (`for=`)
//! or `X-Forwarded-For` (each proxy appends the address it received from). Walking from
//! the right, the first address that is not itself a trusted proxy is the client: anything
//! to its left was written by the client and proves nothing. Headers from any other peer
//! are ignored, so a client cannot choose its address. A header that cannot be read is
//! ignored too: the peer's address is used.
//!
//! When a request carries `Forwarded`, `X-Forwarded-For` is not read at all: a proxy that
//! speaks RFC 7239 passes a client's `X-Forwarded-For` through untouched, so that header
//! would hold only what the client wrote.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use http::HeaderMap;

use super::limits::LimitKey;
pub use crate::config::TrustedProxies;
use crate::config::canonical;
use crate::sync::lock;

/// Hops looked at, from the right, before giving up on a header (a chain of trusted
/// proxies is a handful; a thousand entries is an attack).
const MAX_HOPS: usize = 32;

const FORWARDED: &str = "forwarded";
const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// How the client's address is read behind the [`TrustedProxies`] (declared, and parsed
/// from `TRUSTED_PROXIES`, in `config`).
impl TrustedProxies {
    /// The client's address for a request that came from `peer`.
    pub fn client_ip(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        let peer_ip = canonical(peer.ip());
        if !self.trusts(peer_ip) {
            return peer_ip;
        }
        // Presence decides, not readability: an unreadable `Forwarded` must not hand the
        // decision to an `X-Forwarded-For` the client may have written.
        if headers.contains_key(FORWARDED) {
            return match joined(headers, FORWARDED) {
                Some(list) => self.walk(peer_ip, &forwarded_fors(&list)),
                None => peer_ip,
            };
        }
        match joined(headers, X_FORWARDED_FOR) {
            Some(list) => self.walk(peer_ip, &list.split(',').collect::<Vec<_>>()),
            None => peer_ip,
        }
    }

    /// The rightmost hop that is not a trusted proxy; the peer when a hop is unreadable.
    fn walk(&self, peer_ip: IpAddr, hops: &[&str]) -> IpAddr {
        let mut leftmost = peer_ip;
        for hop in hops.iter().rev().take(MAX_HOPS) {
            let Some(ip) = parse_hop(hop) else { return peer_ip };
            if !self.trusts(ip) {
                return ip;
            }
            leftmost = ip;
        }
        // Every hop is one of ours (or there were too many): the farthest one we read.
        if hops.len() > MAX_HOPS { peer_ip } else { leftmost }
    }
}

/// Every value of a header, in order, joined by commas (a list may be split over lines).
fn joined(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut out: Option<String> = None;
    for value in headers.get_all(name) {
        let Ok(text) = value.to_str() else { return None };
        match &mut out {
            Some(list) => {
                list.push(',');
                list.push_str(text);
            }
            None => out = Some(text.to_owned()),
        }
    }
    out
}

/// The `for=` values of a `Forwarded` header (RFC 7239), in order.
fn forwarded_fors(list: &str) -> Vec<&str> {
    list.split(',')
        .map(|element| {
            element
                .split(';')
                .filter_map(|pair| pair.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("for"))
                .map_or("", |(_, v)| v.trim())
        })
        .collect()
}

/// One hop: `192.0.2.1`, `192.0.2.1:8080`, `2001:db8::1`, `[2001:db8::1]:443`, quoted or not.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim().trim_matches('"');
    if hop.len() > 64 {
        return None;
    }
    if let Ok(ip) = IpAddr::from_str(hop) {
        return Some(canonical(ip));
    }
    if let Ok(addr) = SocketAddr::from_str(hop) {
        return Some(canonical(addr.ip()));
    }
    // `[v6]` without a port.
    let inner = hop.strip_prefix('[')?.strip_suffix(']')?;
    IpAddr::from_str(inner).ok().map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn proxies(s: &str) -> TrustedProxies {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    const PROXY: &str = "10.0.0.5:41000";

    fn client(trusted: &str, pairs: &[(&'static str, &str)]) -> String {
        proxies(trusted).client_ip(PROXY.parse().unwrap(), &headers(pairs)).to_string()
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let xff = ("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.0.0.9");
        assert_eq!(client("10.0.0.0/8", &[xff]), "203.0.113.7");
        // Split over two header lines: one list.
        assert_eq!(
            client("10.0.0.0/8", &[("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "203.0.113.8")]),
            "203.0.113.8"
        );
        // Every hop is a proxy of ours: the farthest.
        assert_eq!(client("10.0.0.0/8", &[("x-forwarded-for", "10.1.1.1, 10.2.2.2")]), "10.1.1.1");
    }

    #[test]
    fn headers_from_an_untrusted_peer_are_ignored() {
        assert_eq!(client("192.168.0.0/16", &[("x-forwarded-for", "203.0.113.7")]), "10.0.0.5");
        assert_eq!(client("", &[("x-forwarded-for", "203.0.113.7")]), "10.0.0.5");
    }

    #[test]
    fn forwarded_is_preferred_and_x_forwarded_for_then_ignored() {
        // The proxy speaks RFC 7239; the client wrote X-Forwarded-For to pick its address.
        let forged = ("x-forwarded-for", "198.51.100.99");
        assert_eq!(client("10.0.0.0/8", &[forged, ("forwarded", "for=203.0.113.7")]), "203.0.113.7");
        assert_eq!(client("10.0.0.0/8", &[("forwarded", "for=203.0.113.7"), forged]), "203.0.113.7");
        // An unreadable or useless Forwarded is the peer, never the X-Forwarded-For beside it.
        assert_eq!(client("10.0.0.0/8", &[forged, ("forwarded", "for=unknown")]), "10.0.0.5");
        assert_eq!(client("10.0.0.0/8", &[forged, ("forwarded", "proto=https")]), "10.0.0.5");
        let mut h = headers(&[forged]);
        h.insert("forwarded", HeaderValue::from_bytes(b"for=\xff").unwrap());
        assert_eq!(proxies("10.0.0.0/8").client_ip(PROXY.parse().unwrap(), &h).to_string(), "10.0.0.5");
        // Without Forwarded, X-Forwarded-For is read as before.
        assert_eq!(client("10.0.0.0/8", &[forged]), "198.51.100.99");
    }

    #[test]
    fn sockets_behind_a_proxy_count_an_ipv6_client_by_its_prefix() {
        let table = Arc::new(ForwardedConns::new(64));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let _a = table.enter(ip("2001:db8::1"));
        let _b = table.enter(ip("2001:db8::2"));
        assert_eq!(table.count(ip("2001:db8::ffff")), 2, "one /64 by default");
        assert_eq!(table.count(ip("2001:db9::1")), 0);
        assert_eq!(table.count(ip("203.0.113.1")), 0);
        let narrow = Arc::new(ForwardedConns::new(128));
        let _d = narrow.enter(ip("2001:db8::1"));
        assert_eq!(narrow.count(ip("2001:db8::ffff")), 0, "/128: one address each");
        let wide = Arc::new(ForwardedConns::new(48));
        let _c = wide.enter(ip("2001:db8:0:1::1"));
        assert_eq!(wide.count(ip("2001:db8::1")), 1, "/48 as configured");
    }

    #[test]
    fn forwarded_is_read_when_there_is_no_x_forwarded_for() {
        let fwd = ("forwarded", r#"for=192.0.2.60;proto=https, For="[2001:db8:cafe::17]:4711""#);
        assert_eq!(client("10.0.0.0/8", &[fwd]), "2001:db8:cafe::17");
        assert_eq!(client("10.0.0.0/8", &[("forwarded", "for=unknown")]), "10.0.0.5");
        assert_eq!(client("10.0.0.0/8", &[("forwarded", "proto=http")]), "10.0.0.5");
    }

    #[test]
    fn ports_ipv6_forms_and_mapped_addresses_are_understood() {
        assert_eq!(client("10.0.0.0/8", &[("x-forwarded-for", "203.0.113.7:5555")]), "203.0.113.7");
        assert_eq!(client("10.0.0.0/8", &[("x-forwarded-for", "[2001:db8::1]:443")]), "2001:db8::1");
        assert_eq!(client("10.0.0.0/8", &[("x-forwarded-for", "[2001:db8::2]")]), "2001:db8::2");
        assert_eq!(client("10.0.0.0/8", &[("x-forwarded-for", "2001:db8::3")]), "2001:db8::3");
        assert_eq!(client("10.0.0.0/8", &[("x-forwarded-for", "::ffff:203.0.113.9")]), "203.0.113.9");
        let mapped: SocketAddr = "[::ffff:10.0.0.5]:1".parse().unwrap();
        assert!(proxies("10.0.0.0/8").trusts(mapped.ip()));
    }

    #[test]
    fn malformed_or_huge_headers_fall_back_to_the_peer() {
        for bad in ["garbage", "", " , ", "1.2.3.4.5", "203.0.113.7, not-an-ip", "[::1", "::1]:80", &"9".repeat(100)] {
            assert_eq!(client("10.0.0.0/8", &[("x-forwarded-for", bad)]), "10.0.0.5", "{bad:?}");
        }
        let hops = vec!["10.0.0.1"; 1000].join(",");
        assert_eq!(client("10.0.0.0/8", &[("x-forwarded-for", &hops)]), "10.0.0.5");
        let hops = format!("{}, 203.0.113.1", vec!["garbage"; 1000].join(","));
        assert_eq!(client("10.0.0.0/8", &[("x-forwarded-for", &hops)]), "203.0.113.1");
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_bytes(b"\xff\xfe").unwrap());
        assert_eq!(proxies("10.0.0.0/8").client_ip(PROXY.parse().unwrap(), &h).to_string(), "10.0.0.5");
    }

    #[test]
    fn the_list_takes_ips_and_cidrs_of_both_families() {
        let p = proxies(" 10.0.0.0/8 , 192.168.1.7,fd00::/8, ::1 ");
        for ip in ["10.20.30.40", "192.168.1.7", "fd12::1", "::1"] {
            assert!(p.trusts(ip.parse().unwrap()), "{ip}");
        }
        assert!(!p.trusts("192.168.1.8".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<TrustedProxies>().is_err());
        assert!("example.com".parse::<TrustedProxies>().is_err());
        assert!("".parse::<TrustedProxies>().unwrap().is_empty());
    }
}

/// Sockets open per forwarded client address: the per-address connection limit for
/// clients behind a trusted proxy, whose TCP connections all come from the proxy. An
/// address is counted by its [`LimitKey`], like every per-address limit.
#[derive(Debug)]
pub struct ForwardedConns {
    open: Mutex<HashMap<LimitKey, usize>>,
    ipv6_prefix: u8,
}

/// One counted socket; uncounted when the last clone is dropped (with the socket).
#[derive(Debug)]
pub struct ForwardedSlot {
    table: Arc<ForwardedConns>,
    key: LimitKey,
}

impl ForwardedConns {
    /// An empty table that counts an IPv6 client by its first `ipv6_prefix` bits.
    pub fn new(ipv6_prefix: u8) -> ForwardedConns {
        ForwardedConns { open: Mutex::default(), ipv6_prefix }
    }

    fn key(&self, ip: IpAddr) -> LimitKey {
        LimitKey::of(ip, self.ipv6_prefix)
    }

    pub fn count(&self, ip: IpAddr) -> usize {
        lock(&self.open).get(&self.key(ip)).copied().unwrap_or(0)
    }

    pub fn enter(self: &Arc<Self>, ip: IpAddr) -> ForwardedSlot {
        let key = self.key(ip);
        *lock(&self.open).entry(key).or_insert(0) += 1;
        ForwardedSlot { table: self.clone(), key }
    }
}

impl Drop for ForwardedSlot {
    fn drop(&mut self) {
        let mut open = lock(&self.table.open);
        if let Some(n) = open.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// The client address of a request on the Socket.IO path, and whether a trusted proxy
/// reported it (then the per-address connection limit is applied per socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp {
    pub ip: IpAddr,
    pub proxied: bool,
}
