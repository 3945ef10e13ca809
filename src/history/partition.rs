//! The history's partitions: which part of the history a room lives in.
//!
//! On a Redis Cluster a script runs on one slot, so one history under one hash tag is one
//! primary's work, however many primaries the cluster has. The Redis history is therefore
//! split into `REDIS_HISTORY_PARTITIONS` partitions, each a whole history of its own (its
//! epoch, its ordered log, its rooms' streams, its idempotency and call records) under its
//! own hash tag. A room lives in exactly one partition, so everything about one room (its
//! order, its predecessors, its recovery) stays within one atomic script on one slot, as
//! before. How an event to rooms of two partitions is delivered once is argued in
//! `history::redis_spread` and `delivery`.
//!
//! The partition is chosen by a hash of the room's id, the part after its type
//! (`user:u1` and `vendor:u1` hash `u1`): a vendor account's two rooms (`user:<sub>` and
//! `vendor:<vendorId>`, `vendorId` defaulting to `sub`) then live in one partition, and its
//! sockets receive everything from one ordered log.
//!
//! The hash tags are chosen so that partition `k` of `n` hashes into the `k`-th of `n`
//! equal ranges of the cluster's 16,384 slots: a cluster whose primaries own equal slot
//! ranges (as `redis-cli --cluster create` assigns them) gets the partitions spread
//! evenly, rather than as random tags happen to fall.

use super::position::{Epoch, Seq, room_tag};

/// A Redis Cluster's slot count.
const SLOTS: u32 = 16_384;

/// Which partition a room lives in; the same on every instance for the same count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partitioner {
    count: u16,
}

impl Default for Partitioner {
    fn default() -> Self {
        Partitioner::ONE
    }
}

impl Partitioner {
    /// One partition: every room in it (the in-memory history, or one Redis).
    pub const ONE: Partitioner = Partitioner { count: 1 };

    pub fn new(count: u16) -> Partitioner {
        Partitioner { count: count.max(1) }
    }

    pub fn count(&self) -> usize {
        usize::from(self.count)
    }

    /// The partition `room` lives in.
    pub fn of(&self, room: &str) -> usize {
        if self.count == 1 {
            return 0;
        }
        let id = room.split_once(':').map_or(room, |(_, id)| id);
        usize::try_from(room_tag(id) % u32::from(self.count)).unwrap_or(0)
    }

    /// `rooms` grouped by partition, partitions in the order their first room appears,
    /// rooms in their given order within each.
    pub fn split<'r>(&self, rooms: &'r [String]) -> Vec<(usize, Vec<&'r String>)> {
        self.group(rooms, |room| room.as_str())
    }

    /// [`Partitioner::split`] for items that each name a room.
    pub fn group<T>(&self, items: impl IntoIterator<Item = T>, room: impl Fn(&T) -> &str) -> Vec<(usize, Vec<T>)> {
        let mut parts: Vec<(usize, Vec<T>)> = Vec::with_capacity(1);
        for item in items {
            let part = self.of(room(&item));
            match parts.iter_mut().find(|(p, _)| *p == part) {
                Some((_, list)) => list.push(item),
                None => parts.push((part, vec![item])),
            }
        }
        parts
    }
}

/// The hash tag of partition `k` of `n`: `history` when there is one (the layout a single
/// history always had, so one partition reads what an older version wrote), otherwise
/// `history-<k>-<x>`, the first `x` that puts the tag's slot in the `k`-th of `n` ranges.
pub fn hash_tag(k: usize, n: usize) -> String {
    if n <= 1 {
        return "history".to_owned();
    }
    let range = slot_range(k, n);
    // About n tries on average: the ranges split the slots evenly and CRC16 spreads.
    (0u32..)
        .map(|x| format!("history-{k}-{x}"))
        .find(|tag| range.contains(&slot(tag)))
        .unwrap_or_else(|| format!("history-{k}"))
}

/// The `k`-th of `n` equal slot ranges, bounds rounded up: `redis-cli --cluster create`
/// rounds its own split, and a bound rounded up stays inside the range it assigns.
fn slot_range(k: usize, n: usize) -> std::ops::Range<u32> {
    let n = u32::try_from(n).unwrap_or(SLOTS).clamp(1, SLOTS);
    let k = u32::try_from(k).unwrap_or(0) % n;
    (k * SLOTS).div_ceil(n)..((k + 1) * SLOTS).div_ceil(n)
}

/// The cluster slot of a key without braces (the tag itself), as Redis computes it.
pub fn slot(tag: &str) -> u32 {
    u32::from(crc16::State::<crc16::XMODEM>::calculate(tag.as_bytes())) % SLOTS
}

/// An event's copy in a room of another partition (see [`super::Entry::also`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Also {
    pub room: String,
    pub epoch: Epoch,
    pub seq: Seq,
}

impl Also {
    /// One per line, `<epoch> <seq> <room>`, as the log stores them (rooms hold no `\n`).
    pub fn encode(list: &[Also]) -> String {
        list.iter().map(|a| format!("{} {} {}", a.epoch, a.seq, a.room)).collect::<Vec<_>>().join("\n")
    }

    /// Reads [`Also::encode`]'s text; `None` if any line is malformed.
    pub fn decode(text: &str) -> Option<Vec<Also>> {
        let lines = text.split('\n').filter(|l| !l.is_empty());
        lines
            .map(|line| {
                let mut parts = line.splitn(3, ' ');
                let epoch = Epoch::parse(parts.next()?)?;
                let seq = Seq::parse(parts.next()?)?;
                Some(Also { room: parts.next()?.to_owned(), epoch, seq })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_partition_tag_lands_in_its_own_slot_range() {
        for n in [2usize, 3, 16, 64] {
            let mut slots: Vec<u32> = (0..n).map(|k| slot(&hash_tag(k, n))).collect();
            for (k, s) in slots.iter().enumerate() {
                assert!(slot_range(k, n).contains(s), "partition {k} of {n} at slot {s}");
            }
            // Three primaries as `redis-cli --cluster create` splits them: 0-5460, 5461-10922, 10923-16383.
            if n == 3 {
                assert!(slots[0] <= 5460 && (5461..=10922).contains(&slots[1]) && slots[2] >= 10923, "{slots:?}");
            }
            slots.dedup();
            assert_eq!(slots.len(), n);
        }
        assert_eq!(hash_tag(0, 1), "history");
    }

    #[test]
    fn redis_and_we_agree_on_a_known_slot() {
        // `CLUSTER KEYSLOT foo` is 12182 (the Redis Cluster specification's example).
        assert_eq!(slot("foo"), 12_182);
    }

    #[test]
    fn rooms_spread_and_split_keeps_first_appearance_order() {
        let p = Partitioner::new(16);
        let mut used = [0usize; 16];
        for i in 0..1_600 {
            used[p.of(&format!("user:u{i}"))] += 1;
        }
        assert!(used.iter().all(|&c| (50..=150).contains(&c)), "{used:?}");
        let rooms: Vec<String> = (0..40).map(|i| format!("vendor:v{i}")).collect();
        let split = p.split(&rooms);
        assert_eq!(split.iter().map(|(_, r)| r.len()).sum::<usize>(), 40);
        assert_eq!(split[0].1[0], &rooms[0]);
        assert!(Partitioner::ONE.split(&rooms).len() == 1);
        for id in ["u1", "x", "a:b"] {
            assert_eq!(p.of(&format!("user:{id}")), p.of(&format!("vendor:{id}")), "one account, one partition");
        }
    }
}
