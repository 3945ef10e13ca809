//! Configuration tests: every variable's default, bounds and error.

use super::*;
use secrecy::ExposeSecret;
use std::collections::HashMap;

fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Config::from_lookup(|k| map.get(k).cloned())
}

/// Secrets production accepts.
const PROD_JWT: &str = "a-production-jwt-secret-0123456789abcdef";
const PROD_API: &str = "a-production-api-token";

#[test]
fn zero_configuration_is_development_with_dev_secrets() {
    let c = config(&[]).expect("defaults are valid");
    assert_eq!(c.env, AppEnv::Development);
    assert_eq!(c.port, 3000);
    assert_eq!(c.ws_path, "/socket.io");
    assert!(c.jwt.is_dev_secret());
    assert_eq!(c.api.tokens[0].expose_secret(), DEV_API_TOKEN);
    assert_eq!(c.cors, AllowedOrigins::ListAndLoopback(vec!["http://localhost:3000".into()]));
}

#[test]
fn development_accepts_any_loopback_http_origin_and_production_never() {
    let dev = config(&[("CLIENT_ORIGIN", "https://app.example.com")]).unwrap();
    for ok in ["http://localhost:5173", "http://127.0.0.1:8081", "http://localhost", "https://app.example.com"] {
        assert!(dev.cors.allows(ok), "{ok}");
    }
    for bad in [
        "https://localhost:5173",
        "http://localhost.evil.example",
        "http://localhost:5173.evil.example",
        "http://localhost:1@evil.example",
        "http://localhost:",
        "http://localhost:0",
        "http://localhost:65536",
        "http://127.0.0.10:80",
        "http://LOCALHOST:5173",
        "null",
    ] {
        assert!(!dev.cors.allows(bad), "{bad}");
    }
    let prod = [("APP_ENV", "production"), ("JWT_SECRET", PROD_JWT), ("API_TOKEN", PROD_API)];
    let prod = config(&prod).unwrap();
    assert!(!prod.cors.allows("http://localhost:5173"));
    assert!(prod.cors.allows("http://localhost:3000"), "the default list stays");
}

#[test]
fn production_refuses_to_start_without_keys() {
    let e = config(&[("APP_ENV", "production"), ("API_TOKEN", "t")]).unwrap_err();
    assert_eq!(e.var, "JWT_SECRET");
    let e = config(&[("APP_ENV", "production"), ("JWT_SECRET", "s")]).unwrap_err();
    assert_eq!(e.var, "API_TOKEN");
    assert!(config(&[("APP_ENV", "production"), ("JWT_SECRET", PROD_JWT), ("API_TOKEN", PROD_API)]).is_ok());
}

#[test]
fn bad_values_name_the_variable() {
    for (var, value) in [
        ("PORT", "abc"),
        ("PORT", "70000"),
        ("HOST", "nowhere"),
        ("CLIENT_ORIGIN", "localhost:3000"),
        ("CLIENT_ORIGIN", "http://a.com/path"),
        ("WS_PATH", "socket.io"),
        ("APP_ENV", "staging"),
        ("REDIS_URL", "localhost:6379"),
        ("JWT_PUBLIC_KEY", "/nonexistent/key.pem"),
        ("LOG_FORMAT", "xml"),
        ("WS_PATH", "//"),
        ("SHUTDOWN_TIMEOUT_SECS", "18446744073709551615"),
        ("PING_INTERVAL_MS", "99999999999"),
        ("JWT_PUBLIC_KEY", "/dev/zero"),
        ("REST_BODY_LIMIT", "-1"),
    ] {
        let e = config(&[(var, value)]).unwrap_err();
        assert_eq!(e.var, var, "{var}={value} gave {e}");
    }
}

#[test]
fn origins_are_a_comma_separated_list_and_star_only_when_explicit() {
    let c = config(&[("CLIENT_ORIGIN", "https://a.com, http://b.com:8080/")]).unwrap();
    assert!(c.cors.allows("https://a.com"));
    assert!(c.cors.allows("http://b.com:8080"));
    assert!(!c.cors.allows("https://evil.com"));
    assert_eq!(config(&[("CLIENT_ORIGIN", "*")]).unwrap().cors, AllowedOrigins::Any);
    // Stored as browsers send them: lower case, no default port.
    let c = config(&[("CLIENT_ORIGIN", "https://App.Example.com:443,http://x.com:80,http://y.com:8080")]).unwrap();
    assert!(c.cors.allows("https://app.example.com") && c.cors.allows("http://x.com"));
    assert!(c.cors.allows("http://y.com:8080"));
}

