//! The disk backend: a release's files in the cache folder, laid out as the torrent says.
//!
//! Layout, for info-hash `H` (lowercase hex) under the cache folder `C`:
//!
//! - `C/H.partial/<files>` while downloading: every file is created at its full length up
//!   front (sparse where the file system allows) and each verified piece is written at its
//!   offset, across the files it covers;
//! - `C/H/<files>` once every piece is verified: the files and their folders are `fsync`ed,
//!   then the folder is renamed in one step and the cache folder `fsync`ed. A folder named
//!   `C/H` therefore only exists once its content was complete and durable; a crash at any
//!   moment leaves at worst a `.partial` folder.
//!
//! File paths come only from [`RelativePath::to_path_under`](swarmcdn_proto::RelativePath::to_path_under),
//! whose components were validated when the torrent was parsed: no `..`, no absolute path,
//! no separators, so nothing is written outside the release's folder.
//!
//! Nothing on disk is trusted at start-up: [`verify`] re-hashes every piece of a folder
//! (complete or partial) on all cores, and pieces that are missing, short or wrong simply
//! count as missing. There is no resume record to keep in step with the files: the files are
//! the record, and a piece is ours only if it hashes right. A damaged complete folder is
//! renamed back to `.partial` before anything else happens.
//!
//! Written pieces are pushed to the device while the download goes on: every
//! [`WRITEBACK_STEP`] bytes, the files under the piece that crossed the step are
//! `fdatasync`ed on the committing thread (one such sync at a time, outside the store's
//! commit lock; in a multi-file release, files written earlier in the step are left to the
//! final sync). A failed early sync keeps the folder from ever being made complete. Without it the page
//! cache holds the whole release dirty until completion, and the final `fsync` then waits
//! for all of it at once (about 0.13 s for 256 MiB on the benchmark machine), after the
//! last byte arrived. With it, only the last step is left to sync.
//!
//! Files are opened for each write rather than kept open: a release may have thousands
//! of files and a cache many releases, and open handles would run into the descriptor
//! limit and keep renames from working on some systems. Opening costs microseconds; a piece
//! write costs more. Reads on Linux are the exception: a few read handles per store are
//! kept (bounded per store and per process) so that page-cache-hot blocks can be read on
//! the calling task without waiting (see the `nowait` module); the store drops them
//! whenever it moves its folder. Elsewhere reads open their files each time too.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use bytes::Bytes;
use sha1::{Digest, Sha1};
use swarmcdn_proto::InfoHash;
use swarmcdn_proto::metainfo::{FileRanges, Info};
use swarmcdn_proto::peer::Bitfield;

use super::{StorageError, read_lock, write_lock};

#[cfg(target_os = "linux")]
mod nowait;

/// The suffix of a release folder that is still being downloaded.
pub const PARTIAL_SUFFIX: &str = ".partial";

/// Releases smaller than this are verified on one thread (starting threads costs more).
const PARALLEL_VERIFY_MIN_BYTES: u64 = 4 * 1024 * 1024;

/// Pieces a verifying thread takes at a time: large enough to read files in order, small
/// enough to share the work evenly.
const VERIFY_BATCH: u32 = 16;

/// Bytes written between two early writebacks (see the module docs).
const WRITEBACK_STEP: u64 = 16 * 1024 * 1024;

/// `C/H`: where a complete release lives.
pub(super) fn complete_dir(cache_dir: &Path, info_hash: &InfoHash) -> PathBuf {
    cache_dir.join(info_hash.to_hex())
}

/// `C/H.partial`: where a release is downloaded.
pub(super) fn partial_dir(cache_dir: &Path, info_hash: &InfoHash) -> PathBuf {
    cache_dir.join(format!("{}{PARTIAL_SUFFIX}", info_hash.to_hex()))
}

/// Where the release's folder is now, and whether it has been made complete.
#[derive(Debug)]
struct Location {
    root: PathBuf,
    complete: bool,
}

