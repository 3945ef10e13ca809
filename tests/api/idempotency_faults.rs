//! Idempotency keys while Redis stalls (CONTRACT §12): a key never blocks a retry for
//! long once Redis answers again, and a request that timed out while its append still
//! ran later is resolved by the retry, not guessed: the event is delivered exactly once.
//!
//! Each test is seeded (the key, the user, when the first request goes out within the
//! pause); a failure prints its seed.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fault_kit::redis_command;
use crate::helpers::*;
use crate::redis_server::RedisServer;

/// The server's timeout on one Redis command (`redis_link::driver::RESPONSE_TIMEOUT`).
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);
/// How soon after Redis answers again a retry must be answered `202`.
const ANSWERED_WITHIN: Duration = Duration::from_secs(5);
/// How long the retry loop may run after the pause, at most.
const GIVE_UP_AFTER: Duration = Duration::from_secs(12);
/// How long we wait for a second copy of the event (a late append lands by then).
const NO_SECOND_COPY: Duration = Duration::from_millis(1500);

/// When the retries start: once the pause is over, or right after the first answer
/// (while Redis may still be paused, so the retry's append queues behind the first's).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Retry {
    AfterThePause,
    AtOnce,
}

struct Stall {
    /// `ALL` or `WRITE`.
    mode: &'static str,
    pause: Duration,
    retry: Retry,
    seed: u64,
}

async fn post_keyed(app: &TestApp, key: &str, body: &Value) -> (u16, Value, bool) {
    let res = app
        .http
        .post(app.url("/api/v1/events"))
        .bearer_auth(API_TOKEN)
        .header("idempotency-key", key)
        .json(body)
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .expect("request");
    let replayed = res.headers().get("idempotent-replayed").is_some_and(|v| v == "true");
    let (status, answer) = read(res).await;
    (status, answer, replayed)
}

/// Pauses Redis, posts a keyed event during the pause, retries with the same key until
/// `202`, and checks the retry's delay and that the event arrives exactly once.
async fn a_stalled_key_is_answered_and_delivered_once(stall: Stall) {
    let seed = stall.seed;
    let mut rng = fastrand::Rng::with_seed(seed);
    let redis = RedisServer::start();
    let app = spawn_node(&[("REDIS_URL", &redis.url())]).await;
    let user_id = format!("u{seed}");
    let mut user = connect_user(&app, &user_id).await;
    let key = format!("stall-{seed}-{}", rng.u32(..));
    let body = event_body("booking:created", &user_id, "v1");
    // One event first, elsewhere: Redis then has the append script, as it has on a server
    // that ran for a while, so a first request that times out can still append later.
    assert_eq!(app.post_event(event_body("payment:completed", "warm-up", "v0")).await.0, 202, "seed {seed}");

    // On a connection of its own: the server's connections are the ones paused.
    let pause_ms = stall.pause.as_millis();
    assert_eq!(redis.command(&format!("CLIENT PAUSE {pause_ms} {}", stall.mode)), "+OK", "seed {seed}");
    // The pause started before the reply: it is over by then at the latest.
    let resumed = Instant::now() + stall.pause;
    tokio::time::sleep(Duration::from_millis(rng.u64(0..200))).await;
    let (first, answer, _) = post_keyed(&app, &key, &body).await;
    assert!(first == 503 || first == 202, "seed {seed}: the first request answered {first} {answer}");
    // Retried after the stall: once a write of our own goes through, Redis answers again
    // (our clock's estimate of the pause's end can be a few ms early, and a retry then
    // would still meet the stall).
    let resumed = match stall.retry {
        Retry::AfterThePause => {
            assert_eq!(redis_command(redis.port, "SET fixrx-test:resumed 1").await, "+OK", "seed {seed}");
            Instant::now()
        }
        Retry::AtOnce => resumed,
    };

    let give_up = resumed + GIVE_UP_AFTER;
    let mut tries = Vec::new();
    let (answer, replayed) = loop {
        let (status, answer, replayed) = post_keyed(&app, &key, &body).await;
        tries.push(status);
        if status == 202 {
            break (answer, replayed);
        }
        assert_eq!(status, 503, "seed {seed}: a retry answered {status} {answer}");
        assert!(
            Instant::now() < give_up,
            "seed {seed}: the key was still refused {GIVE_UP_AFTER:?} after Redis answered again \
             ({} retries, last {answer}); PTTL of the key in Redis: {} ms (before: {} ms)",
            tries.len(),
            redis.command(&format!("PTTL fixrx:{{history}}:idem:{key}")),
            redis.command(&format!("PTTL fixrx:idem:{key}")),
        );
        tokio::time::sleep(Duration::from_millis(100 + rng.u64(0..100))).await;
    };
    let answered_after = Instant::now().saturating_duration_since(resumed);
    assert!(
        answered_after <= ANSWERED_WITHIN,
        "seed {seed}: the retry was answered 202 only {answered_after:?} after Redis answered again (tries {tries:?})"
    );
    assert_eq!((answer["id"].as_str(), answer["type"].as_str()), (Some(key.as_str()), Some("booking:created")));
    if stall.retry == Retry::AtOnce {
        // The first request's append ran after its answer, and the retry found it.
        assert!(replayed, "seed {seed}: the first request's append did not run late (first {first}, tries {tries:?})");
    }
    eprintln!(
        "seed {seed}: first {first}, 202 {answered_after:?} after the pause (tries {tries:?}, replayed {replayed})"
    );

    // Exactly once: the event, then no second copy (a late append would have landed).
    let event = user.expect_event_within("booking:created", Duration::from_secs(10)).await;
    assert_eq!(event["id"], key.as_str(), "seed {seed}");
    let deadline = Instant::now() + NO_SECOND_COPY;
    while Instant::now() < deadline {
        user.expect_nothing().await;
    }

    // Later retries replay the same answer, and emit nothing.
    let (status, again, replayed) = post_keyed(&app, &key, &body).await;
    assert_eq!((status, &again, replayed), (202, &answer, true), "seed {seed}");
    user.expect_nothing().await;
}

