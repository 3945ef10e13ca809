//! The console's routes. Every `/admin/api/` answer is JSON, never cached, and carries
//! no client token, secret or socket id.

use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;
use socketioxide::adapter::Adapter;

use super::peers::{InstanceInfo, LocalView, Query, SocketInfo};
use super::tap::{Figures, Seen};
use super::{Console, Operator, assets};
use crate::clock::{unix_ms, unix_secs};
use crate::events::room::RoomKind;
use crate::events::wire::ADMIN_TEST;
use crate::events::{Id, Room};
use crate::http::ApiError;
use crate::http::json::JsonBody;

/// Latest events in the overview, and in a lookup.
const LATEST: usize = 50;
const LOOKUP_LATEST: usize = 20;
/// Longest test-event message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 500;
const DEFAULT_MESSAGE: &str = "Test event from the admin console";

pub fn routes<A: Adapter>() -> Router<Console<A>> {
    let api = Router::new()
        .route("/admin/api/overview", get(overview::<A>))
        .route("/admin/api/lookup/{kind}/{id}", get(lookup::<A>))
        .route("/admin/api/disconnect/{kind}/{id}", post(disconnect::<A>))
        .route("/admin/api/test-event", post(test_event::<A>))
        // Before `no_store`, so a 405 is the app's JSON error and is not cached either.
        .method_not_allowed_fallback(crate::http::ops::method_not_allowed)
        .layer(middleware::from_fn(no_store));
    Router::new()
        .route("/admin", get(assets::index))
        .route("/admin/", get(assets::index))
        .route("/admin/console.js", get(assets::script))
        .route("/admin/console.css", get(assets::style))
        .merge(api)
}

async fn no_store(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

impl<A: Adapter> FromRequest<Console<A>> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, console: &Console<A>) -> Result<Self, ApiError> {
        JsonBody::from_request(req, &console.app).await
    }
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Overview {
    now: u64,
    cluster: Cluster,
    instances: Vec<InstanceInfo>,
    events: Figures,
    history: HistoryState,
}

#[derive(serde::Serialize)]
struct Cluster {
    mode: &'static str,
    instances: usize,
    /// Instances that listen but did not answer in time.
    missing: usize,
    connections: u64,
}

#[derive(serde::Serialize)]
struct HistoryState {
    enabled: bool,
}

/// This instance first, then the others by host and id.
fn gather(mut own: InstanceInfo, mut others: Vec<InstanceInfo>) -> Vec<InstanceInfo> {
    own.is_self = true;
    others.sort_by(|a, b| (&a.host, &a.id).cmp(&(&b.host, &b.id)));
    std::iter::once(own).chain(others).collect()
}

