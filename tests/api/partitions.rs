//! The Redis history split into partitions (`REDIS_HISTORY_PARTITIONS`): its work spread
//! over a cluster's primaries, a vendor's staff whose two rooms live in two partitions
//! served each event once, and appends spanning partitions all or nothing: decided in
//! their first partition, applied in the others by their caller or by a sweep.

use std::collections::HashMap;
use std::time::Duration;

use fixrx_realtime::history::Partitioner;
use serde_json::{Map, Value, json};

use crate::helpers::*;
use crate::redis_cluster::{RedisCluster, command};
use crate::redis_server::RedisServer;

const PARTITIONS: u16 = 4;

/// A staff member (`sub`) of a vendor whose two rooms live in different partitions.
fn staff_in_two_partitions(tag: &str, partitions: u16) -> (String, String) {
    let p = Partitioner::new(partitions);
    let sub = format!("{tag}-staff");
    let vendor = (0..)
        .map(|i| format!("{tag}-vendor-{i}"))
        .find(|v| p.of(&format!("vendor:{v}")) != p.of(&format!("user:{sub}")))
        .expect("some vendor id lands elsewhere");
    (sub, vendor)
}

fn payment(user: &str, vendor: Option<&str>, id: &str) -> Value {
    let mut payment = json!({ "id": id, "userId": user, "amount": 5 });
    if let Some(v) = vendor {
        payment["vendorId"] = json!(v);
    }
    json!({ "type": "payment:completed", "payment": payment })
}

fn service(vendor: &str, id: &str) -> Value {
    json!({ "type": "service:updated", "service": { "id": id, "vendorId": vendor } })
}

async fn accepted(app: &TestApp, body: Value) -> String {
    let (status, answer) = app.post_event(body).await;
    assert_eq!(status, 202, "{answer}");
    answer["id"].as_str().expect("an id").to_owned()
}

/// The ids of the events a client receives until it is quiet, keeping its offsets.
async fn drain(client: &mut TestClient, offsets: &mut Map<String, Value>) -> Vec<String> {
    let mut ids = Vec::new();
    while let Ok(Some(seen)) = tokio::time::timeout(Duration::from_millis(800), client.rx.recv()).await {
        if let Seen::Event(name, payload) = seen {
            if let Some(o) = payload.get("offsets").and_then(Value::as_object) {
                offsets.extend(o.clone());
            }
            if name != "recovery" {
                ids.push(payload["id"].as_str().unwrap_or_default().to_owned());
            } else {
                assert_eq!(payload["recovered"], true, "{payload}");
                ids.push("recovery".into());
            }
        }
    }
    ids
}

/// Where each id sits in `order` (the order posted), for the ids present.
fn ranks(ids: &[String], order: &[String]) -> Vec<usize> {
    ids.iter().filter_map(|id| order.iter().position(|o| o == id)).collect()
}

