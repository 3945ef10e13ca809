//! `docs/asyncapi.yaml`, the AsyncAPI 3 description of the Socket.IO side, held to the
//! code: the server events it names are the catalog's plus the server's other events, the
//! client events are the ones `src/socket/mod.rs` registers, each answered by an ack
//! reply, and the envelope it describes is the one `Envelope` serializes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use fixrx_realtime::events::catalog::EntityKind;
use fixrx_realtime::events::chat::ChatError;
use fixrx_realtime::events::wire::{AckCode, ClientEvent};
use fixrx_realtime::events::{Actor, Booking, Envelope, EventMeta, EventType, Id, Payment, Room, ServerEvent, Service};
use serde_json::{Map, Value, json};

/// Server events outside the catalog: `chat:message`, the volatile `chat:typing` relay,
/// `recovery`, `auth:expired` and the console's `admin:test` (src/events/wire.rs).
const NON_CATALOG_SERVER_EVENTS: [&str; 5] = fixrx_realtime::events::wire::NON_CATALOG_SERVER_EVENTS;

/// The client events the socket dispatches (src/events/wire.rs `ClientEvent`).
const CLIENT_EVENTS: [&str; 6] = fixrx_realtime::events::wire::CLIENT_EVENTS;

/// The wire name of the variant a source file spells `<Type>::<variant>`.
fn wire_name<T: std::fmt::Debug + Copy>(all: &[T], as_str: fn(T) -> &'static str, variant: &str) -> String {
    let found = all.iter().copied().find(|v| format!("{v:?}") == variant);
    as_str(found.unwrap_or_else(|| panic!("no such variant: {variant}"))).to_owned()
}

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read(relative: &str) -> String {
    let path = repo_path(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The document, parsed from YAML into JSON values.
fn document() -> Value {
    let doc: Value =
        serde_norway::from_str(&read("docs/asyncapi.yaml")).unwrap_or_else(|e| panic!("docs/asyncapi.yaml: {e}"));
    assert_eq!(doc["asyncapi"], "3.0.0", "docs/asyncapi.yaml must be an AsyncAPI 3.0.0 document");
    doc
}

/// Follows local `$ref`s (`#/json/pointer`) until a value that is not a reference.
fn resolve<'a>(doc: &'a Value, mut v: &'a Value) -> &'a Value {
    for _ in 0..32 {
        let Some(reference) = v.get("$ref").and_then(Value::as_str) else { return v };
        let pointer = reference.strip_prefix('#').unwrap_or_else(|| panic!("only local $refs expected: {reference}"));
        v = doc.pointer(pointer).unwrap_or_else(|| panic!("dangling $ref {reference}"));
    }
    panic!("$ref chain too long at {v}");
}

/// The operations whose `action` is `action` (`send` or `receive`), by operation id.
fn operations<'a>(doc: &'a Value, action: &str) -> Vec<(&'a str, &'a Value)> {
    let ops = doc["operations"].as_object().expect("the document has operations");
    let found: Vec<(&str, &Value)> =
        ops.iter().filter(|(_, op)| op["action"] == action).map(|(id, op)| (id.as_str(), op)).collect();
    assert!(!found.is_empty(), "no `{action}` operation in the document");
    found
}

/// The messages a list of message references points at.
fn messages<'a>(doc: &'a Value, refs: &'a Value) -> Vec<&'a Value> {
    let refs = refs.as_array().unwrap_or_else(|| panic!("expected a list of messages, got {refs}"));
    refs.iter().map(|m| resolve(doc, m)).collect()
}

fn name_of(message: &Value) -> &str {
    message["name"].as_str().unwrap_or_else(|| panic!("a message without a `name`: {message}"))
}

/// Every (message name, message, channel address) the operations with `action` carry.
fn carried<'a>(doc: &'a Value, action: &str) -> Vec<(&'a str, &'a Value, Option<&'a str>)> {
    let mut out = Vec::new();
    for (_, op) in operations(doc, action) {
        let channel = resolve(doc, &op["channel"]);
        let address = channel["address"].as_str();
        for message in messages(doc, &op["messages"]) {
            out.push((name_of(message), message, address));
        }
    }
    out
}

fn names<'a>(list: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    list.into_iter().map(str::to_owned).collect()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected a list of strings, got {v}"))
        .iter()
        .map(|s| s.as_str().unwrap_or_else(|| panic!("expected a string, got {s}")).to_owned())
        .collect()
}

/// The payload schema of the catalog message named `name` (the same component on every
/// channel that carries it).
fn catalog_payload<'a>(doc: &'a Value, name: &str) -> &'a Value {
    let message: &'a Value = carried(doc, "send")
        .into_iter()
        .find_map(|(n, message, _)| (n == name).then_some(message))
        .unwrap_or_else(|| panic!("no send message named {name}"));
    resolve(doc, &message["payload"])
}

