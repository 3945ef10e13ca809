//! TLS to Redis (`rediss://`): what redis-rs is handed to trust and to present, and how
//! a refused handshake is told apart from an unreachable Redis.
//!
//! redis-rs speaks rustls with the system's roots by default. Given a CA bundle it trusts
//! that bundle *instead*, so `REDIS_TLS_CA_FILE` is handed over together with the system's
//! roots: the contract is "the system's roots plus the file".

use base64::Engine;
use redis::{ClientTlsConfig, TlsCertificates};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use secrecy::ExposeSecret;

use crate::config::RedisTls;

/// Makes `ring` (the provider reqwest already uses) the process's rustls provider, so that
/// redis-rs's `ClientConfig::builder()` never has to guess (it panics when a build holds two
/// providers). Returns an error only when one is installed already, which is as good.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// `None`: redis-rs's defaults (the system's roots, no client certificate).
pub fn certificates(tls: &RedisTls) -> Option<TlsCertificates> {
    if tls.extra_roots.is_empty() && tls.identity.is_none() {
        return None;
    }
    let root_cert = (!tls.extra_roots.is_empty()).then(|| roots_pem(&tls.extra_roots));
    let client_tls = tls.identity.as_ref().map(|identity| ClientTlsConfig {
        client_cert: identity.cert_pem.clone(),
        client_key: identity.key_pem.expose_secret().to_vec(),
    });
    Some(TlsCertificates { client_tls, root_cert })
}

/// The system's roots followed by `extra`, as one PEM bundle.
fn roots_pem(extra: &[CertificateDer<'static>]) -> Vec<u8> {
    let system = rustls_native_certs::load_native_certs();
    if let Some(e) = system.errors.first() {
        tracing::warn!(error = %e, "some of the system's root certificates could not be read");
    }
    // redis-rs refuses the whole bundle over one root it cannot use as a trust anchor;
    // such a system root is skipped, as rustls's own loaders skip it.
    let usable = system.certs.into_iter().filter(|c| RootCertStore::empty().add(c.clone()).is_ok());
    let mut pem = Vec::new();
    for cert in usable.chain(extra.iter().cloned()) {
        let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        pem.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.extend_from_slice(line);
            pem.push(b'\n');
        }
        pem.extend_from_slice(b"-----END CERTIFICATE-----\n");
    }
    pem
}

/// Which variable a failed TLS connection points at, if the failure is TLS's: the server's
/// certificate did not verify (trust), or the server refused ours (mutual TLS).
///
/// By text, because redis-rs hands a cluster's connection errors on as text, and rustls's
/// error sits under an `io::Error` whose `source()` skips it.
pub fn blame(error: &str, tls: &RedisTls, url_var: &'static str) -> Option<String> {
    if error.contains("invalid peer certificate") {
        let (var, trusted) = if tls.extra_roots.is_empty() {
            (url_var, "the system's roots (set REDIS_TLS_CA_FILE to the CA that signed it)")
        } else {
            ("REDIS_TLS_CA_FILE", "the system's roots and REDIS_TLS_CA_FILE")
        };
        return Some(format!("{var}: Redis's TLS certificate does not verify against {trusted}: {error}"));
    }
    if error.contains("received fatal alert") {
        let var = if tls.identity.is_some() { "REDIS_TLS_CERT_FILE" } else { url_var };
        let hint = if tls.identity.is_some() {
            "Redis refused the client certificate in REDIS_TLS_CERT_FILE"
        } else {
            "Redis refused the TLS handshake (does it require a client certificate? set REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE)"
        };
        return Some(format!("{var}: {hint}: {error}"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;

    #[test]
    fn the_ca_file_is_trusted_besides_the_system_roots_not_instead() {
        let system = rustls_native_certs::load_native_certs().certs;
        let usable = system.iter().filter(|c| RootCertStore::empty().add((*c).clone()).is_ok()).count();
        // Any DER stands in for the CA here: the bundle is only encoded and parsed back.
        let extra = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x07]);
        let pem = roots_pem(std::slice::from_ref(&extra));
        let back: Vec<CertificateDer> = CertificateDer::pem_slice_iter(&pem).collect::<Result<_, _>>().unwrap();
        assert_eq!(back.len(), usable + 1);
        assert_eq!(back.last(), Some(&extra));
        assert!(back[..usable].iter().all(|c| system.contains(c)), "the system's roots come first");
    }

    #[test]
    fn a_refused_handshake_names_the_variable_to_fix() {
        let none = RedisTls::default();
        let with_ca = RedisTls { extra_roots: vec![CertificateDer::from(vec![1])], identity: None };
        let untrusted = "redis: invalid peer certificate: UnknownIssuer";
        assert!(blame(untrusted, &none, "REDIS_URL").unwrap().starts_with("REDIS_URL: "));
        assert!(blame(untrusted, &with_ca, "REDIS_URL").unwrap().starts_with("REDIS_TLS_CA_FILE: "));
        let refused = "Failed to create initial connections - received fatal alert: CertificateRequired";
        let line = blame(refused, &none, "REDIS_CLUSTER_URLS").unwrap();
        assert!(line.starts_with("REDIS_CLUSTER_URLS: ") && line.contains("REDIS_TLS_CERT_FILE"), "{line}");
        assert_eq!(blame("Connection refused (os error 111)", &with_ca, "REDIS_URL"), None);
    }
}
