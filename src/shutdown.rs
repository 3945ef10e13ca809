//! Graceful shutdown: stop accepting, let in-flight REST requests finish, close every
//! socket, and return within a bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// Counts REST requests being served, so shutdown can wait for them before it
/// closes the Socket.IO server their handlers emit into.
#[derive(Default)]
pub struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

/// Held while a request is served.
pub struct Entered<'a>(&'a InFlight);

impl InFlight {
    pub fn enter(&self) -> Entered<'_> {
        self.count.fetch_add(1, Ordering::AcqRel);
        Entered(self)
    }

    /// [`InFlight::enter`] for a future that owns what it holds.
    pub fn hold(self: &Arc<Self>) -> Held {
        self.count.fetch_add(1, Ordering::AcqRel);
        Held(self.clone())
    }

    fn leave(&self) {
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }

    pub fn current(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Waits until no request is in flight, or `limit` passes; returns whether idle.
    pub async fn wait_idle(&self, limit: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.idle.notified();
                if self.current() == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.0.leave();
    }
}

/// Held while a request is served, by the request's future ([`InFlight::hold`]).
pub struct Held(Arc<InFlight>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.leave();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_the_last_request() {
        let in_flight = std::sync::Arc::new(InFlight::default());
        let held = in_flight.clone();
        let task = tokio::spawn(async move {
            let _guard = held.enter();
            tokio::time::sleep(Duration::from_millis(50)).await;
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(in_flight.current(), 1);
        assert!(in_flight.wait_idle(Duration::from_secs(2)).await);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn gives_up_at_the_limit() {
        let in_flight = InFlight::default();
        let _guard = in_flight.enter();
        assert!(!in_flight.wait_idle(Duration::from_millis(20)).await);
    }
}
