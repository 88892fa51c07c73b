//! One torrent's swarm and the pure announce update.
//!
//! A swarm is four [`PeerMap`]s: seeders and leechers, IPv4 and IPv6. Keeping seeders apart
//! from leechers makes the counters exact for free (they are the maps' lengths, so they cannot
//! drift from the peers actually held) and lets selection draw from the group it wants without
//! filtering a mixed list. A peer whose `left` reaches 0 moves from one map to the other.
//!
//! [`Swarm::announce`] is a pure function of the swarm, the announce, the time and the random
//! generator: it reads no clock and no global RNG, so tests replay it exactly.
//!
//! Selection walks each group as one sequence (IPv4 entries, then IPv6 entries) from a random
//! start, wrapping around, until it has enough peers. That visits O(numwant) entries whatever
//! the swarm's size. Every announce draws a fresh start, so over successive announces each
//! peer is introduced to a spread of the swarm.

use std::hash::BuildHasher;
use std::net::SocketAddr;

use rand::{Rng, RngExt};
use swarmcdn_proto::PeerId;

use super::normalize_addr;
use super::peer::{PeerEntry, V4Peer, V6Peer};
use super::peer_map::PeerMap;
use super::{AnnounceEvent, AnnounceInput, AnnounceOutput, StoreConfig, SwarmStats, Timestamp};

/// A leecher's answer holds at most `numwant / LEECHER_SHARE_DIVISOR` leechers while seeders
/// are available: the rest of the slots go to seeders, which can always serve a piece. Some
/// leechers are still included so leechers trade pieces among themselves and the seeders'
/// upload is spread.
const LEECHER_SHARE_DIVISOR: usize = 3;

/// Extra entries selection may step over (the announcing peer itself, peers that expired but
/// were not purged yet) beyond twice the number wanted. Bounds the walk when a swarm is full of
/// expired peers; the periodic purge clears those.
const SCAN_SLACK: usize = 16;

/// One torrent's peers and download counter.
#[derive(Debug, Clone, Default)]
pub(crate) struct Swarm {
    seeders_v4: PeerMap<V4Peer>,
    leechers_v4: PeerMap<V4Peer>,
    seeders_v6: PeerMap<V6Peer>,
    leechers_v6: PeerMap<V6Peer>,
    downloaded: u64,
}

/// What an announce did to the announcing peer's entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Upsert {
    /// Whether the peer was already stored, and as a seeder (`Some(true)`) or leecher.
    was_seeder: Option<bool>,
    /// Whether the peer is stored after the announce.
    stored: bool,
}

/// The announcing peer, to keep it out of its own answer, and whether its answer carries ids.
struct Announcer {
    peer_id: [u8; 20],
    addr: SocketAddr,
    with_ids: bool,
}

impl Announcer {
    /// Whether a candidate is the announcer: the same id (in either address family, as a
    /// dual-stack peer announces once per family) or the same socket address (the same client
    /// restarted with a new id while its old entry lingers).
    fn is(&self, peer_id: &[u8; 20], addr: SocketAddr) -> bool {
        *peer_id == self.peer_id || addr == self.addr
    }
}

impl Swarm {
    /// Seeders, both families.
    pub(crate) fn seeders(&self) -> usize {
        self.seeders_v4.len() + self.seeders_v6.len()
    }

    /// Leechers, both families.
    pub(crate) fn leechers(&self) -> usize {
        self.leechers_v4.len() + self.leechers_v6.len()
    }

    /// All peers.
    pub(crate) fn peers(&self) -> usize {
        self.seeders() + self.leechers()
    }

    /// Completed downloads counted so far.
    pub(crate) fn downloaded(&self) -> u64 {
        self.downloaded
    }

    /// The counters an announce or scrape reports.
    pub(crate) fn stats(&self) -> SwarmStats {
        SwarmStats {
            complete: u32::try_from(self.seeders()).unwrap_or(u32::MAX),
            incomplete: u32::try_from(self.leechers()).unwrap_or(u32::MAX),
            downloaded: self.downloaded,
        }
    }

