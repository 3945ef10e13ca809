//! Operators' input: `Config::from_lookup` with arbitrary values for every variable
//! (and some unknown ones). It must never panic, and a configuration it accepts must
//! keep its documented invariants, not print its secrets in `Debug`, be buildable
//! into an app, and not make `serve` overflow at shutdown.
//!
//! `JWT_PUBLIC_KEY` is a PEM or a path to one: values that are not a PEM are replaced
//! by a path that does not exist, so the fuzzer never reads the machine's files
//! (`/dev/zero` would never end). PEM values start from the test fixtures and are mutated.
#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;

use arbitrary::{Result, Unstructured};
use fixrx_realtime::config::{AllowedOrigins, AppEnv, Config, DEV_API_TOKEN, DEV_JWT_SECRET};
use fixrx_realtime_fuzz::generate;
use libfuzzer_sys::fuzz_target;
use secrecy::ExposeSecret;
use socketioxide::adapter::LocalAdapter;

const VARS: &[&str] = &[
    "APP_ENV",
    "PORT",
    "HOST",
    "CLIENT_ORIGIN",
    "WS_PATH",
    "JWT_SECRET",
    "JWT_PUBLIC_KEY",
    "JWT_ISSUER",
    "JWT_AUDIENCE",
    "API_TOKEN",
    "REST_BODY_LIMIT",
    "API_RATE_LIMIT",
    "API_RATE_BURST",
    "IDEMPOTENCY_TTL_SECS",
    "REDIS_URL",
    "RUST_LOG",
    "DEBUG",
    "LOG_FORMAT",
    "PING_INTERVAL_MS",
    "PING_TIMEOUT_MS",
    "CONNECT_TIMEOUT_MS",
    "UPGRADE_TIMEOUT_MS",
    "WRITE_STALL_TIMEOUT_MS",
    "MAX_PAYLOAD_BYTES",
    "MAX_BINARY_ATTACHMENTS",
    "SOCKET_BUFFER_PACKETS",
    "SOCKET_RATE_LIMIT",
    "SOCKET_RATE_BURST",
    "SOCKET_FLOOD_DISCONNECT_MS",
    "SHUTDOWN_TIMEOUT_SECS",
    "HANDSHAKES_PER_IP_PER_SEC",
    "HANDSHAKE_BURST_PER_IP",
    "MAX_CONNECTIONS",
    "MAX_CONNECTIONS_PER_IP",
    "HISTORY_ENABLED",
    "HISTORY_TTL_SECS",
    "HISTORY_SIZE",
    "HISTORY_MAX_BYTES",
    "WEBHOOK_URL",
    "WEBHOOK_SECRET",
    "WEBHOOK_TIMEOUT_MS",
    "PRESENCE_OFFLINE_GRACE_MS",
    "CHAT_HOOK_URL",
    "CHAT_HOOK_TIMEOUT_MS",
    "TRUSTED_PROXIES",
    "REDIS_CLUSTER_URLS",
    "ADMIN_TOKEN",
    "HTTP_HEADER_TIMEOUT_MS",
    "HTTP_IDLE_TIMEOUT_MS",
    "IPV6_PREFIX_LEN",
    "SOCKET_BUFFER_BYTES",
    "MAX_SOCKETS_PER_USER",
    "CHAT_HOOK_CONCURRENCY",
];

const NUMBERS: &[&str] = &[
    "0",
    "1",
    "2",
    "1023",
    "1024",
    "65535",
    "65536",
    "-1",
    "+5",
    " 7 ",
    "1e3",
    "0x10",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "٣",
];

const WORDS: &[&str] = &[
    "production",
    "prod",
    "development",
    "dev",
    "Production",
    "*",
    "http://a.com",
    "https://App.Example.com:443/",
    "http://x.com:80,https://y.com",
    "http://a.com/path",
    "http://",
    "https://a.com, *",
    "http://a b",
    "/",
    "//",
    "///",
    "/socket.io",
    "/socket.io/",
    "/api",
    "/api/",
    "/health",
    "/health/",
    "/ws?x",
    "socket.io",
    "127.0.0.1",
    "::1",
    "0.0.0.0",
    "redis://",
    "redis://r:6379/0",
    "rediss://",
    "unix://",
    "json",
    "text",
    "pretty",
    "info",
    "warn,socketioxide=debug",
    "fixrx[span{field=/a+b/}]=debug",
    "socket.io*",
    "engine*",
    "*",
    "dev-api-token",
    DEV_JWT_SECRET,
    "fixrx-development-webhook-secret",
    "http://127.0.0.1:9/hooks",
    "https://user:pw@backend.example/h?k=v",
    "ftp://x/y",
    "file:///etc/passwd",
    "10.0.0.0/8, ::1",
    "redis://10.0.0.1:6379,rediss://10.0.0.2:6380",
    "10.0.0.0/33",
    "fd00::/8,192.168.1.7",
    "a,,b, ,c",
    "",
    "   ",
];

struct Pems {
    list: Vec<String>,
}

