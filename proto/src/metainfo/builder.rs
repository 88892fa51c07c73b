//! Making torrents: deterministic output, streaming reads, hashing on every core.
//!
//! Publishers build one torrent per release and register its info-hash, and sites verify the
//! manifest against it, so the same files must always give the same torrent. The builder
//! therefore sorts files by path, picks the piece length from the total size alone, and
//! writes no creation date or program name unless asked. Its `info` dictionary has exactly
//! the keys `mktorrent` writes (`files`/`length`, `name`, `piece length`, `pieces`, and
//! `private` only when set), so both tools agree on the info-hash for the same files and
//! piece length; the fixture tests hold us to that.
//!
//! A release can be up to 1 GiB, so files are never read whole. The content is cut into jobs
//! of whole pieces (about 1 MiB), and one thread per core loops: take the next job and read
//! it into its own buffer, holding a lock, then hash it without the lock, so one thread reads
//! while the others hash. The lock makes the reads one sequential pass, front to back, which
//! is what a disk serves fastest and what keeps the kernel's read-ahead working when the files
//! are not cached. Each read also asks the kernel to fetch the next few MiB of the file
//! (`READ_AHEAD`, a hint where the platform has one), so the disk keeps reading while both
//! threads hash and no thread waits for it on the next job. Small jobs handed out in turn,
//! rather than a fixed part of the content per thread, keep every core busy to the end even
//! when some are slowed by other work. No thread only reads and no thread waits on a queue,
//! so on a machine with few cores none of them takes a core from the hashing. Memory is one buffer per thread (`BUFFER_BUDGET` in all).
//! The result is re-parsed with [`Metainfo::from_bytes_with`] before it is returned, so a
//! built torrent passes exactly the checks a received one does.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::num::NonZeroUsize;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha1::{Digest, Sha1};

use super::{
    MAX_PIECE_LENGTH, MIN_PIECE_LENGTH, Metainfo, MetainfoError, MetainfoLimits, Outer,
    check_piece_length, check_unique_paths, encode_torrent,
};
use crate::bencode::Value;
use crate::path::{PathError, RelativePath};

/// The automatic piece length aims at no more than this many pieces (and more than half
/// as many), within [`MIN_PIECE_LENGTH`] and [`MAX_PIECE_LENGTH`].
pub const TARGET_MAX_PIECES: u64 = 2000;
/// Bytes read and handed to a hashing thread at a time (whole pieces: one piece when pieces
/// are larger): large enough that handing over costs nothing next to the hashing.
const JOB_BYTES: u64 = 1024 * 1024;
/// Memory for read buffers while hashing (one per thread): fewer threads are used when their
/// buffers would take more.
const BUFFER_BUDGET: usize = 64 * 1024 * 1024;
/// Below this many pieces per thread, extra threads cost more than they save.
const MIN_PIECES_PER_THREAD: usize = 8;
/// How far past the last read the kernel is asked to fetch a file ahead of time.
const READ_AHEAD: u64 = 8 * 1024 * 1024;

/// Where a file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Bytes in memory.
    Bytes(Vec<u8>),
    /// A file on disk, read when the torrent is built.
    File(PathBuf),
}

