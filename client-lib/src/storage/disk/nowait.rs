//! Read handles a disk store keeps open, and reads that never wait for the device (Linux).
//!
//! A peer's request for a few blocks of a release we seed is almost always served from the
//! page cache: the release was just verified or just sent to someone else. Going to tokio's
//! blocking pool for such a read costs more than the read (waking an idle pool thread took
//! 35 to 90 µs on the benchmark machine, for a 20 KiB fetch of about 820 µs in all), so the
//! store first tries the read on the calling task with `preadv2(RWF_NOWAIT)`: the kernel
//! copies what the page cache holds and fails with `EAGAIN` instead of waiting for the
//! device, so a runtime thread never stalls on I/O. Anything short of the whole range read
//! at once (`EAGAIN`, a short read, any error, no handle open yet) makes the caller take
//! the blocking path for the whole call, which behaves and reports errors as it always has.
//!
//! The non-blocking read needs a file that is already open: opening by path can block (a
//! cold dentry cache, a slow file system). So each disk store keeps a few read handles,
//! [`OpenFiles`], filled by its blocking reads, which use them too (positional reads, so
//! concurrent readers share a handle safely). The handles are bounded per store
//! ([`MAX_PER_STORE`], dropped oldest first: a release may have thousands of files) and
//! across the process ([`MAX_TOTAL`], so many seeded releases cannot use up the descriptor
//! limit that peer connections need).
//!
//! A handle names an inode, not a path: if the store's folder were replaced, a kept handle
//! would go on serving the old bytes. So the store drops every handle whenever it moves or
//! changes its folder (see `DiskPieces::relocate`); a store whose files the cache deletes is
//! one no one else holds, and its handles close with it. Pieces written later through other
//! handles to the same files need nothing: the page cache is shared.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSliceMut};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rustix::io::{Errno, ReadWriteFlags};
use swarmcdn_proto::metainfo::Info;

use super::{ReadOutcome, StorageError, file_path, file_ranges};
use crate::storage::lock;

/// Read handles one store keeps open. Reads of a seeded release cluster on the files peers
/// ask for now; a release with more files than this simply serves the others from the
/// blocking pool, as before.
const MAX_PER_STORE: usize = 32;

/// Read handles all stores of the process keep open together: well under the usual soft
/// descriptor limit of 1024, which peer connections and downloads share.
const MAX_TOTAL: usize = 256;

/// Read handles open across all stores (see [`MAX_TOTAL`]).
static TOTAL: AtomicUsize = AtomicUsize::new(0);

/// One store's open read handles: file index and handle, oldest first.
#[derive(Debug, Default)]
pub(super) struct OpenFiles {
    files: Mutex<VecDeque<(usize, Arc<File>)>>,
    /// Reads served without waiting (for tests).
    #[cfg(test)]
    pub(super) nowait_reads: AtomicUsize,
    /// Makes every non-blocking read "would block" (for tests).
    #[cfg(test)]
    pub(super) refuse_nowait: std::sync::atomic::AtomicBool,
}

impl OpenFiles {
    /// The kept handle of file `index`, if there is one.
    fn get(&self, index: usize) -> Option<Arc<File>> {
        lock(&self.files)
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, file)| Arc::clone(file))
    }

    /// The handle of file `index` at `path`, opened (and kept, if the bounds allow) if none
    /// is kept: `None` if the file does not exist. Blocking.
    fn get_or_open(&self, index: usize, path: &Path) -> io::Result<Option<Arc<File>>> {
        if let Some(file) = self.get(index) {
            return Ok(Some(file));
        }
        let file = match File::open(path) {
            Ok(file) => Arc::new(file),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut files = lock(&self.files);
        if files.iter().any(|(i, _)| *i == index) {
            // Another reader opened it meanwhile; keep theirs.
            return Ok(Some(file));
        }
        if files.len() >= MAX_PER_STORE {
            files.pop_front();
        } else if TOTAL.fetch_add(1, Ordering::AcqRel) >= MAX_TOTAL {
            TOTAL.fetch_sub(1, Ordering::AcqRel);
            if files.pop_front().is_none() {
                // No room anywhere: read with it, do not keep it.
                return Ok(Some(file));
            }
        }
        files.push_back((index, Arc::clone(&file)));
        Ok(Some(file))
    }

    /// Closes every kept handle (the store's folder moved or changed).
    pub(super) fn clear(&self) {
        let mut files = lock(&self.files);
        TOTAL.fetch_sub(files.len(), Ordering::AcqRel);
        files.clear();
    }

    /// How many handles are kept.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        lock(&self.files).len()
    }

    /// Appends the `len` bytes at `offset` of the torrent, from the files under `root`, to
    /// `out`, through kept handles (opening and keeping those missing). Reads into `out`'s
    /// spare capacity: no zeroing first, this is the upload path. Blocking.
    pub(super) fn read_to_vec(
        &self,
        root: &Path,
        info: &Info,
        offset: u64,
        len: u64,
        out: &mut Vec<u8>,
    ) -> Result<ReadOutcome, StorageError> {
        out.reserve_exact(usize::try_from(len).unwrap_or(usize::MAX));
        for range in file_ranges(info, offset, len)? {
            let path = file_path(root, info, range.file_index);
            let file = self
                .get_or_open(range.file_index, &path)
                .map_err(|e| StorageError::io(&path, e))?;
            let Some(file) = file else {
                return Ok(ReadOutcome::Missing(path));
            };
            let want = usize::try_from(range.length).unwrap_or(usize::MAX);
            let start = out.len();
            while out.len() - start < want {
                let at = range.file_offset + (out.len() - start) as u64;
                // The spare capacity is at least what is left of the whole read, so this
                // never reads nothing for want of room; bytes past the range are cut below.
                match rustix::io::pread(&*file, rustix::buffer::spare_capacity(out), at) {
                    Ok(0) => return Ok(ReadOutcome::Missing(path)),
                    Ok(_) | Err(Errno::INTR) => {}
                    Err(e) => return Err(StorageError::io(&path, e.into())),
                }
            }
            out.truncate(start + want);
        }
        Ok(ReadOutcome::Read)
    }

    /// The `len` bytes at `offset` of the torrent if the page cache holds all of them and
    /// every file under the range has a kept handle; `None` otherwise (the caller then reads
    /// on the blocking pool). Never blocks.
    pub(super) fn read_nowait(&self, info: &Info, offset: u64, len: u64) -> Option<Bytes> {
        #[cfg(test)]
        if self.refuse_nowait.load(Ordering::Acquire) {
            return None;
        }
        let mut buf = vec![0; usize::try_from(len).ok()?];
        let mut filled = 0;
        for range in info.file_ranges(offset, len)? {
            let file = self.get(range.file_index)?;
            let dest = buf.get_mut(filled..filled + usize::try_from(range.length).ok()?)?;
            let want = dest.len();
            let read = rustix::io::preadv2(
                &*file,
                &mut [IoSliceMut::new(dest)],
                range.file_offset,
                ReadWriteFlags::NOWAIT,
            )
            .ok()?;
            if read != want {
                return None;
            }
            filled += want;
        }
        if filled != buf.len() {
            return None;
        }
        #[cfg(test)]
        self.nowait_reads.fetch_add(1, Ordering::AcqRel);
        Some(Bytes::from(buf))
    }
}

impl Drop for OpenFiles {
    fn drop(&mut self) {
        self.clear();
    }
}
