//! Which torrents the listener serves: a map from info-hash to the session that takes its
//! incoming peers.
//!
//! A session registers itself when it starts and holds the returned [`Registration`]; when
//! the session ends, dropping the registration takes the torrent out of the map, so the
//! listener cannot hand a connection to a session that is gone, and no separate
//! "unregister" call can be forgotten. The lock is held only to copy a [`Route`] out.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex, MutexGuard};

use swarmcdn_proto::id::InfoHash;
use swarmcdn_proto::peer::Handshake;
use tokio::sync::mpsc;

use super::connection::PeerConnection;
use super::listener::Route;

/// The torrents served by a listener. Clones share the same map.
#[derive(Debug, Clone, Default)]
pub struct PeerRegistry {
    routes: Arc<Mutex<HashMap<InfoHash, Route>>>,
}

/// A torrent is already registered (one session per torrent).
#[derive(Debug, thiserror::Error)]
#[error("torrent {0} is already registered with the peer listener")]
pub struct AlreadyRegistered(pub InfoHash);

/// A session's entry in a [`PeerRegistry`]; dropping it removes the entry.
#[derive(Debug)]
#[must_use = "the torrent is unregistered when the Registration is dropped"]
pub struct Registration {
    routes: Arc<Mutex<HashMap<InfoHash, Route>>>,
    info_hash: InfoHash,
}

impl PeerRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<InfoHash, Route>> {
        lock(&self.routes)
    }

    /// Serves `ours.info_hash` from now on: incoming peers for it are answered with `ours`
    /// and sent to `incoming`.
    pub fn register(
        &self,
        ours: Handshake,
        incoming: mpsc::Sender<PeerConnection>,
    ) -> Result<Registration, AlreadyRegistered> {
        let info_hash = ours.info_hash;
        match self.lock().entry(info_hash) {
            Entry::Occupied(_) => return Err(AlreadyRegistered(info_hash)),
            Entry::Vacant(slot) => {
                slot.insert(Route { ours, incoming });
            }
        }
        Ok(Registration {
            routes: Arc::clone(&self.routes),
            info_hash,
        })
    }

    /// The route for `info_hash`, if a session serves it. This is the listener's router:
    /// `listener.run(move |ih| registry.route(ih), shutdown)`.
    pub fn route(&self, info_hash: &InfoHash) -> Option<Route> {
        self.lock().get(info_hash).cloned()
    }

    /// How many torrents are registered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no torrent is registered.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

impl Registration {
    /// The registered torrent.
    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.routes).remove(&self.info_hash);
    }
}

/// Locks the map, recovering it if a holder panicked (the map is always consistent: every
/// critical section is a single insert, remove or clone).
fn lock(routes: &Mutex<HashMap<InfoHash, Route>>) -> MutexGuard<'_, HashMap<InfoHash, Route>> {
    routes
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmcdn_proto::id::PeerId;
    use swarmcdn_proto::peer::Reserved;

    fn ours(byte: u8) -> Handshake {
        Handshake {
            reserved: Reserved::NONE,
            info_hash: InfoHash([byte; 20]),
            peer_id: PeerId([0x55; 20]),
        }
    }

    #[test]
    fn registration_routes_until_dropped() {
        let registry = PeerRegistry::new();
        let (tx, _rx) = mpsc::channel(1);
        let registration = registry.register(ours(1), tx.clone()).unwrap();
        assert_eq!(registration.info_hash(), InfoHash([1; 20]));
        let route = registry.route(&InfoHash([1; 20])).expect("registered");
        assert_eq!(route.ours, ours(1));
        assert!(registry.route(&InfoHash([2; 20])).is_none());
        assert_eq!(registry.len(), 1);

        // One session per torrent.
        assert!(matches!(
            registry.register(ours(1), tx),
            Err(AlreadyRegistered(ih)) if ih == InfoHash([1; 20])
        ));

        drop(registration);
        assert!(registry.route(&InfoHash([1; 20])).is_none());
        assert!(registry.is_empty());
    }

    #[test]
    fn clones_share_the_map() {
        let registry = PeerRegistry::new();
        let other = registry.clone();
        let (tx, _rx) = mpsc::channel(1);
        let _registration = registry.register(ours(3), tx).unwrap();
        assert!(other.route(&InfoHash([3; 20])).is_some());
    }
}
