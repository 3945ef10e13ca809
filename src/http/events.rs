//! `POST /api/v1/events` and `POST /api/v1/events/batch`.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use socketioxide::adapter::Adapter;
use time::OffsetDateTime;

use super::error::{AuthErrors, BodyErrors, ErrorBody};
use super::json::JsonBody;
use super::request_id;
use super::schema::{BatchBody, EventBody};
use super::{ApiClient, ApiError, AppState};
use crate::emit::{BatchEvent, Emitted, EmittedOnce};
use crate::events::envelope::new_event_id;
use crate::events::parse::ParsedMeta;
use crate::events::{EventMeta, Id, ServerEvent, parse_event};
use crate::idempotency::{Guard, Outcome};

pub use super::schema::MAX_BATCH;
const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// Emits one event to its rooms; `202` once it is in the history.
#[utoipa::path(post, path = "/api/v1/events", tag = "events", security(("bearer" = [])),
    request_body = EventBody,
    params(("Idempotency-Key" = Option<String>, Header, pattern = r"^[ \t]*[!-~]([!-~ \t]{0,126}[!-~])?[ \t]*$",
        description = "idempotency key (or the body's `id`; both must agree): 1 to 128 visible characters")),
    responses(
        (status = 202, description = "Accepted: in the history, on its way to the rooms", body = Emitted,
            headers(("Idempotent-Replayed" = String, description = "`true` when the key was seen: the first answer, not emitted again"))),
        AuthErrors,
        BodyErrors,
        (status = 422, description = "JSON of the wrong shape; `field` names the culprit", body = ErrorBody),
        (status = 503, description = "The event bus is unreachable, or the server is shutting down", body = ErrorBody),
    ))]
pub async fn post_event<A: Adapter>(
    State(state): State<AppState<A>>,
    _client: ApiClient,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let (event, parsed) = parse_event(&body)?;
    let header_key = idempotency_header(&headers)?;
    let key = match (&parsed.id, header_key) {
        (Some(id), Some(h)) if *id != h => {
            return Err(ApiError::validation(
                "id",
                "differs from the Idempotency-Key header; give one, or the same in both",
            ));
        }
        (Some(id), _) => Some(id.clone()),
        (None, h) => h,
    };
    let (answer, outcome) = emit_one(&state, &event, parsed, key).await?;
    let replayed = outcome == Outcome::Replayed;
    // One line per call at `info` cost about 7 % of a REST event's CPU (formatting and a
    // `write`); the counts are in the metrics, the line is there for who asks (`debug`).
    tracing::debug!(request_id = request_id::of(&headers), event_ids = answer.id(), replayed, "event accepted");
    let mut response = (StatusCode::ACCEPTED, Json(answer)).into_response();
    if outcome == Outcome::Replayed {
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// What a batch answers: each event's `{ id, type, rooms }`, in order.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct BatchAnswer {
    #[schema(value_type = Vec<Emitted>)]
    pub events: Vec<Value>,
}

/// Emits 1 to 500 events, all or nothing, in order.
#[utoipa::path(post, path = "/api/v1/events/batch", tag = "events", security(("bearer" = [])),
    request_body = BatchBody,
    responses(
        (status = 202, description = "Accepted, in order", body = BatchAnswer),
        AuthErrors,
        BodyErrors,
        (status = 422, description = "JSON of the wrong shape; `field` names the culprit", body = ErrorBody),
        (status = 503, description = "The event bus is unreachable, or the server is shutting down", body = ErrorBody),
    ))]
pub async fn post_batch<A: Adapter>(
    State(state): State<AppState<A>>,
    _client: ApiClient,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    if headers.contains_key(IDEMPOTENCY_HEADER) {
        return Err(ApiError::validation(
            "Idempotency-Key",
            "not supported on batches: give each event an `id`, which is its idempotency key",
        ));
    }
    let obj =
        body.as_object().ok_or_else(|| ApiError::validation("", "the body must be an object { \"events\": [...] }"))?;
    if let Some(key) = obj.keys().find(|k| *k != "events") {
        return Err(ApiError::validation(
            key.chars().take(64).collect::<String>(),
            "unknown field (a batch has only `events`)",
        ));
    }
    let list = match obj.get("events") {
        Some(Value::Array(list)) => list,
        Some(_) => return Err(ApiError::validation("events", "must be an array")),
        None => return Err(ApiError::validation("events", "is required")),
    };
    if list.is_empty() || list.len() > MAX_BATCH {
        return Err(ApiError::validation("events", format!("must hold 1 to {MAX_BATCH} events, got {}", list.len())));
    }
    // All or nothing: every event is validated before any is emitted.
    let mut parsed = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        parsed.push(parse_event(item).map_err(|e| e.within(&format!("events[{i}]")))?);
    }
    let answers = emit_batch(&state, parsed).await?;
    // Every id of the answer, in order, replayed ones too: what the caller was told.
    let ids: Vec<&str> = answers.iter().filter_map(|a| a.get("id").and_then(Value::as_str)).collect();
    tracing::info!(
        request_id = request_id::of(&headers),
        event_ids = ids.join(","),
        events = ids.len(),
        "event batch accepted"
    );
    Ok((StatusCode::ACCEPTED, Json(BatchAnswer { events: answers })).into_response())
}