#[test]
fn the_asyncapi_document_names_exactly_the_catalogs_events() {
    let doc = document();
    let sent = names(carried(&doc, "send").into_iter().map(|(name, _, _)| name));
    let expected = names(EventType::ALL.iter().map(|t| t.as_str()).chain(NON_CATALOG_SERVER_EVENTS));
    assert_eq!(sent, expected, "the `send` operations must name the catalog's events and the other server events");
}

#[test]
fn the_asyncapi_document_receives_exactly_the_client_events() {
    let doc = document();
    let received = names(carried(&doc, "receive").into_iter().map(|(name, _, _)| name));
    assert_eq!(received, names(CLIENT_EVENTS), "the `receive` operations must name the client events");
}

#[test]
fn client_events_are_the_ones_the_socket_dispatches() {
    // The `Some(ClientEvent::<variant>) =>` arms of `dispatch` in src/socket/mod.rs; its
    // `None` arm answers every other name with `unknown_event`.
    let source = read("src/socket/mod.rs");
    let body = source.split("async fn dispatch<").nth(1).and_then(|rest| rest.split("\n}\n").next()).unwrap();
    let dispatched: BTreeSet<String> = body
        .lines()
        .filter_map(|line| {
            line.trim().strip_prefix("Some(ClientEvent::")?.split_once(") =>").map(|(v, _)| v.to_owned())
        })
        .map(|variant| wire_name(&ClientEvent::ALL, ClientEvent::as_str, &variant))
        .collect();
    assert_eq!(dispatched, names(CLIENT_EVENTS), "`dispatch` handles other client events than CLIENT_EVENTS names");
}

#[test]
fn every_client_event_is_answered_by_an_ack_reply_on_its_connection() {
    let doc = document();
    for (id, op) in operations(&doc, "receive") {
        let reply = op.get("reply").unwrap_or_else(|| panic!("operation {id} has no reply (its ack)"));
        let reply = resolve(&doc, reply);
        assert_eq!(
            reply["channel"], op["channel"],
            "operation {id}: the ack goes back on the channel the event came in"
        );
        let acks = messages(&doc, &reply["messages"]);
        assert_eq!(acks.len(), 1, "operation {id}: one ack message");
        let payload = resolve(&doc, &acks[0]["payload"]);
        let variants = payload["oneOf"].as_array().unwrap_or_else(|| panic!("operation {id}: ack is oneOf ok / error"));
        let oks: Vec<Value> = variants
            .iter()
            .map(|v| resolve(&doc, v))
            .map(|v| resolve(&doc, &v["properties"]["ok"]).get("const").cloned().unwrap_or(Value::Null))
            .collect();
        assert!(oks.contains(&json!(true)), "operation {id}: the ack has an `ok: true` variant");
        let refusal = variants.iter().map(|v| resolve(&doc, v)).find(|v| v.get("allOf").is_some());
        let refusal = refusal.unwrap_or_else(|| panic!("operation {id}: the ack has an error variant"));
        let base = resolve(&doc, &refusal["allOf"][0]);
        assert_eq!(
            base["required"],
            json!(["ok", "error", "message"]),
            "operation {id}: errors are {{ ok, error, message }}"
        );
        // Every client event is counted against the rate limit first.
        let codes = strings(&refusal["allOf"][1]["properties"]["error"]["enum"]);
        assert!(codes.contains("rate_limited"), "operation {id}: every client event may answer rate_limited");
    }
}

#[test]
fn the_documented_error_codes_are_the_codes_the_socket_handlers_answer() {
    let doc = document();
    let documented = strings(&doc["components"]["schemas"]["AckError"]["properties"]["error"]["enum"]);
    // Every `AckCode::<variant>` the socket handlers answer with, plus the codes of
    // `ChatError`, which they answer through `ChatError::code`.
    let mut used = BTreeSet::new();
    let dir = repo_path("src/socket");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            let source = std::fs::read_to_string(&path).unwrap();
            for rest in source.split("AckCode::").skip(1) {
                let variant: String = rest.chars().take_while(char::is_ascii_alphanumeric).collect();
                used.insert(wire_name(&AckCode::ALL, AckCode::as_str, &variant));
            }
        }
    }
    used.insert(ChatError::Invalid { field: "to", message: String::new() }.code().to_owned());
    used.insert(ChatError::Forbidden(String::new()).code().to_owned());
    assert_eq!(documented, used, "AckError.error must list exactly the codes the socket handlers answer");
}

