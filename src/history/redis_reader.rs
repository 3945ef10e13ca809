//! The readers of the Redis history's logs: one per partition and instance, each on its
//! own connection (its blocking reads must not hold up commands), handing its
//! partition's log to the instance's sockets in order and resuming after a lost
//! connection from the last id it delivered.
//!
//! With one partition the reader starts with the server. With several, a partition's
//! reader starts the first time one of the instance's sockets has a room there, and
//! that socket is attached only once the reader has taken its place in the log
//! ([`Readers::start`]): every event accepted after the socket connected is then read.
//! An instance reads only the partitions its sockets' rooms live in, so its reads follow
//! its sockets, not the whole fleet's events.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use redis::Script;
use tokio::sync::watch;

use crate::redis_link::{LogReads, RedisConn, RedisSource};

use super::redis_keys::Keys;
use super::redis_reply::{RawEntry, log_entries};
use super::replicas::ReplicaGate;
use super::{Epoch, LogSink, Seq};

/// How long one blocking read waits before looking again (and noticing a shutdown).
const READ_BLOCK_MS: u64 = 1_000;
/// Most log entries taken per read.
const READ_COUNT: u64 = 512;
const RECONNECT_DELAY: Duration = Duration::from_millis(250);

const INIT: &str = r"
local epoch = redis.call('GET', KEYS[1])
if not epoch then epoch = ARGV[1]; redis.call('SET', KEYS[1], epoch) end
return {epoch, redis.call('GET', KEYS[2]) or '0-0'}
";

/// This instance's readers, one per partition, started on demand (see the module).
pub(super) struct Readers {
    sink: OnceLock<Arc<dyn LogSink>>,
    /// Per partition: whether its reader was started, and whether it took its place.
    slots: Vec<(AtomicBool, watch::Sender<bool>)>,
    pub(super) reads: LogReads,
}

impl Readers {
    pub(super) fn new(partitions: usize, reads: LogReads) -> Readers {
        let slots = (0..partitions).map(|_| (AtomicBool::new(false), watch::Sender::new(false))).collect();
        Readers { sink: OnceLock::new(), slots, reads }
    }

    /// Where the readers hand their logs; none starts before it is set.
    pub(super) fn set_sink(&self, sink: Arc<dyn LogSink>) {
        let _ = self.sink.set(sink);
    }

    /// Starts partition `part`'s reader (built by `reader`) unless it was; answers how to
    /// wait until it has taken its place in its log, or `None` if it has (or no sink is
    /// set yet).
    pub(super) fn start(
        &self,
        part: usize,
        reader: impl FnOnce(watch::Sender<bool>) -> Reader,
    ) -> Option<watch::Receiver<bool>> {
        let (spawned, started) = self.slots.get(part)?;
        if *started.borrow() {
            return None;
        }
        let sink = self.sink.get()?;
        if !spawned.swap(true, Ordering::AcqRel) {
            self.reads.partitions.inc();
            tokio::spawn(reader(started.clone()).run(sink.clone()));
        }
        Some(started.subscribe())
    }
}

/// Reads one partition's log in order and hands it to the instance's sockets.
pub(super) struct Reader {
    pub(super) source: RedisSource,
    pub(super) keys: Arc<Keys>,
    pub(super) part: usize,
    pub(super) closed: Arc<AtomicBool>,
    pub(super) offsets: bool,
    /// On a cluster: whether the history's shard has a replica to read from.
    pub(super) replicas: Arc<ReplicaGate>,
    /// Told once the reader has taken its place in the log.
    pub(super) started: watch::Sender<bool>,
    pub(super) reads: LogReads,
}

/// Where the reader is: the history it follows and the last log id it delivered.
#[derive(Clone, Copy)]
struct Cursor {
    epoch: Epoch,
    last: Seq,
}

impl Reader {
    pub(super) async fn run(self, sink: Arc<dyn LogSink>) {
        let mut cursor: Option<Cursor> = None;
        let mut outage = false;
        while !self.closed.load(Ordering::Acquire) {
            match self.follow(&sink, &mut cursor).await {
                Ok(()) => return,
                Err(e) => {
                    if !outage {
                        tracing::error!(error = %e, "history log unreadable: delivery paused until Redis answers");
                    }
                    outage = true;
                    tokio::time::sleep(RECONNECT_DELAY).await;
                }
            }
        }
    }

