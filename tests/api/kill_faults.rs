//! Dropped Redis connections and a Redis restarted empty while events are in flight
//! (CONTRACT §7, §12): every event answered `202` (at once, or on a retry with the same
//! ids) reaches the socket once, in order, a batch whole or not at all; where Redis lost
//! the history, the socket is told (disconnected, then `recovered: false`).
//!
//! The server holds two connections to Redis. Appends and the health check share one with
//! the adapter's subscriptions, so Redis lists it as `pubsub` (flags `P`); the history
//! reader's blocking `XREAD`s have their own, listed as `normal`. So `CLIENT KILL TYPE
//! pubsub` drops appends in flight, and `TYPE normal` drops the reader.
//!
//! Seeded: which rounds are batches, and when each kill or restart hits; a failure prints
//! its seed.

use std::time::{Duration, Instant};

use serde_json::Map;

use crate::fault_kit::*;
use crate::helpers::*;
use crate::redis_link::RedisLink;
use crate::redis_server::RedisServer;

/// What happened over a test, for its summary line.
#[derive(Default)]
struct Tally {
    tries: usize,
    faults_at_ms: Vec<u64>,
    accepted_first: usize,
    refused_first: usize,
    retries_refused: usize,
    /// First answered `503`, yet the append ran (its answer was lost with the connection):
    /// the retry with the same ids appends nothing more. For a batch without ids, that
    /// retry would deliver it twice.
    refused_batches_appended: usize,
    refused_singles_appended: usize,
    /// Restarts: first answered `503`, yet delivered before Redis went away.
    refused_but_delivered: usize,
    delivered: usize,
    /// Answered `202`, then lost with the history (Redis restarted empty); the socket was told.
    lost_told: usize,
    /// Delivered on the old socket and again, from the new history, on the reconnected one.
    twice_across_histories: usize,
}

impl Tally {
    fn print(&self, test: &str, seed: u64) {
        eprintln!(
            "{test}: seed {seed:#x}, {} tries, faults at {:?} ms, 202s {} (first answer), 503s {} (first) + {} \
             (retries), 503 yet appended {} batches + {} singles, 503 yet delivered {}, delivered {}, lost with the history (told) {}, twice across \
             histories {}, duplicates 0",
            self.tries,
            self.faults_at_ms,
            self.accepted_first,
            self.refused_first,
            self.retries_refused,
            self.refused_batches_appended,
            self.refused_singles_appended,
            self.refused_but_delivered,
            self.delivered,
            self.lost_told,
            self.twice_across_histories,
        );
    }
}