    /// Applies one announce and writes the answer into `out` (cleared first).
    ///
    /// `hasher` hashes peer keys (the shard's keyed hasher); `rng` picks where selection starts.
    pub(crate) fn announce<R: Rng + ?Sized, S: BuildHasher>(
        &mut self,
        input: &AnnounceInput,
        now: Timestamp,
        config: &StoreConfig,
        hasher: &S,
        rng: &mut R,
        out: &mut AnnounceOutput,
    ) {
        out.clear();
        let addr = normalize_addr(input.addr);
        let seeder = input.left == 0;
        let stop = input.event == AnnounceEvent::Stopped;
        let expires = now.saturating_add(config.peer_timeout_secs).secs();
        let room = self.peers() < config.max_peers_per_torrent as usize;
        let peer_id = input.peer_id.0;
        let upsert = match addr {
            SocketAddr::V4(a) => upsert(
                &mut self.seeders_v4,
                &mut self.leechers_v4,
                peer_id,
                a,
                seeder,
                stop,
                expires,
                room,
                hasher,
            ),
            SocketAddr::V6(a) => upsert(
                &mut self.seeders_v6,
                &mut self.leechers_v6,
                peer_id,
                a,
                seeder,
                stop,
                expires,
                room,
                hasher,
            ),
        };
        // A download counts once: when a stored peer becomes a seeder with `completed`.
        if input.event == AnnounceEvent::Completed
            && seeder
            && upsert.stored
            && upsert.was_seeder != Some(true)
        {
            self.downloaded = self.downloaded.saturating_add(1);
        }
        out.stats = self.stats();
        if stop {
            return;
        }

        let want = input
            .numwant
            .unwrap_or(config.numwant_default)
            .min(config.numwant_max) as usize;
        let me = Announcer {
            peer_id,
            addr,
            with_ids: input.peer_ids,
        };
        let now = now.secs();
        if seeder {
            // Leechers first: they are who a seeder is there to serve. Slots they leave go to
            // other seeders: `left=0` is the peer's own claim, and a partial seed (BEP 21) or a
            // client re-checking its data still needs pieces, which seeders have. In a busy
            // swarm leechers fill the answer and the second walk does nothing.
            let got = pick(
                &self.leechers_v4,
                &self.leechers_v6,
                want,
                &me,
                now,
                rng,
                out,
            );
            pick(
                &self.seeders_v4,
                &self.seeders_v6,
                want - got,
                &me,
                now,
                rng,
                out,
            );
        } else {
            let other_leechers = self.leechers() - usize::from(upsert.stored);
            self.pick_for_leecher(want, other_leechers, &me, now, rng, out);
        }
    }

    /// Up to `want` peers for a newcomer that has not announced (a site fetching a release
    /// bundle): picked as for a leecher, nothing stored. Written into `out` (cleared first)
    /// with the swarm's counters.
    pub(crate) fn sample<R: Rng + ?Sized>(
        &self,
        want: usize,
        now: Timestamp,
        rng: &mut R,
        out: &mut AnnounceOutput,
    ) {
        out.clear();
        out.stats = self.stats();
        // An id and address no stored peer has: nobody is left out as "the announcer".
        let nobody = Announcer {
            peer_id: [0; 20],
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            with_ids: false,
        };
        self.pick_for_leecher(want, self.leechers(), &nobody, now.secs(), rng, out);
    }

    /// A leecher's answer: seeders first, leaving at most a third of `want` to the
    /// `other_leechers` (leechers besides the announcer), which also fill any slots seeders
    /// leave.
    fn pick_for_leecher<R: Rng + ?Sized>(
        &self,
        want: usize,
        other_leechers: usize,
        me: &Announcer,
        now: u32,
        rng: &mut R,
        out: &mut AnnounceOutput,
    ) {
        let leecher_slots = (want / LEECHER_SHARE_DIVISOR).min(other_leechers);
        let got = pick(
            &self.seeders_v4,
            &self.seeders_v6,
            want - leecher_slots,
            me,
            now,
            rng,
            out,
        );
        pick(
            &self.leechers_v4,
            &self.leechers_v6,
            want - got,
            me,
            now,
            rng,
            out,
        );
    }

    /// Drops peers that expire at or before `now`; returns how many.
    pub(crate) fn remove_expired<S: BuildHasher>(&mut self, now: Timestamp, hasher: &S) -> usize {
        let now = now.secs();
        self.seeders_v4.remove_expired(now, hasher)
            + self.leechers_v4.remove_expired(now, hasher)
            + self.seeders_v6.remove_expired(now, hasher)
            + self.leechers_v6.remove_expired(now, hasher)
    }

