//! The in-memory [`PeerStore`]: swarms in sharded, locked hash maps.
//!
//! Torrents are spread over `shards` independent `Mutex`es by a keyed hash of the info-hash,
//! so announces for different torrents on different cores rarely wait for each other, and a
//! purge holds one shard at a time. Each shard sits on its own cache lines so two cores taking
//! neighbouring locks do not bounce one line between them. A plain `Mutex` rather than a
//! read-write lock: nearly every request (an announce) writes, and an uncontended mutex is the
//! cheapest lock there is.
//!
//! Each shard keeps running totals of its peers and seeders, updated by every announce, so
//! [`PeerStore::stats`] costs one lock per shard rather than a walk over every swarm.
//!
//! The hashers are keyed with per-process random keys, so nobody can choose info-hashes or
//! peer ids that all land in one shard or one hash chain.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, MutexGuard, PoisonError};

use swarmcdn_proto::InfoHash;

use super::torrent::Swarm;
use super::{
    AnnounceEvent, AnnounceInput, AnnounceOutput, PeerStore, PurgeReport, StoreConfig, StoreError,
    StoreStats, SwarmStats, Timestamp,
};

/// Aligns its content to 128 bytes: two cache lines, as some CPUs fetch lines in pairs.
#[derive(Debug, Default)]
#[repr(align(128))]
struct CachePadded<T>(T);

/// A slice of the torrents, under one lock.
#[derive(Debug, Default)]
struct Shard {
    torrents: HashMap<InfoHash, Swarm>,
    /// Hashes peer keys inside this shard's swarms.
    peer_hasher: RandomState,
    /// Peers in all of this shard's swarms.
    peers: usize,
    /// Of those, seeders.
    seeders: usize,
}

impl Shard {
    /// Brings the running totals in line after `swarm` went from `before` (peers, seeders) to
    /// its current counts.
    fn account(&mut self, before: (usize, usize), after: (usize, usize)) {
        self.peers = self.peers - before.0 + after.0;
        self.seeders = self.seeders - before.1 + after.1;
    }
}

/// Swarm state held in this process's memory. The default store; see the module docs.
#[derive(Debug)]
pub struct MemoryStore {
    config: StoreConfig,
    shards: Box<[CachePadded<Mutex<Shard>>]>,
    /// Picks a torrent's shard.
    shard_hasher: RandomState,
}

impl MemoryStore {
    /// An empty store. A `shards` of 0 is taken as 1.
    pub fn new(config: StoreConfig) -> Self {
        let shards = (0..config.shards.max(1))
            .map(|_| CachePadded::default())
            .collect();
        Self {
            config,
            shards,
            shard_hasher: RandomState::new(),
        }
    }

    /// The configuration the store was built with.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Locks the shard that holds `info_hash`.
    fn shard(&self, info_hash: &InfoHash) -> MutexGuard<'_, Shard> {
        // `shards` is never empty (see `new`), so the remainder is a valid position.
        let position = self.shard_hasher.hash_one(info_hash) % self.shards.len() as u64;
        let shard = self
            .shards
            .get(position as usize)
            .unwrap_or_else(|| unreachable!("shard position is reduced modulo the shard count"));
        lock(&shard.0)
    }

    /// Every stored peer of one torrent, for tests.
    #[cfg(test)]
    fn peers_of(&self, info_hash: &InfoHash) -> Vec<([u8; 20], std::net::SocketAddr, bool)> {
        self.shard(info_hash)
            .torrents
            .get(info_hash)
            .map(Swarm::all_peers)
            .unwrap_or_default()
    }
}

/// Locks a shard. A panic while a shard was locked leaves a poisoned lock; the swarm inside is
/// still structurally sound (the counters are derived from the maps), so the store carries on
/// rather than failing every later announce for those torrents.
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