/// Why a torrent could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No files were added.
    #[error("a torrent needs at least one file")]
    NoFiles,
    /// More files than [`MetainfoLimits::max_files`].
    #[error("{count} files, the limit is {limit}")]
    TooManyFiles {
        /// How many files were added.
        count: usize,
        /// The limit in force.
        limit: usize,
    },
    /// The content is larger than [`MetainfoLimits::max_total_length`].
    #[error("the content is {total} bytes, the limit is {limit}")]
    TotalTooLarge {
        /// The content size (saturated at `u64::MAX`).
        total: u64,
        /// The limit in force.
        limit: u64,
    },
    /// A source path (or a folder entry) is not a regular file.
    #[error("{} is not a regular file", path.display())]
    NotAFile {
        /// The path on disk.
        path: PathBuf,
    },
    /// A file name found in a folder cannot be a torrent path component.
    #[error("{} cannot be named in a torrent: {source}", path.display())]
    BadDiskName {
        /// The path on disk.
        path: PathBuf,
        /// What is wrong with the name.
        #[source]
        source: PathError,
    },
    /// A file got shorter between measuring it and hashing it.
    #[error("{} changed while it was being hashed", path.display())]
    FileChanged {
        /// The path on disk.
        path: PathBuf,
    },
    /// Reading a file or folder failed.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The path on disk.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A hashing thread could not be started.
    #[error("cannot start a hashing thread: {0}")]
    Spawn(#[source] io::Error),
    /// The torrent would not be valid: bad name, duplicate or clashing paths, bad piece
    /// length, too many trackers or web seeds.
    #[error(transparent)]
    Invalid(#[from] MetainfoError),
}

/// Builds a torrent from files in memory or on disk.
///
/// Files are sorted by their `/`-joined path (byte order), whatever order they were added
/// in. One file whose path is a single component gives a single-file torrent named after
/// that file (unless [`TorrentBuilder::folder`] asks for a folder); anything else gives a
/// multi-file torrent whose folder is the builder's `name`.
#[derive(Debug, Clone)]
pub struct TorrentBuilder {
    name: String,
    entries: Vec<(RelativePath, Source)>,
    piece_length: Option<u32>,
    folder: bool,
    private: bool,
    announce: Option<String>,
    announce_list: Vec<Vec<String>>,
    url_list: Vec<String>,
    comment: Option<String>,
    created_by: Option<String>,
    creation_date: Option<i64>,
    threads: Option<NonZeroUsize>,
    limits: MetainfoLimits,
}

impl TorrentBuilder {
    /// A builder for a torrent whose folder (for a multi-file torrent) is `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            entries: Vec::new(),
            piece_length: None,
            folder: false,
            private: false,
            announce: None,
            announce_list: Vec::new(),
            url_list: Vec::new(),
            comment: None,
            created_by: None,
            creation_date: None,
            threads: None,
            limits: MetainfoLimits::DEFAULT,
        }
    }

    /// Adds a file at `path` (inside the torrent's folder) with bytes from `source`.
    pub fn add(mut self, path: RelativePath, source: Source) -> Self {
        self.entries.push((path, source));
        self
    }

    /// Adds a file whose bytes are in memory.
    pub fn add_bytes(self, path: RelativePath, bytes: impl Into<Vec<u8>>) -> Self {
        self.add(path, Source::Bytes(bytes.into()))
    }

    /// Adds a file read from `disk_path` when the torrent is built.
    pub fn add_file(self, path: RelativePath, disk_path: impl Into<PathBuf>) -> Self {
        self.add(path, Source::File(disk_path.into()))
    }

    /// Adds every file below the folder `root`, named by its path relative to `root`.
    /// Symbolic links are followed. Fails on names that are not UTF-8 or not valid torrent
    /// path components, and on anything that is neither a file nor a folder; no error is
    /// skipped.
    pub fn add_dir(mut self, root: &Path) -> Result<Self, BuildError> {
        let mut found = Vec::new();
        walk(root, &mut Vec::new(), &mut found)?;
        if found.is_empty() {
            return Err(BuildError::NoFiles);
        }
        self.entries.extend(found);
        Ok(self)
    }

    /// Sets the piece length (a power of two from 16 KiB to 16 MiB) instead of choosing one
    /// with [`auto_piece_length`].
    pub fn piece_length(mut self, length: u32) -> Self {
        self.piece_length = Some(length);
        self
    }

    /// Makes a multi-file torrent (content in the folder `name`) even for a single file.
    pub fn folder(mut self, folder: bool) -> Self {
        self.folder = folder;
        self
    }

    /// Sets the BEP 27 private flag (written as `private` in the info dictionary; changes the
    /// info-hash).
    pub fn private(mut self, private: bool) -> Self {
        self.private = private;
        self
    }

    /// Sets the main tracker URL.
    pub fn announce(mut self, url: impl Into<String>) -> Self {
        self.announce = Some(url.into());
        self
    }

    /// Sets the tracker tiers (BEP 12).
    pub fn announce_list(mut self, tiers: Vec<Vec<String>>) -> Self {
        self.announce_list = tiers;
        self
    }

    /// Sets the web seeds (BEP 19).
    pub fn url_list(mut self, urls: Vec<String>) -> Self {
        self.url_list = urls;
        self
    }

    /// Sets the comment.
    pub fn comment(mut self, comment: impl Into<String>) -> Self {
        self.comment = Some(comment.into());
        self
    }

    /// Sets the `created by` program name.
    pub fn created_by(mut self, created_by: impl Into<String>) -> Self {
        self.created_by = Some(created_by.into());
        self
    }

    /// Sets the creation date (seconds since the Unix epoch); none by default, so that the
    /// output depends on the content alone.
    pub fn creation_date(mut self, seconds: i64) -> Self {
        self.creation_date = Some(seconds);
        self
    }

    /// Hashes with at most `threads` threads (default: all cores). Output does not depend
    /// on it.
    pub fn threads(mut self, threads: NonZeroUsize) -> Self {
        self.threads = Some(threads);
        self
    }

    /// Applies `limits` to the content and to the result (default [`MetainfoLimits::DEFAULT`]).
    pub fn limits(mut self, limits: MetainfoLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Reads and hashes the files and returns the torrent.
    pub fn build(&self) -> Result<Metainfo, BuildError> {
        let limits = &self.limits;
        if self.entries.is_empty() {
            return Err(BuildError::NoFiles);
        }
        if self.entries.len() > limits.max_files {
            return Err(BuildError::TooManyFiles {
                count: self.entries.len(),
                limit: limits.max_files,
            });
        }
        let mut entries: Vec<&(RelativePath, Source)> = self.entries.iter().collect();
        entries.sort_by_cached_key(|(path, _)| path.to_string());
        check_unique_paths(entries.iter().map(|(path, _)| path))?;

        let single = !self.folder && entries.len() == 1 && entries[0].0.components().len() == 1;
        let name = if single {
            entries[0].0.file_name().to_owned()
        } else {
            RelativePath::from_components([self.name.as_str()])
                .map_err(MetainfoError::InvalidName)?;
            for (index, (path, _)) in entries.iter().enumerate() {
                path.prefixed(&self.name)
                    .map_err(|source| MetainfoError::InvalidPath { index, source })?;
            }
            self.name.clone()
        };

        let mut planned = Vec::with_capacity(entries.len());
        let mut total: u64 = 0;
        for (_, source) in &entries {
            let length = source_length(source)?;
            planned.push(Planned {
                source,
                offset: total,
                length,
            });
            total = total.saturating_add(length);
        }
        if total > limits.max_total_length {
            return Err(BuildError::TotalTooLarge {
                total,
                limit: limits.max_total_length,
            });
        }
        if total == 0 {
            return Err(MetainfoError::Empty.into());
        }
        let piece_length = match self.piece_length {
            Some(length) => check_piece_length(i64::from(length))?,
            None => auto_piece_length(total),
        };

        let threads = self
            .threads
            .or_else(|| std::thread::available_parallelism().ok())
            .map_or(1, NonZeroUsize::get);
        let pieces = hash_pieces(&planned, piece_length, total, threads)?;

        let mut info = std::collections::BTreeMap::new();
        if single {
            info.insert(b"length".to_vec(), length_value(total));
        } else {
            let files = entries
                .iter()
                .zip(&planned)
                .map(|((path, _), plan)| {
                    let components = path
                        .components()
                        .iter()
                        .map(|c| Value::bytes(c.as_bytes()))
                        .collect();
                    [
                        ("length", length_value(plan.length)),
                        ("path", Value::List(components)),
                    ]
                    .into_iter()
                    .collect()
                })
                .collect();
            info.insert(b"files".to_vec(), Value::List(files));
        }
        info.insert(b"name".to_vec(), Value::bytes(name.as_bytes()));
        info.insert(
            b"piece length".to_vec(),
            Value::Int(i64::from(piece_length)),
        );
        info.insert(b"pieces".to_vec(), Value::Bytes(pieces.concat()));
        if self.private {
            info.insert(b"private".to_vec(), Value::Int(1));
        }
        let info_bytes = Value::Dict(info).to_bytes();

        let bytes = encode_torrent(
            &Outer {
                announce: self.announce.as_deref(),
                announce_list: &self.announce_list,
                url_list: &self.url_list,
                comment: self.comment.as_deref(),
                created_by: self.created_by.as_deref(),
                creation_date: self.creation_date,
            },
            &info_bytes,
        );
        Ok(Metainfo::from_bytes_with(&bytes, limits)?)
    }
}

