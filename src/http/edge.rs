//! The one shape of our own tower layers at the edge: look at (or change) a request
//! before the route, and at its answer after. Not `axum::middleware::from_fn`, which
//! clones and boxes the inner service and boxes its future on every request: here the
//! layer is a plain struct, and what a request carries to its answer rides in the future.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::Response;

/// What a layer does around the route.
pub trait Edge: Clone {
    /// What [`Edge::before`] hands to [`Edge::after`]; dropped with the answer's future
    /// (answered, or dropped unanswered).
    type Carry: Unpin;

    /// The request to pass on and what to carry, or an answer of its own (the route is
    /// not called). Either is moved once per request, as the route would move it.
    #[allow(clippy::result_large_err)]
    fn before(&self, req: Request) -> Result<(Request, Self::Carry), Response>;

    /// Amends the route's answer.
    fn after(carry: Self::Carry, response: &mut Response);
}

/// Puts an [`Edge`] around every service it wraps.
#[derive(Clone)]
pub struct EdgeLayer<E>(pub E);

impl<S, E: Edge> tower::Layer<S> for EdgeLayer<E> {
    type Service = AtEdge<S, E>;

    fn layer(&self, inner: S) -> AtEdge<S, E> {
        AtEdge { inner, edge: self.0.clone() }
    }
}

#[derive(Clone)]
pub struct AtEdge<S, E> {
    inner: S,
    edge: E,
}

impl<S, E> tower::Service<Request> for AtEdge<S, E>
where
    S: tower::Service<Request, Response = Response>,
    S::Future: Unpin,
    E: Edge,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Answer<S::Future, E>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Answer<S::Future, E> {
        match self.edge.before(req) {
            Ok((req, carry)) => Answer::Passed(self.inner.call(req), Some(carry)),
            Err(answer) => Answer::Answered(Some(answer)),
        }
    }
}

/// The route's answer with what its request carried, or the layer's own answer.
pub enum Answer<F, E: Edge> {
    Passed(F, Option<E::Carry>),
    Answered(Option<Response>),
}

impl<F, E, Err> Future for Answer<F, E>
where
    F: Future<Output = Result<Response, Err>> + Unpin,
    E: Edge,
{
    type Output = Result<Response, Err>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Answer::Passed(future, carry) => {
                let mut response = match Pin::new(future).poll(cx) {
                    Poll::Ready(Ok(response)) => response,
                    other => return other,
                };
                if let Some(carry) = carry.take() {
                    E::after(carry, &mut response);
                }
                Poll::Ready(Ok(response))
            }
            // Taken on the one poll a ready future gets (never polled again after).
            Answer::Answered(answer) => Poll::Ready(Ok(answer.take().unwrap_or_default())),
        }
    }
}