async fn overview<A: Adapter>(State(console): State<Console<A>>, _op: Operator) -> Json<Overview> {
    let own = console.local.answer(&Query::Overview).instance;
    let (others, missing) = match console.peers.ask(&Query::Overview).await {
        Ok(g) => (g.answers.into_iter().map(|a| a.instance).collect(), g.missing),
        Err(e) => {
            // Redis is down: this instance's row says so; the others cannot be asked.
            tracing::debug!(error = %e, "admin console: other instances not asked");
            (Vec::new(), 0)
        }
    };
    let instances = gather(own, others);
    let cluster = Cluster {
        mode: console.mode,
        instances: instances.len(),
        missing,
        connections: instances.iter().map(|i| i.connections).sum(),
    };
    Json(Overview {
        now: unix_ms(),
        cluster,
        instances,
        events: console.tap.figures(unix_secs(), LATEST),
        history: HistoryState { enabled: console.app.emitter.publisher().history().enabled() },
    })
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Lookup {
    room: String,
    online: bool,
    connections: usize,
    missing: usize,
    instances: Vec<Holder>,
    latest: Vec<Seen>,
    /// `history` (the room's history), or `recent` (the latest events this instance saw).
    latest_source: &'static str,
}

/// An instance holding sockets of the identity.
#[derive(serde::Serialize)]
struct Holder {
    id: String,
    host: String,
    #[serde(rename = "self")]
    is_self: bool,
    connections: usize,
    sockets: Vec<SocketInfo>,
}

fn room(kind: &str, id: String) -> Result<Room, ApiError> {
    let kind = RoomKind::parse(kind).ok_or(ApiError::NotFound)?;
    let id = Id::new(id).map_err(|e| ApiError::validation("id", e.to_string()))?;
    Ok(Room::new(kind, id))
}

async fn lookup<A: Adapter>(
    State(console): State<Console<A>>,
    _op: Operator,
    Path((kind, id)): Path<(String, String)>,
) -> Result<Json<Lookup>, ApiError> {
    let room = room(&kind, id)?;
    let query = Query::Lookup { room: room.identity_room() };
    let own = console.local.answer(&query);
    let gathered = console.peers.ask(&query).await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let mut holders: Vec<Holder> = std::iter::once((own, true))
        .chain(gathered.answers.into_iter().map(|a| (a, false)))
        .filter(|(a, _)| a.matched > 0)
        .map(|(a, is_self)| Holder {
            id: a.instance.id,
            host: a.instance.host,
            is_self,
            connections: a.matched,
            sockets: a.sockets,
        })
        .collect();
    holders.sort_by(|a, b| b.is_self.cmp(&a.is_self).then_with(|| (&a.host, &a.id).cmp(&(&b.host, &b.id))));
    let connections = holders.iter().map(|h| h.connections).sum();
    let history = console.app.emitter.publisher().history();
    let name = room.name();
    let (latest, latest_source) = if history.enabled() {
        let held = history.recent(&name, LOOKUP_LATEST).await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
        (held.iter().filter_map(|e| Seen::of(e)).collect(), "history")
    } else {
        (console.tap.latest_in(&name, LOOKUP_LATEST), "recent")
    };
    Ok(Json(Lookup {
        room: name,
        online: connections > 0,
        connections,
        missing: gathered.missing,
        instances: holders,
        latest,
        latest_source,
    }))
}

#[derive(serde::Serialize)]
struct Disconnected {
    room: String,
    disconnected: usize,
}

async fn disconnect<A: Adapter>(
    State(console): State<Console<A>>,
    op: Operator,
    Path((kind, id)): Path<(String, String)>,
) -> Result<Json<Disconnected>, ApiError> {
    let room = room(&kind, id)?;
    let disconnected = console.app.emitter.disconnect(&room).await?;
    tracing::info!(room = %room, disconnected, operator_ip = %op.ip, "disconnected from the admin console");
    Ok(Json(Disconnected { room: room.name(), disconnected }))
}

#[derive(serde::Serialize)]
struct Sent {
    id: Id,
    #[serde(rename = "type")]
    event: &'static str,
    rooms: Vec<String>,
}

/// `{ "room": "user:42", "message"?: "..." }`, strictly: anything else is named back.
pub fn test_body(body: &Value) -> Result<(Room, String), ApiError> {
    let Value::Object(fields) = body else { return Err(ApiError::validation("", "expected a JSON object")) };
    if let Some(unknown) = fields.keys().find(|k| !["room", "message"].contains(&k.as_str())) {
        return Err(ApiError::validation(unknown.clone(), "unknown field"));
    }
    let Some(Value::String(room)) = fields.get("room") else {
        return Err(ApiError::validation("room", "required: a room such as user:42 or vendor:7"));
    };
    let not_a_room =
        |why: String| ApiError::validation("room", format!("not a room ({why}): expected user:<id> or vendor:<id>"));
    let (kind, id) = room.split_once(':').ok_or_else(|| not_a_room("no kind".into()))?;
    let room = Room::from_parts(kind, id).map_err(|e| not_a_room(e.to_string()))?;
    let message = match fields.get("message") {
        None | Some(Value::Null) => DEFAULT_MESSAGE.to_owned(),
        Some(Value::String(m)) if m.chars().count() > MAX_MESSAGE_CHARS => {
            return Err(ApiError::validation("message", format!("at most {MAX_MESSAGE_CHARS} characters")));
        }
        Some(Value::String(m)) if m.trim().is_empty() => DEFAULT_MESSAGE.to_owned(),
        Some(Value::String(m)) => m.clone(),
        Some(_) => return Err(ApiError::validation("message", "expected a string")),
    };
    Ok((room, message))
}

async fn test_event<A: Adapter>(
    State(console): State<Console<A>>,
    op: Operator,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let (room, message) = test_body(&body)?;
    let id = console.app.emitter.test_event(&room, &message).await?;
    tracing::info!(room = %room, id = %id, operator_ip = %op.ip, "test event sent from the admin console");
    let sent = Sent { id, event: ADMIN_TEST, rooms: vec![room.name()] };
    Ok((StatusCode::ACCEPTED, Json(sent)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_test_event_names_one_room_and_at_most_a_short_message() {
        let (room, message) = test_body(&json!({ "room": "user:42" })).expect("valid");
        assert_eq!((room.name(), message.as_str()), ("user:42".to_owned(), DEFAULT_MESSAGE));
        let (room, message) = test_body(&json!({ "room": "vendor:v 7", "message": "hi" })).expect("valid");
        assert_eq!((room.name(), message.as_str()), ("vendor:v 7".to_owned(), "hi"));
        let field = |v: Value| match test_body(&v) {
            Err(ApiError::Validation { field, .. }) => field,
            other => panic!("expected a validation error, got {other:?}"),
        };
        assert_eq!(field(json!([])), "");
        assert_eq!(field(json!({})), "room");
        assert_eq!(field(json!({ "room": 42 })), "room");
        assert_eq!(field(json!({ "room": "user" })), "room");
        assert_eq!(field(json!({ "room": "admin:1" })), "room");
        assert_eq!(field(json!({ "room": "user:" })), "room");
        assert_eq!(field(json!({ "room": "user:1", "message": 5 })), "message");
        assert_eq!(field(json!({ "room": "user:1", "message": "x".repeat(501) })), "message");
        assert_eq!(field(json!({ "room": "user:1", "rooms": [] })), "rooms");
    }
}
