//! Deleting the records of appends spanning partitions once every partition has them
//! (`history::redis_spread`): in bulk and off the request's path, one script per
//! partition for all the appends settled meanwhile, so that a spanning append costs no
//! round trip of its own for it. A record left behind (the script failed, the server
//! stopped first) is found by the sweep, which runs its steps again (each answered from
//! its record) and deletes it.

use std::sync::Mutex;
use std::time::Duration;

use redis::Script;
use tokio::sync::mpsc;

use super::redis::RedisHistory;

/// Deletes settled appends' records: `KEYS` `spreads`, then `spread:<id>` per id; `ARGV`
/// the ids.
const SETTLE: &str = r"
for i, id in ipairs(ARGV) do
  redis.call('DEL', KEYS[i + 1])
  redis.call('ZREM', KEYS[1], id)
end
return #ARGV
";

/// Most records one script deletes.
const SETTLE_MAX: usize = 256;
/// How long the task gathers settled appends after deleting a bunch: at a few thousand
/// spanning appends a second, a script then deletes dozens of records, where deleting
/// each as it came cost a script call per append (measured: 0.68 more `EVALSHA` per
/// event, `dev/bench/cluster_spread.py`).
const GATHER: Duration = Duration::from_millis(20);

/// The appends settled and not yet deleted, by partition of their record.
pub(super) struct Settler {
    tx: mpsc::UnboundedSender<(usize, String)>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<(usize, String)>>>,
}

impl Settler {
    pub(super) fn new() -> Settler {
        let (tx, rx) = mpsc::unbounded_channel();
        Settler { tx, rx: Mutex::new(Some(rx)) }
    }

    /// Append `id`, recorded in partition `part`, is in every partition now.
    pub(super) fn settled(&self, part: usize, id: &str) {
        let _ = self.tx.send((part, id.to_owned()));
    }

    fn take(&self) -> Option<mpsc::UnboundedReceiver<(usize, String)>> {
        crate::sync::lock(&self.rx).take()
    }
}

impl RedisHistory {
    /// Deletes settled appends' records as they come, until the history closes.
    pub(super) async fn settle_forever(&self) {
        let Some(mut rx) = self.settler.take() else { return };
        let mut ids = Vec::with_capacity(SETTLE_MAX);
        while !self.is_closed() {
            let Ok(n) = tokio::time::timeout(Duration::from_secs(1), rx.recv_many(&mut ids, SETTLE_MAX)).await else {
                continue;
            };
            if n == 0 {
                return;
            }
            ids.sort_unstable();
            for same in ids.chunk_by(|a, b| a.0 == b.0) {
                self.settle(same[0].0, same.iter().map(|(_, id)| id.as_str())).await;
            }
            ids.clear();
            tokio::time::sleep(GATHER).await;
        }
    }

    /// Deletes the records of `ids` in partition `part`. A failure leaves them to the
    /// sweep.
    pub(super) async fn settle<'a>(&self, part: usize, ids: impl Iterator<Item = &'a str>) {
        let keys = self.keys_of(part);
        let script = Script::new(SETTLE);
        let mut settle = script.key(&keys.spreads);
        for id in ids {
            settle.key(keys.spread(id)).arg(id);
        }
        let settled: Result<i64, _> = settle.invoke_async(&mut self.conn.clone()).await;
        if let Err(e) = settled {
            tracing::debug!(partition = part, error = %e, "applied appends' records left to the sweep");
        }
    }
}
