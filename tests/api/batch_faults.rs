//! Batches while Redis stalls (CONTRACT §12): a batch is all or nothing. A `202` means
//! every event is delivered once, in order; an error means none is, then or later; and a
//! retry of a failed batch, with or without `id`s, delivers each event exactly once.
//!
//! Seeded: the pauses' lengths and when they hit; a failure prints its seed.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::*;
use crate::redis_server::RedisServer;

/// Events per batch: the largest batch the API takes.
const BATCH: usize = 500;
/// How long we wait for an event that must not come (a late append lands by then).
const NO_LATE_COPY: Duration = Duration::from_millis(3500);

/// A batch of `payment:completed` events to `user`, each named `<tag>-<i>` (and, keyed,
/// with the id `<tag>-k<i>`).
fn batch(tag: &str, user: &str, keyed: bool) -> Value {
    let events: Vec<Value> = (0..BATCH)
        .map(|i| {
            let mut event = json!({ "type": "payment:completed",
                "payment": { "id": format!("{tag}-{i}"), "userId": user, "vendorId": "v1", "amount": i } });
            if keyed {
                event["id"] = json!(format!("{tag}-k{i}"));
            }
            event
        })
        .collect();
    json!({ "events": events })
}

fn names(tag: &str) -> Vec<String> {
    (0..BATCH).map(|i| format!("{tag}-{i}")).collect()
}

/// `CLIENT PAUSE <ms> WRITE` on a connection of its own (the server's are the ones paused).
fn pause(port: u16, ms: u64) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("redis answers");
    stream.write_all(format!("CLIENT PAUSE {ms} WRITE\r\n").as_bytes()).expect("sent");
    let mut reply = [0u8; 5];
    stream.read_exact(&mut reply).expect("reply");
    assert_eq!(&reply, b"+OK\r\n");
}

async fn post_batch(app: &TestApp, body: &Value) -> (u16, Value) {
    let res = app
        .http
        .post(app.url("/api/v1/events/batch"))
        .bearer_auth(API_TOKEN)
        .json(body)
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .expect("request");
    read(res).await
}

/// Every `payment:completed` the user receives until nothing came for `quiet`: the
/// payments' ids, in order of arrival.
async fn received(user: &mut TestClient, quiet: Duration) -> Vec<String> {
    let mut seen = Vec::new();
    while let Ok(Some(event)) = tokio::time::timeout(quiet, user.rx.recv()).await {
        match event {
            Seen::Event(name, v) if name == "payment:completed" => {
                seen.push(v["payment"]["id"].as_str().unwrap_or_default().to_owned());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    seen
}

/// Posts batches while `CLIENT PAUSE <ms> WRITE` hits before, or 5 to 80 ms after, each
/// request starts (issued on a connection of its own), checks each answer against what arrives,
/// then retries the failed batches until `202` and checks every event arrived once.
async fn batches_under_write_pauses_are_all_or_nothing(keyed: bool, seed: u64) {
    let mut failures = 0;
    let mut rng = fastrand::Rng::with_seed(seed);
    let redis = RedisServer::start();
    let app = spawn_node(&[("REDIS_URL", &redis.url())]).await;
    let user_id = format!("u{seed}");
    let mut user = connect_user(&app, &user_id).await;
    // Redis has the append script, as on a server that ran for a while.
    assert_eq!(app.post_event(event_body("payment:completed", "warm-up", "v0")).await.0, 202, "seed {seed}");

    let mut failed = Vec::new();
    let mut delivered: Vec<String> = Vec::new();
    // When each pause hits: before the request (`None`: it surely meets the batch's one
    // append), or so many ms after the request starts.
    let schedule = [None, Some(5), Some(20), Some(80), None, Some(40)];
    for (round, at_ms) in schedule.into_iter().enumerate() {
        let tag = format!("s{seed}-b{round}");
        let body = batch(&tag, &user_id, keyed);
        // Longer than the server's 2 s timeout on a Redis command (the first, surely
        // failing); just under it (the append starts past its deadline but is answered
        // in time); or short.
        let pause_ms = match (round, at_ms) {
            (0, _) => rng.u64(2_300..3_000),
            (_, None) => rng.u64(1_600..1_900),
            _ if rng.bool() => rng.u64(2_300..3_000),
            _ => rng.u64(50..400),
        };
        let port = redis.port;
        let pauser = match at_ms {
            None => {
                tokio::task::spawn_blocking(move || pause(port, pause_ms)).await.unwrap();
                tokio::spawn(async {})
            }
            Some(at_ms) => tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(at_ms)).await;
                tokio::task::spawn_blocking(move || pause(port, pause_ms)).await.unwrap();
            }),
        };
        let started = Instant::now();
        let (status, answer) = post_batch(&app, &body).await;
        pauser.await.unwrap();
        let took = started.elapsed();
        let seen = received(&mut user, NO_LATE_COPY).await;
        eprintln!(
            "seed {seed} batch {round}: pause {pause_ms} ms at {at_ms:?} ms: {status} in {took:?}, {} delivered",
            seen.len()
        );
        match status {
            202 => {
                assert_eq!(answer["events"].as_array().map(Vec::len), Some(BATCH), "seed {seed} batch {round}");
                assert_eq!(seen, names(&tag), "seed {seed} batch {round}: a 202 delivers every event once, in order");
            }
            503 => {
                assert!(
                    seen.is_empty(),
                    "seed {seed} batch {round}: answered 503 but {} events were delivered",
                    seen.len()
                );
                failures += 1;
                failed.push((tag, body));
            }
            other => panic!("seed {seed} batch {round}: answered {other} {answer}"),
        }
        delivered.extend(seen);
        // Until the pause is over, on the test's side too.
        tokio::time::sleep(Duration::from_millis(pause_ms.saturating_sub(took.as_millis() as u64))).await;
    }

    assert!(failures > 0, "seed {seed}: no pause made a batch fail: the test proved nothing");
    for (tag, body) in failed {
        let give_up = Instant::now() + Duration::from_secs(15);
        loop {
            let (status, answer) = post_batch(&app, &body).await;
            if status == 202 {
                break;
            }
            assert_eq!(status, 503, "seed {seed} retry of {tag}: {answer}");
            assert!(Instant::now() < give_up, "seed {seed}: {tag} still refused after 15 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let seen = received(&mut user, NO_LATE_COPY).await;
        assert_eq!(seen, names(&tag), "seed {seed}: the retry of {tag} delivers every event once, in order");
        delivered.extend(seen);
    }
    let mut unique = delivered.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), delivered.len(), "seed {seed}: some event was delivered twice");
    assert_eq!(delivered.len(), 6 * BATCH, "seed {seed}: every event delivered");
}