/// The piece length for `total` bytes: the smallest power of two that gives at most
/// [`TARGET_MAX_PIECES`] pieces, kept within [`MIN_PIECE_LENGTH`] and [`MAX_PIECE_LENGTH`].
pub fn auto_piece_length(total: u64) -> u32 {
    let wanted = total
        .div_ceil(TARGET_MAX_PIECES)
        .checked_next_power_of_two()
        .unwrap_or(u64::MAX);
    let clamped = wanted.clamp(u64::from(MIN_PIECE_LENGTH), u64::from(MAX_PIECE_LENGTH));
    u32::try_from(clamped).unwrap_or(MAX_PIECE_LENGTH)
}

fn length_value(length: u64) -> Value {
    // Lengths are bounded by `max_total_length` before we get here; saturate regardless.
    Value::Int(i64::try_from(length).unwrap_or(i64::MAX))
}

fn walk(
    dir: &Path,
    prefix: &mut Vec<String>,
    found: &mut Vec<(RelativePath, Source)>,
) -> Result<(), BuildError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BuildError::Io { path, source }
    };
    let mut children = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        children.push(entry.path());
    }
    children.sort();
    for path in children {
        let bad_name = |source| BuildError::BadDiskName {
            path: path.clone(),
            source,
        };
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| bad_name(PathError::NotUtf8))?
            .to_owned();
        prefix.push(name);
        let relative = RelativePath::from_components(prefix.clone()).map_err(bad_name)?;
        let meta = std::fs::metadata(&path).map_err(io_err(&path))?;
        if meta.is_dir() {
            walk(&path, prefix, found)?;
        } else if meta.is_file() {
            found.push((relative, Source::File(path)));
        } else {
            return Err(BuildError::NotAFile { path });
        }
        prefix.pop();
    }
    Ok(())
}

