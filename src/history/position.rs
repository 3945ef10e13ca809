//! Positions: where an event sits in a room's history, as the opaque string clients
//! keep in `offsets` and send back in `auth.offsets`.
//!
//! A position is `<epoch>:<ms>-<n>:<room tag>`:
//! - `epoch` (16 hex digits) names the history. A history that was lost (a restart
//!   without Redis, Redis restarted empty) gets a new epoch, so its old positions are
//!   recognised as `unknown` instead of being read as positions of the new one.
//! - `<ms>-<n>` is the event's [`Seq`]: one sequence for the whole history, so every
//!   room's positions increase in the one order in which sockets receive events, and an
//!   event sent to two rooms has the same `Seq` in both (how a replay sends it once).
//! - the tag (8 hex digits, a hash of the room name) says which room the position was
//!   issued for: a position moved to another room's entry is `unknown`.
//!
//! Parsing is strict and total: any string either parses or is refused, never a panic.

use std::fmt;

use serde_json::value::RawValue;

use super::partition::Also;

/// An event's place in the one ordered sequence of a history: milliseconds and a
/// counter within the millisecond, compared in that order (Redis stream ids have this shape).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Seq {
    pub ms: u64,
    pub n: u64,
}

impl Seq {
    /// Before every event.
    pub const ZERO: Seq = Seq { ms: 0, n: 0 };

    /// The next sequence after `self` at wall-clock `now_ms`: never smaller, even if the
    /// clock goes back.
    pub fn next(self, now_ms: u64) -> Seq {
        if now_ms > self.ms { Seq { ms: now_ms, n: 0 } } else { Seq { ms: self.ms, n: self.n.saturating_add(1) } }
    }

    /// Reads `<ms>-<n>` (decimal, no sign, no leading `+`).
    pub fn parse(s: &str) -> Option<Seq> {
        let (ms, n) = s.split_once('-')?;
        Some(Seq { ms: parse_decimal(ms)?, n: parse_decimal(n)? })
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.n)
    }
}

fn parse_decimal(s: &str) -> Option<u64> {
    // `u64::from_str` accepts a leading `+`; positions are canonical, so refuse it.
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The identity of one history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Epoch(pub u64);

impl Epoch {
    /// A fresh random epoch.
    pub fn random() -> Epoch {
        let (hi, lo) = uuid::Uuid::new_v4().as_u64_pair();
        Epoch(hi ^ lo)
    }

    pub fn parse(s: &str) -> Option<Epoch> {
        parse_hex(s, 16).map(Epoch)
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

fn parse_hex(s: &str, digits: usize) -> Option<u64> {
    if s.len() != digits || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

/// Which room a position belongs to: FNV-1a of the room name, 32 bits. Not a secret
/// (rooms in `auth.offsets` are honoured only for the socket's own rooms); it catches
/// a position given for the wrong room.
pub fn room_tag(room: &str) -> u32 {
    room.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// A parsed position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub epoch: Epoch,
    pub seq: Seq,
    pub tag: u32,
}

/// Longest position string accepted; anything longer is not one of ours.
const MAX_LEN: usize = 16 + 1 + 41 + 1 + 8;

impl Position {
    pub fn new(epoch: Epoch, seq: Seq, room: &str) -> Position {
        Position { epoch, seq, tag: room_tag(room) }
    }

    pub fn parse(s: &str) -> Option<Position> {
        if s.len() > MAX_LEN {
            return None;
        }
        let mut parts = s.split(':');
        let (epoch, seq, tag) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let tag = u32::try_from(parse_hex(tag, 8)?).ok()?;
        Some(Position { epoch: Epoch::parse(epoch)?, seq: Seq::parse(seq)?, tag })
    }

    /// Whether this position was issued for `room` in the history `epoch`.
    pub fn belongs_to(&self, epoch: Epoch, room: &str) -> bool {
        self.epoch == epoch && self.tag == room_tag(room)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{:08x}", self.epoch, self.seq, self.tag)
    }
}

/// Adds `"offsets": { "<room>": "<position>", ... }` for an event at `seq` to a
/// serialized JSON object, in one pass and without parsing it again (this runs once per
/// event, under the history's lock). `object` is our own serializer's output: an object,
/// so it ends with `}`.
pub fn splice_offsets(object: &str, epoch: Epoch, seq: Seq, rooms: &[String]) -> String {
    splice_positions(object, rooms.iter().map(|room| (room.as_str(), Position::new(epoch, seq, room))))
}

/// [`splice_offsets`] with each room's position given (rooms of several partitions).
pub fn splice_positions<'r>(object: &str, positions: impl Iterator<Item = (&'r str, Position)> + Clone) -> String {
    let body = object.trim_end();
    let Some(inner) = body.strip_suffix('}') else { return object.to_owned() };
    let mut out = String::with_capacity(body.len() + 16 + positions.clone().map(|(r, _)| r.len() + 52).sum::<usize>());
    out.push_str(inner);
    out.push_str(if inner.trim_end().ends_with('{') { "\"offsets\":{" } else { ",\"offsets\":{" });
    for (i, (room, position)) in positions.enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_key(&mut out, room);
        out.push_str(":\"");
        push_position(&mut out, &position);
        out.push('"');
    }
    out.push_str("}}");
    out
}

/// A JSON string key, escaped as serde_json escapes (ids may hold `"` or `\\`); a room
/// name that needs no escaping (nearly all) is copied as it is, with no allocation.
fn push_json_key(out: &mut String, key: &str) {
    if key.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(key);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(key).unwrap_or_else(|_| "\"\"".to_owned()));
    }
}

