//! Section 7 of the contract, end to end: a client that comes back with its `offsets`
//! gets exactly what it missed, in order, once, then `recovery`; across instances, a
//! SIGTERM, Redis restarting empty, and a socket whose outgoing queue filled up.

use std::time::Duration;

use rust_socketio::asynchronous::Client;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use crate::helpers::*;
use crate::raw::{Binary, RawSocket};
use crate::redis_server::RedisServer;

/// Long enough for a reader to notice Redis came back, or a binary to shut down.
const SLOW: Duration = Duration::from_secs(15);

/// A client that keeps its latest position per room, as the contract's JS snippet does.
struct Peer {
    client: Client,
    rx: mpsc::UnboundedReceiver<Seen>,
    offsets: Map<String, Value>,
}

/// Connects over WebSocket with `auth: { token, offsets? }` and waits for CONNECT.
async fn connect_peer(app: &TestApp, token: &str, offsets: Option<&Map<String, Value>>) -> Peer {
    let mut auth = json!({ "token": token });
    if let Some(offsets) = offsets {
        auth["offsets"] = Value::Object(offsets.clone());
    }
    let TestClient { client, rx } = connect(app, TokenAt::AuthObject(auth)).await.expect("peer connects");
    Peer { client, rx, offsets: offsets.cloned().unwrap_or_default() }
}

impl Peer {
    /// The next event (name, payload), keeping its offsets; anything else fails the test.
    async fn event(&mut self) -> (String, Value) {
        self.event_within(WAIT).await
    }

    async fn event_within(&mut self, wait: Duration) -> (String, Value) {
        match tokio::time::timeout(wait, self.rx.recv()).await {
            Ok(Some(Seen::Event(name, payload))) => {
                if let Some(offsets) = payload.get("offsets").and_then(Value::as_object) {
                    self.offsets.extend(offsets.clone());
                }
                (name, payload)
            }
            other => panic!("expected an event, got {other:?}"),
        }
    }

    /// The ids of the next `n` events, none of them `recovery`.
    async fn ids(&mut self, n: usize) -> Vec<String> {
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            let (name, payload) = self.event().await;
            assert_ne!(name, "recovery", "recovery came early; ids so far {ids:?}");
            ids.push(id_of(&payload));
        }
        ids
    }

    /// The ids of the events before `recovery`, and `recovery`'s payload.
    async fn replay(&mut self) -> (Vec<String>, Value) {
        let mut ids = Vec::new();
        loop {
            // A replay of megabytes can stall for seconds on a loaded machine.
            let (name, mut payload) = self.event_within(SLOW).await;
            if name == "recovery" {
                // Its positions (one per own room) were kept by `event`; compare the rest.
                let offsets = payload.as_object_mut().and_then(|o| o.remove("offsets"));
                assert!(offsets.as_ref().is_some_and(Value::is_object), "recovery without offsets: {payload}");
                return (ids, payload);
            }
            ids.push(id_of(&payload));
        }
    }

    /// Waits for the server to drop the socket (its transport closes, which the client
    /// reports as an error or a close); nothing else may come first.
    async fn expect_disconnect(&mut self, wait: Duration, why: &str) {
        match tokio::time::timeout(wait, self.rx.recv()).await {
            Ok(Some(Seen::Disconnected | Seen::ConnectError(_))) => {}
            other => panic!("{why}: expected a disconnect within {wait:?}, got {other:?}"),
        }
    }

    async fn expect_nothing(&mut self) {
        if let Ok(Some(seen)) = tokio::time::timeout(QUIET, self.rx.recv()).await {
            panic!("expected nothing, got {seen:?}");
        }
    }
}

fn id_of(payload: &Value) -> String {
    payload["id"].as_str().unwrap_or_else(|| panic!("no id in {payload}")).to_owned()
}

/// An accepted event: its id and the rooms it was sent to.
struct Posted {
    id: String,
    rooms: Vec<String>,
}

/// The ids of the `posted` events sent to any of `rooms`, in post order.
fn addressed(posted: &[Posted], rooms: &[&str]) -> Vec<String> {
    posted.iter().filter(|p| p.rooms.iter().any(|r| rooms.contains(&r.as_str()))).map(|p| p.id.clone()).collect()
}

/// Event `i` of a mix: to user u1 and vendor v1, to v1 only, to u1 only, to neither.
fn mixed(i: usize) -> Value {
    let mut body = match i % 4 {
        0 => event_body("booking:status_changed", "u1", "v1"),
        1 => event_body("service:updated", "u1", "v1"),
        2 => json!({ "type": "payment:completed", "payment": { "id": "p1", "userId": "u1" } }),
        _ => event_body("booking:created", "u2", "v2"),
    };
    let entity = body["type"].as_str().and_then(|t| t.split(':').next()).unwrap_or_default().to_owned();
    body[entity]["seq"] = json!(i);
    body
}