fn pems() -> &'static Pems {
    static P: OnceLock<Pems> = OnceLock::new();
    P.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures");
        let list = ["rsa-public.pem", "ec-public.pem", "rsa-private.pem", "ec-private.pem"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(format!("{dir}/{f}")).ok())
            .collect();
        Pems { list }
    })
}

fn pem(u: &mut Unstructured) -> Result<String> {
    let list = &pems().list;
    let mut pem = if list.is_empty() { "-----BEGIN PUBLIC KEY-----\n".to_owned() } else { u.choose(list)?.clone() };
    if u.ratio(1u8, 4)? {
        pem = pem.replace('\n', "\\n");
    }
    // A few byte edits inside the body (kept UTF-8: ASCII in, ASCII out).
    let mut bytes = pem.into_bytes();
    for _ in 0..u.int_in_range(0u8..=3)? {
        if bytes.is_empty() {
            break;
        }
        let i = u.choose_index(bytes.len())?;
        match u.int_in_range(0u8..=2)? {
            0 => bytes[i] = u.int_in_range(b' '..=b'~')?,
            1 => {
                bytes.remove(i);
            }
            _ => bytes.truncate(i),
        }
    }
    Ok(String::from_utf8(bytes).unwrap_or_default())
}

fn value(u: &mut Unstructured, var: &str) -> Result<String> {
    Ok(match u.int_in_range(0u8..=9)? {
        0..=2 => u.choose(NUMBERS)?.to_string(),
        3..=5 => u.choose(WORDS)?.to_string(),
        6 if var == "JWT_PUBLIC_KEY" => pem(u)?,
        6 | 7 => {
            // Glue two pieces: "http://a.com," + "https://..." and the like.
            format!("{}{}{}", u.choose(WORDS)?, u.choose(&["", ",", " ", "/", ":"])?, u.choose(NUMBERS)?)
        }
        _ => generate::string(u)?,
    })
}

fn lookup_table(u: &mut Unstructured) -> Result<HashMap<String, String>> {
    let mut map = HashMap::new();
    for _ in 0..u.int_in_range(0u8..=12)? {
        let var = if u.ratio(15u8, 16)? { u.choose(VARS)?.to_string() } else { generate::string(u)? };
        let mut v = value(u, &var)?;
        if var == "JWT_PUBLIC_KEY" && !v.contains("-----BEGIN") {
            v = NO_FILE.to_owned();
        }
        map.insert(var, v);
    }
    Ok(map)
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime"))
}

fn default_debug() -> &'static str {
    static D: OnceLock<String> = OnceLock::new();
    D.get_or_init(|| format!("{:?}", Config::from_lookup(|_| None).expect("defaults are valid")))
}

