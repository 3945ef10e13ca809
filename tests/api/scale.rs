//! Several instances sharing rooms through a real Redis: delivery, presence,
//! disconnect, idempotency and batches across instances, and Redis faults.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::*;
use crate::redis_server::RedisServer;

async fn cluster(redis: &RedisServer, n: usize) -> Vec<TestApp> {
    let url = redis.url();
    let mut nodes = Vec::new();
    for _ in 0..n {
        nodes.push(spawn_node(&[("REDIS_URL", &url)]).await);
    }
    nodes
}

#[tokio::test]
async fn rest_on_one_instance_reaches_clients_on_the_others_for_each_event_type() {
    let redis = RedisServer::start();
    let nodes = cluster(&redis, 3).await;
    let mut user = connect_user(&nodes[1], "u1").await;
    let mut vendor = connect_vendor(&nodes[2], "owner", "v1").await;
    let mut bystander = connect_user(&nodes[0], "u2").await;
    for (i, event_type) in ALL_TYPES.iter().enumerate() {
        let node = &nodes[i % 3];
        let (status, answer) = node.post_event(event_body(event_type, "u1", "v1")).await;
        assert_eq!(status, 202, "{event_type}: {answer}");
        assert_eq!(vendor.expect_event(event_type).await["id"], answer["id"]);
        if !event_type.starts_with("service:") {
            assert_eq!(user.expect_event(event_type).await["id"], answer["id"]);
        }
    }
    tokio::join!(user.expect_nothing(), vendor.expect_nothing(), bystander.expect_nothing());
}

#[tokio::test]
async fn presence_counts_sockets_on_every_instance() {
    let redis = RedisServer::start();
    let nodes = cluster(&redis, 3).await;
    let _a = connect_user(&nodes[0], "u1").await;
    let _b = connect_user(&nodes[1], "u1").await;
    let _v = connect_vendor(&nodes[1], "owner", "v1").await;
    for node in &nodes {
        assert_eq!(node.get("/api/v1/presence/user/u1").await, (200, json!({ "online": true, "connections": 2 })));
        assert_eq!(node.get("/api/v1/presence/vendor/v1").await.1["connections"], 1);
        assert_eq!(node.get("/api/v1/presence/user/nobody").await.1["connections"], 0);
    }
}

#[tokio::test]
async fn disconnect_reaches_sockets_on_every_instance() {
    let redis = RedisServer::start();
    let nodes = cluster(&redis, 3).await;
    let mut a = connect_user(&nodes[0], "u1").await;
    let mut b = connect_user(&nodes[1], "u1").await;
    let mut other = connect_user(&nodes[1], "u2").await;
    let (status, body) = nodes[2].post("/api/v1/users/u1/disconnect", json!({})).await;
    assert_eq!((status, body), (200, json!({ "disconnected": 2 })));
    a.expect_disconnect().await;
    b.expect_disconnect().await;
    assert_eq!(nodes[0].get("/api/v1/presence/user/u1").await.1["connections"], 0);
    assert_eq!(other.ack("ping", json!({})).await["pong"], true);
    other.expect_nothing().await;
}

#[tokio::test]
async fn an_idempotency_key_retried_on_another_instance_is_not_emitted_twice() {
    let redis = RedisServer::start();
    let nodes = cluster(&redis, 2).await;
    let mut user = connect_user(&nodes[0], "u1").await;
    let mut body = event_body("payment:completed", "u1", "v1");
    body["id"] = json!("pay-evt-9");
    let first = nodes[0].post_event(body.clone()).await;
    let second = nodes[1].post_event(body.clone()).await;
    assert_eq!(first.0, 202);
    assert_eq!(first, second);
    user.expect_event("payment:completed").await;
    // Concurrent retries on both instances: still once.
    body["id"] = json!("pay-evt-10");
    let (x, y) = tokio::join!(nodes[0].post_event(body.clone()), nodes[1].post_event(body.clone()));
    assert_eq!(x, y);
    user.expect_event("payment:completed").await;
    user.expect_nothing().await;
}

#[tokio::test]
async fn a_batch_through_one_instance_reaches_clients_on_the_others() {
    let redis = RedisServer::start();
    let nodes = cluster(&redis, 2).await;
    let mut user = connect_user(&nodes[1], "u1").await;
    let events: Vec<_> = (0..20)
        .map(|i| {
            let mut e = event_body("booking:status_changed", "u1", "v1");
            e["booking"]["status"] = json!(format!("s{i}"));
            e
        })
        .collect();
    let (status, answer) = nodes[0].post("/api/v1/events/batch", json!({ "events": events })).await;
    assert_eq!(status, 202);
    for (i, a) in answer["events"].as_array().unwrap().iter().enumerate() {
        let got = user.expect_event("booking:status_changed").await;
        assert_eq!((got["id"].clone(), got["booking"]["status"].clone()), (a["id"].clone(), json!(format!("s{i}"))));
    }
    user.expect_nothing().await;
}

