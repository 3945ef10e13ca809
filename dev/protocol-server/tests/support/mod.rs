//! Raw protocol clients for the conformance tests: the built `protocol-server` binary in a
//! child process, HTTP long-polling over reqwest and WebSocket over tokio-tungstenite. No
//! Socket.IO client library: every test writes and reads the packets itself.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any single read waits before the test fails instead of hanging.
pub const STEP: Duration = Duration::from_secs(5);

/// The settings the server must run with (the suites' constants).
pub const PING_INTERVAL: Duration = Duration::from_millis(300);
pub const PING_TIMEOUT: Duration = Duration::from_millis(200);

/// The Engine.IO packet separator in long-polling payloads.
pub const SEP: char = '\u{1e}';

/// A `protocol-server` child process on a free port; killed when dropped.
pub struct Server {
    child: Child,
    pub addr: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub fn start() -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_protocol-server"))
            .env("PORT", "0")
            .env("HOST", "127.0.0.1")
            .env("RUST_LOG", std::env::var("PROTOCOL_SERVER_LOG").unwrap_or_else(|_| "warn".to_owned()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn protocol-server");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let lines = log.clone();
        // Reads stderr until the child exits, so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("protocol-server listening on ") {
                    let _ = tx.send(addr.trim().to_owned());
                }
                lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("protocol-server did not print its address; stderr: {:?}", log.lock().map(|l| l.clone()));
            }
        };
        Server { child, addr, log }
    }

    pub fn http(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.addr)
    }

    pub fn ws(&self, path_and_query: &str) -> String {
        format!("ws://{}{path_and_query}", self.addr)
    }

    /// What the server printed on stderr so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A reqwest client without connection reuse surprises: one pool, short timeouts.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder().timeout(STEP).build().expect("reqwest client")
}

/// A plain HTTP answer: status and body text.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: String,
}

