//! Idempotency keys and batches.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn the_same_event_id_twice_is_emitted_once_and_answers_the_first_result() {
    let app = spawn_app().await;
    let mut user = connect_user(&app, "u1").await;
    let mut body = event_body("booking:created", "u1", "v1");
    body["id"] = json!("evt-42");
    let first = app.post_event(body.clone()).await;
    let second = app.post_event(body).await;
    assert_eq!(first.0, 202);
    assert_eq!(first, second);
    assert_eq!(first.1["id"], "evt-42");
    assert_eq!(user.expect_event("booking:created").await["id"], "evt-42");
    user.expect_nothing().await;
}

#[tokio::test]
async fn the_idempotency_key_header_works_too_and_replays_are_marked() {
    let app = spawn_app().await;
    let mut user = connect_user(&app, "u1").await;
    let send = || {
        app.http
            .post(app.url("/api/v1/events"))
            .bearer_auth(API_TOKEN)
            .header("idempotency-key", "key-1")
            .json(&event_body("payment:completed", "u1", "v1"))
            .send()
    };
    let first = send().await.unwrap();
    assert!(first.headers().get("idempotent-replayed").is_none());
    let second = send().await.unwrap();
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    let (a, b) = (read(first).await, read(second).await);
    assert_eq!(a, b);
    assert_eq!(a.1["id"], "key-1");
    user.expect_event("payment:completed").await;
    user.expect_nothing().await;
}

#[tokio::test]
async fn an_id_and_a_header_that_differ_are_422() {
    let app = spawn_app().await;
    let mut body = event_body("payment:completed", "u1", "v1");
    body["id"] = json!("a");
    let res = app
        .http
        .post(app.url("/api/v1/events"))
        .bearer_auth(API_TOKEN)
        .header("idempotency-key", "b")
        .json(&body)
        .send()
        .await
        .unwrap();
    let (status, answer) = read(res).await;
    assert_eq!((status, answer["error"]["field"].clone()), (422, json!("id")));
    let res = app
        .http
        .post(app.url("/api/v1/events"))
        .bearer_auth(API_TOKEN)
        .header("idempotency-key", "a")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
}

#[tokio::test]
async fn concurrent_retries_with_one_key_emit_once() {
    let app = spawn_app().await;
    let mut user = connect_user(&app, "u1").await;
    let mut body = event_body("booking:cancelled", "u1", "v1");
    body["id"] = json!("race-1");
    let answers = futures_util::future::join_all((0..10).map(|_| app.post_event(body.clone()))).await;
    assert!(answers.iter().all(|a| *a == answers[0] && a.0 == 202));
    user.expect_event("booking:cancelled").await;
    user.expect_nothing().await;
}

#[tokio::test]
async fn keys_are_forgotten_after_the_ttl() {
    let app = spawn_app_with(&[("IDEMPOTENCY_TTL_SECS", "1")]).await;
    let mut user = connect_user(&app, "u1").await;
    let mut body = event_body("booking:created", "u1", "v1");
    body["id"] = json!("short-lived");
    app.post_event(body.clone()).await;
    user.expect_event("booking:created").await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    app.post_event(body).await;
    user.expect_event("booking:created").await;
}

#[tokio::test]
async fn a_batch_emits_every_event_in_order() {
    let app = spawn_app().await;
    let mut user = connect_user(&app, "u1").await;
    let mut vendor = connect_vendor(&app, "owner", "v1").await;
    let events: Vec<_> = ALL_TYPES.iter().map(|t| event_body(t, "u1", "v1")).collect();
    let (status, answer) = app.post("/api/v1/events/batch", json!({ "events": events })).await;
    assert_eq!(status, 202, "{answer}");
    let answers = answer["events"].as_array().expect("events");
    assert_eq!(answers.len(), 8);
    for (t, a) in ALL_TYPES.iter().zip(answers) {
        assert_eq!(a["type"], *t);
        assert_eq!(vendor.expect_event(t).await["id"], a["id"]);
        if !t.starts_with("service:") {
            assert_eq!(user.expect_event(t).await["id"], a["id"]);
        }
    }
    tokio::join!(user.expect_nothing(), vendor.expect_nothing());
}

#[tokio::test]
async fn one_invalid_event_rejects_the_whole_batch_and_emits_nothing() {
    let app = spawn_app().await;
    let mut user = connect_user(&app, "u1").await;
    let events = json!([
        event_body("booking:created", "u1", "v1"),
        event_body("booking:created", "u1", "v1"),
        { "type": "booking:created", "booking": { "id": "b", "vendorId": "v1" } },
    ]);
    let (status, answer) = app.post("/api/v1/events/batch", json!({ "events": events })).await;
    assert_eq!(status, 422);
    assert_eq!(answer["error"]["field"], "events[2].booking.userId");
    user.expect_nothing().await;
}

#[tokio::test]
async fn a_batch_must_hold_1_to_500_events() {
    let app = spawn_app().await;
    let one = event_body("service:created", "u1", "v1");
    let many: Vec<_> = (0..501).map(|_| one.clone()).collect();
    for body in [json!({ "events": [] }), json!({ "events": many }), json!({ "events": {} }), json!({}), json!([one])] {
        let (status, answer) = app.post("/api/v1/events/batch", body).await;
        assert_eq!(status, 422, "{answer}");
    }
    let full: Vec<_> = (0..500).map(|_| one.clone()).collect();
    let (status, answer) = app.post("/api/v1/events/batch", json!({ "events": full })).await;
    assert_eq!((status, answer["events"].as_array().map(Vec::len)), (202, Some(500)));
    let (status, answer) = app.post("/api/v1/events/batch", json!({ "events": [] })).await;
    assert_eq!((status, answer["error"]["field"].clone()), (422, json!("events")));
}

#[tokio::test]
async fn event_ids_in_a_batch_are_idempotency_keys() {
    let app = spawn_app().await;
    let mut user = connect_user(&app, "u1").await;
    let mut e = event_body("booking:created", "u1", "v1");
    e["id"] = json!("batch-evt");
    let (status, first) = app.post("/api/v1/events/batch", json!({ "events": [e.clone(), e.clone()] })).await;
    assert_eq!(status, 202);
    assert_eq!(first["events"][0], first["events"][1]);
    app.post_event(e).await;
    user.expect_event("booking:created").await;
    user.expect_nothing().await;
}

/// In memory, a batch reads its keys, appends, then records them: a single request with
/// one of its ids, racing it, must not append in between (nor two such batches). On
/// several threads, as the server runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_and_a_single_request_racing_with_one_id_emit_it_once() {
    let app = spawn_app().await;
    let mut user = connect_user(&app, "race-u").await;
    let rounds = 200;
    for round in 0..rounds {
        let id = format!("race-{round}");
        let mut single = event_body("payment:completed", "race-u", "v1");
        single["id"] = json!(id);
        let mut other = single.clone();
        other["id"] = json!(format!("{id}-other"));
        let batch = json!({ "events": [other, single.clone()] });
        let (a, b, c) = tokio::join!(
            app.post("/api/v1/events/batch", batch.clone()),
            app.post_event(single),
            app.post("/api/v1/events/batch", batch),
        );
        assert_eq!((a.0, b.0, c.0), (202, 202, 202), "round {round}");
    }
    let mut ids = Vec::new();
    while let Ok(Some(Seen::Event(_, e))) = tokio::time::timeout(QUIET, user.rx.recv()).await {
        ids.push(e["id"].as_str().unwrap_or_default().to_owned());
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((ids.len(), unique.len()), (2 * rounds, 2 * rounds), "{ids:?}");
}
