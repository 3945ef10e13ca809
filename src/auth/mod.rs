//! Who is calling: client JWTs (verified at the Socket.IO handshake) and the
//! controllers' REST bearer tokens.

pub mod api_token;
pub mod handshake;
pub mod jwks;
pub mod jwt;

pub use jwt::{Identity, JwtVerifier, Role, TokenError, VerifierError};