#[test]
fn a_redis_cluster_is_seed_urls_and_excludes_redis_url() {
    let c = config(&[("REDIS_CLUSTER_URLS", "redis://10.0.0.1:6379, rediss://10.0.0.2:6380,")]).unwrap();
    assert_eq!(c.redis.cluster_urls.len(), 2);
    for bad in ["10.0.0.1:6379", "http://x:1", "redis://", "redis:///0"] {
        assert_eq!(config(&[("REDIS_CLUSTER_URLS", bad)]).unwrap_err().var, "REDIS_CLUSTER_URLS", "{bad}");
    }
    let both = [("REDIS_URL", "redis://a:1"), ("REDIS_CLUSTER_URLS", "redis://b:1")];
    assert_eq!(config(&both).unwrap_err().var, "REDIS_CLUSTER_URLS");
    assert_eq!(config(&[("TRUSTED_PROXIES", "10.0.0.0/8, nope")]).unwrap_err().var, "TRUSTED_PROXIES");
}

#[test]
fn the_replica_policy_waits_half_a_second_and_lets_a_shard_without_replica_go_on() {
    let c = config(&[]).unwrap();
    assert_eq!(c.redis.replicas, crate::config::ReplicaPolicy::default());
    assert_eq!(c.redis.replicas.wait, Duration::from_millis(500));
    assert!(!c.redis.replicas.required);
    let c = config(&[("REDIS_REPLICA_WAIT_MS", "50"), ("REDIS_REQUIRE_REPLICA", "TRUE")]).unwrap();
    assert_eq!((c.redis.replicas.wait, c.redis.replicas.required), (Duration::from_millis(50), true));
    for bad in ["0", "-1", "soon", "60001"] {
        assert_eq!(config(&[("REDIS_REPLICA_WAIT_MS", bad)]).unwrap_err().var, "REDIS_REPLICA_WAIT_MS", "{bad}");
    }
    assert_eq!(config(&[("REDIS_REQUIRE_REPLICA", "maybe")]).unwrap_err().var, "REDIS_REQUIRE_REPLICA");
}

#[test]
fn worker_threads_default_to_the_cores_and_are_bounded() {
    assert_eq!(config(&[]).unwrap().worker_threads, None);
    assert_eq!(config(&[("WORKER_THREADS", "0")]).unwrap().worker_threads, None);
    assert_eq!(config(&[("WORKER_THREADS", "2")]).unwrap().worker_threads, Some(2));
    for bad in ["-1", "two", "5000"] {
        assert_eq!(config(&[("WORKER_THREADS", bad)]).unwrap_err().var, "WORKER_THREADS", "{bad}");
    }
}

#[test]
fn api_tokens_rotate_and_secrets_never_print() {
    let c = config(&[("API_TOKEN", "old-token,new-token"), ("JWT_SECRET", "super-secret-value")]).unwrap();
    assert_eq!(c.api.tokens.len(), 2);
    let debug = format!("{c:?}");
    assert!(!debug.contains("old-token") && !debug.contains("super-secret-value"), "{debug}");
}

#[test]
fn rates_default_and_zero_turns_them_off() {
    let c = config(&[]).unwrap();
    let socket = c.socket.rate_limit.unwrap();
    assert_eq!((socket.per_second.get(), socket.burst.get()), (20, 40));
    assert_eq!(c.api.rate_limit.unwrap().burst.get(), 20_000);
    let c = config(&[("SOCKET_RATE_LIMIT", "0"), ("API_RATE_LIMIT", "0"), ("HANDSHAKES_PER_IP_PER_SEC", "0")]).unwrap();
    assert!(c.socket.rate_limit.is_none() && c.api.rate_limit.is_none() && c.limits.handshakes_per_ip.is_none());
    assert_eq!(config(&[("SOCKET_RATE_BURST", "0")]).unwrap_err().var, "SOCKET_RATE_BURST");
    let c = config(&[("MAX_CONNECTIONS", "0"), ("PING_INTERVAL_MS", "1000"), ("PING_TIMEOUT_MS", "500")]).unwrap();
    assert_eq!(c.limits.connections.total, None);
    assert_eq!(c.limits.write_stall, Some(Duration::from_millis(1500)));
}