    /// Connects, checks the history is the one followed so far, and reads until closed
    /// (`Ok`) or the connection fails (`Err`, and the caller reconnects).
    async fn follow(&self, sink: &Arc<dyn LogSink>, cursor: &mut Option<Cursor>) -> Result<(), redis::RedisError> {
        let mut conn = self.source.connect(Duration::from_millis(READ_BLOCK_MS + 3_000)).await?;
        let (epoch, head): (String, String) = Script::new(INIT)
            .key(&self.keys.epoch)
            .key(&self.keys.head)
            .arg(Epoch::random().to_string())
            .invoke_async(&mut conn)
            .await?;
        let (Some(epoch), Some(head)) = (Epoch::parse(&epoch), Seq::parse(&head)) else {
            return Err(redis::RedisError::from((redis::ErrorKind::Parse, "malformed history epoch or head")));
        };
        match cursor {
            None => {
                *cursor = Some(Cursor { epoch, last: head });
                sink.started(self.part, head);
                self.started.send_replace(true);
            }
            Some(c) if c.epoch != epoch => {
                sink.gap("the history in Redis was lost (new epoch)");
                // The new history's log from its start: its first entry names no predecessor.
                *cursor = Some(Cursor { epoch, last: Seq::ZERO });
            }
            Some(_) => tracing::info!("history log readable again: delivery resumes where it stopped"),
        }
        let Some(mut at) = *cursor else { return Ok(()) };
        let mut from = self.read_from(&conn).await?;
        while !self.closed.load(Ordering::Acquire) {
            self.replicas.refresh(&conn, &self.keys.log).await;
            if from.stale(self.replicas.alone()) {
                from = self.read_from(&conn).await?;
            }
            let entries = match &from {
                ReadFrom::Primary => self.read(&conn, at.last).await?,
                ReadFrom::Replica(replica) => self.read(replica, at.last).await?,
                ReadFrom::Nowhere => {
                    tokio::time::sleep(RECONNECT_DELAY).await;
                    continue;
                }
            };
            self.reads.entries.inc_by(entries.len() as u64);
            let mut batch = Vec::with_capacity(entries.len());
            for raw in entries {
                if raw.epoch != at.epoch || raw.prev != at.last {
                    sink.deliver(&batch);
                    batch.clear();
                    sink.gap("the history log skipped events (trimmed, or Redis lost data)");
                    at.epoch = raw.epoch;
                }
                at.last = raw.seq;
                match raw.into_entry(self.offsets, self.part) {
                    Some(entry) => batch.push(Arc::new(entry)),
                    None => tracing::error!(seq = %at.last, "unreadable history log entry skipped"),
                }
            }
            sink.deliver(&batch);
            *cursor = Some(at);
        }
        Ok(())
    }

    /// Where to read the log: on a cluster, a replica of its shard in sync with the
    /// primary, unless the shard is alone (see `history::replicas`), so that only what a
    /// replica has is delivered; nowhere for now while the shard has no replica in sync
    /// yet may have one again. On one Redis, there.
    async fn read_from(&self, conn: &RedisConn) -> Result<ReadFrom, redis::RedisError> {
        let alone = self.replicas.alone();
        if !conn.is_cluster() || alone {
            return Ok(ReadFrom::Primary);
        }
        let Some((host, port)) = conn.online_replica(&self.keys.log).await? else { return Ok(ReadFrom::Nowhere) };
        match self.source.connect_node((&host, port), Duration::from_millis(READ_BLOCK_MS + 3_000)).await? {
            Some(replica) => Ok(ReadFrom::Replica(replica)),
            None => Ok(ReadFrom::Primary),
        }
    }

    /// The log's next entries after `after`, read on `conn` (a cluster's: on the primary).
    async fn read(&self, conn: &RedisConn, after: Seq) -> Result<Vec<RawEntry>, redis::RedisError> {
        let mut xread = redis::cmd("XREAD");
        xread.arg("COUNT").arg(READ_COUNT).arg("BLOCK").arg(READ_BLOCK_MS);
        xread.arg("STREAMS").arg(&self.keys.log).arg(after.to_string());
        Ok(log_entries(conn.query_on_primary(xread, &self.keys.log).await?))
    }
}

/// Where the reader reads the log (see [`Reader::read_from`]).
enum ReadFrom {
    Primary,
    Replica(RedisConn),
    Nowhere,
}

impl ReadFrom {
    /// Whether to choose again: the shard became alone, or has a replica again, or
    /// nothing could be read.
    fn stale(&self, alone: bool) -> bool {
        match self {
            ReadFrom::Primary => !alone,
            ReadFrom::Replica(_) => alone,
            ReadFrom::Nowhere => true,
        }
    }
}
