//! A stand-in identity provider: a real HTTP JWKS endpoint on 127.0.0.1 whose document,
//! status and speed the test changes and whose fetches it counts, and the signing keys
//! whose public halves it publishes.

use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::response::IntoResponse;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");

/// The JWKS endpoint: serves its document with its status, counts every GET.
pub struct Idp {
    pub url: String,
    state: Arc<IdpState>,
    server: tokio::task::JoinHandle<()>,
}

struct IdpState {
    doc: Mutex<String>,
    status: AtomicU16,
    /// Answer nothing for a minute (longer than any fetch may take).
    hang: AtomicBool,
    fetches: AtomicU64,
}

impl Idp {
    pub async fn start(keys: Vec<Value>) -> Idp {
        let state = Arc::new(IdpState {
            doc: Mutex::new(json!({ "keys": keys }).to_string()),
            status: AtomicU16::new(200),
            hang: AtomicBool::new(false),
            fetches: AtomicU64::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let url = format!("http://{}/.well-known/jwks.json", listener.local_addr().expect("local addr"));
        let router =
            axum::Router::new().route("/.well-known/jwks.json", axum::routing::get(serve)).with_state(state.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Idp { url, state, server }
    }

    pub fn set_keys(&self, keys: Vec<Value>) {
        self.set_document(json!({ "keys": keys }).to_string());
    }

    pub fn set_document(&self, doc: String) {
        *self.state.doc.lock().expect("not poisoned") = doc;
    }

    pub fn set_status(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }

    pub fn set_hang(&self, hang: bool) {
        self.state.hang.store(hang, Ordering::SeqCst);
    }

    /// GETs received so far.
    pub fn fetches(&self) -> u64 {
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
    if state.hang.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    let status = axum::http::StatusCode::from_u16(state.status.load(Ordering::SeqCst)).expect("a valid status");
    let doc = state.doc.lock().expect("not poisoned").clone();
    (status, [("content-type", "application/json"), ("cache-control", "public, max-age=3600")], doc).into_response()
}

/// A signing key of the test and its public JWK.
pub struct Signer {
    pub key: EncodingKey,
    pub alg: Algorithm,
    pub kid: String,
}

impl Signer {
    pub fn from_pem(file: &str, alg: Algorithm, kid: &str) -> Signer {
        let pem = std::fs::read(format!("{FIXTURES}{file}")).expect("fixture key");
        Signer::new(&pem, alg, kid)
    }

    pub fn new(pem: &[u8], alg: Algorithm, kid: &str) -> Signer {
        let key = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(pem),
            Algorithm::ES256 => EncodingKey::from_ec_pem(pem),
            _ => EncodingKey::from_ed_pem(pem),
        };
        Signer { key: key.expect("a private key"), alg, kid: kid.to_owned() }
    }

    pub fn rsa() -> Signer {
        Signer::from_pem("rsa-private.pem", Algorithm::RS256, "rsa-1")
    }

    pub fn ec() -> Signer {
        Signer::from_pem("ec-private.pem", Algorithm::ES256, "ec-1")
    }

    /// A fresh key (ES256 on P-256, or EdDSA on Ed25519) made by the `openssl` CLI: a key
    /// no fixture and no other test holds.
    pub fn generated(alg: Algorithm, kid: &str) -> Signer {
        let params: &[&str] = match alg {
            Algorithm::ES256 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            Algorithm::EdDSA => &["-algorithm", "ed25519"],
            _ => panic!("no generator for {alg:?}"),
        };
        let dir = std::env::temp_dir().join(format!("fixrx-jwks-{}-{}", std::process::id(), fastrand::u64(..)));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("key.pem");
        let status = std::process::Command::new("openssl")
            .arg("genpkey")
            .args(params)
            .arg("-out")
            .arg(&file)
            .status()
            .expect("the openssl CLI runs");
        assert!(status.success(), "openssl genpkey: {status}");
        let pem = std::fs::read(&file).expect("the generated key");
        let _ = std::fs::remove_dir_all(&dir);
        Signer::new(&pem, alg, kid)
    }

    /// The public JWK, as an identity provider publishes it (`kid`, `alg`, `use`).
    pub fn jwk(&self) -> Value {
        let mut jwk = Jwk::from_encoding_key(&self.key, self.alg).expect("a public JWK");
        jwk.common.key_id = Some(self.kid.clone());
        let mut value = serde_json::to_value(&jwk).expect("JSON");
        value["use"] = json!("sig");
        value
    }

    /// A token for `sub`, its header naming `kid` (or no kid).
    pub fn token_with_kid(&self, sub: &str, kid: Option<&str>) -> String {
        let mut header = Header::new(self.alg);
        header.kid = kid.map(str::to_owned);
        let claims = json!({ "sub": sub, "exp": jsonwebtoken::get_current_timestamp() + 600 });
        jsonwebtoken::encode(&header, &claims, &self.key).expect("sign")
    }

    /// A token for `sub` naming this key's kid.
    pub fn token(&self, sub: &str) -> String {
        self.token_with_kid(sub, Some(&self.kid))
    }
}