impl PeerStore for MemoryStore {
    fn announce(
        &self,
        input: &AnnounceInput,
        now: Timestamp,
        rng: &mut dyn rand::Rng,
        out: &mut AnnounceOutput,
    ) -> Result<(), StoreError> {
        let mut guard = self.shard(&input.info_hash);
        let shard = &mut *guard;
        let swarm = match shard.torrents.get_mut(&input.info_hash) {
            Some(swarm) => swarm,
            // A peer leaving a swarm we have no state for: nothing to create.
            None if input.event == AnnounceEvent::Stopped => {
                out.clear();
                return Ok(());
            }
            None => shard.torrents.entry(input.info_hash).or_default(),
        };
        let before = (swarm.peers(), swarm.seeders());
        swarm.announce(input, now, &self.config, &shard.peer_hasher, rng, out);
        let after = (swarm.peers(), swarm.seeders());
        shard.account(before, after);
        Ok(())
    }

    fn sample(
        &self,
        info_hash: &InfoHash,
        numwant: Option<u32>,
        now: Timestamp,
        rng: &mut dyn rand::Rng,
        out: &mut AnnounceOutput,
    ) -> Result<(), StoreError> {
        let want = numwant
            .unwrap_or(self.config.numwant_default)
            .min(self.config.numwant_max) as usize;
        match self.shard(info_hash).torrents.get(info_hash) {
            Some(swarm) => swarm.sample(want, now, rng, out),
            None => out.clear(),
        }
        Ok(())
    }

    fn scrape(&self, info_hashes: &[InfoHash]) -> Result<Vec<SwarmStats>, StoreError> {
        Ok(info_hashes
            .iter()
            .map(|info_hash| {
                self.shard(info_hash)
                    .torrents
                    .get(info_hash)
                    .map(Swarm::stats)
                    .unwrap_or_default()
            })
            .collect())
    }

    fn purge_expired(&self, now: Timestamp) -> Result<PurgeReport, StoreError> {
        let mut report = PurgeReport::default();
        for shard in &self.shards {
            let mut guard = lock(&shard.0);
            let shard = &mut *guard;
            let torrents_before = shard.torrents.len();
            let (mut peers, mut seeders) = (0, 0);
            shard.torrents.retain(|_, swarm| {
                report.peers += swarm.remove_expired(now, &shard.peer_hasher);
                swarm.shrink(&shard.peer_hasher);
                peers += swarm.peers();
                seeders += swarm.seeders();
                // An empty swarm is dropped unless its download count is worth keeping.
                swarm.peers() > 0 || swarm.downloaded() > 0
            });
            report.torrents += torrents_before - shard.torrents.len();
            shard.peers = peers;
            shard.seeders = seeders;
            if shard.torrents.capacity() > 4 * shard.torrents.len().max(16) {
                shard.torrents.shrink_to(shard.torrents.len() * 2);
            }
        }
        Ok(report)
    }

    fn stats(&self) -> Result<StoreStats, StoreError> {
        let mut stats = StoreStats::default();
        for shard in &self.shards {
            let shard = lock(&shard.0);
            stats.torrents += shard.torrents.len();
            stats.peers += shard.peers;
            stats.seeders += shard.seeders;
        }
        Ok(stats)
    }

    fn remove_torrent(&self, info_hash: &InfoHash) -> Result<bool, StoreError> {
        let mut shard = self.shard(info_hash);
        match shard.torrents.remove(info_hash) {
            Some(swarm) => {
                shard.account((swarm.peers(), swarm.seeders()), (0, 0));
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
    use std::sync::Arc;

    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use swarmcdn_proto::PeerId;

    use super::super::normalize_addr;
    use super::*;

    fn config() -> StoreConfig {
        StoreConfig {
            peer_timeout_secs: 600,
            numwant_default: 10,
            numwant_max: 20,
            max_peers_per_torrent: 10_000,
            shards: 4,
        }
    }

    fn hash(n: u8) -> InfoHash {
        InfoHash([n; 20])
    }

    fn announce(
        store: &MemoryStore,
        info_hash: InfoHash,
        n: u8,
        left: u64,
        event: AnnounceEvent,
        now: u32,
    ) -> AnnounceOutput {
        let input = AnnounceInput {
            info_hash,
            peer_id: PeerId([n; 20]),
            addr: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, n), 6881)),
            event,
            left,
            numwant: None,
            peer_ids: false,
        };
        let mut out = AnnounceOutput::default();
        let mut rng = StdRng::seed_from_u64(u64::from(n));
        store
            .announce(&input, Timestamp(now), &mut rng, &mut out)
            .unwrap();
        out
    }