fn check(vars: &HashMap<String, String>, c: &Config) {
    let get = |k: &str| vars.get(k).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());

    let prod = matches!(get("APP_ENV").as_deref(), Some("production" | "prod"));
    assert_eq!(c.env == AppEnv::Production, prod);
    assert_eq!(c.port, get("PORT").map_or(3000, |p| p.parse().unwrap()));

    // WS_PATH: an absolute path of at least one segment, no trailing slash, no collision.
    let p = c.ws_path.as_str();
    assert!(p.starts_with('/') && p.len() >= 2 && !p.ends_with('/'), "WS_PATH {:?} gave ws_path {p:?}", get("WS_PATH"));
    assert!(!p.contains(['?', '#', ' ']), "ws_path {p:?}");
    assert!(!p.starts_with("/api/") && p != "/api" && !["/health", "/ready", "/metrics"].contains(&p), "{p:?}");

    match &c.cors {
        AllowedOrigins::Any => assert_eq!(get("CLIENT_ORIGIN").as_deref(), Some("*")),
        AllowedOrigins::List(list) | AllowedOrigins::ListAndLoopback(list) => {
            // Loopback origins are development's only.
            assert!(!(prod && matches!(c.cors, AllowedOrigins::ListAndLoopback(_))), "production allows loopback");
            assert!(!list.is_empty());
            for o in list {
                assert!(o.starts_with("http://") || o.starts_with("https://"), "origin {o:?}");
                assert!(!o.ends_with('/') && *o == o.to_ascii_lowercase(), "origin {o:?}");
                assert!(http::HeaderValue::from_str(o).is_ok(), "origin {o:?}");
            }
        }
    }

    let jwt = &c.jwt;
    assert!(!jwt.secrets.is_empty() || !jwt.public_keys.is_empty() || jwt.jwks_url.is_some(), "no client-token key");
    if jwt.dev {
        assert!(!prod && get("JWT_SECRET").is_none(), "the dev secret without being asked for");
        assert_eq!(jwt.secrets.len(), 1);
    }
    for secret in &jwt.secrets {
        let s = secret.expose_secret();
        assert!(!s.is_empty() && s.trim() == s && !s.contains(','), "JWT secret {s:?}");
        assert!(!(prod && s == DEV_JWT_SECRET), "production on the dev secret");
        assert_eq!(jwt.dev, s == DEV_JWT_SECRET && get("JWT_SECRET").is_none(), "dev flag for {s:?}");
    }
    for key in &jwt.public_keys {
        assert!(key.pem.contains("-----BEGIN"), "public key {:?}", key.pem);
    }

    assert!(!c.api.tokens.is_empty());
    for t in &c.api.tokens {
        let t = t.expose_secret();
        assert!(!t.is_empty() && t.trim() == t && !t.contains(','), "API token {t:?}");
        assert!(!(prod && t == DEV_API_TOKEN), "production accepts the development API token");
    }
    assert!(c.api.body_limit >= 1);
    for (name, d) in [
        ("PING_INTERVAL_MS", c.socket.ping_interval),
        ("PING_TIMEOUT_MS", c.socket.ping_timeout),
        ("CONNECT_TIMEOUT_MS", c.socket.connect_timeout),
        ("UPGRADE_TIMEOUT_MS", c.socket.upgrade_timeout),
    ] {
        assert!(!d.is_zero(), "{name} is zero");
    }
    assert!(c.socket.buffer_packets >= 1);
    assert!(c.socket.max_payload >= 1024);
    assert!(tracing_subscriber::EnvFilter::try_new(&c.log.filter).is_ok(), "log filter {:?}", c.log.filter);

    // Secrets never print: look for each secret of 16+ characters that appears in no
    // other variable and not in the Debug text of the default configuration.
    let debug = format!("{c:?}");
    let mut secrets: Vec<String> = Vec::new();
    secrets.extend(get("JWT_SECRET"));
    secrets.extend(get("REDIS_URL"));
    secrets.extend(c.api.tokens.iter().map(|t| t.expose_secret().to_owned()));
    if let Some(admin) = &c.admin {
        let token = admin.token.expose_secret();
        assert!(!c.api.tokens.iter().any(|t| t.expose_secret() == token), "ADMIN_TOKEN equal to an API_TOKEN accepted");
        if c.env == AppEnv::Production {
            assert!(token.chars().count() >= 16, "a short ADMIN_TOKEN accepted in production");
        }
        secrets.push(token.to_owned());
    }
    for s in secrets {
        let elsewhere = vars.iter().any(|(k, v)| {
            !matches!(k.as_str(), "JWT_SECRET" | "REDIS_URL" | "API_TOKEN" | "ADMIN_TOKEN") && v.contains(s.as_str())
        });
        if s.chars().count() >= 16 && !elsewhere && !default_debug().contains(s.as_str()) {
            assert!(!debug.contains(s.as_str()), "Debug prints the secret {s:?}: {debug}");
        }
    }

    // `serve` computes `Instant::now() + shutdown_timeout` when it stops.
    assert!(
        tokio::time::Instant::now().checked_add(c.shutdown_timeout).is_some(),
        "SHUTDOWN_TIMEOUT_SECS={:?} is accepted but overflows `Instant::now() + shutdown_timeout` in serve()",
        get("SHUTDOWN_TIMEOUT_SECS")
    );

    // And the app builds from it (no panic in the engine, router or CORS layers).
    let _guard = runtime().enter();
    let bus = fixrx_realtime::app::Bus::memory(c);
    if let Err(e) = fixrx_realtime::app::build::<LocalAdapter>(c, (), bus) {
        // The only build error is a key that jsonwebtoken refuses after config accepted it.
        panic!("Config accepted a configuration that does not build: {e}");
    }
}

/// `KEY=VALUE` lines, as in a `.env` file (the value is the rest of the line, raw).
fn env_file(text: &[u8]) -> HashMap<String, String> {
    String::from_utf8_lossy(text)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = if k == "JWT_PUBLIC_KEY" && !v.contains("-----BEGIN") { NO_FILE } else { v };
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

const NO_FILE: &str = "/nonexistent-fixrx-fuzz/key.pem";

// First byte even: the rest is an env file. Odd: the rest drives the generator.
fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let vars = if mode % 2 == 0 {
        env_file(rest)
    } else {
        match lookup_table(&mut Unstructured::new(rest)) {
            Ok(vars) => vars,
            Err(_) => return,
        }
    };
    match Config::from_lookup(|k| vars.get(k).cloned()) {
        Ok(c) => check(&vars, &c),
        Err(e) => {
            let shown = e.to_string();
            assert!(shown.starts_with(e.var), "{shown}");
            assert!(VARS.contains(&e.var), "unknown variable named in an error: {}", e.var);
            // Secrets are not echoed in errors.
            for secret in ["JWT_SECRET", "API_TOKEN", "REDIS_URL"] {
                if let Some(s) = vars.get(secret).map(|s| s.trim()).filter(|s| s.len() >= 16) {
                    let elsewhere = vars.iter().any(|(k, v)| k != secret && v.contains(s));
                    assert!(elsewhere || !shown.contains(s), "error echoes {secret}: {shown}");
                }
            }
        }
    }
});
