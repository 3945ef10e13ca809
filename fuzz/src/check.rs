//! Invariants: what must hold of every parser's answer, beyond "it did not panic".

use fixrx_realtime::events::chat::{self, ChatError, Party};
use fixrx_realtime::events::room::{Room, RoomKind};
use fixrx_realtime::events::{Envelope, EventMeta, EventType, Id, ServerEvent, id, parse_event};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// 1 to 128 characters, none of them a control character.
pub fn assert_valid_id(what: &str, id: &Id) {
    let s = id.as_str();
    let n = s.chars().count();
    assert!((1..=128).contains(&n), "{what}: id of {n} characters accepted: {s:?}");
    assert!(!s.chars().any(char::is_control), "{what}: id with a control character accepted: {s:?}");
}

/// What a JSON value in an id position must give: its string, or an integer's decimal form.
pub fn expected_id(v: &Value) -> Option<String> {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        // An exactly integral double (|n| <= 2^53) is that integer, as JSON Schema reads it.
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0 => format!("{}", f as i64),
            _ => return None,
        },
        _ => return None,
    };
    let n = s.chars().count();
    ((1..=128).contains(&n) && !s.chars().any(char::is_control)).then_some(s)
}

/// `id::from_json` agrees with the definition of an id.
pub fn check_id_json(v: &Value) {
    match (id::from_json(v), expected_id(v)) {
        (Ok(id), Some(s)) => {
            assert_valid_id("from_json", &id);
            assert_eq!(id.as_str(), s);
        }
        (Err(_), None) => {}
        (got, want) => panic!("from_json({v}) = {got:?}, expected {want:?}"),
    }
}

/// `Room::from_parts` accepts exactly `user|vendor` with a valid id, and names the room `kind:id`.
pub fn check_room(kind: &str, id_str: &str) {
    let kind_ok = matches!(kind, "user" | "vendor");
    let id_ok = expected_id(&Value::String(id_str.to_owned())).is_some();
    match Room::from_parts(kind, id_str) {
        Ok(room) => {
            assert!(kind_ok && id_ok, "from_parts({kind:?}, {id_str:?}) accepted");
            assert_valid_id("room", room.id());
            assert_eq!(room.kind().as_str(), kind);
            assert_eq!(room.id().as_str(), id_str);
            assert_eq!(room.name(), format!("{kind}:{id_str}"));
            assert_eq!(room.identity_room(), format!("auth:{kind}:{id_str}"));
            assert_eq!(Room::new(RoomKind::parse(kind).unwrap(), room.id().clone()), room);
        }
        Err(e) => {
            assert!(!(kind_ok && id_ok), "from_parts({kind:?}, {id_str:?}) refused: {e}");
            assert!(e.to_string().len() < 100, "room error echoes input: {e}");
        }
    }
}

/// Error messages name the field and stay short: client text is never echoed in full.
fn check_parse_error(e: &fixrx_realtime::events::ParseError) {
    let shown = e.to_string();
    assert!(shown.chars().count() <= 400, "error message of {} chars: {shown:?}", shown.chars().count());
    assert!(!e.message.is_empty());
}

