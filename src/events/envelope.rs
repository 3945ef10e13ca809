//! The envelope: the one argument every emitted event carries.

use serde::Serialize;
use serde::ser::SerializeMap;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::catalog::{Actor, ServerEvent};
use super::id::Id;

/// What an event carries besides its payload.
#[derive(Debug, Clone, PartialEq)]
pub struct EventMeta {
    /// Unique event id; also the idempotency key when the caller chose it.
    pub id: Id,
    pub occurred_at: OffsetDateTime,
    pub actor: Option<Actor>,
}

impl EventMeta {
    /// A fresh id (UUID v7: sortable by time) and the current time.
    pub fn now(actor: Option<Actor>) -> EventMeta {
        EventMeta { id: new_event_id(), occurred_at: OffsetDateTime::now_utc(), actor }
    }
}

pub fn new_event_id() -> Id {
    // Encoded into a buffer of its own, not through `Display` (once per event and message).
    let mut buffer = uuid::Uuid::encode_buffer();
    let text = uuid::Uuid::now_v7().hyphenated().encode_lower(&mut buffer);
    // A UUID is 36 ASCII characters: always a valid id.
    Id::new(&*text).unwrap_or_else(|_| unreachable!("uuid is a valid id"))
}

/// `{ id, type, occurredAt, actor?, <service|booking|payment>, previousStatus?, reason? }`
pub struct Envelope<'a> {
    pub meta: &'a EventMeta,
    pub event: &'a ServerEvent,
}

impl Serialize for Envelope<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let event_type = self.event.event_type();
        let occurred_at = self.meta.occurred_at.format(&Rfc3339).map_err(serde::ser::Error::custom)?;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("id", &self.meta.id)?;
        map.serialize_entry("type", event_type.as_str())?;
        map.serialize_entry("occurredAt", &occurred_at)?;
        if let Some(actor) = &self.meta.actor {
            map.serialize_entry("actor", actor)?;
        }
        map.serialize_entry(event_type.entity().key(), &self.event.entity())?;
        if let Some(previous) = self.event.previous_status() {
            map.serialize_entry("previousStatus", previous)?;
        }
        if let Some(reason) = self.event.reason() {
            map.serialize_entry("reason", reason)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Booking;
    use serde_json::{Map, json};

    #[test]
    fn envelope_matches_the_contract_example() {
        let id = |s: &str| Id::new(s).unwrap();
        let mut fields = Map::new();
        fields.insert("status".into(), json!("confirmed"));
        let event = ServerEvent::BookingStatusChanged {
            booking: Booking { id: id("b1"), user_id: id("u1"), vendor_id: id("v1"), fields },
            previous_status: Some("pending".into()),
        };
        let meta = EventMeta {
            id: id("e1"),
            occurred_at: time::macros::datetime!(2026-11-25 10:00 UTC),
            actor: Some(Actor { id: id("u1"), role: Some("vendor".into()) }),
        };
        let v = serde_json::to_value(Envelope { meta: &meta, event: &event }).unwrap();
        assert_eq!(
            v,
            json!({ "id": "e1", "type": "booking:status_changed", "occurredAt": "2026-11-25T10:00:00Z",
                    "actor": { "id": "u1", "role": "vendor" },
                    "booking": { "id": "b1", "userId": "u1", "vendorId": "v1", "status": "confirmed" },
                    "previousStatus": "pending" })
        );
    }
}
