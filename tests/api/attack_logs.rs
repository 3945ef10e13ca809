//! Attacks on what the server records: metric series and log lines a stranger cannot grow or forge.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::helpers::*;
use crate::raw::{Binary, RawSocket, bystander, still_served};

const ADMIN_TOKEN: &str = "attack-logs-admin-token-0123456789";

/// The binary at `RUST_LOG=debug DEBUG=socket.io*`, with every stderr line kept whole
/// (`Binary`'s channel carries only the JSON `message`).
struct Logged {
    _child: Child,
    addr: SocketAddr,
    app: TestApp,
    incoming: mpsc::UnboundedReceiver<String>,
    lines: Vec<String>,
}

impl Logged {
    async fn start(format: &str) -> Logged {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fixrx-realtime"));
        cmd.current_dir(std::env::temp_dir())
            .envs([
                ("PORT", "0"),
                ("HOST", "127.0.0.1"),
                ("LOG_FORMAT", format),
                ("RUST_LOG", "debug"),
                ("DEBUG", "socket.io*"),
                ("JWT_SECRET", JWT_SECRET),
                ("API_TOKEN", API_TOKEN),
                ("SHUTDOWN_TIMEOUT_SECS", "5"),
            ])
            .env_remove("NO_COLOR")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("start the binary");
        let mut reader = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let (tx, incoming) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = reader.next_line().await {
                let _ = tx.send(line);
            }
        });
        let mut logged = Logged {
            _child: child,
            addr: ([127, 0, 0, 1], 0).into(),
            app: TestApp::external(([127, 0, 0, 1], 0).into()),
            incoming,
            lines: Vec::new(),
        };
        let listening = logged.wait_for(|l| l.contains("fixrx-realtime listening")).await;
        logged.addr = listening_addr(&listening).expect("an address in the listening line");
        logged.app = TestApp::external(logged.addr);
        logged
    }

    /// Waits for a line `wanted` accepts, keeping every line read on the way.
    async fn wait_for(&mut self, wanted: impl Fn(&str) -> bool) -> String {
        if let Some(line) = self.lines.iter().find(|l| wanted(l)) {
            return line.clone();
        }
        let (incoming, lines) = (&mut self.incoming, &mut self.lines);
        let found = tokio::time::timeout(WAIT, async {
            while let Some(line) = incoming.recv().await {
                lines.push(line.clone());
                if wanted(&line) {
                    return Some(line);
                }
            }
            None
        })
        .await;
        found.ok().flatten().unwrap_or_else(|| panic!("no such log line among {}:\n{}", lines.len(), lines.join("\n")))
    }

    /// Every line so far, after a short quiet wait for the last ones.
    async fn settle(&mut self) -> &[String] {
        let (incoming, lines) = (&mut self.incoming, &mut self.lines);
        let _ = tokio::time::timeout(QUIET, async {
            while let Some(line) = incoming.recv().await {
                lines.push(line);
            }
        })
        .await;
        &self.lines
    }
}

/// `addr` of the listening line, in either format (colour codes stripped, should any be there).
fn listening_addr(line: &str) -> Option<SocketAddr> {
    if let Ok(log) = serde_json::from_str::<Value>(line) {
        return log["addr"].as_str()?.parse().ok();
    }
    let plain = strip_ansi(line);
    let rest = &plain[plain.find("addr=")? + "addr=".len()..];
    rest.split(' ').next()?.trim_matches('"').parse().ok()
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| c.is_ascii_alphabetic());
        } else {
            out.push(c);
        }
    }
    out
}

/// The next frame starting with `prefix` (an ack, a CONNECT answer).
async fn frame(raw: &mut RawSocket, prefix: &str) -> String {
    loop {
        let text = raw.next_text().await.unwrap_or_else(|| panic!("no frame starting with {prefix}"));
        if text.starts_with(prefix) {
            return text;
        }
    }
}

