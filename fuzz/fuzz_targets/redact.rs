//! The log redactor (`telemetry::redact::redact`) on any bytes: log lines carry values a
//! client chose, so it must never panic, must be idempotent (a redacted line holds nothing
//! more to redact), and must leave no JWT-shaped run behind. A planted token, placed in
//! every way the transport logs one, never survives.
#![no_main]

use fixrx_realtime::telemetry::redact::{REDACTED, redact};
use libfuzzer_sys::fuzz_target;

const TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJlLXBsYW50ZWQ";

fn clean(line: &[u8]) -> Vec<u8> {
    let once = redact(line).unwrap_or_else(|| line.to_vec());
    assert_eq!(redact(&once), None, "redacting twice changed {:?}", String::from_utf8_lossy(&once));
    once
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fuzz_target!(|data: &[u8]| {
    let out = clean(data);
    if !contains(data, REDACTED) {
        // Shorter or equal unless something was replaced by the (longer) marker.
        assert!(out.len() <= data.len() || contains(&out, REDACTED));
    }
    // The same bytes around a real token, as the transport and our code write it.
    let text = String::from_utf8_lossy(data);
    for planted in [
        format!("{text} auth: {{\"token\":\"{TOKEN}\"}} {text}"),
        format!("{text}?EIO=4&token={TOKEN}&{text}"),
        format!("{text} authorization: Bearer {TOKEN}"),
        format!("Packet {{ data: Connect(Some(Object {{\"token\": String(\"{TOKEN}\")}})) }}{text}"),
        format!("{text}{TOKEN}{text}"),
    ] {
        let out = clean(planted.as_bytes());
        assert!(!contains(&out, b"c2lnbmF0dXJlLXBsYW50ZWQ"), "a token survived: {}", String::from_utf8_lossy(&out));
    }
});