pub async fn get(client: &reqwest::Client, url: &str) -> Answer {
    answer(client.get(url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"))).await
}

pub async fn post(client: &reqwest::Client, url: &str, body: &str) -> Answer {
    let res = client.post(url).body(body.to_owned()).send().await.unwrap_or_else(|e| panic!("POST {url}: {e}"));
    answer(res).await
}

pub async fn request(client: &reqwest::Client, method: reqwest::Method, url: &str) -> Answer {
    answer(client.request(method, url).send().await.unwrap_or_else(|e| panic!("{url}: {e}"))).await
}

async fn answer(res: reqwest::Response) -> Answer {
    let status = res.status().as_u16();
    let content_type =
        res.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = res.text().await.expect("response body");
    Answer { status, content_type, body }
}

/// Parses an Engine.IO open packet `0{...}` and returns its JSON.
pub fn open_packet(text: &str) -> serde_json::Value {
    let json = text.strip_prefix('0').unwrap_or_else(|| panic!("not an open packet: {text:?}"));
    serde_json::from_str(json).unwrap_or_else(|e| panic!("open packet JSON {json:?}: {e}"))
}

/// The packets of a long-polling payload.
pub fn packets(payload: &str) -> Vec<String> {
    if payload.is_empty() { Vec::new() } else { payload.split(SEP).map(str::to_owned).collect() }
}

/// An Engine.IO long-polling session on `path` (`/engine.io/` or `/socket.io/`).
pub struct Polling {
    pub client: reqwest::Client,
    pub url: String,
    pub sid: String,
    pub open: serde_json::Value,
}

impl Polling {
    pub async fn open(server: &Server, path: &str) -> Polling {
        let client = http_client();
        let handshake = get(&client, &server.http(&format!("{path}?EIO=4&transport=polling"))).await;
        assert_eq!(handshake.status, 200, "handshake: {handshake:?}");
        let open = open_packet(&handshake.body);
        let sid = open["sid"].as_str().expect("sid").to_owned();
        let url = server.http(&format!("{path}?EIO=4&transport=polling&sid={sid}"));
        Polling { client, url, sid, open }
    }

    pub async fn get(&self) -> Answer {
        get(&self.client, &self.url).await
    }

    pub async fn post(&self, body: &str) -> Answer {
        post(&self.client, &self.url, body).await
    }

    /// Polls until `count` packets other than pings arrived, answering each ping with a pong.
    pub async fn recv(&self, count: usize) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + STEP;
        let mut out = Vec::new();
        while out.len() < count {
            assert!(tokio::time::Instant::now() < deadline, "only {out:?} arrived in time, expected {count} packets");
            let a = self.get().await;
            assert_eq!(a.status, 200, "poll: {a:?}");
            for p in packets(&a.body) {
                if p == "2" {
                    assert_eq!(self.post("3").await.body, "ok");
                } else {
                    out.push(p);
                }
            }
        }
        out
    }
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub async fn ws_connect(url: &str) -> Result<Ws, tungstenite::Error> {
    tokio::time::timeout(STEP, tokio_tungstenite::connect_async(url))
        .await
        .unwrap_or_else(|_| panic!("WebSocket connect to {url} timed out"))
        .map(|(ws, _)| ws)
}

/// The HTTP status a refused WebSocket handshake answered with.
pub async fn ws_refused_status(url: &str) -> u16 {
    match ws_connect(url).await {
        Ok(_) => panic!("WebSocket handshake to {url} succeeded"),
        Err(tungstenite::Error::Http(res)) => res.status().as_u16(),
        Err(e) => panic!("WebSocket handshake to {url}: unexpected error {e}"),
    }
}

/// What the next read of a WebSocket gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Text(String),
    Binary(Vec<u8>),
    /// A close frame, the end of the stream, or a transport error.
    Closed,
}

/// The next text or binary message (WebSocket-level ping/pong frames are skipped).
pub async fn next(ws: &mut Ws) -> Frame {
    loop {
        let msg = tokio::time::timeout(STEP, ws.next()).await.expect("WebSocket read timed out");
        return match msg {
            Some(Ok(Message::Text(t))) => Frame::Text(t.as_str().to_owned()),
            Some(Ok(Message::Binary(b))) => Frame::Binary(b.to_vec()),
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => Frame::Closed,
        };
    }
}

/// The next message that is not an Engine.IO ping; pings are answered with pongs. Fails
/// after [`STEP`] in all: pings alone must not keep a test waiting for a lost packet.
pub async fn next_skip_ping(ws: &mut Ws) -> Frame {
    let wait = async {
        loop {
            match next(ws).await {
                Frame::Text(t) if t == "2" => send_text(ws, "3").await,
                other => return other,
            }
        }
    };
    tokio::time::timeout(STEP, wait).await.expect("no message other than pings arrived in time")
}

/// The next text message, skipping and answering pings; panics on anything else.
pub async fn next_text(ws: &mut Ws) -> String {
    match next_skip_ping(ws).await {
        Frame::Text(t) => t,
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// Reads until the connection ends, answering nothing; returns the text messages seen.
/// Fails if it is still open after [`STEP`].
pub async fn until_closed(ws: &mut Ws) -> Vec<String> {
    let mut seen = Vec::new();
    let wait = async {
        loop {
            match next(ws).await {
                Frame::Closed => return,
                Frame::Text(t) => seen.push(t),
                Frame::Binary(b) => seen.push(format!("<binary {b:?}>")),
            }
        }
    };
    if tokio::time::timeout(STEP, wait).await.is_err() {
        panic!("the connection is still open after {STEP:?}; seen {seen:?}");
    }
    seen
}

pub async fn send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.expect("WebSocket send");
}

pub async fn send_binary(ws: &mut Ws, data: &[u8]) {
    ws.send(Message::binary(data.to_vec())).await.expect("WebSocket send");
}

/// A WebSocket Engine.IO session opened directly (no polling first), with its open packet.
pub async fn ws_open(server: &Server, path: &str) -> (Ws, serde_json::Value) {
    let mut ws = ws_connect(&server.ws(&format!("{path}?EIO=4&transport=websocket"))).await.expect("ws connect");
    let open = match next(&mut ws).await {
        Frame::Text(t) => open_packet(&t),
        other => panic!("expected the open packet, got {other:?}"),
    };
    (ws, open)
}

/// A Socket.IO connection over WebSocket, connected to `/` with no auth, `auth` event read.
pub async fn sio_connect(server: &Server) -> Ws {
    let (mut ws, _) = ws_open(server, "/socket.io/").await;
    send_text(&mut ws, "40").await;
    let connect = next_text(&mut ws).await;
    assert!(connect.starts_with("40{\"sid\":"), "{connect}");
    assert_eq!(next_text(&mut ws).await, r#"42["auth",{}]"#);
    ws
}
