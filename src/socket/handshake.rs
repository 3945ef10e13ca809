//! The Socket.IO connect middleware: a client proves who it is with a JWT, or the
//! CONNECT is refused with a `connect_error` saying why.

use std::sync::Arc;

use serde_json::Value;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{SocketRef, State, TryData};

use super::SocketCtx;
use super::users::TooManySockets;
use crate::auth::TokenError;
use crate::auth::handshake::{TokenSource, find_token};
use crate::delivery::OffsetsRequest;
use crate::metrics::{HandshakeLabels, ReasonLabels};
use crate::telemetry::log_id;

/// Why a CONNECT is refused. The `Display` text is what the client sees in
/// `connect_error`: a stable code, a colon, a short reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The token's subject already holds `MAX_SOCKETS_PER_USER` sockets.
    #[error("too_many_sockets: at most {} sockets per user", .0.max)]
    TooManySockets(TooManySockets),
}

impl HandshakeError {
    /// A short label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            HandshakeError::Token(e) => e.reason(),
            HandshakeError::TooManySockets(_) => "max_sockets_per_user",
        }
    }
}

/// Verifies the handshake token, takes the socket's place in its user's count, and
/// stores the [`crate::auth::Identity`] (and the place) on the socket.
pub async fn authenticate<A: Adapter>(
    socket: SocketRef<A>,
    TryData(auth): TryData<Value>,
    State(ctx): State<Arc<SocketCtx>>,
) -> Result<(), HandshakeError> {
    let auth = auth.ok();
    let result = match find_token(auth.as_ref(), socket.req_parts()) {
        Ok(TokenSource::Auth(t)) => ctx.verifier.verify(t).await,
        Ok(TokenSource::Header(t) | TokenSource::Query(t)) => ctx.verifier.verify(&t).await,
        Err(e) => Err(e),
    };
    let result = result.map_err(HandshakeError::from).and_then(|identity| {
        // Taken before anything else is done for the socket; given back when it ends,
        // however it ends (the slot lives in the socket's extensions).
        let slot = ctx.users.enter(identity.user_id.as_str()).map_err(HandshakeError::TooManySockets)?;
        socket.extensions.insert(Arc::new(slot));
        Ok(identity)
    });
    match result {
        Ok(identity) => {
            ctx.metrics.handshakes.get_or_create(&HandshakeLabels { result: "accepted", reason: "" }).inc();
            tracing::debug!(sid = %log_id(socket.id), user = %identity.user_id, role = identity.role.as_str(), "handshake accepted");
            let own: Vec<String> = identity.own_rooms().iter().map(|r| r.name()).collect();
            if let Some(request) = OffsetsRequest::from_auth(auth.as_ref(), &own) {
                socket.extensions.insert(request);
            }
            // Shared: socketioxide's extensions hand out clones, and the identity is
            // looked up on every chat message.
            socket.extensions.insert(Arc::new(identity));
            Ok(())
        }
        Err(e) => {
            ctx.metrics.handshakes.get_or_create(&HandshakeLabels { result: "refused", reason: e.reason() }).inc();
            if let HandshakeError::TooManySockets(_) = e {
                ctx.metrics.user_limits.get_or_create(&ReasonLabels { reason: e.reason() }).inc();
            }
            tracing::info!(sid = %log_id(socket.id), reason = e.reason(), "handshake refused");
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_keep_their_stable_codes() {
        let token = HandshakeError::from(TokenError::Expired);
        assert_eq!(token.to_string(), "unauthorized: token expired");
        assert_eq!(token.reason(), "expired");
        let cap = HandshakeError::TooManySockets(TooManySockets { max: 100 });
        assert_eq!(cap.to_string(), "too_many_sockets: at most 100 sockets per user");
        assert_eq!(cap.reason(), "max_sockets_per_user");
    }
}
