//! A socket's rooms are kept in two places that must agree: socketioxide's rooms (what
//! the adapter's cross-instance requests see: presence counts, disconnects, the volatile
//! `chat:typing` relay) and the delivery hub's (what the log's events are delivered to).
//! [`Membership`] is the one way in and out of a room, so neither is changed alone.

use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;

use crate::delivery::{Hub, Ticket};
use crate::events::Room;

/// One socket's rooms, in both places.
pub struct Membership<'a, A: Adapter> {
    socket: &'a SocketRef<A>,
    hub: &'a Hub<A>,
}

impl<'a, A: Adapter> Membership<'a, A> {
    pub fn new(socket: &'a SocketRef<A>, hub: &'a Hub<A>) -> Self {
        Membership { socket, hub }
    }

    /// At connect, before the CONNECT is acknowledged: the client's own rooms (and their
    /// identity rooms, which only socketioxide keeps: a user who leaves its room is
    /// still counted and disconnected as that user). Delivery starts pending; the
    /// [`Ticket`] says from where.
    pub fn enter_own(&self, own: &[Room]) -> Ticket {
        let names: Vec<String> = own.iter().map(Room::name).collect();
        self.socket.join(names.iter().cloned().chain(own.iter().map(Room::identity_room)).collect::<Vec<_>>());
        self.hub.attach(self.socket, names)
    }

    /// The socket receives `room`'s events from now on (the caller checked it may).
    pub fn join(&self, room: &Room) {
        self.socket.join(room.name());
        self.hub.join(self.socket.id, &room.name());
    }

    /// The socket no longer receives `room`'s events; leaving a room it is not in is a no-op.
    pub fn leave(&self, room: &Room) {
        self.socket.leave(room.name());
        self.hub.leave(self.socket.id, &room.name());
    }
}