/// One REST event body through `parse_event`, with every invariant of an accepted event,
/// and the envelope round trip: what the API accepts, the emitter can serialize, and a
/// client reading the envelope finds the same event.
pub fn check_event(body: &Value) {
    let (event, meta) = match parse_event(body) {
        Ok(parsed) => parsed,
        Err(e) => {
            check_parse_error(&e);
            if !body.is_object() {
                assert_eq!(e.field, "", "a non-object body is refused as a whole");
            }
            return;
        }
    };
    let obj = body.as_object().expect("an accepted event is an object");
    let event_type = event.event_type();
    assert_eq!(Some(event_type), obj.get("type").and_then(Value::as_str).and_then(EventType::parse));

    // Rooms: non-empty, valid ids, and exactly the ones the entity names.
    let rooms = event.rooms();
    assert!(!rooms.is_empty() && rooms.len() <= 2, "rooms {rooms:?}");
    for room in &rooms {
        assert_valid_id("room", room.id());
        assert!(room.name().starts_with("user:") || room.name().starts_with("vendor:"));
    }
    let key = event_type.entity().key();
    let entity = obj.get(key).and_then(Value::as_object).expect("the entity is an object");
    let want = |field: &str| entity.get(field).and_then(expected_id);
    let (ids, fields): (Vec<(&str, &Id)>, &Map<String, Value>) = match &event {
        ServerEvent::ServiceCreated { service }
        | ServerEvent::ServiceUpdated { service }
        | ServerEvent::ServiceStatusChanged { service, .. } => {
            assert_eq!(rooms, vec![Room::Vendor(service.vendor_id.clone())]);
            (vec![("id", &service.id), ("vendorId", &service.vendor_id)], &service.fields)
        }
        ServerEvent::BookingCreated { booking }
        | ServerEvent::BookingStatusChanged { booking, .. }
        | ServerEvent::BookingCancelled { booking, .. } => {
            assert_eq!(rooms, vec![Room::User(booking.user_id.clone()), Room::Vendor(booking.vendor_id.clone())]);
            (vec![("id", &booking.id), ("userId", &booking.user_id), ("vendorId", &booking.vendor_id)], &booking.fields)
        }
        ServerEvent::PaymentCompleted { payment } | ServerEvent::PaymentFailed { payment, .. } => {
            let mut ids = vec![("id", &payment.id), ("userId", &payment.user_id)];
            match &payment.vendor_id {
                Some(v) => {
                    ids.push(("vendorId", v));
                    assert_eq!(rooms, vec![Room::User(payment.user_id.clone()), Room::Vendor(v.clone())]);
                }
                None => {
                    assert!(entity.get("vendorId").is_none_or(Value::is_null));
                    assert_eq!(rooms, vec![Room::User(payment.user_id.clone())]);
                }
            }
            (ids, &payment.fields)
        }
    };
    for (field, id) in ids {
        assert_valid_id(field, id);
        assert_eq!(Some(id.as_str().to_owned()), want(field), "{key}.{field}");
    }
    // Every other entity field passes through untouched, and only those.
    let others: Map<String, Value> = entity
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "id" | "userId" | "vendorId"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(fields, &others);

    for (name, text) in [("previousStatus", previous_status(&event)), ("reason", reason(&event))] {
        if let Some(t) = text {
            assert!(t.chars().count() <= 1000, "{name} of {} chars", t.chars().count());
            assert_eq!(obj.get(name).and_then(Value::as_str), Some(t));
        }
    }
    if let Some(id) = &meta.id {
        assert_valid_id("id", id);
    }
    if let Some(actor) = &meta.actor {
        assert_valid_id("actor.id", &actor.id);
        if let Some(role) = &actor.role {
            assert!(role.chars().count() <= 1000);
        }
    }
    if let Some(t) = meta.occurred_at {
        assert!(t.offset().is_utc(), "occurredAt kept its offset: {t}");
    }

    // The envelope the emitter sends: it must serialize, and read back as the same event.
    let meta = EventMeta {
        id: meta.id.clone().unwrap_or_else(|| Id::new("fuzz-event").unwrap()),
        occurred_at: meta.occurred_at.unwrap_or(time::macros::datetime!(2026-11-25 10:00 UTC)),
        actor: meta.actor.clone(),
    };
    let envelope = match serde_json::to_value(Envelope { meta: &meta, event: &event }) {
        Ok(v) => v,
        Err(e) => panic!("parse_event accepted an event whose envelope cannot be serialized: {e}\nbody: {body}"),
    };
    let (again, again_meta) = parse_event(&envelope)
        .unwrap_or_else(|e| panic!("the envelope does not parse back: {e}\nenvelope: {envelope}"));
    assert_eq!(again, event, "envelope round trip changed the event");
    assert_eq!(again_meta.id.as_ref(), Some(&meta.id));
    assert_eq!(again_meta.occurred_at, Some(meta.occurred_at));
    assert_eq!(again_meta.actor, meta.actor);

    // The same through JSON text, as a client receives it.
    let text = serde_json::to_string(&envelope).expect("a Value serializes");
    let wire: Value = serde_json::from_str(&text).expect("our own JSON parses");
    let (wired, wired_meta) = parse_event(&wire).unwrap_or_else(|e| panic!("wire envelope does not parse: {e}"));
    assert_eq!(wired.event_type(), event_type);
    assert_eq!(wired.rooms(), rooms);
    assert_eq!(wired_meta.id.as_ref(), Some(&meta.id));
    assert_eq!(wired_meta.occurred_at, Some(meta.occurred_at));
    let sent_at = wire["occurredAt"].as_str().expect("occurredAt is a string");
    assert!(OffsetDateTime::parse(sent_at, &Rfc3339).is_ok());
}

fn previous_status(e: &ServerEvent) -> Option<&str> {
    match e {
        ServerEvent::ServiceStatusChanged { previous_status, .. }
        | ServerEvent::BookingStatusChanged { previous_status, .. } => previous_status.as_deref(),
        _ => None,
    }
}

fn reason(e: &ServerEvent) -> Option<&str> {
    match e {
        ServerEvent::BookingCancelled { reason, .. } | ServerEvent::PaymentFailed { reason, .. } => reason.as_deref(),
        _ => None,
    }
}

