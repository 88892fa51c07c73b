//! Several clients on one cache folder (several site processes on one machine, or a new
//! one started next to a running one).
//!
//! Why it works this way:
//! - Release content on disk is written, renamed and evicted by the [`Cache`](crate::storage::Cache)
//!   of one process, which assumes nobody else touches it. So the first client takes an
//!   exclusive lock on `<cache>/lock` and *owns* the content; a client that finds the lock
//!   held does not open the content cache at all and keeps what it downloads in memory
//!   (within [`ClientConfig::memory_budget`](crate::ClientConfig::memory_budget)). It never
//!   reads a file the owner may be rewriting or evicting, and never evicts the owner's.
//! - Verified manifests and their torrents (`<cache>/manifests`) are safe to share: each is
//!   written to a temporary file and renamed into place, and every reader checks it again
//!   (signature, info-hash). So every client on the folder reads and writes them, and a
//!   client started while no tracker answers still knows which release to serve.
//! - The content then comes from peers: each client writes its peer address to
//!   `<cache>/peers/<peer id>` (removed at shutdown) and dials the addresses it finds there
//!   at start-up like configured bootstrap peers. So a client started during a tracker and
//!   web-seed outage gets the release from the clients already on the machine. An entry
//!   left by a crashed client only costs a refused connection; at most
//!   [`MAX_LOCAL_PEERS`] entries (the most recent) are read.
//! - The lock is advisory (`flock`-style), held for the client's life and released by the
//!   operating system if the process dies, so a crash never leaves the folder locked.

use std::fs::{self, File};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use swarmcdn_proto::PeerId;

use super::BuildError;
use crate::config::ClientConfig;
use crate::storage::StorageError;

/// The lock file whose holder owns the release content of a cache folder.
///
/// Several clients may use one cache folder. The first to start holds this lock for its
/// life and keeps release content in the folder; the others keep theirs in memory (within
/// [`ClientConfig::memory_budget`](crate::ClientConfig::memory_budget)) and never touch the
/// owner's files. All of them share the verified manifests (`manifests/`) and leave their
/// peer address in [`PEERS_DIR`], where each client starting later finds them and dials them
/// like bootstrap peers: a site started while no tracker or web seed answers still gets a
/// release the others have.
pub const LOCK_FILE: &str = "lock";
/// The folder inside the cache folder where clients leave their peer addresses.
pub const PEERS_DIR: &str = "peers";
/// The most peer addresses read from [`PEERS_DIR`] (the most recently written).
pub const MAX_LOCAL_PEERS: usize = 32;
/// The longest peer-address file read.
const MAX_PEER_FILE: u64 = 128;

/// Tries to own the content of `dir` (creating it): the held lock, or `None` when another
/// live client holds it.
pub(crate) fn try_own(dir: &Path) -> io::Result<Option<File>> {
    fs::create_dir_all(dir)?;
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(error)) => Err(error),
    }
}

/// Joins the configured cache folder, if any: takes the lock when no other client holds it
/// (the lock is returned; `None` without a folder or when another client owns it) and adds
/// the peers found in the folder to `config.bootstrap_peers`.
pub(crate) async fn join(
    config: &mut ClientConfig,
    listen: SocketAddr,
) -> Result<Option<File>, BuildError> {
    let Some(dir) = config.cache_dir.clone() else {
        return Ok(None);
    };
    let failed = |dir: &Path, e| BuildError::Cache(StorageError::io(dir, e));
    let folder = dir.clone();
    let (owned, peers) = tokio::task::spawn_blocking(move || {
        let owned = try_own(&folder).map_err(|e| failed(&folder, e))?;
        Ok::<_, BuildError>((owned, local_peers(&folder)))
    })
    .await
    .map_err(|e| failed(&dir, io::Error::other(e)))??;
    if owned.is_none() {
        tracing::warn!(dir = %dir.display(), "another client owns this cache folder: release content stays in memory, manifests are shared");
    }
    for addr in peers {
        if addr != listen && !config.bootstrap_peers.contains(&addr) {
            config.bootstrap_peers.push(addr);
        }
    }
    Ok(owned)
}

/// The address other clients on this machine reach `listen` at (a wildcard address becomes
/// loopback).
fn reachable(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// The peer addresses other clients left in `dir` (at most [`MAX_LOCAL_PEERS`], newest
/// first); unreadable or malformed entries are skipped.
pub(crate) fn local_peers(dir: &Path) -> Vec<SocketAddr> {
    let Ok(listing) = fs::read_dir(dir.join(PEERS_DIR)) else {
        return Vec::new();
    };
    let mut entries: Vec<(SystemTime, PathBuf)> = listing
        .filter_map(Result::ok)
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            let fresh = meta.is_file() && meta.len() <= MAX_PEER_FILE;
            fresh.then(|| (meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), e.path()))
        })
        .collect();
    entries.sort_unstable_by_key(|e| std::cmp::Reverse(e.0));
    let mut peers = Vec::new();
    for (_, path) in entries.into_iter().take(MAX_LOCAL_PEERS) {
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        match text.trim().parse() {
            Ok(addr) if !peers.contains(&addr) => peers.push(addr),
            Ok(_) => {}
            Err(_) => tracing::debug!(path = %path.display(), "ignoring a malformed peer entry"),
        }
    }
    peers
}

/// A client's presence in a shared cache folder: its peer entry (removed on drop) and, for
/// the owner, the lock (released on drop).
#[derive(Debug)]
pub(crate) struct Presence {
    entry: Option<PathBuf>,
    _lock: Option<File>,
}

impl Presence {
    /// Leaves this client's peer address in `dir`, keeping `lock` (if it owns the folder)
    /// until dropped. A failure to write the entry is logged: the client works without it.
    pub(crate) fn announce(
        dir: &Path,
        peer_id: PeerId,
        listen: SocketAddr,
        lock: Option<File>,
    ) -> Self {
        let folder = dir.join(PEERS_DIR);
        let path = folder.join(peer_id.to_hex());
        let written = fs::create_dir_all(&folder).and_then(|()| {
            super::manifests::write_atomically(&path, reachable(listen).to_string().as_bytes())
        });
        let entry = match written {
            Ok(()) => Some(path),
            Err(error) => {
                tracing::warn!(%error, path = %path.display(), "cannot leave our address for clients sharing the cache folder");
                None
            }
        };
        Presence { entry, _lock: lock }
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        if let Some(path) = self.entry.take() {
            let _ = fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_owner_at_a_time_and_the_lock_goes_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = try_own(dir.path()).unwrap();
        assert!(first.is_some());
        assert!(try_own(dir.path()).unwrap().is_none());
        drop(first);
        assert!(try_own(dir.path()).unwrap().is_some());
    }

    #[test]
    fn peers_are_found_while_present_and_bad_entries_skipped() {
        let dir = tempfile::tempdir().unwrap();
        assert!(local_peers(dir.path()).is_empty());
        let listen: SocketAddr = "0.0.0.0:4242".parse().unwrap();
        let presence = Presence::announce(dir.path(), PeerId::new([1; 20]), listen, None);
        let peers = dir.path().join(PEERS_DIR);
        fs::write(peers.join("junk"), b"not an address").unwrap();
        fs::write(peers.join("huge"), vec![b'1'; 4096]).unwrap();
        assert_eq!(
            local_peers(dir.path()),
            vec!["127.0.0.1:4242".parse::<SocketAddr>().unwrap()]
        );
        drop(presence);
        assert!(local_peers(dir.path()).is_empty());
    }
}