#[tokio::test]
async fn a_staff_socket_whose_rooms_live_in_two_partitions_gets_every_event_once_live_and_on_recovery() {
    let redis = RedisServer::start();
    let parts = PARTITIONS.to_string();
    let vars = [("REDIS_URL", redis.url()), ("REDIS_HISTORY_PARTITIONS", parts)];
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = spawn_node(&vars).await;
    let (sub, vendor) = staff_in_two_partitions("pt", PARTITIONS);
    let token = vendor_token(&sub, &vendor);
    let auth = |offsets: &Map<String, Value>| TokenAt::AuthObject(json!({ "token": token, "offsets": offsets }));

    let mut offsets = Map::new();
    let mut staff = connect(&app, auth(&offsets)).await.expect("staff connects");
    let mut customer = connect_user(&app, &sub).await;
    assert_eq!(drain(&mut staff, &mut offsets).await, ["recovery"]);

    // To both rooms (two partitions), to the user room alone, to the vendor room alone.
    let mut posted = Vec::new();
    for i in 0..6 {
        posted.push(accepted(&app, payment(&sub, Some(&vendor), &format!("both-{i}"))).await);
        posted.push(accepted(&app, payment(&sub, None, &format!("user-{i}"))).await);
        posted.push(accepted(&app, service(&vendor, &format!("svc-{i}"))).await);
    }
    let got = drain(&mut staff, &mut offsets).await;
    let mut sorted = got.clone();
    sorted.sort();
    let mut want = posted.clone();
    want.sort();
    assert_eq!(sorted, want, "each event once: got {got:?}");
    // Per room: the events sent to one room alone arrive in their order, and so do the
    // events to both rooms (the order of the first of them).
    let user_only: Vec<String> = posted.iter().skip(1).step_by(3).cloned().collect();
    let vendor_only: Vec<String> = posted.iter().skip(2).step_by(3).cloned().collect();
    let both: Vec<String> = posted.iter().step_by(3).cloned().collect();
    for (what, order) in [("user room alone", &user_only), ("vendor room alone", &vendor_only), ("both", &both)] {
        let r = ranks(&got, order);
        assert!(r.windows(2).all(|w| w[0] < w[1]), "{what} out of order: {got:?}");
    }
    // The customer (the same user id, its user room only) got what went to that room.
    let mut none = Map::new();
    let customer_got = drain(&mut customer, &mut none).await;
    let mut expected: Vec<String> = both.iter().chain(&user_only).cloned().collect();
    expected.sort();
    let mut customer_sorted = customer_got.clone();
    customer_sorted.sort();
    assert_eq!(customer_sorted, expected);
    assert!(offsets.contains_key(&format!("user:{sub}")) && offsets.contains_key(&format!("vendor:{vendor}")));

    // Away, then back with the offsets: what it missed, once, then recovery.
    staff.client.disconnect().await.expect("disconnects");
    let mut missed = Vec::new();
    for i in 0..4 {
        missed.push(accepted(&app, payment(&sub, Some(&vendor), &format!("away-both-{i}"))).await);
        missed.push(accepted(&app, service(&vendor, &format!("away-svc-{i}"))).await);
        missed.push(accepted(&app, payment(&sub, None, &format!("away-user-{i}"))).await);
    }
    let mut back = connect(&app, auth(&offsets)).await.expect("staff reconnects");
    let replayed = drain(&mut back, &mut offsets).await;
    assert_eq!(replayed.last().map(String::as_str), Some("recovery"), "{replayed:?}");
    let mut replayed_sorted: Vec<String> = replayed.iter().filter(|id| *id != "recovery").cloned().collect();
    replayed_sorted.sort();
    missed.sort();
    assert_eq!(replayed_sorted, missed, "the missed events, once each: {replayed:?}");
    let live = accepted(&app, payment(&sub, Some(&vendor), "after")).await;
    assert_eq!(drain(&mut back, &mut offsets).await, [live]);
}

