//! Client tokens: verification, claims, and the identity a socket carries.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Deserializer, Serialize};

use crate::config::{JwtConfig, JwtKey, PublicKeyKind};
use crate::events::Room;
use crate::events::id::{self, Id};

/// What a client may be. Any other `role` claim is refused at the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Vendor,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Vendor => "vendor",
            Role::Admin => "admin",
        }
    }
}

/// The verified identity of a connected client, kept on its socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `sub`: the user id.
    pub user_id: Id,
    pub role: Role,
    /// For vendors: `vendorId`, defaulting to `sub`.
    pub vendor_id: Option<Id>,
    /// `exp`, in Unix seconds.
    pub exp: u64,
}

impl Identity {
    /// The rooms joined automatically on connect.
    pub fn own_rooms(&self) -> Vec<Room> {
        let mut rooms = vec![Room::User(self.user_id.clone())];
        if let Some(vendor) = &self.vendor_id {
            rooms.push(Room::Vendor(vendor.clone()));
        }
        rooms
    }

    /// Whether this client may join (and so receive the events of) `room`.
    pub fn may_join(&self, room: &Room) -> bool {
        match (self.role, room) {
            (Role::Admin, _) => true,
            (_, Room::User(id)) => *id == self.user_id,
            (Role::Vendor, Room::Vendor(id)) => self.vendor_id.as_ref() == Some(id),
            (Role::User, Room::Vendor(_)) => false,
        }
    }
}

/// Why a token was refused. The `Display` text is what the client sees in
/// `connect_error`: stable, short, and never echoing the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("unauthorized: token missing")]
    Missing,
    #[error("unauthorized: token malformed")]
    Malformed,
    #[error("unauthorized: token expired")]
    Expired,
    #[error("unauthorized: token not yet valid")]
    NotYetValid,
    #[error("unauthorized: invalid signature")]
    BadSignature,
    #[error("unauthorized: algorithm not accepted")]
    BadAlgorithm,
    #[error("unauthorized: invalid issuer")]
    BadIssuer,
    #[error("unauthorized: invalid audience")]
    BadAudience,
    #[error("unauthorized: missing claim `{0}`")]
    MissingClaim(&'static str),
    #[error("unauthorized: invalid claim `{0}`")]
    InvalidClaim(&'static str),
    #[error("unauthorized: invalid role")]
    BadRole,
}

impl TokenError {
    /// A short label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Missing => "missing",
            TokenError::Malformed => "malformed",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::BadSignature => "bad_signature",
            TokenError::BadAlgorithm => "bad_algorithm",
            TokenError::BadIssuer => "bad_issuer",
            TokenError::BadAudience => "bad_audience",
            TokenError::MissingClaim(_) => "missing_claim",
            TokenError::InvalidClaim(_) => "invalid_claim",
            TokenError::BadRole => "bad_role",
        }
    }
}

/// The claims we read. Signature, `exp`, `nbf`, `iss` and `aud` are checked by jsonwebtoken.
#[derive(Debug, Deserialize)]
struct RawClaims {
    #[serde(default, deserialize_with = "lenient")]
    sub: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "lenient")]
    exp: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "lenient")]
    role: Option<serde_json::Value>,
    #[serde(default, rename = "vendorId", deserialize_with = "lenient")]
    vendor_id: Option<serde_json::Value>,
}

/// Keeps `null` distinct from absent so both are reported as missing, not as a parse error.
fn lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    Ok(Option::<serde_json::Value>::deserialize(d)?.filter(|v| !v.is_null()))
}

/// Verifies client tokens with the configured key. Cheap to clone: every request's
/// state and every handshake's guard holds one.
#[derive(Clone)]
pub struct JwtVerifier(Arc<Keys>);

struct Keys {
    key: DecodingKey,
    validation: Validation,
    /// Present only when tokens can be minted here (development secret).
    dev_signer: Option<EncodingKey>,
}

