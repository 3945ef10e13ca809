//! [`Publisher`]: envelopes, idempotency keys and batches on their way into the history,
//! with no adapter in sight (the socket chat handler uses it too).

use std::sync::Arc;

use serde::Serialize;
use socketioxide::socket::Sid;

use super::{BatchEvent, ChatPublished, EmitError, Emitted, EmittedOnce};
use crate::events::chat::ChatMessage;
use crate::events::wire::{ADMIN_TEST, CHAT_MESSAGE};
use crate::events::{Envelope, EventMeta, Id, Room, ServerEvent};
use crate::history::{Appended, AppendedOnce, History, HistoryError, OnceKey, Publish};
use crate::hooks::chat_hook::{ChatHook, Verdict};
use crate::metrics::{EventLabels, Metrics};

/// The one path into the history, and so to sockets: shared by the typed emitters, the
/// REST handlers and the socket chat handler. Not tied to an adapter.
#[derive(Clone)]
pub struct Publisher {
    history: Arc<History>,
    metrics: Arc<Metrics>,
    chat_hook: Option<Arc<ChatHook>>,
}

impl Publisher {
    pub fn new(history: Arc<History>, metrics: Arc<Metrics>) -> Publisher {
        Publisher { history, metrics, chat_hook: None }
    }

    /// Asks `hook` before every chat message is relayed.
    pub fn with_chat_hook(self, hook: Option<Arc<ChatHook>>) -> Publisher {
        Publisher { chat_hook: hook, ..self }
    }

    pub fn history(&self) -> &Arc<History> {
        &self.history
    }

    /// Appends one catalog event with its envelope; returns once it is in the history.
    pub async fn emit(&self, event: &ServerEvent, meta: &EventMeta) -> Result<Emitted, EmitError> {
        match self.append_event(event, meta, None).await? {
            EmittedOnce::Fresh(emitted) => Ok(emitted),
            EmittedOnce::Replayed(_) => {
                Err(EmitError::Unavailable("an emit without a key was answered as a replay".into()))
            }
        }
    }

    /// Like [`Publisher::emit`], with `meta.id` as an idempotency key that the history
    /// records atomically with the event, for `ttl` ([`crate::history::OnceKey`]): when
    /// the key is recorded already, nothing is emitted and the first answer is returned.
    /// Needs the Redis history; a timed-out call is settled by calling again.
    pub async fn emit_once(
        &self,
        event: &ServerEvent,
        meta: &EventMeta,
        ttl: std::time::Duration,
    ) -> Result<EmittedOnce, EmitError> {
        self.append_event(event, meta, Some(ttl)).await
    }