#[tokio::test]
async fn on_three_primaries_every_primary_holds_history_and_a_batch_spanning_them_is_delivered_whole_once() {
    let cluster = RedisCluster::start();
    let urls = cluster.urls();
    let vars = [("REDIS_CLUSTER_URLS", urls.as_str()), ("REDIS_HISTORY_PARTITIONS", "3")];
    let app = spawn_node(&vars).await;
    let mut vendors = Vec::new();
    for i in 0..60 {
        vendors.push(connect_vendor(&app, &format!("spread-{i}"), &format!("spread-{i}")).await);
    }
    for i in 0..60 {
        accepted(&app, service(&format!("spread-{i}"), &format!("s-{i}"))).await;
    }
    for (i, v) in vendors.iter_mut().enumerate() {
        let got = v.expect_event("service:updated").await;
        assert_eq!(got["service"]["vendorId"], format!("spread-{i}"));
    }
    // Each primary holds one partition: its log, and rooms' streams.
    let mut logs_by_primary: HashMap<u16, usize> = HashMap::new();
    for k in 0..3 {
        let tag = fixrx_realtime::history::partition::hash_tag(k, 3);
        let log = format!("fixrx:{{{tag}}}:log");
        let primary = cluster.primary_of(&log);
        let len: usize = command(primary, &format!("XLEN {log}")).trim_start_matches(':').trim().parse().expect("XLEN");
        assert!(len > 0, "partition {k}'s log is empty");
        *logs_by_primary.entry(primary).or_default() += 1;
    }
    assert_eq!(logs_by_primary.len(), 3, "three partitions on three primaries: {logs_by_primary:?}");

    // A batch to vendors of all three partitions (and a staff member whose two rooms
    // are in two of them) is taken whole, each event reaching each socket once, in the
    // batch's order per room; and its record is gone once every partition has it.
    let (sub, vendor) = staff_in_two_partitions("batch", 3);
    let p = Partitioner::new(3);
    let mut staff = connect_vendor(&app, &sub, &vendor).await;
    let events: Vec<Value> = (0..60)
        .map(|i| service(&format!("spread-{i}"), &format!("b-{i}")))
        .chain([payment(&sub, Some(&vendor), "b-staff"), service(&format!("spread-{}", 7), "b-again")])
        .collect();
    let (status, answer) = app.post("/api/v1/events/batch", json!({ "events": events })).await;
    assert_eq!(status, 202, "{answer}");
    for (i, v) in vendors.iter_mut().enumerate() {
        let got = v.expect_event("service:updated").await;
        assert_eq!(got["service"]["id"], format!("b-{i}"));
        if i == 7 {
            assert_eq!(v.expect_event("service:updated").await["service"]["id"], "b-again");
        }
        v.expect_nothing().await;
    }
    assert_eq!(staff.expect_event("payment:completed").await["payment"]["id"], "b-staff");
    staff.expect_nothing().await;
    let first = (0..60).map(|i| p.of(&format!("vendor:spread-{i}"))).min().expect("vendors");
    let tag = fixrx_realtime::history::partition::hash_tag(first, 3);
    let spreads = format!("fixrx:{{{tag}}}:spreads");
    let until = std::time::Instant::now() + Duration::from_secs(3);
    while command(cluster.primary_of(&spreads), &format!("ZCARD {spreads}")).trim() != ":0" {
        assert!(std::time::Instant::now() < until, "the batch's record is still there");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The port of the primary holding partition `k` of `n` now.
fn primary_of_partition(cluster: &RedisCluster, k: usize, n: usize) -> u16 {
    let tag = fixrx_realtime::history::partition::hash_tag(k, n);
    cluster.primary_of(&format!("fixrx:{{{tag}}}:log"))
}

#[tokio::test]
async fn an_event_whose_second_partition_lost_its_primary_is_completed_by_its_retry_and_reaches_each_socket_once() {
    let mut cluster = RedisCluster::start();
    let urls = cluster.urls();
    let n = 3;
    let vars = [("REDIS_CLUSTER_URLS", urls.as_str()), ("REDIS_HISTORY_PARTITIONS", "3")];
    let app = spawn_node(&vars).await;
    // A staff member whose user room and vendor room live on different primaries.
    let p = Partitioner::new(3);
    let sub = "half-staff";
    let first = p.of(&format!("user:{sub}"));
    let vendor = (0..)
        .map(|i| format!("half-vendor-{i}"))
        .find(|v| p.of(&format!("vendor:{v}")) != first)
        .expect("a vendor elsewhere");
    // Copies are stored lowest partition first: `first` decides, `second` follows.
    let (first, second) = (first.min(p.of(&format!("vendor:{vendor}"))), first.max(p.of(&format!("vendor:{vendor}"))));
    let mut staff = connect_vendor(&app, sub, &vendor).await;
    let mut customer = connect_user(&app, sub).await;
    let mut colleague = connect_vendor(&app, "half-colleague", &vendor).await;

    // The second partition's primary dies: the event is decided in the first partition,
    // answered `503` while the second does not answer, and completed by its retry (with
    // the same id) once the replica took over.
    let victim = primary_of_partition(&cluster, second, n);
    assert_ne!(victim, primary_of_partition(&cluster, first, n));
    cluster.kill(victim);
    let mut body = payment(sub, Some(&vendor), "half-done");
    body["id"] = json!("half-done-1");
    let mut tries = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, answer) = app.post_event(body.clone()).await;
        tries.push(status);
        if status == 202 {
            assert_eq!(answer["id"], "half-done-1");
            break;
        }
        assert_eq!(status, 503, "{answer}");
        assert!(std::time::Instant::now() < deadline, "never accepted: {tries:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("tries until accepted: {tries:?}");
    // Each socket gets it once, through whichever copy its rooms have (the colleague's
    // and the staff member's possibly only after the failover).
    for (who, client) in [("customer", &mut customer), ("colleague", &mut colleague), ("staff", &mut staff)] {
        let got = client.expect_event_within("payment:completed", Duration::from_secs(20)).await;
        assert_eq!(got["id"], "half-done-1", "{who}");
    }
    // A retry under the same key is answered from its record, and delivers nothing.
    let (status, answer) = app.post_event(body).await;
    assert_eq!(status, 202, "{answer}");
    for client in [&mut customer, &mut colleague, &mut staff] {
        client.expect_nothing().await;
    }
}

#[tokio::test]
async fn a_batch_decided_by_an_instance_that_stopped_half_way_is_completed_by_another_instances_sweep() {
    let cluster = RedisCluster::start();
    let urls = cluster.urls();
    let vars = [("REDIS_CLUSTER_URLS", urls.as_str()), ("REDIS_HISTORY_PARTITIONS", "3")];
    let (doomed, survivor) = (spawn_node(&vars).await, spawn_node(&vars).await);
    let p = Partitioner::new(3);
    let vendors: Vec<String> = (0..30).map(|i| format!("sweep-{i}")).collect();
    // The batch is decided in the lowest of its partitions.
    let first = vendors.iter().map(|v| p.of(&format!("vendor:{v}"))).min().expect("vendors");
    let later: Vec<&String> = vendors.iter().filter(|v| p.of(&format!("vendor:{v}")) != first).collect();
    assert!(later.len() > 5 && later.len() < 25, "vendors in each partition: {later:?}");
    let mut sockets = Vec::new();
    for v in &vendors {
        sockets.push(connect_vendor(&survivor, v, v).await);
    }
    // Every later partition's primary stops taking writes: the batch is decided in the
    // first partition, and its caller stops while waiting for the others; the commands it
    // left queued there are dropped with its connections.
    let paused: Vec<u16> = (0..3).filter(|k| *k != first).map(|k| primary_of_partition(&cluster, k, 3)).collect();
    for port in &paused {
        assert!(command(*port, "CLIENT PAUSE 20000 WRITE").contains("OK"));
    }
    let events: Vec<Value> = vendors.iter().map(|v| service(v, &format!("{v}-b"))).collect();
    let post =
        doomed.http.post(doomed.url("/api/v1/events/batch")).bearer_auth(API_TOKEN).json(&json!({ "events": events }));
    let _ = tokio::time::timeout(Duration::from_millis(1500), post.send()).await;
    doomed.stop().await;
    // Decided: the first partition's vendors have it; the others nothing yet.
    for (v, socket) in vendors.iter().zip(sockets.iter_mut()).filter(|(v, _)| !later.contains(v)) {
        assert_eq!(socket.expect_event("service:updated").await["service"]["id"], format!("{v}-b"));
    }
    tokio::time::sleep(QUIET).await;
    for (v, socket) in vendors.iter().zip(sockets.iter_mut()).filter(|(v, _)| later.contains(v)) {
        assert!(socket.rx.try_recv().is_err(), "{v} got the batch before its partition had it");
    }
    for port in &paused {
        command(*port, "CLIENT KILL TYPE normal");
        command(*port, "CLIENT UNPAUSE");
    }
    // The others get it from the sweep.
    for (v, socket) in vendors.iter().zip(sockets.iter_mut()).filter(|(v, _)| later.contains(v)) {
        let got = socket.expect_event_within("service:updated", Duration::from_secs(30)).await;
        assert_eq!(got["service"]["id"], format!("{v}-b"), "{v}");
    }
    for socket in sockets.iter_mut() {
        socket.expect_nothing().await;
    }
}

#[tokio::test]
async fn an_instance_with_another_partition_count_than_the_history_in_redis_refuses_to_start() {
    let redis = RedisServer::start();
    let url = redis.url();
    let first = spawn_node(&[("REDIS_URL", url.as_str())]).await;
    let error = start_error(&[("REDIS_URL", url.as_str()), ("REDIS_HISTORY_PARTITIONS", "3")]).await;
    assert!(error.contains("REDIS_HISTORY_PARTITIONS=3") && error.contains("split into 1"), "{error}");
    // The same count starts, and serves.
    let second = spawn_node(&[("REDIS_URL", url.as_str()), ("REDIS_HISTORY_PARTITIONS", "1")]).await;
    let mut user = connect_user(&second, "layout-u").await;
    accepted(&first, payment("layout-u", None, "layout-1")).await;
    assert_eq!(user.expect_event("payment:completed").await["payment"]["id"], "layout-1");
}

#[tokio::test]
async fn a_batch_whose_later_partitions_stall_is_answered_202_once_decided_and_delivered_once_when_they_answer() {
    let cluster = RedisCluster::start();
    let urls = cluster.urls();
    let vars = [("REDIS_CLUSTER_URLS", urls.as_str()), ("REDIS_HISTORY_PARTITIONS", "3")];
    let app = spawn_node(&vars).await;
    let p = Partitioner::new(3);
    let vendors: Vec<String> = (0..24).map(|i| format!("stall-{i}")).collect();
    // The batch is decided in the lowest of its partitions.
    let first = vendors.iter().map(|v| p.of(&format!("vendor:{v}"))).min().expect("vendors");
    let mut sockets = Vec::new();
    for v in &vendors {
        sockets.push(connect_vendor(&app, v, v).await);
    }
    // The later partitions' primaries take no writes for 4 s: longer than the caller
    // applies for, so the batch is answered once decided in the first partition.
    for k in (0..3).filter(|k| *k != first) {
        assert!(command(primary_of_partition(&cluster, k, 3), "CLIENT PAUSE 4000 WRITE").contains("OK"));
    }
    let events: Vec<Value> = vendors.iter().map(|v| service(v, &format!("{v}-s"))).collect();
    let (status, answer) = app.post("/api/v1/events/batch", json!({ "events": events })).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["events"].as_array().map(Vec::len), Some(vendors.len()), "{answer}");
    for (v, socket) in vendors.iter().zip(sockets.iter_mut()) {
        let got = socket.expect_event_within("service:updated", Duration::from_secs(15)).await;
        assert_eq!(got["service"]["id"], format!("{v}-s"), "{v}");
    }
    for socket in sockets.iter_mut() {
        socket.expect_nothing().await;
    }
}

/// A figure from an instance's `/metrics`.
async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app.http.get(app.url("/metrics")).send().await.expect("metrics").text().await.expect("body");
    let line = text.lines().find(|l| l.split_whitespace().next() == Some(name));
    line.and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap_or_else(|| panic!("no {name} in {text}"))
}

