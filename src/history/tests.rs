//! The recovery rules of `classify`.

use super::*;

fn s(ms: u64) -> Seq {
    Seq { ms, n: 0 }
}

fn entry(ms: u64) -> Arc<Entry> {
    Arc::new(Entry {
        seq: s(ms),
        part: 0,
        also: vec![],
        event: "e".into(),
        rooms: vec![],
        except: None,
        payload: RawValue::from_string("{}".into()).unwrap(),
    })
}

fn held(after: &[(u64, u64)]) -> RoomView {
    let after = after.iter().map(|(seq, prev)| (entry(*seq), s(*prev))).collect();
    RoomView { exists: true, after, last: Seq::ZERO }
}

fn snap(head: u64, now_ms: u64) -> Snapshot {
    Snapshot { epoch: Epoch(1), head: s(head), now_ms, ttl_ms: 300_000, evicted_at: Seq::ZERO, rooms: vec![] }
}

#[test]
fn a_held_room_recovers_only_without_a_gap() {
    let at = snap(100, 100);
    // Held 10, 20, 30: from 10 the next names 10 as predecessor.
    assert_eq!(classify(s(10), &held(&[(20, 10), (30, 20)]), &at), RoomStatus::Recovered);
    // 5 was trimmed but was the predecessor of the oldest held event.
    assert_eq!(classify(s(5), &held(&[(10, 5), (20, 10)]), &at), RoomStatus::Recovered);
    // A position between two events of the room (e.g. given by a `recovery` event).
    assert_eq!(classify(s(15), &held(&[(20, 10)]), &at), RoomStatus::Recovered);
    // Something between 3 and the oldest held event is gone.
    assert_eq!(classify(s(3), &held(&[(10, 5), (20, 10)]), &at), RoomStatus::Expired);
    // Up to date.
    assert_eq!(classify(s(30), &held(&[]), &at), RoomStatus::Recovered);
    // Past the head: never issued.
    assert_eq!(classify(s(101), &held(&[]), &at), RoomStatus::Unknown);
}

#[test]
fn a_room_not_held_recovers_only_while_it_cannot_have_been_written() {
    let gone = RoomView::default();
    assert_eq!(classify(s(1_000), &gone, &snap(2_000, 2_000)), RoomStatus::Recovered);
    assert_eq!(classify(s(1_000), &gone, &snap(2_000, 1_000 + 300_000)), RoomStatus::Expired);
    let evicted = Snapshot { evicted_at: s(1_500), ..snap(2_000, 2_000) };
    assert_eq!(classify(s(1_000), &gone, &evicted), RoomStatus::Expired);
    assert_eq!(classify(s(1_600), &gone, &evicted), RoomStatus::Recovered);
}
