//! Client tokens: verification, claims, and the identity a socket carries.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;

use super::claims::{RawClaims, claims_to_identity};
use super::identity::Identity;
use super::jwks::Jwks;
use crate::config::{JwtConfig, PublicKey, PublicKeyKind};

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

/// Verifies client tokens with the configured keys: a token verifying with any one of them
/// is accepted. Cheap to clone: every request's state and every handshake's guard holds one.
#[derive(Clone)]
pub struct JwtVerifier(Arc<Keys>);

struct Keys {
    /// `JWT_SECRET` entries and `JWT_PUBLIC_KEY` keys, each with the one algorithm it verifies.
    fixed: Vec<FixedKey>,
    /// `JWT_JWKS_URL`: keys by `kid`.
    jwks: Option<Arc<Jwks>>,
    /// One per algorithm a key may verify; the same claims rules for all.
    validations: Vec<(Algorithm, Validation)>,
    /// Present only when tokens can be minted here (development secret).
    dev_signer: Option<EncodingKey>,
}

struct FixedKey {
    key: DecodingKey,
    alg: Algorithm,
}

/// The algorithms a JWKS key may verify (see [`super::jwks`]).
const JWKS_ALGORITHMS: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

/// Why a verifier could not be built from a valid configuration.
#[derive(Debug, thiserror::Error)]
pub enum VerifierError {
    #[error("JWT_PUBLIC_KEY: {0}")]
    Key(#[from] jsonwebtoken::errors::Error),
    #[error("JWT_JWKS_URL: cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

impl JwtVerifier {
    /// Builds the keys; a JWKS is not fetched until [`Jwks::start`] (see [`Self::jwks`]).
    pub fn new(config: &JwtConfig) -> Result<Self, VerifierError> {
        let mut fixed: Vec<FixedKey> = config
            .secrets
            .iter()
            .map(|s| FixedKey { key: DecodingKey::from_secret(s.expose_secret().as_bytes()), alg: Algorithm::HS256 })
            .collect();
        for PublicKey { pem, kind } in &config.public_keys {
            fixed.push(match kind {
                PublicKeyKind::Rsa => {
                    FixedKey { key: DecodingKey::from_rsa_pem(pem.as_bytes())?, alg: Algorithm::RS256 }
                }
                PublicKeyKind::Ec => FixedKey { key: DecodingKey::from_ec_pem(pem.as_bytes())?, alg: Algorithm::ES256 },
            });
        }
        let jwks = config.jwks_url.clone().map(Jwks::new).transpose()?.map(Arc::new);
        let dev_signer = match (config.dev, config.secrets.first()) {
            (true, Some(secret)) => Some(EncodingKey::from_secret(secret.expose_secret().as_bytes())),
            _ => None,
        };
        let validations = [Algorithm::HS256, Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA]
            .into_iter()
            .map(|alg| (alg, validation(config, alg)))
            .collect();
        Ok(JwtVerifier(Arc::new(Keys { fixed, jwks, validations, dev_signer })))
    }

    /// The JWKS cache, when `JWT_JWKS_URL` is set: started by the app, read by `/ready`.
    pub fn jwks(&self) -> Option<&Arc<Jwks>> {
        self.0.jwks.as_ref()
    }

    /// Checks a token and returns the identity it proves. Waits only when the token names
    /// a `kid` the JWKS does not hold yet (for one fetch at most).
    pub async fn verify(&self, token: &str) -> Result<Identity, TokenError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| header_error(token))?;
        let mut tried = false;
        for key in self.0.fixed.iter().filter(|k| k.alg == header.alg) {
            tried = true;
            match self.decode(token, &key.key, key.alg) {
                Err(TokenError::BadSignature) => continue,
                done => return done,
            }
        }
        // Only a token a JWKS key could verify may cause a fetch: an HS256 token naming an
        // unknown kid is refused without asking the identity provider.
        let jwks_alg = JWKS_ALGORITHMS.contains(&header.alg);
        if let (Some(jwks), Some(kid)) = (&self.0.jwks, header.kid.as_deref())
            && let Some(key) = if jwks_alg { jwks.find(kid).await } else { jwks.get(kid) }
        {
            // The JWK's algorithm, never the token's: an HS256 token naming an RSA key fails here.
            return self.decode(token, &key.key, key.alg);
        }
        let accepted = tried || (self.0.jwks.is_some() && jwks_alg);
        Err(if accepted { TokenError::BadSignature } else { TokenError::BadAlgorithm })
    }

    /// Verifies with one key and its algorithm, then reads the claims.
    fn decode(&self, token: &str, key: &DecodingKey, alg: Algorithm) -> Result<Identity, TokenError> {
        let validation = self.0.validations.iter().find(|(a, _)| *a == alg).map(|(_, v)| v);
        let validation = validation.ok_or(TokenError::BadAlgorithm)?;
        let data = jsonwebtoken::decode::<RawClaims>(token, key, validation).map_err(|e| token_error(&e))?;
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

/// Why a token's header did not parse: one naming an algorithm that does not exist here
/// (`none`, `HS1024`) is refused for its algorithm, anything else as malformed.
fn header_error(token: &str) -> TokenError {
    use base64::Engine as _;
    let segment = token.split('.').next().unwrap_or_default();
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment.trim_end_matches('='))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok());
    let alg = header.as_ref().and_then(|h| h.get("alg")).and_then(serde_json::Value::as_str);
    match alg {
        Some(name) if name.parse::<Algorithm>().is_err() => TokenError::BadAlgorithm,
        _ => TokenError::Malformed,
    }
}

