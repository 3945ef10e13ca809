//! The registry's bookkeeping under the hub's lock: rooms and members, and handing one
//! event to its members (the rules are argued in the parent module).

use std::sync::Arc;

use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;
use socketioxide::socket::Sid;

use super::outbox::Outgoing;
use super::{Close, Failure, Member, PENDING_MAX, Registry, State, covered_elsewhere};
use crate::history::{Entry, Partitioner, Seq};

impl<A: Adapter> Registry<A> {
    pub(super) fn unlist(&mut self, sid: Sid, room: &str) {
        if let Some(list) = self.rooms.get_mut(room) {
            list.retain(|s| *s != sid);
            if list.is_empty() {
                self.rooms.remove(room);
            }
        }
    }

    pub(super) fn remove(&mut self, sid: Sid) -> Option<Member<A>> {
        let member = self.members.remove(&sid)?;
        for (room, _) in &member.rooms {
            self.unlist(sid, room);
        }
        Some(member)
    }

    /// Where `room`'s partition's reader is: a room joined now receives what follows.
    pub(super) fn at(&self, room: &str, partitioner: &Partitioner) -> Seq {
        self.position.get(partitioner.of(room)).copied().unwrap_or(Seq::ZERO)
    }

    /// Hands one event to its members; returns the sockets that must be evicted, and why.
    pub(super) fn deliver_one(&mut self, e: &Arc<Entry>, out: &Outgoing, evicted: &mut Vec<(SocketRef<A>, Close)>) {
        if self.position.len() <= e.part {
            self.position.resize(e.part + 1, Seq::ZERO);
        }
        self.position[e.part] = self.position[e.part].max(e.seq);
        let mut targets: Vec<Sid> = Vec::new();
        for room in &e.rooms {
            if let Some(list) = self.rooms.get(room) {
                targets.extend_from_slice(list);
            }
        }
        if e.rooms.len() > 1 {
            targets.sort_unstable();
            targets.dedup();
        }
        let except = e.except.as_deref().and_then(|s| s.parse::<Sid>().ok());
        for sid in targets {
            if Some(sid) == except {
                continue;
            }
            let Some(member) = self.members.get_mut(&sid) else { continue };
            let outcome = match &mut member.state {
                State::Pending { buffer, .. } => {
                    buffer.push(e.clone());
                    if buffer.len() > PENDING_MAX { Err(Failure::Full) } else { Ok(()) }
                }
                State::Live(Some(filter)) if filter.replayed(e) || !filter.wanted(e) => Ok(()),
                State::Live(None) if !e.also.is_empty() && covered_elsewhere(&member.rooms, e) => Ok(()),
                State::Live(filter) => {
                    if filter.as_ref().is_some_and(|f| f.spent(&self.position)) {
                        *filter = None;
                    }
                    member.send(e, out.budget, out.now)
                }
            };
            match outcome {
                Ok(()) => {}
                Err(Failure::Closed) => {
                    self.remove(sid);
                }
                Err(failure) => {
                    if let Some(member) = self.remove(sid) {
                        evicted.push((member.socket, Close::from(&failure)));
                    }
                }
            }
        }
    }
}
