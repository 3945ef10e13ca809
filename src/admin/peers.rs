//! The instances of one deployment as the console sees them. The console asks every
//! instance the same question (an overview, or who holds an identity's sockets) and
//! shows what each answered: with Redis over pub/sub, each instance answering on the
//! asker's own channel; alone, only itself.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use socketioxide_redis::drivers::Driver;
use tokio::sync::mpsc;

use crate::redis_link::ManagedDriver;
use crate::sync::lock;

/// The channel every instance listens to for questions.
const ASK: &str = "fixrx-admin#ask";
/// How long a question waits for the other instances.
const ASK_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the listener waits before subscribing again after Redis failed it.
const RESUBSCRIBE: Duration = Duration::from_secs(1);
/// Sockets of one identity listed per instance (the count is always whole).
pub const MAX_LISTED: usize = 50;

fn reply_channel(instance: &str) -> String {
    format!("fixrx-admin#reply#{instance}")
}

/// One instance's state, as it reports it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceInfo {
    pub id: String,
    pub host: String,
    pub version: String,
    /// Unix milliseconds.
    pub started_at: u64,
    pub uptime_secs: u64,
    /// `up`, `down`, or `none` without Redis.
    pub redis: String,
    pub ready: bool,
    pub connections: u64,
    pub websocket: u64,
    pub polling: u64,
    /// The instance that answers the console (set by it, never sent).
    #[serde(rename = "self", default, skip_deserializing)]
    pub is_self: bool,
}

/// One socket of a looked-up identity. `ref` is a fingerprint, never the socket id
/// (which also authorizes its long-polling requests).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SocketInfo {
    #[serde(rename = "ref")]
    pub fingerprint: String,
    /// When it connected, in Unix milliseconds.
    pub since: u64,
    pub transport: String,
}

/// What one instance answered.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Answer {
    pub instance: InstanceInfo,
    /// For a lookup: how many of its sockets are the identity's, and up to
    /// [`MAX_LISTED`] of them.
    #[serde(default)]
    pub matched: usize,
    #[serde(default)]
    pub sockets: Vec<SocketInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Query {
    Overview,
    /// The sockets in an identity room (`user:<id>#identity`...).
    Lookup {
        room: String,
    },
}

/// How an instance answers a question about itself.
pub trait LocalView: Send + Sync + 'static {
    fn answer(&self, query: &Query) -> Answer;
}

/// The other instances' answers, and how many were expected but did not answer in time.
#[derive(Debug, Default)]
pub struct Gathered {
    pub answers: Vec<Answer>,
    pub missing: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("redis: {0}")]
pub struct PeersError(String);

/// Where the other instances are.
pub enum Peers {
    /// No Redis: this instance is the whole deployment.
    Alone,
    Redis(Arc<RedisPeers>),
}

