//! Client tokens: `JwtVerifier::verify` on arbitrary strings, and on structurally
//! valid JWTs with arbitrary header and claims JSON, signed with the configured
//! secret (so the claim parsing is reached), with another secret, or not at all.
//!
//! Invariants: verify never accepts a token whose signature is not HS256 with the
//! secret; an accepted token's identity is exactly what its claims say (valid ids,
//! known role, vendor id defaulting to `sub`), it is not expired nor premature, the
//! issuer/audience verifier only accepts its issuer and audience, and the expiry
//! watcher's arithmetic on `exp` cannot panic.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use arbitrary::{Result, Unstructured};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use fixrx_realtime::Config;
use fixrx_realtime::auth::{Identity, JwtVerifier, Role};
use fixrx_realtime_fuzz::check::{assert_valid_id, expected_id};
use fixrx_realtime_fuzz::{AUDIENCE, ISSUER, SECRET, generate, verify_now};
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};

struct Verifiers {
    plain: JwtVerifier,
    strict: JwtVerifier,
}

fn verifiers() -> &'static Verifiers {
    static V: OnceLock<Verifiers> = OnceLock::new();
    V.get_or_init(|| {
        let build = |extra: &[(&str, &str)]| {
            let mut vars = vec![("JWT_SECRET", SECRET), ("API_TOKEN", "fuzz-api-token")];
            vars.extend_from_slice(extra);
            let config = Config::from_lookup(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string()))
                .expect("fuzz config is valid");
            JwtVerifier::new(&config.jwt).expect("HS256 verifier")
        };
        Verifiers { plain: build(&[]), strict: build(&[("JWT_ISSUER", ISSUER), ("JWT_AUDIENCE", AUDIENCE)]) }
    })
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn hs256(message: &str) -> String {
    jsonwebtoken::crypto::sign(message.as_bytes(), &EncodingKey::from_secret(SECRET.as_bytes()), Algorithm::HS256)
        .expect("HMAC signs")
}

fn header(u: &mut Unstructured) -> Result<Value> {
    if u.ratio(1u8, 16)? {
        return generate::value(u, 2);
    }
    let mut h = Map::new();
    let alg = if u.ratio(15u8, 16)? {
        json!(*u.choose(&["HS256", "HS256", "HS256", "HS384", "HS512", "none", "RS256", "ES256", "hs256", ""])?)
    } else {
        generate::value(u, 1)?
    };
    if u.ratio(31u8, 32)? {
        h.insert("alg".into(), alg);
    }
    if u.ratio(1u8, 2)? {
        h.insert("typ".into(), if u.ratio(3u8, 4)? { json!("JWT") } else { generate::value(u, 1)? });
    }
    for _ in 0..u.int_in_range(0u8..=2)? {
        let k = *u.choose(&["kid", "crit", "jku", "jwk", "x5u", "cty", "b64", "zip"])?;
        h.insert(k.into(), generate::value(u, 2)?);
    }
    Ok(Value::Object(h))
}