#[tokio::test]
async fn no_log_line_carries_a_token_from_a_handshake_or_a_refresh_at_debug_level() {
    for format in ["text", "json"] {
        let mut server = Logged::start(format).await;
        let in_auth = token(json!({ "sub": "leak-auth", "n": 1 }));
        let in_query = token(json!({ "sub": "leak-query" }));
        let in_header = token(json!({ "sub": "leak-header" }));
        let refreshed = token(json!({ "sub": "leak-auth", "n": 2 }));

        let mut raw = RawSocket::connect(server.addr, &in_auth).await;
        let _query = connect(&server.app, TokenAt::Query(in_query.clone())).await.expect("query token accepted");
        let _header = connect(&server.app, TokenAt::Header(in_header.clone())).await.expect("header token accepted");
        raw.send_text(&format!("421[\"auth:refresh\",{{\"token\":\"{refreshed}\"}}]")).await;
        let ack = frame(&mut raw, "431").await;
        assert!(ack.contains("\"ok\":true"), "refresh refused: {ack}");
        server.wait_for(|l| l.contains("token refreshed")).await;
        let lines = server.settle().await;

        for (name, jwt) in [("auth", &in_auth), ("query", &in_query), ("header", &in_header), ("refresh", &refreshed)] {
            let parts: Vec<&str> = jwt.split('.').collect();
            for secret in [jwt.as_str(), parts[1], parts[2]] {
                let leaks: Vec<&String> = lines.iter().filter(|l| l.contains(secret)).collect();
                assert!(leaks.is_empty(), "{format}: the {name} token leaked:\n{}", leaks[0]);
            }
        }
        let accepted = lines.iter().filter(|l| l.contains("handshake accepted")).count();
        let redacted = lines.iter().filter(|l| l.contains("[REDACTED]")).count();
        eprintln!("{format}: {} lines, {accepted} handshakes accepted, {redacted} lines redacted", lines.len());
        assert_eq!(accepted, 3, "the handshake lines are still logged");
        assert!(redacted >= 2, "the transport's CONNECT and refresh packets are still logged, redacted");
    }
}