#[tokio::test]
async fn chat_crosses_instances() {
    let redis = RedisServer::start();
    let nodes = cluster(&redis, 2).await;
    let user = connect_user(&nodes[0], "u1").await;
    let mut vendor = connect_vendor(&nodes[1], "owner", "v1").await;
    let ack = user.ack("chat:send", json!({ "to": { "type": "vendor", "id": "v1" }, "text": "hello" })).await;
    let got = without_offsets(vendor.expect_event("chat:message").await, &["vendor:v1", "user:u1"]);
    assert_eq!(got, ack["message"]);
}

async fn wait_for_ready(node: &TestApp, want: u16) -> Duration {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(15) {
        if let Ok(res) = node.http.get(node.url("/ready")).send().await
            && res.status() == want
        {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/ready never answered {want}");
}

#[tokio::test]
async fn losing_redis_turns_ready_to_503_and_rest_answers_503_then_recovers_without_restart() {
    let mut redis = RedisServer::start();
    let nodes = cluster(&redis, 2).await;
    let mut user = connect_user(&nodes[1], "u1").await;

    redis.kill();
    for node in &nodes {
        wait_for_ready(node, 503).await;
        let res = node.http.get(node.url("/ready")).send().await.unwrap();
        assert_eq!(read(res).await.1, json!({ "status": "redis_unreachable" }));
    }
    let started = Instant::now();
    let (status, body) = nodes[0].post_event(event_body("booking:created", "u1", "v1")).await;
    assert_eq!((status, body["error"]["code"].clone()), (503, json!("unavailable")));
    assert!(started.elapsed() < Duration::from_secs(3), "503 must be prompt, took {:?}", started.elapsed());
    assert_eq!(nodes[0].get("/api/v1/presence/user/u1").await.0, 503);

    redis.restart();
    for node in &nodes {
        wait_for_ready(node, 200).await;
    }
    // Redis came back empty: the history is lost, so the connected socket is told (its
    // transport is closed, and a client with offsets would learn they are `unknown`).
    let told = tokio::time::timeout(WAIT, async {
        loop {
            match user.rx.recv().await {
                Some(Seen::Disconnected | Seen::ConnectError(_)) | None => return,
                Some(_) => continue,
            }
        }
    })
    .await;
    assert!(told.is_ok(), "a socket kept running on a history Redis lost");
    let mut user = connect_user(&nodes[1], "u1").await;
    // Delivery across instances works again, with no server restarted.
    let mut delivered = false;
    for _ in 0..20 {
        let (status, _) = nodes[0].post_event(event_body("booking:created", "u1", "v1")).await;
        if status == 202 {
            user.expect_event("booking:created").await;
            delivered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(delivered, "no cross-instance delivery after Redis came back");
    user.expect_nothing().await;
}

/// The binary's log lines up to "listening" (start-up checks log before it).
async fn startup_log(vars: &[(&str, &str)]) -> Vec<String> {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_fixrx-realtime"))
        .current_dir(std::env::temp_dir())
        .envs([("PORT", "0"), ("HOST", "127.0.0.1"), ("LOG_FORMAT", "json"), ("RUST_LOG", "info")])
        .envs([("JWT_SECRET", JWT_SECRET), ("API_TOKEN", API_TOKEN)])
        .envs(vars.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the binary");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut seen = Vec::new();
    let _ = tokio::time::timeout(WAIT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            let listening = line.contains("fixrx-realtime listening");
            seen.push(line);
            if listening {
                return;
            }
        }
    })
    .await;
    assert!(seen.iter().any(|l| l.contains("fixrx-realtime listening")), "never listened: {seen:?}");
    seen
}

#[tokio::test]
async fn a_redis_that_may_evict_the_history_is_reported_at_start_up() {
    let redis = RedisServer::start();
    let url = redis.url();
    for (policy, reported) in [("allkeys-lru", true), ("volatile-ttl", true), ("noeviction", false)] {
        assert_eq!(redis.command(&format!("CONFIG SET maxmemory-policy {policy}")), "+OK");
        let lines = startup_log(&[("REDIS_URL", &url)]).await;
        let found = lines.iter().any(|l| l.contains("maxmemory-policy may evict the event history"));
        assert_eq!(found, reported, "{policy}: {lines:?}");
    }
}