fn claims(u: &mut Unstructured) -> Result<Value> {
    if u.ratio(1u8, 16)? {
        return generate::value(u, 3);
    }
    let mut c = Map::new();
    if u.ratio(7u8, 8)? {
        c.insert("sub".into(), generate::id_value(u)?);
    }
    if u.ratio(15u8, 16)? {
        let exp = match u.int_in_range(0u8..=7)? {
            0..=3 => json!(now() + u.int_in_range(1u64..=86_400)?),
            4 => json!(now().saturating_sub(u.int_in_range(0u64..=86_400)?)),
            5 => generate::float(u)?,
            6 => Value::Number(generate::integer(u)?),
            _ => generate::value(u, 1)?,
        };
        c.insert("exp".into(), exp);
    }
    if u.ratio(1u8, 4)? {
        let nbf = match u.int_in_range(0u8..=3)? {
            0 => json!(now().saturating_sub(60)),
            1 => json!(now() + 600),
            2 => Value::Number(generate::integer(u)?),
            _ => generate::value(u, 1)?,
        };
        c.insert("nbf".into(), nbf);
    }
    if u.ratio(1u8, 2)? {
        let iss = if u.ratio(3u8, 4)? { json!(ISSUER) } else { generate::value(u, 1)? };
        c.insert("iss".into(), iss);
    }
    if u.ratio(1u8, 2)? {
        let aud = match u.int_in_range(0u8..=3)? {
            0 | 1 => json!(AUDIENCE),
            2 => json!(["other", AUDIENCE]),
            _ => generate::value(u, 1)?,
        };
        c.insert("aud".into(), aud);
    }
    if u.ratio(1u8, 2)? {
        let role = if u.ratio(7u8, 8)? {
            json!(*u.choose(&["user", "vendor", "admin", "root", "Admin", ""])?)
        } else {
            generate::value(u, 1)?
        };
        c.insert("role".into(), role);
    }
    if u.ratio(1u8, 3)? {
        c.insert("vendorId".into(), generate::id_value(u)?);
    }
    if u.ratio(1u8, 4)? {
        c.insert(generate::key(u)?, generate::value(u, 2)?);
    }
    Ok(Value::Object(c))
}

/// How the token was signed, so we know what verify may answer.
#[derive(Debug, PartialEq)]
enum Signed {
    Secret,
    Other,
}

fn build_token(u: &mut Unstructured) -> Result<(String, Signed)> {
    let h = header(u)?;
    let c = claims(u)?;
    let h_text = if u.ratio(15u8, 16)? { serde_json::to_string(&h).unwrap() } else { generate::string(u)? };
    let c_text = if u.ratio(15u8, 16)? { serde_json::to_string(&c).unwrap() } else { generate::string(u)? };
    let enc = |s: &str, std: bool| if std { STANDARD.encode(s) } else { URL_SAFE_NO_PAD.encode(s) };
    let std = u.ratio(1u8, 32)?;
    let message = format!("{}.{}", enc(&h_text, std), enc(&c_text, std));
    let (sig, signed) = match u.int_in_range(0u8..=15)? {
        0..=11 => (hs256(&message), Signed::Secret),
        12 => {
            let key = EncodingKey::from_secret(b"not-the-secret");
            (jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).unwrap(), Signed::Other)
        }
        13 => {
            let key = EncodingKey::from_secret(SECRET.as_bytes());
            (jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS512).unwrap(), Signed::Other)
        }
        14 => (String::new(), Signed::Other),
        _ => (generate::string(u)?, Signed::Other),
    };
    let mut token = format!("{message}.{sig}");
    if u.ratio(1u8, 16)? {
        token = format!(" \t{token}\n ");
    }
    Ok((token, signed))
}

