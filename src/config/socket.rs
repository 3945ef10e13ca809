//! Engine.IO / Socket.IO transport settings: heartbeats, timeouts, payload and queue
//! sizes, sockets per user and the per-socket rate.

use std::time::Duration;

use super::{ConfigError, RateLimit, err, parse_bounded, parse_num, parse_rate};

/// Engine.IO / Socket.IO transport settings.
#[derive(Debug, Clone)]
pub struct SocketConfig {
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// Time a client has to send its Socket.IO CONNECT after the Engine.IO handshake.
    pub connect_timeout: Duration,
    /// Time a client has to finish upgrading from long-polling to WebSocket.
    pub upgrade_timeout: Duration,
    /// Largest incoming message, in bytes, on every transport.
    pub max_payload: u64,
    /// Most binary attachments in one incoming packet.
    pub max_attachments: usize,
    /// Most outgoing packets queued per connection.
    pub buffer_packets: usize,
    /// `SOCKET_BUFFER_BYTES`: most outgoing bytes queued per socket; past it the socket
    /// is disconnected and recovers on reconnect, as with a full queue.
    pub buffer_bytes: usize,
    /// `MAX_SOCKETS_PER_USER`: sockets one token subject may hold at once; `None`: no cap.
    pub max_per_user: Option<usize>,
    /// Per-socket limit on client events; `None` disables it.
    pub rate_limit: Option<RateLimit>,
    /// A socket that stays over its rate this long is disconnected.
    pub flood_disconnect_after: Duration,
}

/// Outgoing packets queued per socket by default: a whole 500-event batch to one socket,
/// with room to spare, for a client that reads normally.
pub const DEFAULT_BUFFER_PACKETS: usize = 1024;

/// Outgoing bytes queued per socket by default: 1 MiB, as Centrifugo's client queue.
pub const DEFAULT_BUFFER_BYTES: usize = 1024 * 1024;

pub(super) fn parse_socket(get: &impl Fn(&str) -> Option<String>) -> Result<SocketConfig, ConfigError> {
    let ms = |var: &'static str, default: u64| -> Result<Duration, ConfigError> {
        Ok(Duration::from_millis(parse_bounded(get, var, default, 3_600_000)?))
    };
    let socket = SocketConfig {
        ping_interval: ms("PING_INTERVAL_MS", 25_000)?,
        ping_timeout: ms("PING_TIMEOUT_MS", 20_000)?,
        connect_timeout: ms("CONNECT_TIMEOUT_MS", 45_000)?,
        upgrade_timeout: ms("UPGRADE_TIMEOUT_MS", 10_000)?,
        max_payload: parse_num(get, "MAX_PAYLOAD_BYTES", 1_000_000)?,
        max_attachments: parse_num(get, "MAX_BINARY_ATTACHMENTS", 10)?,
        buffer_packets: parse_num(get, "SOCKET_BUFFER_PACKETS", DEFAULT_BUFFER_PACKETS)?,
        buffer_bytes: parse_num(get, "SOCKET_BUFFER_BYTES", DEFAULT_BUFFER_BYTES)?,
        max_per_user: match parse_num::<usize>(get, "MAX_SOCKETS_PER_USER", 100)? {
            0 => None,
            n => Some(n),
        },
        rate_limit: parse_rate(get, ("SOCKET_RATE_LIMIT", 20), "SOCKET_RATE_BURST", Some(40))?,
        flood_disconnect_after: ms("SOCKET_FLOOD_DISCONNECT_MS", 5_000)?,
    };
    for (var, value) in [
        ("PING_INTERVAL_MS", socket.ping_interval),
        ("PING_TIMEOUT_MS", socket.ping_timeout),
        ("CONNECT_TIMEOUT_MS", socket.connect_timeout),
        ("UPGRADE_TIMEOUT_MS", socket.upgrade_timeout),
    ] {
        if value.is_zero() {
            return Err(err(var, "must be at least 1 ms"));
        }
    }
    if socket.buffer_bytes < 1024 {
        return Err(err("SOCKET_BUFFER_BYTES", "must be at least 1024"));
    }
    if socket.buffer_packets == 0 {
        return Err(err("SOCKET_BUFFER_PACKETS", "must be at least 1"));
    }
    if socket.max_payload < 1024 {
        return Err(err("MAX_PAYLOAD_BYTES", "must be at least 1024"));
    }
    Ok(socket)
}
