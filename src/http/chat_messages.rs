//! `POST /api/v1/chat/messages`: a controller posts a chat message (e.g. a system
//! message) with an explicit sender, under the same rules as `chat:send`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use socketioxide::adapter::Adapter;

use super::error::{AuthErrors, BodyErrors, ErrorBody};
use super::json::JsonBody;
use super::schema::{ChatBody, ChatMessageSchema};
use super::{ApiClient, ApiError, AppState};
use crate::events::Room;
use crate::events::chat::{self, ChatError, ChatMessage};

impl From<ChatError> for ApiError {
    fn from(e: ChatError) -> Self {
        match e {
            ChatError::Invalid { field, message } => ApiError::validation(field, message),
            // Over REST the pairing rule is part of the body's shape.
            ChatError::Forbidden(message) => ApiError::validation("to", message),
        }
    }
}

/// A relayed chat message and the rooms it went to.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ChatAnswer {
    #[schema(value_type = ChatMessageSchema)]
    pub message: ChatMessage,
    pub rooms: Vec<String>,
}

/// Relays a chat message from an explicit sender (after the chat hook accepted it).
#[utoipa::path(post, path = "/api/v1/chat/messages", tag = "chat", security(("bearer" = [])),
    request_body = ChatBody,
    responses(
        (status = 202, description = "Relayed to the recipient and the sender's other sockets", body = ChatAnswer),
        AuthErrors,
        BodyErrors,
        (status = 422, description = "Wrong shape (`validation_failed`), or refused by the chat hook (`rejected`)", body = ErrorBody),
        (status = 503, description = "The event bus or the chat hook is unavailable: not relayed", body = ErrorBody),
    ))]
pub async fn post_message<A: Adapter>(
    State(state): State<AppState<A>>,
    _client: ApiClient,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<ChatAnswer>), ApiError> {
    if !body.is_object() {
        return Err(ApiError::validation("", "the body must be an object { from, to, text, clientMsgId? }"));
    }
    let from = chat::parse_party(body.get("from"), "from")?;
    let message = chat::compose(from, chat::parse_draft(&body)?)?;
    let published = state.emitter.chat(&message).await?;
    let rooms: Vec<String> = published.rooms.iter().map(Room::name).collect();
    Ok((StatusCode::ACCEPTED, Json(ChatAnswer { message, rooms })))
}
