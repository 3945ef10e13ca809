//! Live chat between users and vendors, parsed at the boundary: a draft and its parties
//! from untrusted JSON, who may write to whom, and the message the server stamps. Shared
//! by the socket event `chat:send` and the REST endpoint. (Which party a connected client
//! speaks as is [`crate::auth::Identity::chat_party`].)

use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::envelope::new_event_id;
use super::id::{self, Id};
use super::room::{Room, RoomKind};
use super::wire::AckCode;

/// Longest message text, in Unicode scalar values (not bytes).
pub const MAX_TEXT_CHARS: usize = 4000;
/// Longest `clientMsgId`, in characters.
pub const MAX_CLIENT_MSG_ID_CHARS: usize = 128;

/// One side of a conversation: `{ "type": "user" | "vendor", "id" }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    pub kind: RoomKind,
    pub id: Id,
}

impl Party {
    pub fn room(&self) -> Room {
        Room::new(self.kind, self.id.clone())
    }
}

impl Serialize for Party {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("type", self.kind.as_str())?;
        map.serialize_entry("id", &self.id)?;
        map.end()
    }
}

/// A stamped chat message, as delivered in `chat:message` and returned in the ack.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    pub id: Id,
    pub from: Party,
    pub to: Party,
    pub text: String,
    pub sent_at: OffsetDateTime,
    pub client_msg_id: Option<String>,
}

impl Serialize for ChatMessage {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let sent_at = self.sent_at.format(&Rfc3339).map_err(serde::ser::Error::custom)?;
        let mut map = s.serialize_map(Some(6))?;
        map.serialize_entry("id", &self.id)?;
        map.serialize_entry("from", &self.from)?;
        map.serialize_entry("to", &self.to)?;
        map.serialize_entry("text", &self.text)?;
        map.serialize_entry("sentAt", &sent_at)?;
        map.serialize_entry("clientMsgId", &self.client_msg_id)?;
        map.end()
    }
}

impl ChatMessage {
    /// The rooms a message goes to: the recipient's, and the sender's own (its other devices).
    pub fn rooms(&self) -> Vec<Room> {
        vec![self.to.room(), self.from.room()]
    }
}

/// Why a chat message is refused. `code` is the stable error code on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("{0}")]
    Forbidden(String),
}

impl ChatError {
    pub fn code(&self) -> &'static str {
        self.ack_code().as_str()
    }

    pub fn ack_code(&self) -> AckCode {
        match self {
            ChatError::Invalid { .. } => AckCode::InvalidPayload,
            ChatError::Forbidden(_) => AckCode::Forbidden,
        }
    }

    fn invalid(field: &'static str, message: impl Into<String>) -> ChatError {
        ChatError::Invalid { field, message: message.into() }
    }
}

/// What a client (or controller) asks to send, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    pub to: Party,
    pub text: String,
    pub client_msg_id: Option<String>,
}

/// Reads `{ "to": { "type", "id" }, "text", "clientMsgId"? }`. Other keys are ignored,
/// and in particular a `from` in the payload: the sender comes from the token.
pub fn parse_draft(v: &Value) -> Result<Draft, ChatError> {
    let obj = v.as_object().ok_or_else(|| ChatError::invalid("payload", "must be an object { to, text }"))?;
    let to = parse_party(obj.get("to"), "to")?;
    let text = match obj.get("text") {
        Some(Value::String(t)) => t,
        None | Some(Value::Null) => return Err(ChatError::invalid("text", "is required")),
        Some(_) => return Err(ChatError::invalid("text", "must be a string")),
    };
    let chars = text.chars().count();
    if chars == 0 || chars > MAX_TEXT_CHARS {
        return Err(ChatError::invalid("text", format!("must be 1 to {MAX_TEXT_CHARS} characters, got {chars}")));
    }
    let client_msg_id = match obj.get("clientMsgId") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= MAX_CLIENT_MSG_ID_CHARS => Some(s.clone()),
        // A number is read as an id is: an integer (or an exactly integral double).
        Some(v @ Value::Number(_)) if id::from_json(v).is_ok() => id::from_json(v).ok().map(|i| i.as_str().to_owned()),
        Some(_) => {
            return Err(ChatError::invalid(
                "clientMsgId",
                format!("must be a string of 1 to {MAX_CLIENT_MSG_ID_CHARS} characters"),
            ));
        }
    };
    Ok(Draft { to, text: text.clone(), client_msg_id })
}