/// Posts single keyed events and keyed 500-event batches in turn, each hit by `CLIENT <kill>`
/// 0 to 30 ms after it starts; retries each `503` with the same ids and checks what the
/// socket receives. Redis keeps its data: every event must arrive exactly once, in order.
async fn kills_while_events_are_in_flight(test: &str, kill: &str, seed: u64) {
    const ROUNDS: usize = 10;
    let mut rng = fastrand::Rng::with_seed(seed);
    let redis = RedisServer::start();
    let app = spawn_node(&[("REDIS_URL", &redis.url())]).await;
    let user_id = format!("u{seed}");
    let mut user = connect_user(&app, &user_id).await;
    // Redis has the append script, as on a server that ran for a while.
    assert_eq!(app.post_event(event_body("payment:completed", "warm-up", "v0")).await.0, 202, "seed {seed}");
    let kill = kill.replace("{port}", &redis.port.to_string());
    let (mut tally, mut offsets, mut all) = (Tally::default(), Map::new(), Vec::new());
    for round in 0..ROUNDS {
        let post = Post::new(&format!("s{seed}-r{round}"), &user_id, round % 2 == 1);
        let at_ms = rng.u64(0..=30);
        let pending = post.spawn(&app);
        tokio::time::sleep(Duration::from_millis(at_ms)).await;
        let killed = redis_command(redis.port, &kill).await;
        assert!(killed.starts_with(':'), "seed {seed} round {round}: {kill} answered {killed}");
        let kill_done = Instant::now();
        let (status, answer) = pending.await.unwrap();
        tally.tries += 1;
        tally.faults_at_ms.push(at_ms);
        match status {
            202 => tally.accepted_first += 1,
            503 => {
                tally.refused_first += 1;
                // Settled by now (redis-rs does not resend on a new connection): whether the
                // first call appended, from its ids' keys (a batch: all or none of them).
                let first_ran = redis_command(redis.port, &post.keys_exist()).await;
                assert!(
                    first_ran == ":0" || first_ran == ":2",
                    "seed {seed} round {round}: part of a batch ran? {first_ran}"
                );
                if first_ran == ":2" {
                    match post.is_batch() {
                        true => tally.refused_batches_appended += 1,
                        false => tally.refused_singles_appended += 1,
                    }
                }
                tally.retries_refused += post.retry_until_accepted(&app, seed).await;
                let after = kill_done.elapsed();
                assert!(
                    after <= ANSWERED_WITHIN,
                    "seed {seed} round {round}: a retry was answered 202 only {after:?} after the kill"
                );
            }
            other => panic!("seed {seed} round {round}: answered {other} {answer}"),
        }
        let (seen, disconnected) = take(&mut user, post.names.len(), ARRIVES_WITHIN, &mut offsets).await;
        assert!(!disconnected, "seed {seed} round {round}: Redis kept its data, yet the socket was dropped");
        assert_eq!(
            seen,
            post.names,
            "seed {seed} round {round} (first {status}, batch {}): once, in order",
            post.is_batch()
        );
        user.expect_nothing().await;
        tally.delivered += seen.len();
        all.extend(seen);
    }
    nothing_for(&mut user, NO_SECOND_COPY).await;
    let mut unique = all.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), all.len(), "seed {seed}: some event was delivered twice");
    tally.print(test, seed);
}

#[tokio::test]
async fn killing_the_readers_connection_mid_flight_delays_delivery_but_loses_and_repeats_nothing() {
    let test = "kill_faults (CLIENT KILL TYPE normal: the reader)";
    kills_while_events_are_in_flight(test, "CLIENT KILL TYPE normal", 0x4b11_0001).await;
}

#[tokio::test]
async fn killing_the_command_connection_mid_append_is_resolved_by_retries_with_the_same_ids() {
    let test = "kill_faults (CLIENT KILL TYPE pubsub: appends)";
    kills_while_events_are_in_flight(test, "CLIENT KILL TYPE pubsub", 0x4b11_0002).await;
}

#[tokio::test]
async fn killing_every_server_connection_mid_flight_delivers_each_accepted_event_once() {
    // LADDR matches every client of this Redis; SKIPME (the default) spares ours.
    let test = "kill_faults (CLIENT KILL LADDR: all)";
    kills_while_events_are_in_flight(test, "CLIENT KILL LADDR 127.0.0.1:{port}", 0x4b11_0003).await;
}

