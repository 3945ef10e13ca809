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