/// Writes `position` as its `Display` does, without the formatting machinery: this runs
/// for each room of every event, under the history's lock.
fn push_position(out: &mut String, position: &Position) {
    push_hex(out, position.epoch.0, 16);
    out.push(':');
    push_decimal(out, position.seq.ms);
    out.push('-');
    push_decimal(out, position.seq.n);
    out.push(':');
    push_hex(out, u64::from(position.tag), 8);
}

/// The lowest `digits` hex digits of `value`, lower case, zero-padded.
fn push_hex(out: &mut String, value: u64, digits: u32) {
    for shift in (0..digits).rev().map(|d| d * 4) {
        out.push(char::from(HEX_DIGITS[usize::from((value >> shift) as u8 & 0xf)]));
    }
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

fn push_decimal(out: &mut String, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend(digits[start..].iter().map(|&d| char::from(d)));
}

/// Builds the delivered payload: the envelope, with `offsets` when history is on.
pub fn payload_with_offsets(
    envelope: &str,
    epoch: Option<Epoch>,
    seq: Seq,
    rooms: &[String],
) -> Result<Box<RawValue>, serde_json::Error> {
    let json = match epoch {
        Some(epoch) => splice_offsets(envelope, epoch, seq, rooms),
        None => envelope.to_owned(),
    };
    RawValue::from_string(json)
}

/// [`payload_with_offsets`] for a copy that knows its place in rooms of earlier
/// partitions too ([`Entry::also`]): their positions come first.
pub fn payload_with_also(
    envelope: &str,
    epoch: Option<Epoch>,
    (seq, rooms): (Seq, &[String]),
    also: &[Also],
) -> Result<Box<RawValue>, serde_json::Error> {
    let (Some(epoch), false) = (epoch, also.is_empty()) else {
        return payload_with_offsets(envelope, epoch, seq, rooms);
    };
    let earlier = also.iter().map(|a| (a.room.as_str(), Position::new(a.epoch, a.seq, &a.room)));
    let own = rooms.iter().map(|room| (room.as_str(), Position::new(epoch, seq, room)));
    RawValue::from_string(splice_positions(envelope, earlier.chain(own)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_position_round_trips_through_its_string() {
        let p = Position::new(Epoch(0xdead_beef_0000_0001), Seq { ms: 1_733_040_000_000, n: 7 }, "vendor:v1");
        let s = p.to_string();
        assert!(s.starts_with("deadbeef00000001:1733040000000-7:"), "{s}");
        assert_eq!(Position::parse(&s), Some(p));
        assert!(p.belongs_to(Epoch(0xdead_beef_0000_0001), "vendor:v1"));
        assert!(!p.belongs_to(Epoch(0xdead_beef_0000_0001), "user:v1"));
        assert!(!p.belongs_to(Epoch(2), "vendor:v1"));
    }

    #[test]
    fn malformed_positions_are_refused() {
        for bad in [
            "",
            ":",
            "::",
            "0000000000000001:1-0",
            "0000000000000001:1-0:0000000g",
            "000000000000001:1-0:00000000",
            "0000000000000001:+1-0:00000000",
            "0000000000000001:1--0:00000000",
            "0000000000000001:1-0:00000000:x",
            "0000000000000001:99999999999999999999999-0:00000000",
            "0000000000000001:1-0:0000000A",
            "0000000000000001: 1-0:00000000",
        ] {
            assert_eq!(Position::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn sequences_never_go_back() {
        let s = Seq { ms: 100, n: 3 };
        assert_eq!(s.next(200), Seq { ms: 200, n: 0 });
        assert_eq!(s.next(100), Seq { ms: 100, n: 4 });
        assert_eq!(s.next(50), Seq { ms: 100, n: 4 });
        assert!(Seq { ms: 1, n: 9 } < Seq { ms: 2, n: 0 });
    }

    #[test]
    fn offsets_are_spliced_into_the_envelope() {
        let rooms = ["user:u\"1\\".to_string(), "vendor:v1".to_string()];
        let out = splice_offsets(r#"{"id":"e1","type":"x"}"#, Epoch(1), Seq { ms: 5, n: 0 }, &rooms);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["id"], "e1");
        let p = v["offsets"]["user:u\"1\\"].as_str().unwrap();
        assert_eq!(Position::parse(p), Some(Position::new(Epoch(1), Seq { ms: 5, n: 0 }, &rooms[0])));
        assert!(v["offsets"]["vendor:v1"].is_string());
        let v: serde_json::Value = serde_json::from_str(&splice_offsets("{}", Epoch(1), Seq::ZERO, &[])).unwrap();
        assert_eq!(v, serde_json::json!({ "offsets": {} }));
    }

    proptest! {
        #[test]
        fn parsing_any_string_never_panics(s in ".{0,80}") {
            let _ = Position::parse(&s);
            let _ = Seq::parse(&s);
        }

        #[test]
        fn every_issued_position_parses_back(epoch: u64, ms: u64, n: u64, room in "(user|vendor):.{1,20}") {
            let p = Position::new(Epoch(epoch), Seq { ms, n }, &room);
            prop_assert_eq!(Position::parse(&p.to_string()), Some(p));
            prop_assert!(p.belongs_to(Epoch(epoch), &room));
        }

        #[test]
        fn spliced_positions_read_as_displayed(epoch: u64, ms: u64, n: u64, tag: u32) {
            let position = Position { epoch: Epoch(epoch), seq: Seq { ms, n }, tag };
            let mut out = String::new();
            push_position(&mut out, &position);
            prop_assert_eq!(out, position.to_string());
        }

        #[test]
        fn spliced_keys_are_json_strings(room in "\\PC{0,12}|[\\x00-\\x7f]{0,12}") {
            let mut out = String::new();
            push_json_key(&mut out, &room);
            prop_assert_eq!(out, serde_json::to_string(&room).unwrap());
        }

        #[test]
        fn position_order_follows_sequence_order(a: (u64, u64), b: (u64, u64)) {
            let (sa, sb) = (Seq { ms: a.0, n: a.1 }, Seq { ms: b.0, n: b.1 });
            let pa = Position::parse(&Position::new(Epoch(1), sa, "user:u").to_string()).unwrap();
            let pb = Position::parse(&Position::new(Epoch(1), sb, "user:u").to_string()).unwrap();
            prop_assert_eq!(pa.seq.cmp(&pb.seq), a.cmp(&b));
        }
    }
}