#[tokio::test]
async fn a_key_posted_while_redis_is_paused_is_answered_soon_after_and_delivered_once() {
    a_stalled_key_is_answered_and_delivered_once(Stall {
        mode: "ALL",
        pause: Duration::from_millis(3000),
        retry: Retry::AfterThePause,
        seed: 0x1de3_0001,
    })
    .await;
}

#[tokio::test]
async fn a_key_posted_while_redis_refuses_writes_is_answered_soon_after_and_delivered_once() {
    a_stalled_key_is_answered_and_delivered_once(Stall {
        mode: "WRITE",
        pause: Duration::from_millis(3000),
        retry: Retry::AfterThePause,
        seed: 0x1de3_0002,
    })
    .await;
}

#[tokio::test]
async fn a_retry_after_an_append_that_timed_out_but_ran_later_delivers_the_event_once() {
    // Just over the server's timeout: the first request answers 503 while its append
    // waits in Redis, runs when the pause ends, and the retry (sent at once) must find it.
    a_stalled_key_is_answered_and_delivered_once(Stall {
        mode: "WRITE",
        pause: REDIS_TIMEOUT + Duration::from_millis(600),
        retry: Retry::AtOnce,
        seed: 0x1de3_0003,
    })
    .await;
}

#[tokio::test]
async fn concurrent_requests_with_one_key_on_two_instances_emit_once_and_answer_alike() {
    let seed = 0x1de3_0004_u64;
    let mut rng = fastrand::Rng::with_seed(seed);
    let redis = RedisServer::start();
    let url = redis.url();
    let nodes = [spawn_node(&[("REDIS_URL", &url)]).await, spawn_node(&[("REDIS_URL", &url)]).await];
    let mut user = connect_user(&nodes[0], "u1").await;
    let key = format!("race-{seed}-{}", rng.u32(..));
    let body = event_body("booking:cancelled", "u1", "v1");
    let picks: Vec<usize> = (0..10).map(|_| rng.usize(0..2)).collect();
    let answers = futures_util::future::join_all(picks.iter().map(|&i| post_keyed(&nodes[i], &key, &body))).await;
    let fresh = answers.iter().filter(|(_, _, replayed)| !replayed).count();
    assert!(answers.iter().all(|(s, a, _)| (*s, a) == (202, &answers[0].1)), "seed {seed}: {answers:?}");
    assert_eq!(fresh, 1, "seed {seed}: one request appends, the others replay its answer");
    assert_eq!(user.expect_event("booking:cancelled").await["id"], key.as_str());
    user.expect_nothing().await;
}
