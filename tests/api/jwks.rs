//! Tokens from an identity provider (`JWT_JWKS_URL`), and rotation of `JWT_SECRET` and
//! `JWT_PUBLIC_KEY`: a real JWKS endpoint on 127.0.0.1 (see `idp`) and real Socket.IO clients.

mod idp;

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::helpers::*;
use idp::{FIXTURES, Idp, Signer};

/// A server verifying tokens with the JWKS at `idp` only (plus `extra` variables), ready.
async fn app_with_jwks(idp: &Idp, extra: &[(&str, &str)]) -> TestApp {
    let mut vars = vec![("JWT_SECRET", ""), ("JWT_JWKS_URL", idp.url.as_str())];
    vars.extend_from_slice(extra);
    let app = spawn_app_with(&vars).await;
    wait_ready(&app, WAIT).await;
    app
}

async fn ready_status(app: &TestApp) -> (u16, Value) {
    read(app.http.get(app.url("/ready")).send().await.expect("GET /ready")).await
}

async fn wait_ready(app: &TestApp, within: Duration) {
    let deadline = Instant::now() + within;
    while ready_status(app).await.0 != 200 {
        assert!(Instant::now() < deadline, "not ready in {within:?}: {:?}", ready_status(app).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Connects with `token` and expects a refusal naming `reason`.
async fn refused(app: &TestApp, token: String, reason: &str) {
    match connect(app, TokenAt::Auth(token)).await {
        Ok(_) => panic!("the token was accepted; expected {reason:?}"),
        Err(message) => assert!(message.contains(reason), "expected {reason:?} in {message:?}"),
    }
}

/// Each client is in its own `user:<id>` room and only there: an event for one user
/// reaches that user's socket and no other.
async fn each_in_its_own_user_room(app: &TestApp, clients: &mut [(&str, &mut TestClient)]) {
    for i in 0..clients.len() {
        let id = clients[i].0;
        let (status, body) = app.post_event(event_body("booking:created", id, "nobody")).await;
        assert_eq!(status, 202, "{body}");
        let event = clients[i].1.expect_event("booking:created").await;
        assert_eq!(event["booking"]["userId"], id);
        for (other, client) in clients.iter_mut().filter(|(other, _)| *other != id) {
            println!("{other} must not receive {id}'s event");
            client.expect_nothing().await;
        }
    }
}

#[tokio::test]
async fn rs256_and_es256_tokens_are_verified_by_their_kid() {
    let (rsa, ec) = (Signer::rsa(), Signer::ec());
    let idp = Idp::start(vec![rsa.jwk(), ec.jwk()]).await;
    let app = app_with_jwks(&idp, &[]).await;
    let mut u1 = connect(&app, TokenAt::Auth(rsa.token("u1"))).await.expect("RS256 by kid connects");
    let mut u2 = connect(&app, TokenAt::Header(ec.token("u2"))).await.expect("ES256 by kid connects");
    each_in_its_own_user_room(&app, &mut [("u1", &mut u1), ("u2", &mut u2)]).await;
    // Signed by the RSA key but naming the EC key: checked with the EC key, and so refused.
    refused(&app, rsa.token_with_kid("u3", Some("ec-1")), "unauthorized: algorithm not accepted").await;
    assert_eq!(idp.fetches(), 1, "known kids need no fetch");
}

#[tokio::test]
async fn an_eddsa_token_is_verified_by_its_kid() {
    let ed = Signer::generated(Algorithm::EdDSA, "ed-1");
    let idp = Idp::start(vec![ed.jwk()]).await;
    let app = app_with_jwks(&idp, &[]).await;
    let mut u1 = connect(&app, TokenAt::Auth(ed.token("u1"))).await.expect("EdDSA by kid connects");
    each_in_its_own_user_room(&app, &mut [("u1", &mut u1)]).await;
    let stranger = Signer::generated(Algorithm::EdDSA, "ed-1");
    refused(&app, stranger.token("u2"), "unauthorized: invalid signature").await;
}

#[tokio::test]
async fn an_unknown_kid_is_refused_after_one_refresh() {
    let rsa = Signer::rsa();
    let idp = Idp::start(vec![rsa.jwk()]).await;
    let app = app_with_jwks(&idp, &[]).await;
    refused(&app, rsa.token_with_kid("u1", Some("nobody")), "unauthorized: invalid signature").await;
    assert_eq!(idp.fetches(), 2, "start-up, then one refresh for the unknown kid");
    let (status, body) = app.get("/api/v1/presence/user/u1").await;
    assert_eq!((status, body), (200, json!({ "online": false, "connections": 0 })));
}

#[tokio::test]
async fn a_token_without_kid_is_refused_when_only_a_jwks_is_configured() {
    let rsa = Signer::rsa();
    let idp = Idp::start(vec![rsa.jwk()]).await;
    let app = app_with_jwks(&idp, &[]).await;
    refused(&app, rsa.token_with_kid("u1", None), "unauthorized: invalid signature").await;
    assert_eq!(idp.fetches(), 1, "no kid, nothing to look up");
}

#[tokio::test]
async fn a_key_added_to_the_document_is_accepted_without_a_restart() {
    let (rsa, ec) = (Signer::rsa(), Signer::ec());
    let idp = Idp::start(vec![rsa.jwk()]).await;
    let app = app_with_jwks(&idp, &[]).await;
    // The provider publishes a new key; the first token naming it makes the server fetch.
    idp.set_keys(vec![rsa.jwk(), ec.jwk()]);
    let mut u1 = connect(&app, TokenAt::Auth(ec.token("u1"))).await.expect("the new key verifies");
    let mut u2 = connect(&app, TokenAt::Auth(rsa.token("u2"))).await.expect("the old key still verifies");
    each_in_its_own_user_room(&app, &mut [("u1", &mut u1), ("u2", &mut u2)]).await;
    assert_eq!(idp.fetches(), 2, "start-up, then one for the new kid");
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
        let message = result.expect("the task ends").expect("an unknown kid is refused");
        assert!(message.contains("unauthorized: invalid signature"), "{message}");
        refusals += 1;
    }
    let (fetches, elapsed) = (idp.fetches(), started.elapsed());
    println!("200 handshakes with distinct unknown kids: {fetches} fetches in {elapsed:?}");
    assert_eq!(refusals, 200);
    // Start-up, then at most one per 5 s begun while the handshakes lasted (a loaded
    // machine stretches them; unbounded, this would be 201).
    let bound = 2 + elapsed.as_secs() / 5;
    assert!((2..=bound).contains(&fetches), "{fetches} fetches in {elapsed:?}, at most {bound}");
    let mut known = connect(&app, TokenAt::Auth(rsa.token("known"))).await.expect("a known kid connects");
    each_in_its_own_user_room(&app, &mut [("known", &mut known)]).await;
}

#[tokio::test]
async fn known_keys_keep_working_while_the_endpoint_answers_503() {
    let rsa = Signer::rsa();
    let idp = Idp::start(vec![rsa.jwk()]).await;
    let app = app_with_jwks(&idp, &[]).await;
    idp.set_status(503);
    // An unknown kid makes the server fetch, and the fetch fails.
    refused(&app, rsa.token_with_kid("u1", Some("rotated")), "unauthorized: invalid signature").await;
    assert_eq!(idp.fetches(), 2);
    let mut u2 =
        connect(&app, TokenAt::Auth(rsa.token("u2"))).await.expect("a known key verifies while the IdP is down");
    each_in_its_own_user_room(&app, &mut [("u2", &mut u2)]).await;
    assert_eq!(
        ready_status(&app).await,
        (200, json!({ "status": "ready" })),
        "a set loaded once keeps the server ready"
    );
}

#[tokio::test]
async fn known_keys_do_not_wait_for_a_fetch_that_hangs() {
    let rsa = Signer::rsa();
    let idp = Idp::start(vec![rsa.jwk()]).await;
    let app = Arc::new(app_with_jwks(&idp, &[]).await);
    idp.set_hang(true);
    // A handshake naming an unknown kid waits for the fetch (up to the fetch's timeout).
    let stuck = {
        let (app, token) = (app.clone(), rsa.token_with_kid("u1", Some("rotated")));
        tokio::spawn(async move { connect(&app, TokenAt::Auth(token)).await.err() })
    };
    let deadline = Instant::now() + WAIT;
    while idp.fetches() < 2 {
        assert!(Instant::now() < deadline, "the unknown kid caused no fetch");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    let mut u2 = connect(&app, TokenAt::Auth(rsa.token("u2"))).await.expect("a known key verifies");
    assert!(started.elapsed() < Duration::from_secs(2), "waited {:?} for the hanging fetch", started.elapsed());
    stuck.abort();
    each_in_its_own_user_room(&app, &mut [("u2", &mut u2)]).await;
}

#[tokio::test]
async fn a_fetch_that_hangs_gives_up_after_its_timeout_and_is_retried() {
    let rsa = Signer::rsa();
    let idp = Idp::start(vec![rsa.jwk()]).await;
    idp.set_hang(true);
    let started = Instant::now();
    let app = spawn_app_with(&[("JWT_SECRET", ""), ("JWT_JWKS_URL", idp.url.as_str())]).await;
    // The endpoint answers after 60 s; the fetch gives up after 5 s and the next one follows.
    while idp.fetches() < 2 {
        assert!(started.elapsed() < Duration::from_secs(10), "no retry: the first fetch never gave up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let retried = started.elapsed();
    println!("second fetch after {retried:?}");
    assert!(retried >= Duration::from_millis(4_500), "the first fetch gave up after {retried:?}, not its timeout");
    assert_eq!(ready_status(&app).await, (503, json!({ "status": "jwks_unavailable" })));
}

#[tokio::test]
async fn an_oversized_document_is_refused_whole() {
    let rsa = Signer::rsa();
    let idp = Idp::start(vec![rsa.jwk()]).await;
    let padding = "x".repeat(1024 * 1024 + 1);
    idp.set_document(json!({ "keys": [rsa.jwk(), { "kty": "junk", "pad": padding }] }).to_string());
    let app = spawn_app_with(&[("JWT_SECRET", ""), ("JWT_JWKS_URL", idp.url.as_str())]).await;
    // The second fetch (a retry) begins only after the first one was refused.
    let deadline = Instant::now() + WAIT;
    while idp.fetches() < 2 {
        let ready = ready_status(&app).await;
        assert!(Instant::now() < deadline, "no retry after the oversized document; /ready: {ready:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(ready_status(&app).await, (503, json!({ "status": "jwks_unavailable" })));
    refused(&app, rsa.token("u1"), "unauthorized: invalid signature").await;
}

#[tokio::test]
async fn junk_entries_in_the_document_are_skipped_and_the_good_keys_kept() {
    let rsa = Signer::rsa();
    let idp = Idp::start(Vec::new()).await;
    let public = rsa.jwk();
    let with = |kid: &str, fields: Value| {
        let mut jwk = public.clone();
        jwk["kid"] = json!(kid);
        jwk.as_object_mut().expect("an object").extend(fields.as_object().expect("an object").clone());
        jwk
    };
    let shared_secret = "published-for-everyone-to-see";
    idp.set_keys(vec![
        json!("not an object"),
        json!({ "kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB" }),
        json!({ "kty": "oct", "kid": "shared", "k": base64_url(shared_secret.as_bytes()) }),
        with("enc", json!({ "use": "enc" })),
        with("ps", json!({ "alg": "PS256" })),
        with("hs", json!({ "alg": "HS256" })),
        json!({ "kty": "EC", "kid": "p384", "crv": "P-384", "x": "AA", "y": "AA" }),
        public.clone(),
    ]);
    let app = app_with_jwks(&idp, &[]).await;
    let mut u1 = connect(&app, TokenAt::Auth(rsa.token("u1"))).await.expect("the good key verifies");
    each_in_its_own_user_room(&app, &mut [("u1", &mut u1)]).await;
    // The same RSA key under kids published for other uses or algorithms is not used.
    for kid in ["enc", "ps", "hs"] {
        refused(&app, rsa.token_with_kid("u2", Some(kid)), "unauthorized: invalid signature").await;
    }
    // A symmetric key in a public document is never a verification key.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("shared".into());
    let claims = json!({ "sub": "mallory", "exp": jsonwebtoken::get_current_timestamp() + 600 });
    let forged =
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(shared_secret.as_bytes())).expect("sign");
    refused(&app, forged, "unauthorized: algorithm not accepted").await;
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The classic confusion: an HS256 token whose HMAC secret is the RSA key the provider
/// publishes (as PEM, or as the JWK's own text), naming that key's kid.
#[tokio::test]
async fn an_hs256_token_signed_with_the_published_rsa_key_is_refused() {
    let rsa = Signer::rsa();
    let idp = Idp::start(vec![rsa.jwk()]).await;
    let public_pem = std::fs::read(format!("{FIXTURES}rsa-public.pem")).expect("fixture");
    let public_jwk = rsa.jwk().to_string().into_bytes();
    let claims = json!({ "sub": "mallory", "role": "admin", "exp": jsonwebtoken::get_current_timestamp() + 600 });
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(rsa.kid.clone());
    // JWKS alone, then alongside a JWT_SECRET (so HS256 itself is an accepted algorithm).
    for extra in [&[][..], &[("JWT_SECRET", JWT_SECRET)][..]] {
        let app = app_with_jwks(&idp, extra).await;
        for secret in [&public_pem, &public_jwk] {
            let confused = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret)).expect("sign");
            refused(&app, confused, "unauthorized: algorithm not accepted").await;
        }
        let (status, body) = app.get("/api/v1/presence/user/mallory").await;
        assert_eq!((status, body), (200, json!({ "online": false, "connections": 0 })), "{extra:?}");
        connect(&app, TokenAt::Auth(rsa.token("u1"))).await.expect("the real key still verifies");
    }
}

/// `alg: none` and an empty signature, naming a known kid or none, with or without a
/// JWT_SECRET beside the JWKS.
#[tokio::test]
async fn an_unsigned_token_is_refused() {
    let rsa = Signer::rsa();
    let idp = Idp::start(vec![rsa.jwk()]).await;
    let claims = base64_url(
        json!({ "sub": "mallory", "exp": jsonwebtoken::get_current_timestamp() + 600 }).to_string().as_bytes(),
    );
    for extra in [&[][..], &[("JWT_SECRET", JWT_SECRET)][..]] {
        let app = app_with_jwks(&idp, extra).await;
        for header in
            [json!({ "alg": "none", "kid": rsa.kid }), json!({ "alg": "none" }), json!({ "alg": "None", "typ": "JWT" })]
        {
            let unsigned = format!("{}.{claims}.", base64_url(header.to_string().as_bytes()));
            refused(&app, unsigned, "unauthorized: algorithm not accepted").await;
        }
        let (status, body) = app.get("/api/v1/presence/user/mallory").await;
        assert_eq!((status, body), (200, json!({ "online": false, "connections": 0 })), "{extra:?}");
    }
}

#[tokio::test]
async fn ready_is_503_until_the_jwks_first_loads() {
    let rsa = Signer::rsa();
    let idp = Idp::start(vec![rsa.jwk()]).await;
    idp.set_status(503);
    let app = spawn_app_with(&[("JWT_SECRET", ""), ("JWT_JWKS_URL", idp.url.as_str())]).await;
    assert_eq!(ready_status(&app).await, (503, json!({ "status": "jwks_unavailable" })));
    refused(&app, rsa.token("u1"), "unauthorized: invalid signature").await;
    idp.set_status(200);
    // Retried with backoff (1 s, then 2 s, ...): loaded within a few seconds.
    let started = Instant::now();
    wait_ready(&app, Duration::from_secs(10)).await;
    println!("ready {:?} after the endpoint recovered ({} fetches)", started.elapsed(), idp.fetches());
    assert_eq!(ready_status(&app).await, (200, json!({ "status": "ready" })));
    let mut u1 = connect(&app, TokenAt::Auth(rsa.token("u1"))).await.expect("connects once loaded");
    each_in_its_own_user_room(&app, &mut [("u1", &mut u1)]).await;
}

#[tokio::test]
async fn jwt_secret_new_and_old_both_verify_and_a_third_does_not() {
    let (new, old) = ("the-new-secret-0123456789abcdefghij", "the-old-secret-0123456789abcdefghij");
    let app = spawn_app_with(&[("JWT_SECRET", &format!("{new},{old}"))]).await;
    let sign = |sub: &str, secret: &str| {
        let claims = json!({ "sub": sub, "exp": jsonwebtoken::get_current_timestamp() + 600 });
        jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(secret.as_bytes())).expect("sign")
    };
    let mut u1 = connect(&app, TokenAt::Auth(sign("u1", new))).await.expect("the new secret verifies");
    let mut u2 = connect(&app, TokenAt::Auth(sign("u2", old))).await.expect("the old secret verifies");
    each_in_its_own_user_room(&app, &mut [("u1", &mut u1), ("u2", &mut u2)]).await;
    refused(&app, sign("u3", "a-third-secret-0123456789abcdefghij"), "unauthorized: invalid signature").await;
}

#[tokio::test]
async fn two_pem_keys_in_jwt_public_key_both_verify() {
    let pem = |f: &str| std::fs::read_to_string(format!("{FIXTURES}{f}")).expect("fixture");
    let both = format!("{}{}", pem("rsa-public.pem"), pem("ec-public.pem"));
    let app = spawn_app_with(&[("JWT_SECRET", ""), ("JWT_PUBLIC_KEY", &both)]).await;
    let mut u1 =
        connect(&app, TokenAt::Auth(Signer::rsa().token_with_kid("u1", None))).await.expect("the RSA key verifies");
    let mut u2 =
        connect(&app, TokenAt::Auth(Signer::ec().token_with_kid("u2", None))).await.expect("the EC key verifies");
    each_in_its_own_user_room(&app, &mut [("u1", &mut u1), ("u2", &mut u2)]).await;
    // A third key of a configured kind, and a secret when no JWT_SECRET is set.
    let stranger = Signer::generated(Algorithm::EdDSA, "x");
    let other_ec = Signer::generated(Algorithm::ES256, "y");
    refused(&app, other_ec.token_with_kid("u3", None), "unauthorized: invalid signature").await;
    refused(&app, stranger.token_with_kid("u3", None), "unauthorized: algorithm not accepted").await;
    refused(&app, token(json!({ "sub": "u3" })), "unauthorized: algorithm not accepted").await;
}
