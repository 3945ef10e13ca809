//! When the server closes a socket, and how: the one place that decides.
//!
//! Delivery closes a socket when it cannot go on ([`Close`], below): it closes the
//! socket's *transport*, so the client sees its connection drop, reconnects and recovers
//! from its offsets. A Socket.IO DISCONNECT would tell the official client not to
//! reconnect, so it is kept for what the client itself caused, in `socket/`: a socket that
//! stays over its event rate (`socket::handlers::enforce`, the flood) and a socket whose
//! token expired (`socket::expiry`, after `auth:expired`). Nothing else closes a socket
//! but the client, the shutdown, and a controller's `POST /api/v1/users/{id}/disconnect`.

use std::time::Duration;

use socketioxide::SocketError;
use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;

use super::{Failure, Hub};
use crate::history::pages::ReplayError;
use crate::metrics::ReasonLabels;

/// How often a disconnect that found the socket's queue full is tried again.
const EVICT_RETRY: Duration = Duration::from_millis(20);

/// Why delivery to a socket cannot go on. Its [`Close::label`] is the `reason` of
/// `fixrx_delivery_disconnects` and of the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// Its outgoing queue is full (or a pending member's buffer is).
    QueueFull,
    /// A send would take the bytes it may have queued past `SOCKET_BUFFER_BYTES`.
    BufferBytes,
    /// The log lost continuity: nothing proves which events the socket missed.
    HistoryGap,
    /// The history could not be read for its recovery.
    HistoryUnavailable,
    /// Its queue stayed full while its recovery was replayed.
    RecoveryStalled,
}

impl Close {
    pub fn label(self) -> &'static str {
        match self {
            Close::QueueFull => "queue_full",
            Close::BufferBytes => "buffer_bytes",
            Close::HistoryGap => "history_gap",
            Close::HistoryUnavailable => "history_unavailable",
            Close::RecoveryStalled => "recovery_stalled",
        }
    }
}

impl From<&Failure> for Close {
    fn from(failure: &Failure) -> Close {
        match failure {
            Failure::Bytes => Close::BufferBytes,
            Failure::Full | Failure::Closed => Close::QueueFull,
        }
    }
}

impl From<&ReplayError> for Close {
    fn from(e: &ReplayError) -> Close {
        match e {
            ReplayError::Gap(_) => Close::HistoryGap,
            ReplayError::History(_) => Close::HistoryUnavailable,
        }
    }
}

impl<A: Adapter> Hub<A> {
    /// Disconnects a socket whose delivery cannot go on by closing its transport: the
    /// client sees its connection drop, reconnects and recovers from its offsets. (A
    /// Socket.IO DISCONNECT would tell the official client not to reconnect.)
    pub fn evict(&self, socket: SocketRef<A>, why: Close) {
        let why = why.label();
        self.metrics.delivery_disconnects.get_or_create(&ReasonLabels { reason: why }).inc();
        tracing::warn!(sid = %crate::telemetry::log_id(socket.id), reason = why, "closing the transport of a socket whose delivery cannot go on; it recovers on reconnect");
        if self.transports.close(&socket.id.to_string()) {
            return;
        }
        // No known transport (never expected): a DISCONNECT at least tells the client.
        // socketioxide refuses to send one while the queue is full, so retry until a slot
        // frees or the transport closes (the write-stall limit).
        tokio::spawn(async move {
            while socket.connected() {
                match socket.clone().disconnect() {
                    Err(SocketError::InternalChannelFull) => tokio::time::sleep(EVICT_RETRY).await,
                    Ok(()) | Err(SocketError::Closed) => return,
                }
            }
        });
    }
}
