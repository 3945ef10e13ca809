//! Live tokens: a socket is disconnected when its token expires, unless it sent
//! `auth:refresh` with a fresh token for the same identity first.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde_json::{Value, json};
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, SocketRef, State, TryData};
use socketioxide::socket::Sid;
use tokio::sync::Notify;

use super::SocketCtx;
use super::handlers::{Ack, admit, send};
use crate::auth::Identity;
use crate::events::wire::{AUTH_EXPIRED, AckCode, ClientEvent};
use crate::sync::lock;

/// How long the watcher sleeps at most, so it notices when its server is gone.
const IDLE_CHECK: Duration = Duration::from_secs(5);

/// Every socket's token expiry on this instance, watched by one task: a timer per
/// socket would cost each connection a task, a channel and a timer entry.
pub struct Expiries<A: Adapter> {
    due: Mutex<BTreeMap<(u64, Sid), SocketRef<A>>>,
    /// Woken when a socket with an earlier expiry than all others is added.
    earlier: Notify,
}

impl<A: Adapter> Expiries<A> {
    /// Starts the watcher; it ends once the returned value is dropped.
    pub fn start() -> Arc<Expiries<A>> {
        let expiries = Arc::new(Expiries { due: Mutex::new(BTreeMap::new()), earlier: Notify::new() });
        tokio::spawn(watch_all(Arc::downgrade(&expiries)));
        expiries
    }

    /// Disconnects `socket` at `exp` (Unix seconds), unless it refreshes or leaves first.
    pub fn watch(&self, socket: &SocketRef<A>, exp: u64) {
        let mut due = lock(&self.due);
        let first = due.keys().next().is_none_or(|&(next, _)| exp < next);
        due.insert((exp, socket.id), socket.clone());
        drop(due);
        if first {
            self.earlier.notify_one();
        }
    }

    /// The socket's token now expires at `new` instead of `old`.
    fn refreshed(&self, socket: &SocketRef<A>, old: u64, new: u64) {
        lock(&self.due).remove(&(old, socket.id));
        self.watch(socket, new);
    }

    /// The socket is gone: nothing to watch.
    pub fn closed(&self, sid: Sid, exp: u64) {
        lock(&self.due).remove(&(exp, sid));
    }

    /// Takes the sockets whose token has expired; returns when the next one does.
    fn take_due(&self, now: f64) -> (Vec<(u64, SocketRef<A>)>, Option<u64>) {
        let mut due = lock(&self.due);
        let mut expired = Vec::new();
        while let Some(entry) = due.first_entry() {
            let exp = entry.key().0;
            if exp as f64 > now {
                return (expired, Some(exp));
            }
            expired.push((exp, entry.remove()));
        }
        (expired, None)
    }
}

/// Disconnects each socket when its token expires, telling it why first.
async fn watch_all<A: Adapter>(expiries: Weak<Expiries<A>>) {
    loop {
        let Some(e) = expiries.upgrade() else { return };
        let now = crate::clock::unix_secs_f64();
        let (expired, next) = e.take_due(now);
        for (exp, socket) in expired {
            tracing::info!(sid = %crate::socket::log_id(socket.id), exp, "token expired: disconnecting");
            // Tell the client why before closing, so it can fetch a fresh token.
            let _ = socket.emit(AUTH_EXPIRED, &json!({ "exp": exp }));
            let _ = socket.disconnect();
        }
        let wait = next.map_or(IDLE_CHECK, |exp| Duration::from_secs_f64((exp as f64 - now).max(0.0)).min(IDLE_CHECK));
        tokio::select! {
            () = e.earlier.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// `auth:refresh { token }`: a fresh token for the same identity extends the socket's life.
pub async fn refresh<A: Adapter>(
    socket: SocketRef<A>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    State(ctx): State<Arc<SocketCtx>>,
    State(expiries): State<Arc<Expiries<A>>>,
) {
    if let Err(answer) = admit(&socket, ClientEvent::AuthRefresh.as_str()) {
        return send(&socket, ack, ClientEvent::AuthRefresh.as_str(), answer);
    }
    let token = data.ok().and_then(|v| v.get("token").and_then(Value::as_str).map(str::to_owned));
    let answer = match (token, socket.extensions.get::<Arc<Identity>>()) {
        (None, _) => Ack::err(AckCode::InvalidPayload, "payload must be { token: string }"),
        (Some(_), None) => Ack::err(AckCode::InvalidToken, "no identity on this socket"),
        (Some(token), Some(current)) => match ctx.verifier.verify(&token).await {
            Err(e) => Ack::err(AckCode::InvalidToken, e.to_string()),
            Ok(fresh)
                if fresh.user_id != current.user_id
                    || fresh.role != current.role
                    || fresh.vendor_id != current.vendor_id =>
            {
                Ack::err(AckCode::InvalidToken, "the token is for another identity")
            }
            Ok(fresh) => {
                let exp = fresh.exp;
                let old = current.exp;
                socket.extensions.insert(Arc::new(fresh));
                expiries.refreshed(&socket, old, exp);
                tracing::debug!(sid = %crate::socket::log_id(socket.id), exp, "token refreshed");
                Ack::ok(json!({ "exp": exp }))
            }
        },
    };
    send(&socket, ack, ClientEvent::AuthRefresh.as_str(), answer);
}
