//! Where a release's verified pieces live while the site serves and seeds them.
//!
//! A [`Store`] holds one torrent's pieces, in memory ([`Store::memory`], for small releases)
//! or as files in the cache folder ([`Store::disk`]). The session hands it whole pieces,
//! assembled from peer blocks by a [`PieceAssembler`] or fetched whole from a web seed; the
//! upload path reads blocks back for other peers, and the site router reads whole files.
//! The [`Cache`] decides which backend a release gets, keeps the disk and memory budgets and
//! evicts least-recently-used releases.
//!
//! ```
//! use bytes::Bytes;
//! use swarmcdn_client::storage::{Store, StorageError};
//! use swarmcdn_proto::RelativePath;
//! use swarmcdn_proto::metainfo::TorrentBuilder;
//!
//! let content = b"export const share = () => {};\n".to_vec();
//! let torrent = TorrentBuilder::new("share-button-1.0.0")
//!     .add_bytes(RelativePath::parse("button.js")?, content.clone())
//!     .folder(true)
//!     .build()?;
//! let store = Store::memory(&torrent);
//!
//! // A piece that does not hash right is refused; the caller drops its source.
//! let forged = Bytes::from(vec![0; content.len()]);
//! assert!(matches!(store.commit_piece(0, forged), Err(StorageError::HashMismatch { piece: 0 })));
//! assert!(matches!(store.read_file(0), Err(StorageError::NotVerified { piece: 0 })));
//!
//! store.commit_piece(0, Bytes::from(content.clone()))?;
//! assert!(store.is_complete());
//! let path = RelativePath::parse("share-button-1.0.0/button.js")?;
//! assert_eq!(store.read_path(&path)?, content);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Why it is shaped this way
//!
//! - **Nothing unverified is ever readable.** [`Store::commit_piece`] checks the length and
//!   the SHA-1 before storing anything, and every read checks the "have" bitfield first: a
//!   block of a piece we do not hold is [`StorageError::NotVerified`], a file is readable
//!   only once every piece covering it is. A piece is marked as had only after its bytes are
//!   in place, so a concurrent reader never sees a half-written piece.
//! - **Everything a peer names is bounds-checked** against the torrent before use: piece
//!   index, offset, length (at most [`MAX_READ_BLOCK_LEN`]). Errors, never panics.
//! - **Crash safety without a journal** (see the `disk` module): a release is downloaded
//!   into `<cache>/<infohash>.partial/`, and only renamed to `<cache>/<infohash>/` after
//!   every piece is verified and synced. At start-up [`Store::open_existing`] re-hashes
//!   whatever is there on all cores, so neither a `.partial` folder nor a complete one is
//!   trusted blindly: pieces that hash wrong are simply missing again.
//!
//! # Sync API, with async wrappers
//!
//! The store's methods are synchronous and take `&self` (the store locks internally), so a
//! store is shared as `Arc<Store>` between the session, the upload path and the router. The
//! memory backend never blocks: its reads are reference-counted [`Bytes`] slices, fine to
//! call straight from async code. The disk backend does blocking `std::fs` I/O, so async
//! callers use [`Store::commit_piece_async`], [`Store::read_block_async`] and
//! [`Store::read_file_async`], which run disk work on tokio's blocking pool through
//! `spawn_blocking` and call the memory backend inline. Small disk reads are first tried
//! inline with a read that fails rather than wait for the device (Linux): the bytes a
//! seeder serves are nearly always in the page cache, and a trip to the pool costs more
//! than copying them. Keeping the core synchronous keeps it testable without a runtime and
//! lets start-up verification use plain threads (`std::thread::scope`). Opening a store and
//! the [`Cache`] operations that touch disk are also blocking: call them from
//! `spawn_blocking` (or at start-up, before serving).

mod assembler;
mod cache;
mod disk;
mod error;
mod memory;
#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use sha1::{Digest, Sha1};
use swarmcdn_proto::metainfo::{Info, Metainfo};
use swarmcdn_proto::peer::Bitfield;
use swarmcdn_proto::{InfoHash, RelativePath};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use assembler::{BLOCK_SIZE, DEFAULT_MAX_PARTIAL_PIECES, PieceAssembler};
pub use cache::{
    Cache, CacheConfig, CacheMode, CacheUsage, CachedRelease, DEFAULT_DISK_BUDGET,
    DEFAULT_MEMORY_BUDGET, DEFAULT_MEMORY_THRESHOLD, Placement,
};
pub use disk::PARTIAL_SUFFIX;
pub use error::StorageError;

