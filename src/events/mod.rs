//! The event catalog: every event the server emits, the rooms each one goes to,
//! the envelope on the wire, and every other wire name and ack code ([`wire`]). Wire names
//! live here and nowhere else.

pub mod catalog;
pub mod chat;
pub mod envelope;
pub mod id;
pub mod parse;
pub mod room;
pub mod wire;

pub use catalog::{Actor, Booking, EventType, Payment, ServerEvent, Service};
pub use envelope::{Envelope, EventMeta};
pub use id::Id;
pub use parse::{ParseError, parse_event};
pub use room::Room;