/// One release on disk.
#[derive(Debug)]
pub(super) struct DiskPieces {
    cache_dir: PathBuf,
    info_hash: InfoHash,
    /// Readers and writers hold the read lock for the whole operation; completion holds the
    /// write lock while it renames, so no operation sees the folder move under it.
    location: RwLock<Location>,
    /// Bytes written since the last early writeback began.
    unsynced: AtomicU64,
    /// Whether an early writeback is running.
    syncing: AtomicBool,
    /// An early writeback failed: the kernel reports a write-back error once, so a later
    /// sync may succeed although data never reached the device. The folder is then never
    /// made complete (see [`DiskPieces::finish`]); it is re-verified when next opened.
    sync_failed: AtomicBool,
    /// Early writebacks done (for tests).
    writebacks: AtomicU32,
    /// Read handles kept open (see the `nowait` module). Dropped whenever the folder moves.
    #[cfg(target_os = "linux")]
    open_files: nowait::OpenFiles,
}

impl DiskPieces {
    fn new(cache_dir: &Path, info_hash: InfoHash, root: PathBuf, complete: bool) -> Self {
        DiskPieces {
            cache_dir: cache_dir.to_path_buf(),
            info_hash,
            location: RwLock::new(Location { root, complete }),
            unsynced: AtomicU64::new(0),
            syncing: AtomicBool::new(false),
            sync_failed: AtomicBool::new(false),
            writebacks: AtomicU32::new(0),
            #[cfg(target_os = "linux")]
            open_files: nowait::OpenFiles::default(),
        }
    }

    /// Starts a new download in `C/H.partial`, keeping nothing that may be there already
    /// (call [`DiskPieces::open`] first to resume).
    pub(super) fn create(
        cache_dir: &Path,
        info_hash: InfoHash,
        info: &Info,
    ) -> Result<Self, StorageError> {
        fs::create_dir_all(cache_dir).map_err(|e| StorageError::io(cache_dir, e))?;
        let root = partial_dir(cache_dir, &info_hash);
        remove_if_present(&root)?;
        fs::create_dir(&root).map_err(|e| StorageError::io(&root, e))?;
        prepare_files(&root, info)?;
        Ok(DiskPieces::new(cache_dir, info_hash, root, false))
    }

    /// Opens what is on disk for this release, re-hashing every piece with `threads`
    /// threads: `None` if there is nothing, else the store and the pieces that hash right.
    ///
    /// A complete folder that hashes right stays complete. A damaged one is renamed to
    /// `.partial` (so it never looks complete again until it is) and its files are brought
    /// back to full length. A `.partial` folder whose pieces all hash right (a crash just
    /// before the rename) is completed now. A `.partial` folder next to a complete one is a
    /// leftover and is removed.
    pub(super) fn open(
        cache_dir: &Path,
        info_hash: InfoHash,
        info: &Info,
        threads: usize,
    ) -> Result<Option<(Self, Bitfield)>, StorageError> {
        let complete = complete_dir(cache_dir, &info_hash);
        let partial = partial_dir(cache_dir, &info_hash);
        let root = if is_dir(&complete)? {
            remove_if_present(&partial)?;
            complete.clone()
        } else if is_dir(&partial)? {
            partial.clone()
        } else {
            return Ok(None);
        };
        let have = verify(&root, info, threads)?;
        let was_complete = root == complete;
        let store = DiskPieces::new(cache_dir, info_hash, root.clone(), was_complete);
        if was_complete && have.is_complete() {
            // Every piece is there; trim files that grew past their length.
            prepare_files(&root, info)?;
            return Ok(Some((store, have)));
        }
        if was_complete {
            rename_durably(&complete, &partial, cache_dir)?;
            store.relocate(&mut write_lock(&store.location), partial.clone(), false);
        }
        prepare_files(&partial, info)?;
        if have.is_complete() {
            store.finish(info)?;
        }
        Ok(Some((store, have)))
    }

