//! Reading Redis replies of the history's scripts and of `XREAD` (RESP2 or RESP3
//! shapes) into entries and room views. Anything malformed is skipped or refused,
//! never a panic: the data is ours, but Redis is another process.

use std::sync::Arc;

use redis::Value;

use super::{Also, Entry, Epoch, RoomView, Seq, payload_with_also};

/// One log entry as stored.
pub(super) struct RawEntry {
    pub seq: Seq,
    pub prev: Seq,
    pub epoch: Epoch,
    event: String,
    rooms: Vec<String>,
    except: Option<String>,
    payload: String,
    also: Vec<Also>,
}

impl RawEntry {
    /// The entry as delivered, from partition `part`.
    pub fn into_entry(self, offsets: bool, part: usize) -> Option<Entry> {
        // A snapshot's tick: no rooms, nothing to splice.
        let epoch = (offsets && !self.rooms.is_empty()).then_some(self.epoch);
        let payload = payload_with_also(&self.payload, epoch, (self.seq, &self.rooms), &self.also).ok()?;
        let (seq, event, rooms, except, also) = (self.seq, self.event, self.rooms, self.except, self.also);
        Some(Entry { seq, part, event, rooms, also, except, payload })
    }
}

/// The entries of an `XREAD` reply on one stream (RESP2 or RESP3 shape); empty on timeout.
pub(super) fn log_entries(reply: Value) -> Vec<RawEntry> {
    let streams = match reply {
        Value::Map(pairs) => pairs.into_iter().map(|(_, v)| v).collect(),
        Value::Array(items) => items.into_iter().filter_map(|s| array(s)?.into_iter().nth(1)).collect(),
        _ => Vec::new(),
    };
    let entries = streams.into_iter().filter_map(array).flatten();
    entries.filter_map(|e| stream_entry(e).and_then(|(seq, fields)| raw_log_entry(seq, &fields))).collect()
}

fn raw_log_entry(seq: Seq, fields: &[(String, String)]) -> Option<RawEntry> {
    let get = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.as_str());
    Some(RawEntry {
        seq,
        prev: Seq::parse(get("v")?)?,
        epoch: Epoch::parse(get("e")?)?,
        event: get("n")?.to_owned(),
        rooms: split_rooms(get("r")?),
        except: get("x").filter(|x| !x.is_empty()).map(str::to_owned),
        payload: get("p")?.to_owned(),
        also: also(get("a"))?,
    })
}

/// An entry's places in earlier partitions: none when the field is empty or absent
/// (written by an older version); `None` when it is malformed.
fn also(field: Option<&str>) -> Option<Vec<Also>> {
    match field {
        None | Some("") => Some(Vec::new()),
        Some(text) => Also::decode(text),
    }
}

fn split_rooms(joined: &str) -> Vec<String> {
    joined.split('\n').filter(|r| !r.is_empty()).map(str::to_owned).collect()
}

/// One room of the snapshot reply: `{0}` (no such room) or `{1, first page, newest id}`
/// (the newest id empty when the page holds the rest of the room).
pub(super) fn room_view(v: Value, epoch: Epoch, offsets: bool, part: usize) -> Option<RoomView> {
    let mut parts = array(v)?.into_iter();
    if int(parts.next()?)? == 0 {
        return Some(RoomView::default());
    }
    let epoch = offsets.then_some(epoch);
    let after: Vec<_> = array(parts.next()?)?.into_iter().filter_map(|e| room_entry(e, epoch, part)).collect();
    let last = match text(parts.next()?)?.as_str() {
        "" => after.last().map_or(Seq::ZERO, |(e, _)| e.seq),
        id => Seq::parse(id)?,
    };
    Some(RoomView { exists: true, after, last })
}

/// The entries of a room's stream (`XRANGE`/`XREVRANGE`), each with its room predecessor.
pub(super) fn room_entries(v: Value, epoch: Option<Epoch>, part: usize) -> Vec<(Arc<Entry>, Seq)> {
    array(v).unwrap_or_default().into_iter().filter_map(|e| room_entry(e, epoch, part)).collect()
}

