//! `SessionQuery::of` against the transport itself: for any query, the guard's answer to
//! "does this request open a new Engine.IO session" is what socketioxide's service (the
//! engineioxide 0.17 the server mounts) does with a long-polling GET of that query.
//!
//! First byte even: the rest follows `EIO=4&transport=polling&`, so the first protocol and
//! transport pieces are valid and the session id alone decides: the answers must be equal.
//! Odd: the rest is the whole query; engineioxide may refuse it for other reasons, so only
//! "it opened a session, hence we said new" must hold. Inputs that are not a valid URI
//! (hyper would never deliver them) are skipped.
#![no_main]

use fixrx_realtime::net::session_query::SessionQuery;
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

type Body = http_body_util::Full<bytes::Bytes>;

/// Whether the transport opened a new session for a long-polling GET with this query.
fn engineioxide_opens(req: http::Request<Body>) -> bool {
    // A fresh runtime and service per input, so no input sees another's sessions.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("a runtime");
    runtime.block_on(async {
        let (svc, _io) = socketioxide::SocketIo::new_svc();
        let res = svc.clone().oneshot(req).await.expect("the service answers");
        let status = res.status();
        let body = res.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let opened = status == 200 && body.starts_with(br#"0{"sid":"#);
        if opened {
            close(svc, &body).await;
        }
        opened
    })
}

/// Closes the session an open packet names. A session and its engine hold each other, so
/// one left open outlives the runtime and the service: about 600 bytes per input, which
/// took a 25 s run to 1.2 GB.
async fn close<S>(svc: S, open: &[u8])
where
    S: tower::Service<http::Request<Body>> + Clone,
{
    let Some(sid) = open.get(9..25).and_then(|s| std::str::from_utf8(s).ok()) else { return };
    let uri = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    let Ok(req) = http::Request::post(uri).body(Body::from("1")) else { return };
    let _ = svc.oneshot(req).await;
    // Let the engine's tasks see the close before the runtime is dropped.
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let Ok(rest) = std::str::from_utf8(rest) else { return };
    let exact = mode % 2 == 0;
    let query = if exact { format!("EIO=4&transport=polling&{rest}") } else { rest.to_owned() };
    let Ok(req) = http::Request::get(format!("/socket.io/?{query}")).body(Body::default()) else {
        return;
    };
    // Classified from the URI as hyper parsed it, as the guard does.
    let uri = req.uri().clone();
    let ours = SessionQuery::of(uri.query());
    let opened = engineioxide_opens(req);
    if exact {
        assert_eq!(ours.opens_session(), opened, "{query:?}: we say {ours:?}");
    } else if opened {
        assert!(ours.opens_session(), "{query:?} opened a session, we say {ours:?}");
    }
});
