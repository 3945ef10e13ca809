//! Redis Cluster faults (CONTRACT §12), on three primaries with a replica each: a
//! primary killed in the middle of 500-event batches, and a replica made slow
//! (`DEBUG SLEEP`) before its primary is killed. The backend retries every failed
//! request with the same ids until `202`; on the receiving socket, which comes back with
//! its `offsets` whenever it is dropped, every event arrives exactly once and a batch
//! whole or not at all.
//!
//! Seeded: when the faults hit; a failure prints its seed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use crate::helpers::*;
use crate::redis_cluster::{RedisCluster, command};

/// How long the backend goes on retrying one request after the fault.
const RETRY_FOR: Duration = Duration::from_secs(40);
/// How long we wait for copies that must not come.
const NO_SECOND_COPY: Duration = Duration::from_secs(3);

/// A socket that, like a client using the recovery recipe, comes back with its latest
/// `offsets` whenever it is dropped, to whichever instance answers; it reports the `id`
/// of every `booking:status_changed` it receives, and each `recovery`.
fn follow(nodes: &[TestApp], user: String) -> mpsc::UnboundedReceiver<Seen> {
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    let (out, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut offsets = Map::new();
        for attempt in 0.. {
            let node = TestApp::external(addrs[attempt % addrs.len()]);
            let mut auth = json!({ "token": user_token(&user) });
            if !offsets.is_empty() {
                auth["offsets"] = Value::Object(offsets.clone());
            }
            let Ok(TestClient { client, mut rx }) = connect(&node, TokenAt::AuthObject(auth)).await else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            while let Some(seen) = rx.recv().await {
                match seen {
                    Seen::Event(name, payload) => {
                        if let Some(o) = payload.get("offsets").and_then(Value::as_object) {
                            offsets.extend(o.clone());
                        }
                        if out.send(Seen::Event(name, payload)).is_err() {
                            let _ = client.disconnect().await;
                            return;
                        }
                    }
                    Seen::Disconnected => break,
                    _ => {}
                }
            }
            let _ = client.disconnect().await;
        }
    });
    rx
}

/// Event ids received until nothing came for `quiet`, in order (`recovery` counted apart).
async fn received(rx: &mut mpsc::UnboundedReceiver<Seen>, quiet: Duration) -> (Vec<String>, usize) {
    let (mut ids, mut recoveries) = (Vec::new(), 0);
    while let Ok(Some(seen)) = tokio::time::timeout(quiet, rx.recv()).await {
        match seen {
            Seen::Event(name, _) if name == "recovery" => recoveries += 1,
            Seen::Event(_, payload) => ids.push(payload["id"].as_str().unwrap_or_default().to_owned()),
            _ => {}
        }
    }
    (ids, recoveries)
}

fn keyed_event(user: &str, id: &str) -> Value {
    let mut body = event_body("booking:status_changed", user, "cv1");
    body["id"] = json!(id);
    body
}

async fn post(app: &TestApp, path: &str, body: &Value) -> u16 {
    let res = app.http.post(app.url(path)).bearer_auth(API_TOKEN).json(body).timeout(Duration::from_secs(15)).send();
    match res.await {
        Ok(res) => read(res).await.0,
        Err(_) => 0,
    }
}