#[test]
fn log_directives_are_trimmed() {
    assert_eq!(
        config(&[("RUST_LOG", "info, fixrx_realtime=debug ,")]).unwrap().log.filter,
        "info,fixrx_realtime=debug,socketioxide=warn,engineioxide=warn"
    );
}

#[test]
fn debug_socket_io_turns_on_transport_logs() {
    let c = config(&[("DEBUG", "socket.io*")]).unwrap();
    assert!(c.log.filter.contains("socketioxide=debug") && !c.log.filter.contains("socketioxide=warn"));
    assert!(!c.log.filter.contains("engineioxide=warn"));
}

#[test]
fn the_transport_crates_are_quiet_unless_named() {
    assert_eq!(config(&[]).unwrap().log.filter, "info,socketioxide=warn,engineioxide=warn");
    let named = config(&[("RUST_LOG", "debug,engineioxide=trace")]).unwrap().log.filter;
    assert_eq!(named, "debug,engineioxide=trace,socketioxide=warn");
}

#[test]
fn the_console_is_off_without_admin_token_and_its_token_is_checked() {
    assert!(config(&[]).expect("defaults").admin.is_none());
    let c = config(&[("ADMIN_TOKEN", "short")]).expect("development takes any token");
    assert_eq!(c.admin.expect("on").token.expose_secret(), "short");
    let prod = [("APP_ENV", "production"), ("JWT_SECRET", PROD_JWT), ("API_TOKEN", "api-token-0123456789")];
    let with = |token: &'static str| {
        let mut vars = prod.to_vec();
        vars.push(("ADMIN_TOKEN", token));
        config(&vars)
    };
    assert_eq!(with("short").unwrap_err().var, "ADMIN_TOKEN");
    assert_eq!(with("api-token-0123456789").unwrap_err().var, "ADMIN_TOKEN");
    assert_eq!(with("has a space in it, long enough").unwrap_err().var, "ADMIN_TOKEN");
    assert!(with("admin-token-0123456789").is_ok());
    let shown = format!("{:?}", with("admin-token-0123456789").expect("valid"));
    assert!(!shown.contains("admin-token-0123456789"), "Debug must not print the token");
}

#[test]
fn production_refuses_short_secrets_and_one_value_in_two_places() {
    let prod = |extra: &[(&'static str, &'static str)]| {
        let mut vars = vec![("APP_ENV", "production"), ("JWT_SECRET", PROD_JWT), ("API_TOKEN", PROD_API)];
        vars.extend_from_slice(extra);
        config(&vars)
    };
    assert!(prod(&[]).is_ok());
    let short_jwt = "0123456789012345678901234567890"; // 31 bytes
    assert_eq!(prod(&[("JWT_SECRET", short_jwt)]).unwrap_err().var, "JWT_SECRET");
    assert_eq!(prod(&[("API_TOKEN", "fifteen-chars-x")]).unwrap_err().var, "API_TOKEN");
    assert_eq!(prod(&[("API_TOKEN", "a-production-api-token,short")]).unwrap_err().var, "API_TOKEN");
    let shared = prod(&[("WEBHOOK_SECRET", PROD_JWT), ("WEBHOOK_URL", "http://127.0.0.1:9/h")]).unwrap_err();
    assert_eq!(shared.var, "JWT_SECRET", "{shared}");
    assert!(shared.problem.contains("WEBHOOK_SECRET"), "{shared}");
    let shared = prod(&[("WEBHOOK_SECRET", PROD_API), ("WEBHOOK_URL", "http://127.0.0.1:9/h")]).unwrap_err();
    assert_eq!(shared.var, "WEBHOOK_SECRET", "{shared}");
    assert_eq!(prod(&[("ADMIN_TOKEN", PROD_JWT)]).unwrap_err().var, "JWT_SECRET");
    // A public key has no secret to reuse or measure.
    assert!(config(&[("JWT_SECRET", "short")]).is_ok(), "development takes any secret");
}

#[test]
fn development_listens_on_loopback_unless_host_is_set_and_production_everywhere() {
    assert_eq!(config(&[]).unwrap().host, IpAddr::from([127, 0, 0, 1]));
    assert_eq!(config(&[("HOST", "0.0.0.0")]).unwrap().host, IpAddr::from([0, 0, 0, 0]));
    let prod = config(&[("APP_ENV", "production"), ("JWT_SECRET", PROD_JWT), ("API_TOKEN", PROD_API)]).unwrap();
    assert_eq!(prod.host, IpAddr::from([0, 0, 0, 0]));
}