use disk::DiskPieces;
use memory::MemoryPieces;

/// The longest block [`Store::read_block`] serves. Peers request 16 KiB ([`BLOCK_SIZE`]);
/// some clients ask for up to 128 KiB and BEP 3 lets us refuse more.
pub const MAX_READ_BLOCK_LEN: u32 = 128 * 1024;

/// The most bytes [`Store::read_blocks`] reads from disk in one range (blocks that follow
/// each other are read together up to this size).
const MAX_READ_RUN: u64 = 1024 * 1024;

/// Disk reads of up to this many bytes in one call are first tried on the calling task
/// with a read that only succeeds from the page cache (Linux; see the `nowait` module of
/// the disk backend), larger ones go straight to the blocking pool. The inline read holds
/// a runtime worker for as long as the copy takes, while the pool's cost (a thread
/// wake-up) does not grow with the size: on the benchmark machine (2 cores) a read from the
/// page cache took 7-9 µs inline against 25-30 µs through `spawn_blocking` at 20 KiB,
/// 24-30 µs against 35-46 µs at 128 KiB, 39-42 µs against 51-56 µs at 256 KiB and
/// 106-110 µs against 131-148 µs at 1 MiB. Up to 256 KiB (a whole piece of a small
/// release, a batch of 16 blocks) the worker is held for well under 50 µs; beyond it the
/// saving is a small part of the read, and the bulk upload path (1 MiB read-ahead) keeps
/// its reads on the pool, off the workers that drive the peer connections. Letting those
/// 1 MiB reads go inline too did not help: the bulk benchmark (256 MiB from a disk-store
/// seeder, 12 alternating runs each) gave a median of 656 MB/s with a 1 MiB bound against
/// 710 MB/s with this one.
#[cfg(target_os = "linux")]
const INLINE_READ_MAX: u64 = 256 * 1024;

/// Memory pieces up to this size are hashed inline by [`Store::commit_piece_async`]
/// (about 60 µs of SHA-1, less than a trip to the blocking pool); larger ones go to the
/// blocking pool. Hashing a stream of large pieces inline kept the runtime's workers busy
/// hashing while peers' blocks waited: a 256 MiB release in 256 KiB pieces downloaded at
/// 460-550 MB/s on two cores with them hashed inline, 620-810 MB/s with them on the pool.
const INLINE_HASH_MAX: usize = 64 * 1024;

/// Blocking-pool threads that commit queued pieces of one store at a time (see
/// [`Store::commit_piece_queued`]): enough to keep two cores hashing while a third waits on
/// an early writeback.
const MAX_COMMIT_WORKERS: usize = 3;

/// What to do with the verdict on a queued piece.
type CommitDone = Box<dyn FnOnce(Result<(), StorageError>) + Send>;

/// Pieces waiting for a commit worker, and how many workers run.
#[derive(Default)]
struct CommitQueue {
    jobs: VecDeque<CommitJob>,
    workers: usize,
}

/// One piece waiting in a [`CommitQueue`].
struct CommitJob {
    index: u32,
    data: Bytes,
    /// The session that asked: once it is stopped the piece is not committed.
    stop: CancellationToken,
    done: CommitDone,
}

impl std::fmt::Debug for CommitQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitQueue")
            .field("jobs", &self.jobs.len())
            .field("workers", &self.workers)
            .finish()
    }
}

/// Which backend a store uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreKind {
    /// Pieces kept in memory; nothing written to disk.
    Memory,
    /// Files in the cache folder.
    Disk,
}

#[derive(Debug)]
enum Backend {
    Memory(MemoryPieces),
    Disk(DiskPieces),
}

