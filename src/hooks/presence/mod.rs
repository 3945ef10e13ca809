//! Presence transitions: `presence.online` when an identity (a `user:<id>` or
//! `vendor:<id>` room) gets its first socket anywhere, `presence.offline` when its last
//! socket everywhere has been gone for the grace period.
//!
//! How it is kept exact across instances:
//! - Each instance counts its own sockets per identity ([`Tracker`]) and a single worker
//!   per instance writes those counts, as absolute numbers, to the shared [`Store`]:
//!   a write can be retried after an error without counting anything twice.
//! - The store decides every transition in one atomic step (one Lua script with Redis),
//!   from the sum over instances, and appends it to one ordered outbox in the same step:
//!   one transition, one outbox entry, whichever instances the sockets are on.
//! - A pending offline is a deadline in the store, so any instance can finish it: the
//!   instance that saw the last socket leave may be gone by then.
//! - Instances prove they are alive by a heartbeat every [`HEARTBEAT`]; one silent for
//!   [`DEAD_AFTER`] is reaped by whichever instance sweeps first: its sockets count as
//!   gone from then, and the grace runs from there. An instance that finds it was reaped
//!   (a long pause) writes all its counts again.
//! - One instance at a time (a lease in the store) delivers the outbox, in order per
//!   identity ([`super::sender`]).

pub mod memory;
pub mod redis;
mod worker;

pub use worker::run_worker;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use crate::sync::lock;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::Notify;

/// How often an instance proves it is alive, renews the sender lease and sweeps.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// An instance silent this long is dead: its sockets count as gone.
pub const DEAD_AFTER: Duration = Duration::from_secs(5);
/// How often due offlines are looked for (the precision of the grace period).
const SWEEP_EVERY: Duration = Duration::from_millis(250);
/// Identities written to the store per step.
const BATCH: usize = 256;

/// A presence change, as named on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Online,
    Offline,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Online => "presence.online",
            Change::Offline => "presence.offline",
        }
    }

    fn parse(s: &str) -> Option<Change> {
        match s {
            "online" | "presence.online" => Some(Change::Online),
            "offline" | "presence.offline" => Some(Change::Offline),
            _ => None,
        }
    }
}

/// One transition waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// Stable across retries and across the instances that may deliver it.
    pub id: String,
    pub change: Change,
    /// The identity's room name: `user:<id>` or `vendor:<id>`.
    pub who: String,
    /// When it happened: the first socket's arrival, or the last socket's departure.
    pub at_ms: i64,
}

impl Transition {
    /// The webhook body: `{ id, type, occurredAt, data: { type, id } }`.
    pub fn body(&self) -> Vec<u8> {
        let (kind, id) = self.who.split_once(':').unwrap_or(("user", self.who.as_str()));
        let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.at_ms) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let body = json!({
            "id": self.id,
            "type": self.change.as_str(),
            "occurredAt": at.format(&Rfc3339).unwrap_or_default(),
            "data": { "type": kind, "id": id },
        });
        body.to_string().into_bytes()
    }
}

/// An outbox entry and the key that acknowledges it.
#[derive(Debug, Clone)]
pub struct Queued {
    pub key: String,
    pub transition: Transition,
}

/// What a write to the store did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Applied {
    /// Transitions appended to the outbox.
    pub announced: u64,
    /// Transitions given up because the outbox was full.
    pub dropped: u64,
}

/// What a heartbeat found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    /// Known and alive.
    Alive,
    /// Was not known (first beat, reaped after a pause, or an emptied Redis): every count
    /// must be written again.
    Joined,
    /// Being reaped: counts are refused until that is finished.
    Reaping,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("presence store: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("presence store: unexpected reply: {0}")]
    Reply(String),
    /// The instance is not (or no longer) registered: heartbeat, then write again.
    #[error("presence store: this instance is not registered")]
    Unregistered,
}

/// Where counts, pending offlines and the outbox live.
pub enum Store {
    Memory(memory::MemoryStore),
    Redis(Box<redis::RedisStore>),
}