    #[test]
    fn stats_scrape_and_removal_across_shards() {
        let store = MemoryStore::new(config());
        for t in 0..10 {
            for n in 0..5 {
                let left = if n < 2 { 0 } else { 1 };
                announce(&store, hash(t), n, left, AnnounceEvent::Started, 0);
            }
        }
        let stats = store.stats().unwrap();
        assert_eq!(
            stats,
            StoreStats {
                torrents: 10,
                peers: 50,
                seeders: 20
            }
        );
        let scraped = store.scrape(&[hash(3), hash(99), hash(4)]).unwrap();
        let expected = SwarmStats {
            complete: 2,
            incomplete: 3,
            downloaded: 0,
        };
        assert_eq!(scraped, vec![expected, SwarmStats::default(), expected]);

        assert!(store.remove_torrent(&hash(3)).unwrap());
        assert!(!store.remove_torrent(&hash(3)).unwrap());
        assert_eq!(store.stats().unwrap().peers, 45);
        assert_eq!(
            store.scrape(&[hash(3)]).unwrap(),
            vec![SwarmStats::default()]
        );
    }

    #[test]
    fn stopped_for_an_unknown_torrent_creates_nothing() {
        let store = MemoryStore::new(config());
        let out = announce(&store, hash(1), 1, 0, AnnounceEvent::Stopped, 0);
        assert_eq!(out, AnnounceOutput::default());
        assert_eq!(store.stats().unwrap().torrents, 0);
    }

