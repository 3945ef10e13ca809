//! Client events answered through the Socket.IO acknowledgement. Every payload is
//! untrusted: a bad one gets `{ ok: false, error, message }` (or silence when the
//! client asked for no ack), never a panic, and the socket keeps working.

use std::sync::Arc;

use serde::Serialize;
use serde_json::{Value, json};
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Event, SocketRef, State, TryData};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::limit::{SocketLimiter, Verdict};
use super::membership::Membership;
use crate::auth::Identity;
use crate::delivery::Hub;
use crate::events::Room;
use crate::events::room::RoomKind;
use crate::events::wire::{AckCode, ClientEvent};

/// An acknowledgement: `{ ok: true, ... }` or `{ ok: false, error, message }` with a
/// stable error code (`invalid_payload`, `forbidden`, `rate_limited`, ...).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Ack {
    Ok(Value),
    /// `{ ok: true, ... }` serialized already (the chat ack: no `Value` tree built for it).
    Raw(Box<serde_json::value::RawValue>),
    Err {
        ok: bool,
        error: &'static str,
        message: String,
    },
}

impl Ack {
    pub(super) fn ok(fields: Value) -> Ack {
        let mut v = json!({ "ok": true });
        if let (Some(o), Value::Object(extra)) = (v.as_object_mut(), fields) {
            o.extend(extra);
        }
        Ack::Ok(v)
    }

    pub(super) fn err(code: AckCode, message: impl Into<String>) -> Ack {
        Ack::Err { ok: false, error: code.as_str(), message: message.into() }
    }
}

/// The acknowledgement of one client event, and whether the client asked for one
/// (socketioxide's `AckSender` keeps that to itself): only then does an answer take
/// room in the socket's queue.
pub struct Reply<A: Adapter> {
    pub ack: AckSender<A>,
    pub wanted: bool,
}

impl<A: Adapter> socketioxide::handler::FromMessageParts<A> for Reply<A> {
    type Error = std::convert::Infallible;

    fn from_message_parts(
        socket: &Arc<socketioxide::socket::Socket<A>>,
        value: &mut socketioxide::handler::Value,
        ack_id: &Option<i64>,
    ) -> Result<Self, Self::Error> {
        let ack = AckSender::from_message_parts(socket, value, ack_id)?;
        Ok(Reply { ack, wanted: ack_id.is_some() })
    }
}

/// Sends the ack if the client asked for one; a client that did not simply gets nothing.
pub(super) fn send<A: Adapter>(socket: &SocketRef<A>, ack: AckSender<A>, event: &str, answer: Ack) {
    if let Err(e) = ack.send(&answer) {
        tracing::debug!(sid = %crate::socket::log_id(socket.id), event, error = %e, "ack not sent");
    }
}

/// Counts one client event against the socket's rate. `Err` carries the refusal to
/// send; a socket that keeps flooding is disconnected here.
pub(super) fn admit<A: Adapter>(socket: &SocketRef<A>, event: &str) -> Result<(), Ack> {
    let Some(limiter) = socket.extensions.get::<Arc<SocketLimiter>>() else { return Ok(()) };
    enforce(socket, event, &limiter)
}

/// Counts one event against `limiter` (the socket's, or one its user shares).
pub(super) fn enforce<A: Adapter>(socket: &SocketRef<A>, event: &str, limiter: &SocketLimiter) -> Result<(), Ack> {
    match limiter.check() {
        Verdict::Allowed => Ok(()),
        Verdict::Limited => Err(Ack::err(AckCode::RateLimited, "too many events; slow down")),
        Verdict::Flooding => {
            tracing::warn!(sid = %crate::socket::log_id(socket.id), event, "socket stayed over its event rate: disconnecting (flood)");
            let _ = socket.clone().disconnect();
            Err(Ack::err(AckCode::RateLimited, "too many events; disconnected"))
        }
    }
}

pub async fn ping<A: Adapter>(socket: SocketRef<A>, ack: AckSender<A>) {
    let answer = match admit(&socket, ClientEvent::Ping.as_str()) {
        Err(refused) => refused,
        Ok(()) => {
            let now = OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default();
            Ack::ok(json!({ "pong": true, "serverTime": now }))
        }
    };
    send(&socket, ack, ClientEvent::Ping.as_str(), answer);
}

pub async fn join<A: Adapter>(
    socket: SocketRef<A>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    State(ctx): State<Arc<super::SocketCtx>>,
    State(hub): State<Arc<Hub<A>>>,
) {
    let answer = match admit(&socket, ClientEvent::Join.as_str()).and_then(|()| room_of(data)) {
        Err(answer) => answer,
        Ok(room) => match socket.extensions.get::<Arc<Identity>>() {
            Some(identity) if identity.may_join(&room) => {
                ctx.publisher.history().need(|| vec![room.name()]).await;
                Membership::new(&socket, &hub).join(&room);
                tracing::debug!(sid = %crate::socket::log_id(socket.id), room = %room, "joined room");
                Ack::ok(json!({ "room": room.name() }))
            }
            _ => {
                tracing::info!(sid = %crate::socket::log_id(socket.id), room = %room, "join refused");
                Ack::err(AckCode::Forbidden, format!("you may not join {room}"))
            }
        },
    };
    send(&socket, ack, ClientEvent::Join.as_str(), answer);
}

pub async fn leave<A: Adapter>(
    socket: SocketRef<A>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    State(hub): State<Arc<Hub<A>>>,
) {
    let answer = match admit(&socket, ClientEvent::Leave.as_str()).and_then(|()| room_of(data)) {
        Err(answer) => answer,
        Ok(room) => {
            // Leaving a room one is not in is a no-op, so no authorization is needed.
            Membership::new(&socket, &hub).leave(&room);
            Ack::ok(json!({ "room": room.name() }))
        }
    };
    send(&socket, ack, ClientEvent::Leave.as_str(), answer);
}

/// Any event outside the contract (including reserved names such as `error`): counted
/// against the rate, otherwise ignored; a client waiting for an ack is told.
pub async fn unknown<A: Adapter>(socket: SocketRef<A>, Event(event): Event, ack: AckSender<A>) {
    let answer = admit(&socket, "unknown").err().unwrap_or_else(|| {
        let name: String = event.chars().take(64).collect();
        tracing::debug!(sid = %crate::socket::log_id(socket.id), event = %name, "unknown client event ignored");
        Ack::err(AckCode::UnknownEvent, format!("no such event: {name}"))
    });
    send(&socket, ack, "unknown", answer);
}

/// Reads `{ "type": "user" | "vendor", "id": "<id>" }`.
fn room_of(data: Result<Value, socketioxide::ParserError>) -> Result<Room, Ack> {
    let invalid = |m: &str| Ack::err(AckCode::InvalidPayload, m);
    let data = data.map_err(|_| invalid("payload must be { type: \"user\" | \"vendor\", id: string }"))?;
    let obj = data.as_object().ok_or_else(|| invalid("payload must be an object { type, id }"))?;
    let kind = obj.get("type").and_then(Value::as_str).and_then(RoomKind::parse);
    let kind = kind.ok_or_else(|| invalid("type must be \"user\" or \"vendor\""))?;
    let id = obj.get("id").ok_or_else(|| invalid("id is required"))?;
    let id = crate::events::id::from_json(id).map_err(|e| Ack::err(AckCode::InvalidPayload, format!("id {e}")))?;
    Ok(Room::new(kind, id))
}