    /// Returns memory held by maps that shrank a lot.
    pub(crate) fn shrink<S: BuildHasher>(&mut self, hasher: &S) {
        self.seeders_v4.shrink(hasher);
        self.leechers_v4.shrink(hasher);
        self.seeders_v6.shrink(hasher);
        self.leechers_v6.shrink(hasher);
    }

    /// Every stored peer as (peer id, address, is seeder), for tests.
    #[cfg(test)]
    pub(crate) fn all_peers(&self) -> Vec<([u8; 20], SocketAddr, bool)> {
        let v4 = |m: &PeerMap<V4Peer>, s: bool| {
            m.iter()
                .map(move |p| (*p.peer_id(), SocketAddr::V4(p.addr()), s))
                .collect::<Vec<_>>()
        };
        let v6 = |m: &PeerMap<V6Peer>, s: bool| {
            m.iter()
                .map(move |p| (*p.peer_id(), SocketAddr::V6(p.addr()), s))
                .collect::<Vec<_>>()
        };
        let mut all = v4(&self.seeders_v4, true);
        all.extend(v4(&self.leechers_v4, false));
        all.extend(v6(&self.seeders_v6, true));
        all.extend(v6(&self.leechers_v6, false));
        all
    }

    /// Heap bytes held by the peer maps, for the memory test.
    #[cfg(test)]
    pub(crate) fn heap_bytes(&self) -> usize {
        self.seeders_v4.heap_bytes()
            + self.leechers_v4.heap_bytes()
            + self.seeders_v6.heap_bytes()
            + self.leechers_v6.heap_bytes()
    }
}

/// Adds, refreshes, moves or removes the announcing peer in one address family's maps.
#[allow(clippy::too_many_arguments)] // a private helper; a struct would only rename them
fn upsert<P: PeerEntry, S: BuildHasher>(
    seeders: &mut PeerMap<P>,
    leechers: &mut PeerMap<P>,
    peer_id: [u8; 20],
    addr: P::Addr,
    seeder: bool,
    stop: bool,
    expires: u32,
    room: bool,
    hasher: &S,
) -> Upsert {
    let key = P::key_of(peer_id, &addr);
    let hash = hasher.hash_one(key);
    let found = match seeders.find(hash, &key) {
        Some(pos) => Some((true, pos)),
        None => leechers.find(hash, &key).map(|pos| (false, pos)),
    };
    let was_seeder = found.map(|(s, _)| s);
    let (target, other) = if seeder {
        (seeders, leechers)
    } else {
        (leechers, seeders)
    };
    let stored = match found {
        Some((was, pos)) if stop => {
            let map = if was == seeder { target } else { other };
            map.swap_remove(pos, hasher);
            false
        }
        None if stop => false,
        Some((was, pos)) if was == seeder => {
            if let Some(entry) = target.get_mut(pos) {
                entry.refresh(&addr, expires);
            }
            true
        }
        Some((_, pos)) => {
            // Seeder became leecher or the other way round: move the entry. It was already
            // counted against the swarm's cap, so no room check.
            other.swap_remove(pos, hasher);
            target
                .push(hash, P::new(peer_id, addr, expires), hasher)
                .is_some()
        }
        None => {
            room && target
                .push(hash, P::new(peer_id, addr, expires), hasher)
                .is_some()
        }
    };
    Upsert { was_seeder, stored }
}