    /// Opens the complete folder of a release without changing anything on disk (no
    /// rename, no resize, no leftover removed), re-hashing every piece: `None` if there is
    /// no complete folder, else the store and the pieces that hash right. For a folder that
    /// belongs to someone else; a damaged one is the caller's to refuse.
    pub(super) fn open_read_only(
        cache_dir: &Path,
        info_hash: InfoHash,
        info: &Info,
        threads: usize,
    ) -> Result<Option<(Self, Bitfield)>, StorageError> {
        let root = complete_dir(cache_dir, &info_hash);
        if !is_dir(&root)? {
            return Ok(None);
        }
        let have = verify(&root, info, threads)?;
        let store = DiskPieces::new(cache_dir, info_hash, root, true);
        Ok(Some((store, have)))
    }

    /// Records that the folder is now `root` (under the location's write lock, so no read
    /// is under way), and drops the kept read handles: they must never outlive the folder
    /// they were opened in.
    fn relocate(&self, location: &mut Location, root: PathBuf, complete: bool) {
        location.root = root;
        location.complete = complete;
        #[cfg(target_os = "linux")]
        self.open_files.clear();
    }

    /// The release's folder now.
    pub(super) fn root(&self) -> PathBuf {
        read_lock(&self.location).root.clone()
    }

    /// Whether the folder has been made complete.
    pub(super) fn is_finished(&self) -> bool {
        read_lock(&self.location).complete
    }

