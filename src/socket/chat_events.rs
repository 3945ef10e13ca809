//! `chat:send` and `chat:typing`: the sender is the token's identity, never the payload's.
//! Messages go through the history like every room event; typing indicators are
//! volatile and go straight through the adapter.

use std::sync::Arc;

use serde_json::{Value, json};
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, SocketRef, State, TryData};

use super::SocketCtx;
use super::handlers::{Ack, Reply, admit, enforce, send};
use super::users::UserSlot;
use crate::auth::Identity;
use crate::delivery::Hub;
use crate::emit::{EmitError, Publisher};
use crate::events::chat::{self, ChatError, Party};
use crate::events::wire::{AckCode, CHAT_TYPING, ClientEvent};

fn sender<A: Adapter>(socket: &SocketRef<A>) -> Result<Party, Ack> {
    socket
        .extensions
        .get::<Arc<Identity>>()
        .and_then(|identity| identity.chat_party())
        .ok_or_else(|| Ack::err(AckCode::Forbidden, "only users and vendors chat from a socket"))
}

/// Counts a chat message against the rate its user's sockets share: more sockets do
/// not mean more messages.
fn admit_user<A: Adapter>(socket: &SocketRef<A>) -> Result<(), Ack> {
    let Some(slot) = socket.extensions.get::<Arc<UserSlot>>() else { return Ok(()) };
    slot.chat().map_or(Ok(()), |limiter| enforce(socket, ClientEvent::ChatSend.as_str(), limiter))
}

/// The chat hook's refusal, with the backend's reason when it gave one.
fn rejected(reason: Option<String>) -> Ack {
    Ack::err(AckCode::Rejected, reason.unwrap_or_else(|| "the backend rejected the message".to_owned()))
}

/// `{ ok: true, message }`, serialized straight from the message.
fn sent(message: &crate::events::chat::ChatMessage) -> Ack {
    #[derive(serde::Serialize)]
    struct Sent<'a> {
        ok: bool,
        message: &'a crate::events::chat::ChatMessage,
    }
    // The message is on its way either way: never answer a failure the client would retry.
    serde_json::value::to_raw_value(&Sent { ok: true, message }).map_or_else(|_| Ack::ok(json!({})), Ack::Raw)
}

fn refuse(e: ChatError) -> Ack {
    Ack::err(e.ack_code(), e.to_string())
}

/// Delivers to the recipient's room and the sender's own room except this socket
/// (its ack carries the message); answers `{ ok, message }`.
async fn relay<A: Adapter>(
    socket: &SocketRef<A>,
    publisher: &Publisher,
    data: Result<Value, socketioxide::ParserError>,
) -> Ack {
    let from = match admit(socket, ClientEvent::ChatSend.as_str())
        .and_then(|()| admit_user(socket))
        .and_then(|()| sender(socket))
    {
        Ok(from) => from,
        Err(answer) => return answer,
    };
    let Ok(data) = data else { return Ack::err(AckCode::InvalidPayload, "payload must be { to, text, clientMsgId? }") };
    let message = match chat::parse_draft(&data).and_then(|draft| chat::compose(from, draft)) {
        Ok(m) => m,
        Err(e) => return refuse(e),
    };
    match publisher.chat(&message, Some(socket.id)).await {
        Ok(published) => {
            tracing::debug!(sid = %crate::socket::log_id(socket.id), id = %message.id, rooms = ?published.rooms, "chat message relayed");
            sent(&message)
        }
        Err(EmitError::Rejected(reason)) => rejected(reason),
        Err(EmitError::HookUnavailable(_)) => {
            Ack::err(AckCode::Unavailable, "the backend could not accept the message; retry")
        }
        Err(_) => Ack::err(AckCode::Unavailable, "the message could not be delivered; retry"),
    }
}

pub async fn chat_send<A: Adapter>(
    socket: SocketRef<A>,
    TryData(data): TryData<Value>,
    Reply { ack, wanted }: Reply<A>,
    State(ctx): State<Arc<SocketCtx>>,
    State(hub): State<Arc<Hub<A>>>,
) {
    let answer = relay(&socket, &ctx.publisher, data).await;
    // The ack carries the whole message: it counts against the socket's queued bytes
    // like a delivered event (a sender that never reads its acks is a slow reader).
    if let (true, Ack::Raw(raw)) = (wanted, &answer)
        && !hub.charge(&socket, raw.get().len() + 8)
    {
        return;
    }
    send(&socket, ack, ClientEvent::ChatSend.as_str(), answer);
}

/// Relays `{ from, to }` to the recipient as a volatile event: dropped rather than
/// queued when the recipient cannot take it now.
pub async fn chat_typing<A: Adapter>(socket: SocketRef<A>, TryData(data): TryData<Value>, ack: AckSender<A>) {
    let answer = match admit(&socket, ClientEvent::ChatTyping.as_str()).and_then(|()| sender(&socket)) {
        Err(answer) => answer,
        Ok(from) => {
            let to = data
                .map_err(|_| ChatError::Invalid { field: "payload", message: "must be { to }".into() })
                .and_then(|d| chat::parse_party(d.get("to"), "to"));
            match to.and_then(|to| chat::check_pair(&from, &to).map(|()| to)) {
                Err(e) => refuse(e),
                Ok(to) => {
                    let room = to.room().name();
                    let relay = json!({ "from": from, "to": to });
                    if let Err(e) = socket.to(room).volatile().emit(CHAT_TYPING, &relay).await {
                        tracing::debug!(sid = %crate::socket::log_id(socket.id), error = %e, "typing not relayed");
                    }
                    Ack::ok(json!({}))
                }
            }
        }
    };
    send(&socket, ack, ClientEvent::ChatTyping.as_str(), answer);
}
