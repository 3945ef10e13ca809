//! `GET /dev/token`: development mode only, and only while the server runs on the
//! public development secret (so it reveals nothing an attacker could not already sign).

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::{Value, json};
use socketioxide::adapter::Adapter;

use super::{ApiError, AppState};
use crate::auth::{Identity, Role};
use crate::events::Id;

#[derive(Deserialize)]
pub struct TokenQuery {
    sub: Option<String>,
    role: Option<String>,
    #[serde(rename = "vendorId")]
    vendor_id: Option<String>,
    /// Lifetime in seconds (default one day).
    ttl: Option<u64>,
}

pub async fn token<A: Adapter>(
    State(state): State<AppState<A>>,
    query: Result<Query<TokenQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::validation("query", e.body_text()))?;
    let user_id =
        Id::new(q.sub.unwrap_or_else(|| "dev-user".into())).map_err(|e| ApiError::validation("sub", e.to_string()))?;
    let role = match q.role.as_deref() {
        None | Some("user") => Role::User,
        Some("vendor") => Role::Vendor,
        Some("admin") => Role::Admin,
        Some(_) => return Err(ApiError::validation("role", "must be user, vendor or admin")),
    };
    let vendor_id = match (role, q.vendor_id) {
        (Role::Vendor, Some(v)) => Some(Id::new(v).map_err(|e| ApiError::validation("vendorId", e.to_string()))?),
        (Role::Vendor, None) => Some(user_id.clone()),
        _ => None,
    };
    let ttl = q.ttl.unwrap_or(86_400).clamp(1, 30 * 86_400);
    let exp = jsonwebtoken::get_current_timestamp() + ttl;
    let identity = Identity { user_id, role, vendor_id, exp };
    let token = state.verifier.mint_dev_token(&identity).ok_or(ApiError::NotFound)?;
    let mut answer = json!({ "token": token, "exp": exp, "sub": identity.user_id, "role": role.as_str() });
    if let Some(vendor) = &identity.vendor_id {
        answer["vendorId"] = json!(vendor);
    }
    Ok(Json(answer))
}