    /// Writes verified piece `index` where it belongs.
    pub(super) fn write_piece(
        &self,
        info: &Info,
        index: u32,
        data: &[u8],
    ) -> Result<(), StorageError> {
        let location = read_lock(&self.location);
        let offset = info.piece_offset(index).unwrap_or(u64::MAX);
        let ranges =
            info.file_ranges(offset, data.len() as u64)
                .ok_or(StorageError::OutOfRange {
                    piece: index,
                    begin: 0,
                    len: data.len() as u64,
                })?;
        for range in ranges {
            let path = file_path(&location.root, info, range.file_index);
            let start = (range.torrent_offset - offset) as usize;
            let chunk = data
                .get(start..start + range.length as usize)
                .unwrap_or_default();
            let write = || -> io::Result<()> {
                let mut file = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&path)?;
                file.seek(SeekFrom::Start(range.file_offset))?;
                file.write_all(chunk)
            };
            write().map_err(|e| StorageError::io(&path, e))?;
        }
        Ok(())
    }

    /// `len` bytes were just written at `offset` of the torrent (a piece, outside the
    /// store's commit lock): once [`WRITEBACK_STEP`] bytes were written since the last time,
    /// syncs the files under that range, so the final sync has little left to wait for.
    /// Only one thread syncs at a time; the others go on. An error is returned (the data
    /// may not be durable) and not retried: a later sync may no longer see it.
    pub(super) fn write_back(
        &self,
        info: &Info,
        offset: u64,
        len: u64,
    ) -> Result<(), StorageError> {
        let pending = self.unsynced.fetch_add(len, Ordering::AcqRel) + len;
        if pending < WRITEBACK_STEP || self.syncing.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.unsynced.store(0, Ordering::Release);
        let result = self.sync_range(info, offset, len);
        if result.is_err() {
            self.sync_failed.store(true, Ordering::Release);
        }
        self.writebacks.fetch_add(1, Ordering::Relaxed);
        self.syncing.store(false, Ordering::Release);
        result
    }

    /// How many early writebacks ran.
    #[cfg(test)]
    pub(super) fn writebacks(&self) -> u32 {
        self.writebacks.load(Ordering::Relaxed)
    }

    /// `fdatasync`s the files under a range of the torrent, unless the release is complete
    /// (its files were synced then).
    fn sync_range(&self, info: &Info, offset: u64, len: u64) -> Result<(), StorageError> {
        let location = read_lock(&self.location);
        if location.complete {
            return Ok(());
        }
        for range in info.file_ranges(offset, len).into_iter().flatten() {
            let path = file_path(&location.root, info, range.file_index);
            OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|file| file.sync_data())
                .map_err(|e| StorageError::io(&path, e))?;
        }
        Ok(())
    }

    /// Reads `len` bytes at `offset` of the torrent. The caller has checked that the pieces
    /// are verified, so a file that is gone or short is reported as [`StorageError::Corrupt`].
    pub(super) fn read(&self, info: &Info, offset: u64, len: u64) -> Result<Bytes, StorageError> {
        let location = read_lock(&self.location);
        let mut buf = Vec::new();
        #[cfg(target_os = "linux")]
        let outcome = self
            .open_files
            .read_to_vec(&location.root, info, offset, len, &mut buf)?;
        #[cfg(not(target_os = "linux"))]
        let outcome = RangeReader::new(&location.root, info).read_to_vec(offset, len, &mut buf)?;
        match outcome {
            ReadOutcome::Read => Ok(Bytes::from(buf)),
            ReadOutcome::Missing(path) => Err(StorageError::Corrupt {
                path,
                detail: "a verified piece can no longer be read in full".into(),
            }),
        }
    }

    /// Makes the release complete: syncs every file and folder, renames `C/H.partial` to
    /// `C/H` and syncs the cache folder. Does nothing if it is complete already.
    pub(super) fn finish(&self, info: &Info) -> Result<(), StorageError> {
        let mut location = write_lock(&self.location);
        if location.complete {
            return Ok(());
        }
        let root = location.root.clone();
        if self.sync_failed.load(Ordering::Acquire) {
            return Err(StorageError::Corrupt {
                path: root,
                detail: "an earlier sync of its files failed, so they may not be on the device; \
                         the folder stays partial and is re-verified when next opened"
                    .into(),
            });
        }
        let mut folders = BTreeSet::from([root.clone()]);
        for index in 0..info.files().len() {
            let path = file_path(&root, info, index);
            let file = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| StorageError::io(&path, e))?;
            file.sync_all().map_err(|e| StorageError::io(&path, e))?;
            let mut parent = path.parent();
            while let Some(folder) = parent.filter(|p| p.starts_with(&root)) {
                folders.insert(folder.to_path_buf());
                parent = folder.parent();
            }
        }
        for folder in &folders {
            sync_dir(folder)?;
        }
        let complete = complete_dir(&self.cache_dir, &self.info_hash);
        rename_durably(&root, &complete, &self.cache_dir)?;
        self.relocate(&mut location, complete, true);
        Ok(())
    }

    /// [`DiskPieces::read`] on the calling task, if every byte is in the page cache and
    /// every file under the range has a kept handle; `None` otherwise (then call
    /// [`DiskPieces::read`] on the blocking pool). The caller has checked that the pieces
    /// are verified. Never blocks.
    #[cfg(target_os = "linux")]
    pub(super) fn read_nowait(&self, info: &Info, offset: u64, len: u64) -> Option<Bytes> {
        self.open_files.read_nowait(info, offset, len)
    }

    /// How many read handles are kept (for tests).
    #[cfg(all(test, target_os = "linux"))]
    pub(super) fn kept_handles(&self) -> usize {
        self.open_files.len()
    }

    /// How many reads were served without waiting (for tests).
    #[cfg(all(test, target_os = "linux"))]
    pub(super) fn nowait_reads(&self) -> usize {
        self.open_files.nowait_reads.load(Ordering::Acquire)
    }

    /// Makes every read without waiting fail as if it would block (for tests).
    #[cfg(all(test, target_os = "linux"))]
    pub(super) fn refuse_nowait(&self, refuse: bool) {
        self.open_files
            .refuse_nowait
            .store(refuse, Ordering::Release);
    }
}