impl JwtVerifier {
    pub fn new(config: &JwtConfig) -> Result<Self, jsonwebtoken::errors::Error> {
        let (key, alg, dev_signer) = match &config.key {
            JwtKey::Secret { secret, dev } => {
                let bytes = secret.expose_secret().as_bytes();
                let signer = dev.then(|| EncodingKey::from_secret(bytes));
                (DecodingKey::from_secret(bytes), Algorithm::HS256, signer)
            }
            JwtKey::PublicKey { pem, kind: PublicKeyKind::Rsa } => {
                (DecodingKey::from_rsa_pem(pem.as_bytes())?, Algorithm::RS256, None)
            }
            JwtKey::PublicKey { pem, kind: PublicKeyKind::Ec } => {
                (DecodingKey::from_ec_pem(pem.as_bytes())?, Algorithm::ES256, None)
            }
        };
        let mut validation = Validation::new(alg);
        // Node's jsonwebtoken has no clock tolerance by default; clients expect the same.
        validation.leeway = 0;
        validation.validate_nbf = true;
        // jsonwebtoken checks `iss`/`aud` only when present unless they are required:
        // a configured issuer or audience must also be present in the token.
        let mut required = vec!["exp"];
        match &config.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &config.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        Ok(JwtVerifier(Arc::new(Keys { key, validation, dev_signer })))
    }

    /// Checks a token and returns the identity it proves.
    pub fn verify(&self, token: &str) -> Result<Identity, TokenError> {
        use jsonwebtoken::errors::ErrorKind as K;
        let token = token.trim();
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        let data =
            jsonwebtoken::decode::<RawClaims>(token, &self.0.key, &self.0.validation).map_err(|e| match e.kind() {
                K::ExpiredSignature => TokenError::Expired,
                K::ImmatureSignature => TokenError::NotYetValid,
                K::InvalidSignature => TokenError::BadSignature,
                K::InvalidAlgorithm | K::InvalidAlgorithmName | K::MissingAlgorithm | K::UnsupportedAlgorithm => {
                    TokenError::BadAlgorithm
                }
                K::InvalidIssuer => TokenError::BadIssuer,
                K::InvalidAudience => TokenError::BadAudience,
                K::MissingRequiredClaim(c) if c == "exp" => TokenError::MissingClaim("exp"),
                K::MissingRequiredClaim(c) if c == "iss" => TokenError::BadIssuer,
                K::MissingRequiredClaim(c) if c == "aud" => TokenError::BadAudience,
                K::InvalidClaimFormat(c) => match c.as_str() {
                    "exp" => TokenError::InvalidClaim("exp"),
                    "nbf" => TokenError::InvalidClaim("nbf"),
                    "sub" => TokenError::InvalidClaim("sub"),
                    "iss" => TokenError::BadIssuer,
                    "aud" => TokenError::BadAudience,
                    _ => TokenError::Malformed,
                },
                _ => TokenError::Malformed,
            })?;
        claims_to_identity(data.claims)
    }

    /// Signs a token with the development secret; `None` unless the server runs on it.
    pub fn mint_dev_token(&self, identity: &Identity) -> Option<String> {
        let signer = self.0.dev_signer.as_ref()?;
        let mut claims = serde_json::json!({
            "sub": identity.user_id.as_str(),
            "role": identity.role.as_str(),
            "exp": identity.exp,
        });
        if let Some(vendor) = &identity.vendor_id {
            claims["vendorId"] = serde_json::json!(vendor.as_str());
        }
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, signer).ok()
    }
}

