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
//!   like configured bootstrap peers. The folder is read again whenever a release's
//!   session starts (and before asking peers for a manifest or a torrent), never copied
//!   into the configuration: a client that left is not dialled afterwards. So a client started during a tracker and
//!   web-seed outage gets the release from the clients already on the machine. At most
//!   [`MAX_LOCAL_PEERS`] entries are used.
//! - Locks are advisory (`flock`-style), held for the client's life and released by the
//!   operating system if the process dies, so a crash never leaves the folder locked. Each
//!   peer entry is locked the same way by its writer (from before it is visible under its
//!   name), so an entry that can be locked belongs to a dead client: it is removed, never
//!   dialled (its port may belong to some other program by now).
//! - Anyone who can write the cache folder can put anything in `peers/`, so readers look
//!   only at regular files named as a peer id, never follow links or block on what they
//!   open, and bound the scan; an entry is written under a temporary name readers skip, so
//!   a reader never takes an entry still being written for a dead client's.

use std::ffi::OsStr;
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
/// The most peer addresses read from [`PEERS_DIR`] (the first found, in the order the
/// folder lists its entries).
pub const MAX_LOCAL_PEERS: usize = 32;
/// The most entries of [`PEERS_DIR`] looked at, whatever they are: a folder filled with
/// junk costs a bounded scan.
const MAX_SCANNED: usize = 4 * MAX_LOCAL_PEERS;
/// The longest peer-address file read.
const MAX_PEER_FILE: u64 = 128;
/// The name prefix of a peer entry being written: not a peer id, so readers skip it (a
/// reader that locked it could otherwise take it for a dead client's and remove it before
/// its writer locks it). A writer that crashes leaves it behind; it is never dialled.
const TEMP_PREFIX: &str = ".tmp-";

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
/// (the lock is returned; `None` without a folder or when another client owns it). The
/// peers on the folder are read when needed ([`local_peers`]), never kept in the
/// configuration: a client that leaves must not be dialled for the rest of our life.
pub(crate) async fn join(config: &ClientConfig) -> Result<Option<File>, BuildError> {
    let Some(dir) = config.cache_dir.clone() else {
        return Ok(None);
    };
    let failed = |dir: &Path, e| BuildError::Cache(StorageError::io(dir, e));
    let folder = dir.clone();
    let owned =
        tokio::task::spawn_blocking(move || try_own(&folder).map_err(|e| failed(&folder, e)))
            .await
            .map_err(|e| failed(&dir, io::Error::other(e)))??;
    if owned.is_none() {
        tracing::warn!(dir = %dir.display(), "another client owns this cache folder: release content stays in memory, manifests are shared");
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

/// The peer addresses live clients left in `dir` (at most [`MAX_LOCAL_PEERS`], in the
/// order the folder lists them). Entries of dead clients are removed; unreadable,
/// oversized or malformed ones are skipped.
///
/// The folder may be written by anyone with access to the cache folder, so nothing in it
/// is trusted: a `peers` folder that is a symbolic link is ignored; only regular files
/// named as a peer id (40 lowercase hex digits) are looked at, so a temporary file being
/// written ([`TEMP_PREFIX`]) or anything else is never locked, read or removed; entries are
/// opened without following links and without blocking (a FIFO swapped in after the
/// listing fails the regular-file check on the open file); at most [`MAX_SCANNED`] entries
/// are looked at and at most [`MAX_PEER_FILE`] bytes are read from one.
pub(crate) fn local_peers(dir: &Path, own: PeerId) -> Vec<SocketAddr> {
    let own = own.to_hex();
    let folder = dir.join(PEERS_DIR);
    if !fs::symlink_metadata(&folder).is_ok_and(|meta| meta.is_dir()) {
        return Vec::new();
    }
    let Ok(listing) = fs::read_dir(&folder) else {
        return Vec::new();
    };
    let mut peers = Vec::new();
    for entry in listing.filter_map(Result::ok).take(MAX_SCANNED) {
        if peers.len() == MAX_LOCAL_PEERS {
            break;
        }
        let name = entry.file_name();
        if !is_entry_name(&name) || name == own.as_str() {
            continue;
        }
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let path = entry.path();
        let Ok(mut file) = open_entry(&path) else {
            continue;
        };
        match file.try_lock() {
            Ok(()) => {
                // Nobody holds it: its client is gone.
                tracing::debug!(path = %path.display(), "removing the entry of a client that is gone");
                let _ = fs::remove_file(&path);
                continue;
            }
            Err(fs::TryLockError::WouldBlock) => {}
            Err(fs::TryLockError::Error(_)) => continue,
        }
        let mut text = Vec::new();
        let read = (&mut file).take(MAX_PEER_FILE + 1).read_to_end(&mut text);
        if read.is_err() || text.len() as u64 > MAX_PEER_FILE {
            tracing::debug!(path = %path.display(), "ignoring an unreadable or oversized peer entry");
            continue;
        }
        match std::str::from_utf8(&text).map(|t| t.trim().parse::<SocketAddr>()) {
            Ok(Ok(addr)) if !peers.contains(&addr) => peers.push(addr),
            Ok(Ok(_)) => {}
            _ => tracing::debug!(path = %path.display(), "ignoring a malformed peer entry"),
        }
    }
    peers
}

/// Whether `name` is a peer entry's: a peer id in lowercase hex.
fn is_entry_name(name: &OsStr) -> bool {
    name.to_str().is_some_and(|name| {
        name.len() == 40 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// Opens a peer entry for reading without following a symbolic link or blocking (on a
/// FIFO, say); the open file must be a regular file.
fn open_entry(path: &Path) -> io::Result<File> {
    #[cfg(unix)]
    let file = {
        use rustix::fs::{Mode, OFlags};
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        File::from(rustix::fs::open(path, flags, Mode::empty())?)
    };
    // Elsewhere the listing's file type is checked before opening (a small window).
    #[cfg(not(unix))]
    let file = File::open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    Ok(file)
}

/// Writes `address` to `folder/<name>` through a temporary file that readers never look
/// at ([`TEMP_PREFIX`]), locked before anything is written and renamed into place; the
/// returned file holds the lock.
fn write_locked_entry(folder: &Path, name: &str, address: SocketAddr) -> io::Result<File> {
    let temp = folder.join(format!("{TEMP_PREFIX}{name}"));
    let mut file = File::create(&temp)?;
    let written = file
        .try_lock()
        .map_err(io::Error::other)
        .and_then(|()| file.write_all(address.to_string().as_bytes()))
        .and_then(|()| fs::rename(&temp, folder.join(name)));
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
        let name = peer_id.to_hex();
        let path = folder.join(&name);
        let written = fs::create_dir_all(&folder)
            .and_then(|()| {
                // Never write through a `peers` link to somewhere else.
                if fs::symlink_metadata(&folder)?.is_dir() {
                    Ok(())
                } else {
                    Err(io::Error::other("the peers folder is not a directory"))
                }
            })
            .and_then(|()| write_locked_entry(&folder, &name, reachable(listen)));
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
    use std::sync::mpsc;
    use std::time::Duration;

    /// The peer id of the client reading (none of the entries in these tests).
    fn own() -> PeerId {
        PeerId::new([0xee; 20])
    }

    /// A peer-entry name.
    fn id(n: usize) -> String {
        format!("{n:040x}")
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    /// `work` on a thread, failing (instead of hanging) if it blocks.
    fn within<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(work());
        });
        rx.recv_timeout(Duration::from_secs(30))
            .expect("blocked on an entry")
    }

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
        assert!(local_peers(dir.path(), own()).is_empty());
        let listen = addr("0.0.0.0:4242");
        let presence = Presence::announce(dir.path(), PeerId::new([1; 20]), listen, None);
        let peers = dir.path().join(PEERS_DIR);
        // Live (locked) but malformed entries are skipped.
        let junk = write_locked_entry(&peers, &id(2), listen).unwrap();
        fs::write(peers.join(id(2)), b"not an address").unwrap();
        // The entry of a client that died (nobody holds its lock) is removed, not dialled.
        fs::write(peers.join(id(3)), b"127.0.0.1:9").unwrap();
        assert_eq!(local_peers(dir.path(), own()), vec![addr("127.0.0.1:4242")]);
        assert!(!peers.join(id(3)).exists());
        assert!(peers.join(id(2)).exists());
        // A client never dials itself.
        assert!(local_peers(dir.path(), PeerId::new([1; 20])).is_empty());
        drop(junk);
        drop(presence);
        assert!(local_peers(dir.path(), own()).is_empty());
        assert_eq!(
            fs::read_dir(&peers).unwrap().count(),
            0,
            "every stale entry removed"
        );
    }

    #[test]
    fn entries_being_written_and_foreign_files_are_never_locked_or_removed() {
        let dir = tempfile::tempdir().unwrap();
        let peers = dir.path().join(PEERS_DIR);
        fs::create_dir_all(&peers).unwrap();
        // A writer between creating its temporary file and locking it: nobody holds the
        // lock yet, and a reader must not take it for a dead client's.
        let temp = peers.join(format!("{TEMP_PREFIX}{}", id(1)));
        fs::write(&temp, b"").unwrap();
        fs::write(peers.join("notes.txt"), b"127.0.0.1:9").unwrap();
        fs::write(peers.join(id(0xabc).to_uppercase()), b"127.0.0.1:9").unwrap();
        assert!(local_peers(dir.path(), own()).is_empty());
        assert!(temp.exists());
        assert!(peers.join("notes.txt").exists());
        assert!(peers.join(id(0xabc).to_uppercase()).exists());
    }

    #[cfg(unix)]
    #[test]
    fn fifos_and_symbolic_links_are_neither_followed_nor_removed() {
        use rustix::fs::{CWD, Mode};
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let peers = dir.path().join(PEERS_DIR);
        fs::create_dir_all(&peers).unwrap();
        // A FIFO named as an entry: opening it must not wait for a writer.
        let fifo = peers.join(id(1));
        rustix::fs::mkfifoat(CWD, &fifo, Mode::RUSR | Mode::WUSR).unwrap();
        let opened = within({
            let fifo = fifo.clone();
            move || open_entry(&fifo).is_ok()
        });
        assert!(!opened, "a FIFO is not an entry");
        // A link named as an entry, to a live client's entry elsewhere.
        let elsewhere = tempfile::tempdir().unwrap();
        let held = write_locked_entry(elsewhere.path(), &id(9), addr("127.0.0.1:7")).unwrap();
        symlink(elsewhere.path().join(id(9)), peers.join(id(2))).unwrap();
        assert!(
            open_entry(&peers.join(id(2))).is_err(),
            "links are not followed"
        );
        let folder = dir.path().to_owned();
        assert!(within(move || local_peers(&folder, own())).is_empty());
        assert!(fifo.exists());
        assert!(fs::symlink_metadata(peers.join(id(2))).is_ok());
        drop(held);
    }

    #[cfg(unix)]
    #[test]
    fn a_peers_folder_that_is_a_link_is_ignored() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        // Unlocked, so it would be removed as a dead client's entry if the link were used.
        fs::write(elsewhere.path().join(id(1)), b"127.0.0.1:9").unwrap();
        symlink(elsewhere.path(), dir.path().join(PEERS_DIR)).unwrap();
        assert!(local_peers(dir.path(), own()).is_empty());
        assert!(elsewhere.path().join(id(1)).exists());
        // Nor is our own entry written through it.
        let presence =
            Presence::announce(dir.path(), PeerId::new([5; 20]), addr("127.0.0.1:1"), None);
        assert_eq!(fs::read_dir(elsewhere.path()).unwrap().count(), 1);
        drop(presence);
    }

    #[test]
    fn the_scan_and_the_entries_read_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let peers = dir.path().join(PEERS_DIR);
        fs::create_dir_all(&peers).unwrap();
        // Dead entries: each one looked at is removed, so the count left shows how many
        // were looked at.
        let extra = 50;
        for n in 0..MAX_SCANNED + extra {
            fs::write(peers.join(id(n)), b"127.0.0.1:9").unwrap();
        }
        assert!(local_peers(dir.path(), own()).is_empty());
        assert_eq!(fs::read_dir(&peers).unwrap().count(), extra);
        for entry in fs::read_dir(&peers).unwrap() {
            fs::remove_file(entry.unwrap().path()).unwrap();
        }

        // An oversized entry is refused even if it starts with a valid address.
        let huge = write_locked_entry(&peers, &id(1), addr("127.0.0.1:1")).unwrap();
        let mut text = b"127.0.0.1:4242".to_vec();
        text.resize(MAX_PEER_FILE as usize + 1, b' ');
        fs::write(peers.join(id(1)), &text).unwrap();
        assert!(local_peers(dir.path(), own()).is_empty());
        drop(huge);
        let _ = fs::remove_file(peers.join(id(1)));

        // At most MAX_LOCAL_PEERS live entries are used.
        let live: Vec<File> = (0..=MAX_LOCAL_PEERS)
            .map(|n| {
                let port = 10_000 + u16::try_from(n).unwrap();
                write_locked_entry(&peers, &id(n), SocketAddr::from(([127, 0, 0, 1], port)))
                    .unwrap()
            })
            .collect();
        assert_eq!(local_peers(dir.path(), own()).len(), MAX_LOCAL_PEERS);
        drop(live);
    }
}
