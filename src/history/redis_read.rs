//! The Redis history's reads for recoveries: a snapshot per partition, later pages of a
//! room, a room's latest events (see `redis.rs` for why every read is bounded).

use std::sync::Arc;

use redis::Value;

use super::redis::{LOG_MAXLEN, RedisHistory, unavailable};
use super::redis_reply::{array, int, room_entries, room_view, text};
use super::{Entry, Epoch, HistoryError, PartSnapshot, Seq, Snapshot};

impl RedisHistory {
    /// Reads the rooms of each partition they live in (at most `page` events from each)
    /// and appends a tick to that partition's log, in one script per partition.
    /// The partitions of `also` are snapshotted too, without reading their rooms.
    pub async fn snapshot(
        &self,
        rooms: &[(String, Seq)],
        page: usize,
        also: &[String],
    ) -> Result<Vec<PartSnapshot>, HistoryError> {
        let mut groups = self.partitioner.group(rooms.iter().cloned(), |(room, _)| room.as_str());
        for room in also {
            let part = self.partitioner.of(room);
            if !groups.iter().any(|(g, _)| *g == part) {
                groups.push((part, Vec::new()));
            }
        }
        if groups.is_empty() {
            groups.push((0, Vec::new()));
        }
        let mut snapshots = Vec::with_capacity(groups.len());
        for (part, rooms) in groups {
            let snapshot = self.snapshot_in(part, &rooms, page).await?;
            snapshots.push(PartSnapshot { part, rooms, snapshot });
        }
        Ok(snapshots)
    }

    async fn snapshot_in(&self, part: usize, rooms: &[(String, Seq)], page: usize) -> Result<Snapshot, HistoryError> {
        let Some(keys) = self.parts.get(part).map(|p| &p.keys) else {
            return Err(unavailable("no such history partition"));
        };
        let mut call = self.snapshot.key(&keys.epoch);
        call.key(&keys.head).key(&keys.log).arg(Epoch::random().to_string()).arg(LOG_MAXLEN);
        call.arg(super::first_page(page, rooms.len()));
        for (room, p) in rooms {
            call.key(keys.room(room)).arg(p.to_string());
        }
        let reply: Value =
            self.health.timed("snapshot", call.invoke_async(&mut self.conn.clone())).await.map_err(unavailable)?;
        let malformed = || unavailable("unexpected snapshot reply from Redis");
        let mut parts = array(reply).ok_or_else(malformed)?.into_iter();
        let epoch = parts.next().and_then(text).and_then(|e| Epoch::parse(&e)).ok_or_else(malformed)?;
        let head = parts.next().and_then(text).and_then(|h| Seq::parse(&h)).ok_or_else(malformed)?;
        let now_ms = parts.next().and_then(int).ok_or_else(malformed)?;
        let mut views = Vec::with_capacity(rooms.len());
        for _ in rooms {
            let view =
                parts.next().and_then(|v| room_view(v, epoch, self.config.enabled, part)).ok_or_else(malformed)?;
            views.push(view);
        }
        Ok(Snapshot {
            epoch,
            head,
            now_ms: u64::try_from(now_ms).unwrap_or(0),
            ttl_ms: u64::try_from(self.config.ttl.as_millis()).unwrap_or(u64::MAX),
            evicted_at: Seq::ZERO,
            rooms: views,
        })
    }

    /// At most `count` of the room's held events in `(after, upto]`, oldest first.
    pub async fn page(
        &self,
        epoch: Epoch,
        room: &str,
        (after, upto): (Seq, Seq),
        count: usize,
    ) -> Result<Vec<(Arc<Entry>, Seq)>, HistoryError> {
        let mut cmd = redis::cmd("XRANGE");
        let part = self.partitioner.of(room);
        cmd.arg(self.keys_of(part).room(room)).arg(format!("({after}")).arg(upto.to_string()).arg("COUNT").arg(count);
        let reply: Value =
            self.health.timed("page", cmd.query_async(&mut self.conn.clone())).await.map_err(unavailable)?;
        Ok(room_entries(reply, self.config.enabled.then_some(epoch), part))
    }

    /// The room's latest `max` held events, newest first (without `offsets`).
    pub async fn recent(&self, room: &str, max: usize) -> Result<Vec<Arc<Entry>>, HistoryError> {
        let mut cmd = redis::cmd("XREVRANGE");
        let part = self.partitioner.of(room);
        cmd.arg(self.keys_of(part).room(room)).arg("+").arg("-").arg("COUNT").arg(max);
        let reply: Value =
            self.health.timed("recent", cmd.query_async(&mut self.conn.clone())).await.map_err(unavailable)?;
        Ok(room_entries(reply, None, part).into_iter().map(|(entry, _)| entry).collect())
    }
}