fn claims_to_identity(c: RawClaims) -> Result<Identity, TokenError> {
    let user_id = match c.sub {
        None => return Err(TokenError::MissingClaim("sub")),
        Some(v) => id::from_json(&v).map_err(|_| TokenError::InvalidClaim("sub"))?,
    };
    let exp = match c.exp {
        None => return Err(TokenError::MissingClaim("exp")),
        // Rounded, as jsonwebtoken checks it: a fractional `exp` must not expire early.
        Some(v) => v.as_u64().or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f.round() as u64)),
    }
    .ok_or(TokenError::InvalidClaim("exp"))?;
    let role = match c.role {
        None => Role::User,
        Some(serde_json::Value::String(s)) => match s.as_str() {
            "user" => Role::User,
            "vendor" => Role::Vendor,
            "admin" => Role::Admin,
            _ => return Err(TokenError::BadRole),
        },
        Some(_) => return Err(TokenError::BadRole),
    };
    let vendor_id = match role {
        Role::Vendor => Some(match c.vendor_id {
            None => user_id.clone(),
            Some(v) => id::from_json(&v).map_err(|_| TokenError::InvalidClaim("vendorId"))?,
        }),
        Role::User | Role::Admin => None,
    };
    Ok(Identity { user_id, role, vendor_id, exp })
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;
    use serde_json::json;

    const SECRET: &str = "unit-test-secret";

    fn verifier(issuer: Option<&str>, audience: Option<&str>) -> JwtVerifier {
        JwtVerifier::new(&JwtConfig {
            key: JwtKey::Secret { secret: SecretString::from(SECRET), dev: false },
            issuer: issuer.map(Into::into),
            audience: audience.map(Into::into),
        })
        .unwrap()
    }

    fn sign(claims: serde_json::Value) -> String {
        jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
    }

    fn future() -> u64 {
        jsonwebtoken::get_current_timestamp() + 600
    }

    #[test]
    fn a_user_token_gives_its_user_room_only() {
        let id = verifier(None, None).verify(&sign(json!({"sub": "u1", "exp": future()}))).unwrap();
        assert_eq!(id.role, Role::User);
        assert_eq!(id.own_rooms(), vec![Room::User(Id::new("u1").unwrap())]);
        assert!(!id.may_join(&Room::User(Id::new("u2").unwrap())));
        assert!(!id.may_join(&Room::Vendor(Id::new("u1").unwrap())));
    }

    #[test]
    fn a_vendor_token_defaults_vendor_id_to_sub_and_numbers_become_strings() {
        let v = verifier(None, None);
        let id = v.verify(&sign(json!({"sub": 42, "role": "vendor", "exp": future()}))).unwrap();
        assert_eq!(id.vendor_id.as_ref().map(Id::as_str), Some("42"));
        let id = v.verify(&sign(json!({"sub": "u9", "role": "vendor", "vendorId": 7, "exp": future()}))).unwrap();
        assert_eq!(id.own_rooms().len(), 2);
        assert!(id.may_join(&Room::Vendor(Id::new("7").unwrap())));
        assert!(!id.may_join(&Room::Vendor(Id::new("8").unwrap())));
    }

    #[test]
    fn admins_may_join_any_room() {
        let id = verifier(None, None).verify(&sign(json!({"sub": "a", "role": "admin", "exp": future()}))).unwrap();
        assert!(id.may_join(&Room::Vendor(Id::new("anyone").unwrap())));
    }

    #[test]
    fn every_refusal_has_its_reason() {
        let v = verifier(Some("fixrx"), Some("app"));
        let ok = json!({"sub": "u1", "exp": future(), "iss": "fixrx", "aud": "app"});
        let with = |k: &str, val: serde_json::Value| {
            let mut c = ok.clone();
            c[k] = val;
            sign(c)
        };
        let without = |k: &str| {
            let mut c = ok.clone();
            c.as_object_mut().unwrap().remove(k);
            sign(c)
        };
        assert!(v.verify(&sign(ok.clone())).is_ok());
        assert_eq!(v.verify(""), Err(TokenError::Missing));
        assert_eq!(v.verify("not.a.jwt"), Err(TokenError::Malformed));
        assert_eq!(v.verify(&with("exp", json!(1000))), Err(TokenError::Expired));
        assert_eq!(v.verify(&without("exp")), Err(TokenError::MissingClaim("exp")));
        assert_eq!(v.verify(&without("sub")), Err(TokenError::MissingClaim("sub")));
        assert!(v.verify(&with("sub", json!({"x": 1}))).is_err());
        assert_eq!(v.verify(&with("sub", json!(""))), Err(TokenError::InvalidClaim("sub")));
        assert_eq!(v.verify(&with("role", json!("root"))), Err(TokenError::BadRole));
        assert_eq!(v.verify(&with("iss", json!("other"))), Err(TokenError::BadIssuer));
        assert_eq!(v.verify(&with("aud", json!("other"))), Err(TokenError::BadAudience));
        assert_eq!(v.verify(&with("nbf", json!(future() + 600))), Err(TokenError::NotYetValid));
        let forged = jsonwebtoken::encode(&Header::default(), &ok, &EncodingKey::from_secret(b"wrong")).unwrap();
        assert_eq!(v.verify(&forged), Err(TokenError::BadSignature));
        let hs512 =
            jsonwebtoken::encode(&Header::new(Algorithm::HS512), &ok, &EncodingKey::from_secret(SECRET.as_bytes()))
                .unwrap();
        assert_eq!(v.verify(&hs512), Err(TokenError::BadAlgorithm));
    }
}
