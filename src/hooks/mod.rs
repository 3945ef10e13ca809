//! Backend hooks: what the server tells the backend, and what it asks it.
//!
//! - [`presence`]: `presence.online` / `presence.offline` webhooks to `WEBHOOK_URL`,
//!   one per transition across every instance, delivered by [`sender`].
//! - [`chat_hook`]: the chat hook, asked before a chat message is relayed (`CHAT_HOOK_URL`).
//!
//! Every request is a JSON `POST` signed by [`sign`], on one pooled client ([`post`]).
//! Nothing here is on the path of a socket or a REST request except the chat hook,
//! which the contract makes the sender wait for.

pub mod chat_hook;
pub mod post;
pub mod presence;
pub mod sender;
pub mod sign;

use std::sync::{Arc, Mutex};

use crate::redis_link::RedisConn;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::HooksConfig;
use crate::metrics::Metrics;
use crate::sync::lock;
use chat_hook::ChatHook;
use post::Poster;
use presence::{Store, Tracker};

#[derive(Debug, thiserror::Error)]
#[error("WEBHOOK_URL / CHAT_HOOK_URL: cannot build the HTTP client: {0}")]
pub struct HooksError(#[from] reqwest::Error);

/// The hooks of one instance, started with the server.
#[derive(Default)]
pub struct Hooks {
    pub chat: Option<Arc<ChatHook>>,
    presence: Option<PresenceHooks>,
}

struct PresenceHooks {
    tracker: Arc<Tracker>,
    /// The outbox outlives this instance (Redis): another instance delivers what is left.
    shared: bool,
    stop_worker: watch::Sender<bool>,
    stop_sender: watch::Sender<Option<Instant>>,
    tasks: Mutex<Option<(JoinHandle<()>, JoinHandle<()>)>>,
}

impl Hooks {
    /// Starts what the configuration turns on; `redis` shares presence across instances.
    pub fn start(config: &HooksConfig, redis: Option<RedisConn>, metrics: &Arc<Metrics>) -> Result<Hooks, HooksError> {
        let Some(secret) = config.secret.clone() else { return Ok(Hooks::default()) };
        let poster = Poster::new(sign::Signer::new(secret), &config.extra_roots)?;
        let chat = config
            .chat
            .clone()
            .map(|target| Arc::new(ChatHook::new(poster.clone(), target, metrics.clone(), config.chat_concurrency)));
        let presence = config.webhook.clone().map(|target| {
            let store = Arc::new(match redis {
                Some(conn) => {
                    let instance = uuid::Uuid::new_v4().simple().to_string();
                    Store::Redis(Box::new(presence::redis::RedisStore::new(conn, instance, config.offline_grace)))
                }
                None => Store::Memory(presence::memory::MemoryStore::new(config.offline_grace)),
            });
            let shared = matches!(*store, Store::Redis(_));
            let tracker = Arc::new(Tracker::default());
            let wake = Arc::new(Notify::new());
            let (stop_worker, worker_stop) = watch::channel(false);
            let (stop_sender, sender_stop) = watch::channel(None);
            let worker = tokio::spawn(presence::run_worker(
                tracker.clone(),
                store.clone(),
                wake.clone(),
                metrics.clone(),
                worker_stop,
            ));
            let sender = sender::Sender { store, poster, target, metrics: metrics.clone(), wake };
            let sender = tokio::spawn(sender.run(sender_stop));
            PresenceHooks { tracker, shared, stop_worker, stop_sender, tasks: Mutex::new(Some((worker, sender))) }
        });
        Ok(Hooks { chat, presence })
    }

    /// Where sockets are counted, when presence webhooks are on.
    pub fn presence(&self) -> Option<Arc<Tracker>> {
        self.presence.as_ref().map(|p| p.tracker.clone())
    }

    /// After the sockets are closed: writes their departures, then (in memory, where
    /// nobody else will) delivers what it can before `deadline`.
    pub async fn shutdown(&self, deadline: Instant) {
        let Some(p) = &self.presence else { return };
        let Some((worker, sender)) = lock(&p.tasks).take() else { return };
        let _ = p.stop_worker.send(true);
        if tokio::time::timeout_at(deadline, worker).await.is_err() {
            tracing::warn!("shutdown: presence counts not all written before the deadline");
        }
        let _ = p.stop_sender.send(Some(if p.shared { Instant::now() } else { deadline }));
        let _ = sender.await;
    }
}