/// The claims rules, for tokens of one algorithm.
fn validation(config: &JwtConfig, alg: Algorithm) -> Validation {
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
    validation
}

fn token_error(e: &jsonwebtoken::errors::Error) -> TokenError {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;
    use crate::events::{Id, Room};
    use secrecy::SecretString;
    use serde_json::json;

    const SECRET: &str = "unit-test-secret";

    fn verifier(issuer: Option<&str>, audience: Option<&str>) -> JwtVerifier {
        JwtVerifier::new(&JwtConfig {
            secrets: vec![SecretString::from(SECRET)],
            dev: false,
            public_keys: Vec::new(),
            jwks_url: None,
            issuer: issuer.map(Into::into),
            audience: audience.map(Into::into),
        })
        .unwrap()
    }

    impl JwtVerifier {
        /// Without a JWKS, verifying never waits.
        fn verify_now(&self, token: &str) -> Result<Identity, TokenError> {
            futures_util::FutureExt::now_or_never(self.verify(token)).expect("no JWKS: nothing to wait for")
        }
    }

    fn sign(claims: serde_json::Value) -> String {
        jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
    }

    fn future() -> u64 {
        jsonwebtoken::get_current_timestamp() + 600
    }

    #[test]
    fn a_user_token_gives_its_user_room_only() {
        let id = verifier(None, None).verify_now(&sign(json!({"sub": "u1", "exp": future()}))).unwrap();
        assert_eq!(id.role, Role::User);
        assert_eq!(id.own_rooms(), vec![Room::User(Id::new("u1").unwrap())]);
        assert!(!id.may_join(&Room::User(Id::new("u2").unwrap())));
        assert!(!id.may_join(&Room::Vendor(Id::new("u1").unwrap())));
    }

    #[test]
    fn a_vendor_token_defaults_vendor_id_to_sub_and_numbers_become_strings() {
        let v = verifier(None, None);
        let id = v.verify_now(&sign(json!({"sub": 42, "role": "vendor", "exp": future()}))).unwrap();
        assert_eq!(id.vendor_id.as_ref().map(Id::as_str), Some("42"));
        let id = v.verify_now(&sign(json!({"sub": "u9", "role": "vendor", "vendorId": 7, "exp": future()}))).unwrap();
        assert_eq!(id.own_rooms().len(), 2);
        assert!(id.may_join(&Room::Vendor(Id::new("7").unwrap())));
        assert!(!id.may_join(&Room::Vendor(Id::new("8").unwrap())));
    }

    #[test]
    fn admins_may_join_any_room() {
        let id = verifier(None, None).verify_now(&sign(json!({"sub": "a", "role": "admin", "exp": future()}))).unwrap();
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
        assert!(v.verify_now(&sign(ok.clone())).is_ok());
        assert_eq!(v.verify_now(""), Err(TokenError::Missing));
        assert_eq!(v.verify_now("not.a.jwt"), Err(TokenError::Malformed));
        assert_eq!(v.verify_now(&with("exp", json!(1000))), Err(TokenError::Expired));
        assert_eq!(v.verify_now(&without("exp")), Err(TokenError::MissingClaim("exp")));
        assert_eq!(v.verify_now(&without("sub")), Err(TokenError::MissingClaim("sub")));
        assert!(v.verify_now(&with("sub", json!({"x": 1}))).is_err());
        assert_eq!(v.verify_now(&with("sub", json!(""))), Err(TokenError::InvalidClaim("sub")));
        assert_eq!(v.verify_now(&with("role", json!("root"))), Err(TokenError::BadRole));
        assert_eq!(v.verify_now(&with("iss", json!("other"))), Err(TokenError::BadIssuer));
        assert_eq!(v.verify_now(&with("aud", json!("other"))), Err(TokenError::BadAudience));
        assert_eq!(v.verify_now(&with("nbf", json!(future() + 600))), Err(TokenError::NotYetValid));
        let forged = jsonwebtoken::encode(&Header::default(), &ok, &EncodingKey::from_secret(b"wrong")).unwrap();
        assert_eq!(v.verify_now(&forged), Err(TokenError::BadSignature));
        let hs512 =
            jsonwebtoken::encode(&Header::new(Algorithm::HS512), &ok, &EncodingKey::from_secret(SECRET.as_bytes()))
                .unwrap();
        assert_eq!(v.verify_now(&hs512), Err(TokenError::BadAlgorithm));
    }

    #[test]
    fn an_unsigned_token_is_refused_for_its_algorithm() {
        use base64::Engine as _;
        let b64 = |v: serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let claims = b64(json!({"sub": "u1", "exp": future()}));
        let v = verifier(None, None);
        for alg in ["none", "None", "NONE", "HS1024"] {
            let unsigned = format!("{}.{claims}.", b64(json!({"alg": alg, "typ": "JWT"})));
            assert_eq!(v.verify_now(&unsigned), Err(TokenError::BadAlgorithm), "{alg}");
        }
        let no_alg = format!("{}.{claims}.", b64(json!({"typ": "JWT"})));
        assert_eq!(v.verify_now(&no_alg), Err(TokenError::Malformed));
        let bad_kid = format!("{}.{claims}.", b64(json!({"alg": "HS256", "kid": 5})));
        assert_eq!(v.verify_now(&bad_kid), Err(TokenError::Malformed), "a known algorithm is not the problem");
    }
}
