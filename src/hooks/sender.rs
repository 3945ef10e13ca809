//! Delivers the presence outbox to `WEBHOOK_URL`: at least once, with the entry's stable
//! `id`, in order per identity, retried with exponential backoff and jitter for at least
//! [`RETRY_FOR`], never on the path of a socket or a REST request.
//!
//! Memory stays bounded whatever the receiver does: at most [`WINDOW`] entries are read
//! from the outbox at a time (the outbox itself is capped by its store), and at most
//! [`MAX_IN_FLIGHT`] requests are open.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::post::{PostError, Poster};
use super::presence::{Queued, Store};
use crate::config::HookTarget;
use crate::metrics::{Metrics, OutcomeLabels};

/// How long a failing delivery is retried before it is given up.
pub const RETRY_FOR: Duration = Duration::from_secs(5 * 60);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Outbox entries held in memory at once.
const WINDOW: usize = 1_024;
/// Requests open at once (one per identity at most).
const MAX_IN_FLIGHT: usize = 32;
/// How often the outbox is looked at when nothing woke the sender (other instances'
/// transitions arrive this way).
const POLL: Duration = Duration::from_millis(250);

/// The wait before retry number `attempt` (1 for the first retry): doubling from
/// [`FIRST_BACKOFF`] up to [`MAX_BACKOFF`], with jitter in its upper half so that
/// deliveries failed together do not retry together.
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    let doubled = FIRST_BACKOFF.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let base = doubled.min(MAX_BACKOFF);
    base.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

struct Item {
    queued: Queued,
    first_try: Option<Instant>,
    retries: u32,
    not_before: Instant,
}

/// Per identity: its entries in outbox order, and whether its head is being sent.
#[derive(Default)]
struct Lane {
    items: VecDeque<Item>,
    busy: bool,
}

type Outcome = (String, Result<http::StatusCode, PostError>, Duration);

pub struct Sender {
    pub store: Arc<Store>,
    pub poster: Poster,
    pub target: HookTarget,
    pub metrics: Arc<Metrics>,
    pub wake: Arc<Notify>,
}

struct State {
    lanes: HashMap<String, Lane>,
    held: usize,
    cursor: Option<String>,
    leader: bool,
    next_lease: Instant,
}

impl Sender {
    /// Runs until `stop` holds a deadline, then until nothing is left to send or the
    /// deadline passes.
    pub async fn run(self, mut stop: watch::Receiver<Option<Instant>>) {
        let mut state =
            State { lanes: HashMap::new(), held: 0, cursor: None, leader: false, next_lease: Instant::now() };
        let mut flights: JoinSet<Outcome> = JoinSet::new();
        let mut deadline: Option<Instant> = None;
        let mut next_poll = Instant::now();
        let mut woken = true;
        loop {
            if let Some(deadline) = deadline
                && (Instant::now() >= deadline || (state.held == 0 && flights.is_empty()))
            {
                break;
            }
            self.keep_lease(&mut state).await;
            if woken || Instant::now() >= next_poll {
                self.load(&mut state).await;
                self.gauge_depth().await;
                next_poll = Instant::now() + POLL;
                woken = false;
            }
            self.dispatch(&mut state, &mut flights);
            let wait = next_due(&state).map_or(next_poll, |due| due.min(next_poll));
            let wait = deadline.map_or(wait, |d| d.min(wait));
            tokio::select! {
                Some(done) = flights.join_next() => {
                    if let Ok(outcome) = done {
                        self.settle(&mut state, outcome).await;
                    }
                }
                () = self.wake.notified() => woken = true,
                () = tokio::time::sleep_until(wait) => {}
                changed = stop.changed(), if deadline.is_none() => {
                    // A dropped handle means the server is gone: stop now.
                    deadline = if changed.is_ok() { *stop.borrow() } else { Some(Instant::now()) };
                }
            }
        }
        if matches!(*self.store, Store::Redis(_)) {
            tracing::info!(
                held = state.held,
                "presence webhook sender stopped; the outbox stays in Redis for the others"
            );
        } else if state.held > 0 {
            self.count("dropped", state.held as u64);
            tracing::warn!(undelivered = state.held, "presence webhooks left undelivered at shutdown");
        }
    }

    async fn keep_lease(&self, state: &mut State) {
        if Instant::now() < state.next_lease {
            return;
        }
        state.next_lease = Instant::now() + super::presence::HEARTBEAT;
        let leads = self.store.lead().await.unwrap_or(false);
        if leads != state.leader {
            // Gained: start from the oldest entry (a dead sender may have left some). Lost:
            // forget what is held; the new sender starts from the oldest too.
            state.lanes.clear();
            state.held = 0;
            state.cursor = None;
            state.leader = leads;
            tracing::info!(sending = leads, "presence webhook sender lease changed");
        }
    }

