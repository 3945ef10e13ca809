//! Who is calling: client JWTs (verified at the Socket.IO handshake) and the
//! controllers' REST bearer tokens.

pub mod api_token;
mod claims;
pub mod handshake;
pub mod identity;
pub mod jwks;
pub mod jwt;

pub use identity::{Identity, Role};
pub use jwt::{JwtVerifier, TokenError, VerifierError};
