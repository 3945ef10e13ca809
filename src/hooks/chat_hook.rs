//! The chat hook: before a chat message is relayed, the backend is asked (and so can
//! store or moderate it). Nothing is relayed that the backend did not accept.
//!
//! At most `CHAT_HOOK_CONCURRENCY` requests are in flight: a flood of chat messages
//! (across users and instances' worth of sockets) cannot open unbounded requests to the
//! backend, nor hold unbounded messages waiting for one. Past the limit a message is
//! refused at once as `unavailable`, which the sender may retry.

use std::time::Instant;

use tokio::sync::Semaphore;

use serde::Serialize;
use serde_json::Value;

use super::post::{PostError, Poster};
use crate::config::HookTarget;
use crate::events::chat::ChatMessage;
use crate::metrics::{Metrics, OutcomeLabels};

/// Longest backend error message passed on to the sender, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// The backend's answer about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// `2xx`: relay it.
    Accepted,
    /// `4xx`: do not relay; the backend's `error.message`, if it sent one.
    Rejected(Option<String>),
    /// `5xx`, a timeout, or no connection: do not relay; the sender may retry.
    Unavailable(String),
}

/// Asks the backend about chat messages (`CHAT_HOOK_URL`).
pub struct ChatHook {
    poster: Poster,
    target: HookTarget,
    metrics: std::sync::Arc<Metrics>,
    /// One permit per request in flight.
    in_flight: Semaphore,
}

/// The verdict for a message refused because the backend already has the most requests
/// in flight allowed.
const BUSY: &str = "too many chat messages waiting for the backend";

#[derive(Serialize)]
struct Body<'a> {
    message: &'a ChatMessage,
}

impl ChatHook {
    /// `concurrency`: most requests in flight at once (at least one).
    pub fn new(poster: Poster, target: HookTarget, metrics: std::sync::Arc<Metrics>, concurrency: usize) -> ChatHook {
        ChatHook { poster, target, metrics, in_flight: Semaphore::new(concurrency.max(1)) }
    }

    /// Posts `{ "message": … }` and waits (at most `CHAT_HOOK_TIMEOUT_MS`) for the verdict;
    /// `Unavailable` at once when the most requests allowed are already in flight.
    pub async fn check(&self, message: &ChatMessage) -> Verdict {
        let started = Instant::now();
        let verdict = match self.in_flight.try_acquire() {
            Err(_) => Verdict::Unavailable(BUSY.to_owned()),
            Ok(_permit) => match serde_json::to_vec(&Body { message }) {
                Err(e) => Verdict::Unavailable(format!("the message could not be serialized: {e}")),
                Ok(body) => judge(self.poster.post(&self.target, body).await),
            },
        };
        let outcome = match &verdict {
            Verdict::Accepted => "accepted",
            Verdict::Rejected(_) => "rejected",
            Verdict::Unavailable(_) => "unavailable",
        };
        self.metrics.chat_hook.get_or_create(&OutcomeLabels { outcome }).inc();
        self.metrics.chat_hook_duration.observe(started.elapsed().as_secs_f64());
        match &verdict {
            Verdict::Accepted => tracing::debug!(id = %message.id, "chat hook accepted the message"),
            Verdict::Rejected(reason) => tracing::info!(id = %message.id, ?reason, "chat hook rejected the message"),
            Verdict::Unavailable(why) => {
                tracing::warn!(id = %message.id, %why, "chat hook unavailable: message not relayed")
            }
        }
        verdict
    }
}

fn judge(answer: Result<super::post::Answer, PostError>) -> Verdict {
    match answer {
        Err(e) => Verdict::Unavailable(e.to_string()),
        Ok(a) if a.status.is_success() => Verdict::Accepted,
        Ok(a) if a.status.is_client_error() => Verdict::Rejected(reason(&a.body)),
        Ok(a) => Verdict::Unavailable(format!("the backend answered {}", a.status)),
    }
}