async fn post(node: &TestApp, body: Value) -> Posted {
    let (status, answer) = node.post_event(body).await;
    assert_eq!(status, 202, "{answer}");
    let rooms = answer["rooms"].as_array().expect("rooms").iter().map(|r| r.as_str().unwrap().to_owned()).collect();
    Posted { id: answer["id"].as_str().expect("id").to_owned(), rooms }
}

fn recovered(rooms: &[&str], replayed: usize) -> Value {
    let rooms: Map<String, Value> = rooms.iter().map(|r| (r.to_string(), json!("recovered"))).collect();
    json!({ "recovered": true, "replayed": replayed, "rooms": rooms })
}

#[tokio::test]
async fn a_client_back_on_another_instance_gets_exactly_what_it_missed_in_order_once_then_recovery() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(spawn_node(&[("REDIS_URL", &url)]).await);
    }
    // A vendor whose user id is u1: in user:u1 and vendor:v1, so booking events reach it
    // through two rooms and must still arrive once.
    let token = vendor_token("u1", "v1");
    let rooms = ["user:u1", "vendor:v1"];
    let mut peer = connect_peer(&nodes[0], &token, None).await;
    let mut before = Vec::new();
    for i in 0..4 {
        before.push(post(&nodes[0], mixed(i)).await);
    }
    assert_eq!(peer.ids(3).await, addressed(&before, &rooms));
    peer.expect_nothing().await;
    assert_eq!(peer.offsets.len(), 2, "one position per room: {:?}", peer.offsets);
    let offsets = peer.offsets.clone();
    peer.client.disconnect().await.expect("disconnect");

    let mut away = Vec::new();
    for i in 4..22 {
        away.push(post(&nodes[i % 3], mixed(i)).await);
    }
    let missed = addressed(&away, &rooms);
    let mut back = connect_peer(&nodes[2], &token, Some(&offsets)).await;
    let (replayed, report) = back.replay().await;
    assert_eq!(replayed, missed, "the missed events, in post order, once");
    assert_eq!(report, recovered(&rooms, missed.len()));
    back.expect_nothing().await;

    let live = post(&nodes[1], mixed(0)).await;
    assert_eq!(back.ids(1).await, vec![live.id]);
    back.expect_nothing().await;
}

/// A hand-written client on the instance that is SIGTERMed: it sees exactly when its
/// transport closes (rust_socketio reports no close it did not get a DISCONNECT for).
struct RawPeer {
    raw: RawSocket,
    offsets: Map<String, Value>,
    ids: Vec<String>,
}

impl RawPeer {
    fn take(&mut self, frame: &str) {
        let Some(packet) = frame.strip_prefix("42").and_then(|p| serde_json::from_str::<Value>(p).ok()) else {
            return;
        };
        let payload = &packet[1];
        if let Some(offsets) = payload["offsets"].as_object() {
            self.offsets.extend(offsets.clone());
        }
        self.ids.push(id_of(payload));
    }

    async fn read(&mut self, n: usize) {
        for _ in 0..n {
            let frame = self.raw.next_text().await.expect("an event");
            self.take(&frame);
        }
    }

    /// Reads until the server closes the connection.
    async fn until_closed(&mut self) {
        let (closed, frames) = self.raw.read_until_closed(SLOW).await;
        assert!(closed, "the SIGTERMed instance did not close the socket in {SLOW:?}; saw {frames:?}");
        for frame in &frames {
            self.take(frame);
        }
    }
}

