//! The listening socket, with connection limits enforced where they are cheapest: at
//! accept, before a byte is read. Past `MAX_CONNECTIONS` in total or
//! `MAX_CONNECTIONS_PER_IP` from one address, a new TCP connection is closed at once.
//!
//! Every accepted stream also has a write-stall limit. A peer that stops reading fills
//! the TCP send buffer, and engineioxide's WebSocket writer then waits in a write that
//! nothing cancels: the session's close waits for that writer, so the socket is never
//! dropped, its queue never freed, and presence keeps counting it. Here a write that
//! makes no progress for `WRITE_STALL_TIMEOUT_MS` fails, and the connection is shut down
//! both ways, which unblocks the writer and the reader alike.
//!
//! And every stream closes gracefully (a "lingering close"): once our side is shut down,
//! what the peer still sends is read and discarded for up to [`LINGER`] before the socket
//! is closed. Closing with unread bytes makes the kernel answer with a reset, which can
//! destroy the answer just written: a 413 sent while a client is still uploading an
//! oversize body reached Node's `fetch` as `EPIPE` about one time in three.
//!
//! [`serve`] runs hyper on these streams, and closes those that send nothing in time.

use std::future::Future;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::sync::lock;
use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

mod activity;
pub mod guard;
pub mod head;
mod limits;
pub mod proxy;
pub mod serve;
pub mod session_query;
mod sessions;

pub use limits::{ConnGuard, ConnLimits, ConnTable, LimitKey, PerAddress};
pub use proxy::{ClientIp, ForwardedConns, TrustedProxies};

pub use sessions::{Route, Transports};

/// How long a closed connection keeps reading what its peer still sends (see the module docs).
pub const LINGER: Duration = Duration::from_secs(5);

/// A TCP listener that enforces [`ConnLimits`] and the write-stall limit.
pub struct LimitedListener {
    inner: TcpListener,
    limits: ConnLimits,
    proxies: Arc<TrustedProxies>,
    write_stall: Option<Duration>,
    table: Arc<ConnTable>,
}

impl LimitedListener {
    pub fn new(
        inner: TcpListener,
        limits: ConnLimits,
        write_stall: Option<Duration>,
        proxies: Arc<TrustedProxies>,
    ) -> LimitedListener {
        LimitedListener { inner, limits, proxies, write_stall, table: Arc::new(ConnTable::default()) }
    }

    pub fn table(&self) -> Arc<ConnTable> {
        self.table.clone()
    }
}

impl Listener for LimitedListener {
    type Io = CountedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (CountedStream, SocketAddr) {
        loop {
            let (stream, addr) = match self.inner.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            match self.table.admit(addr.ip(), self.limits, self.proxies.trusts(addr.ip())) {
                Ok(guard) => {
                    let _ = stream.set_nodelay(true);
                    let stream = CountedStream {
                        handle: Arc::new(ConnHandle::default()),
                        stream: Some(stream),
                        guard: Some(guard),
                        peer: addr,
                        write_stall: self.write_stall,
                        stalled_since: None,
                        dead: false,
                        write_closed: false,
                        peer_closed: false,
                    };
                    return (stream, addr);
                }
                Err(limit) => {
                    tracing::debug!(ip = %addr.ip(), limit, "connection refused: over the limit");
                    drop(stream);
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// Closes one accepted connection from outside the task that serves it: how a socket
/// whose delivery cannot go on is made to reconnect (see [`Transports`]); and tells how
/// many bytes it has written, which is how delivery learns what has left a socket's queue.
#[derive(Debug, Default)]
pub struct ConnHandle {
    closed: AtomicBool,
    /// Bytes the kernel accepted from us on this connection, framing and all.
    written: AtomicU64,
    /// The task last waiting to read, woken to notice the close.
    reader: Mutex<Option<Waker>>,
    /// What the connection is doing, for the limits on connections that send nothing.
    activity: activity::Activity,
}

impl ConnHandle {
    /// Shuts the connection down both ways: pending and later reads and writes fail.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        if let Some(waker) = lock(&self.reader).take() {
            waker.wake();
        }
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Bytes written on the connection so far (HTTP heads, WebSocket frames, every
    /// session it carried). Only ever grows; a read may lag the writer a little.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    fn wrote(&self, n: usize) {
        self.written.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn forget_reader(&self) {
        lock(&self.reader).take();
    }

    fn wait_read(&self, cx: &Context<'_>) {
        let mut reader = lock(&self.reader);
        if !reader.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *reader = Some(cx.waker().clone());
        }
    }
}

/// An accepted TCP stream, counted while it lives (and while it lingers).
pub struct CountedStream {
    handle: Arc<ConnHandle>,
    /// Always `Some` until `Drop` hands it to [`linger`].
    stream: Option<TcpStream>,
    guard: Option<ConnGuard>,
    peer: SocketAddr,
    write_stall: Option<Duration>,
    /// Running while a write waits for the peer to read.
    stalled_since: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The peer stopped reading and the connection was shut down.
    dead: bool,
    /// Our side was shut down (FIN sent): the peer may still be sending.
    write_closed: bool,
    /// The peer's side was seen closed (a read returned end of stream): nothing to drain.
    peer_closed: bool,
}

impl CountedStream {
    fn dead_error() -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, "the peer stopped reading")
    }

    /// Why a write cannot even be tried: closed by the server, or the peer stopped reading.
    fn write_refused(&mut self) -> Option<io::Error> {
        if self.handle.is_closed() {
            return Some(self.closed_by_server());
        }
        self.dead.then(Self::dead_error)
    }

    /// After [`ConnHandle::close`]: shuts the socket down (once) and fails.
    fn closed_by_server(&mut self) -> io::Error {
        if !self.dead {
            self.dead = true;
            if let Some(stream) = &self.stream {
                let _ = socket2::SockRef::from(stream).shutdown(Shutdown::Both);
            }
        }
        io::Error::new(io::ErrorKind::ConnectionAborted, "closed by the server")
    }

    fn io(&mut self) -> io::Result<&mut TcpStream> {
        self.stream.as_mut().ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "stream already closed"))
    }