    async fn load(&self, state: &mut State) {
        if !state.leader || state.held >= WINDOW {
            return;
        }
        let Ok(batch) = self.store.read(state.cursor.as_deref(), WINDOW - state.held).await else { return };
        for queued in batch {
            state.cursor = Some(queued.key.clone());
            let lane = state.lanes.entry(queued.transition.who.clone()).or_default();
            lane.items.push_back(Item { queued, first_try: None, retries: 0, not_before: Instant::now() });
            state.held += 1;
        }
    }

    fn dispatch(&self, state: &mut State, flights: &mut JoinSet<Outcome>) {
        let now = Instant::now();
        for (who, lane) in &mut state.lanes {
            if flights.len() >= MAX_IN_FLIGHT {
                break;
            }
            let Some(head) = lane.items.front_mut() else { continue };
            if lane.busy || head.not_before > now {
                continue;
            }
            lane.busy = true;
            head.first_try.get_or_insert(now);
            let body = head.queued.transition.body();
            let (poster, target, who) = (self.poster.clone(), self.target.clone(), who.clone());
            flights.spawn(async move {
                let started = Instant::now();
                let result = poster.post(&target, body).await.map(|a| a.status);
                (who, result, started.elapsed())
            });
        }
    }

    async fn settle(&self, state: &mut State, (who, result, took): Outcome) {
        self.metrics.webhook_duration.observe(took.as_secs_f64());
        let Some(lane) = state.lanes.get_mut(&who) else { return };
        lane.busy = false;
        let Some(head) = lane.items.front_mut() else { return };
        let id = head.queued.transition.id.clone();
        let failure = match result {
            Ok(status) if status.is_success() => None,
            Ok(status) => Some(format!("answered {status}")),
            Err(e) => Some(e.to_string()),
        };
        let done = match failure {
            None => {
                self.count("sent", 1);
                tracing::debug!(%id, %who, "presence webhook delivered");
                true
            }
            Some(why) => {
                self.count("failed", 1);
                let tried_for = head.first_try.map_or(Duration::ZERO, |t| t.elapsed());
                if tried_for >= RETRY_FOR {
                    self.count("dropped", 1);
                    tracing::warn!(%id, %who, %why, ?tried_for, "presence webhook given up");
                    true
                } else {
                    head.retries += 1;
                    head.not_before = Instant::now() + backoff(head.retries, fastrand::f64());
                    self.count("retried", 1);
                    tracing::debug!(%id, %who, %why, retry = head.retries, "presence webhook failed; will retry");
                    false
                }
            }
        };
        if done && let Some(item) = lane.items.pop_front() {
            state.held -= 1;
            if lane.items.is_empty() {
                state.lanes.remove(&who);
            }
            if let Err(e) = self.store.ack(&item.queued.key).await {
                tracing::warn!(error = %e, id = %item.queued.transition.id, "presence outbox: could not remove a delivered entry (it may be sent again)");
            }
        }
    }

    /// `fixrx_webhook_outbox`, at each look at the outbox (at least every [`POLL`]), on
    /// every instance, leader or not. A failed read leaves the last value.
    async fn gauge_depth(&self) {
        if let Ok(depth) = self.store.depth().await {
            self.metrics.webhook_outbox.set(i64::try_from(depth).unwrap_or(i64::MAX));
        }
    }

    fn count(&self, outcome: &'static str, n: u64) {
        self.metrics.webhooks.get_or_create(&OutcomeLabels { outcome }).inc_by(n);
    }
}

/// The earliest retry among lanes that are waiting.
fn next_due(state: &State) -> Option<Instant> {
    state.lanes.values().filter(|l| !l.busy).filter_map(|l| l.items.front().map(|i| i.not_before)).min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap_with_jitter_in_the_upper_half() {
        assert_eq!(backoff(1, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(1, 0.0), Duration::from_millis(500));
        assert_eq!(backoff(3, 1.0), Duration::from_secs(4));
        assert_eq!(backoff(7, 1.0), Duration::from_secs(60));
        assert_eq!(backoff(u32::MAX, 0.0), Duration::from_secs(30));
    }

    #[test]
    fn retries_span_at_least_the_retry_window_before_giving_up() {
        // With the least jitter, the attempts made before RETRY_FOR elapses:
        let mut elapsed = Duration::ZERO;
        let mut attempts = 1;
        while elapsed < RETRY_FOR {
            elapsed += backoff(attempts, 0.0);
            attempts += 1;
        }
        assert!(attempts >= 8, "{attempts}");
    }
}
