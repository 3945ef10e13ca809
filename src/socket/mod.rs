//! Client-side Socket.IO: what happens when a client connects, and the events it may send.

mod chat_events;
pub mod expiry;
mod handlers;
pub mod handshake;
mod lifecycle;
mod limit;
pub mod membership;
pub mod users;

use std::sync::Arc;
use std::time::Duration;

use socketioxide::adapter::Adapter;
use socketioxide::extract::{Event, SocketRef, State, TryData};
use socketioxide::socket::DisconnectReason;

use crate::auth::{Identity, JwtVerifier};
use crate::config::RateLimit;
use crate::delivery::{Hub, OffsetsRequest, Ticket, recover};
use crate::emit::Publisher;
use crate::events::Room;
use crate::events::wire::ClientEvent;
use crate::metrics::Metrics;
use lifecycle::{Held, release};
use membership::Membership;

pub use handlers::Ack;
pub use limit::{SocketLimiter, Verdict};
pub use users::Users;

pub use crate::telemetry::log_id;

/// When a socket connected, in Unix milliseconds (kept only with the console on).
#[derive(Debug, Clone, Copy)]
pub struct ConnectedAt(pub u64);

/// What socket handlers share, stored as the Socket.IO state (the adapter-typed
/// [`Hub`] is a state of its own).
pub struct SocketCtx {
    pub verifier: JwtVerifier,
    pub metrics: Arc<Metrics>,
    pub publisher: Publisher,
    pub rate_limit: Option<RateLimit>,
    pub flood_disconnect_after: Duration,
    /// Counts sockets per identity for presence webhooks, when they are on.
    pub presence: Option<Arc<crate::hooks::presence::Tracker>>,
    /// Sockets per client address behind a trusted proxy.
    pub forwarded: Arc<crate::net::ForwardedConns>,
    /// Keep each socket's connection time (the admin console shows it).
    pub record_connected_at: bool,
    /// Sockets per token subject, and the chat rate each subject's sockets share.
    pub users: Arc<Users>,
}

/// Why a socket could not be prepared (never expected: the handshake stores the identity).
#[derive(Debug, thiserror::Error)]
#[error("internal: no identity on the socket")]
pub struct NoIdentity;

/// Connect middleware, run after [`handshake::authenticate`] and before the
/// CONNECT is acknowledged: joins the client's rooms and registers its events. Done
/// here, not in the connect handler, because socketioxide starts that handler as a task
/// after the acknowledgement: an event the client sends at once could find no handler
/// yet and be dropped.
pub async fn prepare<A: Adapter>(
    socket: SocketRef<A>,
    State(ctx): State<Arc<SocketCtx>>,
    State(hub): State<Arc<Hub<A>>>,
    State(expiries): State<Arc<expiry::Expiries<A>>>,
) -> Result<(), NoIdentity> {
    let identity = socket.extensions.get::<Arc<Identity>>().ok_or(NoIdentity)?;
    let own = identity.own_rooms();
    if let Some(info) = socket.req_parts().extensions.get::<axum::extract::ConnectInfo<crate::net::ClientAddr>>() {
        hub.transports().opened(&socket.id.to_string(), &info.0.1);
    }
    ctx.publisher.history().need(|| own.iter().map(Room::name).collect()).await;
    socket.extensions.insert(Membership::new(&socket, &hub).enter_own(&own));
    if let Some(client) = socket.req_parts().extensions.get::<crate::net::ClientIp>()
        && client.proxied
    {
        socket.extensions.insert(Arc::new(ctx.forwarded.enter(client.ip)));
    }
    let mut held = Held { presence: None };
    if let Some(presence) = &ctx.presence {
        let who: Vec<String> = own.iter().map(|r| r.name()).collect();
        presence.connected(&who);
        held.presence = Some(who.into());
    }
    socket.extensions.insert(held);
    ctx.metrics.connections.inc();
    if ctx.record_connected_at {
        socket.extensions.insert(ConnectedAt(crate::clock::unix_ms()));
    }
    if let Some(limit) = ctx.rate_limit {
        socket.extensions.insert(Arc::new(SocketLimiter::new(limit, ctx.flood_disconnect_after)));
    }
    socket.on_fallback(dispatch::<A>);
    socket.on_disconnect(
        async |socket: SocketRef<A>,
               reason: DisconnectReason,
               State(ctx): State<Arc<SocketCtx>>,
               State(hub): State<Arc<Hub<A>>>,
               State(expiries): State<Arc<expiry::Expiries<A>>>| {
            release(&socket, &ctx, &hub, &expiries);
            tracing::info!(sid = %crate::socket::log_id(socket.id), ?reason, "client disconnected");
        },
    );
    lifecycle::settle(socket, ctx, hub, expiries);
    Ok(())
}