fn room_entry(e: Value, epoch: Option<Epoch>, part: usize) -> Option<(Arc<Entry>, Seq)> {
    let (seq, fields) = stream_entry(e)?;
    let get = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.as_str());
    let prev = Seq::parse(get("v")?)?;
    let rooms = split_rooms(get("r")?);
    let also = also(get("a"))?;
    let payload = payload_with_also(get("p")?, epoch, (seq, &rooms), &also).ok()?;
    let entry = Entry { seq, part, event: get("n")?.to_owned(), rooms, also, except: None, payload };
    Some((Arc::new(entry), prev))
}

/// `[id, [field, value, ...]]` (or the fields as a RESP3 map).
fn stream_entry(v: Value) -> Option<(Seq, Vec<(String, String)>)> {
    let mut parts = array(v)?.into_iter();
    let seq = Seq::parse(&text(parts.next()?)?)?;
    let fields = match parts.next()? {
        Value::Map(pairs) => pairs.into_iter().filter_map(|(k, v)| Some((text(k)?, text(v)?))).collect(),
        other => {
            let flat: Vec<String> = array(other)?.into_iter().filter_map(text).collect();
            flat.chunks_exact(2).map(|kv| (kv[0].clone(), kv[1].clone())).collect()
        }
    };
    Some((seq, fields))
}

pub(super) fn array(v: Value) -> Option<Vec<Value>> {
    match v {
        Value::Array(items) | Value::Set(items) => Some(items),
        _ => None,
    }
}

pub(super) fn text(v: Value) -> Option<String> {
    match v {
        Value::BulkString(bytes) => String::from_utf8(bytes).ok(),
        Value::SimpleString(s) => Some(s),
        Value::VerbatimString { text, .. } => Some(text),
        _ => None,
    }
}

pub(super) fn int(v: Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(i),
        other => text(other)?.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn log_entries_are_read_from_resp2_and_resp3_replies() {
        let fields = || {
            Value::Array(
                [
                    ("v", "0-0"),
                    ("e", "00000000000000aa"),
                    ("n", "x"),
                    ("r", "user:u1\nvendor:v1"),
                    ("x", ""),
                    ("p", "{}"),
                ]
                .iter()
                .flat_map(|(k, v)| [bulk(k), bulk(v)])
                .collect(),
            )
        };
        let entry = || Value::Array(vec![bulk("5-1"), fields()]);
        let resp2 = Value::Array(vec![Value::Array(vec![bulk("log"), Value::Array(vec![entry()])])]);
        let resp3 = Value::Map(vec![(bulk("log"), Value::Array(vec![entry()]))]);
        for reply in [resp2, resp3] {
            let got = log_entries(reply);
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].seq, Seq { ms: 5, n: 1 });
            assert_eq!(got[0].rooms, vec!["user:u1", "vendor:v1"]);
            assert_eq!(got[0].except, None);
        }
        assert!(log_entries(Value::Nil).is_empty());
    }

    #[test]
    fn a_room_view_carries_its_first_page_and_the_rooms_newest_id() {
        let entry = |id: &str, prev: &str| {
            let fields = [("v", prev), ("n", "x"), ("r", "vendor:v1"), ("p", "{}")];
            Value::Array(vec![bulk(id), Value::Array(fields.iter().flat_map(|(k, v)| [bulk(k), bulk(v)]).collect())])
        };
        let page = || Value::Array(vec![entry("5-0", "4-0"), entry("6-0", "5-0")]);
        let epoch = Epoch(1);
        // A full page: more to read, up to the newest id.
        let view = room_view(Value::Array(vec![Value::Int(1), page(), bulk("9-0")]), epoch, true, 0).unwrap();
        assert_eq!((view.after.len(), view.last), (2, Seq { ms: 9, n: 0 }));
        // The page holds the rest: its own last entry is the newest.
        let view = room_view(Value::Array(vec![Value::Int(1), page(), bulk("")]), epoch, true, 0).unwrap();
        assert_eq!(view.last, Seq { ms: 6, n: 0 });
        let view = room_view(Value::Array(vec![Value::Int(0)]), epoch, true, 0).unwrap();
        assert!(!view.exists && view.after.is_empty());
        assert!(room_view(Value::Array(vec![Value::Int(1), page(), bulk("nope")]), epoch, true, 0).is_none());
    }
}
