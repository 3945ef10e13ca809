//! The handshake: every token location, and every reason to refuse one.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_token_in_auth_connects() {
    let app = spawn_app().await;
    connect(&app, TokenAt::Auth(user_token("u1"))).await.expect("connects");
}

#[tokio::test]
async fn a_bearer_header_connects() {
    let app = spawn_app().await;
    connect(&app, TokenAt::Header(user_token("u1"))).await.expect("connects");
}

#[tokio::test]
async fn a_token_query_parameter_connects() {
    let app = spawn_app().await;
    connect(&app, TokenAt::Query(user_token("u1"))).await.expect("connects");
}

#[tokio::test]
async fn an_invalid_auth_token_is_refused_even_when_the_header_is_valid() {
    let app = spawn_app().await;
    let builder_token = "not-a-jwt".to_owned();
    // auth.token comes first: it is the one checked.
    let err = connect_auth_and_header(&app, &builder_token, &user_token("u1")).await.unwrap_err();
    assert!(err.contains("unauthorized: token malformed"), "{err}");
}

async fn connect_auth_and_header(app: &TestApp, auth: &str, header: &str) -> Result<(), String> {
    use futures_util::FutureExt;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (t1, t2) = (tx.clone(), tx);
    let client = rust_socketio::asynchronous::ClientBuilder::new(app.url("/"))
        .transport_type(rust_socketio::TransportType::Websocket)
        .reconnect(false)
        .auth(json!({ "token": auth }))
        .opening_header("Authorization", format!("Bearer {header}"))
        .on(rust_socketio::Event::Connect, move |_, _| {
            let _ = t1.send(Ok(()));
            async {}.boxed()
        })
        .on(rust_socketio::Event::Error, move |p, _| {
            let _ = t2.send(Err(format!("{p:?}")));
            async {}.boxed()
        })
        .connect()
        .await
        .expect("transport");
    let result = tokio::time::timeout(WAIT, rx.recv()).await.expect("answer").expect("open");
    let _ = client.disconnect().await;
    result
}

async fn refusal(app: &TestApp, at: TokenAt) -> String {
    match connect(app, at).await {
        Ok(_) => panic!("connected, but must be refused"),
        Err(message) => message,
    }
}

#[tokio::test]
async fn every_bad_token_is_refused_with_its_reason() {
    let app = spawn_app().await;
    let now = jsonwebtoken::get_current_timestamp();
    let wrong_key = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({ "sub": "u1", "exp": now + 600 }),
        &jsonwebtoken::EncodingKey::from_secret(b"some-other-secret"),
    )
    .unwrap();
    let cases = [
        (TokenAt::Nowhere, "unauthorized: token missing"),
        (TokenAt::Auth(String::new()), "unauthorized: token missing"),
        (TokenAt::Auth("garbage".into()), "unauthorized: token malformed"),
        (TokenAt::Header("a.b.c".into()), "unauthorized: token malformed"),
        (TokenAt::Auth(token(json!({ "sub": "u1", "exp": now - 1 }))), "unauthorized: token expired"),
        (TokenAt::Query(token(json!({ "sub": "u1", "exp": now - 3600 }))), "unauthorized: token expired"),
        (TokenAt::Auth(wrong_key), "unauthorized: invalid signature"),
        (TokenAt::Auth(token(json!({ "sub": "u1", "role": "superuser" }))), "unauthorized: invalid role"),
        (TokenAt::Auth(token(json!({ "role": "user" }))), "unauthorized: missing claim `sub`"),
        (TokenAt::Auth(token(json!({ "sub": "u1", "nbf": now + 3600 }))), "unauthorized: token not yet valid"),
    ];
    for (at, reason) in cases {
        let message = refusal(&app, at).await;
        assert!(message.contains(reason), "expected {reason:?} in {message:?}");
    }
}

