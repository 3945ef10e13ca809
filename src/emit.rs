//! Typed emitters: the one path by which events reach sockets, used by the REST
//! handlers and callable from Rust code linked with the crate.
//!
//! Contract kept here: an event goes to each room of [`ServerEvent::rooms`] on every
//! instance sharing the history; a socket in several of those rooms receives it once;
//! events emitted one after another from one task reach each socket in that order. An
//! emit returns `Ok` only once the event is in the history ([`crate::history`]), from
//! which [`crate::delivery`] hands it to sockets.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::socket::Sid;

use crate::chat::ChatMessage;
use crate::events::{Actor, Booking, Envelope, EventMeta, EventType, Id, Payment, Room, ServerEvent, Service};
use crate::history::{Appended, AppendedOnce, History, HistoryError, OnceKey, Publish};
use crate::hooks::chat::{ChatHook, Verdict};
use crate::metrics::{EventLabels, Metrics};

/// What was emitted: the answer of the REST API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Emitted {
    /// The event's id (its idempotency key when one was given).
    #[schema(value_type = String)]
    pub id: Id,
    /// The event type, e.g. `booking:created`.
    #[serde(rename = "type", serialize_with = "ser_type")]
    #[schema(value_type = String)]
    pub event_type: EventType,
    /// The rooms it went to, e.g. `user:u1`.
    #[serde(serialize_with = "ser_rooms")]
    #[schema(value_type = Vec<String>)]
    pub rooms: Vec<Room>,
}

fn ser_type<S: serde::Serializer>(t: &EventType, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(t.as_str())
}

fn ser_rooms<S: serde::Serializer>(rooms: &[Room], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(rooms.iter().map(Room::name))
}

/// What an emit under an idempotency key did ([`Publisher::emit_once`]).
#[derive(Debug, Clone)]
pub enum EmittedOnce {
    Fresh(Emitted),
    /// The key was recorded already: the first answer, as stored; nothing was emitted.
    Replayed(serde_json::Value),
}

/// Why an event could not be emitted.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    /// The history (Redis) could not be written: nothing was accepted.
    #[error("the event could not be published: {0}")]
    Unavailable(String),
    #[error("the event could not be serialized: {0}")]
    Serialize(String),
    /// The server is shutting down.
    #[error("the server is shutting down")]
    Closed,
    /// The chat hook refused the message (with the backend's reason, if it gave one).
    #[error("the backend rejected the message")]
    Rejected(Option<String>),
    /// The chat hook did not answer `2xx` or `4xx` in time: nothing was relayed.
    #[error("the backend could not be asked: {0}")]
    HookUnavailable(String),
}

impl From<HistoryError> for EmitError {
    fn from(e: HistoryError) -> Self {
        match e {
            HistoryError::Unavailable(why) => EmitError::Unavailable(why),
            HistoryError::Closed => EmitError::Closed,
        }
    }
}

/// One event of a batch ([`Publisher::emit_batch`]).
#[derive(Debug, Clone, Copy)]
pub struct BatchEvent<'a> {
    pub event: &'a ServerEvent,
    pub meta: &'a EventMeta,
    /// `meta.id` is an idempotency key.
    pub keyed: bool,
}

