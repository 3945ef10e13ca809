//! `GET /api/v1/presence/{user|vendor}/{id}` and `POST /api/v1/users/{id}/disconnect`.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};
use socketioxide::adapter::Adapter;

use super::{ApiClient, ApiError, AppState};
use crate::events::Id;
use crate::events::Room;
use crate::events::room::RoomKind;

/// Sockets in the room, on every instance sharing the adapter.
pub async fn presence<A: Adapter>(
    State(state): State<AppState<A>>,
    _client: ApiClient,
    Path((kind, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let kind = RoomKind::parse(&kind).ok_or(ApiError::NotFound)?;
    let id = Id::new(id).map_err(|e| ApiError::validation("id", e.to_string()))?;
    let connections = state.emitter.count(&Room::new(kind, id)).await?;
    Ok(Json(json!({ "online": connections > 0, "connections": connections })))
}

/// Disconnects every socket of a user (logout, ban), on every instance.
pub async fn disconnect_user<A: Adapter>(
    State(state): State<AppState<A>>,
    _client: ApiClient,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = Id::new(id).map_err(|e| ApiError::validation("id", e.to_string()))?;
    let room = Room::User(id);
    let disconnected = state.emitter.disconnect(&room).await?;
    tracing::info!(room = %room, disconnected, "user disconnected by a controller");
    Ok(Json(json!({ "disconnected": disconnected })))
}
