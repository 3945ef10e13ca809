//! Three instances on a real Redis Cluster (three primaries, three replicas): delivery,
//! presence, disconnect and idempotency across instances, and a primary's failover.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::*;
use crate::hooks;
use crate::redis_cluster::RedisCluster;

async fn instances(cluster: &RedisCluster, n: usize, webhook: &str) -> Vec<TestApp> {
    let urls = cluster.urls();
    let hooks = [("WEBHOOK_URL", webhook), ("WEBHOOK_SECRET", hooks::SECRET), ("PRESENCE_OFFLINE_GRACE_MS", "500")];
    let mut nodes = Vec::new();
    for _ in 0..n {
        let vars: Vec<(&str, &str)> =
            std::iter::once(("REDIS_CLUSTER_URLS", urls.as_str())).chain(hooks.iter().copied()).collect();
        nodes.push(spawn_node(&vars).await);
    }
    nodes
}

#[tokio::test]
async fn instances_on_a_redis_cluster_share_rooms_presence_disconnect_and_idempotency() {
    let cluster = RedisCluster::start();
    let (webhook, received) = hooks::receiver().await;
    let nodes = instances(&cluster, 3, &webhook).await;
    let mut user = connect_user(&nodes[0], "cu1").await;
    let mut vendor = connect_vendor(&nodes[1], "cowner", "cv1").await;
    let mut bystander = connect_user(&nodes[2], "cu2").await;

    for (i, event_type) in ALL_TYPES.iter().enumerate() {
        let (status, answer) = nodes[(i + 2) % 3].post_event(event_body(event_type, "cu1", "cv1")).await;
        assert_eq!(status, 202, "{event_type}: {answer}");
        assert_eq!(vendor.expect_event(event_type).await["id"], answer["id"]);
        if !event_type.starts_with("service:") {
            assert_eq!(user.expect_event(event_type).await["id"], answer["id"]);
        }
    }

    let mut body = event_body("payment:completed", "cu1", "cv1");
    body["id"] = json!("cluster-pay-1");
    let first = nodes[0].post_event(body.clone()).await;
    let again = nodes[2].post_event(body).await;
    assert_eq!(first.0, 202);
    assert_eq!(first, again, "a retry on another instance is answered, not emitted again");
    user.expect_event("payment:completed").await;
    vendor.expect_event("payment:completed").await;

    let _second = connect_user(&nodes[2], "cu1").await;
    for node in &nodes {
        assert_eq!(node.get("/api/v1/presence/user/cu1").await, (200, json!({ "online": true, "connections": 2 })));
        assert_eq!(node.get("/api/v1/presence/vendor/cv1").await.1["connections"], 1);
    }
    let (status, answer) = nodes[1].post("/api/v1/users/cu1/disconnect", json!({})).await;
    assert_eq!((status, answer), (200, json!({ "disconnected": 2 })));
    user.expect_disconnect().await;
    tokio::join!(vendor.expect_nothing(), bystander.expect_nothing());
    // Presence webhooks on the cluster: one online and one offline for sockets on two instances.
    hooks::wait_for(&received, "user:cu1", 2, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(received.types("user:cu1"), ["presence.online", "presence.offline"]);
    assert!(received.all_signed());
    assert_eq!(nodes[0].get("/ready").await.0, 200);
}

#[tokio::test]
async fn a_primary_killed_mid_run_fails_over_and_no_accepted_event_is_lost() {
    let mut cluster = RedisCluster::start();
    let (webhook, _received) = hooks::receiver().await;
    let nodes = instances(&cluster, 3, &webhook).await;
    let mut user = connect_user(&nodes[0], "fu1").await;
    let (status, _) = nodes[1].post_event(event_body("booking:created", "fu1", "fv1")).await;
    assert_eq!(status, 202);
    user.expect_event("booking:created").await;

    // The primary of the history's slot: every event is written there.
    let primary = cluster.primary_of("{history}");
    let started = Instant::now();
    cluster.kill(primary);
    let mut accepted = Vec::new();
    let mut refused = 0;
    let mut first_accept_after: Option<Duration> = None;
    let mut timeline = vec![format!("{:>6} ms  killed the primary on port {primary}", 0)];
    for i in 0.. {
        if started.elapsed() > Duration::from_secs(30) || (first_accept_after.is_some() && accepted.len() >= 10) {
            break;
        }
        let mut body = event_body("booking:status_changed", "fu1", "fv1");
        body["id"] = json!(format!("failover-{i}"));
        let (status, answer) = nodes[i % 3].post_event(body).await;
        match status {
            202 => {
                if first_accept_after.is_none() {
                    first_accept_after = Some(started.elapsed());
                    timeline
                        .push(format!("{:>6} ms  first 202 after {refused} refusals", started.elapsed().as_millis()));
                }
                accepted.push(answer["id"].as_str().unwrap_or_default().to_owned());
            }
            503 => {
                if refused == 0 {
                    timeline.push(format!("{:>6} ms  first 503", started.elapsed().as_millis()));
                }
                refused += 1;
            }
            other => panic!("during the failover: {other} {answer}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(first_accept_after.is_some(), "no event accepted within 30 s of the kill");
    // Every accepted event arrives, in order, once. A refused one (`503`: not confirmed,
    // say stored while no replica had it) may still arrive, at most once.
    let mut got = Vec::new();
    while !accepted.iter().all(|id| got.contains(id)) {
        let event = user.expect_event_within("booking:status_changed", Duration::from_secs(20)).await;
        if got.is_empty() {
            timeline.push(format!("{:>6} ms  first delivery after the kill", started.elapsed().as_millis()));
        }
        got.push(event["id"].as_str().unwrap_or_default().to_owned());
    }
    timeline.push(format!("{:>6} ms  all {} accepted events delivered", started.elapsed().as_millis(), accepted.len()));
    println!("failover timeline:\n{}", timeline.join("\n"));
    let in_order: Vec<&String> = got.iter().filter(|id| accepted.contains(id)).collect();
    assert_eq!(in_order, accepted.iter().collect::<Vec<_>>());
    let mut unique = got.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), got.len(), "an event delivered twice: {got:?}");
    user.expect_nothing().await;
    // The cluster healed: every instance is ready again.
    cluster.wait_ok(Duration::from_secs(20));
    for node in &nodes {
        let deadline = Instant::now() + Duration::from_secs(10);
        while node.get("/ready").await.0 != 200 {
            assert!(Instant::now() < deadline, "an instance did not become ready again");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