impl Store {
    pub async fn apply(&self, counts: &[(String, u32)]) -> Result<Applied, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.apply(counts)),
            Store::Redis(r) => r.apply(counts).await,
        }
    }

    pub async fn heartbeat(&self) -> Result<Beat, StoreError> {
        match self {
            Store::Memory(_) => Ok(Beat::Alive),
            Store::Redis(r) => r.heartbeat().await,
        }
    }

    /// Reaps dead instances and turns due pending offlines into transitions.
    pub async fn sweep(&self) -> Result<Applied, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.sweep()),
            Store::Redis(r) => r.sweep().await,
        }
    }

    /// Takes or renews the sender lease; true while this instance holds it.
    pub async fn lead(&self) -> Result<bool, StoreError> {
        match self {
            Store::Memory(_) => Ok(true),
            Store::Redis(r) => r.lead().await,
        }
    }

    /// Up to `max` outbox entries after `after` (`None`: from the oldest), in order.
    pub async fn read(&self, after: Option<&str>, max: usize) -> Result<Vec<Queued>, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.read(after, max)),
            Store::Redis(r) => r.read(after, max).await,
        }
    }

    /// Entries in the outbox now: queued, not yet delivered nor given up.
    pub async fn depth(&self) -> Result<u64, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.depth()),
            Store::Redis(r) => r.depth().await,
        }
    }

    /// Removes a delivered (or given up) entry from the outbox.
    pub async fn ack(&self, key: &str) -> Result<(), StoreError> {
        match self {
            Store::Memory(m) => {
                m.ack(key);
                Ok(())
            }
            Store::Redis(r) => r.ack(key).await,
        }
    }

    /// A clean exit: in memory, everyone goes offline now (nobody else will say so); with
    /// Redis, what is left of this instance is reaped like a dead one's, with the grace (its
    /// clients may reconnect elsewhere), and the lease is given up.
    pub async fn leave(&self) -> Result<Applied, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.close_all()),
            Store::Redis(r) => r.leave().await.map(|()| Applied::default()),
        }
    }
}

/// This instance's sockets per identity, and which counts the store has not seen yet.
#[derive(Default)]
pub struct Tracker {
    local: Mutex<Local>,
    wake: Notify,
}

#[derive(Default)]
struct Local {
    counts: HashMap<String, u32>,
    dirty: HashSet<String>,
}

impl Tracker {
    /// A socket arrived in these identity rooms.
    pub fn connected(&self, who: &[String]) {
        self.change(who, |n| n.saturating_add(1));
    }

    /// A socket counted by [`Tracker::connected`] left.
    pub fn disconnected(&self, who: &[String]) {
        self.change(who, |n| n.saturating_sub(1));
    }

    fn change(&self, who: &[String], f: impl Fn(u32) -> u32) {
        {
            let mut local = lock(&self.local);
            for w in who {
                let n = f(local.counts.get(w).copied().unwrap_or(0));
                if n == 0 {
                    local.counts.remove(w);
                } else {
                    local.counts.insert(w.clone(), n);
                }
                local.dirty.insert(w.clone());
            }
        }
        self.wake.notify_one();
    }

    /// Up to `max` changed identities with their current counts, no longer marked changed.
    fn take_dirty(&self, max: usize) -> Vec<(String, u32)> {
        let mut local = lock(&self.local);
        let taken: Vec<String> = local.dirty.iter().take(max).cloned().collect();
        taken
            .into_iter()
            .map(|w| {
                local.dirty.remove(&w);
                let n = local.counts.get(&w).copied().unwrap_or(0);
                (w, n)
            })
            .collect()
    }

    /// Marks identities changed again (their write failed).
    fn restore(&self, batch: &[(String, u32)]) {
        let mut local = lock(&self.local);
        local.dirty.extend(batch.iter().map(|(w, _)| w.clone()));
    }

    /// Marks every identity with a socket here changed (the store forgot this instance).
    fn mark_all(&self) {
        let mut local = lock(&self.local);
        let all: Vec<String> = local.counts.keys().cloned().collect();
        local.dirty.extend(all);
    }

    fn has_dirty(&self) -> bool {
        !lock(&self.local).dirty.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_sockets_and_only_changes_are_written() {
        let t = Tracker::default();
        let who = vec!["user:1".to_owned(), "vendor:7".to_owned()];
        t.connected(&who);
        t.connected(&who[..1]);
        let mut batch = t.take_dirty(10);
        batch.sort();
        assert_eq!(batch, vec![("user:1".into(), 2), ("vendor:7".into(), 1)]);
        assert!(t.take_dirty(10).is_empty());
        t.disconnected(&who);
        t.disconnected(&who[..1]);
        let mut batch = t.take_dirty(10);
        batch.sort();
        assert_eq!(batch, vec![("user:1".into(), 0), ("vendor:7".into(), 0)]);
        t.restore(&batch);
        assert_eq!(t.take_dirty(1).len(), 1);
    }

    #[test]
    fn the_body_is_the_contracts_shape() {
        let t =
            Transition { id: "w1".into(), change: Change::Offline, who: "vendor:v-9".into(), at_ms: 1_700_000_000_250 };
        let v: serde_json::Value = serde_json::from_slice(&t.body()).unwrap();
        assert_eq!(
            v,
            json!({ "id": "w1", "type": "presence.offline", "occurredAt": "2023-11-14T22:13:20.25Z",
                    "data": { "type": "vendor", "id": "v-9" } })
        );
    }
}