/// One torrent's verified pieces; see the module docs.
#[derive(Debug)]
pub struct Store {
    info_hash: InfoHash,
    info: Arc<Info>,
    /// The verified pieces. Set only after a piece's bytes are stored; never cleared during
    /// the store's life.
    have: RwLock<Bitfield>,
    /// Serialises storing pieces (hashing happens before, in parallel), so completion runs
    /// once.
    commit: Mutex<()>,
    backend: Backend,
    /// Live [`StoreLease`]s: readers the cache must not evict the release from under.
    leases: AtomicUsize,
    /// Pieces handed to [`Store::commit_piece_queued`] and not yet taken by a worker.
    queue: Mutex<CommitQueue>,
}

impl Store {
    /// An empty store kept in memory.
    pub fn memory(metainfo: &Metainfo) -> Store {
        let info = Arc::new(metainfo.info().clone());
        let backend = Backend::Memory(MemoryPieces::new(info.piece_count()));
        Self::with_backend(metainfo.info_hash(), info, backend, None)
    }

    /// A store in the cache folder `cache_dir`: whatever is on disk for this release is
    /// verified and kept ([`Store::open_existing`]), otherwise a new download starts in
    /// `<cache_dir>/<infohash>.partial/`. Blocking.
    pub fn disk(cache_dir: &Path, metainfo: &Metainfo) -> Result<Store, StorageError> {
        if let Some(store) = Self::open_existing(cache_dir, metainfo)? {
            return Ok(store);
        }
        let info = Arc::new(metainfo.info().clone());
        let pieces = DiskPieces::create(cache_dir, metainfo.info_hash(), &info)?;
        Ok(Self::with_backend(
            metainfo.info_hash(),
            info,
            Backend::Disk(pieces),
            None,
        ))
    }

    /// Reopens a release left in `cache_dir` by an earlier run: `None` if there is none.
    ///
    /// Every piece is re-hashed (on all cores for releases of some size): a complete folder
    /// whose pieces all hash right is seeded again at once; a damaged one goes back to
    /// `.partial` with its bad pieces missing; a `.partial` folder keeps the pieces that hash
    /// right. Blocking, and it reads the whole release: run it at start-up or in
    /// `spawn_blocking`.
    pub fn open_existing(
        cache_dir: &Path,
        metainfo: &Metainfo,
    ) -> Result<Option<Store>, StorageError> {
        let threads = disk::verify_threads(metainfo.info());
        Self::open_existing_with_threads(cache_dir, metainfo, threads)
    }

    /// [`Store::open_existing`] with a chosen number of hashing threads.
    pub(crate) fn open_existing_with_threads(
        cache_dir: &Path,
        metainfo: &Metainfo,
        threads: usize,
    ) -> Result<Option<Store>, StorageError> {
        let info = Arc::new(metainfo.info().clone());
        let opened = DiskPieces::open(cache_dir, metainfo.info_hash(), &info, threads)?;
        Ok(opened.map(|(pieces, have)| {
            Self::with_backend(
                metainfo.info_hash(),
                info,
                Backend::Disk(pieces),
                Some(have),
            )
        }))
    }

    /// Opens the complete folder of a release in `cache_dir` for seeding only, changing
    /// nothing on disk: every piece is re-hashed, and a folder that is missing
    /// ([`StorageError::NotInStore`]) or has bad pieces ([`StorageError::Damaged`], which
    /// names them) is refused. Blocking, and it reads the whole release.
    pub fn open_seed_only(cache_dir: &Path, metainfo: &Metainfo) -> Result<Store, StorageError> {
        let info = Arc::new(metainfo.info().clone());
        let info_hash = metainfo.info_hash();
        let threads = disk::verify_threads(&info);
        let Some((pieces, have)) =
            DiskPieces::open_read_only(cache_dir, info_hash, &info, threads)?
        else {
            return Err(StorageError::NotInStore(info_hash));
        };
        if !have.is_complete() {
            let bad_pieces = (0..info.piece_count()).filter(|&p| !have.has(p)).collect();
            return Err(StorageError::Damaged {
                info_hash,
                bad_pieces,
            });
        }
        Ok(Self::with_backend(
            info_hash,
            info,
            Backend::Disk(pieces),
            Some(have),
        ))
    }

