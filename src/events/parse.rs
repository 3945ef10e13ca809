//! Untrusted JSON (a REST body) to a typed event. Every error names the field.

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::catalog::{Actor, Booking, EntityKind, EventType, Payment, ServerEvent, Service};
use super::id::{self, Id};

/// Longest `previousStatus`, `reason` or `actor.role`, in characters.
pub const MAX_TEXT_CHARS: usize = 1000;

/// Why a body is not a valid event: the offending field (a JSON path such as
/// `booking.userId`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ParseError {
    pub field: String,
    pub message: String,
}

impl ParseError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> ParseError {
        ParseError { field: field.into(), message: message.into() }
    }

    /// Prefixes the field path, e.g. `events[3]` + `booking.id`.
    pub fn within(self, prefix: &str) -> ParseError {
        let field = if self.field.is_empty() { prefix.to_owned() } else { format!("{prefix}.{}", self.field) };
        ParseError { field, ..self }
    }
}

/// What the caller may choose besides the payload: all optional.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedMeta {
    pub id: Option<Id>,
    pub occurred_at: Option<OffsetDateTime>,
    pub actor: Option<Actor>,
}

/// Parses one event envelope as a controller sends it. The first problem found is the
/// one reported, in this order: `type`, unknown keys, `id`, `occurredAt`, `actor`, the
/// entity's presence, `previousStatus`, `reason`, then the entity's fields.
pub fn parse_event(body: &Value) -> Result<(ServerEvent, ParsedMeta), ParseError> {
    let obj = body.as_object().ok_or_else(|| ParseError::new("", "an event must be a JSON object"))?;
    let event_type = parse_type(obj)?;
    check_keys(obj, event_type)?;

    let id =
        optional(obj, "id").map(|v| id::from_json(v).map_err(|e| ParseError::new("id", e.to_string()))).transpose()?;
    let occurred_at = optional(obj, "occurredAt").map(parse_time).transpose()?;
    let actor = optional(obj, "actor").map(parse_actor).transpose()?;

    let key = event_type.entity().key();
    let entity = match obj.get(key) {
        None | Some(Value::Null) => return Err(ParseError::new(key, "is required")),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(ParseError::new(key, "must be an object")),
    };
    let previous_status = optional_text(obj, "previousStatus")?;
    let reason = optional_text(obj, "reason")?;
    let event = parse_entity(event_type, entity, previous_status, reason)?;
    Ok((event, ParsedMeta { id, occurred_at, actor }))
}

/// `type`: required, and one of the catalog's.
fn parse_type(obj: &Map<String, Value>) -> Result<EventType, ParseError> {
    match obj.get("type") {
        None | Some(Value::Null) => Err(ParseError::new("type", "is required")),
        Some(Value::String(s)) => EventType::parse(s).ok_or_else(|| {
            let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
            ParseError::new(
                "type",
                format!("unknown event type `{}`; expected one of {}", truncate(s), known.join(", ")),
            )
        }),
        Some(_) => Err(ParseError::new("type", "must be a string")),
    }
}

/// Every key of the envelope is one this event type carries.
fn check_keys(obj: &Map<String, Value>, event_type: EventType) -> Result<(), ParseError> {
    for key in obj.keys() {
        let allowed = match key.as_str() {
            "type" | "id" | "occurredAt" | "actor" => true,
            "previousStatus" => event_type.has_previous_status(),
            "reason" => event_type.has_reason(),
            k => k == event_type.entity().key(),
        };
        if !allowed {
            let why = if EntityKind::ALL.iter().any(|e| e.key() == key) {
                format!("not allowed for `{event_type}` (it carries `{}`)", event_type.entity().key())
            } else {
                format!("unknown field for `{event_type}`")
            };
            let field = if key.is_empty() { "(empty key)".to_owned() } else { truncate(key) };
            return Err(ParseError::new(field, why));
        }
    }
    Ok(())
}