#[test]
fn network_timeouts_buffers_and_per_user_caps_have_defaults_and_bounds() {
    let c = config(&[]).unwrap();
    assert_eq!(c.limits.header_read_timeout, Duration::from_secs(30));
    assert_eq!(c.limits.idle_timeout, Duration::from_secs(60));
    assert_eq!(c.limits.ipv6_prefix, 64);
    assert_eq!(c.socket.buffer_bytes, 1024 * 1024);
    assert_eq!(c.socket.max_per_user, Some(100));
    assert_eq!(config(&[("MAX_SOCKETS_PER_USER", "0")]).unwrap().socket.max_per_user, None);
    for (var, value) in [
        ("HTTP_HEADER_TIMEOUT_MS", "0"),
        ("HTTP_IDLE_TIMEOUT_MS", "0"),
        ("HTTP_IDLE_TIMEOUT_MS", "99999999999"),
        ("IPV6_PREFIX_LEN", "0"),
        ("IPV6_PREFIX_LEN", "129"),
        ("SOCKET_BUFFER_BYTES", "100"),
        ("MAX_SOCKETS_PER_USER", "-1"),
    ] {
        let e = config(&[(var, value)]).unwrap_err();
        assert_eq!(e.var, var, "{var}={value} gave {e}");
    }
}

/// Test-only material made for this test (a self-signed CA with its key, and an unrelated
/// key); it signs and trusts nothing anywhere else.
const TEST_CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBjjCCATWgAwIBAgIUcQJSOHH/R8IAHVEQ8c2lgLG/7xIwCgYIKoZIzj0EAwIw
HDEaMBgGA1UEAwwRZml4cngtY29uZmlnLXRlc3QwIBcNMjYxMjA3MDc1NjI0WhgP
MjEyNjExMTMwNzU2MjRaMBwxGjAYBgNVBAMMEWZpeHJ4LWNvbmZpZy10ZXN0MFkw
EwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEA+3po9Y2UU1eLW2ZuReGeLqVqd+bfEv8
pk9Uo2/72/A8icBBPVfGXdtYOUOAE3vNJq0sXalmN07OPiQNAZmjsqNTMFEwHQYD
VR0OBBYEFEPY3TaEuTjHC1V8Cg2hpmN1wVR4MB8GA1UdIwQYMBaAFEPY3TaEuTjH
C1V8Cg2hpmN1wVR4MA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDRwAwRAIg
U9RrcFubawxXm/mLn0sRqVCiLh7O+sAwEx1/cea4gUsCIDT2wQVbF4BTZS9EDms+
gKA4bpb0K82bpFmGwUO6M78E
-----END CERTIFICATE-----
";
const TEST_CA_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgoH2O36eIHnYUx56t
VjQ2K59NJDDdYcS1sY7tgm0KDcyhRANCAAQD7emj1jZRTV4tbZm5F4Z4upWp35t8
S/ymT1Sjb/vb8DyJwEE9V8Zd21g5Q4ATe80mrSxdqWY3Ts4+JA0BmaOy
-----END PRIVATE KEY-----
";
const TEST_OTHER_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgcSdHQxtjGR4NJcPd
p5kM7WAJuylPfSab/bXNOc4l2e2hRANCAATPNXNNoabPD+bjH6UpNZaVZTSWe5qo
77dtRdwNNj6rZIdRi1YYEtUp3CmFdJUnUQbM/RcLn5eSZGJ8Q5dKBlBl
-----END PRIVATE KEY-----
";

