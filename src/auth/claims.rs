//! The claims of a client token that make its [`Identity`]: `sub`, `exp`, `role` and
//! `vendorId` (the signature, `nbf`, `iss` and `aud` are jsonwebtoken's to check).

use serde::{Deserialize, Deserializer};

use super::identity::{Identity, Role};
use super::jwt::TokenError;
use crate::events::id;

/// The claims we read. Signature, `exp`, `nbf`, `iss` and `aud` are checked by jsonwebtoken.
#[derive(Debug, Deserialize)]
pub(super) struct RawClaims {
    #[serde(default, deserialize_with = "lenient")]
    sub: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "lenient")]
    exp: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "lenient")]
    role: Option<serde_json::Value>,
    #[serde(default, rename = "vendorId", deserialize_with = "lenient")]
    vendor_id: Option<serde_json::Value>,
}

/// Keeps `null` distinct from absent so both are reported as missing, not as a parse error.
fn lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    Ok(Option::<serde_json::Value>::deserialize(d)?.filter(|v| !v.is_null()))
}

pub(super) fn claims_to_identity(c: RawClaims) -> Result<Identity, TokenError> {
    let user_id = match c.sub {
        None => return Err(TokenError::MissingClaim("sub")),
        Some(v) => id::from_json(&v).map_err(|_| TokenError::InvalidClaim("sub"))?,
    };
    let exp = match c.exp {
        None => return Err(TokenError::MissingClaim("exp")),
        // Rounded, as jsonwebtoken checks it: a fractional `exp` must not expire early.
        Some(v) => v.as_u64().or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f.round() as u64)),
    }
    .ok_or(TokenError::InvalidClaim("exp"))?;
    let role = match c.role {
        None => Role::User,
        Some(serde_json::Value::String(s)) => match s.as_str() {
            "user" => Role::User,
            "vendor" => Role::Vendor,
            "admin" => Role::Admin,
            _ => return Err(TokenError::BadRole),
        },
        Some(_) => return Err(TokenError::BadRole),
    };
    let vendor_id = match role {
        Role::Vendor => Some(match c.vendor_id {
            None => user_id.clone(),
            Some(v) => id::from_json(&v).map_err(|_| TokenError::InvalidClaim("vendorId"))?,
        }),
        Role::User | Role::Admin => None,
    };
    Ok(Identity { user_id, role, vendor_id, exp })
}
