//! The Socket.IO / Engine.IO settings every server of ours runs with (the product and
//! the `protocol-server` conformance binary): the limits that keep one client from
//! hurting the others live here, in one place.

use std::time::Duration;

use engineioxide::config::EngineIoConfig;
use socketioxide::{ParserConfig, SocketIo, SocketIoBuilder};

use crate::config::SocketConfig;

/// Initial size of each WebSocket's read buffer, and the most read per system call.
/// Kept by every idle connection; client messages are small (events, chat), and a
/// larger frame still gets a buffer of its full length reserved by tungstenite.
/// 512 bytes instead of engineioxide's 4 KiB default: 3.5 KiB less RSS per idle connection.
const WS_READ_BUFFER: usize = 512;

/// A Socket.IO builder at `path` with our transport settings and limits:
/// - one incoming message at most `max_payload` bytes on every transport (long-polling
///   bodies, WebSocket messages and frames);
/// - at most `max_attachments` binary attachments per packet, and a partial binary
///   packet is dropped (and its connection closed) after `connect_timeout`;
/// - at most `buffer_packets` outgoing packets queued per connection: past it emits to
///   that connection fail, and a reader that stays that slow misses its heartbeats and
///   is disconnected;
/// - a client that opens a transport and sends no CONNECT within `connect_timeout`, or
///   starts an upgrade to WebSocket and does not finish it within `upgrade_timeout`,
///   is closed.
pub fn builder(path: &str, s: &SocketConfig) -> SocketIoBuilder {
    let max = usize::try_from(s.max_payload).unwrap_or(usize::MAX);
    let parser = ParserConfig::common()
        .max_incoming_binaries(s.max_attachments)
        .max_incoming_binary_buf_size(max)
        .packet_completion_timeout(s.connect_timeout.max(Duration::from_secs(1)));
    SocketIo::builder()
        .req_path(path.to_owned())
        .ping_interval(s.ping_interval)
        .ping_timeout(s.ping_timeout)
        .connect_timeout(s.connect_timeout)
        .upgrade_timeout(s.upgrade_timeout)
        .max_payload(s.max_payload)
        .ws_max_message_size(max)
        .ws_max_frame_size(max)
        .ws_read_buffer_size(WS_READ_BUFFER)
        .max_buffer_size(s.buffer_packets)
        .with_parser(parser)
}

/// The same transport settings for a bare Engine.IO server at `path` (the conformance
/// server's echo endpoint). Kept beside [`builder`]: the two must change together.
pub fn engine_io_config(path: &str, s: &SocketConfig) -> EngineIoConfig {
    let max = usize::try_from(s.max_payload).unwrap_or(usize::MAX);
    EngineIoConfig::builder()
        .req_path(path.to_owned())
        .ping_interval(s.ping_interval)
        .ping_timeout(s.ping_timeout)
        .upgrade_timeout(s.upgrade_timeout)
        .max_payload(s.max_payload)
        .ws_max_message_size(max)
        .ws_max_frame_size(max)
        .ws_read_buffer_size(WS_READ_BUFFER)
        .max_buffer_size(s.buffer_packets)
        .build()
}
