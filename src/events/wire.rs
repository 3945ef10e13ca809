//! Every name on the wire besides the catalog's event types ([`super::EventType`]): the
//! events a client may send, the server's events outside the catalog, and the codes an
//! ack refuses with. Handlers, the dispatch table and the AsyncAPI check read these lists;
//! no other file spells a wire name.

/// An event a client may send. Each one is answered by an ack (when the client asks for
/// one): `{ ok: true, ... }` or `{ ok: false, error: <AckCode>, message }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientEvent {
    Ping,
    Join,
    Leave,
    ChatSend,
    ChatTyping,
    AuthRefresh,
}

impl ClientEvent {
    pub const ALL: [ClientEvent; 6] = [
        ClientEvent::Ping,
        ClientEvent::Join,
        ClientEvent::Leave,
        ClientEvent::ChatSend,
        ClientEvent::ChatTyping,
        ClientEvent::AuthRefresh,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ClientEvent::Ping => "ping",
            ClientEvent::Join => "join",
            ClientEvent::Leave => "leave",
            ClientEvent::ChatSend => "chat:send",
            ClientEvent::ChatTyping => CHAT_TYPING,
            ClientEvent::AuthRefresh => "auth:refresh",
        }
    }

    pub fn parse(name: &str) -> Option<ClientEvent> {
        ClientEvent::ALL.into_iter().find(|e| e.as_str() == name)
    }
}

/// The names of [`ClientEvent::ALL`], in its order.
pub const CLIENT_EVENTS: [&str; ClientEvent::ALL.len()] = {
    let mut names = [""; ClientEvent::ALL.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = ClientEvent::ALL[i].as_str();
        i += 1;
    }
    names
};

/// A relayed chat message, to the recipient's room and the sender's.
pub const CHAT_MESSAGE: &str = "chat:message";
/// A typing notice, relayed (volatile) under the name the client sent it with.
pub const CHAT_TYPING: &str = "chat:typing";
/// What a recovery replayed, sent once a reconnecting socket is live again.
pub const RECOVERY: &str = "recovery";
/// Sent just before a socket is disconnected because its token expired.
pub const AUTH_EXPIRED: &str = "auth:expired";
/// The admin console's test event.
pub const ADMIN_TEST: &str = "admin:test";

/// The server's events outside the catalog.
pub const NON_CATALOG_SERVER_EVENTS: [&str; 5] = [CHAT_MESSAGE, CHAT_TYPING, RECOVERY, AUTH_EXPIRED, ADMIN_TEST];

/// The name of an event the server sends through its history (a catalog type, or one
/// of [`NON_CATALOG_SERVER_EVENTS`]), as a `&'static str`: for a name read back from a
/// record the server stored.
pub fn server_event(name: &str) -> Option<&'static str> {
    let catalog = super::EventType::ALL.into_iter().map(super::EventType::as_str);
    catalog.chain(NON_CATALOG_SERVER_EVENTS).find(|known| *known == name)
}

/// Why an ack refuses a client event: a stable code on the wire (`error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckCode {
    /// Over the socket's (or its user's) event rate.
    RateLimited,
    /// Not this client's to do (a room it may not join, a chat pair not allowed).
    Forbidden,
    /// A name no handler answers.
    UnknownEvent,
    /// The payload is not what the event takes.
    InvalidPayload,
    /// `auth:refresh` with a token that does not verify or is another identity's.
    InvalidToken,
    /// The chat hook refused the message.
    Rejected,
    /// The message could not be accepted now (history or chat hook away); retry.
    Unavailable,
}

impl AckCode {
    pub const ALL: [AckCode; 7] = [
        AckCode::RateLimited,
        AckCode::Forbidden,
        AckCode::UnknownEvent,
        AckCode::InvalidPayload,
        AckCode::InvalidToken,
        AckCode::Rejected,
        AckCode::Unavailable,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            AckCode::RateLimited => "rate_limited",
            AckCode::Forbidden => "forbidden",
            AckCode::UnknownEvent => "unknown_event",
            AckCode::InvalidPayload => "invalid_payload",
            AckCode::InvalidToken => "invalid_token",
            AckCode::Rejected => "rejected",
            AckCode::Unavailable => "unavailable",
        }
    }
}

impl std::fmt::Display for AckCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_event_reads_back_from_its_name() {
        for event in ClientEvent::ALL {
            assert_eq!(ClientEvent::parse(event.as_str()), Some(event));
        }
        assert_eq!(CLIENT_EVENTS, ["ping", "join", "leave", "chat:send", "chat:typing", "auth:refresh"]);
        assert_eq!(ClientEvent::parse("error"), None);
        assert_eq!(server_event("booking:created"), Some("booking:created"));
        assert_eq!(server_event(CHAT_MESSAGE), Some(CHAT_MESSAGE));
        assert_eq!(server_event("chat:send"), None);
    }
}
