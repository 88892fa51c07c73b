//! What every handler shares: configuration, registry, swarm store, the registered set,
//! metrics and the clock.
//!
//! The announce path must not touch SQLite, so the info-hashes the registry holds are copied
//! into memory at start ([`AppState::new`]) and kept in step two ways: the publish and
//! unpublish handlers update it at once, and [`AppState::refresh_registered`] (run every
//! `registry_refresh_secs` by the server) re-reads the whole set, which is how changes made
//! to the database by another process (the `publisher remove` command) reach a running
//! tracker. The set sits behind a `std` read-write lock: announces only read it (a read lock
//! is one atomic add on an uncontended line), writers come a few times a day or once a
//! refresh period.
//!
//! A refresh must not undo a handler's change that lands while it reads SQLite (a release
//! published after the read but registered before the swap would vanish until the next
//! refresh). Every write to the set bumps a generation counter under the write lock; a
//! refresh notes the generation before it reads the registry and replaces the set only if
//! the generation is unchanged when it holds the write lock, else it leaves the set alone
//! and the next period tries again. The diff (which swarms to drop) is computed under the
//! read lock, so the write lock is held only to compare a counter and swap a pointer.
//!
//! Sites ask for the same few releases over and over (every new site of a flash crowd asks
//! for the latest release of the same name), so releases read from SQLite for them are kept
//! in a [`ReleaseCache`]. It belongs to one generation: any change to the registered set
//! (publish, unpublish, every periodic refresh) makes it stale, so what it answers is never
//! older than what announces are checked against. An entry read while the generation moved
//! on is not stored. Manifest requests (update polls) cache the manifest alone; a lookup
//! also needs the torrent and caches both. The cache holds at most [`RELEASE_CACHE_BYTES`]
//! of manifests and torrents (it starts afresh when full), and a release larger than
//! [`RELEASE_CACHE_ENTRY_MAX`] is always read from SQLite.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use swarmcdn_proto::InfoHash;

use super::metrics::Metrics;
use crate::config::Config;
use crate::registry::{Registry, RegistryError, Release};
use crate::swarm::{Epoch, MemoryStore, PeerStore, StoreError};

/// The state behind the router; cheap to clone (one `Arc`).
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

struct Shared {
    config: Config,
    registry: Arc<Registry>,
    store: Arc<dyn PeerStore>,
    registered: RwLock<HashSet<InfoHash>>,
    /// Bumped (under the write lock) by every change to `registered`; see the module docs.
    generation: AtomicU64,
    /// `config.trusted_proxies`, each in canonical form (IPv4-mapped IPv6 as IPv4).
    trusted_proxies: Vec<IpAddr>,
    metrics: Metrics,
    epoch: Epoch,
    releases: RwLock<ReleaseCache>,
}

/// Which release a site asked for: a name's latest (`None`) or a version as spelled in the
/// request.
pub(crate) type ReleaseKey = (String, Option<String>);

/// The most bytes of manifests and torrents the release cache holds.
pub(crate) const RELEASE_CACHE_BYTES: usize = 64 * 1024 * 1024;
/// A release whose manifest and torrent together are larger is not cached.
pub(crate) const RELEASE_CACHE_ENTRY_MAX: usize = 4 * 1024 * 1024;

/// A release as sites fetch it: its registry row and, when a lookup asked for it, its
/// torrent's bytes.
#[derive(Debug)]
pub(crate) struct ServedRelease {
    pub(crate) release: Release,
    pub(crate) torrent: Option<bytes::Bytes>,
}

impl ServedRelease {
    /// What it costs the cache.
    fn size(&self) -> usize {
        self.release.manifest.len() + self.torrent.as_ref().map_or(0, bytes::Bytes::len)
    }
}

