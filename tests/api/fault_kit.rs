//! What the fault tests share: keyed single events and batches sent from a task of their
//! own (so that a fault hits them in flight), what a socket received, and Redis commands,
//! restarts and readiness, all off the runtime's thread (the server runs on it too).

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::helpers::*;
use crate::redis_server::RedisServer;

/// Events per batch: the largest batch the API takes.
pub const BATCH: usize = 500;
/// How soon after Redis answers again a retry with the same ids must be answered `202`.
pub const ANSWERED_WITHIN: Duration = Duration::from_secs(5);
/// How long the retry loop may run at most.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(15);
/// How long the events a `202` promised may take (a dropped reader reconnects in 250 ms).
pub const ARRIVES_WITHIN: Duration = Duration::from_secs(8);
/// How long we watch, at the end, for a copy that must not come.
pub const NO_SECOND_COPY: Duration = Duration::from_millis(1500);

/// One request: a single keyed event (id and `Idempotency-Key` alike) or a keyed batch.
#[derive(Clone)]
pub struct Post {
    pub path: &'static str,
    pub key: Option<String>,
    pub body: Value,
    /// The payments' ids, in the order the socket must receive them.
    pub names: Vec<String>,
}

impl Post {
    pub fn new(tag: &str, user: &str, batch: bool) -> Post {
        let n = if batch { BATCH } else { 1 };
        let mut events: Vec<Value> = (0..n)
            .map(|i| {
                json!({ "id": format!("{tag}-k{i}"), "type": "payment:completed",
                    "payment": { "id": format!("{tag}-{i}"), "userId": user, "vendorId": "v1", "amount": i } })
            })
            .collect();
        let names = (0..n).map(|i| format!("{tag}-{i}")).collect();
        match batch {
            true => Post { path: "/api/v1/events/batch", key: None, body: json!({ "events": events }), names },
            false => Post { path: "/api/v1/events", key: Some(format!("{tag}-k0")), body: events.remove(0), names },
        }
    }

    /// `EXISTS` of the first and the last event's idempotency keys in the history.
    pub fn keys_exist(&self) -> String {
        let key =
            |i: usize| format!("fixrx:{{history}}:idem:{}", self.body_event(i)["id"].as_str().unwrap_or_default());
        format!("EXISTS {} {}", key(0), key(self.names.len() - 1))
    }

    pub fn body_event(&self, i: usize) -> &Value {
        if self.is_batch() { &self.body["events"][i] } else { &self.body }
    }

    pub fn is_batch(&self) -> bool {
        self.key.is_none()
    }

    pub async fn send(&self, http: &reqwest::Client, url: &str) -> (u16, Value) {
        let mut req = http.post(url).bearer_auth(API_TOKEN).json(&self.body).timeout(Duration::from_secs(20));
        if let Some(key) = &self.key {
            req = req.header("idempotency-key", key);
        }
        read(req.send().await.expect("request")).await
    }

    /// Sends from a task of its own, so that a fault can hit while it is in flight.
    pub fn spawn(&self, app: &TestApp) -> tokio::task::JoinHandle<(u16, Value)> {
        let (post, http, url) = (self.clone(), app.http.clone(), app.url(self.path));
        tokio::spawn(async move { post.send(&http, &url).await })
    }

    /// Retries with the same ids until `202`; how many `503`s it took.
    pub async fn retry_until_accepted(&self, app: &TestApp, seed: u64) -> usize {
        let (give_up, mut refused) = (Instant::now() + GIVE_UP_AFTER, 0);
        loop {
            let (status, answer) = self.send(&app.http, &app.url(self.path)).await;
            match status {
                202 => return refused,
                503 => refused += 1,
                other => panic!("seed {seed}: a retry answered {other} {answer}"),
            }
            assert!(Instant::now() < give_up, "seed {seed}: still refused after {GIVE_UP_AFTER:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// What a socket received: the payments' ids in order of arrival, and whether the server
/// disconnected it. Stops once `want` arrived, at a disconnect, or after `wait`.
pub async fn take(
    user: &mut TestClient,
    want: usize,
    wait: Duration,
    offsets: &mut Map<String, Value>,
) -> (Vec<String>, bool) {
    let deadline = tokio::time::Instant::now() + wait;
    let mut seen = Vec::new();
    while seen.len() < want {
        match tokio::time::timeout_at(deadline, user.rx.recv()).await {
            Ok(Some(Seen::Event(name, v))) if name == "payment:completed" => {
                if let Some(o) = v["offsets"].as_object() {
                    offsets.extend(o.clone());
                }
                seen.push(v["payment"]["id"].as_str().unwrap_or_default().to_owned());
            }
            // rust_socketio reports the dropped transport as an error, then maybe a close.
            Ok(Some(Seen::Disconnected | Seen::ConnectError(_)) | None) => return (seen, true),
            Ok(Some(other)) => panic!("unexpected {other:?}"),
            Err(_) => break,
        }
    }
    (seen, false)
}

/// Watches for `quiet` that nothing more comes.
pub async fn nothing_for(user: &mut TestClient, quiet: Duration) {
    let deadline = Instant::now() + quiet;
    while Instant::now() < deadline {
        user.expect_nothing().await;
    }
}

/// One command on a connection of its own (the server's are the ones killed), off the
/// runtime's threads: the first line of the reply.
pub async fn redis_command(port: u16, line: &str) -> String {
    let line = line.to_owned();
    tokio::task::spawn_blocking(move || RedisServer::command_on(port, &line)).await.unwrap()
}

/// Restarts Redis (its data is not saved: it comes back empty) off the runtime's threads.
pub async fn restart(mut redis: RedisServer) -> RedisServer {
    tokio::task::spawn_blocking(move || {
        redis.restart();
        redis
    })
    .await
    .unwrap()
}

pub async fn wait_ready(app: &TestApp, seed: u64) {
    let deadline = Instant::now() + GIVE_UP_AFTER;
    while !matches!(app.http.get(app.url("/ready")).send().await, Ok(res) if res.status() == 200) {
        assert!(Instant::now() < deadline, "seed {seed}: /ready never answered 200 after the restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Connects `user` with its latest positions, which name a history that is gone: the
/// server must say so (`recovered: false`), replaying nothing of the old history. Events
/// of the new history appended while the socket was connecting come first, before
/// `recovery` (they are flushed from its buffer as it goes live, and counted in the
/// report's `replayed`); their ids are returned with the client, in order.
pub async fn reconnect_told(
    app: &TestApp,
    user: &str,
    offsets: &mut Map<String, Value>,
    seed: u64,
) -> (TestClient, Vec<String>) {
    let auth = json!({ "token": user_token(user), "offsets": &*offsets });
    let mut client = connect(app, TokenAt::AuthObject(auth)).await.expect("reconnects");
    let mut early = Vec::new();
    let report = loop {
        match tokio::time::timeout(ARRIVES_WITHIN, client.rx.recv()).await {
            Ok(Some(Seen::Event(name, v))) if name == "recovery" => break v,
            Ok(Some(Seen::Event(name, v))) if name == "payment:completed" => {
                if let Some(o) = v["offsets"].as_object() {
                    offsets.extend(o.clone());
                }
                early.push(v["payment"]["id"].as_str().unwrap_or_default().to_owned());
            }
            other => panic!("seed {seed}: expected recovery, got {other:?}"),
        }
    };
    assert_eq!(report["recovered"], false, "seed {seed}: a lost history recovered? {report}");
    assert_eq!(report["replayed"], early.len(), "seed {seed}: events before recovery are its replayed ones: {report}");
    (client, early)
}