fn source_length(source: &Source) -> Result<u64, BuildError> {
    match source {
        Source::Bytes(bytes) => Ok(bytes.len() as u64),
        Source::File(path) => {
            let meta = std::fs::metadata(path).map_err(|source| BuildError::Io {
                path: path.clone(),
                source,
            })?;
            if !meta.is_file() {
                return Err(BuildError::NotAFile { path: path.clone() });
            }
            Ok(meta.len())
        }
    }
}

/// A file placed in the torrent's byte string.
struct Planned<'a> {
    source: &'a Source,
    offset: u64,
    length: u64,
}

/// Hashes every piece with up to `threads` threads, each taking the next job in turn (see
/// the module docs).
fn hash_pieces(
    files: &[Planned<'_>],
    piece_length: u32,
    total: u64,
    threads: usize,
) -> Result<Vec<[u8; 20]>, BuildError> {
    let count = total.div_ceil(u64::from(piece_length));
    let count = usize::try_from(count).map_err(|_| BuildError::TotalTooLarge {
        total,
        limit: u64::try_from(usize::MAX).unwrap_or(u64::MAX),
    })?;
    let plan = JobPlan::new(piece_length, total);
    let jobs = usize::try_from(plan.jobs).unwrap_or(usize::MAX);
    let threads = threads
        .min(count / MIN_PIECES_PER_THREAD)
        .min(jobs)
        .min(BUFFER_BUDGET / plan.job_bytes)
        .max(1);
    let source = Mutex::new(JobSource {
        reader: SpanReader {
            files,
            open: None,
            advised: 0,
        },
        next: 0,
        stop: false,
    });
    let pieces = Mutex::new(vec![[0u8; 20]; count]);
    if threads == 1 {
        hash_jobs(&plan, &source, &pieces)?;
    } else {
        std::thread::scope(|scope| {
            let mut handles = Vec::with_capacity(threads - 1);
            for t in 1..threads {
                let (plan, source, pieces) = (&plan, &source, &pieces);
                let spawned = std::thread::Builder::new()
                    .name(format!("torrent-hash-{t}"))
                    .spawn_scoped(scope, move || hash_jobs(plan, source, pieces));
                match spawned {
                    Ok(handle) => handles.push(handle),
                    Err(error) => {
                        lock(source).stop = true;
                        return Err(BuildError::Spawn(error));
                    }
                }
            }
            // This thread hashes too.
            let mut result = hash_jobs(&plan, &source, &pieces);
            for handle in handles {
                let joined = handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                result = result.and(joined);
            }
            result
        })?;
    }
    Ok(pieces.into_inner().unwrap_or_else(|e| e.into_inner()))
}

/// The shared reading side: the reader and the next job to hand out, behind one lock so
/// that jobs are read one after another, in order.
struct JobSource<'a> {
    reader: SpanReader<'a>,
    next: u64,
    /// Set when a read failed: the other threads stop at their next job.
    stop: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic in another hashing thread is re-raised when it is joined; the data behind
    // these locks stays consistent whatever the panic interrupted.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A hashing thread: takes the next job and reads it into its own buffer (holding the lock),
/// then hashes it (not holding it), until the jobs run out or a read fails.
fn hash_jobs(
    plan: &JobPlan,
    source: &Mutex<JobSource<'_>>,
    pieces: &Mutex<Vec<[u8; 20]>>,
) -> Result<(), BuildError> {
    // No larger than the content: most releases are far smaller than a job.
    let mut buffer = vec![
        0;
        plan.job_bytes
            .min(usize::try_from(plan.total).unwrap_or(usize::MAX))
    ];
    loop {
        let (job, len) = {
            let mut source = lock(source);
            if source.stop || source.next >= plan.jobs {
                return Ok(());
            }
            let job = source.next;
            source.next += 1;
            let range = plan.range(job);
            let len = range_len(&range);
            if let Err(error) = source.reader.fill(range, &mut buffer[..len]) {
                source.stop = true;
                return Err(error);
            }
            (job, len)
        };
        let hashes = hash_job(&buffer[..len], plan.piece_length as u32);
        let first = plan.first_piece(job);
        if let Some(slots) = lock(pieces).get_mut(first..first + hashes.len()) {
            slots.copy_from_slice(&hashes);
        }
    }
}

/// How the torrent's byte string is cut into jobs: runs of whole pieces, each read into a
/// buffer and hashed by one thread.
#[derive(Debug, Clone, Copy)]
struct JobPlan {
    piece_length: u64,
    pieces_per_job: u64,
    /// Bytes per job (the last one may be shorter).
    job_bytes: usize,
    jobs: u64,
    total: u64,
}

impl JobPlan {
    fn new(piece_length: u32, total: u64) -> Self {
        let piece_length = u64::from(piece_length);
        let pieces_per_job = (JOB_BYTES / piece_length).max(1);
        let job = piece_length * pieces_per_job;
        Self {
            piece_length,
            pieces_per_job,
            // At most 16 MiB, or `JOB_BYTES`.
            job_bytes: usize::try_from(job).unwrap_or(usize::MAX),
            jobs: total.div_ceil(job),
            total,
        }
    }

    /// The bytes of job `job`.
    fn range(&self, job: u64) -> Range<u64> {
        let start = job * self.pieces_per_job * self.piece_length;
        start..(start + self.job_bytes as u64).min(self.total)
    }

    /// The index of the first piece of job `job`.
    fn first_piece(&self, job: u64) -> usize {
        // Below the piece count, which fits a usize.
        usize::try_from(job * self.pieces_per_job).unwrap_or(usize::MAX)
    }
}

/// The SHA-1 of every piece in `bytes`, which starts at a piece boundary.
fn hash_job(bytes: &[u8], piece_length: u32) -> Vec<[u8; 20]> {
    bytes
        .chunks(piece_length as usize)
        .map(|piece| Sha1::digest(piece).into())
        .collect()
}

fn range_len(range: &Range<u64>) -> usize {
    // Ranges come from a `JobPlan`, at most `job_bytes` (a usize) long.
    usize::try_from(range.end - range.start).unwrap_or(usize::MAX)
}

/// Reads byte ranges of the torrent's byte string, keeping the last file open so that
/// consecutive ranges read each file sequentially.
struct SpanReader<'a> {
    files: &'a [Planned<'a>],
    /// The open file: its index in `files`, the handle and the handle's position.
    open: Option<(usize, File, u64)>,
    /// How far into the open file the kernel has been asked to read ahead.
    advised: u64,
}