/// Emits a validated batch in one atomic append ([`crate::emit::Publisher::emit_batch`]):
/// all or nothing, in order. A keyed event whose key is recorded (or that repeats a key
/// earlier in the batch) is answered from the first answer and not emitted again, so a
/// retried batch emits exactly what is missing.
async fn emit_batch<A: Adapter>(
    state: &AppState<A>,
    parsed: Vec<(ServerEvent, ParsedMeta)>,
) -> Result<Vec<Value>, ApiError> {
    let guard = state.idempotency.batch_guard();
    let _held = state.idempotency.hold_for_batch().await;
    let mut answers: Vec<Option<Value>> = vec![None; parsed.len()];
    // Per event: its own place in the append, or the earlier event of the batch it repeats.
    let mut first_of: HashMap<Id, usize> = HashMap::new();
    let mut repeats = Vec::new();
    let mut todo = Vec::with_capacity(parsed.len());
    let mut metas = Vec::with_capacity(parsed.len());
    for (i, (event, p)) in parsed.iter().enumerate() {
        if let Some(id) = &p.id {
            if let Some(&first) = first_of.get(id) {
                repeats.push((i, first));
                continue;
            }
            first_of.insert(id.clone(), i);
            answers[i] = state.idempotency.recorded(id.as_str());
            if answers[i].is_some() {
                continue;
            }
        }
        let meta = EventMeta {
            id: p.id.clone().unwrap_or_else(new_event_id),
            occurred_at: p.occurred_at.unwrap_or_else(OffsetDateTime::now_utc),
            actor: p.actor.clone(),
        };
        metas.push(meta);
        todo.push((i, event, p.id.is_some()));
    }
    let batch: Vec<BatchEvent<'_>> =
        todo.iter().zip(&metas).map(|((_, event, keyed), meta)| BatchEvent { event, meta, keyed: *keyed }).collect();
    let key_ttl = match guard {
        Guard::Held => None,
        Guard::Record { ttl } => Some(ttl),
    };
    let emitted = if batch.is_empty() { Vec::new() } else { state.emitter.emit_batch(&batch, key_ttl).await? };
    for ((i, _, keyed), emitted) in todo.iter().zip(emitted) {
        let answer = match emitted {
            EmittedOnce::Fresh(emitted) => {
                serde_json::to_value(emitted).map_err(|e| ApiError::Internal(e.to_string()))?
            }
            EmittedOnce::Replayed(first) => first,
        };
        if let (true, Guard::Held, Some(id)) = (*keyed, guard, &parsed[*i].1.id) {
            state.idempotency.record(id.as_str(), &answer);
        }
        answers[*i] = Some(answer);
    }
    for (i, first) in repeats {
        answers[i] = answers[first].clone();
    }
    answers.into_iter().map(|a| a.ok_or_else(|| ApiError::Internal("a batch event without an answer".into()))).collect()
}

/// What `POST /api/v1/events` answers, `{ id, type, rooms }`: the event just emitted,
/// or the answer recorded under its key.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum Answer {
    Emitted(Emitted),
    Recorded(Value),
}

impl Answer {
    fn id(&self) -> &str {
        match self {
            Answer::Emitted(emitted) => emitted.id.as_str(),
            Answer::Recorded(answer) => answer.get("id").and_then(Value::as_str).unwrap_or_default(),
        }
    }
}

/// Emits one parsed event; with a key, at most once per key within the TTL.
async fn emit_one<A: Adapter>(
    state: &AppState<A>,
    event: &ServerEvent,
    parsed: ParsedMeta,
    key: Option<Id>,
) -> Result<(Answer, Outcome), ApiError> {
    let meta = EventMeta {
        id: key.clone().unwrap_or_else(new_event_id),
        occurred_at: parsed.occurred_at.unwrap_or_else(OffsetDateTime::now_utc),
        actor: parsed.actor,
    };
    let meta = &meta;
    let answer = |emitted: Emitted| serde_json::to_value(emitted).map_err(|e| ApiError::Internal(e.to_string()));
    let emit = |guard: Guard| async move {
        match guard {
            Guard::Held => Ok((answer(state.emitter.emit(event, meta).await?)?, Outcome::Fresh)),
            Guard::Record { ttl } => match state.emitter.emit_once(event, meta, ttl).await? {
                EmittedOnce::Fresh(emitted) => Ok((answer(emitted)?, Outcome::Fresh)),
                EmittedOnce::Replayed(first) => Ok((first, Outcome::Replayed)),
            },
        }
    };
    let Some(key) = key else {
        // Nothing to record: answered from the emitted event itself, without a JSON tree.
        return Ok((Answer::Emitted(state.emitter.emit(event, meta).await?), Outcome::Fresh));
    };
    let (answer, outcome) = state.idempotency.run_once::<ApiError, _, _>(key.as_str(), emit).await?;
    Ok((Answer::Recorded(answer), outcome))
}

fn idempotency_header(headers: &HeaderMap) -> Result<Option<Id>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_HEADER) else { return Ok(None) };
    let value = value.to_str().map_err(|_| ApiError::validation("Idempotency-Key", "must be printable ASCII"))?;
    Id::new(value.trim()).map(Some).map_err(|e| ApiError::validation("Idempotency-Key", e.to_string()))
}
