//! Which connection carries each Engine.IO session, so that one session can be closed
//! at its transport, and so that delivery can follow what that connection writes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use super::ConnHandle;
use crate::sync::lock;

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
    route: Arc<Route>,
    /// Closed by us: later requests of the session are refused, so it cannot go on.
    closed: bool,
}

/// Where one session's packets go: shared with delivery, which checks on every packet it
/// sends whether the session moved ([`Route::moves`], one atomic load) and takes the lock
/// only when it did.
#[derive(Debug)]
pub struct Route {
    carrier: Mutex<Arc<ConnHandle>>,
    /// How many times the session moved to another connection (a long-polling `GET` on a
    /// new connection, the upgrade to WebSocket). Bumped under `carrier`'s lock.
    moves: AtomicU32,
}

impl Route {
    fn new(conn: &Arc<ConnHandle>) -> Route {
        Route { carrier: Mutex::new(conn.clone()), moves: AtomicU32::new(0) }
    }

    /// How many times the session has moved: a carrier read with the same count is current.
    pub fn moves(&self) -> u32 {
        self.moves.load(Ordering::Acquire)
    }

    /// The connection carrying the session now, and the [`Route::moves`] it goes with.
    pub fn carrier(&self) -> (Arc<ConnHandle>, u32) {
        let carrier = lock(&self.carrier);
        (carrier.clone(), self.moves.load(Ordering::Acquire))
    }

    /// The session's packets go to `conn` from now on (a move only if it is another connection).
    fn carry(&self, conn: &Arc<ConnHandle>) {
        let mut carrier = lock(&self.carrier);
        if !Arc::ptr_eq(&carrier, conn) {
            *carrier = conn.clone();
            self.moves.fetch_add(1, Ordering::Release);
        }
    }

    fn close(&self) {
        lock(&self.carrier).close();
    }
}

impl Transports {
    /// The session's opening connection (the handshake request), unless a later request
    /// of the session was already seen.
    pub fn opened(&self, sid: &str, conn: &Arc<ConnHandle>) {
        lock(&self.sessions)
            .entry(sid.to_owned())
            .or_insert_with(|| Session { route: Arc::new(Route::new(conn)), closed: false });
    }

    /// A request of the session arrived on `conn`; a `carrier` (a long-polling `GET`, the
    /// WebSocket upgrade) is where the session's packets now go. Returns `false` when the
    /// session was closed and the request must be refused.
    pub fn seen(&self, sid: &str, conn: &Arc<ConnHandle>, carrier: bool) -> bool {
        let mut sessions = lock(&self.sessions);
        match sessions.get_mut(sid) {
            Some(session) if session.closed => false,
            Some(session) => {
                if carrier {
                    session.route.carry(conn);
                }
                true
            }
            None => true,
        }
    }

    /// Closes the session's transport; returns whether one was known.
    pub fn close(&self, sid: &str) -> bool {
        let mut sessions = lock(&self.sessions);
        let Some(session) = sessions.get_mut(sid) else { return false };
        session.closed = true;
        session.route.close();
        true
    }

    /// Where the session's packets go, for as long as it lives; `None` for a session not
    /// (or no longer) known.
    pub fn route(&self, sid: &str) -> Option<Arc<Route>> {
        lock(&self.sessions).get(sid).map(|session| session.route.clone())
    }

    /// The session ended (called when its socket disconnects): nothing of it is kept.
    pub fn forget(&self, sid: &str) {
        lock(&self.sessions).remove(sid);
    }

    /// How many sessions are tracked.
    pub fn len(&self) -> usize {
        lock(&self.sessions).len()
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

    #[test]
    fn a_session_moves_only_when_another_connection_carries_it() {
        let transports = Transports::default();
        let (first, second) = (Arc::new(ConnHandle::default()), Arc::new(ConnHandle::default()));
        transports.opened("s1", &first);
        let route = transports.route("s1").expect("a route");
        assert_eq!(route.moves(), 0);
        assert!(transports.seen("s1", &first, true), "a long poll on the same keep-alive connection");
        assert!(transports.seen("s1", &second, false), "a POST carries nothing to the client");
        assert_eq!(route.moves(), 0);
        assert!(transports.seen("s1", &second, true), "the upgrade");
        let (carrier, moves) = route.carrier();
        assert!(Arc::ptr_eq(&carrier, &second));
        assert_eq!((moves, route.moves()), (1, 1));
        transports.forget("s1");
        assert!(transports.route("s1").is_none());
    }
}
