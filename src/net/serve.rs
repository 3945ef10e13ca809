//! The accept loop and each connection's life: hyper's HTTP/1.1 (with upgrades) on the
//! streams of [`LimitedListener`], and the two limits that close a connection which sends
//! nothing: no complete request head within `HTTP_HEADER_TIMEOUT_MS`, or idle between two
//! requests for longer than `HTTP_IDLE_TIMEOUT_MS`.
//!
//! The timers are ours, not hyper's. hyper's `header_read_timeout` starts again as soon as a
//! response has been written, so on a keep-alive connection it times the idle spell and the
//! next head together: it would close idle connections after the header timeout instead of
//! the idle one, and count them as header timeouts. Here each connection is in one `Phase`
//! at a time, and a watchdog beside hyper's connection future drops that future (which
//! closes the socket) when the phase outlives its limit. A request in flight, however long
//! (a long-polling GET), and an upgraded WebSocket (its heartbeat governs it) have none.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use axum::serve::Listener;
use bytes::Bytes;
use http::StatusCode;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tower::{Service, ServiceExt};

use super::{ClientAddr, ConnHandle, CountedStream, LimitedListener};
use crate::metrics::ReasonLabels;

/// The limits on connections that send nothing, and where their closes are counted.
#[derive(Clone)]
pub struct Timeouts {
    /// A complete request head within this, counted from the connection's opening or from
    /// the first byte after an idle spell.
    pub header: Duration,
    /// From the end of one response to the first byte of the next request.
    pub idle: Duration,
    /// `fixrx_connection_timeouts_total{reason="header"|"idle"}`.
    pub counted: Family<ReasonLabels, Counter>,
}

/// Serves `service` on `listener` until `stop` resolves; then accepts no more connections,
/// asks every open one to finish the request in flight and close, and returns once all have.
/// Upgraded connections are no longer the loop's: whoever upgraded them closes them.
pub async fn serve<S>(mut listener: LimitedListener, service: S, timeouts: Timeouts, stop: impl Future<Output = ()>)
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let timeouts = Arc::new(timeouts);
    let (stopping, stopped) = watch::channel(false);
    let mut stop = pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
        };
        tokio::spawn(connection(stream, peer, service.clone(), timeouts.clone(), stopped.clone()));
    }
    // New connections are refused from here on.
    drop(listener);
    drop(stopped);
    let _ = stopping.send(true);
    // Each connection task holds a receiver until it ends.
    stopping.closed().await;
}

