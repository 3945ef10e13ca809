//! `POST /api/v1/chat/messages`: a controller posts a chat message (e.g. a system
//! message) with an explicit sender, under the same rules as `chat:send`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::json;
use socketioxide::adapter::Adapter;

use super::json::JsonBody;
use super::{ApiClient, ApiError, AppState};
use crate::chat::{self, ChatError};
use crate::events::Room;

impl From<ChatError> for ApiError {
    fn from(e: ChatError) -> Self {
        match e {
            ChatError::Invalid { field, message } => ApiError::validation(field, message),
            // Over REST the pairing rule is part of the body's shape.
            ChatError::Forbidden(message) => ApiError::validation("to", message),
        }
    }
}

pub async fn post_message<A: Adapter>(
    State(state): State<AppState<A>>,
    _client: ApiClient,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    if !body.is_object() {
        return Err(ApiError::validation("", "the body must be an object { from, to, text, clientMsgId? }"));
    }
    let from = chat::parse_party(body.get("from"), "from")?;
    let message = chat::compose(from, chat::parse_draft(&body)?)?;
    let published = state.emitter.chat(&message).await?;
    let rooms: Vec<String> = published.rooms.iter().map(Room::name).collect();
    Ok((StatusCode::ACCEPTED, Json(json!({ "message": message, "rooms": rooms }))))
}