/// The typed event from its entity object (ids checked, other fields carried as sent).
fn parse_entity(
    event_type: EventType,
    entity: &Map<String, Value>,
    previous_status: Option<String>,
    reason: Option<String>,
) -> Result<ServerEvent, ParseError> {
    let key = event_type.entity().key();
    let req = |field: &str| -> Result<Id, ParseError> {
        match entity.get(field) {
            None | Some(Value::Null) => Err(ParseError::new(format!("{key}.{field}"), "is required")),
            Some(v) => id::from_json(v).map_err(|e| ParseError::new(format!("{key}.{field}"), e.to_string())),
        }
    };
    let opt = |field: &str| -> Result<Option<Id>, ParseError> {
        match entity.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(_) => req(field).map(Some),
        }
    };
    let fields = || -> Map<String, Value> {
        entity
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "id" | "userId" | "vendorId"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };

    Ok(match event_type.entity() {
        EntityKind::Service => {
            let service = Service { id: req("id")?, vendor_id: req("vendorId")?, fields: fields() };
            match event_type {
                EventType::ServiceCreated => ServerEvent::ServiceCreated { service },
                EventType::ServiceUpdated => ServerEvent::ServiceUpdated { service },
                _ => ServerEvent::ServiceStatusChanged { service, previous_status },
            }
        }
        EntityKind::Booking => {
            let booking =
                Booking { id: req("id")?, user_id: req("userId")?, vendor_id: req("vendorId")?, fields: fields() };
            match event_type {
                EventType::BookingCreated => ServerEvent::BookingCreated { booking },
                EventType::BookingStatusChanged => ServerEvent::BookingStatusChanged { booking, previous_status },
                _ => ServerEvent::BookingCancelled { booking, reason },
            }
        }
        EntityKind::Payment => {
            let payment =
                Payment { id: req("id")?, user_id: req("userId")?, vendor_id: opt("vendorId")?, fields: fields() };
            match event_type {
                EventType::PaymentCompleted => ServerEvent::PaymentCompleted { payment },
                _ => ServerEvent::PaymentFailed { payment, reason },
            }
        }
    })
}