/// The file runs under `len` bytes at `offset` of the torrent; a range reaching past the
/// end is [`StorageError::OutOfRange`].
fn file_ranges(info: &Info, offset: u64, len: u64) -> Result<FileRanges<'_>, StorageError> {
    info.file_ranges(offset, len)
        .ok_or(StorageError::OutOfRange {
            piece: u32::try_from(offset / u64::from(info.piece_length())).unwrap_or(u32::MAX),
            begin: 0,
            len,
        })
}

/// The path of file `index` under `root`.
fn file_path(root: &Path, info: &Info, index: usize) -> PathBuf {
    match info.files().get(index) {
        Some(file) => file.path.to_path_under(root),
        None => root.to_path_buf(),
    }
}

/// Creates every file of the torrent under `root` (and its folders) and sets each to its
/// length: new files are sparse, short ones are extended with zeros, long ones trimmed.
fn prepare_files(root: &Path, info: &Info) -> Result<(), StorageError> {
    for file in info.files() {
        let path = file.path.to_path_under(root);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| StorageError::io(parent, e))?;
        }
        if fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() == file.length) {
            // Already right: no need to open it for writing (the folder may be read-only).
            continue;
        }
        let prepare = || -> io::Result<()> {
            let handle = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)?;
            handle.set_len(file.length)
        };
        prepare().map_err(|e| StorageError::io(&path, e))?;
    }
    Ok(())
}

/// Whether `path` is a folder; `false` if there is nothing there; an error if something
/// else is there.
fn is_dir(path: &Path) -> Result<bool, StorageError> {
    match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(true),
        Ok(_) => Err(StorageError::Corrupt {
            path: path.to_path_buf(),
            detail: "expected a release folder, found something else".into(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StorageError::io(path, e)),
    }
}

/// Removes the folder (or file) at `path` if there is one.
pub(super) fn remove_if_present(path: &Path) -> Result<(), StorageError> {
    let result = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e),
    };
    result.map_err(|e| StorageError::io(path, e))
}

/// Renames `from` to `to` and syncs their folder `dir`, so the rename survives a crash.
pub(super) fn rename_durably(from: &Path, to: &Path, dir: &Path) -> Result<(), StorageError> {
    fs::rename(from, to).map_err(|e| StorageError::io(from, e))?;
    sync_dir(dir)
}

/// Syncs a folder's entries to disk. Only Unix can open a folder to sync it; elsewhere the
/// file system orders renames on its own and this does nothing.
pub(super) fn sync_dir(path: &Path) -> Result<(), StorageError> {
    #[cfg(unix)]
    {
        File::open(path)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| StorageError::io(path, e))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// What reading a range found.
#[derive(Debug, PartialEq, Eq)]
enum ReadOutcome {
    /// Every byte was read.
    Read,
    /// This file is missing or shorter than the torrent says.
    Missing(PathBuf),
}

/// Reads byte ranges of the torrent from the files under a root, keeping the last file
/// open between reads (verification reads the files in order).
struct RangeReader<'a> {
    root: &'a Path,
    info: &'a Info,
    /// The last file opened: its index, and the handle (`None` if it does not exist).
    open: Option<(usize, Option<File>)>,
}

impl<'a> RangeReader<'a> {
    fn new(root: &'a Path, info: &'a Info) -> Self {
        RangeReader {
            root,
            info,
            open: None,
        }
    }

    /// Fills `buf` with the bytes at `offset` of the torrent.
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<ReadOutcome, StorageError> {
        let mut filled = 0;
        self.each_range(offset, buf.len() as u64, |file, len| {
            let dest = buf.get_mut(filled..filled + len).unwrap_or_default();
            filled += len;
            file.read_exact(dest).map(|()| dest.len() == len)
        })
    }

