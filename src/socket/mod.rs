//! Client-side Socket.IO: what happens when a client connects, and the events it may send.

mod chat;
mod expiry;
mod handlers;
mod limit;

use std::sync::Arc;
use std::time::Duration;

use socketioxide::adapter::Adapter;
use socketioxide::extract::{SocketRef, State};
use socketioxide::socket::DisconnectReason;

use crate::auth::{Identity, JwtVerifier};
use crate::config::RateLimit;
use crate::metrics::Metrics;

pub use handlers::Ack;
pub use limit::{SocketLimiter, Verdict};

/// What socket handlers share, stored as the Socket.IO state.
pub struct SocketCtx {
    pub verifier: JwtVerifier,
    pub metrics: Arc<Metrics>,
    pub rate_limit: Option<RateLimit>,
    pub flood_disconnect_after: Duration,
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
    let own = identity.own_rooms();
    let rooms: Vec<String> = own.iter().map(|r| r.name()).collect();
    socket.join(rooms.iter().cloned().chain(own.iter().map(|r| r.identity_room())).collect::<Vec<_>>());
    if let Some(limit) = ctx.rate_limit {
        socket.extensions.insert(Arc::new(SocketLimiter::new(limit, ctx.flood_disconnect_after)));
    }
    ctx.metrics.connections.inc();
    tracing::info!(sid = %socket.id, user = %identity.user_id, role = identity.role.as_str(), ?rooms, transport = ?socket.transport_type(), "client connected");

    socket.on("ping", handlers::ping::<A>);
    socket.on("join", handlers::join::<A>);
    socket.on("leave", handlers::leave::<A>);
    socket.on("chat:send", chat::chat_send::<A>);
    socket.on("chat:typing", chat::chat_typing::<A>);
    socket.on("auth:refresh", expiry::refresh::<A>);
    socket.on_fallback(handlers::unknown::<A>);
    let watch = expiry::watch(&socket, identity.exp);
    socket.on_disconnect(
        async move |socket: SocketRef<A>, reason: DisconnectReason, State(ctx): State<Arc<SocketCtx>>| {
            watch.closed();
            ctx.metrics.connections.dec();
            tracing::info!(sid = %socket.id, ?reason, "client disconnected");
        },
    );
}
