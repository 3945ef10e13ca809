//! Who a verified client is ([`Identity`]: its user, role and vendor) and which rooms
//! that lets it join.

use serde::{Deserialize, Serialize};

use crate::events::Room;
use crate::events::chat::Party;
use crate::events::id::Id;
use crate::events::room::RoomKind;

/// What a client may be. Any other `role` claim is refused at the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Vendor,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Vendor => "vendor",
            Role::Admin => "admin",
        }
    }
}

/// The verified identity of a connected client, kept on its socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `sub`: the user id.
    pub user_id: Id,
    pub role: Role,
    /// For vendors: `vendorId`, defaulting to `sub`.
    pub vendor_id: Option<Id>,
    /// `exp`, in Unix seconds.
    pub exp: u64,
}

impl Identity {
    /// The rooms joined automatically on connect.
    pub fn own_rooms(&self) -> Vec<Room> {
        let mut rooms = vec![Room::User(self.user_id.clone())];
        if let Some(vendor) = &self.vendor_id {
            rooms.push(Room::Vendor(vendor.clone()));
        }
        rooms
    }

    /// The party this client chats as: a user as its `sub`, a vendor as its `vendorId`.
    /// Admins have no chat identity.
    pub fn chat_party(&self) -> Option<Party> {
        match (self.role, &self.vendor_id) {
            (Role::User, _) => Some(Party { kind: RoomKind::User, id: self.user_id.clone() }),
            (Role::Vendor, Some(vendor)) => Some(Party { kind: RoomKind::Vendor, id: vendor.clone() }),
            (Role::Vendor, None) | (Role::Admin, _) => None,
        }
    }

    /// Whether this client may join (and so receive the events of) `room`.
    pub fn may_join(&self, room: &Room) -> bool {
        match (self.role, room) {
            (Role::Admin, _) => true,
            (_, Room::User(id)) => *id == self.user_id,
            (Role::Vendor, Room::Vendor(id)) => self.vendor_id.as_ref() == Some(id),
            (Role::User, Room::Vendor(_)) => false,
        }
    }
}
