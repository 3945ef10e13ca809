//! `GET /api/v1/presence/{user|vendor}/{id}` and `POST /api/v1/users/{id}/disconnect`.

use axum::Json;
use axum::extract::{Path, State};
use socketioxide::adapter::Adapter;

use super::error::{AuthErrors, ErrorBody};
use super::{ApiClient, ApiError, AppState};
use crate::events::Id;
use crate::events::Room;
use crate::events::room::RoomKind;

/// Whether an identity is online, and with how many sockets.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct PresenceAnswer {
    pub online: bool,
    pub connections: usize,
}

/// The `kind` of a presence lookup (documentation only: the path is parsed by `RoomKind`).
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum PresenceKind {
    User,
    Vendor,
}

/// How many sockets were disconnected.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct DisconnectAnswer {
    pub disconnected: usize,
}

/// Sockets authenticated as a user or vendor, on every instance.
#[utoipa::path(get, path = "/api/v1/presence/{kind}/{id}", tag = "presence", security(("bearer" = [])),
    params(
        ("kind" = PresenceKind, Path, description = "`user` or `vendor` (anything else: 404)"),
        ("id" = String, Path, min_length = 1, max_length = 128, pattern = r"^[^\u0000-\u001f\u007f-\u009f]+$",
            description = "the user's or vendor's id"),
    ),
    responses(
        (status = 200, description = "Presence", body = PresenceAnswer),
        AuthErrors,
        (status = 404, description = "`kind` is neither user nor vendor", body = ErrorBody),
        (status = 422, description = "The id is not an id", body = ErrorBody),
        (status = 503, description = "Redis is unreachable", body = ErrorBody),
    ))]
pub async fn presence<A: Adapter>(
    State(state): State<AppState<A>>,
    _client: ApiClient,
    Path((kind, id)): Path<(String, String)>,
) -> Result<Json<PresenceAnswer>, ApiError> {
    let kind = RoomKind::parse(&kind).ok_or(ApiError::NotFound)?;
    let id = Id::new(id).map_err(|e| ApiError::validation("id", e.to_string()))?;
    let connections = state.emitter.count(&Room::new(kind, id)).await?;
    Ok(Json(PresenceAnswer { online: connections > 0, connections }))
}

/// Disconnects every socket of a user (logout, ban), on every instance.
#[utoipa::path(post, path = "/api/v1/users/{id}/disconnect", tag = "presence", security(("bearer" = [])),
    params(("id" = String, Path, min_length = 1, max_length = 128, pattern = r"^[^\u0000-\u001f\u007f-\u009f]+$",
        description = "the user's id")),
    responses(
        (status = 200, description = "Sockets disconnected", body = DisconnectAnswer),
        AuthErrors,
        (status = 422, description = "The id is not an id", body = ErrorBody),
        (status = 503, description = "Redis is unreachable", body = ErrorBody),
    ))]
pub async fn disconnect_user<A: Adapter>(
    State(state): State<AppState<A>>,
    _client: ApiClient,
    Path(id): Path<String>,
) -> Result<Json<DisconnectAnswer>, ApiError> {
    let id = Id::new(id).map_err(|e| ApiError::validation("id", e.to_string()))?;
    let room = Room::User(id);
    let disconnected = state.emitter.disconnect(&room).await?;
    tracing::info!(room = %room, disconnected, "user disconnected by a controller");
    Ok(Json(DisconnectAnswer { disconnected }))
}
