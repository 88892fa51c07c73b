//! What every handler shares: configuration, registry, swarm store, the registered set,
//! metrics and the clock.
//!
//! The announce path must not touch SQLite, so the info-hashes the registry holds are copied
//! into memory at start ([`AppState::new`]) and kept in step by the publish and unpublish
//! handlers, the only writers. The set sits behind a `std` read-write lock: announces only
//! read it (a read lock is one atomic add on an uncontended line), publishing writes a few
//! times a day.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use swarmcdn_proto::InfoHash;

use super::metrics::Metrics;
use crate::config::Config;
use crate::registry::{Registry, RegistryError};
use crate::swarm::{Epoch, MemoryStore, PeerStore};

/// The state behind the router; cheap to clone (one `Arc`).
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

struct Shared {
    config: Config,
    registry: Arc<Registry>,
    store: Arc<dyn PeerStore>,
    registered: RwLock<HashSet<InfoHash>>,
    /// `config.trusted_proxies`, each in canonical form (IPv4-mapped IPv6 as IPv4).
    trusted_proxies: Vec<IpAddr>,
    metrics: Metrics,
    epoch: Epoch,
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
            trusted_proxies,
            metrics: Metrics::new(),
            epoch: Epoch::starting_now(),
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
        self.registered_write().insert(info_hash);
    }

    /// Stops accepting announces for `info_hash` (after the registry removed it).
    pub(crate) fn unregister(&self, info_hash: &InfoHash) {
        self.registered_write().remove(info_hash);
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
