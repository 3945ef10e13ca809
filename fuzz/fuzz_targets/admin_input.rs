//! What the admin console parses: a test event's body from the operator's browser, and
//! another instance's answer read off Redis pub/sub. Nothing panics; a test event names
//! exactly one user or vendor room and a short message; an answer never claims to be the
//! console's own instance.
#![no_main]

use fixrx_realtime::admin::api::{MAX_MESSAGE_CHARS, test_body};
use fixrx_realtime::admin::peers::Answer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = serde_json::from_slice::<serde_json::Value>(data)
        && let Ok((room, message)) = test_body(&body)
    {
        let name = room.name();
        assert!(name.starts_with("user:") || name.starts_with("vendor:"), "{name}");
        assert_eq!(Some(&serde_json::Value::String(name.clone())), body.get("room"));
        assert!(!message.trim().is_empty());
        assert!(message.chars().count() <= MAX_MESSAGE_CHARS);
    }
    if let Ok(answer) = serde_json::from_slice::<Answer>(data) {
        assert!(!answer.instance.is_self);
    }
});