/// Posts keyed 500-event batches, each hit by a Redis restart (empty) 0 to 150 ms after it
/// starts, and retries each `503` with the same ids. Per socket, a batch arrives whole or
/// not at all; a `202` batch that the socket did not get was lost with the history, and
/// the socket was told.
async fn restarts_while_batches_are_in_flight(test: &str, seed: u64) {
    const ROUNDS: usize = 8;
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut redis = RedisServer::start();
    let app = spawn_node(&[("REDIS_URL", &redis.url())]).await;
    let user_id = format!("u{seed}");
    let mut user = connect_user(&app, &user_id).await;
    let (mut tally, mut offsets) = (Tally::default(), Map::new());
    // A position to come back with, as a real client holds one.
    assert_eq!(app.post_event(event_body("payment:completed", &user_id, "v0")).await.0, 202, "seed {seed}");
    assert_eq!(take(&mut user, 1, ARRIVES_WITHIN, &mut offsets).await.0.len(), 1, "seed {seed}");
    for round in 0..ROUNDS {
        let post = Post::new(&format!("s{seed}-r{round}"), &user_id, true);
        let at_ms = rng.u64(0..=150);
        let pending = post.spawn(&app);
        tokio::time::sleep(Duration::from_millis(at_ms)).await;
        redis = restart(redis).await;
        let back = Instant::now();
        let (status, answer) = pending.await.unwrap();
        tally.tries += 1;
        tally.faults_at_ms.push(at_ms);
        let whole = |seen: &Vec<String>| seen.is_empty() || *seen == post.names;

        // The reader finds a new history and drops the socket: it is told.
        let (before, told) = take(&mut user, usize::MAX, ARRIVES_WITHIN, &mut offsets).await;
        assert!(told, "seed {seed} round {round}: Redis came back empty, the socket was not told");
        assert!(whole(&before), "seed {seed} round {round}: {} of {BATCH} events delivered", before.len());
        wait_ready(&app, seed).await;
        // Its positions, all of the lost history (a socket that missed the batch keeps the
        // previous round's), name no event of the new one.
        let early;
        (user, early) = reconnect_told(&app, &user_id, &mut offsets, seed).await;

        match status {
            202 => tally.accepted_first += 1,
            503 => {
                tally.refused_first += 1;
                tally.refused_but_delivered += usize::from(!before.is_empty());
                // The ids died with the history: the retry appends the batch anew.
                tally.retries_refused += post.retry_until_accepted(&app, seed).await;
                let after = back.elapsed();
                assert!(
                    after <= ANSWERED_WITHIN + ARRIVES_WITHIN,
                    "seed {seed} round {round}: 202 only {after:?} after Redis was back"
                );
            }
            other => panic!("seed {seed} round {round}: answered {other} {answer}"),
        }
        // A batch appended in the new history before this socket joined is not replayed
        // (its positions were of the old one); one appended since arrives whole.
        let want = if status == 503 { BATCH } else { usize::MAX };
        let wait = if status == 503 { ARRIVES_WITHIN } else { Duration::from_secs(1) };
        let (rest, told) = take(&mut user, want.saturating_sub(early.len()), wait, &mut offsets).await;
        let after = [early, rest].concat();
        assert!(!told, "seed {seed} round {round}: the new socket was dropped");
        assert!(whole(&after), "seed {seed} round {round}: {} of {BATCH} events delivered after", after.len());
        if status == 503 {
            assert_eq!(after, post.names, "seed {seed} round {round}: the retry's 202 delivers the batch");
        }
        match (before.is_empty(), after.is_empty()) {
            (true, true) => tally.lost_told += 1,
            (false, false) => tally.twice_across_histories += 1,
            _ => {}
        }
        user.expect_nothing().await;
        tally.delivered += before.len() + after.len();
    }
    nothing_for(&mut user, NO_SECOND_COPY).await;
    tally.print(test, seed);
}

#[tokio::test]
async fn a_batch_hit_by_redis_restarting_empty_arrives_whole_or_not_at_all_and_a_loss_is_told() {
    restarts_while_batches_are_in_flight("kill_faults (Redis restarted empty)", 0x4b11_0004).await;
}

