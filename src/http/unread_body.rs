//! Answers that leave part of the request body unread close the connection, and say so.
//!
//! A request refused before its body is read (an oversize REST body or polling payload,
//! a bad token on a large POST, a refused origin) leaves hyper with unread bytes on the
//! socket: it then closes the connection after the answer. Without a `Connection: close`
//! header the client believes the connection is reusable, puts it back in its pool, and
//! its next request fails with a broken pipe. This layer adds the header to exactly those
//! answers, so keep-alive clients retire the connection cleanly.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use http_body::{Frame, SizeHint};

/// Marks `Connection: close` on the answer when the request had a body that was not read
/// to its end. A tower layer of its own rather than `axum::middleware::from_fn`, which
/// clones and boxes the inner service and boxes its future on every request.
#[derive(Clone, Copy)]
pub struct CloseIfBodyUnread;

impl<S> tower::Layer<S> for CloseIfBodyUnread {
    type Service = CloseIfUnread<S>;

    fn layer(&self, inner: S) -> CloseIfUnread<S> {
        CloseIfUnread { inner }
    }
}

#[derive(Clone)]
pub struct CloseIfUnread<S> {
    inner: S,
}

impl<S> tower::Service<Request> for CloseIfUnread<S>
where
    S: tower::Service<Request, Response = Response>,
    S::Future: Unpin,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Answer<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Answer<S::Future> {
        if http_body::Body::is_end_stream(req.body()) {
            return Answer { future: self.inner.call(req), finished: None };
        }
        let finished = Arc::new(AtomicBool::new(false));
        let req = req.map(|inner| Body::new(Tracked { inner, finished: finished.clone() }));
        Answer { future: self.inner.call(req), finished: Some(finished) }
    }
}

/// The answer, marked when the body it was given is not read to its end.
pub struct Answer<F> {
    future: F,
    /// Whether the body was read to its end; `None` for a request without one.
    finished: Option<Arc<AtomicBool>>,
}

impl<F, E> Future for Answer<F>
where
    F: Future<Output = Result<Response, E>> + Unpin,
{
    type Output = Result<Response, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut response = match Pin::new(&mut self.future).poll(cx) {
            Poll::Ready(Ok(response)) => response,
            other => return other,
        };
        if self.finished.as_ref().is_some_and(|finished| !finished.load(Ordering::Acquire)) {
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        Poll::Ready(Ok(response))
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
