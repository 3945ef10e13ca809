//! The Redis history's keys.
//!
//! Each partition of the history (`history::partition`) has these keys, all under the
//! partition's hash tag so that one script touches them atomically (on a Redis Cluster
//! they live in one slot):
//! - `epoch`: this history's identity, created by the first writer or reader to find none
//!   (Redis restarted empty: a new epoch, so older positions are `unknown`);
//! - `head`: the newest log id;
//! - `log`: every event, in order, with the id of its predecessor, read by every instance;
//! - `room:<room>`: a room's events under the same ids as in the log, each with its room
//!   predecessor, trimmed to `HISTORY_SIZE` and `HISTORY_TTL_SECS`, the key expiring a TTL
//!   after its last write;
//! - `last:<room>`: the id of the room's newest event, written and expiring with the
//!   stream. An append reads its predecessor there: reading the stream's own last entry
//!   (`XREVRANGE … COUNT 1`) brings its payload along, and cost Redis 4.2 µs per call,
//!   against 0.5 for this `GET` and 0.7 for the `SET` (`INFO commandstats`);
//! - `spread:<id>` and `spreads`: an append that spans partitions, decided in its first
//!   partition and not yet applied in every other (`history::redis_spread`), and when it
//!   was decided (a sorted set, by Redis's clock).

/// Every key of one partition of the Redis history, all under its hash tag.
pub(super) struct Keys {
    pub(super) epoch: String,
    pub(super) head: String,
    pub(super) log: String,
    room_prefix: String,
    last_prefix: String,
    idem_prefix: String,
    call_prefix: String,
    pub(super) spreads: String,
    spread_prefix: String,
}

impl Keys {
    /// The keys of the partition with hash tag `tag` (`history` for a single partition).
    pub(super) fn new(tag: &str) -> Keys {
        let tag = format!("fixrx:{{{tag}}}:");
        Keys {
            epoch: format!("{tag}epoch"),
            head: format!("{tag}head"),
            log: format!("{tag}log"),
            room_prefix: format!("{tag}room:"),
            last_prefix: format!("{tag}last:"),
            idem_prefix: format!("{tag}idem:"),
            call_prefix: format!("{tag}call:"),
            spreads: format!("{tag}spreads"),
            spread_prefix: format!("{tag}spread:"),
        }
    }

    pub(super) fn room(&self, room: &str) -> String {
        format!("{}{room}", self.room_prefix)
    }

    pub(super) fn last(&self, room: &str) -> String {
        format!("{}{room}", self.last_prefix)
    }

    /// An idempotency key's answer: under the history's hash tag, so that the append
    /// script that records it with the event touches one slot on a cluster.
    pub(super) fn idem(&self, key: &str) -> String {
        format!("{}{key}", self.idem_prefix)
    }

    /// One append call's record: a random name, so a resent call finds its own answer.
    pub(super) fn call(&self) -> String {
        format!("{}{}", self.call_prefix, uuid::Uuid::new_v4().simple())
    }

    /// The record of step `step` of spread append `id`: a name every instance that
    /// applies it derives alike, so the step runs once however many run it.
    pub(super) fn spread_call(&self, id: &str, step: usize) -> String {
        format!("{}{id}:{step}", self.call_prefix)
    }

    /// A decided spread append's events, until every partition has them.
    pub(super) fn spread(&self, id: &str) -> String {
        format!("{}{id}", self.spread_prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::Keys;
    use crate::history::partition::hash_tag as partition_tag;

    /// The hash tag a Redis Cluster reads: the text inside the first `{...}` (non-empty).
    fn hash_tag(key: &str) -> &str {
        let Some(open) = key.find('{') else { return key };
        match key[open + 1..].find('}') {
            Some(0) | None => key,
            Some(len) => &key[open + 1..open + 1 + len],
        }
    }

    #[test]
    fn every_key_of_a_batch_shares_the_history_hash_tag_whatever_the_room_or_key() {
        for n in [1, 3] {
            for k in 0..n {
                let tag = partition_tag(k, n);
                let keys = Keys::new(&tag);
                assert_eq!(hash_tag(&keys.epoch), tag);
            }
        }
        let keys = Keys::new("history");
        let mut batch_keys = vec![keys.epoch.clone(), keys.head.clone(), keys.log.clone()];
        for name in ["user:u1", "vendor:{v1}", "user:}{", "{}"] {
            batch_keys.extend([keys.room(name), keys.last(name), keys.idem(name)]);
        }
        batch_keys.extend([keys.call(), keys.spread_call("b1", 2), keys.spread("b1"), keys.spreads.clone()]);
        for key in &batch_keys {
            assert_eq!(hash_tag(key), "history", "{key}");
        }
    }
}