impl SpanReader<'_> {
    /// Fills `out` with the bytes at `range` (of the same length).
    fn fill(&mut self, range: Range<u64>, out: &mut [u8]) -> Result<(), BuildError> {
        let mut pos = range.start;
        let mut index = self.files.partition_point(|f| f.offset + f.length <= pos);
        while pos < range.end {
            let Some(file) = self.files.get(index) else {
                // Cannot happen: the total is the sum of the file lengths.
                break;
            };
            let file_end = file.offset + file.length;
            if file_end <= pos {
                index += 1;
                continue;
            }
            let run_end = file_end.min(range.end);
            let from = pos - file.offset;
            let to = run_end - file.offset;
            let at = range_len(&(range.start..pos));
            let Some(dest) = out.get_mut(at..at + range_len(&(pos..run_end))) else {
                break;
            };
            match file.source {
                Source::Bytes(bytes) => {
                    let from = usize::try_from(from).unwrap_or(usize::MAX);
                    let to = usize::try_from(to).unwrap_or(usize::MAX);
                    if let Some(slice) = bytes.get(from..to) {
                        dest.copy_from_slice(slice);
                    }
                }
                Source::File(path) => self.read_file(index, path, from, dest)?,
            }
            pos = run_end;
            index += 1;
        }
        Ok(())
    }

    /// Fills `out` from the file `index` (at `path`) at `offset`.
    fn read_file(
        &mut self,
        index: usize,
        path: &Path,
        offset: u64,
        out: &mut [u8],
    ) -> Result<(), BuildError> {
        let io_err = |source| BuildError::Io {
            path: path.to_path_buf(),
            source,
        };
        let (file, position) = match &mut self.open {
            Some((open_index, file, position)) if *open_index == index => (file, position),
            slot => {
                let file = File::open(path).map_err(io_err)?;
                advise(&file, 0, None, Advice::Sequential);
                self.advised = 0;
                let (_, file, position) = slot.insert((index, file, 0));
                (file, position)
            }
        };
        if *position != offset {
            file.seek(SeekFrom::Start(offset)).map_err(io_err)?;
            *position = offset;
        }
        file.read_exact(out).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                BuildError::FileChanged {
                    path: path.to_path_buf(),
                }
            } else {
                io_err(e)
            }
        })?;
        *position += out.len() as u64;
        // Ask for the next stretch now, so the disk reads it while this one is hashed.
        let ahead = *position + READ_AHEAD;
        let from = self.advised.max(*position);
        if let Some(len) = std::num::NonZeroU64::new(ahead.saturating_sub(from))
            && len.get() >= READ_AHEAD / 2
        {
            advise(file, from, Some(len), Advice::WillNeed);
            self.advised = ahead;
        }
        Ok(())
    }
}

/// Read-ahead hints for the kernel; none where it has no such call.
#[derive(Clone, Copy)]
enum Advice {
    /// The file is read front to back.
    Sequential,
    /// The range is read soon.
    WillNeed,
}

/// Passes a read-ahead hint for `file` to the kernel. A hint only: failures are ignored,
/// the reads that follow are correct either way.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn advise(file: &File, offset: u64, len: Option<std::num::NonZeroU64>, advice: Advice) {
    let advice = match advice {
        Advice::Sequential => rustix::fs::Advice::Sequential,
        Advice::WillNeed => rustix::fs::Advice::WillNeed,
    };
    let _ = rustix::fs::fadvise(file, offset, len, advice);
}

/// Passes a read-ahead hint for `file` to the kernel: nothing on this platform.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn advise(_: &File, _: u64, _: Option<std::num::NonZeroU64>, _: Advice) {}

#[cfg(test)]
mod tests;