/// A REST body: the single-event route parses it whole; the batch route reads
/// `{ "events": [...] }` and parses each item, naming the item in errors.
pub fn check_rest_body(body: &Value) {
    check_event(body);
    if let Some(Value::Array(items)) = body.get("events") {
        for (i, item) in items.iter().enumerate().take(16) {
            check_event(item);
            if let Err(e) = parse_event(item) {
                let prefix = format!("events[{i}]");
                let within = e.clone().within(&prefix);
                assert!(within.field == prefix || within.field == format!("{prefix}.{}", e.field), "{within:?}");
            }
        }
    }
}

/// A chat payload, as `chat:send` (sender from the token), `chat:typing` (only `to`)
/// and `POST /api/v1/chat/messages` (sender from `from`) read it.
pub fn check_chat(payload: &Value, token_sender: Party) {
    let to = chat::parse_party(payload.get("to"), "to");
    check_party(payload.get("to"), &to);
    let from = chat::parse_party(payload.get("from"), "from");
    check_party(payload.get("from"), &from);

    let draft = match chat::parse_draft(payload) {
        Ok(d) => d,
        Err(e) => {
            check_chat_error(&e);
            assert_eq!(e.code(), "invalid_payload");
            return;
        }
    };
    let obj = payload.as_object().expect("an accepted draft is an object");
    assert_eq!(Ok(&draft.to), to.as_ref(), "the draft's `to` is parse_party's");
    let text = obj.get("text").and_then(Value::as_str).expect("text is a string");
    assert_eq!(draft.text, text);
    let n = draft.text.chars().count();
    assert!((1..=chat::MAX_TEXT_CHARS).contains(&n), "text of {n} characters accepted");
    match (obj.get("clientMsgId"), &draft.client_msg_id) {
        (None | Some(Value::Null), None) => {}
        (Some(Value::String(s)), Some(c)) => {
            assert_eq!(s, c);
            assert!((1..=chat::MAX_CLIENT_MSG_ID_CHARS).contains(&c.chars().count()));
        }
        (Some(v @ Value::Number(_)), Some(c)) => assert_eq!(expected_id(v).as_ref(), Some(c)),
        (given, got) => panic!("clientMsgId {given:?} read as {got:?}"),
    }

    for sender in [Some(token_sender), from.ok()].into_iter().flatten() {
        check_compose(sender, draft.clone());
    }
}

fn check_party(given: Option<&Value>, parsed: &Result<Party, ChatError>) {
    match parsed {
        Ok(p) => {
            assert_valid_id("party", &p.id);
            let obj = given.and_then(Value::as_object).expect("a party is an object");
            assert_eq!(obj.get("type").and_then(Value::as_str), Some(p.kind.as_str()));
            assert_eq!(obj.get("id").and_then(expected_id).as_deref(), Some(p.id.as_str()));
            let v = serde_json::to_value(p).unwrap();
            assert_eq!(v["type"], p.kind.as_str());
            assert_eq!(v["id"], p.id.as_str());
        }
        Err(e) => {
            check_chat_error(e);
            assert_eq!(e.code(), "invalid_payload");
        }
    }
}

fn check_chat_error(e: &ChatError) {
    let shown = e.to_string();
    assert!(shown.chars().count() <= 200, "chat error of {} chars: {shown:?}", shown.chars().count());
}

fn check_compose(from: Party, draft: chat::Draft) {
    let pair_ok = from.kind != draft.to.kind;
    match chat::compose(from.clone(), draft.clone()) {
        Ok(msg) => {
            assert!(pair_ok, "{from:?} may not write to {:?}", draft.to);
            assert_eq!(msg.rooms(), vec![draft.to.room(), from.room()]);
            assert_valid_id("message id", &msg.id);
            let v = serde_json::to_value(&msg).expect("a message serializes");
            assert_eq!(v["text"], draft.text.as_str());
            assert_eq!(v["from"]["type"], from.kind.as_str());
            assert_eq!(v["from"]["id"], from.id.as_str());
            assert_eq!(v["to"]["type"], draft.to.kind.as_str());
            assert_eq!(v["to"]["id"], draft.to.id.as_str());
            assert_eq!(v["clientMsgId"].as_str(), draft.client_msg_id.as_deref());
            let sent = v["sentAt"].as_str().expect("sentAt");
            assert!(OffsetDateTime::parse(sent, &Rfc3339).is_ok());
        }
        Err(e) => {
            assert!(!pair_ok, "{from:?} to {:?} refused: {e}", draft.to);
            assert_eq!(e.code(), "forbidden");
        }
    }
}
