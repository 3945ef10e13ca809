//! Ids and rooms: `events::id::from_json` on any JSON value, `Room::from_parts` on any
//! pair of strings, each checked against the definition (1 to 128 characters, no
//! control characters; a JSON integer reads as its decimal string).
//!
//! First byte even: the rest is JSON text; every value in it goes through
//! `from_json`, and a `[kind, id]` pair of strings through `from_parts`.
//! First byte odd: the rest drives a generator of id-like values.
#![no_main]

use arbitrary::Unstructured;
use fixrx_realtime_fuzz::{check, generate};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn walk(v: &Value, depth: u8) {
    check::check_id_json(v);
    if let Value::String(s) = v {
        check::check_room("user", s);
        check::check_room(s, "r1");
    }
    if depth == 0 {
        return;
    }
    match v {
        Value::Array(items) => {
            if let [Value::String(kind), Value::String(id)] = items.as_slice() {
                check::check_room(kind, id);
            }
            items.iter().for_each(|i| walk(i, depth - 1));
        }
        Value::Object(map) => map.values().for_each(|i| walk(i, depth - 1)),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode % 2 == 0 {
        if let Ok(v) = serde_json::from_slice::<Value>(rest) {
            walk(&v, 4);
        }
        if let Ok(s) = std::str::from_utf8(rest) {
            check::check_room("vendor", s);
            check::check_id_json(&Value::String(s.to_owned()));
        }
        return;
    }
    let mut u = Unstructured::new(rest);
    while let Ok(v) = generate::id_value(&mut u) {
        walk(&v, 2);
        if u.is_empty() {
            break;
        }
    }
});
