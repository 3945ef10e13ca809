//! How client JWTs are verified: `JWT_SECRET` or `JWT_PUBLIC_KEY`, `JWT_ISSUER`, `JWT_AUDIENCE`.

use std::fmt;
use std::path::Path;

use secrecy::SecretString;

use super::{AppEnv, ConfigError, err};

/// The HS256 secret used when development mode runs without `JWT_SECRET`.
/// It is public (it is in this source file): tokens signed with it prove nothing,
/// which is why production refuses to start without a real key.
pub const DEV_JWT_SECRET: &str = "fixrx-development-secret-never-use-in-production";
/// How client JWTs are verified.
#[derive(Clone)]
pub struct JwtConfig {
    pub key: JwtKey,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

#[derive(Clone)]
pub enum JwtKey {
    /// HS256 with a shared secret. `dev` marks the public development secret.
    Secret { secret: SecretString, dev: bool },
    /// RS256 or ES256 with a PEM public key.
    PublicKey { pem: String, kind: PublicKeyKind },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicKeyKind {
    Rsa,
    Ec,
}

impl fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = match &self.key {
            JwtKey::Secret { dev: true, .. } => "HS256 (development secret)",
            JwtKey::Secret { dev: false, .. } => "HS256 ([REDACTED])",
            JwtKey::PublicKey { kind: PublicKeyKind::Rsa, .. } => "RS256 public key",
            JwtKey::PublicKey { kind: PublicKeyKind::Ec, .. } => "ES256 public key",
        };
        f.debug_struct("JwtConfig")
            .field("key", &key)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

impl JwtConfig {
    /// True when tokens are checked against the public development secret.
    pub fn is_dev_secret(&self) -> bool {
        matches!(self.key, JwtKey::Secret { dev: true, .. })
    }
}

pub(super) fn parse_jwt(get: &impl Fn(&str) -> Option<String>, env: AppEnv) -> Result<JwtConfig, ConfigError> {
    let key = match (get("JWT_SECRET"), get("JWT_PUBLIC_KEY")) {
        (Some(_), Some(_)) => {
            return Err(err("JWT_PUBLIC_KEY", "set either JWT_SECRET or JWT_PUBLIC_KEY, not both"));
        }
        (Some(secret), None) => {
            if env == AppEnv::Production && secret == DEV_JWT_SECRET {
                return Err(err("JWT_SECRET", "the development secret cannot be used in production"));
            }
            JwtKey::Secret { secret: SecretString::from(secret), dev: false }
        }
        (None, Some(value)) => {
            let pem = read_pem(&value)?;
            let kind = if jsonwebtoken::DecodingKey::from_rsa_pem(pem.as_bytes()).is_ok() {
                PublicKeyKind::Rsa
            } else if jsonwebtoken::DecodingKey::from_ec_pem(pem.as_bytes()).is_ok() {
                PublicKeyKind::Ec
            } else {
                return Err(err("JWT_PUBLIC_KEY", "not a PEM RSA or EC (P-256) public key"));
            };
            JwtKey::PublicKey { pem, kind }
        }
        (None, None) => match env {
            AppEnv::Development => JwtKey::Secret { secret: SecretString::from(DEV_JWT_SECRET), dev: true },
            AppEnv::Production => {
                return Err(err("JWT_SECRET", "required in production (or JWT_PUBLIC_KEY)"));
            }
        },
    };
    Ok(JwtConfig { key, issuer: get("JWT_ISSUER"), audience: get("JWT_AUDIENCE") })
}

/// `JWT_PUBLIC_KEY` holds the PEM itself (`\n` escapes allowed, as in `.env` files)
/// or a path to a PEM file.
fn read_pem(value: &str) -> Result<String, ConfigError> {
    if value.contains("-----BEGIN") {
        return Ok(value.replace("\\n", "\n"));
    }
    // A PEM public key is a few KiB; never read an operator's typo (`/dev/zero`) to the end.
    const MAX_PEM: u64 = 64 * 1024;
    let mut pem = String::new();
    std::fs::File::open(Path::new(value))
        .and_then(|f| std::io::Read::read_to_string(&mut std::io::Read::take(f, MAX_PEM + 1), &mut pem))
        .map_err(|e| err("JWT_PUBLIC_KEY", format!("cannot read key file `{value}`: {e}")))?;
    if pem.len() as u64 > MAX_PEM {
        return Err(err("JWT_PUBLIC_KEY", format!("key file `{value}` is larger than {MAX_PEM} bytes")));
    }
    Ok(pem)
}
