//! Where each connection is in its life (waiting for a head, receiving a body, serving,
//! idle, upgraded), and the watchdog that says when it has stayed too long in one place.

use std::sync::Mutex;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::serve::Timeouts;
use crate::sync::lock;

/// What a connection is doing, as far as its limits care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a complete request head, since the connection opened or since the
    /// first byte after an idle spell. Bytes that do not complete it change nothing.
    Head(Instant),
    /// A request head arrived, its body has not finished arriving: on the header limit's
    /// clock, from the head's end (a slow upload of a small body must not hold a slot).
    Body(Instant),
    /// This many requests being served (hyper serves one at a time; counted to be safe).
    Busy(u32),
    /// Between two requests, since the last response ended.
    Idle(Instant),
    /// Handed over to a WebSocket.
    Upgraded,
}

/// A connection's `Phase`, kept in its [`ConnHandle`]: the stream reports bytes read,
/// requests report their start and end, and the watchdog waits on it.
#[derive(Debug)]
pub struct Activity {
    phase: Mutex<Phase>,
    changed: Notify,
}

impl Default for Activity {
    /// A new connection: the head's clock starts at accept, before any byte.
    fn default() -> Activity {
        Activity { phase: Mutex::new(Phase::Head(Instant::now())), changed: Notify::new() }
    }
}

impl Activity {
    fn current(&self) -> Phase {
        *lock(&self.phase)
    }

    fn update(&self, next: impl FnOnce(Phase) -> Phase) {
        let mut phase = lock(&self.phase);
        let was = *phase;
        *phase = next(was);
        let changed = *phase != was;
        drop(phase);
        if changed {
            self.changed.notify_one();
        }
    }

    /// Bytes arrived: after an idle spell they start the clock of the next request head.
    pub(super) fn read(&self) {
        self.update(|phase| match phase {
            Phase::Idle(_) => Phase::Head(Instant::now()),
            other => other,
        });
    }

    pub(super) fn start_request(&self, body_pending: bool) {
        self.update(|phase| match phase {
            Phase::Busy(n) => Phase::Busy(n.saturating_add(1)),
            Phase::Upgraded => Phase::Upgraded,
            Phase::Head(_) | Phase::Idle(_) | Phase::Body(_) if body_pending => Phase::Body(Instant::now()),
            Phase::Head(_) | Phase::Idle(_) | Phase::Body(_) => Phase::Busy(1),
        });
    }

    /// The request's body has all arrived (or was dropped): the request is served untimed.
    pub(super) fn body_done(&self) {
        self.update(|phase| match phase {
            Phase::Body(_) => Phase::Busy(1),
            other => other,
        });
    }

    pub(super) fn end_request(&self, upgraded: bool) {
        self.update(|phase| match phase {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            Phase::Busy(_) | Phase::Body(_) if upgraded => Phase::Upgraded,
            Phase::Busy(_) | Phase::Body(_) => Phase::Idle(Instant::now()),
            other => other,
        });
    }

    /// Resolves, with the reason to count, once the connection has stayed in a phase
    /// longer than that phase may last.
    pub(super) async fn expired(&self, limits: &Timeouts) -> &'static str {
        loop {
            let phase = self.current();
            let limit = match phase {
                Phase::Head(since) => Some((since + limits.header, "header")),
                Phase::Idle(since) => Some((since + limits.idle, "idle")),
                Phase::Body(since) => Some((since + limits.header, "body")),
                Phase::Busy(_) | Phase::Upgraded => None,
            };
            // A change between `current` and here leaves a permit: `notified` then returns at once.
            let Some((deadline, reason)) = limit else {
                self.changed.notified().await;
                continue;
            };
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {
                    if self.current() == phase {
                        return reason;
                    }
                }
                () = self.changed.notified() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use prometheus_client::metrics::family::Family;

    use super::*;

    pub(super) fn limits() -> Timeouts {
        Timeouts { header: Duration::from_secs(1), idle: Duration::from_secs(3), counted: Family::default() }
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_sends_nothing_expires_at_the_header_deadline() {
        let activity = Activity::default();
        let started = Instant::now();
        assert_eq!(activity.expired(&limits()).await, "header");
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_that_do_not_complete_a_head_do_not_move_its_deadline() {
        let activity = Arc::new(Activity::default());
        let reader = activity.clone();
        let trickle = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(300)).await;
                reader.read();
            }
        });
        let started = Instant::now();
        assert_eq!(activity.expired(&limits()).await, "header");
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        trickle.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn the_idle_clock_runs_from_the_end_of_a_response_and_a_request_in_flight_has_none() {
        let activity = Arc::new(Activity::default());
        activity.start_request(false);
        let started = Instant::now();
        let watched = activity.clone();
        let watchdog = tokio::spawn(async move { (watched.expired(&limits()).await, Instant::now()) });
        // A long poll: in flight well past both limits.
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(!watchdog.is_finished());
        activity.end_request(false);
        let (reason, at) = watchdog.await.expect("watchdog");
        assert_eq!((reason, at - started), ("idle", Duration::from_secs(13)));
    }

    #[tokio::test(start_paused = true)]
    async fn the_next_request_after_an_idle_spell_gets_the_header_limit_from_its_first_byte() {
        let activity = Arc::new(Activity::default());
        activity.start_request(false);
        activity.end_request(false);
        tokio::time::sleep(Duration::from_secs(2)).await;
        activity.read();
        let started = Instant::now();
        assert_eq!(activity.expired(&limits()).await, "header");
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn an_upgraded_connection_never_expires() {
        let activity = Activity::default();
        activity.start_request(false);
        activity.end_request(true);
        activity.read();
        let waited = tokio::time::timeout(Duration::from_secs(3600), activity.expired(&limits())).await;
        assert!(waited.is_err(), "an upgraded connection expired");
    }
}

#[cfg(test)]
mod body_tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::tests::limits;
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_body_still_arriving_expires_at_the_header_limit_from_the_head() {
        let activity = Activity::default();
        tokio::time::sleep(Duration::from_millis(700)).await;
        activity.start_request(true);
        let started = Instant::now();
        assert_eq!(activity.expired(&limits()).await, "body");
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn once_the_body_has_arrived_the_request_is_served_untimed() {
        let activity = Arc::new(Activity::default());
        activity.start_request(true);
        activity.body_done();
        let waited = tokio::time::timeout(Duration::from_secs(600), activity.expired(&limits())).await;
        assert!(waited.is_err(), "a request in flight expired");
        activity.end_request(false);
        assert_eq!(activity.expired(&limits()).await, "idle");
    }
}
