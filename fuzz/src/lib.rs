//! Shared pieces of the fuzz targets: structure-aware generators of the JSON that
//! clients and controllers send, and the invariants every parser must keep.
//!
//! Each target takes raw bytes. Most of them use the first byte to pick a mode:
//! the raw bytes as JSON text (the real wire path), or a value built from the bytes
//! with [`arbitrary::Unstructured`] by the generators below, which reach the deep
//! branches (valid event types, id edge cases, RFC 3339 dates, token claims) far
//! faster than byte mutation of JSON text does.

#![allow(clippy::unwrap_used)]

pub mod check;
pub mod generate;

/// The JWT secret every fuzz target's verifier is configured with.
pub const SECRET: &str = "fuzz-secret-0123456789abcdef-fuzz";
/// The issuer and audience of the verifier that requires them.
pub const ISSUER: &str = "fixrx";
pub const AUDIENCE: &str = "app";

/// `JwtVerifier::verify` without a runtime: with secrets or PEM keys and no JWKS it never
/// waits, so one poll settles it (a `Pending` is a verifier waiting with no JWKS: a bug).
pub fn verify_now(
    verifier: &fixrx_realtime::auth::JwtVerifier,
    token: &str,
) -> Result<fixrx_realtime::auth::Identity, fixrx_realtime::auth::TokenError> {
    use std::future::Future;
    let mut fut = std::pin::pin!(verifier.verify(token));
    match fut.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
        std::task::Poll::Ready(result) => result,
        std::task::Poll::Pending => panic!("verify waited without a JWKS"),
    }
}
