//! Client-side Socket.IO: what happens when a client connects, and the events it may send.

mod handlers;

use std::sync::Arc;

use socketioxide::adapter::Adapter;
use socketioxide::extract::{SocketRef, State};
use socketioxide::socket::DisconnectReason;

use crate::auth::{Identity, JwtVerifier};
use crate::metrics::Metrics;

pub use handlers::Ack;

/// What socket handlers share, stored as the Socket.IO state.
pub struct SocketCtx {
    pub verifier: JwtVerifier,
    pub metrics: Arc<Metrics>,
}

/// Runs after the handshake middleware accepted the client: joins its own rooms and
/// registers the client events.
pub async fn on_connect<A: Adapter>(socket: SocketRef<A>, State(ctx): State<Arc<SocketCtx>>) {
    let Some(identity) = socket.extensions.get::<Identity>() else {
        // The middleware always stores an identity before accepting; never serve without one.
        tracing::error!(sid = %socket.id, "connected socket has no identity; disconnecting");
        let _ = socket.disconnect();
        return;
    };
    let rooms: Vec<String> = identity.own_rooms().iter().map(|r| r.name()).collect();
    socket.join(rooms.clone());
    ctx.metrics.connections.inc();
    tracing::info!(sid = %socket.id, user = %identity.user_id, role = identity.role.as_str(), ?rooms, transport = ?socket.transport_type(), "client connected");

    socket.on("ping", handlers::ping::<A>);
    socket.on("join", handlers::join::<A>);
    socket.on("leave", handlers::leave::<A>);
    socket.on_disconnect(async |socket: SocketRef<A>, reason: DisconnectReason, State(ctx): State<Arc<SocketCtx>>| {
        ctx.metrics.connections.dec();
        tracing::info!(sid = %socket.id, ?reason, "client disconnected");
    });
}
