//! Production's floor on secrets: long enough to resist guessing, and never one value
//! reused for two purposes (a leaked webhook secret must not also mint client tokens).

use secrecy::{ExposeSecret, SecretString};

use super::{AppEnv, Config, ConfigError, err};

/// Shortest HS256 `JWT_SECRET` (each of the list) production accepts, in bytes (the hash's output size).
pub const MIN_JWT_SECRET_BYTES: usize = 32;
/// Shortest `API_TOKEN` (each of the list) production accepts, in characters.
pub const MIN_API_TOKEN_CHARS: usize = 16;

/// Refuses weak or shared secrets in production; development keeps its public defaults.
pub(super) fn check(config: &Config) -> Result<(), ConfigError> {
    if config.env != AppEnv::Production {
        return Ok(());
    }
    if config.jwt.secrets.iter().any(|s| s.expose_secret().len() < MIN_JWT_SECRET_BYTES) {
        return Err(err(
            "JWT_SECRET",
            format!("each secret must be at least {MIN_JWT_SECRET_BYTES} bytes in production"),
        ));
    }
    if config.api.tokens.iter().any(|t| t.expose_secret().chars().count() < MIN_API_TOKEN_CHARS) {
        return Err(err(
            "API_TOKEN",
            format!("each token must be at least {MIN_API_TOKEN_CHARS} characters in production"),
        ));
    }
    distinct(config)
}

/// No value serves two of `API_TOKEN`, `ADMIN_TOKEN`, `WEBHOOK_SECRET` and `JWT_SECRET`.
fn distinct(config: &Config) -> Result<(), ConfigError> {
    let mut named: Vec<(&'static str, &SecretString)> = config.api.tokens.iter().map(|t| ("API_TOKEN", t)).collect();
    if let Some(admin) = &config.admin {
        named.push(("ADMIN_TOKEN", &admin.token));
    }
    if let Some(secret) = &config.hooks.secret {
        named.push(("WEBHOOK_SECRET", secret));
    }
    named.extend(config.jwt.secrets.iter().map(|s| ("JWT_SECRET", s)));
    for (i, (var, value)) in named.iter().enumerate() {
        let reused = named[..i].iter().find(|(other, v)| other != var && v.expose_secret() == value.expose_secret());
        if let Some((other, _)) = reused {
            return Err(err(var, format!("must differ from {other} in production")));
        }
    }
    Ok(())
}
