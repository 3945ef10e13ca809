//! Prometheus metrics, one registry per server instance (no global recorder, so
//! several servers in one test process keep separate counts).
//!
//! Two registries are rendered as one exposition: ours, every name under `fixrx_`, and
//! the process's ([`process`]), under the standard unprefixed `process_*` names.

pub mod process;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandshakeLabels {
    pub result: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

/// What a round trip to Redis did (a fixed set: see [`redis_round_trips`]).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub op: &'static str,
}

/// The histograms behind `fixrx_redis_round_trip_seconds`, by operation: from 100 µs
/// (a local Redis) to the 2 s after which a command counts as failed.
pub fn redis_round_trips() -> Family<OpLabels, Histogram> {
    Family::new_with_constructor(|| {
        Histogram::new([0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5])
    })
}

/// One HTTP request's series. Every label comes from a fixed set, so no request, however
/// spelled, can add a series: see [`method_label`] and [`route_label`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: &'static str,
    pub route: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: &'static str,
    pub route: &'static str,
}

/// The `route` of a request no route matched (any path, any spelling).
pub const UNROUTED: &str = "unrouted";
/// The `method` of a request whose method is not one of the standard nine.
pub const OTHER_METHOD: &str = "other";
/// More route templates than any build of this server declares: past it, a template is
/// counted as [`UNROUTED`] rather than grow the set (a guard against a future route that
/// puts client text in its template, which axum does not do today).
const MAX_ROUTES: usize = 256;

/// The `method` label: a standard method's name, or [`OTHER_METHOD`]. HTTP lets a client
/// invent methods (`Method::from_bytes`), and each invented one would be a new series.
pub fn method_label(method: &http::Method) -> &'static str {
    use http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => OTHER_METHOD,
    }
}

/// The `route` label: the template axum matched (`/admin/api/lookup/{kind}/{id}`, never the
/// client's path), interned once per template, or [`UNROUTED`]. Templates come only from
/// the router built at start-up, so the set is that router's routes.
pub fn route_label(matched: Option<&str>) -> &'static str {
    use std::collections::HashSet;
    use std::sync::{OnceLock, RwLock};
    static ROUTES: OnceLock<RwLock<HashSet<&'static str>>> = OnceLock::new();
    let Some(template) = matched else { return UNROUTED };
    let routes = ROUTES.get_or_init(Default::default);
    // A poisoned lock only means a panic elsewhere mid-insert; the set itself is intact.
    if let Some(known) = routes.read().unwrap_or_else(|e| e.into_inner()).get(template) {
        return known;
    }
    let mut routes = routes.write().unwrap_or_else(|e| e.into_inner());
    if let Some(known) = routes.get(template) {
        return known;
    }
    if routes.len() >= MAX_ROUTES {
        return UNROUTED;
    }
    // Leaked once per template for the life of the process: a few dozen short strings.
    let interned: &'static str = Box::leak(template.to_owned().into_boxed_str());
    routes.insert(interned);
    interned
}

/// Everything the server counts.
pub struct Metrics {
    registry: Registry,
    /// Unprefixed: the `process_*` collector only.
    process: Registry,
    pub connections: Gauge,
    pub handshakes: Family<HandshakeLabels, Counter>,
    pub events_emitted: Family<EventLabels, Counter>,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: Family<RouteLabels, Histogram>,
    /// Sockets disconnected because delivery to them could not go on (queue full, ...).
    pub delivery_disconnects: Family<ReasonLabels, Counter>,
    /// Rooms recovered (or not) after reconnects, by outcome.
    pub recovered_rooms: Family<StatusLabels, Counter>,
    pub replayed_events: Counter,
    /// Presence webhooks: `sent`, `failed` (attempts), `retried`, `dropped` (given up).
    pub webhooks: Family<OutcomeLabels, Counter>,
    pub webhook_duration: Histogram,
    /// Chat hook verdicts: `accepted`, `rejected`, `unavailable`.
    pub chat_hook: Family<OutcomeLabels, Counter>,
    pub chat_hook_duration: Histogram,
    /// Connections closed for sending nothing: `reason` is `header` (no complete request
    /// head in time), `body` (a body not all arrived in as long again after its head) or
    /// `idle` (a keep-alive connection idle between requests).
    pub connection_timeouts: Family<ReasonLabels, Counter>,
    /// Sockets refused or closed to keep one user within limits (`max_sockets_per_user`).
    pub user_limits: Family<ReasonLabels, Counter>,
    /// Presence transitions in the webhook outbox, not yet delivered nor given up (with
    /// Redis: the outbox all instances share), as last seen by this instance's sender.
    pub webhook_outbox: Gauge,
}