    #[test]
    fn sample_is_read_only_and_puts_seeders_first() {
        let store = MemoryStore::new(config());
        let mut rng = StdRng::seed_from_u64(3);
        let mut out = AnnounceOutput::default();
        // Unknown torrent: no peers, and no swarm created.
        store
            .sample(&hash(1), None, Timestamp(0), &mut rng, &mut out)
            .unwrap();
        assert_eq!(out, AnnounceOutput::default());
        assert_eq!(store.stats().unwrap().torrents, 0);

        for n in 1..=12 {
            announce(&store, hash(1), n, 1, AnnounceEvent::Started, 0);
        }
        announce(&store, hash(1), 100, 0, AnnounceEvent::Started, 0);
        let before = store.stats().unwrap();
        store
            .sample(&hash(1), Some(6), Timestamp(1), &mut rng, &mut out)
            .unwrap();
        assert_eq!(store.stats().unwrap(), before, "sampling stored nothing");
        assert_eq!(out.peers_v4.len(), 6);
        assert!(
            out.peers_v4
                .contains(&SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 100), 6881))
        );
        assert_eq!((out.stats.complete, out.stats.incomplete), (1, 12));
        // numwant is capped like an announce's.
        store
            .sample(&hash(1), Some(1000), Timestamp(1), &mut rng, &mut out)
            .unwrap();
        assert_eq!(out.peers_v4.len(), 13);
        // Expired peers are not handed out.
        store
            .sample(&hash(1), None, Timestamp(10_000), &mut rng, &mut out)
            .unwrap();
        assert!(out.peers_v4.is_empty());
    }

    #[test]
    fn purge_drops_expired_peers_and_empty_torrents() {
        let store = MemoryStore::new(config());
        announce(&store, hash(1), 1, 1, AnnounceEvent::Started, 0);
        announce(&store, hash(1), 2, 1, AnnounceEvent::Started, 500);
        // Torrent 2's only peer completes, then goes quiet: its download count is kept.
        announce(&store, hash(2), 3, 1, AnnounceEvent::Started, 0);
        announce(&store, hash(2), 3, 0, AnnounceEvent::Completed, 10);
        announce(&store, hash(3), 4, 1, AnnounceEvent::Started, 0);

        let report = store.purge_expired(Timestamp(700)).unwrap();
        assert_eq!(
            report,
            PurgeReport {
                peers: 3,
                torrents: 1
            }
        );
        assert_eq!(
            store.stats().unwrap(),
            StoreStats {
                torrents: 2,
                peers: 1,
                seeders: 0
            }
        );
        assert_eq!(store.scrape(&[hash(2)]).unwrap()[0].downloaded, 1);
    }

    #[test]
    fn concurrent_announces_keep_totals_exact() {
        let store = Arc::new(MemoryStore::new(config()));
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    for n in 0..50 {
                        announce(
                            &store,
                            hash(n % 7),
                            t * 50 + n,
                            u64::from(n % 2),
                            AnnounceEvent::Started,
                            0,
                        );
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let stats = store.stats().unwrap();
        assert_eq!((stats.torrents, stats.peers, stats.seeders), (7, 200, 100));
    }

    /// One step of the property test.
    #[derive(Debug, Clone)]
    struct Step {
        torrent: u8,
        peer: u8,
        ipv6: bool,
        port: u16,
        seeder: bool,
        event: AnnounceEvent,
        numwant: Option<u32>,
        advance: u32,
        purge: bool,
    }

    fn step() -> impl Strategy<Value = Step> {
        (
            0u8..2,
            0u8..24,
            any::<bool>(),
            6881u16..6884,
            any::<bool>(),
            prop_oneof![
                Just(AnnounceEvent::None),
                Just(AnnounceEvent::Started),
                Just(AnnounceEvent::Completed),
                Just(AnnounceEvent::Stopped),
            ],
            prop::option::of(0u32..40),
            0u32..200,
            prop::bool::weighted(0.1),
        )
            .prop_map(
                |(torrent, peer, ipv6, port, seeder, event, numwant, advance, purge)| Step {
                    torrent,
                    peer,
                    ipv6,
                    port,
                    seeder,
                    event,
                    numwant,
                    advance,
                    purge,
                },
            )
    }

    /// A peer in the model: keyed by (torrent, peer id, IP), holding port, role and expiry.
    type Model = HashMap<(u8, [u8; 20], IpAddr), (u16, bool, u32)>;

    fn addr_of(step: &Step) -> SocketAddr {
        // Peers 0-7 share one IP, so ids and addresses overlap in interesting ways; every
        // third IPv4 address arrives IPv4-mapped.
        let host = step.peer / 8;
        if step.ipv6 {
            SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(host)),
                step.port,
                0,
                0,
            ))
        } else if step.peer.is_multiple_of(3) {
            let v4 = Ipv4Addr::new(192, 0, 2, host);
            SocketAddr::V6(SocketAddrV6::new(v4.to_ipv6_mapped(), step.port, 0, 0))
        } else {
            SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, host), step.port))
        }
    }

    proptest! {
        /// After any sequence of announces and purges, the store agrees with a simple model:
        /// counters match the peers held, no peer is held twice, answers never contain the
        /// announcer, a duplicate or an expired peer. (Which group comes first is the unit
        /// tests' business in `torrent`.)
        #[test]
        fn store_matches_model(steps in prop::collection::vec(step(), 1..120), seed in any::<u64>()) {
            let store = MemoryStore::new(config());
            let mut rng = StdRng::seed_from_u64(seed);
            let mut model: Model = HashMap::new();
            let mut downloaded: HashMap<u8, u64> = HashMap::new();
            let mut now = 0u32;
            let mut out = AnnounceOutput::default();
            for step in &steps {
                now += step.advance;
                if step.purge {
                    store.purge_expired(Timestamp(now)).unwrap();
                    model.retain(|_, (_, _, expires)| *expires > now);
                }
                let peer_id = [step.peer; 20];
                let addr = addr_of(step);
                let normal = normalize_addr(addr);
                let input = AnnounceInput {
                    info_hash: hash(step.torrent),
                    peer_id: PeerId(peer_id),
                    addr,
                    event: step.event,
                    left: if step.seeder { 0 } else { 1 },
                    numwant: step.numwant,
                    // Dictionary answers (with ids) on one port of the three.
                    peer_ids: step.port == 6882,
                };
                store.announce(&input, Timestamp(now), &mut rng, &mut out).unwrap();

                // The model's version of the update.
                let key = (step.torrent, peer_id, normal.ip());
                let was = model.get(&key).map(|&(_, seeder, _)| seeder);
                if step.event == AnnounceEvent::Stopped {
                    model.remove(&key);
                } else {
                    model.insert(key, (normal.port(), step.seeder, now + 600));
                    if step.event == AnnounceEvent::Completed && step.seeder && was != Some(true) {
                        *downloaded.entry(step.torrent).or_default() += 1;
                    }
                }

                // Counters equal the peers held, which equal the model's.
                let held = store.peers_of(&hash(step.torrent));
                let seeders = held.iter().filter(|p| p.2).count();
                prop_assert_eq!(out.stats.complete as usize, seeders);
                prop_assert_eq!(out.stats.incomplete as usize, held.len() - seeders);
                prop_assert_eq!(out.stats.downloaded, downloaded.get(&step.torrent).copied().unwrap_or(0));
                let mut expected: Vec<_> = model
                    .iter()
                    .filter(|(k, _)| k.0 == step.torrent)
                    .map(|(k, v)| (k.1, SocketAddr::new(k.2, v.0), v.1))
                    .collect();
                let mut actual = held.clone();
                expected.sort();
                actual.sort();
                prop_assert_eq!(&actual, &expected);
                let identities: HashSet<_> = held.iter().map(|p| (p.0, p.1.ip())).collect();
                prop_assert_eq!(identities.len(), held.len());

                // The answer.
                let answer: Vec<SocketAddr> = out
                    .peers_v4
                    .iter()
                    .map(|a| SocketAddr::V4(*a))
                    .chain(out.peers_v6.iter().map(|a| SocketAddr::V6(*a)))
                    .collect();
                if step.event == AnnounceEvent::Stopped {
                    prop_assert!(answer.is_empty());
                }
                // Ids, when asked for, are those of the peers answered, in the same order.
                if input.peer_ids {
                    prop_assert_eq!(out.peer_ids_v4.len(), out.peers_v4.len());
                    prop_assert_eq!(out.peer_ids_v6.len(), out.peers_v6.len());
                    let with_ids = out
                        .peers_v4
                        .iter()
                        .map(|a| SocketAddr::V4(*a))
                        .zip(&out.peer_ids_v4)
                        .chain(out.peers_v6.iter().map(|a| SocketAddr::V6(*a)).zip(&out.peer_ids_v6));
                    for (a, id) in with_ids {
                        prop_assert!(
                            model.iter().any(|(k, v)| k.0 == step.torrent
                                && k.1 == id.0
                                && SocketAddr::new(k.2, v.0) == a),
                            "{} answered with an id that is not its own", a
                        );
                    }
                } else {
                    prop_assert!(out.peer_ids_v4.is_empty() && out.peer_ids_v6.is_empty());
                }
                let want = step.numwant.unwrap_or(10).min(20) as usize;
                prop_assert!(answer.len() <= want);
                prop_assert!(!answer.contains(&normal));
                for a in &answer {
                    // Several peers may share an address (a client restarted with a new id, or
                    // hosts behind one NAT): each time an address is answered, a distinct live,
                    // eligible entry must account for it, so no entry is handed out twice.
                    let eligible = model
                        .iter()
                        .filter(|(k, v)| {
                            k.0 == step.torrent
                                && SocketAddr::new(k.2, v.0) == *a
                                && k.1 != peer_id
                                && v.2 > now
                        })
                        .count();
                    let answered = answer.iter().filter(|b| *b == a).count();
                    prop_assert!(eligible >= answered, "{} answered {} times, {} eligible", a, answered, eligible);
                }
            }
            // Store totals equal the sum over torrents.
            let stats = store.stats().unwrap();
            let total: usize = (0..2).map(|t| store.peers_of(&hash(t)).len()).sum();
            prop_assert_eq!(stats.peers, total);
            prop_assert_eq!(stats.peers, model.len());
            prop_assert_eq!(stats.seeders, model.values().filter(|v| v.1).count());
        }
    }
}
