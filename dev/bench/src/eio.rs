//! A minimal Engine.IO v4 / Socket.IO v5 client over WebSocket, no client library:
//! `0{open}` → `40{auth}` → `40{sid}`; answers `2` with `3`; hands `42…`/`43…` frames
//! to the scenario's handler with as little parsing as possible.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::util::{new_hist, now_ns, scan_u64};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What a socket does with the frames it receives.
#[derive(Debug, Clone)]
pub enum Role {
    /// Only keeps the connection alive.
    Idle,
    /// Records `42["<event>",{… "sentAtNs":N … "benchSeq":S …}]` deliveries.
    Receiver { event: &'static str },
    /// Sends `chat:send` to `vendor` with an ack id; records ack latency.
    ChatUser { vendor: String },
    /// Records `chat:message` relays (the text carries the send timestamp).
    ChatVendor,
}

/// A message for a `ChatUser` socket to send: (sequence number, timestamp ns).
pub type Outgoing = (u64, u64);

/// What one socket measured, merged at the end of a run.
pub struct Local {
    /// Delivery / relay latency, µs.
    pub latency: Histogram<u64>,
    /// Ack latency, µs (chat users).
    pub ack: Histogram<u64>,
    /// Sequence numbers received (deliveries), for loss and duplicate counts.
    pub seqs: Vec<u64>,
    /// Acks that were not `ok`.
    pub ack_errors: u64,
    /// Closed by the server or the network before the run stopped it.
    pub dropped: bool,
}

impl Local {
    fn new() -> Local {
        Local { latency: new_hist(), ack: new_hist(), seqs: Vec::new(), ack_errors: 0, dropped: false }
    }
}

/// Connects and completes the Engine.IO and Socket.IO handshakes.
pub async fn handshake(ws_url: &str, token: &str, timeout: Duration) -> anyhow::Result<Ws> {
    tokio::time::timeout(timeout, async {
        let mut ws = open(ws_url).await?;
        ws.send(Message::text(format!("40{{\"token\":\"{token}\"}}"))).await?;
        loop {
            let t = next_text(&mut ws).await?;
            if t == "2" {
                ws.send(Message::text("3")).await?;
            } else if t.starts_with("40") {
                return Ok(ws);
            } else if t.starts_with("44") {
                bail!("connect refused: {t:.200}");
            }
        }
    })
    .await
    .context("handshake timed out")?
}

/// Opens the WebSocket and reads the Engine.IO open packet (`0{…}`): the socket is then
/// ready for a Socket.IO CONNECT, which the caller sends (and times) itself.
pub async fn open(ws_url: &str) -> anyhow::Result<Ws> {
    // Nagle off, as browsers and socket.io-client do: with it on, a small frame sent while
    // the previous one awaits a delayed ACK waits up to 40 ms (seen as chat p99 spikes).
    let (mut ws, _) =
        tokio_tungstenite::connect_async_with_config(ws_url, None, true).await.context("websocket connect")?;
    let open = next_text(&mut ws).await?;
    if !open.starts_with('0') {
        bail!("expected Engine.IO open, got {open:.80}");
    }
    Ok(ws)
}

/// The next text frame; fails on close.
pub async fn next_text(ws: &mut Ws) -> anyhow::Result<String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(Message::Close(_))) | None => bail!("connection closed by the server"),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
        }
    }
}

/// Runs a connected socket until `stop` turns true or the connection ends.
pub async fn run(
    mut ws: Ws,
    role: Role,
    mut out: Option<mpsc::UnboundedReceiver<Outgoing>>,
    mut stop: watch::Receiver<bool>,
    received: &std::sync::atomic::AtomicU64,
) -> Local {
    let mut local = Local::new();
    let mut pending: HashMap<u64, u64> = HashMap::new();
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            msg = async { match out.as_mut() { Some(rx) => rx.recv().await, None => std::future::pending().await } } => {
                let (Some((seq, sent)), Role::ChatUser { vendor }) = (msg, &role) else { continue };
                pending.insert(seq, sent);
                let frame = format!(
                    "42{seq}[\"chat:send\",{{\"to\":{{\"type\":\"vendor\",\"id\":\"{vendor}\"}},\"text\":\"{sent}\",\"clientMsgId\":\"{seq}\"}}]"
                );
                if ws.send(Message::text(frame)).await.is_err() {
                    local.dropped = true;
                    break;
                }
            }
            frame = ws.next() => {
                let text = match frame {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => { local.dropped = true; break; }
                    Some(Ok(_)) => continue,
                };
                let t = text.as_str();
                if t == "2" {
                    if ws.send(Message::text("3")).await.is_err() { local.dropped = true; break; }
                    continue;
                }
                let now = now_ns();
                match &role {
                    Role::Idle => {}
                    Role::Receiver { event } => {
                        if t.starts_with("42[\"") && t[4..].starts_with(event) {
                            if let Some(sent) = scan_u64(t, "\"sentAtNs\":") {
                                let _ = local.latency.record(now.saturating_sub(sent) / 1000);
                            }
                            if let Some(seq) = scan_u64(t, "\"benchSeq\":") {
                                local.seqs.push(seq);
                            }
                            received.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                    Role::ChatUser { .. } => {
                        if let Some(rest) = t.strip_prefix("43") {
                            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
                            if let Ok(id) = rest[..digits].parse::<u64>()
                                && let Some(sent) = pending.remove(&id)
                            {
                                let _ = local.ack.record(now.saturating_sub(sent) / 1000);
                                if !rest[digits..].contains("\"ok\":true") {
                                    local.ack_errors += 1;
                                }
                                // A chat user's fleet counts acks, so the run can wait for the last.
                                received.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                        }
                    }
                    Role::ChatVendor => {
                        if t.starts_with("42[\"chat:message\"") {
                            if let Some(sent) = scan_u64(t, "\"text\":\"") {
                                let _ = local.latency.record(now.saturating_sub(sent) / 1000);
                            }
                            if let Some(seq) = scan_u64(t, "\"clientMsgId\":\"") {
                                local.seqs.push(seq);
                            }
                            received.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
            }
        }
    }
    let _ = ws.close(None).await;
    local
}
