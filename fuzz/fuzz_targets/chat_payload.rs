//! Chat payloads: `parse_draft`, `parse_party` and `compose`, as `chat:send`,
//! `chat:typing` and `POST /api/v1/chat/messages` use them (see `check::check_chat`).
//!
//! First byte: bit 0 picks JSON text (even) or the generator (odd); bit 1 the kind
//! of the token's sender; the sender's id comes from the generator.
#![no_main]

use arbitrary::Unstructured;
use fixrx_realtime::events::chat::Party;
use fixrx_realtime::events::Id;
use fixrx_realtime::events::room::RoomKind;
use fixrx_realtime_fuzz::{check, generate};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let kind = if mode & 2 == 0 { RoomKind::User } else { RoomKind::Vendor };
    let sender = Party { kind, id: Id::new("sender-1").unwrap() };
    if mode % 2 == 0 {
        if let Ok(payload) = serde_json::from_slice::<Value>(rest) {
            check::check_chat(&payload, sender);
        }
        return;
    }
    let mut u = Unstructured::new(rest);
    if let Ok(payload) = generate::chat(&mut u) {
        let sender = match generate::id_value(&mut u).ok().and_then(|v| fixrx_realtime::events::id::from_json(&v).ok())
        {
            Some(id) => Party { kind, id },
            None => sender,
        };
        check::check_chat(&payload, sender);
    }
});