    /// Appends the `len` bytes at `offset` of the torrent to `out`, reading into its spare
    /// capacity (no zeroing first: this is the upload path, which reads every block sent).
    /// (On Linux the upload path reads through kept handles instead.)
    #[cfg(not(target_os = "linux"))]
    fn read_to_vec(
        &mut self,
        offset: u64,
        len: u64,
        out: &mut Vec<u8>,
    ) -> Result<ReadOutcome, StorageError> {
        out.reserve_exact(usize::try_from(len).unwrap_or(usize::MAX));
        self.each_range(offset, len, |file, len| {
            let read = file.take(len as u64).read_to_end(out)?;
            Ok(read == len)
        })
    }

    /// Calls `read` with each file under the range at `offset`, positioned at the range's
    /// start, and the range's length; `read` says whether it got every byte.
    fn each_range(
        &mut self,
        offset: u64,
        len: u64,
        mut read: impl FnMut(&mut File, usize) -> io::Result<bool>,
    ) -> Result<ReadOutcome, StorageError> {
        for range in file_ranges(self.info, offset, len)? {
            let path = file_path(self.root, self.info, range.file_index);
            if self
                .open
                .as_ref()
                .is_none_or(|(i, _)| *i != range.file_index)
            {
                let handle = match File::open(&path) {
                    Ok(file) => Some(file),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                    Err(e) => return Err(StorageError::io(&path, e)),
                };
                self.open = Some((range.file_index, handle));
            }
            let Some((_, Some(file))) = self.open.as_mut() else {
                return Ok(ReadOutcome::Missing(path));
            };
            let length = usize::try_from(range.length).unwrap_or(usize::MAX);
            let result = file
                .seek(SeekFrom::Start(range.file_offset))
                .and_then(|_| read(file, length));
            match result {
                Ok(true) => {}
                Ok(false) => return Ok(ReadOutcome::Missing(path)),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Ok(ReadOutcome::Missing(path));
                }
                Err(e) => return Err(StorageError::io(&path, e)),
            }
        }
        Ok(ReadOutcome::Read)
    }
}

/// The number of threads to verify `info` with: one for small releases, else one per core.
pub(super) fn verify_threads(info: &Info) -> usize {
    if info.total_length() < PARALLEL_VERIFY_MIN_BYTES {
        1
    } else {
        std::thread::available_parallelism().map_or(1, usize::from)
    }
}

/// Re-hashes every piece stored under `root` on `threads` threads and returns the pieces
/// that hash right. Missing and short files make their pieces missing; other I/O errors
/// (permissions, a failing disk) are returned.
pub(super) fn verify(root: &Path, info: &Info, threads: usize) -> Result<Bitfield, StorageError> {
    let next = AtomicU32::new(0);
    let failed = AtomicBool::new(false);
    let piece_count = info.piece_count();
    let work = || -> Result<Vec<u32>, StorageError> {
        let mut good = Vec::new();
        let mut reader = RangeReader::new(root, info);
        let mut buf = vec![0; info.piece_length() as usize];
        while !failed.load(Ordering::Relaxed) {
            let first = next.fetch_add(VERIFY_BATCH, Ordering::Relaxed);
            if first >= piece_count {
                break;
            }
            for index in first..first.saturating_add(VERIFY_BATCH).min(piece_count) {
                let (Some(offset), Some(len), Some(hash)) = (
                    info.piece_offset(index),
                    info.piece_len(index),
                    info.piece_hash(index),
                ) else {
                    continue;
                };
                let piece = &mut buf[..len as usize];
                let outcome = reader.read(offset, piece).inspect_err(|_| {
                    failed.store(true, Ordering::Relaxed);
                })?;
                if outcome == ReadOutcome::Read && Sha1::digest(&*piece).as_slice() == hash {
                    good.push(index);
                }
            }
        }
        Ok(good)
    };
    let results: Vec<Result<Vec<u32>, StorageError>> = if threads <= 1 {
        vec![work()]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads).map(|_| scope.spawn(work)).collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        })
    };
    let mut have = Bitfield::new(piece_count);
    for result in results {
        for index in result? {
            // Indices come from `0..piece_count`.
            let _ = have.set(index);
        }
    }
    Ok(have)
}
