//! `X-Forwarded-For` and `Forwarded` from a trusted proxy: whatever the header holds,
//! nothing panics, and the address read is the peer's or one that the header names.
#![no_main]

use std::net::SocketAddr;

use fixrx_realtime::net::TrustedProxies;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let Ok(value) = HeaderValue::from_bytes(rest) else { return };
    let name = if mode % 2 == 0 { "x-forwarded-for" } else { "forwarded" };
    let mut headers = HeaderMap::new();
    headers.insert(name, value);
    let proxies: TrustedProxies = "127.0.0.0/8, ::1, 10.0.0.0/8".parse().expect("valid list");
    let peer: SocketAddr = "127.0.0.1:40000".parse().expect("valid peer");
    let ip = proxies.client_ip(peer, &headers);
    if ip != peer.ip() {
        let text = String::from_utf8_lossy(rest).to_ascii_lowercase();
        let named = text.contains(&ip.to_string()) || matches!(ip, std::net::IpAddr::V4(v4) if text.contains(&format!("::ffff:{v4}")));
        assert!(named || text.contains(':'), "{ip} read from a header that does not name it: {text:?}");
    }
});
