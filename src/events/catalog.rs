//! The typed catalog: eight events, three entities, and where each event goes.

use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::{Map, Value};

use super::id::Id;
use super::room::Room;

/// Every event the server emits. The wire names below are the only copy in the crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    ServiceCreated,
    ServiceUpdated,
    ServiceStatusChanged,
    BookingCreated,
    BookingStatusChanged,
    BookingCancelled,
    PaymentCompleted,
    PaymentFailed,
}

/// The entity an event is about, and the envelope key that carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntityKind {
    Service,
    Booking,
    Payment,
}

impl EntityKind {
    pub const ALL: [EntityKind; 3] = [EntityKind::Service, EntityKind::Booking, EntityKind::Payment];

    pub fn key(self) -> &'static str {
        match self {
            EntityKind::Service => "service",
            EntityKind::Booking => "booking",
            EntityKind::Payment => "payment",
        }
    }
}

impl EventType {
    pub const ALL: [EventType; 8] = [
        EventType::ServiceCreated,
        EventType::ServiceUpdated,
        EventType::ServiceStatusChanged,
        EventType::BookingCreated,
        EventType::BookingStatusChanged,
        EventType::BookingCancelled,
        EventType::PaymentCompleted,
        EventType::PaymentFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::ServiceCreated => "service:created",
            EventType::ServiceUpdated => "service:updated",
            EventType::ServiceStatusChanged => "service:status_changed",
            EventType::BookingCreated => "booking:created",
            EventType::BookingStatusChanged => "booking:status_changed",
            EventType::BookingCancelled => "booking:cancelled",
            EventType::PaymentCompleted => "payment:completed",
            EventType::PaymentFailed => "payment:failed",
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    pub fn entity(self) -> EntityKind {
        match self {
            EventType::ServiceCreated | EventType::ServiceUpdated | EventType::ServiceStatusChanged => {
                EntityKind::Service
            }
            EventType::BookingCreated | EventType::BookingStatusChanged | EventType::BookingCancelled => {
                EntityKind::Booking
            }
            EventType::PaymentCompleted | EventType::PaymentFailed => EntityKind::Payment,
        }
    }

    /// `*:status_changed` events may say what the status was.
    pub fn has_previous_status(self) -> bool {
        matches!(self, EventType::ServiceStatusChanged | EventType::BookingStatusChanged)
    }

    /// Cancellations and failures may say why.
    pub fn has_reason(self) -> bool {
        matches!(self, EventType::BookingCancelled | EventType::PaymentFailed)
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who caused an event (optional on every event).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Actor {
    pub id: Id,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// A service. Emitted to `vendor:<vendor_id>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub id: Id,
    pub vendor_id: Id,
    /// Any other fields, passed through untouched.
    pub fields: Map<String, Value>,
}

/// A booking. Emitted to `user:<user_id>` and `vendor:<vendor_id>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Booking {
    pub id: Id,
    pub user_id: Id,
    pub vendor_id: Id,
    pub fields: Map<String, Value>,
}

/// A payment. Emitted to `user:<user_id>`, and `vendor:<vendor_id>` when known.
#[derive(Debug, Clone, PartialEq)]
pub struct Payment {
    pub id: Id,
    pub user_id: Id,
    pub vendor_id: Option<Id>,
    pub fields: Map<String, Value>,
}

/// One event with its typed payload. Construct it directly or through the emitter's
/// typed functions; the REST API parses into it with [`super::parse_event`].
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent {
    ServiceCreated { service: Service },
    ServiceUpdated { service: Service },
    ServiceStatusChanged { service: Service, previous_status: Option<String> },
    BookingCreated { booking: Booking },
    BookingStatusChanged { booking: Booking, previous_status: Option<String> },
    BookingCancelled { booking: Booking, reason: Option<String> },
    PaymentCompleted { payment: Payment },
    PaymentFailed { payment: Payment, reason: Option<String> },
}

impl ServerEvent {
    pub fn event_type(&self) -> EventType {
        match self {
            ServerEvent::ServiceCreated { .. } => EventType::ServiceCreated,
            ServerEvent::ServiceUpdated { .. } => EventType::ServiceUpdated,
            ServerEvent::ServiceStatusChanged { .. } => EventType::ServiceStatusChanged,
            ServerEvent::BookingCreated { .. } => EventType::BookingCreated,
            ServerEvent::BookingStatusChanged { .. } => EventType::BookingStatusChanged,
            ServerEvent::BookingCancelled { .. } => EventType::BookingCancelled,
            ServerEvent::PaymentCompleted { .. } => EventType::PaymentCompleted,
            ServerEvent::PaymentFailed { .. } => EventType::PaymentFailed,
        }
    }

    /// The rooms this event is delivered to. A socket in several of them receives it once.
    pub fn rooms(&self) -> Vec<Room> {
        match self {
            ServerEvent::ServiceCreated { service }
            | ServerEvent::ServiceUpdated { service }
            | ServerEvent::ServiceStatusChanged { service, .. } => vec![Room::Vendor(service.vendor_id.clone())],
            ServerEvent::BookingCreated { booking }
            | ServerEvent::BookingStatusChanged { booking, .. }
            | ServerEvent::BookingCancelled { booking, .. } => {
                vec![Room::User(booking.user_id.clone()), Room::Vendor(booking.vendor_id.clone())]
            }
            ServerEvent::PaymentCompleted { payment } | ServerEvent::PaymentFailed { payment, .. } => {
                let mut rooms = vec![Room::User(payment.user_id.clone())];
                if let Some(vendor) = &payment.vendor_id {
                    rooms.push(Room::Vendor(vendor.clone()));
                }
                rooms
            }
        }
    }

    pub(crate) fn previous_status(&self) -> Option<&str> {
        match self {
            ServerEvent::ServiceStatusChanged { previous_status, .. }
            | ServerEvent::BookingStatusChanged { previous_status, .. } => previous_status.as_deref(),
            _ => None,
        }
    }

    pub(crate) fn reason(&self) -> Option<&str> {
        match self {
            ServerEvent::BookingCancelled { reason, .. } | ServerEvent::PaymentFailed { reason, .. } => {
                reason.as_deref()
            }
            _ => None,
        }
    }

    /// The entity as it appears on the wire, under [`EntityKind::key`].
    pub(crate) fn entity(&self) -> EntityRef<'_> {
        match self {
            ServerEvent::ServiceCreated { service }
            | ServerEvent::ServiceUpdated { service }
            | ServerEvent::ServiceStatusChanged { service, .. } => EntityRef::Service(service),
            ServerEvent::BookingCreated { booking }
            | ServerEvent::BookingStatusChanged { booking, .. }
            | ServerEvent::BookingCancelled { booking, .. } => EntityRef::Booking(booking),
            ServerEvent::PaymentCompleted { payment } | ServerEvent::PaymentFailed { payment, .. } => {
                EntityRef::Payment(payment)
            }
        }
    }
}

/// Borrowed view of an event's entity, serialized with its required fields first.
pub(crate) enum EntityRef<'a> {
    Service(&'a Service),
    Booking(&'a Booking),
    Payment(&'a Payment),
}

impl Serialize for EntityRef<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (required, fields): (Vec<(&str, &Id)>, &Map<String, Value>) = match self {
            EntityRef::Service(s) => (vec![("id", &s.id), ("vendorId", &s.vendor_id)], &s.fields),
            EntityRef::Booking(b) => {
                (vec![("id", &b.id), ("userId", &b.user_id), ("vendorId", &b.vendor_id)], &b.fields)
            }
            EntityRef::Payment(p) => {
                let mut req = vec![("id", &p.id), ("userId", &p.user_id)];
                if let Some(v) = &p.vendor_id {
                    req.push(("vendorId", v));
                }
                (req, &p.fields)
            }
        };
        let mut map = serializer.serialize_map(None)?;
        for (k, v) in &required {
            map.serialize_entry(k, v)?;
        }
        // The typed fields win over any same-named key in the pass-through map.
        for (k, v) in fields {
            if !matches!(k.as_str(), "id" | "userId" | "vendorId") {
                map.serialize_entry(k, v)?;
            }
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Id {
        Id::new(s).unwrap()
    }

    #[test]
    fn wire_names_round_trip() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
        assert_eq!(EventType::parse("booking:deleted"), None);
    }

    #[test]
    fn routing_follows_the_contract() {
        let service = Service { id: id("s1"), vendor_id: id("v1"), fields: Map::new() };
        assert_eq!(ServerEvent::ServiceCreated { service }.rooms(), vec![Room::Vendor(id("v1"))]);
        let booking = Booking { id: id("b1"), user_id: id("u1"), vendor_id: id("v1"), fields: Map::new() };
        assert_eq!(
            ServerEvent::BookingCancelled { booking, reason: None }.rooms(),
            vec![Room::User(id("u1")), Room::Vendor(id("v1"))]
        );
        let payment = Payment { id: id("p1"), user_id: id("u1"), vendor_id: None, fields: Map::new() };
        assert_eq!(ServerEvent::PaymentCompleted { payment: payment.clone() }.rooms(), vec![Room::User(id("u1"))]);
        let payment = Payment { vendor_id: Some(id("v2")), ..payment };
        assert_eq!(
            ServerEvent::PaymentFailed { payment, reason: None }.rooms(),
            vec![Room::User(id("u1")), Room::Vendor(id("v2"))]
        );
    }
}