#[tokio::test]
async fn an_instance_reads_only_the_partitions_its_sockets_need_and_none_without_sockets() {
    let cluster = RedisCluster::start();
    let urls = cluster.urls();
    let vars = [("REDIS_CLUSTER_URLS", urls.as_str()), ("REDIS_HISTORY_PARTITIONS", "3")];
    let (empty, one) = (spawn_node(&vars).await, spawn_node(&vars).await);
    let p = Partitioner::new(3);
    let vendors: Vec<String> = (0..60).map(|i| format!("reads-{i}")).collect();
    let part = |v: &String| p.of(&format!("vendor:{v}"));
    // `one` has sockets in partition 0 only; `empty` has none.
    let mut sockets = Vec::new();
    for v in vendors.iter().filter(|v| part(v) == 0) {
        sockets.push((v.clone(), connect_vendor(&one, v, v).await));
    }
    assert!(sockets.len() > 5 && sockets.len() < 40, "{} vendors in partition 0", sockets.len());
    for v in &vendors {
        accepted(&empty, service(v, &format!("{v}-1"))).await;
    }
    for (v, socket) in sockets.iter_mut() {
        assert_eq!(socket.expect_event("service:updated").await["service"]["id"], format!("{v}-1"));
        socket.expect_nothing().await;
    }
    assert_eq!(metric(&empty, "fixrx_history_partitions_read").await, 0.0);
    assert_eq!(metric(&empty, "fixrx_history_log_entries_read_total").await, 0.0);
    assert_eq!(metric(&one, "fixrx_history_partitions_read").await, 1.0);
    let read = metric(&one, "fixrx_history_log_entries_read_total").await;
    assert!(read >= sockets.len() as f64 && read < vendors.len() as f64, "read {read} of {} events", vendors.len());

    // A socket for another partition starts its reader before it is attached: an event
    // accepted right after it connected reaches it.
    let elsewhere = vendors.iter().find(|v| part(v) == 1).expect("a vendor in partition 1");
    let mut late = connect_vendor(&empty, elsewhere, elsewhere).await;
    accepted(&one, service(elsewhere, "after-connect")).await;
    assert_eq!(late.expect_event("service:updated").await["service"]["id"], "after-connect");
    late.expect_nothing().await;
    assert_eq!(metric(&empty, "fixrx_history_partitions_read").await, 1.0);
}
