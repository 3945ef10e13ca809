//! `X-Forwarded-For` and `Forwarded` from a trusted proxy: whatever the header holds,
//! nothing panics, and the address read is the peer's or one that the header names.
//!
//! First byte: bit 0 picks the header (even `X-Forwarded-For`, odd `Forwarded`); with bit
//! 1 set the rest is two values split at the first newline, `Forwarded` then
//! `X-Forwarded-For`, both sent: the address must be what `Forwarded` alone gives (a proxy
//! that writes `Forwarded` passes a client's `X-Forwarded-For` through untouched).
#![no_main]

use std::net::{IpAddr, SocketAddr};

use fixrx_realtime::net::TrustedProxies;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

fn read(headers: &HeaderMap) -> (IpAddr, IpAddr) {
    let proxies: TrustedProxies = "127.0.0.0/8, ::1, 10.0.0.0/8".parse().expect("valid list");
    let peer: SocketAddr = "127.0.0.1:40000".parse().expect("valid peer");
    (proxies.client_ip(peer, headers), peer.ip())
}

/// The address read from one header is the peer's or one the header names.
fn one_header(name: &'static str, raw: &[u8]) {
    let Ok(value) = HeaderValue::from_bytes(raw) else { return };
    let mut headers = HeaderMap::new();
    headers.insert(name, value);
    let (ip, peer) = read(&headers);
    if ip != peer {
        let text = String::from_utf8_lossy(raw).to_ascii_lowercase();
        let named = text.contains(&ip.to_string())
            || matches!(ip, std::net::IpAddr::V4(v4) if text.contains(&format!("::ffff:{v4}")));
        assert!(named || text.contains(':'), "{ip} read from a header that does not name it: {text:?}");
    }
}

/// With both headers, `X-Forwarded-For` changes nothing.
fn both_headers(raw: &[u8]) {
    let split = raw.iter().position(|&b| b == b'\n').unwrap_or(raw.len());
    let (forwarded, xff) = (&raw[..split], raw.get(split + 1..).unwrap_or_default());
    let (Ok(forwarded), Ok(xff)) = (HeaderValue::from_bytes(forwarded), HeaderValue::from_bytes(xff)) else { return };
    let mut alone = HeaderMap::new();
    alone.insert("forwarded", forwarded);
    let mut both = alone.clone();
    both.insert("x-forwarded-for", xff.clone());
    assert_eq!(read(&both).0, read(&alone).0, "X-Forwarded-For {xff:?} changed the address Forwarded gives");
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode & 2 != 0 {
        both_headers(rest);
    }
    one_header(if mode % 2 == 0 { "x-forwarded-for" } else { "forwarded" }, rest);
});