#[test]
fn redis_tls_files_are_read_at_start_up_and_each_problem_names_its_variable() {
    let dir = std::env::temp_dir().join(format!("fixrx-config-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    };
    let (ca, key, other_key) =
        (file("ca.pem", TEST_CA_PEM), file("key.pem", TEST_CA_KEY_PEM), file("other.pem", TEST_OTHER_KEY_PEM));
    let garbage = file("garbage.pem", "not a certificate\n");
    let missing = dir.join("missing.pem").to_string_lossy().into_owned();
    let tls = ("REDIS_URL", "rediss://redis.example.com:6380");

    let c = config(&[tls]).unwrap();
    assert!(c.redis.uses_tls() && c.redis.tls.extra_roots.is_empty() && c.redis.tls.identity.is_none());
    let c =
        config(&[tls, ("REDIS_TLS_CA_FILE", &ca), ("REDIS_TLS_CERT_FILE", &ca), ("REDIS_TLS_KEY_FILE", &key)]).unwrap();
    assert_eq!(c.redis.tls.extra_roots.len(), 1);
    assert!(c.redis.tls.identity.is_some());
    assert!(!format!("{c:?}").contains("PRIVATE") && !format!("{c:?}").contains("MIIB"), "PEM printed");
    let cluster = ("REDIS_CLUSTER_URLS", "rediss://10.0.0.1:6380,rediss://10.0.0.2:6380");
    assert_eq!(config(&[cluster, ("REDIS_TLS_CA_FILE", &ca)]).unwrap().redis.tls.extra_roots.len(), 1);

    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[tls, ("REDIS_TLS_CA_FILE", &missing)], "REDIS_TLS_CA_FILE"),
        (&[tls, ("REDIS_TLS_CA_FILE", &garbage)], "REDIS_TLS_CA_FILE"),
        (&[tls, ("REDIS_TLS_CA_FILE", &key)], "REDIS_TLS_CA_FILE"),
        (&[tls, ("REDIS_TLS_CERT_FILE", &ca)], "REDIS_TLS_KEY_FILE"),
        (&[tls, ("REDIS_TLS_KEY_FILE", &key)], "REDIS_TLS_CERT_FILE"),
        (&[tls, ("REDIS_TLS_CERT_FILE", &garbage), ("REDIS_TLS_KEY_FILE", &key)], "REDIS_TLS_CERT_FILE"),
        (&[tls, ("REDIS_TLS_CERT_FILE", &ca), ("REDIS_TLS_KEY_FILE", &ca)], "REDIS_TLS_KEY_FILE"),
        (&[tls, ("REDIS_TLS_CERT_FILE", &ca), ("REDIS_TLS_KEY_FILE", &missing)], "REDIS_TLS_KEY_FILE"),
        // A key that is not the certificate's.
        (&[tls, ("REDIS_TLS_CERT_FILE", &ca), ("REDIS_TLS_KEY_FILE", &other_key)], "REDIS_TLS_KEY_FILE"),
        // Files for a connection without TLS would be ignored: refused instead.
        (&[("REDIS_URL", "redis://r:6379"), ("REDIS_TLS_CA_FILE", &ca)], "REDIS_TLS_CA_FILE"),
        (&[("REDIS_TLS_CA_FILE", &ca)], "REDIS_TLS_CA_FILE"),
        (&[("REDIS_CLUSTER_URLS", "redis://10.0.0.1:6379"), ("REDIS_TLS_CERT_FILE", &ca)], "REDIS_TLS_CERT_FILE"),
    ];
    for (vars, var) in cases {
        let e = config(vars).unwrap_err();
        assert_eq!(e.var, *var, "{vars:?} gave {e}");
    }
    let e = config(&[tls, ("REDIS_TLS_CA_FILE", &missing)]).unwrap_err();
    assert!(e.to_string().contains(&missing), "the path is named: {e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn jwt_secret_is_a_list_and_production_checks_each_entry() {
    let c = config(&[("JWT_SECRET", "new-secret, old-secret ,")]).unwrap();
    let secrets: Vec<&str> = c.jwt.secrets.iter().map(|s| s.expose_secret()).collect();
    assert_eq!(secrets, ["new-secret", "old-secret"]);
    assert!(!c.jwt.is_dev_secret());
    assert!(!format!("{c:?}").contains("old-secret"), "Debug must not print a secret");
    assert_eq!(config(&[("JWT_SECRET", " , ")]).unwrap_err().var, "JWT_SECRET");
    let prod = |jwt: &str| {
        config(&[("APP_ENV", "production"), ("JWT_SECRET", jwt), ("API_TOKEN", PROD_API), ("ADMIN_TOKEN", PROD_ADMIN)])
    };
    let old = "an-older-production-jwt-secret-0123456789";
    assert_eq!(prod(&format!("{PROD_JWT},{old}")).unwrap().jwt.secrets.len(), 2);
    let short = prod(&format!("{PROD_JWT},short")).unwrap_err();
    assert_eq!(short.var, "JWT_SECRET", "{short}");
    let shared = prod(&format!("{PROD_JWT},{PROD_ADMIN}")).unwrap_err();
    assert!(shared.to_string().contains("ADMIN_TOKEN"), "{shared}");
    let dev = prod(&format!("{PROD_JWT},{DEV_JWT_SECRET}")).unwrap_err();
    assert_eq!(dev.var, "JWT_SECRET", "{dev}");
}

const PROD_ADMIN: &str = "a-production-admin-token-0123456789";

#[test]
fn jwt_public_key_may_hold_several_pem_keys() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");
    let rsa = std::fs::read_to_string(format!("{dir}rsa-public.pem")).unwrap();
    let ec = std::fs::read_to_string(format!("{dir}ec-public.pem")).unwrap();
    let both = format!("{rsa}{ec}");
    let c = config(&[("JWT_PUBLIC_KEY", &both)]).unwrap();
    let kinds: Vec<PublicKeyKind> = c.jwt.public_keys.iter().map(|k| k.kind).collect();
    assert_eq!(kinds, [PublicKeyKind::Rsa, PublicKeyKind::Ec]);
    // The `\n` escapes of a one-line `.env` value, and a secret alongside: any key verifies.
    let escaped = both.replace('\n', "\\n");
    let c = config(&[("JWT_PUBLIC_KEY", &escaped), ("JWT_SECRET", "s")]).unwrap();
    assert_eq!((c.jwt.public_keys.len(), c.jwt.secrets.len()), (2, 1));
    let bad = format!("{rsa}-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n");
    let e = config(&[("JWT_PUBLIC_KEY", &bad)]).unwrap_err();
    assert_eq!(e.var, "JWT_PUBLIC_KEY");
    assert!(e.problem.contains("key #2"), "{e}");
    assert_eq!(config(&[("JWT_PUBLIC_KEY", "-----BEGIN nothing")]).unwrap_err().var, "JWT_PUBLIC_KEY");
}