#[tokio::test]
async fn a_token_without_exp_is_refused() {
    let app = spawn_app().await;
    let key = jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes());
    let no_exp = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &json!({ "sub": "u1" }), &key).unwrap();
    let message = refusal(&app, TokenAt::Auth(no_exp)).await;
    assert!(message.contains("unauthorized: missing claim `exp`"), "{message}");
}

#[tokio::test]
async fn issuer_and_audience_are_checked_when_configured() {
    let app = spawn_app_with(&[("JWT_ISSUER", "fixrx-api"), ("JWT_AUDIENCE", "fixrx-app")]).await;
    let good = token(json!({ "sub": "u1", "iss": "fixrx-api", "aud": "fixrx-app" }));
    connect(&app, TokenAt::Auth(good)).await.expect("right issuer and audience connect");
    let bad_iss = token(json!({ "sub": "u1", "iss": "elsewhere", "aud": "fixrx-app" }));
    assert!(refusal(&app, TokenAt::Auth(bad_iss)).await.contains("unauthorized: invalid issuer"));
    let bad_aud = token(json!({ "sub": "u1", "iss": "fixrx-api", "aud": "other" }));
    assert!(refusal(&app, TokenAt::Auth(bad_aud)).await.contains("unauthorized: invalid audience"));
    let no_iss = token(json!({ "sub": "u1", "aud": "fixrx-app" }));
    assert!(refusal(&app, TokenAt::Auth(no_iss)).await.contains("unauthorized: invalid issuer"));
    let no_aud = token(json!({ "sub": "u1", "iss": "fixrx-api" }));
    assert!(refusal(&app, TokenAt::Auth(no_aud)).await.contains("unauthorized: invalid audience"));
}

#[tokio::test]
async fn a_refused_client_joins_no_room_and_receives_nothing() {
    let app = spawn_app().await;
    let expired = token(json!({ "sub": "ghost", "exp": jsonwebtoken::get_current_timestamp() - 10 }));
    refusal(&app, TokenAt::Auth(expired)).await;
    let (status, body) = app.get("/api/v1/presence/user/ghost").await;
    assert_eq!((status, body), (200, json!({ "online": false, "connections": 0 })));
}

#[tokio::test]
async fn numeric_ids_in_claims_are_read_as_strings() {
    let app = spawn_app().await;
    let mut vendor = connect(&app, TokenAt::Auth(token(json!({ "sub": 7, "role": "vendor", "vendorId": 99 }))))
        .await
        .expect("connects");
    let (status, _) = app.post_event(event_body("service:created", "x", "99")).await;
    assert_eq!(status, 202);
    vendor.expect_event("service:created").await;
    vendor.expect_nothing().await;
}

/// RS256 and ES256 with a public key (test-only key pairs under tests/fixtures).
#[tokio::test]
async fn public_key_tokens_are_verified() {
    for (public, private, alg) in [
        ("rsa-public.pem", "rsa-private.pem", jsonwebtoken::Algorithm::RS256),
        ("ec-public.pem", "ec-private.pem", jsonwebtoken::Algorithm::ES256),
    ] {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");
        let app = spawn_app_with(&[("JWT_SECRET", ""), ("JWT_PUBLIC_KEY", &format!("{dir}{public}"))]).await;
        let pem = std::fs::read(format!("{dir}{private}")).unwrap();
        let key = match alg {
            jsonwebtoken::Algorithm::RS256 => jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap(),
            _ => jsonwebtoken::EncodingKey::from_ec_pem(&pem).unwrap(),
        };
        let claims = json!({ "sub": "u1", "exp": jsonwebtoken::get_current_timestamp() + 60 });
        let good = jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), &claims, &key).unwrap();
        connect(&app, TokenAt::Auth(good)).await.unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        // An HS256 token signed with the public key as a secret: the classic confusion attack.
        let public_pem = std::fs::read(format!("{dir}{public}")).unwrap();
        let confused = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(&public_pem),
        )
        .unwrap();
        let message = refusal(&app, TokenAt::Auth(confused)).await;
        assert!(message.contains("unauthorized: algorithm not accepted"), "{message}");
    }
}