#[tokio::test]
async fn batch_without_ids_under_write_pauses_is_all_or_nothing_and_retries_deliver_once() {
    batches_under_write_pauses_are_all_or_nothing(false, 0xba7c_0001).await;
}

#[tokio::test]
async fn batch_with_ids_under_write_pauses_is_all_or_nothing_and_retries_deliver_once() {
    batches_under_write_pauses_are_all_or_nothing(true, 0xba7c_0002).await;
}

#[tokio::test]
async fn batch_posted_twice_with_ids_is_answered_from_the_keys_the_second_time() {
    let redis = RedisServer::start();
    let app = spawn_node(&[("REDIS_URL", &redis.url())]).await;
    let mut user = connect_user(&app, "u-twice").await;
    let body = batch("twice", "u-twice", true);
    let (first, answer) = post_batch(&app, &body).await;
    assert_eq!(first, 202, "{answer}");
    assert_eq!(received(&mut user, QUIET).await, names("twice"));
    let (second, again) = post_batch(&app, &body).await;
    assert_eq!((second, &again), (202, &answer), "the same answer, from the keys");
    user.expect_nothing().await;
}

#[tokio::test]
async fn batch_wall_time_on_redis() {
    let redis = RedisServer::start();
    let app = spawn_node(&[("REDIS_URL", &redis.url())]).await;
    let mut times = Vec::new();
    for round in 0..20 {
        let body = batch(&format!("t{round}"), "u-timing", false);
        let started = Instant::now();
        assert_eq!(post_batch(&app, &body).await.0, 202);
        times.push(started.elapsed());
    }
    times.sort();
    eprintln!("500-event batch on Redis: median {:?} (min {:?}, max {:?})", times[10], times[0], times[19]);
    // The single-event path, for comparison before and after.
    let mut singles = Vec::new();
    for _ in 0..200 {
        let started = Instant::now();
        assert_eq!(app.post_event(event_body("payment:completed", "u-timing", "v1")).await.0, 202);
        singles.push(started.elapsed());
    }
    singles.sort();
    eprintln!("single event on Redis: median {:?} of 200", singles[100]);
}
