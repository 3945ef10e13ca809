//! TLS to Redis (`rediss://`): `REDIS_TLS_CA_FILE` (CAs trusted besides the system's
//! roots) and `REDIS_TLS_CERT_FILE` / `REDIS_TLS_KEY_FILE` (mutual TLS). Each file is read
//! and checked here, once, so a bad file stops start-up naming its variable instead of
//! failing every connection later.

use std::fmt;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use secrecy::SecretSlice;

use super::{ConfigError, err};

/// What the server trusts and presents on `rediss://` connections. Empty: the system's
/// roots only, no client certificate.
#[derive(Clone, Default)]
pub struct RedisTls {
    /// `REDIS_TLS_CA_FILE`: CA certificates trusted in addition to the system's roots.
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// `REDIS_TLS_CERT_FILE` + `REDIS_TLS_KEY_FILE`: presented when Redis asks for one.
    pub identity: Option<ClientIdentity>,
}

/// A client certificate chain and its private key, both PEM as read (redis-rs takes PEM);
/// checked to parse and to belong together.
#[derive(Clone)]
pub struct ClientIdentity {
    pub cert_pem: Vec<u8>,
    pub key_pem: SecretSlice<u8>,
}

impl fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTls")
            .field("extra_roots", &format_args!("{} certificate(s)", self.extra_roots.len()))
            .field("identity", &self.identity.as_ref().map(|_| format_args!("client certificate, key REDACTED")))
            .finish()
    }
}

/// `tls_urls`: whether the Redis URL(s) are `rediss://`; the files mean nothing otherwise,
/// and a file that would be silently ignored is an error.
pub(super) fn parse_redis_tls(get: &impl Fn(&str) -> Option<String>, tls_urls: bool) -> Result<RedisTls, ConfigError> {
    let ca = get("REDIS_TLS_CA_FILE");
    let cert = get("REDIS_TLS_CERT_FILE");
    let key = get("REDIS_TLS_KEY_FILE");
    for (var, value) in [("REDIS_TLS_CA_FILE", &ca), ("REDIS_TLS_CERT_FILE", &cert), ("REDIS_TLS_KEY_FILE", &key)] {
        if value.is_some() && !tls_urls {
            return Err(err(var, "set, but REDIS_URL / REDIS_CLUSTER_URLS is not rediss:// (TLS)"));
        }
    }
    let extra_roots = match ca {
        Some(path) => read_roots("REDIS_TLS_CA_FILE", &path)?,
        None => Vec::new(),
    };
    let identity = match (cert, key) {
        (None, None) => None,
        (Some(_), None) => return Err(err("REDIS_TLS_KEY_FILE", "required with REDIS_TLS_CERT_FILE")),
        (None, Some(_)) => return Err(err("REDIS_TLS_CERT_FILE", "required with REDIS_TLS_KEY_FILE")),
        (Some(cert), Some(key)) => Some(read_identity(&cert, &key)?),
    };
    Ok(RedisTls { extra_roots, identity })
}

fn read(var: &'static str, path: &str) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| err(var, format!("cannot read `{path}`: {e}")))
}

/// Every certificate in a PEM file; at least one.
fn read_certs(var: &'static str, path: &str) -> Result<(Vec<u8>, Vec<CertificateDer<'static>>), ConfigError> {
    let pem = read(var, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(var, format!("`{path}` is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(err(var, format!("`{path}` holds no PEM certificate (-----BEGIN CERTIFICATE-----)")));
    }
    Ok((pem, certs))
}

/// A CA bundle (`REDIS_TLS_CA_FILE`, `WEBHOOK_CA_FILE`): every certificate in it, each
/// usable as a trust anchor.
pub(super) fn read_roots(var: &'static str, path: &str) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let (_, certs) = read_certs(var, path)?;
    for (i, cert) in certs.iter().enumerate() {
        if let Err(e) = RootCertStore::empty().add(cert.clone()) {
            return Err(err(var, format!("certificate {} in `{path}` cannot be a trusted CA: {e}", i + 1)));
        }
    }
    Ok(certs)
}

fn read_identity(cert_path: &str, key_path: &str) -> Result<ClientIdentity, ConfigError> {
    const KEY: &str = "REDIS_TLS_KEY_FILE";
    let (cert_pem, chain) = read_certs("REDIS_TLS_CERT_FILE", cert_path)?;
    let key_pem = read(KEY, key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| err(KEY, format!("`{key_path}` holds no usable PEM private key: {e}")))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| err(KEY, format!("`{key_path}`: unsupported private key: {e}")))?;
    match rustls::sign::CertifiedKey::new(chain, signer).keys_match() {
        // `Unknown`: the key type cannot tell its public key; the handshake will.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => {
            return Err(err(KEY, format!("`{key_path}` is not the key of the certificate in REDIS_TLS_CERT_FILE")));
        }
    }
    Ok(ClientIdentity { cert_pem, key_pem: SecretSlice::from(key_pem) })
}