/// The backend's reason in an answer (untrusted: any bytes). `error.message` of a JSON body `{ "error": { "message": "…" } }` (or `{ "error": "…" }`),
/// trimmed and cut to [`MAX_REASON_CHARS`].
pub fn reason(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let text = match v.get("error")? {
        Value::String(s) => s.as_str(),
        Value::Object(o) => o.get("message")?.as_str()?,
        _ => return None,
    };
    let text: String = text.trim().chars().filter(|c| !c.is_control()).take(MAX_REASON_CHARS).collect();
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    fn answer(status: u16, body: &str) -> Result<super::super::post::Answer, PostError> {
        Ok(super::super::post::Answer { status: StatusCode::from_u16(status).unwrap(), body: body.as_bytes().to_vec() })
    }

    #[test]
    fn the_status_decides_and_a_4xx_carries_the_backends_message() {
        assert_eq!(judge(answer(200, "")), Verdict::Accepted);
        assert_eq!(judge(answer(204, "")), Verdict::Accepted);
        assert_eq!(
            judge(answer(422, r#"{"error":{"message":"no phone numbers"}}"#)),
            Verdict::Rejected(Some("no phone numbers".into()))
        );
        assert_eq!(judge(answer(403, r#"{"error":"blocked"}"#)), Verdict::Rejected(Some("blocked".into())));
        assert_eq!(judge(answer(400, "not json")), Verdict::Rejected(None));
        assert_eq!(judge(answer(409, r#"{"error":{"message":42}}"#)), Verdict::Rejected(None));
        assert!(matches!(judge(answer(500, "")), Verdict::Unavailable(_)));
        assert!(matches!(judge(answer(302, "")), Verdict::Unavailable(_)));
        assert!(matches!(judge(Err(PostError::Unreachable("refused".into()))), Verdict::Unavailable(_)));
    }

    #[tokio::test]
    async fn past_the_concurrency_a_message_is_refused_at_once_as_unavailable() {
        // A backend that accepts connections and never answers: requests stay in flight.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/chat", listener.local_addr().unwrap());
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                open.push(conn);
            }
        });
        let target = HookTarget { url: url.parse().unwrap(), timeout: std::time::Duration::from_secs(30) };
        let poster = Poster::new(super::super::sign::Signer::new("s".to_owned().into()), &[]).unwrap();
        let hook = std::sync::Arc::new(ChatHook::new(poster, target, std::sync::Arc::new(Metrics::new()), 2));
        let message = crate::events::chat::compose(
            crate::events::chat::Party {
                kind: crate::events::room::RoomKind::User,
                id: crate::events::id::Id::new("u1").unwrap(),
            },
            crate::events::chat::Draft {
                to: crate::events::chat::Party {
                    kind: crate::events::room::RoomKind::Vendor,
                    id: crate::events::id::Id::new("v1").unwrap(),
                },
                text: "hi".into(),
                client_msg_id: None,
            },
        )
        .unwrap();
        let waiting: Vec<_> = (0..2)
            .map(|_| {
                let (hook, message) = (hook.clone(), message.clone());
                tokio::spawn(async move { hook.check(&message).await })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let third = tokio::time::timeout(std::time::Duration::from_millis(100), hook.check(&message)).await;
        assert_eq!(third.expect("refused at once, not queued"), Verdict::Unavailable(BUSY.to_owned()));
        for w in waiting {
            w.abort();
        }
        held.abort();
    }

    #[test]
    fn a_long_or_odd_reason_is_cut_and_cleaned() {
        let long = format!(r#"{{"error":{{"message":"{}"}}}}"#, "x".repeat(2000));
        assert_eq!(reason(long.as_bytes()).unwrap().chars().count(), MAX_REASON_CHARS);
        assert_eq!(reason(br#"{"error":{"message":"  a\u0000b\n "}}"#).as_deref(), Some("ab"));
        assert_eq!(reason(br#"{"error":{"message":"   "}}"#), None);
    }
}
