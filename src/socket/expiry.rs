//! Live tokens: a socket is disconnected when its token expires, unless it sent
//! `auth:refresh` with a fresh token for the same identity first.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, SocketRef, State, TryData};
use tokio::sync::watch;

use super::SocketCtx;
use super::handlers::{Ack, admit, send};
use crate::auth::Identity;

/// The expiry of one socket's token; `None` once the socket is gone.
pub struct ExpiryWatch {
    tx: watch::Sender<Option<u64>>,
}

impl ExpiryWatch {
    /// Ends the watcher task: the socket disconnected.
    pub fn closed(&self) {
        let _ = self.tx.send(None);
    }

    fn refreshed(&self, exp: u64) {
        let _ = self.tx.send(Some(exp));
    }
}

fn now_secs() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Starts the task that disconnects the socket at `exp` (Unix seconds).
pub fn watch<A: Adapter>(socket: &SocketRef<A>, exp: u64) {
    let (tx, mut rx) = watch::channel(Some(exp));
    socket.extensions.insert(Arc::new(ExpiryWatch { tx }));
    let socket = socket.clone();
    tokio::spawn(async move {
        loop {
            let Some(exp) = *rx.borrow_and_update() else { return };
            let left = exp as f64 - now_secs();
            if left <= 0.0 {
                tracing::info!(sid = %crate::socket::log_id(socket.id), exp, "token expired: disconnecting");
                // Tell the client why before closing, so it can fetch a fresh token.
                let _ = socket.emit("auth:expired", &json!({ "exp": exp }));
                let _ = socket.disconnect();
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs_f64(left)) => {}
                changed = rx.changed() => if changed.is_err() { return },
            }
        }
    });
}

/// `auth:refresh { token }`: a fresh token for the same identity extends the socket's life.
pub async fn refresh<A: Adapter>(
    socket: SocketRef<A>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    State(ctx): State<Arc<SocketCtx>>,
) {
    if let Err(answer) = admit(&socket, "auth:refresh") {
        return send(&socket, ack, "auth:refresh", answer);
    }
    let token = data.ok().and_then(|v| v.get("token").and_then(Value::as_str).map(str::to_owned));
    let answer = match (token, socket.extensions.get::<Identity>()) {
        (None, _) => Ack::err("invalid_payload", "payload must be { token: string }"),
        (Some(_), None) => Ack::err("invalid_token", "no identity on this socket"),
        (Some(token), Some(current)) => match ctx.verifier.verify(&token) {
            Err(e) => Ack::err("invalid_token", e.to_string()),
            Ok(fresh)
                if fresh.user_id != current.user_id
                    || fresh.role != current.role
                    || fresh.vendor_id != current.vendor_id =>
            {
                Ack::err("invalid_token", "the token is for another identity")
            }
            Ok(fresh) => {
                let exp = fresh.exp;
                socket.extensions.insert(fresh);
                if let Some(watch) = socket.extensions.get::<Arc<ExpiryWatch>>() {
                    watch.refreshed(exp);
                }
                tracing::debug!(sid = %crate::socket::log_id(socket.id), exp, "token refreshed");
                Ack::ok(json!({ "exp": exp }))
            }
        },
    };
    send(&socket, ack, "auth:refresh", answer);
}