    /// Turns a pending write into an error once it has waited longer than allowed.
    fn on_write<T>(&mut self, cx: &mut Context<'_>, result: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if result.is_ready() {
            self.stalled_since = None;
            return result;
        }
        let Some(limit) = self.write_stall else { return Poll::Pending };
        let timer = self.stalled_since.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.dead = true;
        self.stalled_since = None;
        // Both ways: the reader half, waiting for bytes that will never come, ends too.
        if let Some(stream) = &self.stream {
            let _ = socket2::SockRef::from(stream).shutdown(Shutdown::Both);
        }
        tracing::info!(peer = %self.peer, ?limit, "peer stopped reading: connection closed");
        Poll::Ready(Err(Self::dead_error()))
    }
}

impl AsyncRead for CountedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.handle.is_closed() {
            return Poll::Ready(Err(self.closed_by_server()));
        }
        let before = buf.filled().len();
        let result = match self.io() {
            Ok(stream) => Pin::new(stream).poll_read(cx, buf),
            Err(e) => return Poll::Ready(Err(e)),
        };
        if result.is_pending() {
            self.handle.wait_read(cx);
        }
        if matches!(result, Poll::Ready(Ok(()))) {
            if buf.filled().len() > before {
                self.handle.activity.read();
            } else if buf.remaining() > 0 {
                self.peer_closed = true;
            }
        }
        result
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if let Some(refused) = self.write_refused() {
            return Poll::Ready(Err(refused));
        }
        let result = match self.io() {
            Ok(stream) => Pin::new(stream).poll_write(cx, buf),
            Err(e) => return Poll::Ready(Err(e)),
        };
        if let Poll::Ready(Ok(n)) = result {
            self.handle.wrote(n);
        }
        self.on_write(cx, result)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.io() {
            Ok(stream) => Pin::new(stream).poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = match self.io() {
            Ok(stream) => Pin::new(stream).poll_shutdown(cx),
            Err(e) => return Poll::Ready(Err(e)),
        };
        if matches!(result, Poll::Ready(Ok(()))) {
            self.write_closed = true;
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(refused) = self.write_refused() {
            return Poll::Ready(Err(refused));
        }
        let result = match self.io() {
            Ok(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Err(e) => return Poll::Ready(Err(e)),
        };
        if let Poll::Ready(Ok(n)) = result {
            self.handle.wrote(n);
        }
        self.on_write(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(TcpStream::is_write_vectored)
    }
}

impl Drop for CountedStream {
    fn drop(&mut self) {
        // The handle may outlive the connection (a session's table entry): it must not
        // keep the waker, which holds the finished connection task's whole allocation.
        self.handle.forget_reader();
        // Only after a graceful shutdown of our side, and only while the peer may still
        // send: a dead peer, or one that already closed its side, is closed at once.
        if !self.write_closed || self.dead || self.peer_closed {
            return;
        }
        let (Some(stream), Some(guard)) = (self.stream.take(), self.guard.take()) else { return };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(linger(stream, guard));
        }
    }
}

/// Reads and discards what the peer still sends, until it closes or [`LINGER`] passes,
/// then closes. The connection stays counted meanwhile.
async fn linger(mut stream: TcpStream, _guard: ConnGuard) {
    let mut sink = vec![0u8; 4096];
    let drain = async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// The peer address of a request, for per-address limits, and a handle on its
/// connection: every request carries it as `ConnectInfo<ClientAddr>` (see [`serve`]).
#[derive(Debug, Clone)]
pub struct ClientAddr(pub SocketAddr, pub Arc<ConnHandle>);

#[cfg(test)]
mod tests;
