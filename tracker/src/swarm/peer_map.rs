//! A map from peer identity to peer entry, laid out for memory and for random picking.
//!
//! Entries sit densely in a `Vec`, and a hash table of `u32` positions finds an entry by key.
//! Two things follow:
//!
//! * **Picking k random peers is O(k).** A random start position in the `Vec` and a walk from
//!   there gives a window of peers without visiting the rest of the swarm, however large.
//! * **Few bytes per peer.** An IPv4 entry is 32 bytes in the `Vec`; the index costs a 4-byte
//!   position and 1 control byte per table slot (the table keeps at most 7/8 of its slots
//!   full). A general-purpose ordered map would also store each key's 8-byte hash and a
//!   pointer-sized position per slot.
//!
//! Removal swaps the last entry into the hole (so the `Vec` stays dense) and repoints that
//! entry's index slot. The hash of a key is computed by the caller with a keyed hasher owned by
//! the shard, so a map carries no hasher of its own and peers cannot choose ids that collide.

use std::hash::BuildHasher;

use hashbrown::HashTable;

use super::peer::PeerEntry;

/// Peers of one kind (say, IPv4 seeders) of one swarm.
#[derive(Debug, Clone)]
pub(crate) struct PeerMap<P> {
    entries: Vec<P>,
    index: HashTable<u32>,
}

impl<P> Default for PeerMap<P> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            index: HashTable::new(),
        }
    }
}

impl<P: PeerEntry> PeerMap<P> {
    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entry at `position` (positions run from 0 to `len() - 1`).
    pub(crate) fn get(&self, position: usize) -> Option<&P> {
        self.entries.get(position)
    }

    /// The entry at `position`, mutably.
    pub(crate) fn get_mut(&mut self, position: usize) -> Option<&mut P> {
        self.entries.get_mut(position)
    }