impl Peers {
    /// Asks every other instance; `Alone` has none to ask.
    pub async fn ask(&self, query: &Query) -> Result<Gathered, PeersError> {
        match self {
            Peers::Alone => Ok(Gathered::default()),
            Peers::Redis(r) => r.ask(query).await,
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Request {
    req: u64,
    from: String,
    query: Query,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Reply {
    req: u64,
    answer: Answer,
}

/// Questions and answers over the adapter's Redis connection.
pub struct RedisPeers {
    driver: ManagedDriver,
    me: String,
    next: AtomicU64,
    pending: Mutex<HashMap<u64, mpsc::UnboundedSender<Answer>>>,
    /// Whether this instance is subscribed (so counted among the listeners).
    listening: AtomicBool,
}

/// Removes a question's entry however its wait ends.
struct Pending<'a> {
    peers: &'a RedisPeers,
    req: u64,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        lock(&self.peers.pending).remove(&self.req);
    }
}

impl RedisPeers {
    /// Starts listening for questions (answered by `local`) and for answers.
    pub fn start(driver: ManagedDriver, me: String, local: Arc<dyn LocalView>) -> Arc<RedisPeers> {
        let peers = Arc::new(RedisPeers {
            driver,
            me,
            next: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            listening: AtomicBool::new(false),
        });
        tokio::spawn(listen(Arc::downgrade(&peers), local));
        peers
    }

    async fn ask(&self, query: &Query) -> Result<Gathered, PeersError> {
        let listeners = self.driver.num_serv(ASK).await.map_err(|e| PeersError(e.to_string()))?;
        let expected = usize::from(listeners).saturating_sub(usize::from(self.listening.load(Ordering::Acquire)));
        if expected == 0 {
            return Ok(Gathered::default());
        }
        let req = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = mpsc::unbounded_channel();
        lock(&self.pending).insert(req, tx);
        let _pending = Pending { peers: self, req };
        let request = Request { req, from: self.me.clone(), query: query.clone() };
        let bytes = serde_json::to_vec(&request).map_err(|e| PeersError(e.to_string()))?;
        self.driver.publish(ASK.to_owned(), bytes).await.map_err(|e| PeersError(e.to_string()))?;

        let mut answers: Vec<Answer> = Vec::with_capacity(expected);
        let deadline = tokio::time::Instant::now() + ASK_TIMEOUT;
        while answers.len() < expected {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(answer)) => {
                    // An instance answers once per question; a repeat (a resubscription) is dropped.
                    if !answers.iter().any(|a| a.instance.id == answer.instance.id) {
                        answers.push(answer);
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
        let missing = expected.saturating_sub(answers.len());
        Ok(Gathered { answers, missing })
    }

    fn deliver(&self, reply: Reply) {
        let pending = lock(&self.pending);
        if let Some(tx) = pending.get(&reply.req) {
            let _ = tx.send(reply.answer);
        }
    }
}

/// An instance id as we make them: so a message cannot name an odd channel.
fn plausible_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Answers the other instances' questions and hands their answers to ours, until the
/// server that started it is gone.
async fn listen(peers: Weak<RedisPeers>, local: Arc<dyn LocalView>) {
    loop {
        let Some(p) = peers.upgrade() else { return };
        let (driver, me) = (p.driver.clone(), p.me.clone());
        let streams = async {
            let asks = driver.subscribe(ASK.to_owned(), 256).await?;
            let replies = driver.subscribe(reply_channel(&me), 256).await?;
            Ok::<_, crate::redis_link::RedisError>((asks, replies))
        };
        let (mut asks, mut replies) = match streams.await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "admin console: cannot subscribe to the other instances; retrying");
                drop(p);
                tokio::time::sleep(RESUBSCRIBE).await;
                continue;
            }
        };
        p.listening.store(true, Ordering::Release);
        drop(p);
        let mut alive = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                item = asks.next() => match item {
                    Some((_, bytes)) => answer(&driver, &me, local.as_ref(), &bytes).await,
                    None => break,
                },
                item = replies.next() => match item {
                    Some((_, bytes)) => {
                        let Some(p) = peers.upgrade() else { return };
                        match serde_json::from_slice::<Reply>(&bytes) {
                            Ok(reply) => p.deliver(reply),
                            Err(_) => tracing::debug!("admin console: unreadable answer ignored"),
                        }
                    }
                    None => break,
                },
                _ = alive.tick() => {
                    if peers.strong_count() == 0 {
                        let _ = driver.unsubscribe(ASK.to_owned()).await;
                        let _ = driver.unsubscribe(reply_channel(&me)).await;
                        return;
                    }
                }
            }
        }
        if let Some(p) = peers.upgrade() {
            p.listening.store(false, Ordering::Release);
        }
        tokio::time::sleep(RESUBSCRIBE).await;
    }
}

/// Answers one question from another instance on its reply channel.
async fn answer(driver: &ManagedDriver, me: &str, local: &dyn LocalView, bytes: &[u8]) {
    let Ok(request) = serde_json::from_slice::<Request>(bytes) else {
        tracing::debug!("admin console: unreadable question ignored");
        return;
    };
    if request.from == me || !plausible_id(&request.from) {
        return;
    }
    let reply = Reply { req: request.req, answer: local.answer(&request.query) };
    if let Ok(bytes) = serde_json::to_vec(&reply)
        && let Err(e) = driver.publish(reply_channel(&request.from), bytes).await
    {
        tracing::debug!(error = %e, "admin console: answer not sent");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn questions_and_answers_read_back_as_sent() {
        let q = Query::Lookup { room: "user:42".into() };
        let text = serde_json::to_string(&Request { req: 7, from: "abc".into(), query: q.clone() }).expect("json");
        assert_eq!(text, r#"{"req":7,"from":"abc","query":{"kind":"lookup","room":"user:42"}}"#);
        let back: Request = serde_json::from_str(&text).expect("reads back");
        assert_eq!(back.query, q);
        let overview: Request =
            serde_json::from_str(r#"{"req":1,"from":"x","query":{"kind":"overview"}}"#).expect("overview");
        assert_eq!(overview.query, Query::Overview);
        assert!(serde_json::from_str::<Request>(r#"{"req":1,"from":"x","query":{"kind":"drop"}}"#).is_err());
    }

    #[test]
    fn an_answer_cannot_claim_to_be_the_console_s_own_instance() {
        let info = r#"{"id":"a","host":"h","version":"1","startedAt":1,"uptimeSecs":2,"redis":"up","ready":true,
            "connections":3,"websocket":2,"polling":1,"self":true}"#;
        let answer: Answer = serde_json::from_str(&format!(r#"{{"instance":{info}}}"#)).expect("answer");
        assert!(!answer.instance.is_self);
        assert!(answer.sockets.is_empty());
    }

    #[test]
    fn only_ids_we_make_name_a_reply_channel() {
        assert!(plausible_id("0f3a9c2e"));
        for bad in ["", "a b", "x#y", "*", &"a".repeat(65)] {
            assert!(!plausible_id(bad), "{bad:?}");
        }
    }
}
