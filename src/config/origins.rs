//! `CLIENT_ORIGIN`: the browser origins allowed on HTTP and the Socket.IO handshake.

use super::{ConfigError, err};

/// Which browser origins may use the HTTP API and the Socket.IO handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// `CLIENT_ORIGIN=*`: any origin (only when set explicitly).
    Any,
    /// Exact origins such as `https://app.fixrx.com` (scheme, host, optional port).
    List(Vec<String>),
    /// Development mode: the list, and any `http://localhost:<port>` or
    /// `http://127.0.0.1:<port>`, so a front-end dev server (Vite, Next.js, Expo web)
    /// connects with no configuration. Never in production.
    ListAndLoopback(Vec<String>),
}

impl AllowedOrigins {
    /// Whether a request's `Origin` header value is allowed.
    pub fn allows(&self, origin: &str) -> bool {
        match self {
            AllowedOrigins::Any => true,
            AllowedOrigins::List(list) => list.iter().any(|o| o == origin),
            AllowedOrigins::ListAndLoopback(list) => list.iter().any(|o| o == origin) || is_loopback_http(origin),
        }
    }

    /// Development mode's widening of an explicit list (`*` stays `*`).
    pub(super) fn with_loopback(self) -> AllowedOrigins {
        match self {
            AllowedOrigins::List(list) => AllowedOrigins::ListAndLoopback(list),
            other => other,
        }
    }
}

/// `http://localhost` or `http://127.0.0.1`, with at most a port after it: exactly, as
/// browsers send it, so `http://localhost.evil.example` or `http://localhost:1@evil` is
/// not one.
fn is_loopback_http(origin: &str) -> bool {
    let Some(rest) = origin.strip_prefix("http://localhost").or_else(|| origin.strip_prefix("http://127.0.0.1")) else {
        return false;
    };
    match rest.strip_prefix(':') {
        None => rest.is_empty(),
        Some(port) => {
            !port.is_empty()
                && port.len() <= 5
                && port.bytes().all(|b| b.is_ascii_digit())
                && port.parse::<u16>().is_ok_and(|p| p > 0)
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