    /// Every entry, in position order.
    #[cfg(test)]
    pub(crate) fn iter(&self) -> std::slice::Iter<'_, P> {
        self.entries.iter()
    }

    /// The position of the entry with `key`, whose hash is `hash`.
    pub(crate) fn find(&self, hash: u64, key: &P::Key) -> Option<usize> {
        let entries = &self.entries;
        self.index
            .find(hash, |&pos| {
                entries.get(pos as usize).is_some_and(|e| e.key() == *key)
            })
            .map(|&pos| pos as usize)
    }

    /// Appends an entry whose key is not in the map yet; `hash` is its key's hash.
    ///
    /// Returns `None`, storing nothing, when the map already holds `u32::MAX` entries (callers
    /// cap swarms far below that).
    pub(crate) fn push<S: BuildHasher>(
        &mut self,
        hash: u64,
        entry: P,
        hasher: &S,
    ) -> Option<usize> {
        let position = self.entries.len();
        let position32 = u32::try_from(position).ok().filter(|&p| p < u32::MAX)?;
        self.entries.push(entry);
        let entries = &self.entries;
        self.index.insert_unique(hash, position32, |&pos| {
            entries
                .get(pos as usize)
                .map_or(0, |e| hasher.hash_one(e.key()))
        });
        Some(position)
    }

    /// Removes and returns the entry at `position`, moving the last entry into its place.
    pub(crate) fn swap_remove<S: BuildHasher>(&mut self, position: usize, hasher: &S) -> Option<P> {
        let removed = *self.entries.get(position)?;
        let position32 = u32::try_from(position).ok()?;
        if let Ok(slot) = self
            .index
            .find_entry(hasher.hash_one(removed.key()), |&pos| pos == position32)
        {
            slot.remove();
        }
        let last = self.entries.len() - 1;
        self.entries.swap_remove(position);
        if position != last {
            // The former last entry now lives at `position`: repoint its index slot.
            if let Some(moved) = self.entries.get(position) {
                let last32 = u32::try_from(last).ok()?;
                if let Some(slot) = self
                    .index
                    .find_mut(hasher.hash_one(moved.key()), |&pos| pos == last32)
                {
                    *slot = position32;
                }
            }
        }
        Some(removed)
    }

    /// Removes every entry that expires at or before `now`; returns how many went.
    pub(crate) fn remove_expired<S: BuildHasher>(&mut self, now: u32, hasher: &S) -> usize {
        let before = self.entries.len();
        let mut position = 0;
        while let Some(entry) = self.entries.get(position) {
            if entry.expires() <= now {
                // The swapped-in entry is examined next, at the same position.
                self.swap_remove(position, hasher);
            } else {
                position += 1;
            }
        }
        before - self.entries.len()
    }

    /// Gives memory back after a swarm shrank to under a quarter of its capacity (a flash crowd
    /// left). Keeps some headroom so a swarm that hovers around one size does not reallocate on
    /// every purge.
    pub(crate) fn shrink<S: BuildHasher>(&mut self, hasher: &S) {
        let len = self.entries.len();
        if self.entries.capacity() > 4 * len.max(4) {
            self.entries.shrink_to(len * 2);
            let entries = &self.entries;
            self.index.shrink_to(len * 2, |&pos| {
                entries
                    .get(pos as usize)
                    .map_or(0, |e| hasher.hash_one(e.key()))
            });
        }
    }

    /// Heap bytes held (capacity, not just length), for tests of the memory bound.
    #[cfg(test)]
    pub(crate) fn heap_bytes(&self) -> usize {
        self.entries.capacity() * size_of::<P>() + self.index.allocation_size()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::hash::RandomState;
    use std::net::{Ipv4Addr, SocketAddrV4};

    use proptest::prelude::*;

    use super::super::peer::V4Peer;
    use super::*;

    fn peer(n: u8, expires: u32) -> V4Peer {
        V4Peer::new(
            [n; 20],
            SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, n), 1000 + u16::from(n)),
            expires,
        )
    }

    fn insert(map: &mut PeerMap<V4Peer>, p: V4Peer, s: &RandomState) -> usize {
        map.push(s.hash_one(p.key()), p, s).unwrap()
    }

    fn check_index(map: &PeerMap<V4Peer>, s: &RandomState) {
        assert_eq!(map.index.len(), map.entries.len());
        for (pos, e) in map.iter().enumerate() {
            assert_eq!(map.find(s.hash_one(e.key()), &e.key()), Some(pos));
        }
    }

    #[test]
    fn push_find_remove() {
        let s = RandomState::new();
        let mut map = PeerMap::default();
        for n in 0..10 {
            assert_eq!(insert(&mut map, peer(n, 100), &s), usize::from(n));
        }
        let gone = peer(3, 100);
        assert_eq!(map.swap_remove(3, &s), Some(gone));
        assert_eq!(map.find(s.hash_one(gone.key()), &gone.key()), None);
        // The last entry moved into the hole and is still found.
        assert_eq!(map.get(3), Some(&peer(9, 100)));
        check_index(&map, &s);
        assert_eq!(map.swap_remove(42, &s), None);
        assert_eq!(map.len(), 9);
    }

    #[test]
    fn remove_expired_keeps_only_live_entries() {
        let s = RandomState::new();
        let mut map = PeerMap::default();
        for n in 0..20 {
            insert(&mut map, peer(n, u32::from(n % 3) * 10), &s);
        }
        // Expiries are 0, 10 or 20; at time 10 only those expiring at 20 remain.
        let removed = map.remove_expired(10, &s);
        assert_eq!(removed, 14);
        assert!(map.iter().all(|p| p.expires() == 20));
        check_index(&map, &s);
    }

    #[test]
    fn shrink_returns_memory_after_a_crowd_leaves() {
        let s = RandomState::new();
        let mut map = PeerMap::default();
        for n in 0..=255 {
            insert(&mut map, peer(n, if n < 8 { 100 } else { 1 }), &s);
        }
        let big = map.heap_bytes();
        map.remove_expired(50, &s);
        map.shrink(&s);
        assert_eq!(map.len(), 8);
        assert!(map.heap_bytes() * 4 < big, "{} vs {big}", map.heap_bytes());
        check_index(&map, &s);
    }

    proptest! {
        /// The map behaves like a `HashMap` keyed the same way, and its index always points at
        /// the right positions.
        #[test]
        fn behaves_like_a_hash_map(ops in prop::collection::vec((any::<bool>(), 0u8..40), 0..300)) {
            let s = RandomState::new();
            let mut map = PeerMap::default();
            let mut model = HashMap::new();
            for (add, n) in ops {
                let p = peer(n, u32::from(n));
                let hash = s.hash_one(p.key());
                match (add, map.find(hash, &p.key())) {
                    (true, None) => {
                        map.push(hash, p, &s).unwrap();
                        model.insert(p.key(), p);
                    }
                    (false, Some(pos)) => {
                        prop_assert_eq!(map.swap_remove(pos, &s), Some(p));
                        model.remove(&p.key());
                    }
                    (true, Some(_)) | (false, None) => {}
                }
                prop_assert_eq!(map.len(), model.len());
            }
            check_index(&map, &s);
            for (key, p) in &model {
                let pos = map.find(s.hash_one(key), key);
                prop_assert_eq!(pos.and_then(|pos| map.get(pos)), Some(p));
            }
        }
    }
}
