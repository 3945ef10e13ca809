//! The handshake: `find_token(auth, request parts)` on an arbitrary `auth` payload,
//! `Authorization` header and query string, checked against the documented order
//! (`auth.token`, then `Authorization: Bearer`, then `?token=`), then the found token
//! through the verifier (an unsigned token must never pass). The same header bytes go
//! through the REST API's bearer check (`ApiAuth::check`), against its own model.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Unstructured;
use fixrx_realtime::Config;
use fixrx_realtime::auth::api_token::{ApiAuth, ApiAuthError};
use fixrx_realtime::auth::handshake::{TokenSource, find_token};
use fixrx_realtime::auth::{JwtVerifier, TokenError};
use fixrx_realtime_fuzz::{SECRET, generate, verify_now};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// The input, one field per line: the CONNECT `auth` payload as JSON, the
/// `Authorization` header, a second `Authorization` header, and the query string of
/// the handshake URL. A line starting with `+` is present (the rest of the line is the
/// value); any other line is absent. Bytes after the fourth line drive a generated
/// `auth` payload when the first line is present but not JSON.
struct Input<'a> {
    auth: Option<&'a [u8]>,
    header: Option<&'a [u8]>,
    header2: Option<&'a [u8]>,
    query: Option<String>,
    seed: &'a [u8],
}

impl<'a> Input<'a> {
    fn parse(data: &'a [u8]) -> Input<'a> {
        let mut lines = data.splitn(5, |b| *b == b'\n');
        let mut field = || lines.next().and_then(|l| l.strip_prefix(b"+"));
        let auth = field();
        let header = field();
        let header2 = field();
        let query = field().map(|q| String::from_utf8_lossy(q).into_owned());
        let seed = lines.next().unwrap_or_default();
        Input { auth, header, header2, query, seed }
    }
}

fn verifier() -> &'static JwtVerifier {
    static V: OnceLock<JwtVerifier> = OnceLock::new();
    V.get_or_init(|| {
        let config = Config::from_lookup(|k| match k {
            "JWT_SECRET" => Some(SECRET.to_owned()),
            _ => None,
        })
        .expect("fuzz config is valid");
        JwtVerifier::new(&config.jwt).expect("HS256 verifier")
    })
}

const API_TOKENS: [&str; 2] = ["fuzz-api-token", "rotated token"];

fn api_auth() -> &'static ApiAuth {
    static A: OnceLock<ApiAuth> = OnceLock::new();
    A.get_or_init(|| ApiAuth::new(API_TOKENS.iter().map(|t| secrecy::SecretString::from(*t)).collect(), None))
}

/// `Authorization: Bearer <token>` for the REST API: which configured token it is.
fn expected_api(header: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(header).ok()?.trim();
    let (scheme, token) = text.split_at(text.find(' ')?);
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token[1..].trim();
    // The last match wins (every token is compared, in constant time).
    API_TOKENS.iter().rposition(|t| *t == token)
}

/// The documented order, written independently of the code under test.
fn expected(auth: Option<&Value>, headers: &[http::HeaderValue], query: Option<&str>) -> Result<String, TokenError> {
    if let Some(t) = auth.and_then(|a| a.as_object()).and_then(|o| o.get("token")).filter(|t| !t.is_null()) {
        return t.as_str().map(str::to_owned).ok_or(TokenError::Malformed);
    }
    if let Some(h) = headers.first() {
        let Ok(text) = h.to_str() else { return Err(TokenError::Malformed) };
        let text = text.trim();
        let (scheme, rest) = match text.find(' ') {
            Some(i) => (&text[..i], &text[i + 1..]),
            None => (text, ""),
        };
        if scheme.eq_ignore_ascii_case("bearer") {
            return Ok(rest.trim().to_owned());
        }
    }
    if let Some(q) = query {
        for (k, v) in form_pairs(q) {
            if k == "token" {
                return Ok(v);
            }
        }
    }
    Err(TokenError::Missing)
}

/// `application/x-www-form-urlencoded` pairs, decoded by hand.
fn form_pairs(q: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() && bytes[i + 1].is_ascii_hexdigit() && bytes[i + 2].is_ascii_hexdigit() => {
                    let hex = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
                    out.push(hex(bytes[i + 1]) * 16 + hex(bytes[i + 2]));
                    i += 3;
                    continue;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let input = Input::parse(data);
    let auth: Option<Value> = input.auth.map(|bytes| {
        serde_json::from_slice(bytes).unwrap_or_else(|_| {
            let mut u = Unstructured::new(input.seed);
            generate::value(&mut u, 2).unwrap_or(Value::Null)
        })
    });
    let mut req = http::Request::builder();
    let mut headers = Vec::new();
    for h in [input.header, input.header2].into_iter().flatten() {
        if let Ok(v) = http::HeaderValue::from_bytes(h) {
            req = req.header(http::header::AUTHORIZATION, v.clone());
            headers.push(v);
        }
    }
    let mut query = input.query.as_deref();
    let uri = match query {
        Some(q) => format!("/socket.io/?EIO=4&transport=websocket&{q}"),
        None => "/socket.io/?EIO=4&transport=websocket".to_owned(),
    };
    let parts = match req.uri(uri.as_str()).body(()) {
        Ok(r) => r.into_parts().0,
        Err(_) => {
            query = None;
            let mut req = http::Request::builder().uri("/socket.io/?EIO=4&transport=websocket");
            for h in &headers {
                req = req.header(http::header::AUTHORIZATION, h.clone());
            }
            req.body(()).expect("a plain request builds").into_parts().0
        }
    };
    let full_query = parts.uri.query().map(str::to_owned);

    for h in [input.header, input.header2].into_iter().flatten() {
        match (api_auth().check(Some(h)), expected_api(h)) {
            (Ok(i), Some(j)) => assert_eq!(i, j),
            (Err(ApiAuthError::Unauthorized), None) => {}
            (got, want) => panic!("ApiAuth::check({:?}) = {got:?}, expected {want:?}", String::from_utf8_lossy(h)),
        }
    }
    assert_eq!(api_auth().check(None), Err(ApiAuthError::Unauthorized));

    let found = find_token(auth.as_ref(), &parts);
    let want = expected(auth.as_ref(), &headers, full_query.as_deref());
    let got = found
        .as_ref()
        .map(|s| match s {
            TokenSource::Auth(t) => t.to_string(),
            TokenSource::Header(t) | TokenSource::Query(t) => t.clone(),
        })
        .map_err(Clone::clone);
    assert_eq!(got, want, "auth {auth:?}, headers {headers:?}, query {query:?}");
    match &found {
        Ok(TokenSource::Auth(_)) => assert!(auth.is_some()),
        Ok(TokenSource::Header(t)) => assert_eq!(t.trim(), t, "header token keeps its whitespace"),
        _ => {}
    }
    // Nothing here is signed with the secret (bar a replayed corpus token): it must not
    // authenticate, whatever find_token extracted.
    if let Ok(source) = &found {
        let token = match source {
            TokenSource::Auth(t) => *t,
            TokenSource::Header(t) | TokenSource::Query(t) => t.as_str(),
        };
        if let Ok(identity) = verify_now(verifier(), token) {
            // Only possible for a token the secret really signed: re-check its signature.
            let t = token.trim();
            let (message, sig) = t.rsplit_once('.').expect("three parts");
            let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
            let good = jsonwebtoken::crypto::sign(message.as_bytes(), &key, jsonwebtoken::Algorithm::HS256).unwrap();
            assert_eq!(sig, good, "accepted {identity:?} from an unsigned token");
        }
    }
});
