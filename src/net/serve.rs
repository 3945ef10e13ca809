//! The accept loop and each connection's life: hyper's HTTP/1.1 (with upgrades) on the
//! streams of [`LimitedListener`], and the limits that close a connection which sends
//! nothing, or too little: no complete request head within `HTTP_HEADER_TIMEOUT_MS` (nor,
//! after it, the whole body within as long again), or idle between two requests for
//! longer than `HTTP_IDLE_TIMEOUT_MS`.
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
use std::sync::Arc;
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
use tokio::sync::watch;
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
    /// `fixrx_connection_timeouts_total{reason="header"|"body"|"idle"}`.
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
        hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let in_flight = InFlight::start(handle.clone(), !http_body::Body::is_end_stream(req.body()));
            request(service.clone(), info.clone(), in_flight, req)
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
    let handle = in_flight.handle.clone();
    let mut req = req.map(|body| Body::new(RequestBody { body, handle: Some(handle) }));
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
    fn start(handle: Arc<ConnHandle>, body_pending: bool) -> InFlight {
        handle.activity.start_request(body_pending);
        InFlight { handle, upgraded: false }
    }
}

/// A request's body as it arrives. A head that came in time does not buy a body all the
/// time in the world: until its last byte (or until the app drops it unread) the
/// connection is in [`Phase::Body`], on the header limit's clock.
struct RequestBody {
    body: Incoming,
    /// Taken once the body has ended.
    handle: Option<Arc<ConnHandle>>,
}

impl RequestBody {
    fn ended(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.activity.body_done();
        }
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        self.ended();
    }
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) || self.body.is_end_stream() {
            self.ended();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
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