/// Releases read for sites in one generation of the registered set (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct ReleaseCache {
    generation: u64,
    releases: HashMap<ReleaseKey, Arc<ServedRelease>>,
    /// Sum of the entries' sizes.
    bytes: usize,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.config)
            .field("registry", &self.registry)
            .field("registered", &self.registered)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// State with the default in-memory swarm store, loading the registered info-hashes
    /// from `registry`.
    pub fn new(config: Config, registry: Arc<Registry>) -> Result<Self, RegistryError> {
        let store = Arc::new(MemoryStore::new(config.store_config()));
        Self::with_store(config, registry, store)
    }

    /// State with a swarm store of the caller's choice.
    pub fn with_store(
        config: Config,
        registry: Arc<Registry>,
        store: Arc<dyn PeerStore>,
    ) -> Result<Self, RegistryError> {
        let registered = registry.registered_info_hashes()?.into_iter().collect();
        let trusted_proxies = config
            .trusted_proxies
            .iter()
            .map(IpAddr::to_canonical)
            .collect();
        Ok(Self(Arc::new(Shared {
            config,
            registry,
            store,
            registered: RwLock::new(registered),
            generation: AtomicU64::new(0),
            trusted_proxies,
            metrics: Metrics::new(),
            epoch: Epoch::starting_now(),
            releases: RwLock::new(ReleaseCache::default()),
        })))
    }

    /// The configuration the service runs with.
    pub fn config(&self) -> &Config {
        &self.0.config
    }

    /// The registry of publishers, releases and torrents.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.0.registry
    }

    /// The swarm store.
    pub fn store(&self) -> &Arc<dyn PeerStore> {
        &self.0.store
    }

    /// The process's timeline for the swarm store.
    pub fn epoch(&self) -> &Epoch {
        &self.0.epoch
    }

    /// Whether announces for `info_hash` are accepted.
    pub fn is_registered(&self, info_hash: &InfoHash) -> bool {
        self.registered_read().contains(info_hash)
    }

    /// Number of registered torrents.
    pub fn registered_count(&self) -> usize {
        self.registered_read().len()
    }

    /// Starts accepting announces for `info_hash` (after the registry stored it).
    pub(crate) fn register(&self, info_hash: InfoHash) {
        let mut set = self.registered_write();
        set.insert(info_hash);
        self.0.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Stops accepting announces for `info_hash` (after the registry removed it).
    pub(crate) fn unregister(&self, info_hash: &InfoHash) {
        let mut set = self.registered_write();
        set.remove(info_hash);
        self.0.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Re-reads the registered set from the registry and, unless the set changed meanwhile
    /// (see the module docs), replaces the in-memory one with it and drops the swarms of the
    /// torrents no longer registered. Blocks on SQLite: call it off the async threads.
    ///
    /// On a registry error the set in memory is kept as it was.
    pub fn refresh_registered(&self) -> Result<Refresh, RefreshError> {
        let before = self.0.generation.load(Ordering::Acquire);
        let fresh: HashSet<InfoHash> = self
            .0
            .registry
            .registered_info_hashes()?
            .into_iter()
            .collect();
        let (added, removed) = {
            let current = self.registered_read();
            let added = fresh.difference(&current).count();
            let removed: Vec<InfoHash> = current.difference(&fresh).copied().collect();
            (added, removed)
        };
        let old = {
            let mut set = self.registered_write();
            if self.0.generation.load(Ordering::Acquire) != before {
                return Ok(Refresh::Raced);
            }
            self.0.generation.fetch_add(1, Ordering::AcqRel);
            std::mem::replace(&mut *set, fresh)
        };
        // The old set is freed here, outside the lock.
        drop(old);
        self.drop_swarms(&removed)?;
        Ok(Refresh::Replaced { added, removed })
    }

    /// Drops the swarms of those of `info_hashes` that are not registered (again: an
    /// announce that passed its check just before a refresh removed its torrent may have
    /// recreated the swarm after the refresh dropped it). Tries every one; returns the first
    /// error.
    pub fn drop_swarms(&self, info_hashes: &[InfoHash]) -> Result<(), StoreError> {
        let mut first_error = None;
        for info_hash in info_hashes {
            if self.is_registered(info_hash) {
                continue;
            }
            if let Err(error) = self.0.store.remove_torrent(info_hash) {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The generation of the registered set: changes with every write to it.
    pub(crate) fn generation(&self) -> u64 {
        self.0.generation.load(Ordering::Acquire)
    }

    /// The release cached for `key` in the current generation, if any.
    pub(crate) fn cached_release(&self, key: &ReleaseKey) -> Option<Arc<ServedRelease>> {
        let cache = self
            .0
            .releases
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.generation != self.generation() {
            return None;
        }
        cache.releases.get(key).cloned()
    }

    /// Caches `release`, read from the registry while the generation was `generation`;
    /// nothing is stored if the registered set has changed since (the read may predate the
    /// change). A cache of an older generation is emptied first.
    pub(crate) fn cache_release(
        &self,
        key: ReleaseKey,
        release: Arc<ServedRelease>,
        generation: u64,
    ) {
        let mut cache = self
            .0
            .releases
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.generation() != generation {
            return;
        }
        let size = release.size();
        if size > RELEASE_CACHE_ENTRY_MAX {
            return;
        }
        if cache.generation != generation || cache.bytes + size > RELEASE_CACHE_BYTES {
            cache.releases.clear();
            cache.bytes = 0;
            cache.generation = generation;
        }
        if let Some(old) = cache.releases.insert(key, release) {
            cache.bytes -= old.size();
        }
        cache.bytes += size;
    }

    pub(crate) fn trusted_proxies(&self) -> &[IpAddr] {
        &self.0.trusted_proxies
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    // A panic while the set was locked cannot leave it half-updated (insert and remove are
    // single calls), so a poisoned lock is used as it is.
    fn registered_read(&self) -> RwLockReadGuard<'_, HashSet<InfoHash>> {
        self.0
            .registered
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn registered_write(&self) -> RwLockWriteGuard<'_, HashSet<InfoHash>> {
        self.0
            .registered
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What [`AppState::refresh_registered`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refresh {
    /// The set was replaced by the registry's.
    Replaced {
        /// How many info-hashes joined the set.
        added: usize,
        /// The info-hashes that left the set (their swarms were dropped).
        removed: Vec<InfoHash>,
    },
    /// A publish or unpublish changed the set while the registry was read, so the read may
    /// be older than the set; nothing was changed, and the next refresh tries again.
    Raced,
}

/// Why [`AppState::refresh_registered`] failed; the set in memory is unchanged by a
/// registry failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RefreshError {
    /// The registry could not be read.
    #[error("cannot read the registered torrents: {0}")]
    Registry(#[from] RegistryError),
    /// The set was replaced, but the swarm store failed to drop a removed torrent's swarm
    /// (its peers then expire on their own).
    #[error("cannot drop the swarm of an unregistered torrent: {0}")]
    Store(#[from] StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(version: &str, torrent_len: usize) -> Arc<ServedRelease> {
        Arc::new(ServedRelease {
            release: Release {
                publisher: "acme".into(),
                name: "w".into(),
                version: version.parse().unwrap(),
                info_hash: InfoHash([1; 20]),
                manifest: b"{}".to_vec(),
                created: 0,
            },
            torrent: Some(vec![0; torrent_len].into()),
        })
    }

    #[test]
    fn the_release_cache_holds_one_generation_and_a_bounded_size() {
        let registry = Arc::new(Registry::open_in_memory().unwrap());
        let state = AppState::new(Config::default(), registry).unwrap();
        let key = |v: &str| ("w".to_owned(), Some(v.to_owned()));

        let before = state.generation();
        state.cache_release(key("1.0.0"), served("1.0.0", 10), before);
        assert!(state.cached_release(&key("1.0.0")).is_some());

        // Read before a change, stored after it: not stored.
        state.register(InfoHash([9; 20]));
        assert!(
            state.cached_release(&key("1.0.0")).is_none(),
            "a change to the registered set empties the cache"
        );
        state.cache_release(key("2.0.0"), served("2.0.0", 10), before);
        assert!(state.cached_release(&key("2.0.0")).is_none());
        let now = state.generation();
        state.cache_release(key("2.0.0"), served("2.0.0", 10), now);
        assert!(state.cached_release(&key("2.0.0")).is_some());
        state.unregister(&InfoHash([9; 20]));
        assert!(state.cached_release(&key("2.0.0")).is_none());

        // Size: too large an entry is never kept; a full cache starts afresh.
        let now = state.generation();
        state.cache_release(key("big"), served("3.0.0", RELEASE_CACHE_ENTRY_MAX), now);
        assert!(state.cached_release(&key("big")).is_none());
        let entry = RELEASE_CACHE_ENTRY_MAX - 2;
        let fit = RELEASE_CACHE_BYTES / RELEASE_CACHE_ENTRY_MAX;
        for n in 0..=fit {
            state.cache_release(key(&format!("{n}.0.0")), served("1.0.0", entry), now);
        }
        assert!(
            state.cached_release(&key("0.0.0")).is_none(),
            "emptied when full"
        );
        assert!(state.cached_release(&key(&format!("{fit}.0.0"))).is_some());
        let cache = state.0.releases.read().unwrap();
        assert!(cache.bytes <= RELEASE_CACHE_BYTES);
        assert_eq!(
            cache.bytes,
            cache.releases.values().map(|r| r.size()).sum::<usize>()
        );
    }

    #[test]
    fn the_registered_set_is_loaded_and_kept() {
        let registry = Arc::new(Registry::open_in_memory().unwrap());
        registry.add_publisher("acme", &[0xAA; 32]).unwrap();
        let acme = registry.publisher("acme").unwrap().unwrap();
        registry
            .insert_release(
                &acme,
                &"w".parse().unwrap(),
                "1.0.0",
                &InfoHash([1; 20]),
                b"m",
                b"t",
            )
            .unwrap();
        let config = Config {
            trusted_proxies: vec!["::ffff:10.0.0.1".parse().unwrap()],
            ..Config::default()
        };
        let state = AppState::new(config, registry).unwrap();
        assert!(state.is_registered(&InfoHash([1; 20])));
        assert!(!state.is_registered(&InfoHash([2; 20])));
        state.register(InfoHash([2; 20]));
        state.unregister(&InfoHash([1; 20]));
        assert!(state.is_registered(&InfoHash([2; 20])));
        assert_eq!(state.registered_count(), 1);
        assert_eq!(
            state.trusted_proxies(),
            &["10.0.0.1".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn a_refresh_follows_the_registry_and_drops_removed_swarms() {
        use crate::swarm::{AnnounceEvent, AnnounceInput, AnnounceOutput};
        use swarmcdn_proto::PeerId;

        let registry = Arc::new(Registry::open_in_memory().unwrap());
        registry.add_publisher("acme", &[0xAA; 32]).unwrap();
        let acme = registry.publisher("acme").unwrap().unwrap();
        let insert = |version: &str, n: u8| {
            registry
                .insert_release(
                    &acme,
                    &"w".parse().unwrap(),
                    version,
                    &InfoHash([n; 20]),
                    b"m",
                    b"t",
                )
                .unwrap();
        };
        insert("1.0.0", 1);
        let state = AppState::new(Config::default(), registry.clone()).unwrap();
        let input = AnnounceInput {
            info_hash: InfoHash([1; 20]),
            peer_id: PeerId([1; 20]),
            addr: "192.0.2.1:6881".parse().unwrap(),
            event: AnnounceEvent::Started,
            left: 0,
            numwant: None,
            peer_ids: false,
        };
        let mut rng = rand::rng();
        let mut out = AnnounceOutput::default();
        state
            .store()
            .announce(&input, state.epoch().now(), &mut rng, &mut out)
            .unwrap();
        assert_eq!(state.store().stats().unwrap().torrents, 1);

        // Nothing changed: the set is replaced by an equal one.
        assert_eq!(
            state.refresh_registered().unwrap(),
            Refresh::Replaced {
                added: 0,
                removed: vec![]
            }
        );
        // Changes made behind the state's back are picked up.
        insert("1.1.0", 2);
        registry.remove_release("w", "1.0.0").unwrap();
        assert!(!state.is_registered(&InfoHash([2; 20])));
        assert_eq!(
            state.refresh_registered().unwrap(),
            Refresh::Replaced {
                added: 1,
                removed: vec![InfoHash([1; 20])]
            }
        );
        assert!(state.is_registered(&InfoHash([2; 20])));
        assert!(!state.is_registered(&InfoHash([1; 20])));
        assert_eq!(state.registered_count(), 1);
        assert_eq!(state.store().stats().unwrap().torrents, 0);

        // A swarm recreated after the refresh is dropped again, a registered one is kept.
        state
            .store()
            .announce(&input, state.epoch().now(), &mut rng, &mut out)
            .unwrap();
        let kept = AnnounceInput {
            info_hash: InfoHash([2; 20]),
            ..input
        };
        state
            .store()
            .announce(&kept, state.epoch().now(), &mut rng, &mut out)
            .unwrap();
        state
            .drop_swarms(&[InfoHash([1; 20]), InfoHash([2; 20])])
            .unwrap();
        assert_eq!(state.store().stats().unwrap().torrents, 1);
        assert_eq!(
            state.store().scrape(&[InfoHash([2; 20])]).unwrap()[0].complete,
            1
        );
    }
}
