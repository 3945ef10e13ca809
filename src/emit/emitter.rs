//! [`Emitter`]: the typed emitters on a Socket.IO server, which refuse once it closes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;

use super::{BatchEvent, ChatPublished, EmitError, Emitted, EmittedOnce, Publisher};
use crate::events::chat::ChatMessage;
use crate::events::{Actor, Booking, EventMeta, Id, Payment, Room, ServerEvent, Service};

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
        self.publisher.history().close().await;
        self.io.close().await;
    }

    /// `Err(Closed)` once the server has begun closing: nothing new is emitted then.
    fn open(&self) -> Result<(), EmitError> {
        match self.closed.load(Ordering::Acquire) {
            true => Err(EmitError::Closed),
            false => Ok(()),
        }
    }

    /// The broadcast operator for `rooms`, unless the server is closing.
    fn to(&self, rooms: Vec<String>) -> Result<socketioxide::operators::BroadcastOperators<A>, EmitError> {
        self.open()?;
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
        self.open()?;
        self.publisher.emit(event, meta).await
    }

    /// [`Publisher::emit_once`], unless the server is closing.
    pub async fn emit_once(
        &self,
        event: &ServerEvent,
        meta: &EventMeta,
        ttl: std::time::Duration,
    ) -> Result<EmittedOnce, EmitError> {
        self.open()?;
        self.publisher.emit_once(event, meta, ttl).await
    }

    /// [`Publisher::emit_batch`], unless the server is closing.
    pub async fn emit_batch(
        &self,
        batch: &[BatchEvent<'_>],
        key_ttl: Option<std::time::Duration>,
    ) -> Result<Vec<EmittedOnce>, EmitError> {
        self.open()?;
        self.publisher.emit_batch(batch, key_ttl).await
    }

    /// `chat:message` to the recipient's room and every socket of the sender (a
    /// controller posting on someone's behalf has no sending socket to leave out).
    pub async fn chat(&self, message: &ChatMessage) -> Result<ChatPublished, EmitError> {
        self.open()?;
        self.publisher.chat(message, None).await
    }

    /// An `admin:test` event to `room` (the console's test button).
    pub async fn test_event(&self, room: &Room, message: &str) -> Result<Id, EmitError> {
        self.open()?;
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
