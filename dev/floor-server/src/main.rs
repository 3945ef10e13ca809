//! `floor-server`: what the benchmarks' work costs on the stack alone.
//!
//! The same crates as fixrx-realtime (axum and hyper, socketioxide on the product's engine
//! settings, jsonwebtoken), doing what each benchmark scenario needs and nothing else: no
//! history, no per-socket delivery, no validation beyond routing, no metrics, no logs, no
//! limits, no CORS. Its CPU per operation, run beside ours in `dev/bench/compare.py`, is
//! the floor our own code sits on; the difference is ours.
//!
//! - The Socket.IO handshake verifies `auth.token` (HS256, `JWT_SECRET`) and joins
//!   `user:<sub>` or `vendor:<vendorId>`; a bad token is refused.
//! - `POST /api/v1/events` (bearer `API_TOKEN`) emits the body to `user:<booking.userId>`
//!   or `vendor:<service.vendorId>` as an event named by its `type`, and answers `202`.
//! - `chat:send` (acknowledged) emits `chat:message` to `vendor:<to.id>` and acks `{ok:true}`.
//! - A Socket.IO request keeps only what engineioxide reads (the WebSocket key, a polling
//!   body's type) and its URI, copied out of hyper's read buffer: engineioxide keeps the
//!   opening request's head for the session's life, and slices of that buffer would pin
//!   it (16 KiB per connection), which is no floor but a trap any server on this stack
//!   has to step around.
//!
//! `HOST`, `PORT`, `JWT_SECRET`, `API_TOKEN` as for the product; it prints the product's
//! JSON start-up line (`{"message":"fixrx-realtime listening","addr":…}`) so the bench's
//! driver starts it the same way.

use std::process::ExitCode;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::routing::post;
use axum::serve::ListenerExt;
use fixrx_realtime::Config;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, Data, SocketRef, TryData};
use tokio::net::TcpListener;

const SOCKET_IO_PATH: &str = "/socket.io";

#[derive(Deserialize)]
struct Claims {
    sub: String,
    role: String,
    #[serde(rename = "vendorId")]
    vendor_id: Option<String>,
}

#[derive(Deserialize)]
struct Auth {
    token: String,
}

struct Keys {
    key: DecodingKey,
    validation: Validation,
    api_token: String,
}

#[derive(Clone)]
struct Floor {
    io: SocketIo,
    keys: Arc<Keys>,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floor-server: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let config = Config::from_env().map_err(|e| e.to_string())?;
    let secret = std::env::var("JWT_SECRET").map_err(|_| "JWT_SECRET is required".to_owned())?;
    let api_token = std::env::var("API_TOKEN").map_err(|_| "API_TOKEN is required".to_owned())?;
    let keys = Arc::new(Keys {
        key: DecodingKey::from_secret(secret.as_bytes()),
        validation: Validation::new(Algorithm::HS256),
        api_token: format!("Bearer {api_token}"),
    });

    let (layer, io) = fixrx_realtime::engine::builder(SOCKET_IO_PATH, &config.socket).build_layer();
    let verifier = keys.clone();
    io.ns("/", move |socket: SocketRef, TryData(auth): TryData<Auth>| {
        let keys = verifier.clone();
        async move { connect(socket, auth.ok(), &keys) }
    });
    let app = Router::new()
        .route("/api/v1/events", post(post_event))
        .with_state(Floor { io, keys })
        .layer(layer)
        .layer(axum::middleware::map_request(own_head));

    let listener = TcpListener::bind((config.host, config.port)).await.map_err(|e| format!("cannot listen: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    eprintln!("{}", json!({"message": "fixrx-realtime listening", "addr": addr.to_string()}));
    // Nagle off, as the product does on every accepted connection.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| format!("server error: {e}"))
}

/// The request's head with its own copies of the URI and the headers engineioxide reads.
async fn own_head(mut req: Request) -> Request {
    if !req.uri().path().starts_with(SOCKET_IO_PATH) {
        return req;
    }
    let mut kept = HeaderMap::new();
    for name in [header::SEC_WEBSOCKET_KEY, header::CONTENT_TYPE] {
        if let Some(value) = req.headers().get(&name).and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok()) {
            kept.insert(name, value);
        }
    }
    *req.headers_mut() = kept;
    if let Ok(uri) = Uri::try_from(req.uri().to_string()) {
        *req.uri_mut() = uri;
    }
    req
}

/// Verifies the token and joins the socket's own room, or disconnects it.
fn connect(socket: SocketRef, auth: Option<Auth>, keys: &Keys) {
    let claims =
        auth.and_then(|a| jsonwebtoken::decode::<Claims>(&a.token, &keys.key, &keys.validation).ok()).map(|t| t.claims);
    let room = match claims {
        Some(c) if c.role == "vendor" => c.vendor_id.map(|v| format!("vendor:{v}")),
        Some(c) => Some(format!("user:{}", c.sub)),
        None => None,
    };
    let Some(room) = room else {
        let _ = socket.disconnect();
        return;
    };
    socket.join(room);
    socket.on("chat:send", async |socket: SocketRef, Data(msg): Data<Value>, ack: AckSender| {
        let vendor = msg.pointer("/to/id").and_then(Value::as_str).unwrap_or_default();
        let _ = socket.to(format!("vendor:{vendor}")).emit("chat:message", &msg).await;
        let _ = ack.send(&json!({"ok": true}));
    });
}

async fn post_event(State(floor): State<Floor>, headers: HeaderMap, body: axum::Json<Value>) -> StatusCode {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(floor.keys.api_token.as_str()) {
        return StatusCode::UNAUTHORIZED;
    }
    let body = body.0;
    let room = if let Some(user) = body.pointer("/booking/userId").and_then(Value::as_str) {
        format!("user:{user}")
    } else if let Some(vendor) = body.pointer("/service/vendorId").and_then(Value::as_str) {
        format!("vendor:{vendor}")
    } else {
        return StatusCode::UNPROCESSABLE_ENTITY;
    };
    let event = body.get("type").and_then(Value::as_str).unwrap_or("event").to_owned();
    match floor.io.to(room).emit(&event, &body).await {
        Ok(()) => StatusCode::ACCEPTED,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}
