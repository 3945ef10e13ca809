//! Test harness: start the server on port 0, sign tokens, connect clients, wait for
//! events with a timeout, and prove absences with a short negative wait.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use fixrx_realtime::Config;
use futures_util::FutureExt;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Event, Payload, TransportType};
use serde_json::{Value, json};
use socketioxide::adapter::LocalAdapter;
use tokio::sync::{mpsc, oneshot};

pub const JWT_SECRET: &str = "integration-test-secret-0123456789abcdef";
pub const API_TOKEN: &str = "integration-api-token";
/// How long we wait for something that must happen.
pub const WAIT: Duration = Duration::from_secs(5);
/// How long we wait to be sure something does not happen.
pub const QUIET: Duration = Duration::from_millis(300);

pub struct TestApp {
    pub addr: SocketAddr,
    /// The internal port's address, when the test set `INTERNAL_PORT`.
    pub internal: Option<SocketAddr>,
    pub http: reqwest::Client,
    /// The in-process emitter (single-instance servers only).
    pub emitter: Option<fixrx_realtime::Emitter<LocalAdapter>>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl TestApp {
    /// Shuts the in-process server down as SIGTERM would, and waits until `run` returned.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// Starts a server with the test secrets, plus any extra variables.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

pub async fn spawn_app_with(vars: &[(&str, &str)]) -> TestApp {
    let config = test_config(vars);
    fixrx_realtime::telemetry::init(&config.log);
    let (listener, addr, internal) = bind(&config).await;
    let bus = fixrx_realtime::app::Bus::memory(&config);
    let (app, ()) = fixrx_realtime::app::build::<LocalAdapter>(&config, (), bus).expect("app builds");
    let emitter = app.state.emitter.clone();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let shutdown = async move {
            let _ = rx.await;
        };
        if let Err(e) = fixrx_realtime::serve(listener, app, &config, shutdown).await {
            panic!("server failed: {e}");
        }
    });
    TestApp {
        addr,
        internal,
        http: reqwest::Client::new(),
        emitter: Some(emitter),
        shutdown: Some(tx),
        server: Some(server),
    }
}

/// The public listener on 127.0.0.1:0, and with `INTERNAL_PORT` the internal one too.
async fn bind(config: &Config) -> (fixrx_realtime::Listeners, SocketAddr, Option<SocketAddr>) {
    let public = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let addr = public.local_addr().expect("local addr");
    let internal = match config.internal_port {
        Some(_) => Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind port 0")),
        None => None,
    };
    let internal_addr = internal.as_ref().map(|l| l.local_addr().expect("local addr"));
    (fixrx_realtime::Listeners { public, internal }, addr, internal_addr)
}

fn test_config(vars: &[(&str, &str)]) -> Config {
    let mut map: HashMap<String, String> = HashMap::from([
        ("HOST".into(), "127.0.0.1".into()),
        ("PORT".into(), "0".into()),
        ("JWT_SECRET".into(), JWT_SECRET.into()),
        ("API_TOKEN".into(), API_TOKEN.into()),
        ("SHUTDOWN_TIMEOUT_SECS".into(), "2".into()),
        ("RUST_LOG".into(), std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into())),
    ]);
    for (k, v) in vars {
        map.insert(k.to_string(), v.to_string());
    }
    Config::from_lookup(|k| map.get(k).cloned()).expect("test config is valid")
}

