//! Which events a recovering socket still needs: the rule shared by the replay, the
//! flush of what was buffered meanwhile, and live delivery until the log passes the
//! recovery's snapshot.

use crate::history::{Entry, Seq};

/// Which events a member that recovered still needs. The client holds, per recovered
/// room, everything up to its position there; it joined the other rooms at `since`.
#[derive(Debug, Clone)]
pub struct Filter {
    since: Seq,
    head: Seq,
    known: Vec<(String, Seq)>,
}

impl Filter {
    pub fn new(since: Seq, head: Seq, known: Vec<(String, Seq)>) -> Filter {
        Filter { since, head, known }
    }

    /// Whether the client lacks `e`: past its position in every recovered room `e` was
    /// sent to, or, when `e` went to none of them, sent after the socket connected.
    pub fn wanted(&self, e: &Entry) -> bool {
        let mut in_known = false;
        for (room, p) in &self.known {
            if e.rooms.iter().any(|r| r == room) {
                in_known = true;
                if e.seq <= *p {
                    return false;
                }
            }
        }
        in_known || e.seq > self.since
    }

    /// Whether the replay already sent `e` (or found the client had it).
    pub(super) fn replayed(&self, e: &Entry) -> bool {
        e.seq <= self.head && self.known.iter().any(|(room, _)| e.rooms.iter().any(|r| r == room))
    }

    /// Once the log is past both bounds, every later event is simply wanted.
    pub(super) fn spent(&self, seq: Seq) -> bool {
        seq > self.head && seq > self.since
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    fn e(ms: u64, rooms: &[&str]) -> Entry {
        Entry {
            seq: Seq { ms, n: 0 },
            event: "x".into(),
            rooms: rooms.iter().map(|r| r.to_string()).collect(),
            except: None,
            payload: RawValue::from_string("{}".into()).unwrap(),
        }
    }

    fn s(ms: u64) -> Seq {
        Seq { ms, n: 0 }
    }

    #[test]
    fn a_recovered_room_wants_what_follows_the_clients_position_and_others_what_follows_the_attach() {
        // Attached at 50, snapshot head 100, the client had vendor:v up to 30.
        let f = Filter::new(s(50), s(100), vec![("vendor:v".into(), s(30))]);
        assert!(f.wanted(&e(40, &["vendor:v"])), "missed in the recovered room");
        assert!(!f.wanted(&e(20, &["vendor:v"])), "the client had it");
        assert!(!f.wanted(&e(40, &["user:u"])), "before the socket connected, in a room not recovered");
        assert!(f.wanted(&e(60, &["user:u"])), "after the socket connected");
        // To both rooms: the client's position in the recovered room decides.
        assert!(!f.wanted(&e(25, &["user:u", "vendor:v"])));
        assert!(f.wanted(&e(45, &["user:u", "vendor:v"])));
    }

    #[test]
    fn what_the_snapshot_held_counts_as_replayed_and_the_filter_is_spent_past_both_bounds() {
        let f = Filter::new(s(50), s(100), vec![("vendor:v".into(), s(30))]);
        assert!(f.replayed(&e(90, &["vendor:v", "user:u"])));
        assert!(!f.replayed(&e(90, &["user:u"])), "a room not recovered is not in the snapshot");
        assert!(!f.replayed(&e(101, &["vendor:v"])));
        assert!(!f.spent(s(100)) && f.spent(s(101)));
    }
}