fn optional<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn optional_text(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, ParseError> {
    match optional(obj, key) {
        None => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= MAX_TEXT_CHARS => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(ParseError::new(key, format!("must be at most {MAX_TEXT_CHARS} characters"))),
        Some(_) => Err(ParseError::new(key, "must be a string")),
    }
}

fn parse_time(v: &Value) -> Result<OffsetDateTime, ParseError> {
    // In UTC the date must stay within years 0..=9999, or it could not be written back
    // as RFC 3339 (found by fuzzing: 9999-12-31T23:59:59-01:00 overflowed).
    v.as_str()
        .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
        .and_then(|t| t.checked_to_offset(time::UtcOffset::UTC))
        .filter(|t| (0..=9999).contains(&t.year()))
        .ok_or_else(|| ParseError::new("occurredAt", "must be an RFC 3339 date-time such as 2026-11-25T10:00:00Z"))
}

fn parse_actor(v: &Value) -> Result<Actor, ParseError> {
    let obj = v.as_object().ok_or_else(|| ParseError::new("actor", "must be an object with `id` and `role`"))?;
    if let Some(k) = obj.keys().find(|k| !matches!(k.as_str(), "id" | "role")) {
        return Err(ParseError::new(format!("actor.{}", truncate(k)), "unknown field (actor has `id` and `role`)"));
    }
    let id = match obj.get("id") {
        None | Some(Value::Null) => return Err(ParseError::new("actor.id", "is required")),
        Some(v) => id::from_json(v).map_err(|e| ParseError::new("actor.id", e.to_string()))?,
    };
    let role = optional_text(obj, "role").map_err(|e| e.within("actor"))?;
    Ok(Actor { id, role })
}

/// Keeps echoed client text short in error messages.
fn truncate(s: &str) -> String {
    const MAX: usize = 64;
    if s.chars().count() <= MAX { s.to_owned() } else { format!("{}…", s.chars().take(MAX).collect::<String>()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field_of(v: Value) -> String {
        parse_event(&v).unwrap_err().field
    }

    #[test]
    fn every_event_type_parses_with_its_required_fields() {
        let bodies = [
            json!({"type": "service:created", "service": {"id": "s", "vendorId": "v"}}),
            json!({"type": "service:updated", "service": {"id": "s", "vendorId": "v"}}),
            json!({"type": "service:status_changed", "service": {"id": "s", "vendorId": "v"}, "previousStatus": "draft"}),
            json!({"type": "booking:created", "booking": {"id": "b", "userId": "u", "vendorId": "v"}}),
            json!({"type": "booking:status_changed", "booking": {"id": "b", "userId": "u", "vendorId": "v"}}),
            json!({"type": "booking:cancelled", "booking": {"id": "b", "userId": "u", "vendorId": "v"}, "reason": "x"}),
            json!({"type": "payment:completed", "payment": {"id": "p", "userId": "u"}}),
            json!({"type": "payment:failed", "payment": {"id": "p", "userId": 5, "vendorId": "v"}, "reason": "card"}),
        ];
        for (body, t) in bodies.iter().zip(EventType::ALL) {
            let (event, _) = parse_event(body).unwrap_or_else(|e| panic!("{body}: {e}"));
            assert_eq!(event.event_type(), t);
        }
    }

    #[test]
    fn missing_or_wrong_fields_are_named() {
        assert_eq!(field_of(json!([])), "");
        assert_eq!(field_of(json!({})), "type");
        assert_eq!(field_of(json!({"type": 3})), "type");
        assert_eq!(field_of(json!({"type": "booking:deleted"})), "type");
        assert_eq!(field_of(json!({"type": "booking:created"})), "booking");
        assert_eq!(field_of(json!({"type": "booking:created", "booking": "b1"})), "booking");
        assert_eq!(
            field_of(json!({"type": "booking:created", "booking": {"id": "b", "vendorId": "v"}})),
            "booking.userId"
        );
        assert_eq!(
            field_of(json!({"type": "service:created", "service": {"id": "s", "vendorId": true}})),
            "service.vendorId"
        );
        assert_eq!(
            field_of(json!({"type": "payment:completed", "payment": {"id": "p", "userId": "u", "vendorId": []}})),
            "payment.vendorId"
        );
        assert_eq!(
            field_of(json!({"type": "service:created", "booking": {}, "service": {"id": "s", "vendorId": "v"}})),
            "booking"
        );
        assert_eq!(
            field_of(json!({"type": "booking:created", "booking": {}, "previousStatus": "x"})),
            "previousStatus"
        );
        assert_eq!(field_of(json!({"type": "payment:completed", "payment": {}, "extra": 1})), "extra");
        let ok = json!({"id": "p", "userId": "u"});
        assert_eq!(
            field_of(json!({"type": "payment:completed", "payment": ok, "occurredAt": "yesterday"})),
            "occurredAt"
        );
        assert_eq!(field_of(json!({"type": "payment:completed", "payment": ok, "actor": {"role": "x"}})), "actor.id");
        assert_eq!(field_of(json!({"type": "payment:completed", "payment": ok, "id": ""})), "id");
        assert_eq!(field_of(json!({"type": "payment:failed", "payment": ok, "reason": 7})), "reason");
        // Dates whose UTC form cannot be written as RFC 3339 (fuzz findings).
        for at in ["9999-12-31T23:59:59-01:00", "0000-01-01T00:00:00+00:01"] {
            assert_eq!(field_of(json!({"type": "payment:completed", "payment": ok, "occurredAt": at})), "occurredAt");
        }
        assert_eq!(field_of(json!({"type": "payment:completed", "payment": ok, "": 1})), "(empty key)");
    }

    #[test]
    fn optional_meta_is_read_and_other_entity_fields_pass_through() {
        let (event, meta) = parse_event(&json!({
            "type": "booking:created", "id": "evt-1", "occurredAt": "2026-11-25T11:00:00+01:00",
            "actor": {"id": 9, "role": "user"},
            "booking": {"id": "b", "userId": "u", "vendorId": "v", "price": {"amount": 10}}
        }))
        .unwrap();
        assert_eq!(meta.id.unwrap().as_str(), "evt-1");
        assert_eq!(meta.occurred_at.unwrap(), time::macros::datetime!(2026-11-25 10:00 UTC));
        assert_eq!(meta.actor.unwrap().id.as_str(), "9");
        let ServerEvent::BookingCreated { booking } = event else { panic!("wrong variant") };
        assert_eq!(booking.fields["price"], json!({"amount": 10}));
    }
}