/// The limit of a Redis that keeps nothing on disk: a batch answered `202` while the
/// instance's reader was reconnecting (it waits 250 ms after a dropped connection) existed
/// only in Redis's memory, and is gone when Redis restarts empty before the reader read
/// it. No server can deliver it then; what §7 asks instead is that the socket is told:
/// it is dropped, and its positions come back `unknown`, so the app reloads. (Redis with
/// `appendonly yes` and `appendfsync always`, or a cluster whose appends wait for a
/// replica, keeps such a batch; docs/delivery.md says so.)
#[tokio::test]
async fn a_batch_lost_with_redis_restarting_empty_before_the_reader_read_it_is_told_to_the_socket() {
    let seed = 0x4b11_0005_u64;
    let mut redis = RedisServer::start();
    let app = spawn_node(&[("REDIS_URL", &redis.url())]).await;
    let user_id = format!("u{seed}");
    let mut user = connect_user(&app, &user_id).await;
    let mut offsets = Map::new();
    assert_eq!(app.post_event(event_body("payment:completed", &user_id, "v0")).await.0, 202);
    assert_eq!(take(&mut user, 1, ARRIVES_WITHIN, &mut offsets).await.0.len(), 1);

    // The reader's connection drops; while it waits to reconnect, the batch is accepted.
    // A try whose 202 came too late (the reader may have read it) is not counted.
    let mut tries = 0;
    let (post, accepted_in) = loop {
        tries += 1;
        assert!(tries <= 5, "no batch was accepted within 200 ms of the reader's drop in 5 tries");
        let post = Post::new(&format!("s{seed}-t{tries}"), &user_id, true);
        assert!(redis_command(redis.port, "CLIENT KILL TYPE normal").await.starts_with(":1"));
        let killed = Instant::now();
        let (status, answer) = post.send(&app.http, &app.url(post.path)).await;
        assert_eq!(status, 202, "{answer}");
        if killed.elapsed() < Duration::from_millis(200) {
            break (post, killed.elapsed());
        }
        let (seen, _) = take(&mut user, BATCH, ARRIVES_WITHIN, &mut offsets).await;
        assert_eq!(seen, post.names);
    };
    redis = restart(redis).await;
    let (before, told) = take(&mut user, usize::MAX, ARRIVES_WITHIN, &mut offsets).await;
    wait_ready(&app, seed).await;
    let (mut back, early) = reconnect_told(&app, &user_id, &mut offsets, seed).await;
    let (rest, _) = take(&mut back, BATCH.saturating_sub(early.len()), Duration::from_secs(2), &mut offsets).await;
    let after = [early, rest].concat();
    eprintln!(
        "kill_faults (loss): batch accepted {accepted_in:?} after the reader's drop (try {tries}), Redis restarted \
         empty: delivered {} before, {} after reconnecting; socket told: {told}",
        before.len(),
        after.len()
    );
    drop(redis);
    let delivered = [before, after].concat();
    assert!(delivered.is_empty() || delivered == post.names, "a batch split: {} of {BATCH}", delivered.len());
    assert!(told || delivered == post.names, "the batch was lost and the socket was not told");
}

/// CONTRACT §12, "any error means none of it is delivered", when Redis runs a batch's
/// script and the connection drops before its reply arrives (a network that drops a
/// connection; on one host, a `CLIENT KILL` read in the same event-loop turn as the
/// script). The reply is lost for good; the server resends the call under the same call
/// key, answered from the call's record: `202`, and the batch delivered once. (Before
/// that resend, this answered `503` while the reader delivered the batch, and a retry of
/// a batch without ids delivered it twice.)
#[tokio::test]
async fn a_batch_whose_reply_is_lost_with_its_connection_is_delivered_only_if_answered_202() {
    let seed = 0x4b11_0006_u64;
    let redis = RedisServer::start();
    let link = RedisLink::start(redis.port).await;
    let app = spawn_node(&[("REDIS_URL", &link.url())]).await;
    let user_id = format!("u{seed}");
    let mut user = connect_user(&app, &user_id).await;
    assert_eq!(app.post_event(event_body("payment:completed", "warm-up", "v0")).await.0, 202);
    let mut post = Post::new(&format!("s{seed}"), &user_id, true);
    for event in post.body["events"].as_array_mut().unwrap() {
        event.as_object_mut().unwrap().remove("id");
    }
    // The append's reply: the epoch, Redis's clock, then a tag and a log id per event.
    link.lose_reply_containing(format!("*{}\r\n", 2 + 2 * BATCH).as_bytes());
    let (status, answer) = post.send(&app.http, &app.url(post.path)).await;
    assert!(link.lost(), "the append's reply went through: the test proved nothing ({status})");
    let (seen, _) = take(&mut user, BATCH, ARRIVES_WITHIN, &mut Map::new()).await;
    let mut retried = None;
    if status != 202 && !seen.is_empty() {
        // What a client that retries an errored batch (as it should) gets.
        post.retry_until_accepted(&app, seed).await;
        retried = Some(take(&mut user, BATCH, ARRIVES_WITHIN, &mut Map::new()).await.0.len());
    }
    eprintln!(
        "kill_faults (lost reply): batch answered {status} {}, {} of {BATCH} delivered; after a retry, {retried:?} more",
        answer["error"]["code"],
        seen.len()
    );
    match status {
        202 => assert_eq!(seen, post.names, "answered 202: every event once, in order"),
        _ => assert!(seen.is_empty(), "answered {status}, yet {} events were delivered", seen.len()),
    }
}
