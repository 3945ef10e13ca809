//! `X-Request-Id`: the caller's id comes back on the answer (or a generated UUID when it
//! sent none, or one unfit to keep), and the server's log line for an accepted event or
//! batch carries the request's id with the ids of the events it produced.

use std::time::Duration;

use reqwest::header::HeaderValue;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;
use crate::raw::Binary;

fn id_of(res: &reqwest::Response) -> String {
    let id = res.headers().get_all("x-request-id").iter().collect::<Vec<_>>();
    assert_eq!(id.len(), 1, "one X-Request-Id on the answer: {id:?}");
    id[0].to_str().expect("visible ASCII").to_owned()
}

fn is_uuid(id: &str) -> bool {
    id.len() == 36
        && id.split('-').map(str::len).eq([8, 4, 4, 4, 12])
        && id.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
}

#[tokio::test]
async fn a_request_id_sent_comes_back_on_the_answer_whatever_the_answer() {
    let app = spawn_app().await;
    let longest = "r".repeat(128);
    for sent in ["caller-chosen-1", "0f8fad5b-d9cb-469f-a165-70867728950e", "a/b+c=d:e;f\"g", longest.as_str()] {
        let accepted = app
            .http
            .post(app.url("/api/v1/events"))
            .bearer_auth(API_TOKEN)
            .header("x-request-id", sent)
            .json(&event_body("booking:created", "rid-u", "rid-v"))
            .send()
            .await
            .unwrap();
        assert_eq!(accepted.status(), 202);
        assert_eq!(id_of(&accepted), sent);
        // Refusals and operator routes too.
        let refused = app.http.post(app.url("/api/v1/events")).header("x-request-id", sent).send().await.unwrap();
        assert_eq!(refused.status(), 401);
        assert_eq!(id_of(&refused), sent);
        for path in ["/health", "/metrics", "/no/such/path"] {
            let res = app.http.get(app.url(path)).header("x-request-id", sent).send().await.unwrap();
            assert_eq!(id_of(&res), sent, "{path}");
        }
    }
}

#[tokio::test]
async fn without_a_request_id_each_answer_carries_a_new_uuid() {
    let app = spawn_app().await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..5 {
        let res = app.http.get(app.url("/health")).send().await.unwrap();
        let id = id_of(&res);
        assert!(is_uuid(&id), "{id}");
        assert!(seen.insert(id), "a generated id came twice");
    }
    let (status, _) = app.post_event(event_body("booking:created", "rid-u", "rid-v")).await;
    assert_eq!(status, 202);
}

#[tokio::test]
async fn an_unfit_request_id_is_replaced_by_a_generated_one_and_the_request_still_served() {
    let app = spawn_app().await;
    let too_long = "x".repeat(129);
    let huge = "y".repeat(6_000);
    let unfit: Vec<HeaderValue> = vec![
        HeaderValue::from_str(&too_long).unwrap(),
        HeaderValue::from_str(&huge).unwrap(),
        HeaderValue::from_static("has space"),
        HeaderValue::from_static("tab\there"),
        HeaderValue::from_static(""),
        HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        HeaderValue::from_bytes(b"\xff\xfe\x80").unwrap(),
    ];
    for sent in unfit {
        let res = app
            .http
            .post(app.url("/api/v1/events"))
            .bearer_auth(API_TOKEN)
            .header("x-request-id", sent.clone())
            .json(&event_body("booking:created", "rid-u", "rid-v"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202, "{sent:?}");
        let id = id_of(&res);
        assert!(is_uuid(&id), "{sent:?} came back as {id}");
    }
    // Sent twice: neither is the request's.
    let res = app.http.get(app.url("/health")).header("x-request-id", "one").header("x-request-id", "two").send().await;
    let id = id_of(&res.unwrap());
    assert!(is_uuid(&id), "{id}");

    // A control character, byte for byte: hyper refuses the head itself (400), and the
    // server goes on serving.
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Request-Id: a\x01b\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut answer)).await;
    assert!(answer.starts_with(b"HTTP/1.1 400") || answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    assert_eq!(app.get("/health").await.0, 200);
}

/// The next log record whose `request_id` is `id`.
async fn record_for(server: &mut Binary, id: &str) -> Value {
    let found = tokio::time::timeout(WAIT, async {
        while let Some(record) = server.records.recv().await {
            if record["request_id"] == id {
                return Some(record);
            }
        }
        None
    })
    .await;
    found.ok().flatten().unwrap_or_else(|| panic!("no log line with request_id {id}"))
}

async fn post_with_id(server: &Binary, path: &str, id: &str, body: Value) -> Value {
    let res = server
        .app
        .http
        .post(server.app.url(path))
        .bearer_auth(API_TOKEN)
        .header("x-request-id", id)
        .json(&body)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    assert_eq!(id_of(&res), id);
    res.json().await.unwrap()
}

#[tokio::test]
async fn the_log_line_of_an_accepted_request_carries_its_request_id_and_its_event_ids() {
    // A single event's line is at debug (a batch's at info).
    let mut server = Binary::start(&[("RUST_LOG", "info,fixrx_realtime::http::events=debug")]).await;

    let answer = post_with_id(&server, "/api/v1/events", "log-one", event_body("booking:created", "ru", "rv")).await;
    let record = record_for(&mut server, "log-one").await;
    assert_eq!(record["message"], "event accepted", "{record}");
    assert_eq!(record["event_ids"], answer["id"], "{record}");

    let mut keyed = event_body("booking:created", "ru", "rv");
    keyed["id"] = json!("evt-keyed-1");
    let batch = json!({ "events": [event_body("booking:created", "ru", "rv"), keyed] });
    let answer = post_with_id(&server, "/api/v1/events/batch", "log-batch", batch).await;
    let ids: Vec<&str> = answer["events"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[1], "evt-keyed-1");
    let record = record_for(&mut server, "log-batch").await;
    assert_eq!(record["message"], "event batch accepted", "{record}");
    assert_eq!(record["event_ids"], ids.join(","), "{record}");
    assert_eq!(record["events"], 2);

    // A generated id is logged as it was returned.
    let res = server
        .app
        .http
        .post(server.app.url("/api/v1/events"))
        .bearer_auth(API_TOKEN)
        .json(&event_body("booking:created", "ru", "rv"))
        .send()
        .await
        .unwrap();
    let generated = id_of(&res);
    let answer: Value = res.json().await.unwrap();
    let record = record_for(&mut server, &generated).await;
    assert_eq!(record["event_ids"], answer["id"], "{record}");
}
