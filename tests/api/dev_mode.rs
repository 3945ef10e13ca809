//! Development mode is safe to start by accident, and production refuses weak secrets.

use std::process::Stdio;

use crate::helpers::*;
use crate::raw::Binary;

#[tokio::test]
async fn development_without_host_listens_on_loopback_only() {
    // Zero configuration, as `cargo run` (only a free port instead of 3000).
    let server = Binary::start_unsetting(&[], &["HOST", "JWT_SECRET", "API_TOKEN"]).await;
    assert!(server.addr.ip().is_loopback(), "listening on {}", server.addr);
    assert_eq!(server.addr.ip(), std::net::IpAddr::from([127, 0, 0, 1]));
    let (status, body) = server.app.get("/dev/token?sub=u1").await;
    assert_eq!(status, 200, "{body}");
}

/// Runs the binary with `vars` only (production), expecting it to refuse to start.
async fn refused(vars: &[(&str, &str)]) -> (i32, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_fixrx-realtime"))
        .current_dir(std::env::temp_dir())
        .env_clear()
        .envs([("APP_ENV", "production"), ("PORT", "0"), ("HOST", "127.0.0.1")])
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .output();
    let out = tokio::time::timeout(WAIT, out).await.expect("exits in time").expect("runs");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test]
async fn production_refuses_short_secrets_and_one_secret_in_two_places_with_one_line() {
    let jwt = "a-production-jwt-secret-0123456789abcdef";
    let api = "a-production-api-token";
    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[("JWT_SECRET", "0123456789012345678901234567890"), ("API_TOKEN", api)], "JWT_SECRET"),
        (&[("JWT_SECRET", jwt), ("API_TOKEN", "short-token")], "API_TOKEN"),
        (&[("JWT_SECRET", jwt), ("API_TOKEN", api), ("ADMIN_TOKEN", jwt)], "JWT_SECRET"),
        (
            &[
                ("JWT_SECRET", jwt),
                ("API_TOKEN", api),
                ("WEBHOOK_URL", "http://127.0.0.1:9/h"),
                ("WEBHOOK_SECRET", api),
            ],
            "WEBHOOK_SECRET",
        ),
    ];
    for (vars, var) in cases {
        let (code, stderr) = refused(vars).await;
        assert_eq!(code, 2, "{vars:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line: {stderr}");
        assert!(lines[0].contains(var), "{vars:?} named {var}: {stderr}");
        for (_, value) in vars {
            assert!(!lines[0].contains(value) || value.len() < 8, "a secret was printed: {stderr}");
        }
    }
}
