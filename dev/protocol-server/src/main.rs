//! `protocol-server`: the server the official protocol conformance suites run against
//! ([socket.io-protocol](https://github.com/socketio/socket.io-protocol) and
//! [engine.io-protocol](https://github.com/socketio/engine.io-protocol) `test-suite/`).
//!
//! It is for protocol tests only: no JWT, no authentication, no REST API. It runs the
//! product's Socket.IO engine settings and limits ([`fixrx_realtime::engine::builder`])
//! with the timings the suites expect, and serves the handlers the suites call:
//! - Socket.IO at `/socket.io/`, namespaces `/` and `/custom`: on connect it emits `auth`
//!   with the CONNECT payload; `message` is answered with `message-back` and the same
//!   arguments; `message-with-ack` is acknowledged with the same arguments. Any number of
//!   arguments, binary attachments included at any depth.
//! - Engine.IO at `/engine.io/`: every message, text or binary, is echoed back.
//!
//! Settings: pingInterval 300 ms, pingTimeout 200 ms, maxPayload 1000000 bytes, connect
//! timeout 1000 ms; every other engine setting is the product's default. It listens on
//! `HOST` (default 127.0.0.1) and `PORT` (default 3000; 0 picks a free port) and prints
//! `protocol-server listening on <addr>` on stderr once bound. `RUST_LOG` sets the log
//! filter (default `warn`); logs go to stderr.

mod args;

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;

use axum::Router;
use bytes::Bytes;
use engineioxide::handler::EngineIoHandler;
use engineioxide::service::EngineIoService;
use engineioxide::{DisconnectReason, Socket, Str};
use fixrx_realtime::config::{Config, SocketConfig};
use socketioxide::extract::{AckSender, Data, SocketRef};
use socketioxide::handler::ConnectHandler;
use tokio::net::TcpListener;

use crate::args::Args;

/// The Socket.IO path, as in the suites' reference server.
const SOCKET_IO_PATH: &str = "/socket.io";
/// The Engine.IO echo path, as in the suites' reference server.
const ENGINE_IO_PATH: &str = "/engine.io";

/// The engine settings the suites expect; everything else keeps the product's defaults.
const SUITE_SETTINGS: [(&str, &str); 4] = [
    ("PING_INTERVAL_MS", "300"),
    ("PING_TIMEOUT_MS", "200"),
    ("MAX_PAYLOAD_BYTES", "1000000"),
    ("CONNECT_TIMEOUT_MS", "1000"),
];

#[tokio::main]
async fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();

    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("protocol-server: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let addr = listen_addr()?;
    let socket = socket_config()?;

    let (sio_layer, io) = fixrx_realtime::engine::builder(SOCKET_IO_PATH, &socket).build_layer();
    io.ns("/", on_connect.with(serve_events));
    io.ns("/custom", on_connect.with(serve_events));
    // One engine for the whole server, shared by the clones axum makes of the service. Not
    // `EngineIoLayer` with `Router::layer`: that layer builds a new engine on every
    // `Layer::layer` call, axum applies a layer to each route and fallback separately, and a
    // session opened through one of them is then unknown to the others (observed: the
    // handshake succeeds, the next poll with its sid gets 400 "Session ID unknown").
    let echo =
        EngineIoService::with_config(Arc::new(Echo), fixrx_realtime::engine::engine_io_config(ENGINE_IO_PATH, &socket));

    let app = Router::new().fallback_service(echo).layer(sio_layer);

    let listener = TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| format!("cannot read the bound address: {e}"))?;
    eprintln!("protocol-server listening on {bound}");

    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| format!("server error: {e}"))
}

/// `HOST` (default 127.0.0.1) and `PORT` (default 3000).
fn listen_addr() -> Result<SocketAddr, String> {
    let var = |name: &str| std::env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let host = match var("HOST") {
        None => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Some(v) => v.parse().map_err(|_| format!("HOST: not an IP address: `{v}`"))?,
    };
    let port = match var("PORT") {
        None => 3000,
        Some(v) => v.parse().map_err(|_| format!("PORT: not a port number (0-65535): `{v}`"))?,
    };
    Ok(SocketAddr::new(host, port))
}

/// The product's socket settings with the suites' timings. Built from a fixed table, not
/// from the process environment, so the product's variables cannot change what is tested.
fn socket_config() -> Result<SocketConfig, String> {
    let lookup = |name: &str| SUITE_SETTINGS.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned());
    Config::from_lookup(lookup).map(|c| c.socket).map_err(|e| format!("settings: {e}"))
}

/// Connect middleware: registers `message` and `message-with-ack` before the CONNECT is
/// acknowledged. Not in the connect handler: socketioxide spawns that handler as a task
/// after sending `40{"sid":...}`, so an event the client sends as soon as it reads the
/// acknowledgement could find no handler yet and be dropped (reproduced under CPU load).
async fn serve_events(socket: SocketRef) -> Result<(), Infallible> {
    socket.on("message", async |socket: SocketRef, Data(args): Data<Args>| {
        if let Err(e) = socket.emit("message-back", &args) {
            tracing::warn!("emit message-back: {e}");
        }
    });
    socket.on("message-with-ack", async |Data(args): Data<Args>, ack: AckSender| {
        if let Err(e) = ack.send(&args) {
            tracing::warn!("ack message-with-ack: {e}");
        }
    });
    Ok(())
}

/// Connect handler: emits `auth` with the CONNECT payload (`{}` when the client sent none),
/// after the CONNECT acknowledgement as the suites expect.
async fn on_connect(socket: SocketRef, Data(auth): Data<serde_json::Value>) {
    if let Err(e) = socket.emit("auth", &auth) {
        tracing::warn!("emit auth: {e}");
    }
}

/// The Engine.IO echo handler: every message goes back to its sender, text as text and
/// binary as binary.
#[derive(Debug, Clone, Copy)]
struct Echo;

impl EngineIoHandler for Echo {
    type Data = ();

    fn on_connect(self: Arc<Self>, _socket: Arc<Socket<()>>) {}

    fn on_disconnect(&self, _socket: Arc<Socket<()>>, _reason: DisconnectReason) {}

    fn on_message(self: &Arc<Self>, msg: Str, socket: Arc<Socket<()>>) {
        if let Err(e) = socket.emit(msg) {
            tracing::warn!("echo: {e}");
        }
    }

    fn on_binary(self: &Arc<Self>, data: Bytes, socket: Arc<Socket<()>>) {
        if let Err(e) = socket.emit_binary(data) {
            tracing::warn!("echo binary: {e}");
        }
    }
}
