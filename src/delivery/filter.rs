//! Which events a recovering socket still needs: the rule shared by the replay, the
//! flush of what was buffered meanwhile, and live delivery until the logs pass the
//! recovery's snapshots; and which copy of an event to rooms of several partitions a
//! socket takes ([`covered_elsewhere`]).

use crate::history::{Entry, Seq};

/// Whether a member in `rooms` (each with the position, in its partition, from which it
/// receives that room's events; `Seq::ZERO` for a room it recovered) gets `e` through the
/// copy of an earlier partition: `e` names its place in one of those rooms, and that
/// place is one the member receives (or, for a recovered room, has or is replayed).
/// Then this copy is not for it: each socket takes an event through the first of the
/// event's partitions where it has a room that gives it.
pub fn covered_elsewhere(rooms: &[(String, Seq)], e: &Entry) -> bool {
    e.also.iter().any(|a| rooms.iter().any(|(room, since)| *room == a.room && a.seq > *since))
}

/// Which events a member that recovered still needs. The client holds, per recovered
/// room, everything up to its position there; it joined the other rooms at `since`
/// (per partition).
#[derive(Debug, Clone)]
pub struct Filter {
    since: Vec<Seq>,
    /// Per partition, the snapshot's tick (`Seq::ZERO` where none was taken).
    head: Vec<Seq>,
    known: Vec<(String, Seq)>,
    /// The member's rooms for [`covered_elsewhere`].
    rooms: Vec<(String, Seq)>,
}

impl Filter {
    /// `rooms`: the member's rooms, each from where it receives it; the `known` ones (recovered)
    /// are taken as wholly covered.
    pub fn new(since: Vec<Seq>, head: Vec<Seq>, known: Vec<(String, Seq)>, rooms: &[(String, Seq)]) -> Filter {
        let rooms = rooms
            .iter()
            .map(|(room, since)| match known.iter().any(|(k, _)| k == room) {
                true => (room.clone(), Seq::ZERO),
                false => (room.clone(), *since),
            })
            .collect();
        Filter { since, head, known, rooms }
    }

    /// Whether the client lacks `e`: past its position in every recovered room `e` was
    /// sent to, or, when `e` went to none of them, sent after the socket connected; and
    /// not coming through another partition's copy.
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
        (in_known || e.seq > at(&self.since, e.part)) && !covered_elsewhere(&self.rooms, e)
    }

    /// Whether the replay already sent `e` (or found the client had it).
    pub(super) fn replayed(&self, e: &Entry) -> bool {
        e.seq <= at(&self.head, e.part) && self.known.iter().any(|(room, _)| e.rooms.iter().any(|r| r == room))
    }

    /// Once every partition's log is past both bounds, every later event is simply
    /// wanted (but for [`covered_elsewhere`], which the member checks itself).
    pub(super) fn spent(&self, positions: &[Seq]) -> bool {
        let past = |bounds: &[Seq]| bounds.iter().enumerate().all(|(part, b)| at(positions, part) > *b);
        past(&self.since) && past(&self.head)
    }

    /// Whether the member recovered a room: otherwise the filter takes every event after
    /// the attach, which is all live delivery hands on (but for [`covered_elsewhere`],
    /// which the member checks with its own rooms).
    pub(super) fn recovered_any(&self) -> bool {
        !self.known.is_empty()
    }

    /// The member's rooms as the filter sees them: recovered ones wholly covered.
    pub(super) fn rooms(&self) -> &[(String, Seq)] {
        &self.rooms
    }
}

/// The bound of partition `part` (`Seq::ZERO` past the end: nothing seen there).
fn at(bounds: &[Seq], part: usize) -> Seq {
    bounds.get(part).copied().unwrap_or(Seq::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Also, Epoch};
    use serde_json::value::RawValue;

    fn e(ms: u64, rooms: &[&str]) -> Entry {
        Entry {
            seq: Seq { ms, n: 0 },
            part: 0,
            also: vec![],
            event: "x".into(),
            rooms: rooms.iter().map(|r| r.to_string()).collect(),
            except: None,
            payload: RawValue::from_string("{}".into()).unwrap(),
        }
    }

    fn s(ms: u64) -> Seq {
        Seq { ms, n: 0 }
    }

    fn own(since: u64) -> Vec<(String, Seq)> {
        vec![("user:u".into(), s(since)), ("vendor:v".into(), s(since))]
    }

    #[test]
    fn a_recovered_room_wants_what_follows_the_clients_position_and_others_what_follows_the_attach() {
        // Attached at 50, snapshot head 100, the client had vendor:v up to 30.
        let f = Filter::new(vec![s(50)], vec![s(100)], vec![("vendor:v".into(), s(30))], &own(50));
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
        let f = Filter::new(vec![s(50)], vec![s(100)], vec![("vendor:v".into(), s(30))], &own(50));
        assert!(f.replayed(&e(90, &["vendor:v", "user:u"])));
        assert!(!f.replayed(&e(90, &["user:u"])), "a room not recovered is not in the snapshot");
        assert!(!f.replayed(&e(101, &["vendor:v"])));
        assert!(!f.spent(&[s(100)]) && f.spent(&[s(101)]));
    }

    #[test]
    fn a_copy_is_taken_only_when_no_earlier_partitions_room_gives_the_event() {
        // user:u in partition 0 (attached at 50), vendor:v in partition 1 (attached at 70).
        let rooms = vec![("user:u".to_string(), s(50)), ("vendor:v".to_string(), s(70))];
        let mut copy = e(80, &["vendor:v"]);
        copy.part = 1;
        copy.also = vec![Also { room: "user:u".into(), epoch: Epoch(1), seq: s(60) }];
        assert!(covered_elsewhere(&rooms, &copy), "user:u's copy (60, after the attach) reaches the socket");
        copy.also[0].seq = s(40);
        assert!(!covered_elsewhere(&rooms, &copy), "user:u's copy came before the attach: this one is the socket's");
        // A recovered user:u covers it wherever the copy is: the client has it or is replayed it.
        let f = Filter::new(vec![s(50), s(70)], vec![s(90), s(90)], vec![("user:u".into(), s(10))], &rooms);
        assert!(!f.wanted(&copy));
        copy.also[0].room = "user:other".into();
        assert!(f.wanted(&copy), "a room the socket is not in covers nothing");
    }
}