#[tokio::test]
async fn a_sigtermed_instances_clients_recover_everything_on_another() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut a = Binary::start(&[("REDIS_URL", &url)]).await;
    let b = spawn_node(&[("REDIS_URL", &url)]).await;
    let clients: [(String, Vec<&str>); 2] =
        [(user_token("u1"), vec!["user:u1"]), (vendor_token("owner", "v1"), vec!["vendor:v1", "user:owner"])];
    let mut peers = Vec::new();
    for (token, _) in &clients {
        peers.push(RawPeer { raw: RawSocket::connect(a.addr, token).await, offsets: Map::new(), ids: Vec::new() });
    }
    let mut posted = Vec::new();
    for i in 0..4 {
        posted.push(post(&b, mixed(i)).await);
    }
    for (peer, (_, rooms)) in peers.iter_mut().zip(&clients) {
        let expected = addressed(&posted, rooms);
        peer.read(expected.len()).await;
        assert_eq!(peer.ids, expected, "{rooms:?} live on A");
    }

    // Events keep coming through B while A shuts down, and after its sockets are closed.
    let pid = a.child.id().expect("pid").to_string();
    let killed = tokio::process::Command::new("kill").args(["-TERM", &pid]).status().await.expect("kill");
    assert!(killed.success());
    for i in 4..16 {
        posted.push(post(&b, mixed(i)).await);
    }
    for peer in &mut peers {
        peer.until_closed().await;
    }
    for i in 16..24 {
        posted.push(post(&b, mixed(i)).await);
    }
    let status = tokio::time::timeout(SLOW, a.child.wait()).await.expect("A exits in time").expect("wait");
    assert!(status.success(), "A's exit status {status:?}");

    let mut backs = Vec::new();
    for (peer, (token, rooms)) in peers.iter().zip(&clients) {
        let mut back = connect_peer(&b, token, Some(&peer.offsets)).await;
        let (replayed, report) = back.replay().await;
        let named: Vec<&str> = rooms.iter().copied().filter(|r| peer.offsets.contains_key(*r)).collect();
        assert_eq!(report, recovered(&named, replayed.len()));
        let everything: Vec<String> = peer.ids.iter().chain(&replayed).cloned().collect();
        assert_eq!(everything, addressed(&posted, rooms), "{rooms:?}: on A then replayed on B, each once, in order");
        eprintln!("{rooms:?}: {} events on A, {} replayed on B", peer.ids.len(), replayed.len());
        backs.push(back);
    }
    let mut live = Vec::new();
    for i in 24..28 {
        live.push(post(&b, mixed(i)).await);
    }
    for (back, (_, rooms)) in backs.iter_mut().zip(&clients) {
        let expected = addressed(&live, rooms);
        assert_eq!(back.ids(expected.len()).await, expected);
        back.expect_nothing().await;
    }
}