/// What a client chooses that the server logs: a room id (quotes and spaces pass `Id`),
/// an event name, and a namespace (raw text in the packet, newline and all).
async fn forge(server: &mut Logged) {
    let mut raw = RawSocket::connect(server.addr, &user_token("forger")).await;
    raw.send_text(r#"421["join",{"type":"vendor","id":"v\" level=ERROR"}]"#).await;
    assert!(frame(&mut raw, "431").await.contains("forbidden"));
    raw.send_text(r#"422["x level=ERROR",{}]"#).await;
    assert!(frame(&mut raw, "432").await.contains("unknown_event"));
    // An event to a namespace nobody defined: socketioxide logs the name with `{}`.
    raw.send_text("42/x\nFORGED ERROR level=ERROR \u{1b}[31mred,[\"e\"]").await;
    server.wait_for(|l| l.contains("invalid namespace requested")).await;
}

#[tokio::test]
async fn a_client_chosen_value_cannot_forge_a_log_line_or_field() {
    for format in ["text", "json"] {
        let mut server = Logged::start(format).await;
        forge(&mut server).await;
        let lines = server.settle().await;
        let find = |what: &str| lines.iter().find(|l| l.contains(what)).cloned().unwrap_or_default();
        let (refused, unknown, namespace) =
            (find("join refused"), find("unknown client event ignored"), find("invalid namespace requested"));
        eprintln!("{format}:\n{refused}\n{unknown}\n{namespace}");
        let forged: Vec<&String> = lines.iter().filter(|l| l.starts_with("FORGED")).collect();
        assert!(forged.is_empty(), "{format}: a line forged by the client: {forged:?}");
        let coloured: Vec<&String> = lines.iter().filter(|l| l.contains('\u{1b}')).take(3).collect();
        assert!(coloured.is_empty(), "{format}: raw escape sequences (the client's among them?): {coloured:?}");
        if format == "text" {
            assert!(refused.contains(r#"room="vendor:v\" level=ERROR""#), "{refused}");
            assert!(unknown.contains(r#"event="x level=ERROR""#), "{unknown}");
            assert!(namespace.contains(r"x\nFORGED ERROR level=ERROR \u{1b}[31mred"), "{namespace}");
        } else {
            // serde escapes every JSON string: each line is one object, each value whole.
            let all_json = lines.iter().all(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| v.is_object()));
            assert!(all_json, "a line that is not one JSON object");
            let field = |line: &str, key: &str| serde_json::from_str::<Value>(line).unwrap_or_default()[key].clone();
            assert_eq!(field(&refused, "room"), "vendor:v\" level=ERROR");
            assert_eq!(field(&unknown, "event"), "x level=ERROR");
            let message = field(&namespace, "message");
            assert!(
                message.as_str().is_some_and(|m| m.contains("x\nFORGED ERROR level=ERROR \u{1b}[31mred")),
                "{message}"
            );
        }
    }
}

/// `/metrics` as a set of series: name and labels, without values.
fn series(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.rsplit_once(' ').map_or(l, |(series, _)| series).to_owned())
        .collect()
}

/// `n` requests with made-up methods to routed and unrouted paths, and one GET to a
/// made-up path for every ten of them; 16 at a time.
async fn attack(app: &TestApp, n: usize) {
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (http, base) = (app.http.clone(), app.url(""));
        workers.spawn(async move {
            for i in 0..n.div_ceil(16) {
                let letters: String = (0..fastrand::usize(2..12)).map(|_| fastrand::uppercase()).collect();
                let method = reqwest::Method::from_bytes(format!("X{letters}").as_bytes()).expect("a method token");
                let nope = format!("/nope-{}", fastrand::u64(..));
                let path = ["/admin/api/overview", "/api/v1/events", "/metrics", &nope][fastrand::usize(..4)];
                let _ = http.request(method, format!("{base}{path}")).send().await;
                if i % 10 == 0 {
                    let _ = http.get(format!("{base}/nope-{}", fastrand::u64(..))).send().await;
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
}

#[tokio::test]
async fn made_up_methods_and_paths_add_no_metric_series() {
    for vars in [&[("ADMIN_TOKEN", ADMIN_TOKEN)][..], &[]] {
        let server = Binary::start(vars).await;
        let mut client = bystander(&server.app).await;
        // Every member of the fixed sets the attack can reach, once, before counting.
        attack(&server.app, 200).await;
        still_served(&server.app, &mut client).await;
        let _ = server.metrics().await;
        let (before, rss_before) = (server.metrics().await, server.rss_kib());
        for _ in 0..5 {
            attack(&server.app, 1000).await;
            still_served(&server.app, &mut client).await;
        }
        let (after, rss_after) = (server.metrics().await, server.rss_kib());
        let others = server.metric("fixrx_http_requests_total", &["method=\"other\""]).await;
        let (old, new) = (series(&before), series(&after));
        eprintln!(
            "ADMIN_TOKEN {}: /metrics {} -> {} bytes, {} -> {} series, {others} requests counted as `other`, RSS {rss_before} -> {rss_after} KiB",
            if vars.is_empty() { "unset" } else { "set" },
            before.len(),
            after.len(),
            old.len(),
            new.len()
        );
        let added: Vec<&String> = new.difference(&old).take(5).collect();
        assert!(added.is_empty(), "the attack added series, e.g. {added:?}");
        assert!(others >= 5000.0, "the attack's requests are counted, under `other`");
        assert!(rss_after < rss_before + 32 * 1024, "RSS grew by {} KiB", rss_after.saturating_sub(rss_before));
    }
}

#[tokio::test]
async fn the_console_refuses_made_up_methods_and_paths_as_the_api_does_and_counts_them_once() {
    let app = spawn_app_with(&[("ADMIN_TOKEN", ADMIN_TOKEN)]).await;
    let made_up = reqwest::Method::from_bytes(b"XPROBE").expect("a method token");
    for (method, path, status, code) in [
        (made_up.clone(), "/admin/api/overview", 405, "method_not_allowed"),
        (reqwest::Method::DELETE, "/admin/api/test-event", 405, "method_not_allowed"),
        (made_up.clone(), "/admin/console.js", 405, "method_not_allowed"),
        (reqwest::Method::GET, "/admin/api/nothing-here", 404, "not_found"),
    ] {
        let res = app.http.request(method.clone(), app.url(path)).send().await.expect("request");
        let no_store = res.headers().get("cache-control").is_some_and(|v| v == "no-store");
        let (got, body) = read(res).await;
        assert_eq!(
            (got, body["error"]["code"].as_str().unwrap_or_default()),
            (status, code),
            "{method} {path}: {body}"
        );
        if path.starts_with("/admin/api/") && status == 405 {
            assert!(no_store, "{method} {path}: a console answer without no-store");
        }
    }
    let metrics = app.http.get(app.url("/metrics")).send().await.expect("metrics").text().await.expect("body");
    for series in [
        r#"fixrx_http_requests_total{method="other",route="/admin/api/overview",status="405"} 1"#,
        r#"fixrx_http_requests_total{method="GET",route="unrouted",status="404"} 1"#,
    ] {
        assert!(metrics.contains(series), "missing {series}");
    }
    assert!(!metrics.contains("XPROBE"), "a made-up method became a label");
}
