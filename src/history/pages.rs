//! A recovery's replay, read in bounded pages: the events of the recovered rooms after
//! the client's positions, merged in `Seq` order, each once.
//!
//! The snapshot holds each room's first page and its newest event then (`last`, at most
//! the snapshot's head). [`Replay::next`] reads a room's next page only when the previous
//! one has been taken, so a replay holds at most a page per room however long the rooms'
//! histories, and a client that does not read stops the reading.
//!
//! Between two pages the store may trim a room (new events push old ones out). Every held
//! event names its room predecessor, so each event taken must name the last one taken
//! from its room (or, first of all, something at or before the client's position): then
//! nothing between them was lost. When that fails, or a room holds nothing more before
//! its `last`, the replay stops with [`ReplayError::Gap`] and the caller must not go on
//! as if the room were whole.

use std::collections::VecDeque;
use std::sync::Arc;

use super::{Entry, Epoch, History, HistoryError, RoomView, Seq};

/// Why a replay could not go on.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("room {0}: events were trimmed during the recovery")]
    Gap(String),
    #[error(transparent)]
    History(#[from] HistoryError),
}

/// One recovered room being read.
struct RoomPages {
    room: String,
    /// The last event taken from the room (the client's position at first).
    cursor: Seq,
    /// The room's newest event at the snapshot: read up to it, no further.
    last: Seq,
    held: VecDeque<Arc<Entry>>,
}

impl RoomPages {
    /// Takes a page, proving it follows on from what was taken before.
    fn accept(&mut self, page: Vec<(Arc<Entry>, Seq)>) -> Result<(), ReplayError> {
        for (entry, prev) in page {
            if prev > self.cursor || entry.seq <= self.cursor || entry.seq > self.last {
                return Err(ReplayError::Gap(self.room.clone()));
            }
            self.cursor = entry.seq;
            self.held.push_back(entry);
        }
        Ok(())
    }

    fn more(&self) -> bool {
        self.held.is_empty() && self.cursor < self.last
    }
}

/// The replay of one recovery.
pub struct Replay<'h> {
    history: &'h History,
    epoch: Epoch,
    page: usize,
    rooms: Vec<RoomPages>,
}