    /// Emits a batch of catalog events, in order, all or nothing ([`History::append_batch`]):
    /// `Err` means none of them was accepted. With `key_ttl`, each event whose `keyed` is
    /// set is emitted at most once per `meta.id` ([`Publisher::emit_once`]).
    pub async fn emit_batch(
        &self,
        batch: &[BatchEvent<'_>],
        key_ttl: Option<std::time::Duration>,
    ) -> Result<Vec<EmittedOnce>, EmitError> {
        let mut publishes = Vec::with_capacity(batch.len());
        let mut emitted = Vec::with_capacity(batch.len());
        for item in batch {
            let (publish, once, done) = self.prepare(item.event, item.meta, key_ttl.filter(|_| item.keyed))?;
            publishes.push((publish, once));
            emitted.push(done);
        }
        let appended = match self.history.append_batch(publishes).await {
            Ok(appended) => appended,
            Err(e) => {
                tracing::error!(events = batch.len(), error = %e, "batch not accepted: none of its events");
                return Err(e.into());
            }
        };
        emitted.into_iter().zip(appended).map(|(emitted, appended)| self.settle(emitted, appended)).collect()
    }

    async fn append_event(
        &self,
        event: &ServerEvent,
        meta: &EventMeta,
        key_ttl: Option<std::time::Duration>,
    ) -> Result<EmittedOnce, EmitError> {
        let (publish, once, emitted) = self.prepare(event, meta, key_ttl)?;
        let appended = match once {
            None => self.append(publish).await.map(AppendedOnce::Appended),
            Some(once) => Box::pin(self.history.append_once(publish, &once)).await,
        };
        match appended {
            Ok(appended) => self.settle(emitted, appended),
            Err(e) => {
                let (id, rooms) = (&meta.id, &emitted.rooms);
                tracing::error!(event = %emitted.event_type, %id, ?rooms, error = %e, "event not accepted");
                Err(e.into())
            }
        }
    }

    /// The event's envelope and answer, and its key when `key_ttl` is given.
    fn prepare(
        &self,
        event: &ServerEvent,
        meta: &EventMeta,
        key_ttl: Option<std::time::Duration>,
    ) -> Result<(Publish, Option<OnceKey>, Emitted), EmitError> {
        let event_type = event.event_type();
        let emitted = Emitted { id: meta.id.clone(), event_type, rooms: event.rooms() };
        let payload =
            serde_json::to_string(&Envelope { meta, event }).map_err(|e| EmitError::Serialize(e.to_string()))?;
        let names = emitted.rooms.iter().map(Room::name).collect();
        let publish = Publish { event: event_type.as_str(), rooms: names, except: None, payload };
        let once = match key_ttl {
            None => None,
            Some(ttl) => {
                let answer = serde_json::to_string(&emitted).map_err(|e| EmitError::Serialize(e.to_string()))?;
                Some(OnceKey { key: meta.id.to_string(), answer, ttl })
            }
        };
        Ok((publish, once, emitted))
    }

    /// One event into the history. In memory that is a plain call; Redis's future (over
    /// 2 KB) is boxed so that it does not make every emitting future as large, the chat
    /// handler's included, which tokio copies when it spawns a task per client event.
    async fn append(&self, publish: Publish) -> Result<Appended, HistoryError> {
        match &*self.history {
            History::Memory(memory) => memory.append(publish),
            history => Box::pin(history.append(publish)).await,
        }
    }

    /// Counts an appended event, or reads back a replayed answer.
    fn settle(&self, emitted: Emitted, appended: AppendedOnce) -> Result<EmittedOnce, EmitError> {
        let (event_type, id, rooms) = (emitted.event_type, &emitted.id, &emitted.rooms);
        match appended {
            AppendedOnce::Appended(_) | AppendedOnce::Decided => {
                self.metrics.events_emitted.get_or_create(&EventLabels { r#type: event_type.as_str() }).inc();
                tracing::debug!(event = %event_type, %id, ?rooms, "event emitted");
                Ok(EmittedOnce::Fresh(emitted))
            }
            AppendedOnce::Replayed(answer) => {
                tracing::debug!(event = %event_type, %id, "idempotency key recorded already: not emitted again");
                let answer = serde_json::from_str(&answer).map_err(|e| EmitError::Serialize(e.to_string()))?;
                Ok(EmittedOnce::Replayed(answer))
            }
        }
    }

    /// `chat:message` to the recipient's room and the sender's, except the sending socket
    /// (its ack carries the message); a controller posting has no socket to leave out.
    /// With a chat hook, only once the backend accepted it.
    pub async fn chat(&self, message: &ChatMessage, except: Option<Sid>) -> Result<ChatPublished, EmitError> {
        if let Some(hook) = &self.chat_hook {
            // Boxed: the hook's HTTP call is a large future, and most servers have no hook.
            match Box::pin(hook.check(message)).await {
                Verdict::Accepted => {}
                Verdict::Rejected(reason) => return Err(EmitError::Rejected(reason)),
                Verdict::Unavailable(why) => return Err(EmitError::HookUnavailable(why)),
            }
        }
        let rooms = message.rooms();
        let payload = serde_json::to_string(message).map_err(|e| EmitError::Serialize(e.to_string()))?;
        let publish = Publish {
            event: CHAT_MESSAGE,
            rooms: rooms.iter().map(Room::name).collect(),
            except: except.map(|sid| sid.to_string()),
            payload,
        };
        match self.append(publish).await {
            Ok(appended) => Ok(ChatPublished { rooms, appended }),
            Err(e) => {
                tracing::error!(id = %message.id, rooms = ?rooms, error = %e, "chat message not accepted");
                Err(e.into())
            }
        }
    }
    /// An `admin:test` event to one room, sent by an operator from the console: through
    /// the history like every event, so it is ordered, counted and recoverable.
    pub async fn test_event(&self, room: &Room, message: &str) -> Result<Id, EmitError> {
        let id = crate::events::envelope::new_event_id();
        let occurred_at = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| EmitError::Serialize(e.to_string()))?;
        let envelope = TestEnvelope { id: &id, event_type: ADMIN_TEST, occurred_at, message };
        let payload = serde_json::to_string(&envelope).map_err(|e| EmitError::Serialize(e.to_string()))?;
        let publish = Publish { event: ADMIN_TEST, rooms: vec![room.name()], except: None, payload };
        if let Err(e) = self.append(publish).await {
            tracing::error!(id = %id, room = %room, error = %e, "test event not accepted");
            return Err(e.into());
        }
        self.metrics.events_emitted.get_or_create(&EventLabels { r#type: ADMIN_TEST }).inc();
        Ok(id)
    }
}

/// `admin:test`: `{ id, type, occurredAt, message }`.
#[derive(Serialize)]
struct TestEnvelope<'a> {
    id: &'a Id,
    #[serde(rename = "type")]
    event_type: &'static str,
    #[serde(rename = "occurredAt")]
    occurred_at: String,
    message: &'a str,
}
