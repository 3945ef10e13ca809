//! Prometheus metrics, one registry per server instance (no global recorder, so
//! several servers in one test process keep separate counts).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

/// Everything the server counts.
pub struct Metrics {
    registry: Registry,
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
    /// head in time) or `idle` (a keep-alive connection idle between requests).
    pub connection_timeouts: Family<ReasonLabels, Counter>,
    /// Sockets refused or closed to keep one user within limits (`max_sockets_per_user`).
    pub user_limits: Family<ReasonLabels, Counter>,
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
        let mut registry = Registry::with_prefix("fixrx");
        let connections = Gauge::default();
        registry.register("connections", "Socket.IO connections open on this instance", connections.clone());
        let handshakes = Family::<HandshakeLabels, Counter>::default();
        registry.register("handshakes", "Socket.IO handshakes by result and refusal reason", handshakes.clone());
        let events_emitted = Family::<EventLabels, Counter>::default();
        registry.register("events_emitted", "Events emitted to rooms, by type", events_emitted.clone());
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests by route and status", http_requests.clone());
        let http_duration = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5])
        });
        registry.register("http_request_duration_seconds", "HTTP request latency", http_duration.clone());
        let delivery_disconnects = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "delivery_disconnects",
            "Sockets disconnected because delivery could not go on (they recover on reconnect), by reason",
            delivery_disconnects.clone(),
        );
        let recovered_rooms = Family::<StatusLabels, Counter>::default();
        registry.register(
            "recovered_rooms",
            "Rooms named in auth.offsets, by recovery outcome",
            recovered_rooms.clone(),
        );
        let replayed_events = Counter::default();
        registry.register("replayed_events", "Events replayed to reconnecting sockets", replayed_events.clone());
        let webhooks = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "webhooks",
            "Presence webhooks: sent, failed attempts, retries scheduled, dropped (given up)",
            webhooks.clone(),
        );
        let webhook_duration = hook_latency();
        registry.register("webhook_duration_seconds", "Presence webhook attempt latency", webhook_duration.clone());
        let chat_hook = Family::<OutcomeLabels, Counter>::default();
        registry.register("chat_hook", "Chat hook verdicts: accepted, rejected, unavailable", chat_hook.clone());
        let chat_hook_duration = hook_latency();
        registry.register("chat_hook_duration_seconds", "Chat hook latency", chat_hook_duration.clone());
        let connection_timeouts = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "connection_timeouts",
            "Connections closed for sending nothing in time: header (no request head), idle (between requests)",
            connection_timeouts.clone(),
        );
        let user_limits = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "user_limits",
            "Sockets refused to keep one user within its limits, by limit",
            user_limits.clone(),
        );
        Metrics {
            registry,
            connections,
            handshakes,
            events_emitted,
            http_requests,
            http_duration,
            delivery_disconnects,
            recovered_rooms,
            replayed_events,
            webhooks,
            webhook_duration,
            chat_hook,
            chat_hook_duration,
            connection_timeouts,
            user_limits,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
