//! The per-instance presence worker: the one writer of this instance's counts.

use std::sync::Arc;

use tokio::sync::{Notify, watch};

use super::{Applied, BATCH, Beat, HEARTBEAT, SWEEP_EVERY, Store, StoreError, Tracker};

/// The per-instance worker: writes counts, heartbeats and sweeps until `stop`, then
/// writes what is left and leaves the store.
pub async fn run_worker(
    tracker: Arc<Tracker>,
    store: Arc<Store>,
    outbox_changed: Arc<Notify>,
    metrics: Arc<crate::metrics::Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_beat = tokio::time::Instant::now();
    let mut registered = false;
    let mut failing = false;
    loop {
        let swept = tokio::select! {
            () = tracker.wake.notified() => false,
            _ = sweep.tick() => true,
            _ = stop.wait_for(|s| *s) => break,
        };
        let mut applied = Applied::default();
        let step = async {
            if tokio::time::Instant::now() >= next_beat || !registered {
                next_beat = tokio::time::Instant::now() + HEARTBEAT;
                match store.heartbeat().await? {
                    Beat::Alive => registered = true,
                    Beat::Joined => {
                        registered = true;
                        tracker.mark_all();
                    }
                    Beat::Reaping => registered = false,
                }
            }
            if registered {
                add(&mut applied, flush(&tracker, &store).await?);
            }
            if swept {
                add(&mut applied, store.sweep().await?);
            }
            Ok::<(), StoreError>(())
        };
        match step.await {
            Ok(()) => {
                if failing {
                    tracing::info!("presence store reachable again: counts written");
                }
                failing = false;
            }
            Err(StoreError::Unregistered) => registered = false,
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "presence store unreachable: counts kept and written when it is back");
                }
                failing = true;
            }
        }
        record(&metrics, applied, &outbox_changed);
    }
    // The sockets are closed by now: their departures are written, then the store is left.
    let mut applied = flush(&tracker, &store).await.unwrap_or_default();
    match store.leave().await {
        Ok(left) => add(&mut applied, left),
        Err(e) => tracing::warn!(error = %e, "presence: could not leave the store cleanly (reaped later)"),
    }
    record(&metrics, applied, &outbox_changed);
}

fn add(total: &mut Applied, more: Applied) {
    total.announced += more.announced;
    total.dropped += more.dropped;
}

fn record(metrics: &crate::metrics::Metrics, applied: Applied, outbox_changed: &Notify) {
    if applied.dropped > 0 {
        metrics.webhooks.get_or_create(&crate::metrics::OutcomeLabels { outcome: "dropped" }).inc_by(applied.dropped);
        tracing::warn!(
            dropped = applied.dropped,
            "presence webhooks given up: the outbox is full (is the receiver down?)"
        );
    }
    if applied.announced > 0 {
        outbox_changed.notify_one();
    }
}

/// Writes every changed count, in batches; a failed batch is marked changed again.
async fn flush(tracker: &Tracker, store: &Store) -> Result<Applied, StoreError> {
    let mut applied = Applied::default();
    while tracker.has_dirty() {
        let batch = tracker.take_dirty(BATCH);
        match store.apply(&batch).await {
            Ok(a) => add(&mut applied, a),
            Err(e) => {
                tracker.restore(&batch);
                return Err(e);
            }
        }
    }
    Ok(applied)
}
