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
    let room = Room::new(kind, id);
    let sockets = state.io.to(room.name()).fetch_sockets().await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(Json(json!({ "online": !sockets.is_empty(), "connections": sockets.len() })))
}

/// Disconnects every socket of a user (logout, ban), on every instance.
pub async fn disconnect_user<A: Adapter>(
    State(state): State<AppState<A>>,
    _client: ApiClient,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = Id::new(id).map_err(|e| ApiError::validation("id", e.to_string()))?;
    let room = Room::User(id);
    let sockets = state.io.to(room.name()).fetch_sockets().await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let mut disconnected = 0usize;
    for socket in sockets {
        match socket.disconnect().await {
            Ok(()) => disconnected += 1,
            Err(e) => tracing::warn!(room = %room, error = %e, "socket not disconnected"),
        }
    }
    tracing::info!(room = %room, disconnected, "user disconnected by a controller");
    Ok(Json(json!({ "disconnected": disconnected })))
}
