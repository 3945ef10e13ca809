//! `CLIENT_ORIGIN`: the browser origins allowed on HTTP and the Socket.IO handshake.

use super::{ConfigError, err};

/// Which browser origins may use the HTTP API and the Socket.IO handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// `CLIENT_ORIGIN=*`: any origin (only when set explicitly).
    Any,
    /// Exact origins such as `https://app.fixrx.com` (scheme, host, optional port).
    List(Vec<String>),
}

impl AllowedOrigins {
    /// Whether a request's `Origin` header value is allowed.
    pub fn allows(&self, origin: &str) -> bool {
        match self {
            AllowedOrigins::Any => true,
            AllowedOrigins::List(list) => list.iter().any(|o| o == origin),
        }
    }
}

pub(super) fn parse_origins(value: &str) -> Result<AllowedOrigins, ConfigError> {
    if value == "*" {
        return Ok(AllowedOrigins::Any);
    }
    let mut list = Vec::new();
    for origin in value.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let origin = origin.trim_end_matches('/');
        let rest = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")).ok_or_else(|| {
            err("CLIENT_ORIGIN", format!("`{origin}` is not an origin (expected http(s)://host[:port])"))
        })?;
        let valid = !rest.is_empty()
            && !rest.contains(['/', '?', '#', '*', ' ', '@'])
            && http::HeaderValue::from_str(origin).is_ok();
        if !valid {
            return Err(err(
                "CLIENT_ORIGIN",
                format!("`{origin}` is not an origin (expected http(s)://host[:port], `*` alone for any)"),
            ));
        }
        list.push(normalize_origin(origin));
    }
    if list.is_empty() {
        return Err(err("CLIENT_ORIGIN", "no origin given"));
    }
    Ok(AllowedOrigins::List(list))
}

/// Browsers send origins in lower case and without the scheme's default port; we
/// store them the same way so every comparison (ours and the CORS layer's) agrees.
fn normalize_origin(origin: &str) -> String {
    let lower = origin.to_ascii_lowercase();
    lower
        .strip_suffix(":443")
        .filter(|o| o.starts_with("https://"))
        .or_else(|| lower.strip_suffix(":80").filter(|o| o.starts_with("http://")))
        .unwrap_or(&lower)
        .to_owned()
}
