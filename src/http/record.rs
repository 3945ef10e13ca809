//! Counts and times every request the router answers (routed or refused), and tracks it
//! as in flight for shutdown. Labels come from fixed sets: a stranger adds no series.
//!
//! A tower layer of its own rather than `axum::middleware::from_fn`: that one clones the
//! route and boxes it and its future on every request, three allocations this does not need.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::response::Response;

use crate::metrics::{self, HttpLabels, Metrics, RouteLabels};
use crate::shutdown::{Held, InFlight};

/// Wraps each route (and the fallbacks) with [`Record`].
#[derive(Clone)]
pub struct RecordLayer {
    metrics: Arc<Metrics>,
    in_flight: Arc<InFlight>,
}

impl RecordLayer {
    pub fn new(metrics: Arc<Metrics>, in_flight: Arc<InFlight>) -> RecordLayer {
        RecordLayer { metrics, in_flight }
    }
}

impl<S> tower::Layer<S> for RecordLayer {
    type Service = Record<S>;

    fn layer(&self, inner: S) -> Record<S> {
        Record { inner, layer: self.clone() }
    }
}

#[derive(Clone)]
pub struct Record<S> {
    inner: S,
    layer: RecordLayer,
}

impl<S> tower::Service<Request> for Record<S>
where
    S: tower::Service<Request, Response = Response>,
    S::Future: Unpin,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Recorded<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Recorded<S::Future> {
        let held = self.layer.in_flight.hold();
        let start = Instant::now();
        let method = metrics::method_label(req.method());
        let route = metrics::route_label(req.extensions().get::<MatchedPath>().map(MatchedPath::as_str));
        let future = self.inner.call(req);
        Recorded {
            future,
            start,
            labels: RouteLabels { method, route },
            metrics: self.layer.metrics.clone(),
            _held: held,
        }
    }
}

/// The route's answer, counted when it comes.
pub struct Recorded<F> {
    future: F,
    start: Instant,
    labels: RouteLabels,
    metrics: Arc<Metrics>,
    /// Released with the future: answered, or dropped unanswered.
    _held: Held,
}

impl<F, E> Future for Recorded<F>
where
    F: Future<Output = Result<Response, E>> + Unpin,
{
    type Output = Result<Response, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = match Pin::new(&mut self.future).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok(response)) => response,
        };
        let RouteLabels { method, route } = self.labels;
        self.metrics.http_duration.get_or_create(&self.labels).observe(self.start.elapsed().as_secs_f64());
        let status = response.status().as_u16();
        self.metrics.http_requests.get_or_create(&HttpLabels { method, route, status }).inc();
        Poll::Ready(Ok(response))
    }
}