/// Posts until `202`, with the same body (same ids), as the Node package would; the
/// statuses seen, in order.
async fn until_accepted(nodes: &[TestApp], path: &str, body: &Value, first: usize) -> Vec<u16> {
    let started = Instant::now();
    let mut statuses = Vec::new();
    for attempt in first.. {
        let status = post(&nodes[attempt % nodes.len()], path, body).await;
        statuses.push(status);
        if status == 202 || started.elapsed() > RETRY_FOR {
            return statuses;
        }
        assert!(matches!(status, 0 | 503), "only 503 (or no answer) may precede 202, got {statuses:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    statuses
}

/// Each id once; `expected` all there.
fn exactly_once(got: &[String], expected: &[String], seed: u64) {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for id in got {
        *counts.entry(id.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "seed {seed}: delivered more than once: {twice:?}");
    let missing: Vec<_> = expected.iter().filter(|id| !counts.contains_key(id.as_str())).collect();
    assert!(missing.is_empty(), "seed {seed}: accepted, never delivered: {missing:?}");
    let unexpected: Vec<_> = got.iter().filter(|id| !expected.contains(id)).collect();
    assert!(unexpected.is_empty(), "seed {seed}: delivered, never posted: {unexpected:?}");
}

async fn cluster_nodes(cluster: &RedisCluster, n: usize) -> Vec<TestApp> {
    let urls = cluster.urls();
    let mut nodes = Vec::new();
    for _ in 0..n {
        nodes.push(spawn_node(&[("REDIS_CLUSTER_URLS", urls.as_str())]).await);
    }
    nodes
}

#[tokio::test]
async fn a_primary_killed_mid_batch_loses_no_accepted_batch_and_splits_none() {
    let seed = 22_001;
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut cluster = RedisCluster::start();
    let nodes = cluster_nodes(&cluster, 2).await;
    let user = format!("ck{seed}");
    let mut events = follow(&nodes, user.clone());
    assert_eq!(post(&nodes[1], "/api/v1/events", &keyed_event(&user, "warm-up")).await, 202);
    assert_eq!(received(&mut events, Duration::from_secs(2)).await.0, ["warm-up"]);

    let primary = cluster.primary_of("{history}");
    let kill_after = Duration::from_millis(rng.u64(20..400));
    let batches: Vec<(Vec<String>, Value)> = (0..6)
        .map(|b| {
            let ids: Vec<String> = (0..500).map(|i| format!("b{b}-{i}")).collect();
            let events: Vec<Value> = ids.iter().map(|id| keyed_event(&user, id)).collect();
            (ids, json!({ "events": events }))
        })
        .collect();
    // The batches go out one after another from one task; the kill lands among them.
    let posting = {
        let bodies: Vec<Value> = batches.iter().map(|(_, body)| body.clone()).collect();
        let node = TestApp::external(nodes[0].addr);
        tokio::spawn(async move {
            let mut first = Vec::new();
            for body in &bodies {
                first.push(post(&node, "/api/v1/events/batch", body).await);
            }
            first
        })
    };
    tokio::time::sleep(kill_after).await;
    cluster.kill(primary);
    let first = posting.await.unwrap();
    let mut finals = Vec::new();
    for ((_, body), status) in batches.iter().zip(&first) {
        let statuses = match status {
            202 => vec![202],
            _ => until_accepted(&nodes, "/api/v1/events/batch", body, 1).await,
        };
        assert_eq!(statuses.last(), Some(&202), "seed {seed}: a batch never accepted: {statuses:?}");
        finals.push(statuses);
    }
    let (got, recoveries) = received(&mut events, NO_SECOND_COPY).await;
    let expected: Vec<String> = batches.iter().flat_map(|(ids, _)| ids.clone()).collect();
    println!(
        "cluster_faults: primary killed {} ms into 6 batches of 500: first answers {first:?}, \
         retries {:?}, delivered {} of {}, recoveries {recoveries}",
        kill_after.as_millis(),
        finals.iter().map(Vec::len).collect::<Vec<_>>(),
        got.len(),
        expected.len()
    );
    exactly_once(&got, &expected, seed);
    // Each batch in its own order, and whole: its events are contiguous per batch.
    for (ids, _) in &batches {
        let order: Vec<&String> = got.iter().filter(|id| ids.contains(id)).collect();
        assert_eq!(order, ids.iter().collect::<Vec<_>>(), "seed {seed}: a batch out of order");
    }
}

#[tokio::test]
async fn a_slow_replica_makes_appends_fail_and_its_primary_killed_then_loses_and_doubles_nothing() {
    let seed = 22_002;
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut cluster = RedisCluster::start_with(&["--enable-debug-command", "yes"]);
    let nodes = cluster_nodes(&cluster, 2).await;
    let user = format!("cs{seed}");
    let mut events = follow(&nodes, user.clone());
    assert_eq!(post(&nodes[1], "/api/v1/events", &keyed_event(&user, "warm-up")).await, 202);
    assert_eq!(received(&mut events, Duration::from_secs(2)).await.0, ["warm-up"]);

    let primary = cluster.primary_of("{history}");
    let replica = cluster.replica_of(primary);
    let sleep_s = 5;
    std::thread::spawn(move || command(replica, &format!("DEBUG SLEEP {sleep_s}")));
    tokio::time::sleep(Duration::from_millis(100)).await;
    // While the replica sleeps, no append may be acknowledged.
    let ids: Vec<String> = (0..rng.usize(3..6)).map(|i| format!("slow-{i}")).collect();
    let mut first = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        first.push(post(&nodes[i % 2], "/api/v1/events", &keyed_event(&user, id)).await);
    }
    assert!(first.iter().all(|s| *s == 503), "seed {seed}: an append acknowledged without its replica: {first:?}");
    // The primary dies before its replica wakes: what the replica never had is gone.
    cluster.kill(primary);
    let mut retries = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let statuses = until_accepted(&nodes, "/api/v1/events", &keyed_event(&user, id), i).await;
        assert_eq!(statuses.last(), Some(&202), "seed {seed}: {id} never accepted: {statuses:?}");
        retries.push(statuses.len());
    }
    let (got, recoveries) = received(&mut events, NO_SECOND_COPY).await;
    println!(
        "cluster_faults: replica asleep {sleep_s} s, primary killed: first answers {first:?}, \
         attempts to 202 {retries:?}, delivered {got:?}, recoveries {recoveries}"
    );
    exactly_once(&got, &ids, seed);
    for node in &nodes {
        let (status, body) = node.get("/ready").await;
        assert_eq!(status, 200, "{body}");
    }
}

#[tokio::test]
async fn a_shard_without_replica_is_reported_and_goes_on_unless_a_replica_is_required() {
    let mut cluster = RedisCluster::start();
    let urls = cluster.urls();
    let lenient = spawn_node(&[("REDIS_CLUSTER_URLS", urls.as_str())]).await;
    let strict = spawn_node(&[("REDIS_CLUSTER_URLS", urls.as_str()), ("REDIS_REQUIRE_REPLICA", "true")]).await;
    let mut user = connect_user(&lenient, "cr1").await;
    assert_eq!(lenient.post_event(keyed_event("cr1", "before")).await.0, 202);
    user.expect_event("booking:status_changed").await;
    assert_eq!(lenient.get("/ready").await.1, json!({ "status": "ready" }));

    let primary = cluster.primary_of("{history}");
    cluster.kill(cluster.replica_of(primary));
    // Redis notices the replica's link is gone within its repl-timeout; then appends go on.
    let started = Instant::now();
    let status = loop {
        let (status, _) = lenient.post_event(keyed_event("cr1", "alone")).await;
        if status == 202 || started.elapsed() > Duration::from_secs(70) {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(status, 202, "appends go on without a replica");
    let event = user.expect_event("booking:status_changed").await;
    assert_eq!(event["id"], "alone");
    user.expect_nothing().await;
    let (status, body) = lenient.get("/ready").await;
    assert_eq!((status, body), (200, json!({ "status": "ready", "warning": "redis_history_shard_without_replica" })));
    let metrics = lenient.http.get(lenient.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("fixrx_redis_history_replicas 0"), "{metrics}");

    // The first refusal finds the shard alone after the append; the next ones refuse
    // before storing anything.
    let (status, body) = strict.post_event(keyed_event("cr1", "strict-0")).await;
    assert_eq!(status, 503, "{body}");
    for i in 1..4 {
        assert_eq!(strict.post_event(keyed_event("cr1", &format!("strict-{i}"))).await.0, 503);
    }
    let (status, body) = strict.get("/ready").await;
    assert_eq!((status, body["warning"].as_str()), (200, Some("redis_history_shard_without_replica")));
    // Only the first refused event was stored (a 503 may still be delivered); no other.
    let mut refused_but_stored = Vec::new();
    while let Ok(Some(Seen::Event(_, e))) = tokio::time::timeout(QUIET, user.rx.recv()).await {
        refused_but_stored.push(e["id"].as_str().unwrap_or_default().to_owned());
    }
    assert!(refused_but_stored.iter().all(|id| id == "strict-0"), "{refused_but_stored:?}");
}

#[tokio::test]
async fn an_event_its_replica_never_got_is_not_delivered_and_after_failover_its_retry_arrives_once() {
    let seed = 22_003;
    let mut cluster = RedisCluster::start();
    let nodes = cluster_nodes(&cluster, 2).await;
    let user = format!("cc{seed}");
    let mut events = follow(&nodes, user.clone());
    assert_eq!(post(&nodes[1], "/api/v1/events", &keyed_event(&user, "warm-up")).await, 202);
    assert_eq!(received(&mut events, Duration::from_secs(2)).await.0, ["warm-up"]);

    // Cut the replica off: its primary drops the link, and the replica's new credentials
    // fail, so it cannot come back (a partition, in effect).
    let primary = cluster.primary_of("{history}");
    let replica = cluster.replica_of(primary);
    assert!(command(replica, "CONFIG SET masteruser nobody").contains("OK"));
    assert!(command(replica, "CONFIG SET masterauth wrong").contains("OK"));
    command(primary, "CLIENT KILL TYPE replica");
    let status = post(&nodes[0], "/api/v1/events", &keyed_event(&user, "cut-off")).await;
    assert_eq!(status, 503, "seed {seed}: acknowledged with no replica to have it");
    // On the primary only: not delivered (a failover now would take it back).
    let (early, _) = received(&mut events, Duration::from_millis(800)).await;
    assert!(early.is_empty(), "seed {seed}: delivered what no replica had: {early:?}");

    cluster.kill(primary);
    let statuses = until_accepted(&nodes, "/api/v1/events", &keyed_event(&user, "cut-off"), 1).await;
    assert_eq!(statuses.last(), Some(&202), "seed {seed}: {statuses:?}");
    let (got, recoveries) = received(&mut events, NO_SECOND_COPY).await;
    println!(
        "cluster_faults: replica cut off, primary killed: attempts to 202 {statuses:?}, delivered {got:?}, recoveries {recoveries}"
    );
    exactly_once(&got, &["cut-off".to_owned()], seed);
}