/// Appends up to `want` live peers other than the announcer from one group (its IPv4 and IPv6
/// maps walked as one sequence from a random start) to `out`; returns how many.
fn pick<R: Rng + ?Sized>(
    v4: &PeerMap<V4Peer>,
    v6: &PeerMap<V6Peer>,
    want: usize,
    me: &Announcer,
    now: u32,
    rng: &mut R,
    out: &mut AnnounceOutput,
) -> usize {
    let n = v4.len() + v6.len();
    if want == 0 || n == 0 {
        return 0;
    }
    let max_steps = n.min(want.saturating_mul(2).saturating_add(SCAN_SLACK));
    let mut position = rng.random_range(0..n);
    let mut got = 0;
    for _ in 0..max_steps {
        if position < v4.len() {
            if let Some(p) = v4.get(position) {
                let addr = p.addr();
                if p.expires() > now && !me.is(p.peer_id(), SocketAddr::V4(addr)) {
                    out.peers_v4.push(addr);
                    if me.with_ids {
                        out.peer_ids_v4.push(PeerId(*p.peer_id()));
                    }
                    got += 1;
                }
            }
        } else if let Some(p) = v6.get(position - v4.len()) {
            let addr = p.addr();
            if p.expires() > now && !me.is(p.peer_id(), SocketAddr::V6(addr)) {
                out.peers_v6.push(addr);
                if me.with_ids {
                    out.peer_ids_v6.push(PeerId(*p.peer_id()));
                }
                got += 1;
            }
        }
        if got == want {
            break;
        }
        position += 1;
        if position == n {
            position = 0;
        }
    }
    got
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::hash::RandomState;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use swarmcdn_proto::InfoHash;

    use super::*;

    const T0: Timestamp = Timestamp(1_000);

    fn config() -> StoreConfig {
        StoreConfig {
            peer_timeout_secs: 600,
            numwant_default: 50,
            numwant_max: 80,
            max_peers_per_torrent: 10_000,
            shards: 1,
        }
    }

    fn v4(n: u16) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::new(10, 0, (n >> 8) as u8, n as u8),
            6881,
        ))
    }

    fn v6(n: u16) -> SocketAddr {
        SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, n),
            6881,
            0,
            0,
        ))
    }

    fn id(n: u16) -> PeerId {
        let mut bytes = [0u8; 20];
        bytes[..2].copy_from_slice(&n.to_be_bytes());
        PeerId(bytes)
    }

    fn input(n: u16, addr: SocketAddr, left: u64, event: AnnounceEvent) -> AnnounceInput {
        AnnounceInput {
            info_hash: InfoHash([1; 20]),
            peer_id: id(n),
            addr,
            event,
            left,
            numwant: None,
            peer_ids: false,
        }
    }

    struct Harness {
        swarm: Swarm,
        config: StoreConfig,
        hasher: RandomState,
        rng: StdRng,
        out: AnnounceOutput,
    }

    impl Harness {
        fn new() -> Self {
            Self {
                swarm: Swarm::default(),
                config: config(),
                hasher: RandomState::new(),
                rng: StdRng::seed_from_u64(7),
                out: AnnounceOutput::default(),
            }
        }

        fn announce_at(&mut self, input: &AnnounceInput, now: Timestamp) -> &AnnounceOutput {
            self.swarm.announce(
                input,
                now,
                &self.config,
                &self.hasher,
                &mut self.rng,
                &mut self.out,
            );
            &self.out
        }

        fn announce(&mut self, input: &AnnounceInput) -> &AnnounceOutput {
            self.announce_at(input, T0)
        }

        /// Adds `seeders` IPv4 seeders numbered from 1000 and `leechers` numbered from 2000.
        fn populate(&mut self, seeders: u16, leechers: u16) {
            for n in 0..seeders {
                self.announce(&input(1000 + n, v4(1000 + n), 0, AnnounceEvent::Started));
            }
            for n in 0..leechers {
                self.announce(&input(2000 + n, v4(2000 + n), 5, AnnounceEvent::Started));
            }
        }
    }

    fn is_seeder_addr(addr: &SocketAddrV4) -> bool {
        let n = u16::from_be_bytes([addr.ip().octets()[2], addr.ip().octets()[3]]);
        (1000..2000).contains(&n)
    }

    #[test]
    fn new_peers_are_counted_as_seeder_or_leecher() {
        let mut h = Harness::new();
        h.populate(3, 4);
        let out = h.announce(&input(1, v4(1), 10, AnnounceEvent::Started));
        assert_eq!(
            out.stats,
            SwarmStats {
                complete: 3,
                incomplete: 5,
                downloaded: 0
            }
        );
    }

    #[test]
    fn stopped_removes_the_peer_and_returns_no_peers() {
        let mut h = Harness::new();
        h.populate(2, 2);
        h.announce(&input(1, v4(1), 10, AnnounceEvent::Started));
        assert_eq!(h.swarm.peers(), 5);
        let out = h.announce(&input(1, v4(1), 10, AnnounceEvent::Stopped));
        assert_eq!(out.peer_count(), 0);
        assert_eq!(out.stats.incomplete, 2);
        assert_eq!(h.swarm.peers(), 4);
        // Stopping an unknown peer changes nothing and still answers with no peers.
        let out = h.announce(&input(99, v4(99), 0, AnnounceEvent::Stopped));
        assert_eq!(out.peer_count(), 0);
        assert_eq!(h.swarm.peers(), 4);
    }

    #[test]
    fn stopped_from_another_address_does_not_remove_the_peer() {
        let mut h = Harness::new();
        h.announce(&input(1, v4(1), 10, AnnounceEvent::Started));
        h.announce(&input(1, v4(2), 10, AnnounceEvent::Stopped));
        assert_eq!(h.swarm.peers(), 1);
    }

    #[test]
    fn completed_counts_once_per_transition() {
        let mut h = Harness::new();
        h.announce(&input(1, v4(1), 10, AnnounceEvent::Started));
        let out = h.announce(&input(1, v4(1), 0, AnnounceEvent::Completed));
        assert_eq!(out.stats.downloaded, 1);
        assert_eq!(out.stats.complete, 1);
        assert_eq!(out.stats.incomplete, 0);
        // A repeated `completed` from a peer already seeding is not a new download.
        let out = h.announce(&input(1, v4(1), 0, AnnounceEvent::Completed));
        assert_eq!(out.stats.downloaded, 1);
        // A peer we had not seen before (say, after a restart) that reports completion counts.
        let out = h.announce(&input(2, v4(2), 0, AnnounceEvent::Completed));
        assert_eq!(out.stats.downloaded, 2);
        // `completed` with bytes still left is not a completion.
        h.announce(&input(3, v4(3), 10, AnnounceEvent::Started));
        let out = h.announce(&input(3, v4(3), 10, AnnounceEvent::Completed));
        assert_eq!(out.stats.downloaded, 2);
    }

    #[test]
    fn a_seeder_gets_every_leecher_then_other_seeders() {
        let mut h = Harness::new();
        h.populate(30, 10);
        // Seeder 1000 (already stored) asks for the default 50: all 10 leechers and the 29
        // other seeders, never itself.
        let me = input(1000, v4(1000), 0, AnnounceEvent::None);
        let out = h.announce(&me).clone();
        assert_eq!(out.peers_v4.len(), 39);
        assert!(!out.peers_v4.iter().any(|a| SocketAddr::V4(*a) == v4(1000)));
        let leechers: HashSet<_> = out.peers_v4[..10].iter().collect();
        assert_eq!(leechers.len(), 10);
        assert!(
            leechers.iter().all(|a| !is_seeder_addr(a)),
            "leechers come first"
        );
        assert!(out.peers_v4[10..].iter().all(is_seeder_addr));

        // Asking for 15: the 10 leechers, then 5 seeders fill the rest.
        let mut me = me;
        me.numwant = Some(15);
        for _ in 0..20 {
            let out = h.announce(&me);
            assert_eq!(out.peers_v4.len(), 15);
            assert_eq!(
                out.peers_v4.iter().filter(|a| !is_seeder_addr(a)).count(),
                10
            );
            assert!(!out.peers_v4.iter().any(|a| SocketAddr::V4(*a) == v4(1000)));
        }
    }

    #[test]
    fn a_seeder_in_a_busy_swarm_gets_only_leechers() {
        let mut h = Harness::new();
        h.populate(30, 100);
        let out = h.announce(&input(1, v4(1), 0, AnnounceEvent::Started));
        assert_eq!(out.peers_v4.len(), 50);
        assert!(out.peers_v4.iter().all(|a| !is_seeder_addr(a)));
    }

    #[test]
    fn a_seeder_gets_both_families_and_never_its_own_entries() {
        let mut h = Harness::new();
        // Two IPv4 leechers, two IPv6 leechers, two IPv6 seeders, and the announcer seeding
        // over both families under one id.
        for n in 0..2 {
            h.announce(&input(10 + n, v4(10 + n), 5, AnnounceEvent::Started));
            h.announce(&input(20 + n, v6(20 + n), 5, AnnounceEvent::Started));
            h.announce(&input(30 + n, v6(30 + n), 0, AnnounceEvent::Started));
        }
        h.announce(&input(1, v6(1), 0, AnnounceEvent::Started));
        let out = h.announce(&input(1, v4(1), 0, AnnounceEvent::Started));
        assert_eq!(out.peers_v4.len(), 2);
        assert_eq!(out.peers_v6.len(), 4);
        let mut v6s: Vec<u16> = out.peers_v6.iter().map(|a| a.ip().segments()[7]).collect();
        v6s.sort_unstable();
        assert_eq!(v6s, [20, 21, 30, 31]);
    }

    #[test]
    fn leechers_get_a_mix_favouring_seeders() {
        let mut h = Harness::new();
        h.populate(100, 100);
        let out = h.announce(&input(1, v4(1), 10, AnnounceEvent::Started));
        assert_eq!(out.peers_v4.len(), 50);
        let seeders = out.peers_v4.iter().filter(|a| is_seeder_addr(a)).count();
        assert_eq!(seeders, 50 - 50 / LEECHER_SHARE_DIVISOR);

        // With few seeders, leechers fill the remaining slots.
        let mut h = Harness::new();
        h.populate(5, 100);
        let out = h.announce(&input(1, v4(1), 10, AnnounceEvent::Started));
        assert_eq!(out.peers_v4.len(), 50);
        assert_eq!(out.peers_v4.iter().filter(|a| is_seeder_addr(a)).count(), 5);

        // With few leechers, seeders fill the remaining slots.
        let mut h = Harness::new();
        h.populate(100, 3);
        let out = h.announce(&input(1, v4(1), 10, AnnounceEvent::Started));
        assert_eq!(out.peers_v4.len(), 50);
        assert_eq!(
            out.peers_v4.iter().filter(|a| is_seeder_addr(a)).count(),
            47
        );
    }

    #[test]
    fn announcing_peer_is_never_in_its_own_list() {
        let mut h = Harness::new();
        // A small swarm, so every answer covers everyone but the announcer.
        h.populate(3, 3);
        let me = input(2000, v4(2000), 5, AnnounceEvent::None);
        for _ in 0..50 {
            let out = h.announce(&me);
            assert_eq!(out.peers_v4.len(), 5);
            assert!(
                !out.peers_v4
                    .contains(&SocketAddrV4::new(Ipv4Addr::new(10, 0, 7, 208), 6881))
            );
        }
        // The same peer id over IPv6 does not get its own IPv4 entry back, nor vice versa.
        let dual = input(2000, v6(1), 5, AnnounceEvent::Started);
        let out = h.announce(&dual);
        assert_eq!(out.peers_v4.len(), 5);
        assert!(out.peers_v6.is_empty());
        let out = h.announce(&me).clone();
        assert!(out.peers_v6.is_empty());
        // A restarted client (new id, same address) does not get its stale entry either.
        let restarted = input(3000, v4(2000), 5, AnnounceEvent::Started);
        let out = h.announce(&restarted);
        assert!(!out.peers_v4.iter().any(|a| SocketAddr::V4(*a) == v4(2000)));
    }

    #[test]
    fn address_families_go_to_their_own_lists() {
        let mut h = Harness::new();
        for n in 0..4 {
            h.announce(&input(100 + n, v4(100 + n), 0, AnnounceEvent::Started));
            h.announce(&input(200 + n, v6(200 + n), 0, AnnounceEvent::Started));
        }
        // An IPv4-mapped IPv6 peer is stored as IPv4.
        let mapped: SocketAddr = "[::ffff:10.9.9.9]:7000".parse().unwrap();
        h.announce(&input(300, mapped, 0, AnnounceEvent::Started));
        let out = h.announce(&input(1, v6(1), 10, AnnounceEvent::Started));
        assert_eq!(out.peers_v4.len(), 5);
        assert_eq!(out.peers_v6.len(), 4);
        assert!(out.peers_v4.contains(&"10.9.9.9:7000".parse().unwrap()));
        for a in &out.peers_v6 {
            assert_eq!(a.ip().segments()[0], 0x2001);
        }
    }

    #[test]
    fn numwant_is_defaulted_and_capped() {
        let mut h = Harness::new();
        h.populate(200, 0);
        let mut me = input(1, v4(1), 10, AnnounceEvent::Started);
        assert_eq!(h.announce(&me).peer_count(), 50);
        me.numwant = Some(7);
        assert_eq!(h.announce(&me).peer_count(), 7);
        me.numwant = Some(0);
        assert_eq!(h.announce(&me).peer_count(), 0);
        me.numwant = Some(u32::MAX);
        assert_eq!(h.announce(&me).peer_count(), 80);
    }

    #[test]
    fn peers_expire_after_the_timeout() {
        let mut h = Harness::new();
        h.announce_at(&input(1, v4(1), 0, AnnounceEvent::Started), T0);
        h.announce_at(
            &input(2, v4(2), 0, AnnounceEvent::Started),
            T0.saturating_add(300),
        );
        // Just before peer 1's timeout it is still handed out; at the timeout it is not.
        let probe = input(3, v4(3), 10, AnnounceEvent::Started);
        let out = h.announce_at(&probe, T0.saturating_add(599));
        assert_eq!(out.peers_v4.len(), 2);
        let out = h.announce_at(&probe, T0.saturating_add(600));
        assert_eq!(
            out.peers_v4,
            vec![SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 6881)]
        );
        // The purge drops it; counters follow.
        assert_eq!(h.swarm.remove_expired(T0.saturating_add(600), &h.hasher), 1);
        assert_eq!(h.swarm.peers(), 2);
        // Announcing again refreshes the expiry.
        h.announce_at(
            &input(2, v4(2), 0, AnnounceEvent::None),
            T0.saturating_add(800),
        );
        // The probe (last seen at T0 + 600) goes at T0 + 1200; peer 2 stays until T0 + 1400.
        assert_eq!(
            h.swarm.remove_expired(T0.saturating_add(1300), &h.hasher),
            1
        );
        assert_eq!(h.swarm.all_peers().len(), 1);
        assert_eq!(h.swarm.all_peers()[0].0, id(2).0);
    }

    #[test]
    fn a_full_swarm_answers_new_peers_without_storing_them() {
        let mut h = Harness::new();
        h.config.max_peers_per_torrent = 10;
        h.populate(10, 0);
        let out = h.announce(&input(1, v4(1), 10, AnnounceEvent::Started));
        assert_eq!(out.peers_v4.len(), 10);
        assert_eq!(h.swarm.peers(), 10);
        // Known peers can still change role when the swarm is full.
        h.announce(&input(1000, v4(1000), 10, AnnounceEvent::None));
        assert_eq!((h.swarm.seeders(), h.swarm.leechers()), (9, 1));
    }

    #[test]
    fn port_change_updates_the_entry() {
        let mut h = Harness::new();
        h.announce(&input(1, v4(1), 0, AnnounceEvent::Started));
        let moved = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 7000));
        h.announce(&input(1, moved, 0, AnnounceEvent::None));
        assert_eq!(h.swarm.all_peers(), vec![(id(1).0, moved, true)]);
    }

    #[test]
    fn selection_spreads_over_a_large_swarm() {
        let mut h = Harness::new();
        h.populate(2000, 0);
        let mut seen = HashSet::new();
        for _ in 0..200 {
            let out = h.announce(&input(1, v4(1), 10, AnnounceEvent::None));
            seen.extend(out.peers_v4.iter().copied());
        }
        // 200 random windows of 50 over 2000 seeders cover most of them.
        assert!(
            seen.len() > 1500,
            "only {} distinct peers handed out",
            seen.len()
        );
    }

    #[test]
    fn expired_but_unpurged_peers_are_not_handed_out() {
        // Every peer expired but not purged yet: nothing stale is returned (and the walk gives
        // up after its bound rather than visiting all 5000).
        let mut h = Harness::new();
        h.populate(5000, 0);
        let later = T0.saturating_add(10_000);
        let out = h.announce_at(&input(1, v4(1), 10, AnnounceEvent::None), later);
        assert_eq!(out.peer_count(), 0);
    }

    #[test]
    fn same_seed_same_answer() {
        let run = || {
            let mut h = Harness::new();
            h.populate(300, 300);
            h.announce(&input(1, v4(1), 10, AnnounceEvent::None))
                .clone()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn a_hundred_peer_swarm_is_small() {
        let mut h = Harness::new();
        h.populate(0, 100);
        // 100 entries of 32 bytes in a 128-slot Vec, plus the index.
        assert!(
            h.swarm.heap_bytes() <= 128 * 32 + 128 * 5 + 64,
            "{}",
            h.swarm.heap_bytes()
        );
    }
}
