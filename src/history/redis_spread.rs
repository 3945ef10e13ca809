//! Appends that meet several partitions of the Redis history (`history::partition`).
//!
//! An event is appended to each partition its rooms live in, one script per partition,
//! in the order its rooms first name them. Each copy holds the event's rooms of that
//! partition, and, in `also`, its place in each room of the partitions appended before
//! it: a socket in rooms of two partitions receives the event once, through the first
//! of them that gives it (`delivery`), and the later copies' `offsets` name the earlier
//! rooms too.
//!
//! Each partition's script is the whole append there (event, rooms, idempotency key,
//! call record), so an event is in a partition whole or not at all. An event stopped
//! half-way (the second partition's Redis did not answer) is in the first partition
//! only and the caller gets an error, as for any append that may have happened: with
//! an idempotency key, the retry finds the key in the first partition (and with it the
//! event's place there), appends nothing there and completes the rest, so the event
//! reaches every room once. Without a key, a retry appends it again where it was.
//!
//! A batch is all or nothing only within one script, so only a batch whose events all
//! live in one partition is taken; one meeting several partitions is refused whole
//! (`422`) before anything is appended.

use super::redis::{Item, RedisHistory, Step, unavailable};
use super::{Also, Appended, AppendedOnce, HistoryError, OnceKey, Publish};

impl RedisHistory {
    /// Appends a batch (a single event is a batch of one) on the partitions its rooms
    /// live in; see the module documentation.
    pub(super) async fn append_events(
        &self,
        batch: Vec<(Publish, Option<OnceKey>)>,
        deadline: bool,
    ) -> Result<Vec<AppendedOnce>, HistoryError> {
        let mut used: Vec<usize> =
            batch.iter().flat_map(|(p, _)| p.rooms.iter().map(|r| self.partitioner.of(r))).collect();
        used.sort_unstable();
        used.dedup();
        match (used.as_slice(), batch.as_slice()) {
            ([] | [_], _) => {
                let part = used.first().copied().unwrap_or(0);
                let items: Vec<Item> = batch
                    .iter()
                    .map(|(publish, once)| Item { publish, once: once.as_ref(), also: String::new() })
                    .collect();
                let (epoch, steps) = self.append_in(part, &items, deadline).await?;
                Ok(self.answers(epoch, steps))
            }
            (_, [(publish, once)]) => Ok(vec![self.append_spread(publish, once.as_ref()).await?]),
            _ => Err(HistoryError::Unsupported(
                "the events of this batch go to rooms in several history partitions \
                 (REDIS_HISTORY_PARTITIONS above 1), which one batch cannot span yet: nothing \
                 was accepted; send these events one by one"
                    .into(),
            )),
        }
    }

    /// One event to rooms of several partitions: appended to each in turn.
    async fn append_spread(&self, publish: &Publish, once: Option<&OnceKey>) -> Result<AppendedOnce, HistoryError> {
        let mut also: Vec<Also> = Vec::new();
        let mut first: Option<Appended> = None;
        let mut replayed: Option<String> = None;
        for (part, rooms) in self.partitioner.split(&publish.rooms) {
            let local = Publish {
                event: publish.event,
                rooms: rooms.into_iter().cloned().collect(),
                except: publish.except.clone(),
                payload: publish.payload.clone(),
            };
            let item = Item { publish: &local, once, also: Also::encode(&also) };
            let (epoch, mut steps) = self.append_in(part, std::slice::from_ref(&item), false).await?;
            let seq = match steps.pop() {
                Some(Step::Appended(seq)) => {
                    let epoch = self.enabled().then_some(epoch);
                    first.get_or_insert(Appended { seq, epoch });
                    Some(seq)
                }
                Some(Step::Replayed(seq, answer)) => {
                    replayed.get_or_insert(answer);
                    seq
                }
                None => return Err(unavailable("unexpected append reply from Redis")),
            };
            // A key recorded by an older version gives no place: the later copies then
            // cannot name it, and a socket in both rooms may get the event twice.
            if let Some(seq) = seq {
                also.extend(local.rooms.into_iter().map(|room| Also { room, epoch, seq }));
            }
        }
        match (replayed, first) {
            (Some(answer), _) => Ok(AppendedOnce::Replayed(answer)),
            (None, Some(appended)) => Ok(AppendedOnce::Appended(appended)),
            (None, None) => Err(unavailable("an event without rooms")),
        }
    }
}
