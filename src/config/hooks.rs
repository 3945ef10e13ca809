//! The backend hooks' settings: `WEBHOOK_*`, `CHAT_HOOK_*`, `PRESENCE_OFFLINE_GRACE_MS`.

use std::fmt;

use rustls::pki_types::CertificateDer;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::{AppEnv, ConfigError, err, parse_bounded};

/// The secret development mode signs with when `WEBHOOK_SECRET` is unset. Public (it is
/// in this file), so production refuses it.
pub const DEV_WEBHOOK_SECRET: &str = "fixrx-development-webhook-secret";
/// Shortest `WEBHOOK_SECRET` production accepts.
const MIN_SECRET_CHARS: usize = 16;

/// Where the server calls the backend, and how it signs.
#[derive(Clone)]
pub struct HooksConfig {
    /// Presence webhooks; `None`: off.
    pub webhook: Option<HookTarget>,
    /// The chat hook; `None`: off, chat messages are relayed as they come.
    pub chat: Option<HookTarget>,
    /// Present whenever a URL is.
    pub secret: Option<SecretString>,
    /// How long an identity with no socket left may stay away before it is offline.
    pub offline_grace: Duration,
    /// `CHAT_HOOK_CONCURRENCY`: most chat hook requests in flight at once; a message past
    /// it is refused at once (`unavailable`), never queued.
    pub chat_concurrency: usize,
    /// `WEBHOOK_CA_FILE`: CA certificates trusted for HTTPS to the backend, besides the
    /// system's roots (read and checked once, at start-up).
    pub extra_roots: Vec<CertificateDer<'static>>,
}

/// One backend URL and how long one attempt on it may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookTarget {
    pub url: Url,
    pub timeout: Duration,
}

impl HooksConfig {
    /// True when requests are signed with the public development secret.
    pub fn is_dev_secret(&self) -> bool {
        self.secret.as_ref().is_some_and(|s| s.expose_secret() == DEV_WEBHOOK_SECRET)
    }
}

impl fmt::Debug for HooksConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URLs may carry credentials in their user-info or query: print the origin only.
        let origin = |t: &Option<HookTarget>| t.as_ref().map(|t| t.url.origin().ascii_serialization());
        f.debug_struct("HooksConfig")
            .field("webhook", &origin(&self.webhook))
            .field("chat", &origin(&self.chat))
            .field("secret", &self.secret.as_ref().map(|_| "[REDACTED]"))
            .field("offline_grace", &self.offline_grace)
            .field("chat_concurrency", &self.chat_concurrency)
            .field("extra_roots", &format_args!("{} certificate(s)", self.extra_roots.len()))
            .finish()
    }
}

pub(super) fn parse_hooks(get: &impl Fn(&str) -> Option<String>, env: AppEnv) -> Result<HooksConfig, ConfigError> {
    let webhook = target(get, "WEBHOOK_URL", "WEBHOOK_TIMEOUT_MS", 5_000)?;
    let chat = target(get, "CHAT_HOOK_URL", "CHAT_HOOK_TIMEOUT_MS", 3_000)?;
    let offline_grace = Duration::from_millis(parse_bounded(get, "PRESENCE_OFFLINE_GRACE_MS", 5_000, 86_400_000)?);
    let chat_concurrency = usize::try_from(parse_bounded(get, "CHAT_HOOK_CONCURRENCY", 64, 100_000)?)
        .map_err(|_| err("CHAT_HOOK_CONCURRENCY", "too large"))?;
    if chat_concurrency == 0 {
        return Err(err("CHAT_HOOK_CONCURRENCY", "must be at least 1"));
    }
    let secret = match (get("WEBHOOK_SECRET"), webhook.is_some() || chat.is_some(), env) {
        (_, false, _) => None,
        (None, true, AppEnv::Development) => Some(SecretString::from(DEV_WEBHOOK_SECRET)),
        (None, true, AppEnv::Production) => {
            return Err(err("WEBHOOK_SECRET", "required when WEBHOOK_URL or CHAT_HOOK_URL is set"));
        }
        (Some(secret), true, AppEnv::Production) if secret == DEV_WEBHOOK_SECRET => {
            return Err(err("WEBHOOK_SECRET", "the development secret cannot be used in production"));
        }
        (Some(secret), true, AppEnv::Production) if secret.chars().count() < MIN_SECRET_CHARS => {
            return Err(err("WEBHOOK_SECRET", format!("must be at least {MIN_SECRET_CHARS} characters in production")));
        }
        (Some(secret), true, _) => Some(SecretString::from(secret)),
    };
    let extra_roots = match get("WEBHOOK_CA_FILE") {
        None => Vec::new(),
        // A file that would be silently ignored is an error, as REDIS_TLS_CA_FILE's.
        Some(_) if webhook.is_none() && chat.is_none() => {
            return Err(err("WEBHOOK_CA_FILE", "set, but neither WEBHOOK_URL nor CHAT_HOOK_URL is"));
        }
        Some(path) => super::redis_tls::read_roots("WEBHOOK_CA_FILE", &path)?,
    };
    Ok(HooksConfig { webhook, chat, secret, offline_grace, chat_concurrency, extra_roots })
}

