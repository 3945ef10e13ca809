//! Answers that leave part of the request body unread close the connection, and say so.
//!
//! A request refused before its body is read (an oversize REST body or polling payload,
//! a bad token on a large POST, a refused origin) leaves hyper with unread bytes on the
//! socket: it then closes the connection after the answer. Without a `Connection: close`
//! header the client believes the connection is reusable, puts it back in its pool, and
//! its next request fails with a broken pipe. This layer adds the header to exactly those
//! answers, so keep-alive clients retire the connection cleanly.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use http_body::{Frame, SizeHint};

use super::edge::{Edge, EdgeLayer};

/// Marks `Connection: close` on the answer when the request had a body that was not read
/// to its end.
#[derive(Clone, Copy)]
pub struct CloseIfBodyUnread;

impl CloseIfBodyUnread {
    pub fn layer() -> EdgeLayer<CloseIfBodyUnread> {
        EdgeLayer(CloseIfBodyUnread)
    }
}

impl Edge for CloseIfBodyUnread {
    /// Whether the body was read to its end; `None` for a request without one.
    type Carry = Option<Arc<AtomicBool>>;

    fn before(&self, req: Request) -> Result<(Request, Self::Carry), Response> {
        if http_body::Body::is_end_stream(req.body()) {
            return Ok((req, None));
        }
        let finished = Arc::new(AtomicBool::new(false));
        let req = req.map(|inner| Body::new(Tracked { inner, finished: finished.clone() }));
        Ok((req, Some(finished)))
    }

    fn after(finished: Self::Carry, response: &mut Response) {
        if finished.is_some_and(|finished| !finished.load(Ordering::Acquire)) {
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
    }
}

/// A request body that records when it has been read to its end.
struct Tracked {
    inner: Body,
    finished: Arc<AtomicBool>,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.finished.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