/// Serves one connection until it closes, is upgraded, times out, or is asked to stop.
async fn connection<S>(
    stream: CountedStream,
    peer: SocketAddr,
    service: S,
    timeouts: Arc<Timeouts>,
    mut stopped: watch::Receiver<bool>,
) where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let handle = stream.handle.clone();
    let requests = {
        let handle = handle.clone();
        let info = ConnectInfo(ClientAddr(peer, handle.clone()));
        // Called as soon as hyper has parsed a head: the request is in flight from then on.
        hyper::service::service_fn(move |req| {
            request(service.clone(), info.clone(), InFlight::start(handle.clone()), req)
        })
    };
    // No hyper timer: its header timeout would also time idle spells (see the module docs).
    let conn = http1::Builder::new()
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(stream), requests)
        .with_upgrades();
    let mut conn = pin!(conn);
    let mut expired = pin!(handle.activity.expired(&timeouts));
    let mut asked_to_stop = false;
    loop {
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(e) = served {
                    tracing::trace!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            reason = expired.as_mut() => {
                timeouts.counted.get_or_create(&ReasonLabels { reason }).inc();
                tracing::debug!(%peer, reason, "connection closed: nothing received in time");
                // Returning drops `conn`, and with it the socket.
                return;
            }
            () = asked(&mut stopped), if !asked_to_stop => {
                asked_to_stop = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Resolves once the loop stops (or is gone).
async fn asked(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// One request through the app, with the connection's [`ConnectInfo`], in flight until
/// hyper drops the response body.
async fn request<S>(
    service: S,
    info: ConnectInfo<ClientAddr>,
    mut in_flight: InFlight,
    req: http::Request<Incoming>,
) -> Result<http::Response<ResponseBody>, Infallible>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    let mut req = req.map(Body::new);
    req.extensions_mut().insert(info);
    let response = service.oneshot(req).await?;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        in_flight.upgraded = true;
    }
    Ok(response.map(|body| ResponseBody { body, _in_flight: in_flight }))
}

/// A request being served. Dropped with its response body, once hyper has taken the last
/// byte of it (or the connection died); the idle clock starts then.
struct InFlight {
    handle: Arc<ConnHandle>,
    /// The answer was `101 Switching Protocols`: no HTTP timer applies any more.
    upgraded: bool,
}

impl InFlight {
    fn start(handle: Arc<ConnHandle>) -> InFlight {
        handle.activity.start_request();
        InFlight { handle, upgraded: false }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.handle.activity.end_request(self.upgraded);
    }
}

/// The app's response body, carrying its request's [`InFlight`].
struct ResponseBody {
    body: Body,
    _in_flight: InFlight,
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// What a connection is doing, as far as its limits care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a complete request head, since the connection opened or since the
    /// first byte after an idle spell. Bytes that do not complete it change nothing.
    Head(Instant),
    /// This many requests being served (hyper serves one at a time; counted to be safe).
    Busy(u32),
    /// Between two requests, since the last response ended.
    Idle(Instant),
    /// Handed over to a WebSocket.
    Upgraded,
}

/// A connection's `Phase`, kept in its [`ConnHandle`]: the stream reports bytes read,
/// requests report their start and end, and the watchdog waits on it.
#[derive(Debug)]
pub struct Activity {
    phase: Mutex<Phase>,
    changed: Notify,
}

impl Default for Activity {
    /// A new connection: the head's clock starts at accept, before any byte.
    fn default() -> Activity {
        Activity { phase: Mutex::new(Phase::Head(Instant::now())), changed: Notify::new() }
    }
}

impl Activity {
    fn current(&self) -> Phase {
        *self.phase.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, next: impl FnOnce(Phase) -> Phase) {
        let mut phase = self.phase.lock().unwrap_or_else(|p| p.into_inner());
        let was = *phase;
        *phase = next(was);
        let changed = *phase != was;
        drop(phase);
        if changed {
            self.changed.notify_one();
        }
    }

    /// Bytes arrived: after an idle spell they start the clock of the next request head.
    pub(super) fn read(&self) {
        self.update(|phase| match phase {
            Phase::Idle(_) => Phase::Head(Instant::now()),
            other => other,
        });
    }

    fn start_request(&self) {
        self.update(|phase| match phase {
            Phase::Busy(n) => Phase::Busy(n.saturating_add(1)),
            Phase::Upgraded => Phase::Upgraded,
            Phase::Head(_) | Phase::Idle(_) => Phase::Busy(1),
        });
    }

    fn end_request(&self, upgraded: bool) {
        self.update(|phase| match phase {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            Phase::Busy(_) if upgraded => Phase::Upgraded,
            Phase::Busy(_) => Phase::Idle(Instant::now()),
            other => other,
        });
    }

    /// Resolves, with the reason to count, once the connection has stayed in a phase
    /// longer than that phase may last.
    async fn expired(&self, limits: &Timeouts) -> &'static str {
        loop {
            let phase = self.current();
            let limit = match phase {
                Phase::Head(since) => Some((since + limits.header, "header")),
                Phase::Idle(since) => Some((since + limits.idle, "idle")),
                Phase::Busy(_) | Phase::Upgraded => None,
            };
            // A change between `current` and here leaves a permit: `notified` then returns at once.
            let Some((deadline, reason)) = limit else {
                self.changed.notified().await;
                continue;
            };
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {
                    if self.current() == phase {
                        return reason;
                    }
                }
                () = self.changed.notified() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Timeouts {
        Timeouts { header: Duration::from_secs(1), idle: Duration::from_secs(3), counted: Family::default() }
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_sends_nothing_expires_at_the_header_deadline() {
        let activity = Activity::default();
        let started = Instant::now();
        assert_eq!(activity.expired(&limits()).await, "header");
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_that_do_not_complete_a_head_do_not_move_its_deadline() {
        let activity = Arc::new(Activity::default());
        let reader = activity.clone();
        let trickle = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(300)).await;
                reader.read();
            }
        });
        let started = Instant::now();
        assert_eq!(activity.expired(&limits()).await, "header");
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        trickle.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn the_idle_clock_runs_from_the_end_of_a_response_and_a_request_in_flight_has_none() {
        let activity = Arc::new(Activity::default());
        activity.start_request();
        let started = Instant::now();
        let watched = activity.clone();
        let watchdog = tokio::spawn(async move { (watched.expired(&limits()).await, Instant::now()) });
        // A long poll: in flight well past both limits.
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(!watchdog.is_finished());
        activity.end_request(false);
        let (reason, at) = watchdog.await.expect("watchdog");
        assert_eq!((reason, at - started), ("idle", Duration::from_secs(13)));
    }

    #[tokio::test(start_paused = true)]
    async fn the_next_request_after_an_idle_spell_gets_the_header_limit_from_its_first_byte() {
        let activity = Arc::new(Activity::default());
        activity.start_request();
        activity.end_request(false);
        tokio::time::sleep(Duration::from_secs(2)).await;
        activity.read();
        let started = Instant::now();
        assert_eq!(activity.expired(&limits()).await, "header");
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn an_upgraded_connection_never_expires() {
        let activity = Activity::default();
        activity.start_request();
        activity.end_request(true);
        activity.read();
        let waited = tokio::time::timeout(Duration::from_secs(3600), activity.expired(&limits())).await;
        assert!(waited.is_err(), "an upgraded connection expired");
    }
}
