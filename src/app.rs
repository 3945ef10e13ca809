//! Assembles one server: the Socket.IO layer, the REST routes, and the tower-http
//! layers around them. Generic over the adapter: memory and Redis differ only in
//! the adapter state passed in.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::handler::ConnectHandler;
use socketioxide_core::adapter::DefinedAdapter;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use crate::auth::JwtVerifier;
use crate::auth::api_token::ApiAuth;
use crate::config::{AllowedOrigins, Config};
use crate::delivery::Hub;
use crate::emit::{Emitter, Publisher};
use crate::history::History;
use crate::history::memory::MemoryHistory;
use crate::hooks::Hooks;
use crate::http::{self, AppState, Readiness};
use crate::idempotency::{IdempotencyStore, MemoryStore};
use crate::metrics::Metrics;
use crate::net::{ForwardedConns, Transports};
use crate::redis_link::RedisHealth;
use crate::shutdown::InFlight;
use crate::socket::handshake::authenticate;
use crate::socket::{SocketCtx, on_connect, prepare};

/// Why a server could not be built from a valid configuration.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    JwtKey(#[from] crate::auth::VerifierError),
    #[error("{0}")]
    Hooks(#[from] crate::hooks::HooksError),
}

/// Every HTTP request's way in: the router inside the edge layers.
pub type HttpService = tower::util::BoxCloneSyncService<Request, Response, std::convert::Infallible>;

/// A built server, not yet serving.
pub struct App<A: Adapter> {
    pub service: HttpService,
    /// With `INTERNAL_PORT`: what the internal listener serves (`/health`, `/ready`,
    /// `/metrics`, the console); `None`: all of it is in `service`.
    pub internal: Option<HttpService>,
    pub io: SocketIo<A>,
    pub state: AppState<A>,
}

/// What differs between a single instance and a Redis-backed cluster, besides the adapter.
pub struct Bus {
    pub idempotency: IdempotencyStore,
    pub history: History,
    pub redis: Option<Arc<RedisHealth>>,
    /// Commands on the shared Redis (presence across instances).
    pub redis_conn: Option<crate::redis_link::RedisConn>,
    /// Pub/sub on the shared Redis (the console asks the other instances).
    pub pubsub: Option<crate::redis_link::ManagedDriver>,
}

impl Bus {
    /// One instance, everything in memory.
    pub fn memory(config: &Config) -> Bus {
        Bus {
            idempotency: IdempotencyStore::Memory(MemoryStore::new(config.api.idempotency_ttl)),
            history: History::Memory(MemoryHistory::new(config.history.clone())),
            redis: None,
            redis_conn: None,
            pubsub: None,
        }
    }
}

/// Builds the router and the Socket.IO server on the adapter `A`. Also returns what
/// registering the namespace returned: `()` in memory, a future to await for Redis.
pub fn build<A: Adapter + DefinedAdapter>(
    config: &Config,
    adapter_state: A::State,
    bus: Bus,
) -> Result<(App<A>, A::InitRes), BuildError> {
    let metrics = metrics(&bus);
    let verifier = JwtVerifier::new(&config.jwt)?;
    if let Some(jwks) = verifier.jwks() {
        jwks.start();
    }
    let history = Arc::new(bus.history);
    let hooks = Arc::new(Hooks::start(&config.hooks, bus.redis_conn, &metrics)?);
    let publisher = Publisher::new(history.clone(), metrics.clone()).with_chat_hook(hooks.chat.clone());
    let transports = Arc::new(Transports::default());
    let forwarded = Arc::new(ForwardedConns::new(config.limits.ipv6_prefix));
    let (hub, tap) = start_delivery::<A>(config, &history, &metrics, &transports);
    let ctx = Arc::new(SocketCtx {
        verifier: verifier.clone(),
        metrics: metrics.clone(),
        publisher: publisher.clone(),
        rate_limit: config.socket.rate_limit,
        flood_disconnect_after: config.socket.flood_disconnect_after,
        presence: hooks.presence(),
        forwarded: forwarded.clone(),
        record_connected_at: tap.is_some(),
        users: crate::socket::Users::new(
            config.socket.max_per_user,
            config.socket.rate_limit,
            config.socket.flood_disconnect_after,
        ),
    });

    let (layer, io) = crate::engine::builder(&config.ws_path, &config.socket)
        .with_state(ctx)
        .with_state(hub)
        .with_state(crate::socket::expiry::Expiries::<A>::start())
        .with_adapter::<A>(adapter_state)
        .build_layer();
    // Middlewares run last-added first: authenticate, then prepare, then the CONNECT ack.
    let init = io.ns("/", on_connect::<A>.with(prepare::<A>).with(authenticate::<A>));

    let readiness = Arc::new(Readiness::new(bus.redis).with_jwks(verifier.jwks().cloned()));
    let state = AppState::new(http::Shared {
        emitter: Emitter::new(io.clone(), publisher),
        api: Arc::new(config.api.clone()),
        api_auth: Arc::new(ApiAuth::new(config.api.tokens.clone(), config.api.rate_limit)),
        idempotency: Arc::new(bus.idempotency),
        metrics,
        verifier,
        readiness,
        in_flight: Arc::new(InFlight::default()),
        hooks,
    });

    let (router, operator) = routers(config, &state, &io, tap, bus.pubsub);
    let guard = crate::net::guard::HandshakeGuard::new(config, transports, forwarded);
    let (service, internal) = services(config, &state, router.layer(layer), operator, guard);
    Ok((App { service, internal, io, state }, init))
}

