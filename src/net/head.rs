//! The opening request's head, copied out of hyper's read buffer for the session to keep.

use axum::extract::Request;
use axum::http::{HeaderValue, header};

/// The headers a session's opening request keeps: what engineioxide reads to open the
/// session (`Sec-WebSocket-Key`, the upgrade, a polling body's type) and what the
/// handshake authenticates with. Cookies, user agents, `Accept-*` and the like are not
/// read by anyone once the guard has run, and a browser's can weigh kilobytes.
const KEPT_HEADERS: [header::HeaderName; 11] = [
    header::HOST,
    header::UPGRADE,
    header::CONNECTION,
    header::SEC_WEBSOCKET_KEY,
    header::SEC_WEBSOCKET_VERSION,
    header::SEC_WEBSOCKET_PROTOCOL,
    header::AUTHORIZATION,
    header::ORIGIN,
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
];

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
        assert_eq!(h.len(), 3, "{h:?}");
        assert_eq!(h[header::HOST], "example.test");
        assert_eq!(h[header::SEC_WEBSOCKET_KEY], "dGhlIHNhbXBsZSBub25jZQ==");
        assert!(h[header::AUTHORIZATION].is_sensitive());
        assert!(!h.contains_key(header::COOKIE) && !h.contains_key(header::USER_AGENT));
    }
}
