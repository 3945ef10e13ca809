//! What a socket holds on this instance, and the one way it is given back, whichever
//! way the socket ends.
//!
//! socketioxide can lose a socket's end. `Namespace::connect` (socketioxide 0.18,
//! `ns.rs`) runs the connect middlewares before it puts the socket in the namespace,
//! and `Client::on_disconnect` (`client.rs`, the Engine.IO close) only closes the
//! sockets it finds there. A client that sends CONNECT and drops at once can close its
//! transport while our middlewares run: the close finds no socket, then `connect`
//! either fails to send the CONNECT acknowledgement (the channel is closed) and drops
//! the socket without calling its disconnect handler, or sends it and marks the socket
//! connected after the close already ran. Either way nothing would ever run
//! [`release`]: presence would say "online", the hub and the expiry watch would hold
//! the socket until its token expires.
//!
//! So [`release`] is idempotent (the first caller takes [`Held`]), and it is called
//! from three places: the disconnect handler; [`settle`], for a socket whose CONNECT
//! was never acknowledged; and the connect handler, for a socket found ended or not
//! connected once it has registered its expiry watch.

use std::sync::Arc;
use std::time::Duration;

use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;

use super::SocketCtx;
use super::expiry::Expiries;
use super::users::UserSlot;
use crate::auth::Identity;
use crate::delivery::Hub;

/// How long after its connect middlewares a socket must be connected. socketioxide marks
/// it connected right after they return, with nothing to wait for in between: a socket
/// still not connected this much later never will be.
const CONNECT_SETTLE: Duration = Duration::from_secs(2);

/// What a socket holds until it ends; taken (once) by [`release`].
#[derive(Clone)]
pub(super) struct Held {
    /// The identity rooms it was counted in for presence.
    pub(super) presence: Option<Arc<[String]>>,
}

/// Gives back everything the socket held: its hub membership, transport entry, presence
/// count, expiry watch, user slot, forwarded-address slot and connection count. Returns
/// `false` when it had been released already.
pub(super) fn release<A: Adapter>(
    socket: &SocketRef<A>,
    ctx: &SocketCtx,
    hub: &Hub<A>,
    expiries: &Expiries<A>,
) -> bool {
    let Some(held) = socket.extensions.remove::<Held>() else { return false };
    hub.detach(socket.id);
    hub.transports().forget(&socket.id.to_string());
    if let (Some(presence), Some(who)) = (&ctx.presence, held.presence) {
        presence.disconnected(&who);
    }
    if let Some(identity) = socket.extensions.get::<Arc<Identity>>() {
        expiries.closed(socket.id, identity.exp);
    }
    socket.extensions.remove::<Arc<UserSlot>>();
    socket.extensions.remove::<Arc<crate::net::proxy::ForwardedSlot>>();
    ctx.metrics.connections.dec();
    true
}

/// Whether [`release`] already ran for the socket.
pub(super) fn ended<A: Adapter>(socket: &SocketRef<A>) -> bool {
    socket.extensions.get::<Held>().is_none()
}

/// The connect handler found the socket ended: releases it if nothing did yet, and
/// removes what the handler itself registered (the expiry watch for `exp`, the member).
pub(super) fn ended_before_connect<A: Adapter>(
    socket: &SocketRef<A>,
    ctx: &SocketCtx,
    hub: &Hub<A>,
    expiries: &Expiries<A>,
    exp: u64,
) {
    if release(socket, ctx, hub, expiries) {
        tracing::info!(sid = %super::log_id(socket.id), "socket ended while connecting: released");
    }
    expiries.closed(socket.id, exp);
    hub.detach(socket.id);
}

/// Releases the socket if its CONNECT is never acknowledged (socketioxide dropped it
/// without a disconnect, see the module docs).
pub(super) fn settle<A: Adapter>(
    socket: SocketRef<A>,
    ctx: Arc<SocketCtx>,
    hub: Arc<Hub<A>>,
    expiries: Arc<Expiries<A>>,
) {
    tokio::spawn(async move {
        tokio::time::sleep(CONNECT_SETTLE).await;
        if !socket.connected() && release(&socket, &ctx, &hub, &expiries) {
            tracing::info!(sid = %super::log_id(socket.id), "socket dropped before its CONNECT was acknowledged: released");
        }
    });
}
