//! `auth.offsets` and positions: what a reconnecting client sends is untrusted.
//!
//! First byte even: the rest is JSON text, used as the whole `auth` object and as the
//! `offsets` inside one; `OffsetsRequest::from_auth` must name only the socket's own
//! rooms, and every position it accepts must print back to itself. First byte odd: the
//! rest is a position string, parsed directly. Either way nothing may panic, and a JSON
//! object with offsets spliced in must still be a JSON object with those offsets.
#![no_main]

use fixrx_realtime::delivery::OffsetsRequest;
use fixrx_realtime::history::Position;
use fixrx_realtime::history::position::splice_offsets;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

const OWN: [&str; 2] = ["user:u1", "vendor:v1"];

fn check_request(auth: &Value) {
    let own: Vec<String> = OWN.iter().map(|r| r.to_string()).collect();
    let Some(request) = OffsetsRequest::from_auth(Some(auth), &own) else {
        assert!(auth.get("offsets").is_none_or(Value::is_null), "offsets given but no recovery: {auth}");
        return;
    };
    for (room, position) in &request.named {
        assert!(OWN.contains(&room.as_str()), "a room the socket is not in was read: {room}");
        if let Some(p) = position {
            assert_eq!(Position::parse(&p.to_string()), Some(*p), "a position does not print back to itself");
        }
    }
}

fn check_position(s: &str) {
    if let Some(p) = Position::parse(s) {
        assert_eq!(Position::parse(&p.to_string()), Some(p));
        assert!(s.len() <= 80, "an overlong position was accepted: {s:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode % 2 == 1 {
        if let Ok(s) = std::str::from_utf8(rest) {
            check_position(s);
        }
        return;
    }
    let Ok(v) = serde_json::from_slice::<Value>(rest) else { return };
    check_request(&v);
    check_request(&json!({ "token": "t", "offsets": v }));
    if let Value::Object(map) = &v {
        for value in map.values() {
            if let Value::String(s) = value {
                check_position(s);
            }
        }
        let rooms: Vec<String> = map.keys().cloned().collect();
        let spliced = splice_offsets(&v.to_string(), fixrx_realtime::history::Epoch(1), Default::default(), &rooms);
        let back: Value = serde_json::from_str(&spliced).expect("spliced payload is JSON");
        let offsets = back.get("offsets").and_then(Value::as_object).expect("offsets is an object");
        assert_eq!(offsets.len(), rooms.len());
    }
});