/// verify said yes: the token must be HS256 with the secret, and the identity its claims.
fn check_accepted(token: &str, id: &Identity, strict: bool) {
    let token = token.trim();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "accepted a token of {} parts: {token:?}", parts.len());
    let message = format!("{}.{}", parts[0], parts[1]);
    assert_eq!(parts[2], hs256(&message), "accepted a token not signed with the secret: {token:?}");
    let decode = |p: &str| -> Value {
        let bytes = URL_SAFE_NO_PAD.decode(p).unwrap_or_else(|e| panic!("accepted a non-base64url part {p:?}: {e}"));
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("accepted a non-JSON part {p:?}: {e}"))
    };
    let header = decode(parts[0]);
    assert_eq!(header["alg"], "HS256", "accepted alg {}", header["alg"]);
    let claims = decode(parts[1]);
    let claims = claims.as_object().expect("accepted claims that are not an object");

    let now = now();
    // `exp` is a NumericDate: an integer, or a non-negative float that jsonwebtoken
    // validates rounded, and the identity keeps rounded the same way.
    let exp_value = claims.get("exp").unwrap_or_else(|| panic!("accepted a token without exp: {claims:?}"));
    let exp = match exp_value.as_u64() {
        Some(n) => n,
        None => {
            let f = exp_value.as_f64().unwrap_or_else(|| panic!("accepted a non-numeric exp: {exp_value}"));
            assert!(f.is_finite() && f >= 0.0 && f < u64::MAX as f64, "accepted exp {f}");
            f.round() as u64
        }
    };
    assert_eq!(id.exp, exp, "identity exp for claim {exp_value}");
    assert!(exp.saturating_add(5) >= now, "accepted an expired token: exp {exp}, now {now}");
    if let Some(nbf) = claims.get("nbf").and_then(Value::as_f64) {
        let nbf = nbf.round() as u64;
        assert!(nbf <= now + 5, "accepted a token not valid before {nbf}");
    }
    assert_valid_id("sub", &id.user_id);
    assert_eq!(claims.get("sub").and_then(expected_id).as_deref(), Some(id.user_id.as_str()));
    let role = match claims.get("role") {
        None | Some(Value::Null) => Role::User,
        Some(Value::String(s)) if s == "user" => Role::User,
        Some(Value::String(s)) if s == "vendor" => Role::Vendor,
        Some(Value::String(s)) if s == "admin" => Role::Admin,
        Some(other) => panic!("accepted role {other}"),
    };
    assert_eq!(id.role, role);
    match role {
        Role::Vendor => {
            let want = match claims.get("vendorId") {
                None | Some(Value::Null) => id.user_id.as_str().to_owned(),
                Some(v) => expected_id(v).expect("accepted an invalid vendorId"),
            };
            let got = id.vendor_id.as_ref().expect("a vendor has a vendor id");
            assert_valid_id("vendorId", got);
            assert_eq!(got.as_str(), want);
        }
        Role::User | Role::Admin => assert!(id.vendor_id.is_none()),
    }
    for room in id.own_rooms() {
        assert_valid_id("own room", room.id());
        assert!(id.may_join(&room), "{id:?} may not join its own room {room}");
    }
    if strict {
        // jsonwebtoken also takes an array for `iss` (any element matching).
        let iss_ok = match claims.get("iss") {
            Some(Value::String(i)) => i == ISSUER,
            Some(Value::Array(list)) => list.iter().any(|i| i == ISSUER),
            _ => false,
        };
        assert!(iss_ok, "strict verifier accepted iss {:?}", claims.get("iss"));
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => a == AUDIENCE,
            Some(Value::Array(list)) => list.iter().any(|a| a == AUDIENCE),
            _ => false,
        };
        assert!(aud_ok, "strict verifier accepted aud {:?}", claims.get("aud"));
    }
    // The expiry watcher sleeps `exp - now` seconds as an f64: it must be a Duration.
    let left = exp as f64 - std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    if left > 0.0 {
        assert!(Duration::try_from_secs_f64(left).is_ok(), "exp {exp} overflows the expiry watcher's Duration");
    }
}

fn run(token: &str, signed: Option<Signed>) {
    let v = verifiers();
    for (verifier, strict) in [(&v.plain, false), (&v.strict, true)] {
        match verify_now(verifier, token) {
            Ok(id) => {
                assert_ne!(signed, Some(Signed::Other), "accepted a token signed otherwise: {token:?}");
                check_accepted(token, &id, strict);
            }
            Err(e) => {
                let shown = e.to_string();
                // Short and fixed (TokenError holds only static text: it cannot echo the token).
                assert!(shown.starts_with("unauthorized: ") && shown.len() < 64, "{shown}");
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode % 4 == 0 {
        run(&String::from_utf8_lossy(rest), None);
        return;
    }
    if let Ok((token, signed)) = build_token(&mut Unstructured::new(rest)) {
        run(&token, Some(signed));
    }
});
