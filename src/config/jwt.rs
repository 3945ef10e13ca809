//! How client JWTs are verified: `JWT_SECRET` (a list), `JWT_PUBLIC_KEY` (one or more PEM
//! keys), `JWT_JWKS_URL`, `JWT_ISSUER`, `JWT_AUDIENCE`. A token verifying with any one
//! configured key is accepted, so each can be rotated with no logout.

use std::fmt;
use std::path::Path;

use secrecy::SecretString;
use url::Url;

use super::{AppEnv, ConfigError, err};

/// The HS256 secret used when development mode runs without any JWT key.
/// It is public (it is in this source file): tokens signed with it prove nothing,
/// which is why production refuses to start without a real key.
pub const DEV_JWT_SECRET: &str = "fixrx-development-secret-never-use-in-production";

/// How client JWTs are verified. At least one of the three key sources is present.
#[derive(Clone)]
pub struct JwtConfig {
    /// HS256 secrets (`JWT_SECRET`, comma-separated): newest and older ones side by side.
    pub secrets: Vec<SecretString>,
    /// True when `secrets` is the public development secret alone.
    pub dev: bool,
    /// RS256 / ES256 public keys (`JWT_PUBLIC_KEY`, one or more PEM blocks).
    pub public_keys: Vec<PublicKey>,
    /// `JWT_JWKS_URL`: an identity provider's key set, looked up by `kid`.
    pub jwks_url: Option<Url>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

/// One PEM public key and the one algorithm it verifies.
#[derive(Clone)]
pub struct PublicKey {
    pub pem: String,
    pub kind: PublicKeyKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicKeyKind {
    Rsa,
    Ec,
}

impl fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secrets = match (self.dev, self.secrets.len()) {
            (true, _) => "HS256 (development secret)".to_owned(),
            (false, n) => format!("[{n} HS256 REDACTED]"),
        };
        let keys: Vec<PublicKeyKind> = self.public_keys.iter().map(|k| k.kind).collect();
        // The URL may carry credentials: the origin only.
        let jwks = self.jwks_url.as_ref().map(|u| u.origin().ascii_serialization());
        f.debug_struct("JwtConfig")
            .field("secrets", &secrets)
            .field("public_keys", &keys)
            .field("jwks", &jwks)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

impl JwtConfig {
    /// True when tokens are checked against the public development secret.
    pub fn is_dev_secret(&self) -> bool {
        self.dev
    }
}

pub(super) fn parse_jwt(get: &impl Fn(&str) -> Option<String>, env: AppEnv) -> Result<JwtConfig, ConfigError> {
    let secrets = parse_secrets(get("JWT_SECRET"), env)?;
    let public_keys = match get("JWT_PUBLIC_KEY") {
        Some(value) => parse_public_keys(&read_pem(&value)?)?,
        None => Vec::new(),
    };
    let jwks_url = get("JWT_JWKS_URL").map(|raw| parse_jwks_url(&raw, env)).transpose()?;
    let mut config = JwtConfig {
        secrets,
        dev: false,
        public_keys,
        jwks_url,
        issuer: get("JWT_ISSUER"),
        audience: get("JWT_AUDIENCE"),
    };
    if config.secrets.is_empty() && config.public_keys.is_empty() && config.jwks_url.is_none() {
        match env {
            AppEnv::Development => {
                config.secrets = vec![SecretString::from(DEV_JWT_SECRET)];
                config.dev = true;
            }
            AppEnv::Production => {
                return Err(err("JWT_SECRET", "required in production (or JWT_PUBLIC_KEY, or JWT_JWKS_URL)"));
            }
        }
    }
    Ok(config)
}

/// `JWT_SECRET`: comma-separated, like `API_TOKEN`; empty entries are ignored.
fn parse_secrets(value: Option<String>, env: AppEnv) -> Result<Vec<SecretString>, ConfigError> {
    let Some(value) = value else { return Ok(Vec::new()) };
    let secrets: Vec<&str> = value.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    if secrets.is_empty() {
        return Err(err("JWT_SECRET", "holds no secret (only commas)"));
    }
    if env == AppEnv::Production && secrets.contains(&DEV_JWT_SECRET) {
        return Err(err("JWT_SECRET", "the development secret cannot be used in production"));
    }
    Ok(secrets.into_iter().map(|s| SecretString::from(s.to_owned())).collect())
}

/// Every `-----BEGIN ...-----` / `-----END ...-----` block, each an RSA or EC public key.
fn parse_public_keys(text: &str) -> Result<Vec<PublicKey>, ConfigError> {
    let blocks = pem_blocks(text);
    if blocks.is_empty() {
        return Err(err("JWT_PUBLIC_KEY", "no PEM block (-----BEGIN ... -----END ...) found"));
    }
    let several = blocks.len() > 1;
    blocks
        .into_iter()
        .enumerate()
        .map(|(i, pem)| {
            let kind = if jsonwebtoken::DecodingKey::from_rsa_pem(pem.as_bytes()).is_ok() {
                PublicKeyKind::Rsa
            } else if jsonwebtoken::DecodingKey::from_ec_pem(pem.as_bytes()).is_ok() {
                PublicKeyKind::Ec
            } else {
                let which = if several { format!("key #{} is ", i + 1) } else { String::new() };
                return Err(err("JWT_PUBLIC_KEY", format!("{which}not a PEM RSA or EC (P-256) public key")));
            };
            Ok(PublicKey { pem, kind })
        })
        .collect()
}

/// Splits concatenated PEM text into its blocks, each from its BEGIN line to its END line.
fn pem_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN") {
        let after = &rest[start..];
        let Some(end) = after.find("-----END") else { break };
        // The END line runs to its closing dashes.
        let tail = &after[end + "-----END".len()..];
        let close = tail.find("-----").map_or(tail.len(), |i| i + "-----".len());
        let len = end + "-----END".len() + close;
        blocks.push(after[..len].to_owned());
        rest = &after[len..];
    }
    blocks
}

/// `https://` always; `http://` in development only (a key set fetched in clear text can
/// be swapped on the way, and with it every identity).
fn parse_jwks_url(raw: &str, env: AppEnv) -> Result<Url, ConfigError> {
    let url = Url::parse(raw).map_err(|e| err("JWT_JWKS_URL", format!("not a URL ({e})")))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(err("JWT_JWKS_URL", "must be an https:// URL with a host"));
    }
    match (url.scheme(), env) {
        ("https", _) | ("http", AppEnv::Development) => Ok(url),
        ("http", AppEnv::Production) => Err(err("JWT_JWKS_URL", "must be https:// in production")),
        _ => Err(err("JWT_JWKS_URL", "must be an https:// URL (http:// only in development)")),
    }
}

/// `JWT_PUBLIC_KEY` holds the PEM itself (`\n` escapes allowed, as in `.env` files)
/// or a path to a PEM file; either may hold several keys.
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
