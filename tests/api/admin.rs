//! The admin console's API: only the bearer of `ADMIN_TOKEN` gets in, guessing blocks the
//! address, nothing it answers carries a token, a secret or a socket id, and what it
//! shows and does is what the clients see.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;
use crate::raw::RawSocket;
use crate::redis_server::RedisServer;

const ADMIN_TOKEN: &str = "integration-admin-token-0123456789";

/// Every console route, with a body where it takes one.
fn routes() -> Vec<(&'static str, &'static str, Option<Value>)> {
    vec![
        ("GET", "/admin/api/overview", None),
        ("GET", "/admin/api/lookup/user/u1", None),
        ("POST", "/admin/api/disconnect/user/u1", None),
        ("POST", "/admin/api/test-event", Some(json!({ "room": "user:u1" }))),
    ]
}

async fn call(app: &TestApp, method: &str, path: &str, body: Option<Value>, auth: Option<&str>) -> reqwest::Response {
    call_from(app, method, path, body, auth, None).await
}

/// A console request; `from` is an address a trusted proxy forwards.
async fn call_from(
    app: &TestApp,
    method: &str,
    path: &str,
    body: Option<Value>,
    auth: Option<&str>,
    from: Option<&str>,
) -> reqwest::Response {
    let mut req = match method {
        "GET" => app.http.get(app.url(path)),
        _ => app.http.post(app.url(path)),
    };
    if let Some(auth) = auth {
        req = req.header("authorization", auth);
    }
    if let Some(from) = from {
        req = req.header("x-forwarded-for", from);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.expect("request")
}

async fn admin_get(app: &TestApp, path: &str) -> (u16, Value) {
    read(call(app, "GET", path, None, Some(&format!("Bearer {ADMIN_TOKEN}"))).await).await
}

async fn admin_post(app: &TestApp, path: &str, body: Option<Value>) -> (u16, Value) {
    read(call(app, "POST", path, body, Some(&format!("Bearer {ADMIN_TOKEN}"))).await).await
}

/// Polls the overview until `done` holds (at most [`WAIT`]); returns the last one read.
async fn overview_until(app: &TestApp, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (_, overview) = admin_get(app, "/admin/api/overview").await;
        if done(&overview) || std::time::Instant::now() > deadline {
            return overview;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn console_app() -> TestApp {
    spawn_app_with(&[("ADMIN_TOKEN", ADMIN_TOKEN), ("TRUSTED_PROXIES", "127.0.0.1")]).await
}

#[tokio::test]
async fn every_console_route_refuses_a_missing_or_wrong_token_and_does_nothing() {
    let app = console_app().await;
    let mut client = connect_user(&app, "u1").await;
    let wrong = [
        None,
        Some("Bearer nope".to_owned()),
        Some(format!("Bearer {API_TOKEN}")),
        Some(format!("Bearer {ADMIN_TOKEN}x")),
        Some(format!("Bearer {}", &ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1])),
        Some(format!("Basic {ADMIN_TOKEN}")),
        Some(ADMIN_TOKEN.to_owned()),
    ];
    let mut n = 0;
    for (method, path, body) in routes() {
        for auth in &wrong {
            n += 1;
            // Each attempt from its own forwarded address, so none is blocked for guessing.
            let from = format!("198.51.100.{n}");
            let res = call_from(&app, method, path, body.clone(), auth.as_deref(), Some(&from)).await;
            assert_eq!(res.headers().get("cache-control").map(|v| v.to_str().unwrap()), Some("no-store"));
            let (status, answer) = read(res).await;
            assert_eq!(status, 401, "{method} {path} with {auth:?}: {answer}");
            assert_eq!(answer["error"]["code"], "unauthorized");
        }
    }
    // Nothing was sent to the client, and it is still connected.
    client.expect_nothing().await;
    let (status, presence) = app.get("/api/v1/presence/user/u1").await;
    assert_eq!((status, presence["connections"].as_u64()), (200, Some(1)));
    // The controllers' token opens the REST API, not the console, and the reverse.
    let res = app.http.get(app.url("/api/v1/presence/user/u1")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn without_admin_token_there_is_no_console() {
    let app = spawn_app().await;
    for path in ["/admin", "/admin/", "/admin/console.js", "/admin/console.css"] {
        let res = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 404, "{path}");
    }
    for (method, path, body) in routes() {
        let res = call(&app, method, path, body, Some(&format!("Bearer {ADMIN_TOKEN}"))).await;
        assert_eq!(res.status(), 404, "{method} {path}");
    }
}

#[tokio::test]
async fn a_run_of_wrong_tokens_blocks_the_address_even_for_the_right_token() {
    let app = console_app().await;
    let guesser = Some("203.0.113.7");
    let right = format!("Bearer {ADMIN_TOKEN}");
    for i in 0..10 {
        let res = call_from(&app, "GET", "/admin/api/overview", None, Some("Bearer guess"), guesser).await;
        assert_eq!(res.status(), 401, "guess {i}");
    }
    let res = call_from(&app, "GET", "/admin/api/overview", None, Some(&right), guesser).await;
    assert_eq!(res.status(), 429, "a blocked address is not told that its token is right");
    let retry: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let (_, answer) = read(res).await;
    assert_eq!(answer["error"]["code"], "rate_limited");
    // The operator at another address is not locked out by the guesser.
    let res = call_from(&app, "GET", "/admin/api/overview", None, Some(&right), Some("203.0.113.8")).await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn the_page_is_self_contained_and_served_under_a_strict_policy() {
    let app = console_app().await;
    let res = app.http.get(app.url("/admin")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let headers = res.headers().clone();
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/html"));
    let policy = headers["content-security-policy"].to_str().unwrap();
    for directive in ["default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "connect-src 'self'"] {
        assert!(policy.contains(directive), "{policy}");
    }
    assert_eq!(headers["x-frame-options"], "DENY");
    let html = res.text().await.unwrap();
    assert!(html.contains("/admin/console.js") && html.contains("/admin/console.css"));
    for path in ["/admin", "/admin/console.js", "/admin/console.css"] {
        let text = app.http.get(app.url(path)).send().await.unwrap().text().await.unwrap();
        // The SVG namespace is a name, not something fetched.
        let text = text.replace("http://www.w3.org/2000/svg", "");
        // No CDN, font or framework fetched at run time: nothing outside this server.
        for external in ["http://", "https://", "//cdn", "@import"] {
            assert!(!text.contains(external), "{path} refers to {external}");
        }
    }
    let res = app.http.get(app.url("/admin/console.js")).send().await.unwrap();
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));
}

/// The `sid` of a raw socket's CONNECT answer.
async fn raw_user(app: &TestApp, user: &str) -> (RawSocket, String, String) {
    let token = user_token(user);
    let mut raw = RawSocket::open(app.addr).await;
    raw.send_text(&format!("40{{\"token\":\"{token}\"}}")).await;
    let answer = raw.next_text().await.expect("CONNECT answer");
    let connect: Value = serde_json::from_str(answer.trim_start_matches("40")).expect("CONNECT payload");
    (raw, connect["sid"].as_str().expect("sid").to_owned(), token)
}

#[tokio::test]
async fn the_console_shows_connections_events_and_sockets_and_never_a_token_or_a_socket_id() {
    let app = console_app().await;
    let before = unix_ms();
    let (_raw, sid, client_token) = raw_user(&app, "u-look").await;
    let mut other = connect_user(&app, "u-other").await;

    let (status, overview) = admin_get(&app, "/admin/api/overview").await;
    assert_eq!(status, 200, "{overview}");
    assert_eq!(overview["cluster"]["mode"], "memory");
    assert_eq!(overview["cluster"]["connections"], 2);
    assert_eq!(overview["instances"].as_array().unwrap().len(), 1);
    assert_eq!(overview["instances"][0]["self"], true);
    assert_eq!(overview["instances"][0]["connections"], 2);
    assert_eq!(overview["instances"][0]["redis"], "none");
    assert_eq!(overview["events"]["perSecond"]["counts"].as_array().unwrap().len(), 300);

    let (status, emitted) = app.post_event(event_body("booking:created", "u-look", "v-look")).await;
    assert_eq!(status, 202);
    let id = emitted["id"].as_str().unwrap().to_owned();
    let overview = overview_until(&app, |o| o["events"]["latest"][0]["id"] == id.as_str()).await;
    let latest = &overview["events"]["latest"][0];
    assert_eq!(latest["id"], id.as_str(), "{overview}");
    assert_eq!(latest["type"], "booking:created");
    assert_eq!(latest["rooms"], json!(["user:u-look", "vendor:v-look"]));
    assert_eq!(overview["events"]["byType"][0], json!({ "type": "booking:created", "lastMinute": 1, "total": 1 }));
    assert!(overview["events"]["perSecond"]["counts"].as_array().unwrap().iter().any(|c| c == 1));

    let (status, found) = admin_get(&app, "/admin/api/lookup/user/u-look").await;
    assert_eq!(status, 200, "{found}");
    assert_eq!((found["online"].as_bool(), found["connections"].as_u64()), (Some(true), Some(1)));
    let socket = &found["instances"][0]["sockets"][0];
    assert_eq!(socket["transport"], "websocket");
    let since = socket["since"].as_u64().unwrap();
    assert!(since >= before && since <= unix_ms(), "{since}");
    let fingerprint = socket["ref"].as_str().unwrap();
    assert!(fingerprint.len() == 8 && fingerprint.chars().all(|c| c.is_ascii_hexdigit()), "{fingerprint}");
    assert_eq!(found["latestSource"], "history");
    assert_eq!(found["latest"][0]["id"], id.as_str());
    let (_, nobody) = admin_get(&app, "/admin/api/lookup/vendor/nobody").await;
    assert_eq!((nobody["online"].as_bool(), nobody["connections"].as_u64()), (Some(false), Some(0)));

    // Nothing shown carries the client's token, the secrets, or the socket id (or a
    // prefix long enough to use).
    let shown = format!("{overview}{found}");
    for secret in [client_token.as_str(), JWT_SECRET, API_TOKEN, ADMIN_TOKEN, &sid, &sid[..8]] {
        assert!(!shown.contains(secret), "the console shows {secret}");
    }
    other.expect_nothing().await;
}

#[tokio::test]
async fn a_test_event_reaches_the_room_and_a_disconnect_closes_only_that_user() {
    let app = console_app().await;
    let mut target = connect_user(&app, "u-t").await;
    let mut bystander = connect_user(&app, "u-b").await;

    let (status, sent) =
        admin_post(&app, "/admin/api/test-event", Some(json!({ "room": "user:u-t", "message": "hello" }))).await;
    assert_eq!(status, 202, "{sent}");
    assert_eq!((sent["type"].as_str(), sent["rooms"].clone()), (Some("admin:test"), json!(["user:u-t"])));
    let event = target.expect_event("admin:test").await;
    assert_eq!(event["id"], sent["id"]);
    assert_eq!(event["message"], "hello");
    assert_eq!(event["type"], "admin:test");
    assert!(event["occurredAt"].as_str().is_some_and(|t| t.ends_with('Z')));
    bystander.expect_nothing().await;

    let (status, done) = admin_post(&app, "/admin/api/disconnect/user/u-t", None).await;
    assert_eq!((status, done), (200, json!({ "room": "user:u-t", "disconnected": 1 })));
    target.expect_disconnect().await;
    bystander.expect_nothing().await;
    let (_, after) = admin_get(&app, "/admin/api/lookup/user/u-t").await;
    assert_eq!(after["online"], false);
    let (_, after) = admin_get(&app, "/admin/api/lookup/user/u-b").await;
    assert_eq!(after["online"], true);
}

#[tokio::test]
async fn bad_console_input_gets_a_clear_error() {
    let app = console_app().await;
    let auth = format!("Bearer {ADMIN_TOKEN}");
    assert_eq!(admin_get(&app, "/admin/api/lookup/admin/u1").await.0, 404);
    assert_eq!(admin_post(&app, "/admin/api/disconnect/robot/u1", None).await.0, 404);
    let long = "x".repeat(129);
    let (status, answer) = admin_get(&app, &format!("/admin/api/lookup/user/{long}")).await;
    assert_eq!((status, answer["error"]["field"].as_str()), (422, Some("id")));
    assert_eq!(admin_get(&app, "/admin/api/nothing-here").await.0, 404);
    let res = app.http.get(app.url("/admin/api/test-event")).header("authorization", &auth).send().await.unwrap();
    assert_eq!(res.status(), 405);

    let post = |body: &'static str, content_type: &'static str| {
        app.http
            .post(app.url("/admin/api/test-event"))
            .header("authorization", &auth)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    assert_eq!(post("{\"room\":", "application/json").await.unwrap().status(), 400);
    assert_eq!(post("{\"room\":\"user:1\"}", "text/plain").await.unwrap().status(), 415);
    assert_eq!(post("", "application/json").await.unwrap().status(), 400);
    let huge = json!({ "room": "user:1", "message": "x".repeat(300 * 1024) });
    let (status, _) = admin_post(&app, "/admin/api/test-event", Some(huge)).await;
    assert_eq!(status, 413);
    for (body, field) in [
        (json!({}), "room"),
        (json!({ "room": "user" }), "room"),
        (json!({ "room": "auth:user:1" }), "room"),
        (json!({ "room": "user:1", "message": "x".repeat(501) }), "message"),
        (json!({ "room": "user:1", "message": ["x"] }), "message"),
        (json!({ "room": "user:1", "extra": true }), "extra"),
    ] {
        let (status, answer) = admin_post(&app, "/admin/api/test-event", Some(body.clone())).await;
        assert_eq!((status, answer["error"]["field"].as_str()), (422, Some(field)), "{body}");
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

#[tokio::test]
async fn with_redis_the_console_on_one_instance_shows_and_acts_on_both() {
    let redis = RedisServer::start();
    let url = redis.url();
    let vars = [("REDIS_URL", url.as_str()), ("ADMIN_TOKEN", ADMIN_TOKEN)];
    let a = spawn_node(&vars).await;
    let b = spawn_node(&vars).await;
    let _on_a = connect_user(&a, "u-a").await;
    let mut on_b = connect_user(&b, "u-b").await;
    let _also_on_b = connect_user(&b, "u-b2").await;

    let (status, overview) = admin_get(&a, "/admin/api/overview").await;
    assert_eq!(status, 200, "{overview}");
    assert_eq!(overview["cluster"]["mode"], "redis");
    assert_eq!(overview["cluster"]["instances"], 2, "{overview}");
    assert_eq!(overview["cluster"]["missing"], 0);
    assert_eq!(overview["cluster"]["connections"], 3);
    let rows = overview["instances"].as_array().unwrap();
    assert_eq!((rows[0]["self"].as_bool(), rows[0]["connections"].as_u64()), (Some(true), Some(1)));
    assert_eq!((rows[1]["self"].as_bool(), rows[1]["connections"].as_u64()), (Some(false), Some(2)));
    assert!(rows.iter().all(|r| r["redis"] == "up"));
    assert_ne!(rows[0]["id"], rows[1]["id"]);

    // A REST event through B shows in A's latest events (every instance reads the log).
    let (_, emitted) = b.post_event(event_body("payment:completed", "u-b", "v-b")).await;
    let listed =
        |o: &Value| o["events"]["latest"].as_array().is_some_and(|l| l.iter().any(|e| e["id"] == emitted["id"]));
    assert!(listed(&overview_until(&a, listed).await), "an event accepted by B is listed by A's console");
    on_b.expect_event("payment:completed").await;

    let (_, found) = admin_get(&a, "/admin/api/lookup/user/u-b").await;
    assert_eq!(found["connections"], 1, "{found}");
    assert_eq!(found["instances"][0]["self"], false);
    assert_eq!(found["instances"][0]["id"], rows[1]["id"]);
    let (_, done) = admin_post(&a, "/admin/api/disconnect/user/u-b", None).await;
    assert_eq!(done["disconnected"], 1);
    on_b.expect_disconnect().await;

    // B gone: A lists itself alone, soon, and says nothing is missing (B stopped listening).
    b.stop().await;
    let overview = overview_until(&a, |o| o["cluster"]["instances"] == 1).await;
    assert_eq!(overview["cluster"]["instances"], 1, "{overview}");
    assert_eq!(overview["cluster"]["connections"], 1);
}

/// Publishes `payload` on `channel` of the test's Redis (RESP, so any bytes go through).
fn publish(redis: &RedisServer, channel: &str, payload: &str) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", redis.port)).unwrap();
    let frame =
        format!("*3\r\n$7\r\nPUBLISH\r\n${}\r\n{channel}\r\n${}\r\n{payload}\r\n", channel.len(), payload.len());
    stream.write_all(frame.as_bytes()).unwrap();
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b":"), "{}", String::from_utf8_lossy(&buf[..n]));
}

#[tokio::test]
async fn an_instance_that_listens_but_never_answers_is_missing_and_garbage_on_the_channels_breaks_nothing() {
    use std::io::{Read, Write};
    let redis = RedisServer::start();
    let url = redis.url();
    let a = spawn_node(&[("REDIS_URL", url.as_str()), ("ADMIN_TOKEN", ADMIN_TOKEN)]).await;
    let _client = connect_user(&a, "u-m").await;
    let (_, overview) = admin_get(&a, "/admin/api/overview").await;
    assert_eq!(overview["cluster"]["missing"], 0, "{overview}");
    let me = overview["instances"][0]["id"].as_str().unwrap().to_owned();

    // A hung instance: subscribed to the questions, never answering.
    let mut hung = std::net::TcpStream::connect(("127.0.0.1", redis.port)).unwrap();
    hung.write_all(b"SUBSCRIBE fixrx-admin#ask\r\n").unwrap();
    let mut buf = [0u8; 128];
    let _ = hung.read(&mut buf).unwrap();
    let asked = std::time::Instant::now();
    let (status, overview) = admin_get(&a, "/admin/api/overview").await;
    let waited = asked.elapsed();
    assert_eq!(status, 200);
    assert_eq!(overview["cluster"]["missing"], 1, "{overview}");
    assert_eq!(overview["cluster"]["instances"], 1);
    assert_eq!(overview["cluster"]["connections"], 1, "what answered is still shown");
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(3), "{waited:?}");
    let (_, found) = admin_get(&a, "/admin/api/lookup/user/u-m").await;
    assert_eq!((found["connections"].as_u64(), found["missing"].as_u64()), (Some(1), Some(1)), "{found}");
    drop(hung);

    // Garbage, forged senders and answers to questions never asked: ignored.
    for junk in [
        "garbage",
        "{}",
        r#"{"req":1,"from":"../x","query":{"kind":"overview"}}"#,
        r#"{"req":1,"from":"a b","query":{"kind":"drop"}}"#,
    ] {
        publish(&redis, "fixrx-admin#ask", junk);
    }
    let stray = r#"{"req":999999,"answer":{"instance":{"id":"x","host":"h","version":"1","startedAt":1,"uptimeSecs":1,"redis":"up","ready":true,"connections":1000,"websocket":1000,"polling":0}}}"#;
    for junk in ["garbage", stray] {
        publish(&redis, &format!("fixrx-admin#reply#{me}"), junk);
    }
    let overview = overview_until(&a, |o| o["cluster"]["missing"] == 0).await;
    assert_eq!(overview["cluster"]["missing"], 0, "{overview}");
    assert_eq!(
        (overview["cluster"]["instances"].as_u64(), overview["cluster"]["connections"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(still_served_http(&a).await);
}

async fn still_served_http(app: &TestApp) -> bool {
    app.http.get(app.url("/health")).send().await.is_ok_and(|r| r.status() == 200)
}
