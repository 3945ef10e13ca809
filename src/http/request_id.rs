//! `X-Request-Id`: taken from the request, or generated (a UUID), returned on every
//! answer, and logged with the ids of the events the request produced ([`super::events`]).
//!
//! The id is client text that goes into our logs and back out in the answer, so one that
//! is empty, longer than [`MAX_LEN`], has anything but visible ASCII (a space, a tab, a
//! non-ASCII byte), or is sent more than once is replaced by a generated one. A request
//! is never refused for its id: tracing must not become a way to fail a request.
//!
//! tower-http generates the id ([`MakeRequestUuid`]); [`Propagate`] returns it. tower-http's
//! `SetRequestIdLayer` is not used: it also copies the id into the request's extensions,
//! which a Socket.IO session keeps with its opening request for as long as it lives; a
//! sent id there is a slice of hyper's read buffer, and would pin that buffer (8 to 16
//! KiB) per socket (see `net::head::detach`). Here the id lives only in the header, which
//! the handshake guard drops with the others. Nor is its `PropagateRequestIdLayer`: it
//! adds the id to every answer's extensions too, two allocations per request no one reads.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::Response;
use tower_http::request_id::{MakeRequestId, MakeRequestUuid};

use super::edge::{Edge, EdgeLayer};

/// Longest id kept as sent (a UUID is 36 characters, a W3C `traceparent` 55).
pub const MAX_LEN: usize = 128;

static HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Keeps a fit id or sets a new one, then returns it on the answer.
pub fn layers() -> EdgeLayer<Propagate> {
    EdgeLayer(Propagate)
}

#[derive(Clone, Copy)]
pub struct Propagate;

impl Edge for Propagate {
    type Carry = Option<HeaderValue>;

    fn before(&self, req: Request) -> Result<(Request, Option<HeaderValue>), Response> {
        let req = ensure(req);
        let id = req.headers().get(&HEADER).cloned();
        Ok((req, id))
    }

    /// The request's id, unless the answer has one already.
    fn after(id: Option<HeaderValue>, response: &mut Response) {
        if let Some(id) = id
            && !response.headers().contains_key(&HEADER)
        {
            response.headers_mut().insert(&HEADER, id);
        }
    }
}

/// Leaves exactly one fit `X-Request-Id` on the request: the one sent, or a new one.
fn ensure(mut req: Request) -> Request {
    let mut sent = req.headers().get_all(&HEADER).iter();
    let keep = match (sent.next(), sent.next()) {
        (Some(id), None) => fit(id.as_bytes()),
        _ => false,
    };
    if !keep && let Some(id) = MakeRequestUuid.make_request_id(&req) {
        // `insert` replaces every value sent under the name.
        req.headers_mut().insert(&HEADER, id.into_header_value());
    }
    req
}

/// 1 to [`MAX_LEN`] visible ASCII characters (`!` to `~`).
fn fit(id: &[u8]) -> bool {
    (1..=MAX_LEN).contains(&id.len()) && id.iter().all(|b| b.is_ascii_graphic())
}

/// The request's id, behind [`layers`] (always there); `-` for a request that did not
/// pass them.
pub fn of(headers: &HeaderMap) -> &str {
    headers.get(&HEADER).and_then(|v| v.to_str().ok()).unwrap_or("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ids on the request after [`ensure`].
    fn ensured(ids: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut req = Request::new(axum::body::Body::empty());
        for id in ids {
            req.headers_mut().append(&HEADER, axum::http::HeaderValue::from_bytes(id).expect("a header value"));
        }
        ensure(req).headers().get_all(&HEADER).iter().map(|v| v.as_bytes().to_vec()).collect()
    }

    fn is_uuid(id: &[u8]) -> bool {
        std::str::from_utf8(id).is_ok_and(|id| uuid::Uuid::parse_str(id).is_ok())
    }

    #[test]
    fn a_fit_id_is_kept_and_anything_else_is_replaced_by_a_generated_one() {
        let longest = "a".repeat(MAX_LEN);
        for kept in [&b"req-1"[..], b"0f8fad5b-d9cb-469f-a165-70867728950e", b"a/b+c=d:e;f", longest.as_bytes()] {
            assert_eq!(ensured(&[kept]), [kept], "{kept:?}");
        }
        let too_long = "a".repeat(MAX_LEN + 1);
        for unfit in [&b""[..], b"has space", b"tab\there", b"caf\xc3\xa9", b"\xff\xfe", too_long.as_bytes()] {
            let ids = ensured(&[unfit]);
            assert!(ids.len() == 1 && is_uuid(&ids[0]), "{unfit:?}: {ids:?}");
        }
        for ids in [ensured(&[b"one", b"two"]), ensured(&[])] {
            assert!(ids.len() == 1 && is_uuid(&ids[0]), "{ids:?}");
        }
    }

    #[test]
    fn no_extension_is_added_for_a_session_to_keep() {
        let mut req = Request::new(axum::body::Body::empty());
        req.headers_mut().insert(&HEADER, axum::http::HeaderValue::from_static("sent"));
        assert!(ensure(req).extensions().is_empty());
        assert!(ensure(Request::new(axum::body::Body::empty())).extensions().is_empty());
    }
}
