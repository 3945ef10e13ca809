//! Client events answered through the Socket.IO acknowledgement. Every payload is
//! untrusted: a bad one gets `{ ok: false, error, message }`, never a panic, and the
//! socket keeps working.

use serde::Serialize;
use serde_json::{Value, json};
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, SocketRef, TryData};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::auth::Identity;
use crate::events::Room;

/// An acknowledgement: `{ ok: true, ... }` or `{ ok: false, error, message }` with a
/// stable error code.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Ack {
    Ok(Value),
    Err { ok: bool, error: &'static str, message: String },
}

impl Ack {
    fn ok(fields: Value) -> Ack {
        let mut v = json!({ "ok": true });
        if let (Some(o), Value::Object(extra)) = (v.as_object_mut(), fields) {
            o.extend(extra);
        }
        Ack::Ok(v)
    }

    fn err(error: &'static str, message: impl Into<String>) -> Ack {
        Ack::Err { ok: false, error, message: message.into() }
    }
}

fn send<A: Adapter>(socket: &SocketRef<A>, ack: AckSender<A>, event: &str, answer: Ack) {
    if let Err(e) = ack.send(&answer) {
        tracing::debug!(sid = %socket.id, event, error = %e, "ack not sent");
    }
}

pub async fn ping<A: Adapter>(socket: SocketRef<A>, ack: AckSender<A>) {
    let now = OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default();
    send(&socket, ack, "ping", Ack::ok(json!({ "pong": true, "serverTime": now })));
}

pub async fn join<A: Adapter>(socket: SocketRef<A>, TryData(data): TryData<Value>, ack: AckSender<A>) {
    let answer = match room_of(data) {
        Err(answer) => answer,
        Ok(room) => match socket.extensions.get::<Identity>() {
            Some(identity) if identity.may_join(&room) => {
                socket.join(room.name());
                tracing::debug!(sid = %socket.id, room = %room, "joined room");
                Ack::ok(json!({ "room": room.name() }))
            }
            _ => {
                tracing::info!(sid = %socket.id, room = %room, "join refused");
                Ack::err("forbidden", format!("you may not join {room}"))
            }
        },
    };
    send(&socket, ack, "join", answer);
}

pub async fn leave<A: Adapter>(socket: SocketRef<A>, TryData(data): TryData<Value>, ack: AckSender<A>) {
    let answer = match room_of(data) {
        Err(answer) => answer,
        Ok(room) => {
            // Leaving a room one is not in is a no-op, so no authorization is needed.
            socket.leave(room.name());
            Ack::ok(json!({ "room": room.name() }))
        }
    };
    send(&socket, ack, "leave", answer);
}

/// Reads `{ "type": "user" | "vendor", "id": "<id>" }`.
fn room_of(data: Result<Value, socketioxide::ParserError>) -> Result<Room, Ack> {
    let invalid = |m: &str| Ack::err("invalid_payload", m);
    let data = data.map_err(|_| invalid("payload must be { type: \"user\" | \"vendor\", id: string }"))?;
    let obj = data.as_object().ok_or_else(|| invalid("payload must be an object { type, id }"))?;
    let kind = obj.get("type").and_then(Value::as_str).ok_or_else(|| invalid("type must be \"user\" or \"vendor\""))?;
    let kind =
        crate::events::room::RoomKind::parse(kind).ok_or_else(|| invalid("type must be \"user\" or \"vendor\""))?;
    let id = obj.get("id").ok_or_else(|| invalid("id is required"))?;
    let id = crate::events::id::from_json(id).map_err(|e| Ack::err("invalid_payload", format!("id {e}")))?;
    Ok(Room::new(kind, id))
}
