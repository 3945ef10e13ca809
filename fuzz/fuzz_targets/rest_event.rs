//! REST event bodies: bytes -> JSON -> `parse_event`, as `POST /api/v1/events` and each
//! item of `POST /api/v1/events/batch` do, then every invariant of an accepted event
//! and the envelope round trip (see `check::check_event`).
//!
//! First byte even: the rest is JSON text (the wire path, including invalid JSON).
//! First byte odd: the rest drives a generator of event-shaped values.
#![no_main]

use arbitrary::Unstructured;
use fixrx_realtime_fuzz::{check, generate};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode % 2 == 0 {
        if let Ok(body) = serde_json::from_slice::<Value>(rest) {
            check::check_rest_body(&body);
        }
        return;
    }
    let mut u = Unstructured::new(rest);
    let body = if mode % 4 == 1 {
        generate::event(&mut u)
    } else {
        // A batch: `{ "events": [...] }`.
        let n = u.int_in_range(1usize..=4).unwrap_or(1);
        (0..n).map(|_| generate::event(&mut u)).collect::<Result<Vec<_>, _>>().map(|events| json!({ "events": events }))
    };
    if let Ok(body) = body {
        check::check_rest_body(&body);
        // And as the bytes a controller sends.
        let text = serde_json::to_vec(&body).expect("a Value serializes");
        let reread: Value = serde_json::from_slice(&text).expect("our own JSON parses");
        check::check_rest_body(&reread);
    }
});