/// Starts a server through `fixrx_realtime::run`, as the binary does (adapter chosen
/// from the configuration: Redis when `REDIS_URL` is given).
pub async fn spawn_node(vars: &[(&str, &str)]) -> TestApp {
    let config = test_config(vars);
    fixrx_realtime::telemetry::init(&config.log);
    let (listener, addr, internal) = bind(&config).await;
    let (tx, rx) = oneshot::channel::<()>();
    let (started_tx, started_rx) = oneshot::channel::<Result<(), String>>();
    let server = tokio::spawn(async move {
        let shutdown = async move {
            let _ = rx.await;
        };
        // `run` returns only at shutdown; report start-up errors through the channel.
        let result = fixrx_realtime::run(listener, config, shutdown).await;
        let _ = started_tx.send(result.map_err(|e| e.to_string()));
    });
    let app = TestApp {
        addr,
        internal,
        http: reqwest::Client::new(),
        emitter: None,
        shutdown: Some(tx),
        server: Some(server),
    };
    // Ready once /ready answers 200 (Redis subscriptions are in place by then).
    let mut started_rx = started_rx;
    for _ in 0..100 {
        if let Ok(result) = started_rx.try_recv() {
            panic!("server stopped at start-up: {result:?}");
        }
        if let Ok(res) = app.http.get(app.url("/ready")).send().await
            && res.status() == 200
        {
            return app;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server not ready in 5 s");
}

/// Runs `fixrx_realtime::run` with `vars`, expecting it to refuse to start: its error.
pub async fn start_error(vars: &[(&str, &str)]) -> String {
    let config = test_config(vars);
    let (listener, _, _) = bind(&config).await;
    let run = fixrx_realtime::run(listener, config, std::future::pending::<()>());
    match tokio::time::timeout(Duration::from_secs(10), run).await {
        Ok(Err(e)) => e.to_string(),
        Ok(Ok(())) => panic!("the server ran and stopped without an error"),
        Err(_) => panic!("the server started (no error within 10 s)"),
    }
}

impl TestApp {
    /// A server this test did not start in-process (e.g. the binary).
    pub fn external(addr: SocketAddr) -> TestApp {
        TestApp { addr, internal: None, http: reqwest::Client::new(), emitter: None, shutdown: None, server: None }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// POSTs JSON to the REST API with the valid API token.
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let res = self.http.post(self.url(path)).bearer_auth(API_TOKEN).json(&body).send().await.expect("request");
        read(res).await
    }

    pub async fn post_event(&self, body: Value) -> (u16, Value) {
        self.post("/api/v1/events", body).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let res = self.http.get(self.url(path)).bearer_auth(API_TOKEN).send().await.expect("request");
        read(res).await
    }
}

pub async fn read(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let text = res.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Signs a client token with the test secret; `claims` is merged over `sub` + a valid `exp`.
pub fn token(claims: Value) -> String {
    let mut all = json!({ "exp": jsonwebtoken::get_current_timestamp() + 600 });
    if let (Some(all), Some(extra)) = (all.as_object_mut(), claims.as_object()) {
        all.extend(extra.clone());
    }
    let key = jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &all, &key).expect("sign")
}

pub fn user_token(id: &str) -> String {
    token(json!({ "sub": id }))
}

pub fn vendor_token(sub: &str, vendor_id: &str) -> String {
    token(json!({ "sub": sub, "role": "vendor", "vendorId": vendor_id }))
}

/// Where the client puts its token.
pub enum TokenAt {
    Auth(String),
    /// The whole `auth` object (a token and, say, `offsets`).
    AuthObject(Value),
    Header(String),
    Query(String),
    Nowhere,
}

/// What a client saw, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    Connected,
    ConnectError(String),
    Disconnected,
    Event(String, Value),
}

pub struct TestClient {
    pub client: Client,
    pub rx: mpsc::UnboundedReceiver<Seen>,
}

/// Connects over WebSocket and waits for CONNECT; `Err` carries the connect_error message.
pub async fn connect(app: &TestApp, at: TokenAt) -> Result<TestClient, String> {
    connect_with(app, at, TransportType::Websocket).await
}

pub async fn connect_user(app: &TestApp, id: &str) -> TestClient {
    connect(app, TokenAt::Auth(user_token(id))).await.expect("user connects")
}

pub async fn connect_vendor(app: &TestApp, sub: &str, vendor_id: &str) -> TestClient {
    connect(app, TokenAt::Auth(vendor_token(sub, vendor_id))).await.expect("vendor connects")
}

pub async fn connect_with(app: &TestApp, at: TokenAt, transport: TransportType) -> Result<TestClient, String> {
    let url = match &at {
        TokenAt::Query(t) => app.url(&format!("/?token={t}")),
        _ => app.url("/"),
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut builder = ClientBuilder::new(url).transport_type(transport).reconnect(false);
    match at {
        TokenAt::Auth(t) => builder = builder.auth(json!({ "token": t })),
        TokenAt::AuthObject(auth) => builder = builder.auth(auth),
        TokenAt::Header(t) => builder = builder.opening_header("Authorization", format!("Bearer {t}")),
        TokenAt::Query(_) | TokenAt::Nowhere => {}
    }
    let (t1, t2, t3, t4) = (tx.clone(), tx.clone(), tx.clone(), tx);
    let builder = builder
        .on(Event::Connect, move |_, _| {
            let _ = t1.send(Seen::Connected);
            async {}.boxed()
        })
        .on(Event::Error, move |p, _| {
            let text = match p {
                Payload::Text(v) => v.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(" "),
                #[allow(deprecated)]
                Payload::String(s) => s,
                Payload::Binary(_) => "binary".into(),
            };
            let _ = t2.send(Seen::ConnectError(text));
            async {}.boxed()
        })
        .on(Event::Close, move |_, _| {
            let _ = t3.send(Seen::Disconnected);
            async {}.boxed()
        })
        .on_any(move |event, payload, _| {
            let value = match payload {
                Payload::Text(mut v) if !v.is_empty() => v.remove(0),
                _ => Value::Null,
            };
            let _ = t4.send(Seen::Event(event.as_str().to_owned(), value));
            async {}.boxed()
        });
    let client = builder.connect().await.map_err(|e| format!("transport: {e}"))?;
    match tokio::time::timeout(WAIT, rx.recv()).await {
        Ok(Some(Seen::Connected)) => Ok(TestClient { client, rx }),
        Ok(Some(Seen::ConnectError(m))) => {
            let _ = client.disconnect().await;
            Err(m)
        }
        other => panic!("no CONNECT nor connect_error: {other:?}"),
    }
}

impl TestClient {
    /// Waits for the next event named `name`, skipping nothing else silently: any
    /// other event arriving first fails the test.
    pub async fn expect_event(&mut self, name: &str) -> Value {
        self.expect_event_within(name, WAIT).await
    }

    pub async fn expect_event_within(&mut self, name: &str, wait: Duration) -> Value {
        match tokio::time::timeout(wait, self.rx.recv()).await {
            Ok(Some(Seen::Event(n, v))) if n == name => v,
            other => panic!("expected event {name}, got {other:?}"),
        }
    }

    /// Proves that nothing arrives for a short while.
    pub async fn expect_nothing(&mut self) {
        if let Ok(Some(seen)) = tokio::time::timeout(QUIET, self.rx.recv()).await {
            panic!("expected nothing, got {seen:?}");
        }
    }

    pub async fn expect_disconnect(&mut self) {
        loop {
            match tokio::time::timeout(WAIT, self.rx.recv()).await {
                Ok(Some(Seen::Disconnected)) | Ok(None) => return,
                Ok(Some(Seen::Event(..))) => continue,
                other => panic!("expected a disconnect, got {other:?}"),
            }
        }
    }

    /// Emits `event` with `data` and returns the acknowledgement's first argument.
    pub async fn ack(&self, event: &str, data: Value) -> Value {
        let (tx, rx) = oneshot::channel();
        let tx = std::sync::Mutex::new(Some(tx));
        self.client
            .emit_with_ack(event, data, WAIT, move |payload, _| {
                // rust_socketio hands over the ack's argument list as one array.
                let value = match payload {
                    Payload::Text(mut v) if !v.is_empty() => match v.remove(0) {
                        Value::Array(mut args) if !args.is_empty() => args.remove(0),
                        other => other,
                    },
                    _ => Value::Null,
                };
                if let Some(tx) = tx.lock().ok().and_then(|mut t| t.take()) {
                    let _ = tx.send(value);
                }
                async {}.boxed()
            })
            .await
            .expect("emit");
        tokio::time::timeout(WAIT, rx).await.expect("ack in time").expect("ack sent")
    }
}

/// A minimal valid body for each event type, routed to user `u` and vendor `v`.
pub fn event_body(event_type: &str, u: &str, v: &str) -> Value {
    let entity = event_type.split(':').next().unwrap_or_default();
    let payload = match entity {
        "service" => json!({ "id": "s1", "vendorId": v, "title": "Plumbing" }),
        "booking" => json!({ "id": "b1", "userId": u, "vendorId": v, "status": "confirmed" }),
        _ => json!({ "id": "p1", "userId": u, "vendorId": v, "amount": 1200 }),
    };
    json!({ "type": event_type, entity: payload })
}

pub const ALL_TYPES: [&str; 8] = [
    "service:created",
    "service:updated",
    "service:status_changed",
    "booking:created",
    "booking:status_changed",
    "booking:cancelled",
    "payment:completed",
    "payment:failed",
];

/// An event payload without its `offsets` (positions differ from one delivery to the
/// next), after checking it carries one position for each of `rooms`.
pub fn without_offsets(mut payload: Value, rooms: &[&str]) -> Value {
    let offsets = payload.as_object_mut().and_then(|o| o.remove("offsets")).unwrap_or(Value::Null);
    let map = offsets.as_object().unwrap_or_else(|| panic!("no offsets in {payload}"));
    let mut named: Vec<&str> = map.keys().map(String::as_str).collect();
    named.sort_unstable();
    let mut expected = rooms.to_vec();
    expected.sort_unstable();
    assert_eq!(named, expected, "offsets name the event's rooms");
    assert!(map.values().all(Value::is_string), "positions are strings: {offsets}");
    payload
}
