//! Whom a session uploads to: a fixed number of unchoke slots, handed to interested peers in
//! the order they asked.
//!
//! This is the simplest policy that is still a real one: every interested peer gets a slot
//! while slots are free, a peer that loses interest or leaves frees its slot for the longest
//! waiting one, and the number of peers we upload to at once stays bounded (so the upload
//! cap is shared by few enough peers that each gets useful throughput). It keeps no timers
//! and no rates. Swarms of long-lived site servers rarely have more interested peers than
//! slots; rotating slots by upload rate with an optimistic slot is the job of a proper
//! choker, which can replace this type without touching the session's message handling
//! (the session only applies the [`ChokeChange`]s it gets back).

use std::collections::{BTreeSet, VecDeque};

use crate::peer::PeerKey;

/// A choke state change the session must send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChokeChange {
    /// Send `unchoke`: the peer may request blocks.
    Unchoke(PeerKey),
    /// Send `choke` and drop its queued requests.
    Choke(PeerKey),
}

/// Unchoke slots; see the module docs.
#[derive(Debug)]
pub(super) struct UnchokeSlots {
    max: usize,
    unchoked: BTreeSet<PeerKey>,
    /// Interested peers waiting for a slot, first come first served.
    waiting: VecDeque<PeerKey>,
}

impl UnchokeSlots {
    /// `max` slots (at least one).
    pub(super) fn new(max: usize) -> Self {
        UnchokeSlots {
            max: max.max(1),
            unchoked: BTreeSet::new(),
            waiting: VecDeque::new(),
        }
    }

    /// The peer said `interested`.
    pub(super) fn interested(&mut self, peer: PeerKey) -> Vec<ChokeChange> {
        if self.unchoked.contains(&peer) || self.waiting.contains(&peer) {
            return Vec::new();
        }
        self.waiting.push_back(peer);
        self.fill()
    }

    /// The peer said `not interested`: its slot goes to the next waiting peer.
    pub(super) fn not_interested(&mut self, peer: PeerKey) -> Vec<ChokeChange> {
        self.waiting.retain(|&p| p != peer);
        let mut changes = Vec::new();
        if self.unchoked.remove(&peer) {
            changes.push(ChokeChange::Choke(peer));
        }
        changes.extend(self.fill());
        changes
    }

    /// The peer is gone (no message to send to it); its slot is handed on.
    pub(super) fn removed(&mut self, peer: PeerKey) -> Vec<ChokeChange> {
        self.waiting.retain(|&p| p != peer);
        self.unchoked.remove(&peer);
        self.fill()
    }

    /// Whether `peer` is unchoked.
    pub(super) fn is_unchoked(&self, peer: PeerKey) -> bool {
        self.unchoked.contains(&peer)
    }

    fn fill(&mut self) -> Vec<ChokeChange> {
        let mut changes = Vec::new();
        while self.unchoked.len() < self.max {
            let Some(next) = self.waiting.pop_front() else {
                break;
            };
            self.unchoked.insert(next);
            changes.push(ChokeChange::Unchoke(next));
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ChokeChange::{Choke, Unchoke};

    #[test]
    fn slots_go_to_interested_peers_in_order_and_are_handed_on() {
        let mut slots = UnchokeSlots::new(2);
        assert_eq!(slots.interested(PeerKey(1)), vec![Unchoke(PeerKey(1))]);
        assert_eq!(slots.interested(PeerKey(2)), vec![Unchoke(PeerKey(2))]);
        // Full: 3 and 4 wait.
        assert!(slots.interested(PeerKey(3)).is_empty());
        assert!(slots.interested(PeerKey(4)).is_empty());
        // Asking twice changes nothing.
        assert!(slots.interested(PeerKey(1)).is_empty());
        assert!(slots.is_unchoked(PeerKey(1)) && !slots.is_unchoked(PeerKey(3)));

        // 1 loses interest: choked, and 3 (first in line) gets the slot.
        assert_eq!(
            slots.not_interested(PeerKey(1)),
            vec![Choke(PeerKey(1)), Unchoke(PeerKey(3))]
        );
        // 2 leaves: no choke to send, 4 gets the slot.
        assert_eq!(slots.removed(PeerKey(2)), vec![Unchoke(PeerKey(4))]);
        // A waiting peer that leaves or loses interest just leaves the line.
        assert!(slots.interested(PeerKey(5)).is_empty());
        assert!(slots.not_interested(PeerKey(5)).is_empty());
        assert!(slots.removed(PeerKey(3)).is_empty());
        assert_eq!(slots.interested(PeerKey(6)), vec![Unchoke(PeerKey(6))]);
    }

    #[test]
    fn at_least_one_slot() {
        let mut slots = UnchokeSlots::new(0);
        assert_eq!(slots.interested(PeerKey(9)), vec![Unchoke(PeerKey(9))]);
    }
}