fn target(
    get: &impl Fn(&str) -> Option<String>,
    url_var: &'static str,
    timeout_var: &'static str,
    default_ms: u64,
) -> Result<Option<HookTarget>, ConfigError> {
    let timeout = Duration::from_millis(parse_bounded(get, timeout_var, default_ms, 600_000)?);
    if timeout.is_zero() {
        return Err(err(timeout_var, "must be at least 1 ms"));
    }
    let Some(raw) = get(url_var) else { return Ok(None) };
    let url = Url::parse(&raw).map_err(|e| err(url_var, format!("not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(err(url_var, "must be an http:// or https:// URL with a host"));
    }
    Ok(Some(HookTarget { url, timeout }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn hooks(vars: &[(&str, &str)], env: AppEnv) -> Result<HooksConfig, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        parse_hooks(&|name: &str| map.get(name).cloned(), env)
    }

    #[test]
    fn hooks_are_off_unless_a_url_is_set() {
        let h = hooks(&[], AppEnv::Production).unwrap();
        assert!(h.webhook.is_none() && h.chat.is_none() && h.secret.is_none());
        assert_eq!(h.offline_grace, Duration::from_secs(5));
    }

    #[test]
    fn production_refuses_a_url_without_a_real_secret() {
        let url = ("WEBHOOK_URL", "https://backend.example/hooks");
        assert_eq!(hooks(&[url], AppEnv::Production).unwrap_err().var, "WEBHOOK_SECRET");
        let chat = ("CHAT_HOOK_URL", "http://10.0.0.2/chat");
        assert_eq!(hooks(&[chat], AppEnv::Production).unwrap_err().var, "WEBHOOK_SECRET");
        let short = ("WEBHOOK_SECRET", "short");
        assert_eq!(hooks(&[url, short], AppEnv::Production).unwrap_err().var, "WEBHOOK_SECRET");
        let dev = ("WEBHOOK_SECRET", DEV_WEBHOOK_SECRET);
        assert_eq!(hooks(&[url, dev], AppEnv::Production).unwrap_err().var, "WEBHOOK_SECRET");
        let good = ("WEBHOOK_SECRET", "a-long-enough-production-secret");
        let h = hooks(&[url, good], AppEnv::Production).unwrap();
        assert_eq!(h.webhook.unwrap().timeout, Duration::from_secs(5));
        assert!(!format!("{:?}", hooks(&[url, good], AppEnv::Production).unwrap()).contains("long-enough"));
    }

    #[test]
    fn development_signs_with_the_public_secret_when_none_is_set() {
        let h = hooks(&[("CHAT_HOOK_URL", "http://127.0.0.1:9/chat")], AppEnv::Development).unwrap();
        assert!(h.is_dev_secret());
        assert_eq!(h.chat.unwrap().timeout, Duration::from_secs(3));
    }

    #[test]
    fn chat_hook_concurrency_defaults_to_64_and_must_be_positive() {
        assert_eq!(hooks(&[], AppEnv::Production).unwrap().chat_concurrency, 64);
        assert_eq!(hooks(&[("CHAT_HOOK_CONCURRENCY", "8")], AppEnv::Production).unwrap().chat_concurrency, 8);
        for bad in ["0", "-1", "many", "100001"] {
            let e = hooks(&[("CHAT_HOOK_CONCURRENCY", bad)], AppEnv::Production).unwrap_err();
            assert_eq!(e.var, "CHAT_HOOK_CONCURRENCY", "{bad}");
        }
    }

    #[test]
    fn a_webhook_ca_file_that_is_missing_or_not_pem_or_unused_names_its_variable() {
        let url = ("WEBHOOK_URL", "https://backend.example/hooks");
        let dir = std::env::temp_dir().join(format!("fixrx-webhook-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        let garbage = garbage.to_string_lossy().into_owned();
        for bad in ["/nonexistent/ca.pem", garbage.as_str()] {
            let e = hooks(&[url, ("WEBHOOK_CA_FILE", bad)], AppEnv::Development).unwrap_err();
            assert_eq!(e.var, "WEBHOOK_CA_FILE", "{bad}: {e}");
        }
        let e = hooks(&[("WEBHOOK_CA_FILE", "/nonexistent/ca.pem")], AppEnv::Development).unwrap_err();
        assert_eq!(e.var, "WEBHOOK_CA_FILE");
        assert!(hooks(&[url], AppEnv::Development).unwrap().extra_roots.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_url_that_is_not_http_names_its_variable() {
        for bad in ["ftp://x/y", "backend:8080", "http://", "not a url", "file:///etc/passwd"] {
            let e = hooks(&[("CHAT_HOOK_URL", bad)], AppEnv::Development).unwrap_err();
            assert_eq!(e.var, "CHAT_HOOK_URL", "{bad}");
            let e = hooks(&[("WEBHOOK_URL", bad)], AppEnv::Development).unwrap_err();
            assert_eq!(e.var, "WEBHOOK_URL", "{bad}");
        }
        let e = hooks(&[("WEBHOOK_TIMEOUT_MS", "0")], AppEnv::Development).unwrap_err();
        assert_eq!(e.var, "WEBHOOK_TIMEOUT_MS");
        let e = hooks(&[("PRESENCE_OFFLINE_GRACE_MS", "-1")], AppEnv::Development).unwrap_err();
        assert_eq!(e.var, "PRESENCE_OFFLINE_GRACE_MS");
    }
}
