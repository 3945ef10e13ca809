//! Counts and times every request the router answers (routed or refused), and tracks it
//! as in flight for shutdown. Labels come from fixed sets: a stranger adds no series.
//!
//! A tower layer of its own rather than `axum::middleware::from_fn`: that one clones the
//! route and boxes it and its future on every request, three allocations this does not need.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::response::Response;

use super::edge::{Edge, EdgeLayer};
use crate::metrics::{self, HttpLabels, Metrics, RouteLabels};
use crate::shutdown::{Held, InFlight};

/// Counts and times each route's requests (and the fallbacks'): an [`Edge`].
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

impl RecordLayer {
    pub fn layer(self) -> EdgeLayer<RecordLayer> {
        EdgeLayer(self)
    }
}

impl Edge for RecordLayer {
    type Carry = Recorded;

    fn before(&self, req: Request) -> Result<(Request, Recorded), Response> {
        let held = self.in_flight.hold();
        let start = Instant::now();
        let method = metrics::method_label(req.method());
        let route = metrics::route_label(req.extensions().get::<MatchedPath>().map(MatchedPath::as_str));
        let labels = RouteLabels { method, route };
        Ok((req, Recorded { start, labels, metrics: self.metrics.clone(), _held: held }))
    }

    fn after(recorded: Recorded, response: &mut Response) {
        let RouteLabels { method, route } = recorded.labels;
        recorded.metrics.http_duration.get_or_create(&recorded.labels).observe(recorded.start.elapsed().as_secs_f64());
        let status = response.status().as_u16();
        recorded.metrics.http_requests.get_or_create(&HttpLabels { method, route, status }).inc();
    }
}

/// A request on its way to its route, counted when its answer comes.
pub struct Recorded {
    start: Instant,
    labels: RouteLabels,
    metrics: Arc<Metrics>,
    /// Released with the answer's future: answered, or dropped unanswered.
    _held: Held,
}
