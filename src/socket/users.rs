//! Limits shared by every socket of one token subject (`sub`): how many sockets it may
//! hold at once, and one chat rate for all of them. Without this, opening more sockets
//! multiplies what a user may send and what the server holds for it.
//!
//! A user's entry lives exactly as long as one of its sockets does: the count is taken
//! and checked under one lock (200 sockets opened at once against a cap of 100 get
//! exactly 100), and the last [`UserSlot`] to go removes the entry, so the map never
//! holds users that have no socket.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::limit::SocketLimiter;
use crate::config::RateLimit;
use crate::sync::lock;

/// Why a user may not open another socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this user already holds {max} sockets")]
pub struct TooManySockets {
    pub max: usize,
}

struct Entry {
    sockets: usize,
    /// The chat rate of all of this user's sockets together.
    chat: Option<Arc<SocketLimiter>>,
}

/// Every user with a socket on this instance.
pub struct Users {
    max_per_user: Option<usize>,
    chat_rate: Option<RateLimit>,
    flood_after: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Users {
    /// `max_per_user`: `None` for no cap; `chat_rate`: `None` for no chat limit.
    pub fn new(max_per_user: Option<usize>, chat_rate: Option<RateLimit>, flood_after: Duration) -> Arc<Users> {
        Arc::new(Users { max_per_user, chat_rate, flood_after, entries: Mutex::new(HashMap::new()) })
    }

    /// Counts one more socket for `user`, unless it already holds the most allowed.
    pub fn enter(self: &Arc<Self>, user: &str) -> Result<UserSlot, TooManySockets> {
        let mut entries = lock(&self.entries);
        let sockets = entries.get(user).map_or(0, |e| e.sockets);
        if let Some(max) = self.max_per_user
            && sockets >= max
        {
            return Err(TooManySockets { max });
        }
        let entry = entries.entry(user.to_owned()).or_insert_with(|| Entry {
            sockets: 0,
            chat: self.chat_rate.map(|rate| Arc::new(SocketLimiter::new(rate, self.flood_after))),
        });
        entry.sockets += 1;
        let chat = entry.chat.clone();
        Ok(UserSlot { users: self.clone(), user: user.to_owned(), chat })
    }

    fn leave(&self, user: &str) {
        let mut entries = lock(&self.entries);
        if let Some(entry) = entries.get_mut(user) {
            entry.sockets = entry.sockets.saturating_sub(1);
            if entry.sockets == 0 {
                entries.remove(user);
            }
        }
    }

    /// Sockets `user` holds now.
    pub fn sockets(&self, user: &str) -> usize {
        lock(&self.entries).get(user).map_or(0, |e| e.sockets)
    }

    /// Users with at least one socket.
    pub fn len(&self) -> usize {
        lock(&self.entries).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One socket's place in its user's count, given back when dropped: however the socket
/// ends, the count follows (kept in the socket's extensions, shared as an `Arc`).
pub struct UserSlot {
    users: Arc<Users>,
    user: String,
    chat: Option<Arc<SocketLimiter>>,
}

impl UserSlot {
    /// The limiter every socket of this user shares for chat messages.
    pub fn chat(&self) -> Option<&SocketLimiter> {
        self.chat.as_deref()
    }
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        self.users.leave(&self.user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socket::Verdict;
    use std::num::NonZeroU32;

    fn users(max: Option<usize>) -> Arc<Users> {
        let n = |v| NonZeroU32::new(v).unwrap();
        Users::new(max, Some(RateLimit { per_second: n(1), burst: n(3) }), Duration::from_secs(60))
    }

    #[test]
    fn a_user_gets_at_most_the_cap_and_a_slot_given_back_is_reusable() {
        let users = users(Some(2));
        let a = users.enter("u1").unwrap();
        let _b = users.enter("u1").unwrap();
        assert_eq!(users.enter("u1").err(), Some(TooManySockets { max: 2 }));
        assert!(users.enter("u2").is_ok(), "another user is not affected");
        drop(a);
        assert_eq!(users.sockets("u1"), 1);
        assert!(users.enter("u1").is_ok());
    }

    #[test]
    fn a_user_without_sockets_leaves_no_entry() {
        let users = users(None);
        let slots: Vec<UserSlot> = (0..500).map(|_| users.enter("u1").unwrap()).collect();
        assert_eq!(users.sockets("u1"), 500, "no cap");
        drop(slots);
        assert!(users.is_empty());
    }

    #[test]
    fn the_sockets_of_one_user_share_one_chat_rate() {
        let users = users(None);
        let a = users.enter("u1").unwrap();
        let b = users.enter("u1").unwrap();
        let other = users.enter("u2").unwrap();
        let verdicts: Vec<Verdict> = [&a, &b, &a, &b].iter().map(|s| s.chat().unwrap().check()).collect();
        assert_eq!(verdicts[..3], [Verdict::Allowed; 3], "the burst of 3, across both sockets");
        assert_ne!(verdicts[3], Verdict::Allowed);
        assert_eq!(other.chat().unwrap().check(), Verdict::Allowed);
    }

    #[test]
    fn concurrent_connects_get_exactly_the_cap() {
        let users = users(Some(100));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let users = users.clone();
                std::thread::spawn(move || (0..25).filter_map(|_| users.enter("u1").ok()).collect::<Vec<_>>())
            })
            .collect();
        let slots: Vec<UserSlot> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
        assert_eq!(slots.len(), 100);
        assert_eq!(users.sockets("u1"), 100);
    }
}
