//! The chat hook's answer body: the backend's bytes become the reason a sender sees.
//! Whatever they are, nothing panics, and a reason is short, non-empty and free of
//! control characters.
#![no_main]

use fixrx_realtime::hooks::chat_hook::{MAX_REASON_CHARS, reason};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(text) = reason(data) {
        assert!(!text.is_empty());
        assert!(text.chars().count() <= MAX_REASON_CHARS, "{} characters", text.chars().count());
        assert!(!text.chars().any(char::is_control), "{text:?}");
    }
});