/// The client events, by name ([`ClientEvent`]). One handler for all of them: a
/// handler per event costs every socket a table of its own (about 350 bytes).
async fn dispatch<A: Adapter>(
    socket: SocketRef<A>,
    Event(event): Event,
    data: TryData<serde_json::Value>,
    reply: handlers::Reply<A>,
    ctx: State<Arc<SocketCtx>>,
    hub: State<Arc<Hub<A>>>,
    expiries: State<Arc<expiry::Expiries<A>>>,
) {
    let ack = reply.ack;
    match ClientEvent::parse(&event) {
        Some(ClientEvent::Ping) => handlers::ping(socket, ack).await,
        Some(ClientEvent::Join) => handlers::join(socket, data, ack, ctx, hub).await,
        Some(ClientEvent::Leave) => handlers::leave(socket, data, ack, hub).await,
        Some(ClientEvent::ChatSend) => {
            chat_events::chat_send(socket, data, handlers::Reply { ack, wanted: reply.wanted }, ctx, hub).await;
        }
        // Boxed, these two rare arms: inline, their futures (about 1 KB each) would make
        // every client event's task as large, and tokio copies it when it spawns one.
        Some(ClientEvent::ChatTyping) => Box::pin(chat_events::chat_typing(socket, data, ack)).await,
        Some(ClientEvent::AuthRefresh) => Box::pin(expiry::refresh(socket, data, ack, ctx, expiries)).await,
        None => handlers::unknown(socket, Event(event), ack).await,
    }
}

/// The events a client may send (the names of [`ClientEvent::ALL`]).
pub use crate::events::wire::CLIENT_EVENTS;

/// Runs once the client is connected: starts the token-expiry watch, counts and logs it,
/// then starts delivery to it (after a recovery when it sent `auth.offsets`).
pub async fn on_connect<A: Adapter>(
    socket: SocketRef<A>,
    State(ctx): State<Arc<SocketCtx>>,
    State(hub): State<Arc<Hub<A>>>,
    State(expiries): State<Arc<expiry::Expiries<A>>>,
) {
    let (Some(identity), Some(ticket)) = (socket.extensions.get::<Arc<Identity>>(), socket.extensions.get::<Ticket>())
    else {
        return;
    };
    // Watched first, then checked: a disconnect that runs after the check finds the watch
    // and removes it (see `lifecycle`).
    expiries.watch(&socket, identity.exp);
    if lifecycle::ended(&socket) || !socket.connected() {
        lifecycle::ended_before_connect(&socket, &ctx, &hub, &expiries, identity.exp);
        return;
    }
    let rooms: Vec<String> = identity.own_rooms().iter().map(|r| r.name()).collect();
    let ip = client_ip(&socket).map(|ip| ip.to_string()).unwrap_or_default();
    tracing::info!(sid = %crate::socket::log_id(socket.id), user = %identity.user_id, role = identity.role.as_str(), ?rooms, %ip, transport = ?socket.transport_type(), "client connected");
    let request = socket.extensions.get::<OffsetsRequest>();
    recover(&hub, ctx.publisher.history(), &socket, ticket, rooms, request).await;
    // Gone during the recovery: whatever the disconnect did not find yet goes now.
    if lifecycle::ended(&socket) || !socket.connected() {
        let exp = socket.extensions.get::<Arc<Identity>>().map_or(identity.exp, |current| current.exp);
        lifecycle::ended_before_connect(&socket, &ctx, &hub, &expiries, exp);
    }
}

/// The client's address as the handshake guard read it (behind a trusted proxy: the
/// forwarded one), else the peer's.
fn client_ip<A: Adapter>(socket: &SocketRef<A>) -> Option<std::net::IpAddr> {
    let parts = socket.req_parts();
    parts.extensions.get::<crate::net::ClientIp>().map(|c| c.ip).or_else(|| {
        parts.extensions.get::<axum::extract::ConnectInfo<crate::net::ClientAddr>>().map(|info| info.0.0.ip())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use socketioxide::adapter::LocalAdapter;

    /// The size of the future `make` would return, without running it.
    fn future_size<F: std::future::Future>(_make: impl FnOnce() -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// socketioxide spawns a task per client event with `dispatch`'s future, copying it:
    /// a large future that only a rare event needs (Redis's append, `auth:refresh`,
    /// `chat:typing`) must stay boxed, not inline. (Unoptimized sizes: about 3.6 KB
    /// with them inline, 1.1 KB boxed.)
    #[test]
    #[allow(unreachable_code, clippy::diverging_sub_expression)]
    fn a_client_events_future_stays_small() {
        let dispatch =
            future_size(|| dispatch::<LocalAdapter>(todo!(), todo!(), todo!(), todo!(), todo!(), todo!(), todo!()));
        let chat = future_size(|| Publisher::chat(todo!(), todo!(), None));
        let typing = future_size(|| chat_events::chat_typing::<LocalAdapter>(todo!(), todo!(), todo!()));
        let refresh = future_size(|| expiry::refresh::<LocalAdapter>(todo!(), todo!(), todo!(), todo!(), todo!()));
        let sizes =
            format!("dispatch {dispatch}, Publisher::chat {chat}, chat:typing {typing}, auth:refresh {refresh}");
        assert!(chat <= 512 && dispatch <= 2048, "{sizes}");
    }
}