/// The registry, with the shared Redis's gauges when there is one.
fn metrics(bus: &Bus) -> Arc<Metrics> {
    let mut metrics = Metrics::new();
    if let Some(redis) = &bus.redis {
        metrics.register_history_replicas(redis.history_replicas_gauge());
        metrics.register_redis_round_trips(redis.round_trips());
        let reads = redis.log_reads();
        metrics.register_history_reads((reads.entries.clone(), reads.partitions.clone()));
    }
    Arc::new(metrics)
}

/// Starts reading the log into the delivery hub (through the console's tap when the
/// console is on: it reads the log right after delivery).
fn start_delivery<A: Adapter>(
    config: &Config,
    history: &Arc<History>,
    metrics: &Arc<Metrics>,
    transports: &Arc<Transports>,
) -> (Arc<Hub<A>>, Option<Arc<crate::admin::tap::Tap>>) {
    let budget = crate::delivery::Budget {
        bytes: config.socket.buffer_bytes,
        packets: config.socket.buffer_packets,
        horizon: config.socket.ping_interval + config.socket.ping_timeout,
    };
    let hub = Arc::new(Hub::<A>::new(metrics.clone(), transports.clone(), budget, history.partitioner()));
    let tap = config.admin.as_ref().map(|_| Arc::new(crate::admin::tap::Tap::default()));
    match &tap {
        Some(tap) => history.start_reader(Arc::new(crate::admin::tap::Tapped { sink: hub.clone(), tap: tap.clone() })),
        None => history.start_reader(hub.clone()),
    }
    (hub, tap)
}

/// The public router and, with `INTERNAL_PORT`, the operator's: the operator's routes
/// (metrics, the console) then live on a second router served only there, and the public
/// router leaves them out, so they answer its 404.
fn routers<A: Adapter>(
    config: &Config,
    state: &AppState<A>,
    io: &SocketIo<A>,
    tap: Option<Arc<crate::admin::tap::Tap>>,
    pubsub: Option<crate::redis_link::ManagedDriver>,
) -> (axum::Router, Option<axum::Router>) {
    let internal = config.internal_port.is_some();
    // Every route of the OpenAPI document, and only those (plus development's token mint).
    let mut routes = http::openapi::routes_without::<A>(if internal { &["metrics"] } else { &[] });
    if config.jwt.is_dev_secret() {
        routes = routes.route("/dev/token", get(http::dev::token::<A>));
    }
    // The same 404 and 405 answers everywhere, the console included, so every refusal is
    // the app's JSON error and passes through `record_layer` below. Fallbacks are set
    // before `with_state`: a handler added to a `Router<()>` stays a handler, turned into
    // a service (through every layer, Socket.IO's included) anew on each request, and a
    // Socket.IO layer built per request is an Engine.IO server that knows no session.
    let mut router = routes
        .fallback(http::ops::not_found)
        .method_not_allowed_fallback(http::ops::method_not_allowed)
        .with_state(state.clone());
    let mut operator = internal.then(|| operator_routes(state));
    if let (Some(admin), Some(tap)) = (&config.admin, tap) {
        let console = console(config, admin, tap, io, state, pubsub);
        let admin_routes = crate::admin::api::routes::<A>()
            .method_not_allowed_fallback(http::ops::method_not_allowed)
            .with_state(console);
        match operator {
            Some(ops) => operator = Some(ops.merge(admin_routes)),
            None => router = router.merge(admin_routes),
        }
    }
    // `layer`, not `route_layer`: refusals (404, 405) are counted too, under labels from
    // fixed sets (see `metrics::method_label`, `metrics::route_label`).
    let router = router.layer(record_layer(state));
    (router, operator)
}

