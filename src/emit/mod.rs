//! Typed emitters: the one path by which events reach sockets, used by the REST
//! handlers and callable from Rust code linked with the crate.
//!
//! Contract kept here: an event goes to each room of [`ServerEvent::rooms`] on every
//! instance sharing the history; a socket in several of those rooms receives it once;
//! events emitted one after another from one task reach each socket in that order. An
//! emit returns `Ok` only once the event is in the history ([`crate::history`]), from
//! which [`crate::delivery`] hands it to sockets.

mod emitter;
mod publisher;

use serde::Serialize;

use crate::events::{EventMeta, EventType, Id, Room, ServerEvent};
use crate::history::{Appended, HistoryError};

pub use emitter::Emitter;
pub use publisher::Publisher;

/// What was emitted: the answer of the REST API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Emitted {
    /// The event's id (its idempotency key when one was given).
    #[schema(value_type = String)]
    pub id: Id,
    /// The event type, e.g. `booking:created`.
    #[serde(rename = "type", serialize_with = "ser_type")]
    #[schema(value_type = String)]
    pub event_type: EventType,
    /// The rooms it went to, e.g. `user:u1`.
    #[serde(serialize_with = "ser_rooms")]
    #[schema(value_type = Vec<String>)]
    pub rooms: Vec<Room>,
}

fn ser_type<S: serde::Serializer>(t: &EventType, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(t.as_str())
}

fn ser_rooms<S: serde::Serializer>(rooms: &[Room], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(rooms.iter().map(Room::name))
}

/// What an emit under an idempotency key did ([`Publisher::emit_once`]).
#[derive(Debug, Clone)]
pub enum EmittedOnce {
    Fresh(Emitted),
    /// The key was recorded already: the first answer, as stored; nothing was emitted.
    Replayed(serde_json::Value),
}

/// Why an event could not be emitted.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    /// The history (Redis) could not be written: nothing was accepted.
    #[error("the event could not be published: {0}")]
    Unavailable(String),
    #[error("the event could not be serialized: {0}")]
    Serialize(String),
    /// The server is shutting down.
    #[error("the server is shutting down")]
    Closed,
    /// The chat hook refused the message (with the backend's reason, if it gave one).
    #[error("the backend rejected the message")]
    Rejected(Option<String>),
    /// The chat hook did not answer `2xx` or `4xx` in time: nothing was relayed.
    #[error("the backend could not be asked: {0}")]
    HookUnavailable(String),
}

impl From<HistoryError> for EmitError {
    fn from(e: HistoryError) -> Self {
        match e {
            HistoryError::Unavailable(why) => EmitError::Unavailable(why),
            HistoryError::Closed => EmitError::Closed,
        }
    }
}

/// One event of a batch ([`Publisher::emit_batch`]).
#[derive(Debug, Clone, Copy)]
pub struct BatchEvent<'a> {
    pub event: &'a ServerEvent,
    pub meta: &'a EventMeta,
    /// `meta.id` is an idempotency key.
    pub keyed: bool,
}

/// A chat message on its way: its rooms and its positions there.
#[derive(Debug, Clone)]
pub struct ChatPublished {
    pub rooms: Vec<Room>,
    pub appended: Appended,
}