#[test]
fn each_catalog_message_pins_its_type_its_entity_and_its_optional_fields() {
    let doc = document();
    let all = carried(&doc, "send");
    for t in EventType::ALL {
        let name = t.as_str();
        let payload = catalog_payload(&doc, name);
        let entity = t.entity().key();
        assert_eq!(payload["properties"]["type"]["const"], name, "{name}: `type` is pinned to the event name");
        assert_eq!(
            strings(&payload["required"]),
            names(["id", "type", "occurredAt", entity]),
            "{name}: required fields"
        );
        let mut allowed = names(["id", "type", "occurredAt", "actor", "offsets", entity]);
        if t.has_previous_status() {
            allowed.insert("previousStatus".into());
        }
        if t.has_reason() {
            allowed.insert("reason".into());
        }
        assert_eq!(keys(&payload["properties"]), allowed, "{name}: envelope fields");
        assert_eq!(payload["additionalProperties"], false, "{name}: the envelope has no other fields");

        // Rooms: service events go to the vendor, booking and payment events to both.
        let rooms: BTreeSet<String> = all
            .iter()
            .filter(|(n, _, _)| *n == name)
            .map(|(_, _, address)| address.unwrap_or_else(|| panic!("{name} sent on a channel without an address")))
            .map(str::to_owned)
            .collect();
        let expected = match t.entity() {
            EntityKind::Service => names(["vendor:{vendorId}"]),
            EntityKind::Booking | EntityKind::Payment => names(["user:{userId}", "vendor:{vendorId}"]),
        };
        assert_eq!(rooms, expected, "{name}: rooms");
    }
}

#[test]
fn the_room_channels_are_the_rooms_the_server_names() {
    let doc = document();
    let channel = |id: &str| doc["channels"][id].clone();
    let user = Room::User(Id::new("{userId}").unwrap()).name();
    let vendor = Room::Vendor(Id::new("{vendorId}").unwrap()).name();
    assert_eq!(channel("userRoom")["address"], user.as_str());
    assert_eq!(channel("vendorRoom")["address"], vendor.as_str());
    assert!(channel("userRoom")["parameters"].get("userId").is_some());
    assert!(channel("vendorRoom")["parameters"].get("vendorId").is_some());
    let servers = doc["servers"].as_object().expect("servers");
    assert_eq!(servers.len(), 1, "one server");
    let server = servers.values().next().unwrap();
    assert_eq!(server["protocol"], "ws");
    assert_eq!(server["pathname"], "/socket.io", "the default WS_PATH");
}

/// One event of each type, with every optional field set.
fn every_event() -> Vec<ServerEvent> {
    let id = |s: &str| Id::new(s).unwrap();
    let mut fields = Map::new();
    fields.insert("status".into(), json!("confirmed"));
    let service = Service { id: id("s1"), vendor_id: id("v1"), fields: fields.clone() };
    let booking = Booking { id: id("b1"), user_id: id("u1"), vendor_id: id("v1"), fields: fields.clone() };
    let payment = Payment { id: id("p1"), user_id: id("u1"), vendor_id: Some(id("v1")), fields };
    let text = || Some("because".to_owned());
    let events = vec![
        ServerEvent::ServiceCreated { service: service.clone() },
        ServerEvent::ServiceUpdated { service: service.clone() },
        ServerEvent::ServiceStatusChanged { service, previous_status: text() },
        ServerEvent::BookingCreated { booking: booking.clone() },
        ServerEvent::BookingStatusChanged { booking: booking.clone(), previous_status: text() },
        ServerEvent::BookingCancelled { booking, reason: text() },
        ServerEvent::PaymentCompleted { payment: payment.clone() },
        ServerEvent::PaymentFailed { payment, reason: text() },
    ];
    let types: BTreeSet<&str> = events.iter().map(|e| e.event_type().as_str()).collect();
    assert_eq!(types.len(), EventType::ALL.len(), "one event of each catalog type");
    events
}

#[test]
fn a_serialized_envelope_has_exactly_the_fields_the_document_describes() {
    let doc = document();
    let actor = Actor { id: Id::new("a1").unwrap(), role: Some("vendor".into()) };
    for event in every_event() {
        let name = event.event_type().as_str();
        let meta = EventMeta::now(Some(actor.clone()));
        let envelope = serde_json::to_value(Envelope { meta: &meta, event: &event }).unwrap();
        let payload = catalog_payload(&doc, name);
        let present = keys(&envelope);
        let described = keys(&payload["properties"]);
        // `offsets` is spliced in by the history (src/history/position.rs), after serialization.
        assert_eq!(
            described.difference(&present).cloned().collect::<BTreeSet<_>>(),
            names(["offsets"]),
            "{name}: the envelope with every optional field set has every described field but offsets"
        );
        assert!(present.is_subset(&described), "{name}: {present:?} has fields the document does not describe");
        assert_eq!(envelope["type"], name);

        let entity_key = event.event_type().entity().key();
        let entity_schema = resolve(&doc, &payload["properties"][entity_key]);
        let entity = keys(&envelope[entity_key]);
        let required = strings(&entity_schema["required"]);
        assert!(required.is_subset(&entity), "{name}: {entity_key} lacks a required field of {required:?}");
        assert!(keys(&entity_schema["properties"]).is_subset(&entity), "{name}: {entity_key} has every typed field");
        assert_eq!(entity_schema["additionalProperties"], true, "{name}: other entity fields pass through");

        let actor_schema = resolve(&doc, &payload["properties"]["actor"]);
        assert_eq!(keys(&envelope["actor"]), keys(&actor_schema["properties"]), "{name}: actor fields");
    }
}
