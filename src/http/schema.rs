//! JSON Schemas of the bodies the REST API parses by hand (`crate::events::parse`,
//! `crate::events::chat`), built from the same constants the parsers use: the catalog's event
//! types, which entity each carries and which extra fields it allows, the id rules.
//! A type or field added to the catalog appears here without a second list.

use serde_json::{Value, json};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

use crate::events::EventType;
use crate::events::catalog::EntityKind;
use crate::events::chat::{MAX_CLIENT_MSG_ID_CHARS, MAX_TEXT_CHARS};
use crate::events::id::MAX_ID_CHARS;
use crate::events::parse::MAX_TEXT_CHARS as MAX_FIELD_CHARS;

/// Most events in one batch (`POST /api/v1/events/batch`): the document says so, and
/// the handler refuses more.
pub const MAX_BATCH: usize = 500;

fn schema(v: Value) -> RefOr<Schema> {
    // The values below are well-formed schemas; a mistake shows in the OpenAPI tests.
    serde_json::from_value(v).unwrap_or_else(|e| {
        RefOr::T(Schema::Object(
            utoipa::openapi::ObjectBuilder::new().description(Some(format!("schema error: {e}"))).build(),
        ))
    })
}

/// An id: 1 to 128 characters without control characters, or an integer.
pub fn id_json() -> Value {
    json!({
        "oneOf": [
            { "type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS, "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]+$" },
            { "type": "integer", "minimum": i64::MIN, "maximum": u64::MAX }
        ]
    })
}

/// An id, or `null` for "not given".
fn optional_id() -> Value {
    json!({ "oneOf": [id_json(), { "type": "null" }] })
}

fn text(max: usize) -> Value {
    json!({ "type": ["string", "null"], "maxLength": max })
}

/// The entity object of `kind`: its ids required, anything else passed through.
fn entity(kind: EntityKind) -> Value {
    let (required, optional): (&[&str], &[&str]) = match kind {
        EntityKind::Service => (&["id", "vendorId"], &[]),
        EntityKind::Booking => (&["id", "userId", "vendorId"], &[]),
        EntityKind::Payment => (&["id", "userId"], &["vendorId"]),
    };
    let mut props = serde_json::Map::new();
    for f in required {
        props.insert((*f).to_owned(), id_json());
    }
    for f in optional {
        props.insert((*f).to_owned(), optional_id());
    }
    json!({ "type": "object", "required": required, "properties": props, "additionalProperties": true })
}

fn envelope(t: EventType) -> Value {
    let key = t.entity().key();
    let mut props = serde_json::Map::new();
    props.insert("type".into(), json!({ "type": "string", "enum": [t.as_str()] }));
    props.insert("id".into(), optional_id());
    props.insert(
        "occurredAt".into(),
        json!({ "type": ["string", "null"], "format": "date-time", "description": "RFC 3339, years 0 to 9999 in UTC; default: now" }),
    );
    props.insert(
        "actor".into(),
        json!({ "oneOf": [{ "type": "null" }, {
            "type": "object", "required": ["id"], "additionalProperties": false,
            "properties": { "id": id_json(), "role": text(MAX_FIELD_CHARS) }
        }] }),
    );
    props.insert(key.into(), entity(t.entity()));
    if t.has_previous_status() {
        props.insert("previousStatus".into(), text(MAX_FIELD_CHARS));
    }
    if t.has_reason() {
        props.insert("reason".into(), text(MAX_FIELD_CHARS));
    }
    json!({ "title": t.as_str(), "type": "object", "required": ["type", key], "properties": props, "additionalProperties": false })
}

/// One event as a controller posts it.
pub struct EventBody;

impl PartialSchema for EventBody {
    fn schema() -> RefOr<Schema> {
        let variants: Vec<Value> = EventType::ALL.iter().map(|t| envelope(*t)).collect();
        schema(json!({ "oneOf": variants }))
    }
}

impl ToSchema for EventBody {}

/// `{ "events": [...] }`.
pub struct BatchBody;

impl PartialSchema for BatchBody {
    fn schema() -> RefOr<Schema> {
        let variants: Vec<Value> = EventType::ALL.iter().map(|t| envelope(*t)).collect();
        schema(json!({
            "type": "object", "required": ["events"], "additionalProperties": false,
            "properties": { "events": { "type": "array", "minItems": 1, "maxItems": MAX_BATCH, "items": { "oneOf": variants } } }
        }))
    }
}

impl ToSchema for BatchBody {}

fn party(kind: &str) -> Value {
    json!({ "type": "object", "required": ["type", "id"], "properties": { "type": { "type": "string", "enum": [kind] }, "id": id_json() } })
}

fn chat_fields() -> serde_json::Map<String, Value> {
    let mut props = serde_json::Map::new();
    props.insert("text".into(), json!({ "type": "string", "minLength": 1, "maxLength": MAX_TEXT_CHARS }));
    props.insert(
        "clientMsgId".into(),
        json!({ "oneOf": [
            { "type": "string", "minLength": 1, "maxLength": MAX_CLIENT_MSG_ID_CHARS },
            { "type": "integer", "minimum": i64::MIN, "maximum": u64::MAX },
            { "type": "null" }
        ] }),
    );
    props
}

/// `POST /api/v1/chat/messages`: users write to vendors, vendors to users.
pub struct ChatBody;

impl PartialSchema for ChatBody {
    fn schema() -> RefOr<Schema> {
        let pair = |from: &str, to: &str| {
            let mut props = chat_fields();
            props.insert("from".into(), party(from));
            props.insert("to".into(), party(to));
            json!({ "type": "object", "required": ["from", "to", "text"], "properties": props })
        };
        schema(json!({ "oneOf": [pair("user", "vendor"), pair("vendor", "user")] }))
    }
}

impl ToSchema for ChatBody {}

/// A chat message as stamped by the server.
pub struct ChatMessageSchema;

impl PartialSchema for ChatMessageSchema {
    fn schema() -> RefOr<Schema> {
        let party = json!({ "type": "object", "required": ["type", "id"],
            "properties": { "type": { "type": "string", "enum": ["user", "vendor"] }, "id": { "type": "string" } } });
        schema(json!({
            "type": "object", "required": ["id", "from", "to", "text", "sentAt", "clientMsgId"],
            "properties": {
                "id": { "type": "string" }, "from": party, "to": party, "text": { "type": "string" },
                "sentAt": { "type": "string", "format": "date-time" },
                "clientMsgId": { "type": ["string", "null"] }
            }
        }))
    }
}

impl ToSchema for ChatMessageSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        "ChatMessage".into()
    }
}