    fn with_backend(
        info_hash: InfoHash,
        info: Arc<Info>,
        backend: Backend,
        have: Option<Bitfield>,
    ) -> Store {
        let have = have.unwrap_or_else(|| Bitfield::new(info.piece_count()));
        Store {
            info_hash,
            info,
            have: RwLock::new(have),
            commit: Mutex::new(()),
            backend,
            leases: AtomicUsize::new(0),
            queue: Mutex::new(CommitQueue::default()),
        }
    }

    /// A reader's hold on this store: while any lease is alive, the [`Cache`] never evicts
    /// the release (a session that merely seeds it does not protect it; see the cache's
    /// eviction policy).
    pub fn lease(self: &Arc<Self>) -> StoreLease {
        self.leases.fetch_add(1, Ordering::AcqRel);
        StoreLease {
            store: Arc::clone(self),
        }
    }

    /// How many [`StoreLease`]s are alive.
    pub fn lease_count(&self) -> usize {
        self.leases.load(Ordering::Acquire)
    }

    /// The release's info-hash.
    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }

    /// The torrent's geometry (pieces, files).
    pub fn info(&self) -> &Arc<Info> {
        &self.info
    }

    /// The content size in bytes.
    pub fn size(&self) -> u64 {
        self.info.total_length()
    }

    /// Which backend holds the pieces.
    pub fn kind(&self) -> StoreKind {
        match self.backend {
            Backend::Memory(_) => StoreKind::Memory,
            Backend::Disk(_) => StoreKind::Disk,
        }
    }

    /// The release's folder for a disk store (`…/<infohash>.partial` or `…/<infohash>`).
    pub fn path(&self) -> Option<PathBuf> {
        match &self.backend {
            Backend::Memory(_) => None,
            Backend::Disk(disk) => Some(disk.root()),
        }
    }

    /// A copy of the verified pieces, e.g. for a `bitfield` message. (A copy, because the
    /// set changes as pieces arrive.)
    pub fn have(&self) -> Bitfield {
        read_lock(&self.have).clone()
    }

    /// Whether piece `index` is verified and stored.
    pub fn has_piece(&self, index: u32) -> bool {
        read_lock(&self.have).has(index)
    }

    /// How many pieces are verified and stored.
    pub fn have_count(&self) -> u32 {
        read_lock(&self.have).count()
    }

    /// Whether every piece is verified and stored, and for a disk store, synced and moved to
    /// its complete folder.
    pub fn is_complete(&self) -> bool {
        read_lock(&self.have).is_complete()
            && match &self.backend {
                Backend::Memory(_) => true,
                Backend::Disk(disk) => disk.is_finished(),
            }
    }

    /// Verifies and stores piece `index`.
    ///
    /// The piece must be exactly as long as the torrent says ([`StorageError::WrongPieceLength`])
    /// and hash to the torrent's SHA-1 ([`StorageError::HashMismatch`]); otherwise nothing is
    /// stored and the caller should drop whoever sent it. A piece already held is verified
    /// and then ignored. Storing the last piece of a disk store completes it (sync and
    /// rename); if that fails the error is returned, the pieces stay readable, and
    /// [`Store::finish`] retries. Blocking for a disk store.
    pub fn commit_piece(&self, index: u32, data: Bytes) -> Result<(), StorageError> {
        let (Some(expected), Some(hash)) =
            (self.info.piece_len(index), self.info.piece_hash(index))
        else {
            return Err(StorageError::OutOfRange {
                piece: index,
                begin: 0,
                len: data.len() as u64,
            });
        };
        if data.len() != expected as usize {
            return Err(StorageError::WrongPieceLength {
                piece: index,
                expected,
                got: data.len(),
            });
        }
        if Sha1::digest(&data).as_slice() != hash {
            return Err(StorageError::HashMismatch { piece: index });
        }

        let written = {
            let _commit = lock(&self.commit);
            let written = !self.has_piece(index);
            if written {
                match &self.backend {
                    Backend::Memory(memory) => memory.put(index, data),
                    Backend::Disk(disk) => disk.write_piece(&self.info, index, &data)?,
                }
                write_lock(&self.have)
                    .set(index)
                    .map_err(|_| StorageError::OutOfRange {
                        piece: index,
                        begin: 0,
                        len: u64::from(expected),
                    })?;
            }
            self.finish_if_complete()?;
            written
        };
        match &self.backend {
            Backend::Disk(disk) if written => {
                let offset = self.info.piece_offset(index).unwrap_or(0);
                disk.write_back(&self.info, offset, u64::from(expected))
            }
            _ => Ok(()),
        }
    }

    /// Completes a disk store whose pieces are all verified (sync, rename to the complete
    /// folder), if that has not happened yet. [`Store::commit_piece`] does this on the last
    /// piece; call it again only if that reported an I/O error. Blocking.
    pub fn finish(&self) -> Result<(), StorageError> {
        let _commit = lock(&self.commit);
        self.finish_if_complete()
    }

    fn finish_if_complete(&self) -> Result<(), StorageError> {
        match &self.backend {
            Backend::Disk(disk) if read_lock(&self.have).is_complete() => disk.finish(&self.info),
            _ => Ok(()),
        }
    }

    /// Reads `len` bytes at `begin` of verified piece `piece`, to upload to a peer.
    ///
    /// Every argument comes from an untrusted peer and is checked: the piece must exist
    /// ([`StorageError::OutOfRange`]), `len` must be in `1..=`[`MAX_READ_BLOCK_LEN`]
    /// ([`StorageError::BadBlockLength`]), the block must lie inside the piece
    /// ([`StorageError::OutOfRange`]) and the piece must be verified
    /// ([`StorageError::NotVerified`]). Blocking for a disk store.
    pub fn read_block(&self, piece: u32, begin: u32, len: u32) -> Result<Bytes, StorageError> {
        let offset = self.checked_block_offset(piece, begin, len)?;
        self.read_verified(offset, u64::from(len))
    }

    /// The torrent offset of a block a peer asked for, after the checks
    /// [`Store::read_block`] documents.
    fn checked_block_offset(&self, piece: u32, begin: u32, len: u32) -> Result<u64, StorageError> {
        let piece_len = self.info.piece_len(piece).ok_or(StorageError::OutOfRange {
            piece,
            begin,
            len: u64::from(len),
        })?;
        if len == 0 || len > MAX_READ_BLOCK_LEN {
            return Err(StorageError::BadBlockLength {
                len,
                max: MAX_READ_BLOCK_LEN,
            });
        }
        if u64::from(begin) + u64::from(len) > u64::from(piece_len) {
            return Err(StorageError::OutOfRange {
                piece,
                begin,
                len: u64::from(len),
            });
        }
        if !self.has_piece(piece) {
            return Err(StorageError::NotVerified { piece });
        }
        Ok(self.info.piece_offset(piece).unwrap_or(0) + u64::from(begin))
    }

    /// [`Store::read_block`] for several blocks `(piece, begin, len)`, each with its own
    /// result. Blocks that follow each other in the torrent (a peer asks for a piece as a
    /// run of blocks) are read from a disk store as one range, then handed out as slices of
    /// it: one file open and one read per run instead of per block. A run that cannot be
    /// read whole is read block by block, so each block gets its own verdict. Blocking for a
    /// disk store.
    pub fn read_blocks(&self, blocks: &[(u32, u32, u32)]) -> Vec<Result<Bytes, StorageError>> {
        let mut results = Vec::with_capacity(blocks.len());
        let mut i = 0;
        while i < blocks.len() {
            let (piece, begin, len) = blocks[i];
            let start = match self.checked_block_offset(piece, begin, len) {
                Ok(start) => start,
                Err(error) => {
                    results.push(Err(error));
                    i += 1;
                    continue;
                }
            };
            // Extend the run while the next block starts where this one ends.
            let mut end = start + u64::from(len);
            let mut run = vec![(start, len)];
            while let Some(&(piece, begin, len)) = blocks.get(i + run.len()) {
                if self.kind() != StoreKind::Disk || end - start >= MAX_READ_RUN {
                    break;
                }
                match self.checked_block_offset(piece, begin, len) {
                    Ok(offset) if offset == end => {
                        run.push((offset, len));
                        end += u64::from(len);
                    }
                    _ => break,
                }
            }
            let whole = if run.len() > 1 {
                self.read_verified(start, end - start).ok()
            } else {
                None
            };
            for &(offset, len) in &run {
                results.push(match &whole {
                    Some(whole) => {
                        let at = (offset - start) as usize;
                        Ok(whole.slice(at..at + len as usize))
                    }
                    None => self.read_verified(offset, u64::from(len)),
                });
            }
            i += run.len();
        }
        results
    }

    /// The index in [`Info::files`] of the file at `path` (the full path, starting with the
    /// torrent's folder for a multi-file torrent: `share-button-1.0.0/button.js`).
    pub fn file_index(&self, path: &RelativePath) -> Option<usize> {
        self.info.files().iter().position(|f| &f.path == path)
    }

    /// The whole content of file `index` of [`Info::files`], once every piece covering it is
    /// verified ([`StorageError::NotVerified`] names the first that is not). An empty file
    /// is always readable. Blocking for a disk store.
    pub fn read_file(&self, index: usize) -> Result<Bytes, StorageError> {
        let length = self
            .info
            .files()
            .get(index)
            .ok_or_else(|| StorageError::NoSuchFile(format!("#{index}")))?
            .length;
        self.read_file_range(index, 0, length)
    }

    /// [`Store::read_file`] by path (see [`Store::file_index`]).
    pub fn read_path(&self, path: &RelativePath) -> Result<Bytes, StorageError> {
        let index = self
            .file_index(path)
            .ok_or_else(|| StorageError::NoSuchFile(path.to_string()))?;
        self.read_file(index)
    }

    /// `len` bytes at `offset` of file `index` (for HTTP range requests, or to stream a large
    /// file in parts), once the pieces covering those bytes are verified. A range reaching
    /// past the end of the file is [`StorageError::BeyondFile`]. Blocking for a disk store.
    pub fn read_file_range(
        &self,
        index: usize,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, StorageError> {
        let file = self
            .info
            .files()
            .get(index)
            .ok_or_else(|| StorageError::NoSuchFile(format!("#{index}")))?;
        if offset.checked_add(len).is_none_or(|end| end > file.length) {
            return Err(StorageError::BeyondFile {
                file: index,
                offset,
                len,
                file_len: file.length,
            });
        }
        self.read_verified(file.offset + offset, len)
    }

    /// How many early writebacks the disk backend ran (0 for memory).
    #[cfg(test)]
    fn writebacks(&self) -> u32 {
        match &self.backend {
            Backend::Memory(_) => 0,
            Backend::Disk(disk) => disk.writebacks(),
        }
    }

    fn piece_length(&self) -> u64 {
        u64::from(self.info.piece_length())
    }

    /// Reads a range of the torrent (inside it, as checked by the caller) after checking
    /// that every piece it touches is verified.
    fn read_verified(&self, offset: u64, len: u64) -> Result<Bytes, StorageError> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        if let Some(piece) = self.first_unverified(offset, len) {
            return Err(StorageError::NotVerified { piece });
        }
        match &self.backend {
            Backend::Memory(memory) => memory.read(&self.info, offset, len),
            Backend::Disk(disk) => disk.read(&self.info, offset, len),
        }
    }

    /// The first piece under `len` (> 0) bytes at `offset` of the torrent that is not
    /// verified, if any.
    fn first_unverified(&self, offset: u64, len: u64) -> Option<u32> {
        let first = offset / self.piece_length();
        let last = (offset + len - 1) / self.piece_length();
        let have = read_lock(&self.have);
        (first..=last)
            .map(|piece| u32::try_from(piece).unwrap_or(u32::MAX))
            .find(|&piece| !have.has(piece))
    }

    /// [`Store::read_blocks`] of a disk store on the calling task, if every block passes
    /// its checks, the blocks total at most [`INLINE_READ_MAX`] bytes and the page cache
    /// holds all of them (see the `nowait` module of the disk backend); `None` otherwise,
    /// for the caller to make the whole call on the blocking pool, which reports any error
    /// as before. Never blocks.
    #[cfg(target_os = "linux")]
    fn read_blocks_nowait(
        &self,
        blocks: &[(u32, u32, u32)],
    ) -> Option<Vec<Result<Bytes, StorageError>>> {
        let Backend::Disk(disk) = &self.backend else {
            return None;
        };
        let total: u64 = blocks.iter().map(|&(_, _, len)| u64::from(len)).sum();
        if total > INLINE_READ_MAX {
            return None;
        }
        let offsets = blocks
            .iter()
            .map(|&(piece, begin, len)| self.checked_block_offset(piece, begin, len).ok())
            .collect::<Option<Vec<u64>>>()?;
        let mut results = Vec::with_capacity(blocks.len());
        let mut i = 0;
        while i < blocks.len() {
            // Blocks that follow each other in the torrent are read together.
            let start = offsets[i];
            let mut end = start;
            let mut next = i;
            while next < blocks.len() && offsets[next] == end {
                end += u64::from(blocks[next].2);
                next += 1;
            }
            let run = disk.read_nowait(&self.info, start, end - start)?;
            for (&offset, &(_, _, len)) in offsets[i..next].iter().zip(&blocks[i..next]) {
                let at = (offset - start) as usize;
                results.push(Ok(run.slice(at..at + len as usize)));
            }
            i = next;
        }
        Some(results)
    }

    /// [`Store::read_file`] of a disk store on the calling task, under the same conditions
    /// as [`Store::read_blocks_nowait`]; `None` to make the call on the blocking pool.
    #[cfg(target_os = "linux")]
    fn read_file_nowait(&self, index: usize) -> Option<Bytes> {
        let Backend::Disk(disk) = &self.backend else {
            return None;
        };
        let file = self.info.files().get(index)?;
        if file.length == 0 {
            return Some(Bytes::new());
        }
        if file.length > INLINE_READ_MAX
            || self.first_unverified(file.offset, file.length).is_some()
        {
            return None;
        }
        disk.read_nowait(&self.info, file.offset, file.length)
    }

    /// Whether [`Store::commit_piece_async`] commits a piece of `len` bytes inline (a small
    /// piece for a memory store) rather than on the blocking pool.
    pub(crate) fn commits_inline(&self, len: usize) -> bool {
        self.kind() == StoreKind::Memory && len <= INLINE_HASH_MAX
    }

    /// [`Store::commit_piece`] on the blocking pool, calling `done` with the verdict there.
    /// Pieces queue up for at most [`MAX_COMMIT_WORKERS`] workers, each of which commits
    /// queued pieces until none is left: a download that completes pieces faster than they
    /// hash costs no thread hand-off per piece, and does not spread its hashing over dozens
    /// of threads. Workers run on `tasks` (so a shutdown that waits for them waits for the
    /// commit in progress), and a piece whose `stop` is cancelled by the time a worker takes
    /// it is not committed (`done` gets [`StorageError::Cancelled`]). Call from within a
    /// tokio runtime.
    pub(crate) fn commit_piece_queued(
        self: &Arc<Self>,
        index: u32,
        data: Bytes,
        stop: CancellationToken,
        tasks: &TaskTracker,
        done: impl FnOnce(Result<(), StorageError>) + Send + 'static,
    ) {
        {
            let mut queue = lock(&self.queue);
            queue.jobs.push_back(CommitJob {
                index,
                data,
                stop,
                done: Box::new(done),
            });
            if queue.workers >= MAX_COMMIT_WORKERS {
                return;
            }
            queue.workers += 1;
        }
        let store = Arc::clone(self);
        let span = tracing::trace_span!("commit_worker");
        tasks.spawn_blocking(move || span.in_scope(|| store.run_commits()));
    }

    /// One commit worker: takes queued pieces until the queue is empty. A worker gives its
    /// place back in the same critical section in which it finds the queue empty, so a piece
    /// queued meanwhile always finds a place for a new worker (or a worker that will take it).
    fn run_commits(&self) {
        /// Gives the worker's place back if a commit panics, so the queue keeps moving.
        struct OnPanic<'a>(&'a Mutex<CommitQueue>);
        impl Drop for OnPanic<'_> {
            fn drop(&mut self) {
                lock(self.0).workers -= 1;
            }
        }
        let on_panic = OnPanic(&self.queue);
        loop {
            let job = {
                let mut queue = lock(&self.queue);
                match queue.jobs.pop_front() {
                    Some(job) => job,
                    None => {
                        queue.workers -= 1;
                        drop(queue);
                        // The place is given back: the guard must not do it again.
                        std::mem::forget(on_panic);
                        return;
                    }
                }
            };
            let verdict = if job.stop.is_cancelled() {
                Err(StorageError::Cancelled)
            } else {
                self.commit_piece(job.index, job.data)
            };
            (job.done)(verdict);
        }
    }

    /// [`Store::commit_piece`] for async callers: disk work (and hashing large pieces) runs
    /// on the blocking pool.
    pub async fn commit_piece_async(
        self: &Arc<Self>,
        index: u32,
        data: Bytes,
    ) -> Result<(), StorageError> {
        if self.commits_inline(data.len()) {
            return self.commit_piece(index, data);
        }
        let store = Arc::clone(self);
        blocking(move || store.commit_piece(index, data)).await
    }

    /// [`Store::read_block`] for async callers: inline for memory; for disk, inline when
    /// the page cache holds the block (Linux), else on the blocking pool.
    pub async fn read_block_async(
        self: &Arc<Self>,
        piece: u32,
        begin: u32,
        len: u32,
    ) -> Result<Bytes, StorageError> {
        if self.kind() == StoreKind::Memory {
            return self.read_block(piece, begin, len);
        }
        #[cfg(target_os = "linux")]
        if let Some(block) = self
            .read_blocks_nowait(&[(piece, begin, len)])
            .and_then(|mut read| read.pop())
        {
            return block;
        }
        let store = Arc::clone(self);
        blocking(move || store.read_block(piece, begin, len)).await
    }

    /// [`Store::read_blocks`] for async callers: inline for memory; for disk, inline when
    /// the blocks are few (at most 256 KiB) and the page cache holds them all (Linux), else
    /// in **one** trip to the blocking pool. A peer asks for a piece as a run of 16 KiB
    /// blocks, and a blocking-pool trip per block costs more than the read itself (a
    /// loopback seeder reached about 220 MB/s with one trip per block against about 400 MB/s
    /// with the reads done inline).
    pub async fn read_blocks_async(
        self: &Arc<Self>,
        blocks: Vec<(u32, u32, u32)>,
    ) -> Vec<Result<Bytes, StorageError>> {
        if self.kind() == StoreKind::Memory {
            return self.read_blocks(&blocks);
        }
        #[cfg(target_os = "linux")]
        if let Some(results) = self.read_blocks_nowait(&blocks) {
            return results;
        }
        let count = blocks.len();
        let store = Arc::clone(self);
        match blocking(move || Ok(store.read_blocks(&blocks))).await {
            Ok(results) => results,
            // The runtime is shutting down.
            Err(_) => (0..count).map(|_| Err(StorageError::Cancelled)).collect(),
        }
    }

    /// [`Store::read_file`] for async callers: inline for memory; for disk, inline when the
    /// file is small and the page cache holds it (Linux), else on the blocking pool.
    pub async fn read_file_async(self: &Arc<Self>, index: usize) -> Result<Bytes, StorageError> {
        if self.kind() == StoreKind::Memory {
            return self.read_file(index);
        }
        #[cfg(target_os = "linux")]
        if let Some(bytes) = self.read_file_nowait(index) {
            return Ok(bytes);
        }
        let store = Arc::clone(self);
        blocking(move || store.read_file(index)).await
    }
}

/// A reader's hold on a [`Store`] ([`Store::lease`]): the release is not evicted while
/// it lives. Clones are leases of their own.
#[derive(Debug)]
pub struct StoreLease {
    store: Arc<Store>,
}

impl StoreLease {
    /// The leased store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }
}

impl Clone for StoreLease {
    fn clone(&self) -> Self {
        self.store.lease()
    }
}

impl Drop for StoreLease {
    fn drop(&mut self) {
        self.store.leases.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Runs `work` on tokio's blocking pool; a panic in it is resumed here.
async fn blocking<T, F>(work: F) -> Result<T, StorageError>
where
    F: FnOnce() -> Result<T, StorageError> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(StorageError::Cancelled),
    }
}

// A panic while a lock is held leaves data that is still consistent here (every update is a
// single assignment), so poisoned locks are used as they are.

fn read_lock<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write_lock<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

fn lock<T>(lock: &Mutex<T>) -> MutexGuard<'_, T> {
    lock.lock().unwrap_or_else(PoisonError::into_inner)
}