/// A chat message on its way: its rooms and its positions there.
#[derive(Debug, Clone)]
pub struct ChatPublished {
    pub rooms: Vec<Room>,
    pub appended: Appended,
}

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
            None => self.history.append(publish).await.map(AppendedOnce::Appended),
            Some(once) => self.history.append_once(publish, &once).await,
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

    /// Counts an appended event, or reads back a replayed answer.
    fn settle(&self, emitted: Emitted, appended: AppendedOnce) -> Result<EmittedOnce, EmitError> {
        let (event_type, id, rooms) = (emitted.event_type, &emitted.id, &emitted.rooms);
        match appended {
            AppendedOnce::Appended(_) => {
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
            match hook.check(message).await {
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
        match self.history.append(publish).await {
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
        if let Err(e) = self.history.append(publish).await {
            tracing::error!(id = %id, room = %room, error = %e, "test event not accepted");
            return Err(e.into());
        }
        self.metrics.events_emitted.get_or_create(&EventLabels { r#type: ADMIN_TEST }).inc();
        Ok(id)
    }
}

/// The event name of relayed chat messages.
pub const CHAT_MESSAGE: &str = "chat:message";

/// The event name of the admin console's test events.
pub const ADMIN_TEST: &str = "admin:test";

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

/// Emits typed events into rooms. Cheap to clone; generic over the adapter so the
/// same code serves the in-memory and the Redis adapter.
pub struct Emitter<A: Adapter> {
    io: SocketIo<A>,
    publisher: Publisher,
    /// Set once the Socket.IO server is closing: socketioxide panics on an emit to a
    /// closed server, so every operation checks this first.
    closed: Arc<AtomicBool>,
}

impl<A: Adapter> Clone for Emitter<A> {
    fn clone(&self) -> Self {
        Emitter { io: self.io.clone(), publisher: self.publisher.clone(), closed: self.closed.clone() }
    }
}

impl<A: Adapter> Emitter<A> {
    pub fn new(io: SocketIo<A>, publisher: Publisher) -> Self {
        Emitter { io, publisher, closed: Arc::new(AtomicBool::new(false)) }
    }

    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// Closes every socket (clients see their transport close and reconnect elsewhere);
    /// later operations answer [`EmitError::Closed`].
    pub async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.publisher.history.close().await;
        self.io.close().await;
    }

    /// The broadcast operator for `rooms`, unless the server is closing.
    fn to(&self, rooms: Vec<String>) -> Result<socketioxide::operators::BroadcastOperators<A>, EmitError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(EmitError::Closed);
        }
        Ok(self.io.to(rooms))
    }

    /// How many sockets are authenticated as the user or vendor of `room`, on every
    /// instance sharing the adapter (whether or not they left the room itself).
    pub async fn count(&self, room: &Room) -> Result<usize, EmitError> {
        let sockets = self.to(vec![room.identity_room()])?.fetch_sockets().await;
        sockets.map(|s| s.len()).map_err(|e| EmitError::Unavailable(e.to_string()))
    }

    /// Disconnects every socket authenticated as the user or vendor of `room`, on
    /// every instance; returns how many.
    pub async fn disconnect(&self, room: &Room) -> Result<usize, EmitError> {
        let sockets = self.to(vec![room.identity_room()])?.fetch_sockets().await;
        let sockets = sockets.map_err(|e| EmitError::Unavailable(e.to_string()))?;
        let mut disconnected = 0;
        for socket in sockets {
            match socket.disconnect().await {
                Ok(()) => disconnected += 1,
                Err(e) => tracing::warn!(room = %room, error = %e, "socket not disconnected"),
            }
        }
        Ok(disconnected)
    }

    /// Emits one event with its envelope to its rooms, on every instance: answered once
    /// the event is in the history, from which each instance delivers it.
    pub async fn emit(&self, event: &ServerEvent, meta: &EventMeta) -> Result<Emitted, EmitError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(EmitError::Closed);
        }
        self.publisher.emit(event, meta).await
    }

    /// [`Publisher::emit_once`], unless the server is closing.
    pub async fn emit_once(
        &self,
        event: &ServerEvent,
        meta: &EventMeta,
        ttl: std::time::Duration,
    ) -> Result<EmittedOnce, EmitError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(EmitError::Closed);
        }
        self.publisher.emit_once(event, meta, ttl).await
    }

    /// [`Publisher::emit_batch`], unless the server is closing.
    pub async fn emit_batch(
        &self,
        batch: &[BatchEvent<'_>],
        key_ttl: Option<std::time::Duration>,
    ) -> Result<Vec<EmittedOnce>, EmitError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(EmitError::Closed);
        }
        self.publisher.emit_batch(batch, key_ttl).await
    }

    /// `chat:message` to the recipient's room and every socket of the sender (a
    /// controller posting on someone's behalf has no sending socket to leave out).
    pub async fn chat(&self, message: &ChatMessage) -> Result<ChatPublished, EmitError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(EmitError::Closed);
        }
        self.publisher.chat(message, None).await
    }

    /// An `admin:test` event to `room` (the console's test button).
    pub async fn test_event(&self, room: &Room, message: &str) -> Result<Id, EmitError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(EmitError::Closed);
        }
        self.publisher.test_event(room, message).await
    }

    /// `service:created` to `vendor:<service.vendorId>`.
    pub async fn service_created(&self, service: Service, actor: Option<Actor>) -> Result<Emitted, EmitError> {
        self.emit(&ServerEvent::ServiceCreated { service }, &EventMeta::now(actor)).await
    }

    /// `service:updated` to `vendor:<service.vendorId>`.
    pub async fn service_updated(&self, service: Service, actor: Option<Actor>) -> Result<Emitted, EmitError> {
        self.emit(&ServerEvent::ServiceUpdated { service }, &EventMeta::now(actor)).await
    }

    /// `service:status_changed` to `vendor:<service.vendorId>`.
    pub async fn service_status_changed(
        &self,
        service: Service,
        previous_status: Option<String>,
        actor: Option<Actor>,
    ) -> Result<Emitted, EmitError> {
        self.emit(&ServerEvent::ServiceStatusChanged { service, previous_status }, &EventMeta::now(actor)).await
    }

    /// `booking:created` to `user:<booking.userId>` and `vendor:<booking.vendorId>`.
    pub async fn booking_created(&self, booking: Booking, actor: Option<Actor>) -> Result<Emitted, EmitError> {
        self.emit(&ServerEvent::BookingCreated { booking }, &EventMeta::now(actor)).await
    }

    /// `booking:status_changed` to the booking's user and vendor.
    pub async fn booking_status_changed(
        &self,
        booking: Booking,
        previous_status: Option<String>,
        actor: Option<Actor>,
    ) -> Result<Emitted, EmitError> {
        self.emit(&ServerEvent::BookingStatusChanged { booking, previous_status }, &EventMeta::now(actor)).await
    }

    /// `booking:cancelled` to the booking's user and vendor.
    pub async fn booking_cancelled(
        &self,
        booking: Booking,
        reason: Option<String>,
        actor: Option<Actor>,
    ) -> Result<Emitted, EmitError> {
        self.emit(&ServerEvent::BookingCancelled { booking, reason }, &EventMeta::now(actor)).await
    }

    /// `payment:completed` to `user:<payment.userId>` (and the vendor when known).
    pub async fn payment_completed(&self, payment: Payment, actor: Option<Actor>) -> Result<Emitted, EmitError> {
        self.emit(&ServerEvent::PaymentCompleted { payment }, &EventMeta::now(actor)).await
    }

    /// `payment:failed` to `user:<payment.userId>` (and the vendor when known).
    pub async fn payment_failed(
        &self,
        payment: Payment,
        reason: Option<String>,
        actor: Option<Actor>,
    ) -> Result<Emitted, EmitError> {
        self.emit(&ServerEvent::PaymentFailed { payment, reason }, &EventMeta::now(actor)).await
    }
}