async fn wait_ready(node: &TestApp) {
    let deadline = tokio::time::Instant::now() + SLOW;
    while tokio::time::Instant::now() < deadline {
        if let Ok(res) = node.http.get(node.url("/ready")).send().await
            && res.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/ready never answered 200");
}

#[tokio::test]
async fn after_redis_restarts_empty_old_positions_are_unknown_and_delivery_goes_on() {
    let mut redis = RedisServer::start();
    let node = spawn_node(&[("REDIS_URL", &redis.url())]).await;
    let token = vendor_token("u1", "v1");
    let rooms = ["user:u1", "vendor:v1"];
    let mut peer = connect_peer(&node, &token, None).await;
    let mut posted = Vec::new();
    for i in 0..4 {
        posted.push(post(&node, mixed(i)).await);
    }
    assert_eq!(peer.ids(3).await, addressed(&posted, &rooms));
    let old = peer.offsets.clone();

    redis.restart();
    // The history it followed is gone: a connected socket is told, by a disconnect,
    // as soon as the reader is back (no new event needed to notice).
    peer.expect_disconnect(WAIT, "Redis restarted empty under a connected socket").await;
    wait_ready(&node).await;

    let mut back = connect_peer(&node, &token, Some(&old)).await;
    let (replayed, report) = back.replay().await;
    assert!(replayed.is_empty(), "{replayed:?}");
    let unknown: Map<String, Value> = rooms.iter().map(|r| (r.to_string(), json!("unknown"))).collect();
    assert_eq!(report, json!({ "recovered": false, "replayed": 0, "rooms": unknown }));

    // New events arrive, with positions of the new history that recover in turn.
    let first = post(&node, mixed(0)).await;
    assert_eq!(back.ids(1).await, vec![first.id]);
    back.expect_nothing().await;
    assert!(back.offsets.iter().all(|(r, p)| old.get(r) != Some(p)), "{:?}", back.offsets);
    let offsets = back.offsets.clone();
    back.client.disconnect().await.expect("disconnect");
    let missed: Vec<Posted> = vec![post(&node, mixed(4)).await, post(&node, mixed(5)).await];
    let mut again = connect_peer(&node, &token, Some(&offsets)).await;
    let (replayed, report) = again.replay().await;
    assert_eq!(replayed, addressed(&missed, &rooms));
    assert_eq!(report, recovered(&rooms, 2));
    again.expect_nothing().await;
}

/// A `service:updated` to vendor v1 carrying `size` bytes of filler.
fn big_service(i: usize, size: usize) -> Value {
    json!({ "type": "service:updated", "service": { "id": format!("s{i}"), "vendorId": "v1", "blob": "x".repeat(size) } })
}

/// The id and `vendor:v1` position of a raw `42["service:updated",{...}]` frame.
fn raw_event(frame: &str) -> (String, String) {
    let packet: Value = frame.strip_prefix("42").and_then(|p| serde_json::from_str(p).ok()).unwrap_or_default();
    let payload = &packet[1];
    let position = payload["offsets"]["vendor:v1"].as_str().unwrap_or_else(|| panic!("no position in {frame:.200}"));
    (id_of(payload), position.to_owned())
}

async fn queue_full_disconnects(app: &TestApp) -> u64 {
    let text = app.http.get(app.url("/metrics")).send().await.expect("metrics").text().await.expect("body");
    text.lines()
        .find_map(|l| l.strip_prefix("fixrx_delivery_disconnects_total{reason=\"queue_full\"} "))
        .map_or(0, |n| n.trim().parse().expect("a count"))
}

/// An event for the bystander only (not vendor v1), which must reach it promptly.
async fn bystander_served(app: &TestApp, bystander: &mut TestClient) {
    let (status, answer) = app.post_event(event_body("booking:created", "bystander", "v9")).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(bystander.expect_event("booking:created").await["id"], answer["id"]);
}

/// What a raw client that reads again finds: the events still in the pipe, then the
/// end of delivery (a DISCONNECT packet, or the connection closing).
async fn read_until_told(raw: &mut RawSocket) -> (Vec<(String, String)>, &'static str) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let mut events = Vec::new();
    let ended = tokio::time::timeout(SLOW, async {
        loop {
            match raw.ws.next().await {
                Some(Ok(Message::Text(t))) if t.as_str() == "2" => {
                    let _ = raw.ws.send(Message::text("3")).await;
                }
                Some(Ok(Message::Text(t))) if t.starts_with("41") => return "disconnect packet",
                Some(Ok(Message::Text(t))) if t.starts_with("42") => events.push(raw_event(t.as_str())),
                Some(Ok(Message::Text(t))) => panic!("unexpected frame {t:.200}"),
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return "connection closed",
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    let ended =
        ended.unwrap_or_else(|_| panic!("still open after {SLOW:?} and {} events: a silent skip?", events.len()));
    (events, ended)
}

#[tokio::test]
async fn a_socket_whose_queue_fills_is_disconnected_not_skipped_and_recovers_the_rest() {
    let app = spawn_app_with(&[("SOCKET_BUFFER_PACKETS", "64"), ("HISTORY_SIZE", "5000")]).await;
    let token = vendor_token("owner", "v1");
    let mut raw = RawSocket::connect(app.addr, &token).await;
    let mut bystander = connect_user(&app, "bystander").await;
    let before = queue_full_disconnects(&app).await;
    // One event read normally, so the client holds a position before the flood.
    let warm = post(&app, big_service(0, 10)).await;
    let (id, mut position) = raw_event(&raw.next_text().await.expect("the warm-up event"));
    assert_eq!(id, warm.id);

    // The client stops reading; 2,000 events of 10 KB are sent to its room.
    let mut flood = Vec::new();
    for batch in 0..100 {
        let events: Vec<Value> = (0..20).map(|j| big_service(1 + batch * 20 + j, 10_000)).collect();
        let (status, answer) = app.post("/api/v1/events/batch", json!({ "events": events })).await;
        assert_eq!(status, 202, "{answer:.300}");
        flood.extend(answer["events"].as_array().expect("events").iter().map(id_of));
        if batch % 10 == 9 {
            bystander_served(&app, &mut bystander).await;
        }
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while queue_full_disconnects(&app).await <= before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "fixrx_delivery_disconnects_total{{reason=\"queue_full\"}} did not increase"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Reading again: a gap-free prefix of the flood, then the socket is told.
    let (got, ended) = read_until_told(&mut raw).await;
    let ids: Vec<String> = got.iter().map(|(id, _)| id.clone()).collect();
    assert!(ids.len() < flood.len(), "the queue never filled: all {} events arrived ({ended})", ids.len());
    assert_eq!(ids, flood[..ids.len()], "the events received before the {ended} are the flood's first ones, in order");
    if let Some((_, last)) = got.last() {
        position = last.clone();
    }
    bystander_served(&app, &mut bystander).await;
    bystander.expect_nothing().await;

    // Reconnecting with that position recovers the rest, in order, once.
    let offsets: Map<String, Value> = [("vendor:v1".to_owned(), json!(position))].into_iter().collect();
    let mut back = connect_peer(&app, &token, Some(&offsets)).await;
    let (replayed, report) = back.replay().await;
    assert_eq!(replayed.len(), flood.len() - ids.len(), "received {} before the {ended}", ids.len());
    assert_eq!(replayed, flood[ids.len()..], "the rest of the flood, in order, once");
    assert_eq!(report, recovered(&["vendor:v1"], replayed.len()));
    back.expect_nothing().await;
    eprintln!("queue fill: {} events before the {ended}, {} replayed", ids.len(), replayed.len());
}
