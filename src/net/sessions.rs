//! Which connection carries each Engine.IO session, so that one session can be closed
//! at its transport.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::ConnHandle;

/// The connection currently carrying each Engine.IO session, so that one session can
/// be closed at the transport: socketioxide offers no way to close a single socket's
/// transport (`Socket::close_underlying_transport` is crate-private in 0.18), and its
/// `disconnect` sends a Socket.IO DISCONNECT, after which the official client does not
/// reconnect. A closed transport makes it reconnect, and recover.
#[derive(Default)]
pub struct Transports {
    sessions: Mutex<HashMap<String, Session>>,
}

struct Session {
    conn: Arc<ConnHandle>,
    /// Closed by us: later requests of the session are refused, so it cannot go on.
    closed: bool,
}

impl Transports {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The session's opening connection (the handshake request), unless a later request
    /// of the session was already seen.
    pub fn opened(&self, sid: &str, conn: &Arc<ConnHandle>) {
        self.lock().entry(sid.to_owned()).or_insert_with(|| Session { conn: conn.clone(), closed: false });
    }

    /// A request of the session arrived on `conn`; a `carrier` (a long-polling `GET`, the
    /// WebSocket upgrade) is where the session's packets now go. Returns `false` when the
    /// session was closed and the request must be refused.
    pub fn seen(&self, sid: &str, conn: &Arc<ConnHandle>, carrier: bool) -> bool {
        let mut sessions = self.lock();
        match sessions.get_mut(sid) {
            Some(session) if session.closed => false,
            Some(session) => {
                if carrier {
                    session.conn = conn.clone();
                }
                true
            }
            None => true,
        }
    }

    /// Closes the session's transport; returns whether one was known.
    pub fn close(&self, sid: &str) -> bool {
        let mut sessions = self.lock();
        let Some(session) = sessions.get_mut(sid) else { return false };
        session.closed = true;
        session.conn.close();
        true
    }

    /// The session ended (called when its socket disconnects): nothing of it is kept.
    pub fn forget(&self, sid: &str) {
        self.lock().remove(sid);
    }

    /// How many sessions are tracked.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_that_ended_is_forgotten_and_a_closed_one_refused_until_then() {
        let transports = Transports::default();
        let conn = Arc::new(ConnHandle::default());
        transports.opened("s1", &conn);
        assert_eq!(transports.len(), 1);
        assert!(transports.seen("s1", &conn, true));
        assert!(transports.close("s1"));
        assert!(!transports.seen("s1", &conn, false), "a session we closed cannot go on");
        transports.forget("s1");
        assert_eq!(transports.len(), 0, "nothing is kept for a session that ended");
        assert!(!transports.close("s1"));
    }
}