/// Reads `{ "type": "user" | "vendor", "id" }`.
pub fn parse_party(v: Option<&Value>, field: &'static str) -> Result<Party, ChatError> {
    let obj = match v {
        Some(Value::Object(o)) => o,
        None | Some(Value::Null) => return Err(ChatError::invalid(field, "is required")),
        Some(_) => return Err(ChatError::invalid(field, "must be an object { type, id }")),
    };
    let kind = obj
        .get("type")
        .and_then(Value::as_str)
        .and_then(RoomKind::parse)
        .ok_or_else(|| ChatError::invalid(field, "type must be \"user\" or \"vendor\""))?;
    let id = obj.get("id").ok_or_else(|| ChatError::invalid(field, "id is required"))?;
    let id = id::from_json(id).map_err(|e| ChatError::invalid(field, format!("id {e}")))?;
    Ok(Party { kind, id })
}

/// Users write to vendors, vendors to users.
pub fn check_pair(from: &Party, to: &Party) -> Result<(), ChatError> {
    if from.kind == to.kind {
        let kind = from.kind.as_str();
        return Err(ChatError::Forbidden(format!("a {kind} cannot write to another {kind}")));
    }
    Ok(())
}

/// Stamps a message from `from`, after [`check_pair`].
pub fn compose(from: Party, draft: Draft) -> Result<ChatMessage, ChatError> {
    check_pair(&from, &draft.to)?;
    Ok(ChatMessage {
        id: new_event_id(),
        from,
        to: draft.to,
        text: draft.text,
        sent_at: OffsetDateTime::now_utc(),
        client_msg_id: draft.client_msg_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn party(kind: RoomKind, id: &str) -> Party {
        Party { kind, id: Id::new(id).unwrap() }
    }

    #[test]
    fn users_write_to_vendors_and_vendors_to_users_only() {
        let draft = |to| Draft { to, text: "hi".into(), client_msg_id: None };
        let user = party(RoomKind::User, "u1");
        let vendor = party(RoomKind::Vendor, "v1");
        assert!(compose(user.clone(), draft(vendor.clone())).is_ok());
        assert!(compose(vendor.clone(), draft(user.clone())).is_ok());
        assert_eq!(compose(user.clone(), draft(party(RoomKind::User, "u2"))).unwrap_err().code(), "forbidden");
        assert_eq!(compose(vendor, draft(party(RoomKind::Vendor, "v2"))).unwrap_err().code(), "forbidden");
    }

    #[test]
    fn text_length_counts_characters_not_bytes() {
        let to = json!({ "type": "vendor", "id": "v1" });
        assert!(parse_draft(&json!({ "to": to, "text": "é".repeat(4000) })).is_ok());
        assert!(parse_draft(&json!({ "to": to, "text": "a".repeat(4001) })).is_err());
        assert!(parse_draft(&json!({ "to": to, "text": "" })).is_err());
        assert!(parse_draft(&json!({ "to": to, "text": 5 })).is_err());
    }

    #[test]
    fn malformed_drafts_name_the_field() {
        let field = |v: Value| match parse_draft(&v) {
            Err(ChatError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(json!("hello")), "payload");
        assert_eq!(field(json!({ "text": "hi" })), "to");
        assert_eq!(field(json!({ "to": { "type": "admin", "id": "x" }, "text": "hi" })), "to");
        assert_eq!(field(json!({ "to": { "type": "user" }, "text": "hi" })), "to");
        assert_eq!(field(json!({ "to": { "type": "user", "id": "u" } })), "text");
        assert_eq!(
            field(json!({ "to": { "type": "user", "id": "u" }, "text": "x", "clientMsgId": {} })),
            "clientMsgId"
        );
    }

    #[test]
    fn the_message_serializes_with_the_contract_fields() {
        let msg = compose(
            party(RoomKind::User, "u1"),
            Draft { to: party(RoomKind::Vendor, "v1"), text: "hi".into(), client_msg_id: Some("c1".into()) },
        )
        .unwrap();
        let v = serde_json::to_value(&msg).unwrap();
        assert_eq!(v["from"], json!({ "type": "user", "id": "u1" }));
        assert_eq!(v["to"], json!({ "type": "vendor", "id": "v1" }));
        assert_eq!(v["clientMsgId"], "c1");
        assert!(v["sentAt"].is_string() && v["id"].is_string());
    }
}