fn hook_latency() -> Histogram {
    Histogram::new([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut process = Registry::default();
        process.register_collector(Box::new(process::ProcessCollector::new()));
        let metrics = Metrics {
            registry: Registry::default(),
            process,
            connections: Gauge::default(),
            handshakes: Family::<HandshakeLabels, Counter>::default(),
            events_emitted: Family::<EventLabels, Counter>::default(),
            http_requests: Family::<HttpLabels, Counter>::default(),
            http_duration: Family::<RouteLabels, Histogram>::new_with_constructor(|| {
                Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5])
            }),
            delivery_disconnects: Family::<ReasonLabels, Counter>::default(),
            recovered_rooms: Family::<StatusLabels, Counter>::default(),
            replayed_events: Counter::default(),
            webhooks: Family::<OutcomeLabels, Counter>::default(),
            webhook_duration: hook_latency(),
            chat_hook: Family::<OutcomeLabels, Counter>::default(),
            chat_hook_duration: hook_latency(),
            connection_timeouts: Family::<ReasonLabels, Counter>::default(),
            user_limits: Family::<ReasonLabels, Counter>::default(),
            webhook_outbox: Gauge::default(),
        };
        let mut registry = Registry::with_prefix("fixrx");
        metrics.register(&mut registry);
        Metrics { registry, ..metrics }
    }

    /// Registers every metric under its name and help text, in the order `/metrics`
    /// lists them.
    fn register(&self, registry: &mut Registry) {
        registry.register("connections", "Socket.IO connections open on this instance", self.connections.clone());
        registry.register("handshakes", "Socket.IO handshakes by result and refusal reason", self.handshakes.clone());
        registry.register("events_emitted", "Events emitted to rooms, by type", self.events_emitted.clone());
        registry.register("http_requests", "HTTP requests by route and status", self.http_requests.clone());
        registry.register("http_request_duration_seconds", "HTTP request latency", self.http_duration.clone());
        registry.register(
            "delivery_disconnects",
            "Sockets disconnected because delivery could not go on (they recover on reconnect), by reason",
            self.delivery_disconnects.clone(),
        );
        registry.register(
            "recovered_rooms",
            "Rooms named in auth.offsets, by recovery outcome",
            self.recovered_rooms.clone(),
        );
        registry.register("replayed_events", "Events replayed to reconnecting sockets", self.replayed_events.clone());
        registry.register(
            "webhooks",
            "Presence webhooks: sent, failed attempts, retries scheduled, dropped (given up)",
            self.webhooks.clone(),
        );
        registry.register(
            "webhook_duration_seconds",
            "Presence webhook attempt latency",
            self.webhook_duration.clone(),
        );
        registry.register("chat_hook", "Chat hook verdicts: accepted, rejected, unavailable", self.chat_hook.clone());
        registry.register("chat_hook_duration_seconds", "Chat hook latency", self.chat_hook_duration.clone());
        registry.register("connection_timeouts", "Connections closed for sending nothing in time: header (no request head), body (no whole body), idle (between requests)", self.connection_timeouts.clone());
        registry.register(
            "user_limits",
            "Sockets refused to keep one user within its limits, by limit",
            self.user_limits.clone(),
        );
        registry.register("webhook_outbox", "Presence webhooks waiting in the outbox (shared by every instance with Redis), not yet delivered nor given up", self.webhook_outbox.clone());
        registry.register(
            "build",
            "This server's version (always 1)",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
    }

    /// `fixrx_redis_history_replicas`: the replicas the Redis Cluster shard holding the
    /// history has connected, as last seen by an append (`-1`: one Redis, or not yet known).
    pub fn register_history_replicas(&mut self, gauge: Gauge) {
        self.registry.register(
            "redis_history_replicas",
            "Connected replicas of the Redis Cluster shard holding the history, as last seen by an append (-1: not a cluster, or not yet known)",
            gauge,
        );
    }

    /// `fixrx_history_log_entries_read_total` and `fixrx_history_partitions_read`.
    pub fn register_history_reads(&mut self, (entries, partitions): (Counter, Gauge)) {
        self.registry.register(
            "history_log_entries_read",
            "Entries this instance read from the Redis history's logs (every partition it reads)",
            entries,
        );
        self.registry.register(
            "history_partitions_read",
            "Partitions of the Redis history whose log this instance reads: those its sockets' rooms live in",
            partitions,
        );
    }

    /// `fixrx_redis_round_trip_seconds{op}`: the history's round trips to Redis (see
    /// [`redis_round_trips`]); registered only with Redis.
    pub fn register_redis_round_trips(&mut self, family: Family<OpLabels, Histogram>) {
        self.registry.register(
            "redis_round_trip_seconds",
            "Time from sending a history command to Redis to its answer (or failure), by operation",
            family,
        );
    }

    /// The Prometheus text exposition of every metric. Reads `/proc` (the process
    /// metrics): call it off the async workers.
    pub fn render(&self) -> String {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode_registry(&mut out, &self.registry);
        let _ = encode_registry(&mut out, &self.process);
        let _ = encode_eof(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invented_method_is_counted_as_other() {
        assert_eq!(method_label(&http::Method::GET), "GET");
        assert_eq!(method_label(&http::Method::PATCH), "PATCH");
        for invented in ["get", "XGET", "BREW", "M-SEARCH", "PROPFIND"] {
            let method = http::Method::from_bytes(invented.as_bytes()).expect("a token");
            assert_eq!(method_label(&method), OTHER_METHOD, "{invented}");
        }
    }

    #[test]
    fn a_route_template_is_interned_once_and_no_route_is_one_label() {
        let first = route_label(Some("/metrics-test/{id}"));
        let again = route_label(Some(&String::from("/metrics-test/{id}")));
        assert_eq!(first, "/metrics-test/{id}");
        assert!(std::ptr::eq(first, again), "the same template must not be leaked twice");
        assert_eq!(route_label(None), UNROUTED);
    }

    #[test]
    fn invented_methods_add_no_series() {
        let metrics = Metrics::new();
        let count = |m: &Metrics| m.render().lines().filter(|l| l.starts_with("fixrx_http_requests_total{")).count();
        for i in 0..100 {
            let method = http::Method::from_bytes(format!("X{i}").as_bytes()).expect("a token");
            let labels = HttpLabels { method: method_label(&method), route: route_label(None), status: 404 };
            metrics.http_requests.get_or_create(&labels).inc();
        }
        assert_eq!(count(&metrics), 1);
    }
}
