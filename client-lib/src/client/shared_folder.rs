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
//!   web-seed outage gets the release from the clients already on the machine. At most
//!   [`MAX_LOCAL_PEERS`] entries are used.
//! - Locks are advisory (`flock`-style), held for the client's life and released by the
//!   operating system if the process dies, so a crash never leaves the folder locked. Each
//!   peer entry is locked the same way by its writer (from before it is visible under its
//!   name), so an entry that can be locked belongs to a dead client: it is removed, never
//!   dialled (its port may belong to some other program by now).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

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
/// The extension of a peer entry being written.
const TEMP_EXTENSION: &str = "tmp";

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

/// The peer addresses live clients left in `dir` (at most [`MAX_LOCAL_PEERS`]). Entries of
/// dead clients are removed; unreadable, oversized or malformed ones are skipped.
pub(crate) fn local_peers(dir: &Path) -> Vec<SocketAddr> {
    let Ok(listing) = fs::read_dir(dir.join(PEERS_DIR)) else {
        return Vec::new();
    };
    let mut peers = Vec::new();
    for entry in listing.filter_map(Result::ok) {
        if peers.len() == MAX_LOCAL_PEERS {
            break;
        }
        let path = entry.path();
        let Ok(mut file) = File::open(&path) else {
            continue;
        };
        match file.try_lock() {
            Ok(()) => {
                // Nobody holds it: its client is gone (or it is a write that crashed).
                tracing::debug!(path = %path.display(), "removing the entry of a client that is gone");
                let _ = fs::remove_file(&path);
                continue;
            }
            Err(fs::TryLockError::WouldBlock) => {}
            Err(fs::TryLockError::Error(_)) => continue,
        }
        if path.extension().is_some() {
            continue; // being written
        }
        let mut text = String::new();
        if (&mut file)
            .take(MAX_PEER_FILE)
            .read_to_string(&mut text)
            .is_err()
        {
            continue;
        }
        match text.trim().parse() {
            Ok(addr) if !peers.contains(&addr) => peers.push(addr),
            Ok(_) => {}
            Err(_) => tracing::debug!(path = %path.display(), "ignoring a malformed peer entry"),
        }
    }
    peers
}

/// Writes `address` to `path` through a temporary file that is locked before anything is
/// written and renamed into place; the returned file holds the lock.
fn write_locked_entry(path: &Path, address: SocketAddr) -> io::Result<File> {
    let temp = path.with_extension(TEMP_EXTENSION);
    let mut file = File::create(&temp)?;
    let written = file
        .try_lock()
        .map_err(io::Error::other)
        .and_then(|()| file.write_all(address.to_string().as_bytes()))
        .and_then(|()| fs::rename(&temp, path));
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written.map(|()| file)
}

/// A client's presence in a shared cache folder: its peer entry (removed on drop) and, for
/// the owner, the lock (released on drop).
#[derive(Debug)]
pub(crate) struct Presence {
    /// The entry and its open, locked file.
    entry: Option<(PathBuf, File)>,
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
        let written =
            fs::create_dir_all(&folder).and_then(|()| write_locked_entry(&path, reachable(listen)));
        let entry = match written {
            Ok(file) => Some((path, file)),
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
        // Removed first, unlocked after (when the file closes).
        if let Some((path, _file)) = self.entry.take() {
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
        // Live (locked) but malformed or oversized entries are skipped.
        let junk = write_locked_entry(&peers.join("junk"), listen).unwrap();
        fs::write(peers.join("junk"), b"not an address").unwrap();
        let huge = write_locked_entry(&peers.join("huge"), listen).unwrap();
        fs::write(peers.join("huge"), vec![b'1'; 4096]).unwrap();
        // The entry of a client that died (nobody holds its lock) is removed, not dialled.
        fs::write(peers.join("dead"), b"127.0.0.1:9").unwrap();
        assert_eq!(
            local_peers(dir.path()),
            vec!["127.0.0.1:4242".parse::<SocketAddr>().unwrap()]
        );
        assert!(!peers.join("dead").exists());
        assert!(peers.join("junk").exists());
        drop((junk, huge));
        drop(presence);
        assert!(local_peers(dir.path()).is_empty());
        assert_eq!(
            fs::read_dir(&peers).unwrap().count(),
            0,
            "every stale entry removed"
        );
    }
}
