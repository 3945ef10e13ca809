//! Rooms: `user:<id>` and `vendor:<id>`, the only rooms clients are ever in.

use std::fmt;

use super::id::{Id, IdError};

/// A room a socket can be in. Its `Display` form is the Socket.IO room name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Room {
    User(Id),
    Vendor(Id),
}

/// The `type` of a room as clients and the REST API name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomKind {
    User,
    Vendor,
}

impl RoomKind {
    pub fn parse(s: &str) -> Option<RoomKind> {
        match s {
            "user" => Some(RoomKind::User),
            "vendor" => Some(RoomKind::Vendor),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RoomKind::User => "user",
            RoomKind::Vendor => "vendor",
        }
    }
}

impl Room {
    pub fn new(kind: RoomKind, id: Id) -> Room {
        match kind {
            RoomKind::User => Room::User(id),
            RoomKind::Vendor => Room::Vendor(id),
        }
    }

    pub fn from_parts(kind: &str, id: &str) -> Result<Room, RoomError> {
        let kind = RoomKind::parse(kind).ok_or(RoomError::Kind)?;
        Ok(Room::new(kind, Id::new(id).map_err(RoomError::Id)?))
    }

    pub fn kind(&self) -> RoomKind {
        match self {
            Room::User(_) => RoomKind::User,
            Room::Vendor(_) => RoomKind::Vendor,
        }
    }

    pub fn id(&self) -> &Id {
        match self {
            Room::User(id) | Room::Vendor(id) => id,
        }
    }

    /// The Socket.IO room name, e.g. `vendor:v1`.
    pub fn name(&self) -> String {
        self.to_string()
    }

    /// The internal room of the sockets authenticated as this user or vendor, e.g.
    /// `auth:vendor:v1`. Presence and forced disconnects use it: a client can leave
    /// `user:<id>` (and stop its events) but never this one, since `join`/`leave`
    /// only name `user:` and `vendor:` rooms.
    pub fn identity_room(&self) -> String {
        format!("auth:{self}")
    }
}

impl fmt::Display for Room {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind().as_str(), self.id())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RoomError {
    #[error("type must be \"user\" or \"vendor\"")]
    Kind,
    #[error("id {0}")]
    Id(IdError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_are_kind_colon_id() {
        assert_eq!(Room::from_parts("user", "42").unwrap().name(), "user:42");
        assert_eq!(Room::from_parts("vendor", "v1").unwrap().name(), "vendor:v1");
        assert_eq!(Room::from_parts("admin", "x"), Err(RoomError::Kind));
        assert!(matches!(Room::from_parts("user", ""), Err(RoomError::Id(_))));
    }
}