#[test]
fn jwt_jwks_url_is_https_and_enough_alone_in_production() {
    let prod = |url: &str| config(&[("APP_ENV", "production"), ("JWT_JWKS_URL", url), ("API_TOKEN", PROD_API)]);
    let c = prod("https://idp.example.com/.well-known/jwks.json").unwrap();
    assert!(c.jwt.secrets.is_empty() && c.jwt.public_keys.is_empty() && !c.jwt.is_dev_secret());
    assert_eq!(c.jwt.jwks_url.unwrap().host_str(), Some("idp.example.com"));
    for bad in ["http://idp.example.com/jwks", "not a url", "ftp://idp.example.com/jwks", "https://"] {
        assert_eq!(prod(bad).unwrap_err().var, "JWT_JWKS_URL", "{bad}");
    }
    // Development: http:// allowed (a local identity provider), and no development secret.
    let c = config(&[("JWT_JWKS_URL", "http://127.0.0.1:9/jwks")]).unwrap();
    assert!(c.jwt.jwks_url.is_some() && !c.jwt.is_dev_secret() && c.jwt.secrets.is_empty());
    let c = config(&[("JWT_JWKS_URL", "https://user:pass@idp.example.com/jwks?key=k")]).unwrap();
    assert!(!format!("{c:?}").contains("pass"), "Debug prints the origin only");
    let e = config(&[("APP_ENV", "production"), ("API_TOKEN", PROD_API)]).unwrap_err();
    assert!(e.var == "JWT_SECRET" && e.problem.contains("JWT_JWKS_URL"), "{e}");
}

#[test]
fn the_internal_port_is_off_by_default_and_must_differ_from_the_public_port() {
    assert_eq!(config(&[]).unwrap().internal_port, None);
    assert_eq!(config(&[("INTERNAL_PORT", "9090")]).unwrap().internal_port, Some(9090));
    assert_eq!(config(&[("PORT", "0"), ("INTERNAL_PORT", "0")]).unwrap().internal_port, Some(0));
    for bad in
        [&[("INTERNAL_PORT", "3000")][..], &[("PORT", "8080"), ("INTERNAL_PORT", "8080")], &[("INTERNAL_PORT", "x")]]
    {
        assert_eq!(config(bad).unwrap_err().var, "INTERNAL_PORT", "{bad:?}");
    }
}
