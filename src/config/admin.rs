//! The admin console's setting: `ADMIN_TOKEN`.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

use super::{AppEnv, ConfigError, err};

/// Shortest `ADMIN_TOKEN` production accepts: the console can disconnect anyone.
const MIN_TOKEN_CHARS: usize = 16;

/// The console is on: `/admin` and `/admin/api/` answer to this token.
#[derive(Clone)]
pub struct AdminConfig {
    pub token: SecretString,
}

impl fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminConfig").field("token", &"[REDACTED]").finish()
    }
}

/// `None` without `ADMIN_TOKEN`. The token must differ from every REST token: a
/// controller's credential must not open the console, nor the reverse.
pub(super) fn parse_admin(
    token: Option<String>,
    env: AppEnv,
    api_tokens: &[SecretString],
) -> Result<Option<AdminConfig>, ConfigError> {
    let Some(token) = token else { return Ok(None) };
    if token.chars().any(|c| c.is_control() || c == ' ') {
        return Err(err("ADMIN_TOKEN", "must not contain spaces or control characters"));
    }
    if env == AppEnv::Production && token.chars().count() < MIN_TOKEN_CHARS {
        return Err(err("ADMIN_TOKEN", format!("must be at least {MIN_TOKEN_CHARS} characters in production")));
    }
    if api_tokens.iter().any(|t| t.expose_secret() == token) {
        return Err(err("ADMIN_TOKEN", "must differ from every API_TOKEN"));
    }
    Ok(Some(AdminConfig { token: SecretString::from(token) }))
}
