//! Tokens from an identity provider (`JWT_JWKS_URL`), and rotation of `JWT_SECRET` and
//! `JWT_PUBLIC_KEY`: a real JWKS endpoint on 127.0.0.1 whose document and status the test
//! changes and whose fetches it counts, and real Socket.IO clients.

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::IntoResponse;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::helpers::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");

/// The identity provider's JWKS endpoint: serves `doc` with `status`, counts every GET.
struct Idp {
    url: String,
    state: Arc<IdpState>,
    server: tokio::task::JoinHandle<()>,
}

struct IdpState {
    doc: Mutex<Value>,
    status: AtomicU16,
    fetches: AtomicU64,
}

impl Idp {
    async fn start(keys: Vec<Value>) -> Idp {
        let state = Arc::new(IdpState {
            doc: Mutex::new(json!({ "keys": keys })),
            status: AtomicU16::new(200),
            fetches: AtomicU64::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/.well-known/jwks.json", listener.local_addr().unwrap());
        let router =
            axum::Router::new().route("/.well-known/jwks.json", axum::routing::get(serve)).with_state(state.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Idp { url, state, server }
    }

    fn set_keys(&self, keys: Vec<Value>) {
        *self.state.doc.lock().unwrap() = json!({ "keys": keys });
    }

    fn set_status(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }

    fn fetches(&self) -> u64 {
        self.state.fetches.load(Ordering::SeqCst)
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn serve(State(state): State<Arc<IdpState>>) -> axum::response::Response {
    state.fetches.fetch_add(1, Ordering::SeqCst);
    let status = axum::http::StatusCode::from_u16(state.status.load(Ordering::SeqCst)).unwrap();
    let doc = state.doc.lock().unwrap().clone();
    (status, [("cache-control", "public, max-age=3600")], axum::Json(doc)).into_response()
}

/// A signing key of the test and its public JWK.
struct Signer {
    key: EncodingKey,
    alg: Algorithm,
    kid: String,
}

impl Signer {
    fn from_pem(file: &str, alg: Algorithm, kid: &str) -> Signer {
        let pem = std::fs::read(format!("{FIXTURES}{file}")).unwrap();
        Signer::new(&pem, alg, kid)
    }

    fn new(pem: &[u8], alg: Algorithm, kid: &str) -> Signer {
        let key = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(pem).unwrap(),
            Algorithm::ES256 => EncodingKey::from_ec_pem(pem).unwrap(),
            _ => EncodingKey::from_ed_pem(pem).unwrap(),
        };
        Signer { key, alg, kid: kid.to_owned() }
    }

    fn rsa() -> Signer {
        Signer::from_pem("rsa-private.pem", Algorithm::RS256, "rsa-1")
    }

    fn ec() -> Signer {
        Signer::from_pem("ec-private.pem", Algorithm::ES256, "ec-1")
    }

    /// The public JWK, as an identity provider publishes it (`kid`, `alg`, `use`).
    fn jwk(&self) -> Value {
        let mut jwk = Jwk::from_encoding_key(&self.key, self.alg).unwrap();
        jwk.common.key_id = Some(self.kid.clone());
        let mut value = serde_json::to_value(&jwk).unwrap();
        value["use"] = json!("sig");
        value
    }

    /// A token for `sub`, its header naming `kid` (or no kid).
    fn token_with_kid(&self, sub: &str, kid: Option<&str>) -> String {
        let mut header = Header::new(self.alg);
        header.kid = kid.map(str::to_owned);
        let claims = json!({ "sub": sub, "exp": jsonwebtoken::get_current_timestamp() + 600 });
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }

    fn token(&self, sub: &str) -> String {
        self.token_with_kid(sub, Some(&self.kid))
    }
}

/// A server verifying tokens with the JWKS at `idp` only (plus `extra` variables).
async fn app_with_jwks(idp: &Idp, extra: &[(&str, &str)]) -> TestApp {
    let mut vars = vec![("JWT_SECRET", ""), ("JWT_JWKS_URL", idp.url.as_str())];
    vars.extend_from_slice(extra);
    let app = spawn_app_with(&vars).await;
    wait_ready(&app).await;
    app
}

async fn ready_status(app: &TestApp) -> (u16, Value) {
    read(app.http.get(app.url("/ready")).send().await.unwrap()).await
}

async fn wait_ready(app: &TestApp) {
    let deadline = Instant::now() + WAIT;
    while ready_status(app).await.0 != 200 {
        assert!(Instant::now() < deadline, "not ready in {WAIT:?}: {:?}", ready_status(app).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn refused(app: &TestApp, token: String) -> String {
    match connect(app, TokenAt::Auth(token)).await {
        Ok(_) => panic!("the token was accepted"),
        Err(message) => message,
    }
}

#[tokio::test]
async fn rs256_and_es256_tokens_are_verified_by_their_kid() {
    let (rsa, ec) = (Signer::rsa(), Signer::ec());
    let idp = Idp::start(vec![rsa.jwk(), ec.jwk()]).await;
    let app = app_with_jwks(&idp, &[]).await;
    connect(&app, TokenAt::Auth(rsa.token("u1"))).await.expect("RS256 by kid connects");
    connect(&app, TokenAt::Header(ec.token("u2"))).await.expect("ES256 by kid connects");
    // A key named in a token, but another key's kid: the signature does not verify.
    let swapped = rsa.token_with_kid("u3", Some("ec-1"));
    let message = refused(&app, swapped).await;
    assert!(message.contains("unauthorized"), "{message}");
    assert_eq!(idp.fetches(), 1, "known kids need no fetch");
}

#[tokio::test]
async fn an_eddsa_token_is_verified_by_its_kid() {
    let dir = std::env::temp_dir().join(format!("fixrx-jwks-ed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ed25519.pem");
    let status = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&file)
        .status()
        .expect("the openssl CLI runs");
    assert!(status.success());
    let ed = Signer::new(&std::fs::read(&file).unwrap(), Algorithm::EdDSA, "ed-1");
    let _ = std::fs::remove_dir_all(&dir);
    let idp = Idp::start(vec![ed.jwk()]).await;
    let app = app_with_jwks(&idp, &[]).await;
    connect(&app, TokenAt::Auth(ed.token("u1"))).await.expect("EdDSA by kid connects");
}

#[tokio::test]
async fn an_unknown_kid_is_refused_after_one_refresh() {
    let rsa = Signer::rsa();
    let idp = Idp::start(vec![rsa.jwk()]).await;
    let app = app_with_jwks(&idp, &[]).await;
    let message = refused(&app, rsa.token_with_kid("u1", Some("nobody"))).await;
    // The same answer as a token whose signature does not match (another token's payload).
    let (good, other) = (rsa.token("u1"), rsa.token("admin"));
    let parts: Vec<&str> = good.split('.').collect();
    let forged = format!("{}.{}.{}", parts[0], other.split('.').nth(1).unwrap(), parts[2]);
    assert_eq!(message, refused(&app, forged).await);
    assert_eq!(message, "unauthorized: invalid signature");
    assert_eq!(idp.fetches(), 2, "start-up, then one refresh for the unknown kid");
}

#[tokio::test]
async fn a_token_without_kid_is_refused_when_only_a_jwks_is_configured() {
    let rsa = Signer::rsa();
    let idp = Idp::start(vec![rsa.jwk()]).await;
    let app = app_with_jwks(&idp, &[]).await;
    let message = refused(&app, rsa.token_with_kid("u1", None)).await;
    assert!(message.contains("unauthorized"), "{message}");
}

#[tokio::test]
async fn a_key_added_to_the_document_is_accepted_without_a_restart() {
    let (rsa, ec) = (Signer::rsa(), Signer::ec());
    let idp = Idp::start(vec![rsa.jwk()]).await;
    let app = app_with_jwks(&idp, &[]).await;
    idp.set_keys(vec![rsa.jwk(), ec.jwk()]);
    connect(&app, TokenAt::Auth(ec.token("u1"))).await.expect("the new key verifies");
    connect(&app, TokenAt::Auth(rsa.token("u2"))).await.expect("the old key still verifies");
    println!("a key added: {} fetches (start-up + one for the new kid)", idp.fetches());
    assert_eq!(idp.fetches(), 2);
}

#[tokio::test]
async fn many_handshakes_with_unknown_kids_cause_a_bounded_number_of_fetches() {
    let rsa = Signer::rsa();
    let idp = Idp::start(vec![rsa.jwk()]).await;
    let app = Arc::new(app_with_jwks(&idp, &[("HANDSHAKES_PER_IP_PER_SEC", "0")]).await);
    let started = Instant::now();
    let mut handshakes = tokio::task::JoinSet::new();
    for i in 0..200 {
        let (app, token) = (app.clone(), rsa.token_with_kid(&format!("u{i}"), Some(&format!("unknown-{i}"))));
        handshakes.spawn(async move { connect(&app, TokenAt::Auth(token)).await.err() });
    }
    let mut refusals = 0;
    while let Some(result) = handshakes.join_next().await {
        let message = result.unwrap().expect("an unknown kid is refused");
        assert!(message.contains("unauthorized: invalid signature"), "{message}");
        refusals += 1;
    }
    let fetches = idp.fetches();
    println!("200 handshakes with distinct unknown kids: {fetches} fetches in {:?}", started.elapsed());
    assert_eq!(refusals, 200);
    assert!(fetches <= 3, "{fetches} fetches");
    // Known kids still connect at once.
    connect(&app, TokenAt::Auth(rsa.token("known"))).await.expect("known kid connects");
}

#[tokio::test]
async fn known_keys_keep_working_while_the_endpoint_answers_503() {
    let rsa = Signer::rsa();
    let idp = Idp::start(vec![rsa.jwk()]).await;
    let app = app_with_jwks(&idp, &[]).await;
    idp.set_status(503);
    // An unknown kid makes the server fetch, and the fetch fails.
    refused(&app, rsa.token_with_kid("u1", Some("rotated"))).await;
    assert_eq!(idp.fetches(), 2);
    connect(&app, TokenAt::Auth(rsa.token("u2"))).await.expect("a known key verifies while the IdP is down");
    assert_eq!(ready_status(&app).await.0, 200, "a set loaded once keeps the server ready");
}

#[tokio::test]
async fn an_hs256_token_signed_with_the_published_rsa_key_is_refused() {
    let rsa = Signer::rsa();
    let idp = Idp::start(vec![rsa.jwk()]).await;
    let public_pem = std::fs::read(format!("{FIXTURES}rsa-public.pem")).unwrap();
    let claims = json!({ "sub": "mallory", "role": "admin", "exp": jsonwebtoken::get_current_timestamp() + 600 });
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    let confused = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&public_pem)).unwrap();
    // JWKS alone, then alongside a JWT_SECRET (so HS256 itself is an accepted algorithm).
    for extra in [&[][..], &[("JWT_SECRET", JWT_SECRET)][..]] {
        let app = app_with_jwks(&idp, extra).await;
        let message = refused(&app, confused.clone()).await;
        assert!(message.starts_with("unauthorized"), "{extra:?}: {message}");
        connect(&app, TokenAt::Auth(rsa.token("u1"))).await.expect("the real key still verifies");
    }
}

#[tokio::test]
async fn ready_is_503_until_the_jwks_first_loads() {
    let rsa = Signer::rsa();
    let idp = Idp::start(vec![rsa.jwk()]).await;
    idp.set_status(503);
    let app = spawn_app_with(&[("JWT_SECRET", ""), ("JWT_JWKS_URL", idp.url.as_str())]).await;
    assert_eq!(ready_status(&app).await, (503, json!({ "status": "jwks_unavailable" })));
    assert!(connect(&app, TokenAt::Auth(rsa.token("u1"))).await.is_err(), "no key yet");
    idp.set_status(200);
    // Retried with backoff (1 s, then 2 s, ...): loaded within a few seconds.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(10);
    while ready_status(&app).await.0 != 200 {
        assert!(Instant::now() < deadline, "still {:?}", ready_status(&app).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("ready {:?} after the endpoint recovered ({} fetches)", started.elapsed(), idp.fetches());
    connect(&app, TokenAt::Auth(rsa.token("u1"))).await.expect("connects once loaded");
}

#[tokio::test]
async fn jwt_secret_new_and_old_both_verify_and_a_third_does_not() {
    let (new, old) = ("the-new-secret-0123456789abcdefghij", "the-old-secret-0123456789abcdefghij");
    let app = spawn_app_with(&[("JWT_SECRET", &format!("{new},{old}"))]).await;
    let sign = |secret: &str| {
        let claims = json!({ "sub": "u1", "exp": jsonwebtoken::get_current_timestamp() + 600 });
        jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
    };
    connect(&app, TokenAt::Auth(sign(new))).await.expect("the new secret verifies");
    connect(&app, TokenAt::Auth(sign(old))).await.expect("the old secret verifies");
    let message = refused(&app, sign("a-third-secret-0123456789abcdefghij")).await;
    assert_eq!(message, "unauthorized: invalid signature");
}

#[tokio::test]
async fn two_pem_keys_in_jwt_public_key_both_verify() {
    let pem = |f: &str| std::fs::read_to_string(format!("{FIXTURES}{f}")).unwrap();
    let both = format!("{}{}", pem("rsa-public.pem"), pem("ec-public.pem"));
    let app = spawn_app_with(&[("JWT_SECRET", ""), ("JWT_PUBLIC_KEY", &both)]).await;
    connect(&app, TokenAt::Auth(Signer::rsa().token_with_kid("u1", None))).await.expect("the RSA key verifies");
    connect(&app, TokenAt::Auth(Signer::ec().token_with_kid("u2", None))).await.expect("the EC key verifies");
    let message = refused(&app, token(json!({ "sub": "u3" }))).await;
    assert_eq!(message, "unauthorized: algorithm not accepted");
}
