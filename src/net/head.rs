//! The opening request's head, copied out of hyper's read buffer for the session to keep.

use axum::extract::Request;
use axum::http::{HeaderValue, header};

/// The headers a session's opening request keeps: the WebSocket key engineioxide answers
/// the upgrade with, and the `Authorization` the Socket.IO handshake may authenticate
/// with. Everything else was read before the head is detached (the origin, the body's
/// length, a proxy's forwarded address; CORS and request spans sit outside the guard) and
/// nobody reads it again, while the session keeps the head, and every kept header costs
/// its map about 100 bytes for as long as the session lives.
const KEPT_HEADERS: [header::HeaderName; 2] = [header::SEC_WEBSOCKET_KEY, header::AUTHORIZATION];

/// Replaces the request's URI and the headers it keeps with copies of their own.
///
/// hyper parses them as slices of the connection's read buffer (8 to 16 KiB), and
/// engineioxide keeps the opening request's head for the whole session, so each session
/// kept that buffer alive: 16 KiB of RSS per idle connection, most of its footprint
/// (measured with heaptrack at 5,000 connections). The copies take a few hundred bytes.
pub fn detach(req: &mut Request) {
    let headers = std::mem::take(req.headers_mut());
    let uri = req.uri().to_string();
    let wanted: Vec<_> = headers.iter().filter(|(name, _)| KEPT_HEADERS.contains(name)).collect();
    // One buffer for the URI and every kept value, each a slice of it: one allocation
    // instead of one per value, and clones (engineioxide copies the head) share it.
    let mut buf = Vec::with_capacity(uri.len() + wanted.iter().map(|(_, v)| v.len()).sum::<usize>());
    buf.extend_from_slice(uri.as_bytes());
    let mut kept = Vec::with_capacity(wanted.len());
    for (name, value) in wanted {
        let start = buf.len();
        buf.extend_from_slice(value.as_bytes());
        kept.push((name, start..buf.len(), value.is_sensitive()));
    }
    let buf = bytes::Bytes::from(buf);
    // Sized once: a map grown by appends keeps room for twice what it holds.
    let owned = req.headers_mut();
    let _ = owned.try_reserve(kept.len());
    for (name, range, sensitive) in kept {
        if let Ok(mut value) = HeaderValue::from_maybe_shared(buf.slice(range)) {
            value.set_sensitive(sensitive);
            owned.append(name.clone(), value);
        }
    }
    if let Ok(uri) = axum::http::Uri::from_maybe_shared(buf.slice(..uri.len())) {
        *req.uri_mut() = uri;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_detached_head_keeps_the_uri_and_the_kept_headers_only() {
        let mut auth = HeaderValue::from_static("Bearer t");
        auth.set_sensitive(true);
        let mut req = Request::builder()
            .uri("/socket.io/?EIO=4&transport=websocket&x=%20")
            .header(header::HOST, "example.test")
            .header(header::COOKIE, "session=secret")
            .header(header::SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ==")
            .header(header::USER_AGENT, "test")
            .header(header::AUTHORIZATION, auth)
            .body(axum::body::Body::empty())
            .expect("request");
        detach(&mut req);
        assert_eq!(req.uri().to_string(), "/socket.io/?EIO=4&transport=websocket&x=%20");
        assert_eq!(req.uri().query(), Some("EIO=4&transport=websocket&x=%20"));
        let h = req.headers();
        assert_eq!(h.len(), 2, "{h:?}");
        assert_eq!(h[header::SEC_WEBSOCKET_KEY], "dGhlIHNhbXBsZSBub25jZQ==");
        assert!(h[header::AUTHORIZATION].is_sensitive());
        for gone in [header::HOST, header::COOKIE, header::USER_AGENT] {
            assert!(!h.contains_key(&gone), "{gone} kept");
        }
    }
}