impl<'h> Replay<'h> {
    /// Starts from the snapshot's views of the recovered rooms (`room`, the client's
    /// position there, its view), reading later pages of `page` events.
    pub fn new(
        history: &'h History,
        epoch: Epoch,
        page: usize,
        rooms: Vec<(String, Seq, RoomView)>,
    ) -> Result<Replay<'h>, ReplayError> {
        let mut pages = Vec::with_capacity(rooms.len());
        for (room, position, view) in rooms {
            let last = view.last.max(view.after.last().map_or(Seq::ZERO, |(e, _)| e.seq));
            let mut r = RoomPages { room, cursor: position, last, held: VecDeque::new() };
            r.accept(view.after)?;
            pages.push(r);
        }
        Ok(Replay { history, epoch, page: page.max(1), rooms: pages })
    }

    /// The next event in `Seq` order (an event of several recovered rooms once), or
    /// `None` when every room has been read up to its `last`.
    pub async fn next(&mut self) -> Result<Option<Arc<Entry>>, ReplayError> {
        for r in &mut self.rooms {
            if r.more() {
                let page = self.history.page(self.epoch, &r.room, (r.cursor, r.last), self.page).await?;
                if page.is_empty() {
                    return Err(ReplayError::Gap(r.room.clone()));
                }
                r.accept(page)?;
            }
        }
        let Some(seq) = self.rooms.iter().filter_map(|r| r.held.front().map(|e| e.seq)).min() else {
            return Ok(None);
        };
        let mut next = None;
        for r in &mut self.rooms {
            if r.held.front().is_some_and(|e| e.seq == seq) {
                next = r.held.pop_front();
            }
        }
        Ok(next)
    }

    /// Events held now, over every room: at most a page per room.
    pub fn held(&self) -> usize {
        self.rooms.iter().map(|r| r.held.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::history::memory::MemoryHistory;
    use crate::history::{HistoryConfig, Publish, RoomStatus, classify};

    fn history(size: usize) -> History {
        let config = HistoryConfig { enabled: true, ttl: Duration::from_secs(300), size, max_bytes: usize::MAX };
        History::Memory(MemoryHistory::new(config))
    }

    async fn post(h: &History, rooms: &[&str]) -> Seq {
        let rooms = rooms.iter().map(|r| r.to_string()).collect();
        let publish = Publish { event: "service:updated", rooms, except: None, payload: "{}".into() };
        h.append(publish).await.unwrap().seq
    }

    /// A replay of `rooms` from their positions, with pages of `page` events.
    async fn replay<'h>(h: &'h History, rooms: &[(&str, Seq)], page: usize) -> Result<Replay<'h>, ReplayError> {
        let named: Vec<(String, Seq)> = rooms.iter().map(|(r, p)| (r.to_string(), *p)).collect();
        let mut snap = h.snapshot(&named, page, &[]).await.unwrap().pop().unwrap().snapshot;
        let read: usize = snap.rooms.iter().map(|v| v.after.len()).sum();
        assert!(read <= page.max(rooms.len()), "the snapshot read {read} events, more than a page");
        let mut recovered = Vec::new();
        for ((room, p), view) in named.into_iter().zip(std::mem::take(&mut snap.rooms)) {
            assert_eq!(classify(p, &view, &snap), RoomStatus::Recovered, "{room}");
            recovered.push((room, p, view));
        }
        Replay::new(h, snap.epoch, page, recovered)
    }

    async fn drain(r: &mut Replay<'_>, page: usize, rooms: usize) -> Result<Vec<Seq>, ReplayError> {
        let mut seqs = Vec::new();
        while let Some(e) = r.next().await? {
            assert!(r.held() < page * rooms, "at most a page per room is held");
            seqs.push(e.seq);
        }
        Ok(seqs)
    }

    #[tokio::test]
    async fn a_long_room_is_replayed_whole_in_order_once_through_many_small_pages() {
        let h = history(1_000);
        let start = post(&h, &["vendor:v1"]).await;
        let mut expected = Vec::new();
        for _ in 0..100 {
            expected.push(post(&h, &["vendor:v1"]).await);
        }
        let mut r = replay(&h, &[("vendor:v1", start)], 7).await.unwrap();
        assert_eq!(drain(&mut r, 7, 1).await.unwrap(), expected);
        // Later events come through the log, not the replay.
        post(&h, &["vendor:v1"]).await;
        assert!(r.next().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn two_rooms_merge_in_seq_order_and_an_event_to_both_comes_once() {
        let h = history(1_000);
        let pu = post(&h, &["user:u1"]).await;
        let pv = post(&h, &["vendor:v1"]).await;
        let mut expected = Vec::new();
        for i in 0..60 {
            let rooms: &[&str] = match i % 3 {
                0 => &["user:u1"],
                1 => &["vendor:v1"],
                _ => &["user:u1", "vendor:v1"],
            };
            expected.push(post(&h, rooms).await);
        }
        let mut r = replay(&h, &[("user:u1", pu), ("vendor:v1", pv)], 4).await.unwrap();
        assert_eq!(drain(&mut r, 4, 2).await.unwrap(), expected);
    }

    #[tokio::test]
    async fn events_trimmed_between_two_pages_stop_the_replay_with_a_gap() {
        let h = history(20);
        let start = post(&h, &["vendor:v1"]).await;
        for _ in 0..19 {
            post(&h, &["vendor:v1"]).await;
        }
        let mut r = replay(&h, &[("vendor:v1", start)], 5).await.unwrap();
        for _ in 0..5 {
            r.next().await.unwrap();
        }
        // Ten more push the oldest ten out of the ring: the sixth to the tenth are gone.
        for _ in 0..10 {
            post(&h, &["vendor:v1"]).await;
        }
        assert!(matches!(r.next().await, Err(ReplayError::Gap(room)) if room == "vendor:v1"));
    }

    #[tokio::test]
    async fn a_room_dropped_whole_during_the_replay_is_a_gap_not_an_end() {
        let ttl = Duration::from_millis(300);
        let config = HistoryConfig { enabled: true, ttl, size: 100, max_bytes: usize::MAX };
        let h = History::Memory(MemoryHistory::new(config));
        let start = post(&h, &["vendor:v1"]).await;
        for _ in 0..20 {
            post(&h, &["vendor:v1"]).await;
        }
        let mut r = replay(&h, &[("vendor:v1", start)], 5).await.unwrap();
        for _ in 0..5 {
            r.next().await.unwrap();
        }
        // The room goes idle past the TTL; the next append elsewhere sweeps it away.
        tokio::time::sleep(ttl * 2).await;
        post(&h, &["user:other"]).await;
        assert!(matches!(r.next().await, Err(ReplayError::Gap(_))));
    }
}