/// The edge layers around the public router (Socket.IO layer included) and, when there is
/// one, the operator's router.
fn services<A: Adapter>(
    config: &Config,
    state: &AppState<A>,
    router: axum::Router,
    operator: Option<axum::Router>,
    guard: crate::net::guard::HandshakeGuard,
) -> (HttpService, Option<HttpService>) {
    // Request spans only when the log filter (fixed at start-up) would keep them: the
    // layer costs about 2 % of a REST event's CPU even with its spans disabled.
    let trace_layer = || {
        tracing::enabled!(tracing::Level::DEBUG).then(|| {
            tower::ServiceBuilder::new()
                .map_response(IntoResponse::into_response)
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(|req: &Request| {
                            // The path only: a handshake query may carry a token.
                            let (method, path) = (req.method(), req.uri().path());
                            let request_id = http::request_id::of(req.headers());
                            tracing::debug_span!("http", %method, %path, request_id)
                        })
                        // Errors are logged once, where they are mapped (ApiError), not again here.
                        .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
                )
                .into_inner()
        })
    };
    // The guard and the layers around it wrap the router from outside: axum's router
    // keeps a copy of each request's URI (`OriginalUri`, whenever any crate in the build
    // turns that feature on), and it must copy the head the guard detached, not a slice
    // of hyper's read buffer that the session would then pin (see `net::head::detach`).
    let service = tower::ServiceBuilder::new()
        // Outermost: every answer carries its X-Request-Id, refusals included.
        .layer(http::request_id::layers())
        .layer(http::unread_body::CloseIfBodyUnread::layer())
        .option_layer(trace_layer())
        .map_response(cors_vary as fn(Response) -> Response)
        .layer(cors(&config.cors))
        .layer(crate::net::guard::GuardLayer::new(guard))
        .service(router);
    // No Socket.IO, no CORS (the console is same-origin) and no handshake guard here.
    let internal = operator.map(|ops| {
        let ops = ops.layer(record_layer(state));
        HttpService::new(
            tower::ServiceBuilder::new()
                .layer(http::request_id::layers())
                .layer(http::unread_body::CloseIfBodyUnread::layer())
                .option_layer(trace_layer())
                .service(ops),
        )
    });
    (HttpService::new(service), internal)
}

/// The internal port's routes: health, readiness and metrics (the console is merged in).
fn operator_routes<A: Adapter>(state: &AppState<A>) -> axum::Router {
    axum::Router::new()
        .route("/health", get(http::ops::health))
        .route("/ready", get(http::ops::ready::<A>))
        .route("/metrics", get(http::ops::metrics::<A>))
        .fallback(http::ops::not_found)
        .method_not_allowed_fallback(http::ops::method_not_allowed)
        .with_state(state.clone())
}

/// The admin console's shared state: what it reads, and how it reaches the other instances.
fn console<A: Adapter>(
    config: &Config,
    admin: &crate::config::AdminConfig,
    tap: Arc<crate::admin::tap::Tap>,
    io: &SocketIo<A>,
    state: &AppState<A>,
    pubsub: Option<crate::redis_link::ManagedDriver>,
) -> crate::admin::Console<A> {
    use crate::admin::{Console, Instance, Local, guard::Guard, peers};
    let instance = Arc::new(Instance::new());
    let local = Arc::new(Local::new(io.clone(), state.readiness.clone(), instance.clone()));
    let peers = match pubsub {
        Some(driver) => peers::Peers::Redis(peers::RedisPeers::start(driver, instance.id.clone(), local.clone())),
        None => peers::Peers::Alone,
    };
    let mode = match (&config.redis.url, config.redis.cluster_urls.is_empty()) {
        (Some(_), _) => "redis",
        (None, false) => "redis-cluster",
        (None, true) => "memory",
    };
    Console {
        app: state.clone(),
        guard: Arc::new(Guard::new(admin.token.clone())),
        tap,
        peers: Arc::new(peers),
        local,
        proxies: Arc::new(config.trusted_proxies.clone()),
        mode,
    }
}

fn cors(origins: &AllowedOrigins) -> CorsLayer {
    let base = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static("idempotency-key"),
        ])
        .max_age(std::time::Duration::from_secs(600))
        // Added by `cors_vary` instead: the layer's own joins its list into a new header
        // value, and builds a header map for it, on every request.
        .vary([]);
    match origins {
        AllowedOrigins::Any => base.allow_origin(AllowOrigin::any()),
        AllowedOrigins::List(list) => {
            let values: Vec<HeaderValue> = list.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
            // socket.io-client may send credentials (withCredentials); allowed only with explicit origins.
            base.allow_origin(AllowOrigin::list(values)).allow_credentials(true)
        }
        AllowedOrigins::ListAndLoopback(_) => {
            let origins = origins.clone();
            let allowed = move |origin: &HeaderValue, _: &_| origin.to_str().is_ok_and(|o| origins.allows(o));
            base.allow_origin(AllowOrigin::predicate(allowed)).allow_credentials(true)
        }
    }
}

/// The `Vary` every answer of the CORS layer carries (tower-http's default list), made once.
fn cors_vary(mut response: Response) -> Response {
    static VARY: HeaderValue =
        HeaderValue::from_static("origin, access-control-request-method, access-control-request-headers");
    response.headers_mut().append(header::VARY, VARY.clone());
    response
}

/// Counts and times every request the router answers, refusals (404, 405) included.
fn record_layer<A: Adapter>(state: &AppState<A>) -> http::edge::EdgeLayer<http::record::RecordLayer> {
    http::record::RecordLayer::new(state.metrics.clone(), state.in_flight.clone()).layer()
}
