//! The seeder's store: published releases on disk, content-addressed by info-hash.
//!
//! Layout under the store folder `S`, for a release whose torrent has info-hash `H` (40
//! lowercase hex digits):
//!
//! | path | what |
//! |---|---|
//! | `S/H/<file>` | each file at [`RelativePath::to_path_under`]`(S/H)` of its path in [`Info::files`] (for our multi-file torrents the torrent's name is the first component) |
//! | `S/H.torrent` | the torrent, exactly as registered at the tracker |
//! | `S/H.manifest.json` | the signed manifest (JSON form) |
//! | `S/H.withdrawn` | present when the release was unpublished but its content kept: it is listed, not served |
//! | `S/.tmp-<random>` | a release being written, or the remains of one a crash interrupted |
//!
//! The content folder is exactly what the client library's disk cache keeps for a finished
//! download, so the same verification code reads both, and a store folder can seed a client.
//!
//! **Atomicity.** A release is written into `S/.tmp-<random>/`, every file and folder
//! `fsync`ed, then renamed to `S/H` in one step; the torrent and then the manifest are
//! written to temporary names, `fsync`ed and renamed into place. A release is *complete*
//! exactly when `S/H.manifest.json` exists, and that file is written last (and removed first),
//! so whatever moment a crash hits, the store holds either the whole release or something
//! [`Store::list`] does not show. There is no index file to keep in step: the folder is the
//! index, and listing it is cheap at the number of releases a publisher has.
//!
//! **Trust.** The store is ours, but disks rot: [`Store::verify`] re-hashes every piece
//! against the torrent and every file against the manifest's SHA-256 and SRI values, and
//! reports the damage file by file.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rand::Rng;
use sha1::{Digest, Sha1};
use swarmcdn_proto::manifest::{
    FileDigests, FileHasher, Manifest, ManifestFile, ReleaseName, SignedManifest, Version,
};
use swarmcdn_proto::metainfo::{Info, Metainfo, TorrentFile};
use swarmcdn_proto::{InfoHash, RelativePath};

/// The prefix of temporary entries in the store folder.
pub const TEMP_PREFIX: &str = ".tmp-";
/// The suffix of a release's torrent file.
pub const TORRENT_SUFFIX: &str = ".torrent";
/// The suffix of a release's signed manifest.
pub const MANIFEST_SUFFIX: &str = ".manifest.json";
/// The suffix of the marker of a withdrawn release.
pub const WITHDRAWN_SUFFIX: &str = ".withdrawn";
/// Bytes copied (and hashed) at a time.
const COPY_CHUNK: usize = 256 * 1024;
/// The largest torrent file read from the store (the metainfo parser's own input bound).
const MAX_TORRENT_FILE: u64 = swarmcdn_proto::bencode::Limits::DEFAULT.max_input as u64;
/// The largest manifest file read from the store.
const MAX_MANIFEST_FILE: u64 = swarmcdn_proto::manifest::MAX_ENCODED_LEN as u64;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file system operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done (`create`, `read`, `rename`, ...).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A stored release's metadata cannot be read or does not agree with itself.
    #[error(
        "the stored release {info_hash} is damaged ({reason}); remove it with \
         `swarmcdn-seeder unpublish` or delete its files from the store"
    )]
    Corrupt {
        /// The release.
        info_hash: InfoHash,
        /// What is wrong.
        reason: String,
    },
    /// The release is already in the store.
    #[error(
        "{name} {version} is already in the store (info-hash {info_hash}); choose another \
         version, or remove it first with `swarmcdn-seeder unpublish {name} {version}`"
    )]
    AlreadyStored {
        /// The release's info-hash.
        info_hash: InfoHash,
        /// Its name.
        name: ReleaseName,
        /// Its version.
        version: Version,
    },
    /// The manifest handed to [`Store::commit`] names another torrent.
    #[error("the manifest names torrent {manifest}, the torrent's info-hash is {torrent}")]
    InfoHashMismatch {
        /// The info-hash in the manifest.
        manifest: InfoHash,
        /// The torrent's info-hash.
        torrent: InfoHash,
    },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_owned();
    move |source| StoreError::Io {
        action,
        path,
        source,
    }
}

/// A folder of releases; see the module docs for the layout.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// One complete release in the store.
#[derive(Debug, Clone)]
pub struct StoredRelease {
    /// The torrent's info-hash (also the folder's name).
    pub info_hash: InfoHash,
    /// The torrent.
    pub metainfo: Metainfo,
    /// The signed manifest.
    pub manifest: SignedManifest,
    /// `S/H`: the folder the torrent's files are under.
    pub content_dir: PathBuf,
    /// Whether the release was unpublished with its content kept (listed, not served).
    pub withdrawn: bool,
}

impl StoredRelease {
    /// The manifest. The store holds only manifests that `publish` signed and the tracker
    /// accepted (or that were checked against the torrent when loaded), so it is read without
    /// a trusted-key check; anything that hands it to others re-verifies.
    pub fn manifest(&self) -> &Manifest {
        self.manifest.unverified_manifest()
    }

    /// The release's name.
    pub fn name(&self) -> &ReleaseName {
        self.manifest().name()
    }

    /// The release's version.
    pub fn version(&self) -> &Version {
        self.manifest().version()
    }

    /// Where the torrent's file `file` is on disk.
    pub fn disk_path(&self, file: &TorrentFile) -> PathBuf {
        file.path.to_path_under(&self.content_dir)
    }

    /// The manifest's entry for the torrent's file `file`.
    pub fn manifest_file(&self, file: &TorrentFile) -> Option<&ManifestFile> {
        self.manifest()
            .file(&release_path(self.metainfo.info(), file)?)
    }
}

/// The path a torrent file has inside its release (what the manifest names): the torrent
/// path without the torrent's folder for a multi-file torrent, the file name otherwise.
pub fn release_path(info: &Info, file: &TorrentFile) -> Option<RelativePath> {
    if info.is_multi_file() {
        RelativePath::from_components(file.path.components().get(1..)?.to_vec()).ok()
    } else {
        Some(file.path.clone())
    }
}

/// A release being written: a temporary folder in the store, removed when dropped unless it
/// was committed with [`Store::commit`].
#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
    committed: bool,
}

impl Staging {
    /// The temporary folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the torrent path `path` is inside the staging folder.
    pub fn path_of(&self, path: &RelativePath) -> PathBuf {
        path.to_path_under(&self.dir)
    }

    /// Copies `source` to the torrent path `path` (parent folders created), computing the
    /// file's digests on the way and calling `progress` with every chunk's length. The copy is
    /// `fsync`ed. Returns the digests of the bytes written.
    pub fn add_file(
        &self,
        path: &RelativePath,
        source: &Path,
        mut progress: impl FnMut(u64),
    ) -> Result<FileDigests, StoreError> {
        let target = self.path_of(path);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(io_error("create", parent))?;
        }
        let mut input = File::open(source).map_err(io_error("read", source))?;
        let mut output = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .map_err(io_error("create", &target))?;
        let mut hasher = FileHasher::new();
        let mut buffer = vec![0u8; COPY_CHUNK];
        loop {
            let n = match input.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_error("read", source)(e)),
            };
            let chunk = &buffer[..n];
            hasher.update(chunk);
            output
                .write_all(chunk)
                .map_err(io_error("write", &target))?;
            progress(n as u64);
        }
        output.sync_all().map_err(io_error("sync", &target))?;
        Ok(hasher.finish())
    }

    /// Writes `bytes` to the torrent path `path` (for content held in memory).
    pub fn add_bytes(&self, path: &RelativePath, bytes: &[u8]) -> Result<FileDigests, StoreError> {
        let target = self.path_of(path);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(io_error("create", parent))?;
        }
        let mut output = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .map_err(io_error("create", &target))?;
        output
            .write_all(bytes)
            .map_err(io_error("write", &target))?;
        output.sync_all().map_err(io_error("sync", &target))?;
        Ok(FileHasher::digest(bytes))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed
            && let Err(error) = fs::remove_dir_all(&self.dir)
            && error.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.dir.display(), %error, "cannot remove a staging folder");
        }
    }
}

impl Store {
    /// Opens the store at `root`, creating the folder if needed.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(io_error("create the store folder", &root))?;
        Ok(Self { root })
    }

    /// The store folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `S/H`.
    pub fn content_dir(&self, info_hash: &InfoHash) -> PathBuf {
        self.root.join(info_hash.to_hex())
    }

    fn meta_path(&self, info_hash: &InfoHash, suffix: &str) -> PathBuf {
        self.root.join(format!("{}{suffix}", info_hash.to_hex()))
    }

    /// Starts writing a release: a new temporary folder in the store.
    pub fn stage(&self) -> Result<Staging, StoreError> {
        let dir = self.temp_path("");
        fs::create_dir(&dir).map_err(io_error("create", &dir))?;
        Ok(Staging {
            dir,
            committed: false,
        })
    }

    fn temp_path(&self, suffix: &str) -> PathBuf {
        let random = rand::rng().next_u64();
        self.root
            .join(format!("{TEMP_PREFIX}{random:016x}{suffix}"))
    }

    /// Moves a staged release into place under its info-hash and writes its torrent and
    /// manifest (the manifest last: see the module docs). Fails if the release is already in
    /// the store; leftovers of an interrupted write of the same release are replaced.
    pub fn commit(
        &self,
        mut staging: Staging,
        metainfo: &Metainfo,
        manifest: &SignedManifest,
    ) -> Result<StoredRelease, StoreError> {
        let info_hash = metainfo.info_hash();
        let named = manifest.unverified_manifest().info_hash();
        if named != info_hash {
            return Err(StoreError::InfoHashMismatch {
                manifest: named,
                torrent: info_hash,
            });
        }
        if let Some(existing) = self.load(&info_hash)? {
            return Err(StoreError::AlreadyStored {
                info_hash,
                name: existing.name().clone(),
                version: existing.version().clone(),
            });
        }
        // Not complete, so anything here is a leftover of an interrupted write or removal.
        self.remove_files(&info_hash)?;

        sync_tree(&staging.dir)?;
        let content_dir = self.content_dir(&info_hash);
        fs::rename(&staging.dir, &content_dir).map_err(io_error("rename", &staging.dir))?;
        staging.committed = true;
        sync_dir(&self.root)?;
        self.write_atomically(
            &self.meta_path(&info_hash, TORRENT_SUFFIX),
            &metainfo.to_bytes(),
        )?;
        self.write_atomically(
            &self.meta_path(&info_hash, MANIFEST_SUFFIX),
            manifest.to_json_pretty().as_bytes(),
        )?;
        Ok(StoredRelease {
            info_hash,
            metainfo: metainfo.clone(),
            manifest: manifest.clone(),
            content_dir,
            withdrawn: false,
        })
    }

    fn write_atomically(&self, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        let temp = self.temp_path(".part");
        let result = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)
                .map_err(io_error("create", &temp))?;
            file.write_all(bytes).map_err(io_error("write", &temp))?;
            file.sync_all().map_err(io_error("sync", &temp))?;
            fs::rename(&temp, path).map_err(io_error("rename", &temp))?;
            sync_dir(&self.root)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result
    }

    /// The info-hashes of the complete releases, withdrawn ones included.
    pub fn info_hashes(&self) -> Result<BTreeSet<InfoHash>, StoreError> {
        let mut found = BTreeSet::new();
        for entry in fs::read_dir(&self.root).map_err(io_error("list", &self.root))? {
            let entry = entry.map_err(io_error("list", &self.root))?;
            let name = entry.file_name();
            let Some(hex) = name.to_str().and_then(|n| n.strip_suffix(MANIFEST_SUFFIX)) else {
                continue;
            };
            if hex.len() == 40
                && let Ok(info_hash) = InfoHash::from_text(hex)
                && info_hash.to_hex() == hex
            {
                found.insert(info_hash);
            }
        }
        Ok(found)
    }

    /// The release `info_hash`, if it is complete in the store. Its torrent and manifest are
    /// parsed and checked against each other (and the folder must exist); a release that
    /// fails the checks is [`StoreError::Corrupt`].
    pub fn load(&self, info_hash: &InfoHash) -> Result<Option<StoredRelease>, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            info_hash: *info_hash,
            reason,
        };
        let manifest_path = self.meta_path(info_hash, MANIFEST_SUFFIX);
        let manifest_bytes = match read_bounded(&manifest_path, MAX_MANIFEST_FILE) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("read", &manifest_path)(e)),
        };
        let manifest = SignedManifest::from_json(&manifest_bytes)
            .map_err(|e| corrupt(format!("its manifest does not parse: {e}")))?;
        let torrent_path = self.meta_path(info_hash, TORRENT_SUFFIX);
        let torrent_bytes = read_bounded(&torrent_path, MAX_TORRENT_FILE)
            .map_err(|e| corrupt(format!("cannot read {}: {e}", torrent_path.display())))?;
        let metainfo = Metainfo::from_bytes(&torrent_bytes)
            .map_err(|e| corrupt(format!("its torrent does not parse: {e}")))?;
        if metainfo.info_hash() != *info_hash {
            return Err(corrupt(format!(
                "its torrent has info-hash {}",
                metainfo.info_hash()
            )));
        }
        if manifest.unverified_manifest().info_hash() != *info_hash {
            return Err(corrupt(format!(
                "its manifest names torrent {}",
                manifest.unverified_manifest().info_hash()
            )));
        }
        let content_dir = self.content_dir(info_hash);
        if !content_dir.is_dir() {
            return Err(corrupt(format!("{} is missing", content_dir.display())));
        }
        let withdrawn = self.meta_path(info_hash, WITHDRAWN_SUFFIX).exists();
        Ok(Some(StoredRelease {
            info_hash: *info_hash,
            metainfo,
            manifest,
            content_dir,
            withdrawn,
        }))
    }

    /// Every complete release, sorted by name then version. Fails on the first release whose
    /// metadata is damaged (use [`Store::info_hashes`] and [`Store::load`] to go past it).
    pub fn list(&self) -> Result<Vec<StoredRelease>, StoreError> {
        let mut releases = Vec::new();
        for info_hash in self.info_hashes()? {
            if let Some(release) = self.load(&info_hash)? {
                releases.push(release);
            }
        }
        releases.sort_by(|a, b| (a.name(), a.version()).cmp(&(b.name(), b.version())));
        Ok(releases)
    }

    /// The release `name` at `version`, if the store has it.
    pub fn get(
        &self,
        name: &ReleaseName,
        version: &Version,
    ) -> Result<Option<StoredRelease>, StoreError> {
        Ok(self
            .list()?
            .into_iter()
            .find(|r| r.name() == name && r.version() == version))
    }

    /// Marks a release as withdrawn: it stays in the store (and in [`Store::list`]) but is
    /// no longer served. Returns whether the release exists.
    pub fn withdraw(&self, info_hash: &InfoHash) -> Result<bool, StoreError> {
        if self.load(info_hash)?.is_none() {
            return Ok(false);
        }
        self.write_atomically(&self.meta_path(info_hash, WITHDRAWN_SUFFIX), b"")?;
        Ok(true)
    }

    /// Whether release `info_hash` carries the withdrawn marker.
    pub fn is_withdrawn(&self, info_hash: &InfoHash) -> bool {
        self.meta_path(info_hash, WITHDRAWN_SUFFIX).exists()
    }

    /// When the manifest file of `info_hash` was last modified, if it exists.
    pub fn manifest_modified(&self, info_hash: &InfoHash) -> Option<SystemTime> {
        fs::metadata(self.meta_path(info_hash, MANIFEST_SUFFIX))
            .and_then(|m| m.modified())
            .ok()
    }

    /// Removes a release and its content. The manifest goes first, so an interrupted removal
    /// leaves an incomplete release that is neither listed nor served. Returns whether
    /// anything was there.
    pub fn remove(&self, info_hash: &InfoHash) -> Result<bool, StoreError> {
        self.remove_files(info_hash)
    }

    fn remove_files(&self, info_hash: &InfoHash) -> Result<bool, StoreError> {
        let mut removed = false;
        for suffix in [MANIFEST_SUFFIX, WITHDRAWN_SUFFIX, TORRENT_SUFFIX] {
            let path = self.meta_path(info_hash, suffix);
            match fs::remove_file(&path) {
                Ok(()) => removed = true,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("remove", &path)(e)),
            }
        }
        sync_dir(&self.root)?;
        let content_dir = self.content_dir(info_hash);
        if content_dir.exists() {
            // Rename first, so the content disappears in one step even if deleting the files
            // is interrupted; the temporary name is cleaned up later if so.
            let doomed = self.temp_path(".removed");
            fs::rename(&content_dir, &doomed).map_err(io_error("rename", &content_dir))?;
            fs::remove_dir_all(&doomed).map_err(io_error("remove", &doomed))?;
            removed = true;
        }
        Ok(removed)
    }

    /// Removes temporary entries older than `age`: the remains of writes or removals that a
    /// crash interrupted. Younger ones may belong to a `publish` running right now. Returns
    /// how many were removed.
    pub fn remove_stale_temporaries(&self, age: Duration) -> Result<usize, StoreError> {
        let now = SystemTime::now();
        let mut removed = 0;
        for entry in fs::read_dir(&self.root).map_err(io_error("list", &self.root))? {
            let entry = entry.map_err(io_error("list", &self.root))?;
            let is_temp = entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(TEMP_PREFIX));
            if !is_temp {
                continue;
            }
            let path = entry.path();
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            let old = meta
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|elapsed| elapsed >= age);
            if !old {
                continue;
            }
            let result = if meta.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            result.map_err(io_error("remove", &path))?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Re-hashes release `info_hash`: every piece against the torrent, every file against the
    /// manifest's size, SHA-256 and SRI value. Returns `Ok(None)` if the release is not in
    /// the store; damage is in the report, not an error.
    pub fn verify(&self, info_hash: &InfoHash) -> Result<Option<VerifyReport>, StoreError> {
        let Some(release) = self.load(info_hash)? else {
            return Ok(None);
        };
        Ok(Some(verify_release(&release)))
    }
}

fn read_bounded(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let file = File::open(path)?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {limit} bytes"),
        ));
    }
    Ok(bytes)
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("sync", dir))
}

/// `fsync`s every folder below `dir` and `dir` itself (the files were synced when written).
fn sync_tree(dir: &Path) -> Result<(), StoreError> {
    for entry in fs::read_dir(dir).map_err(io_error("list", dir))? {
        let entry = entry.map_err(io_error("list", dir))?;
        if entry.file_type().map_err(io_error("list", dir))?.is_dir() {
            sync_tree(&entry.path())?;
        }
    }
    sync_dir(dir)
}

/// What [`Store::verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// The release.
    pub info_hash: InfoHash,
    /// Its name.
    pub name: ReleaseName,
    /// Its version.
    pub version: Version,
    /// How many pieces were checked.
    pub pieces: u32,
    /// The pieces whose SHA-1 does not match the torrent, in order.
    pub bad_pieces: Vec<u32>,
    /// The damaged files (empty when the release is intact).
    pub damaged: Vec<FileDamage>,
}

impl VerifyReport {
    /// Whether every piece and every file checked out.
    pub fn is_intact(&self) -> bool {
        self.bad_pieces.is_empty() && self.damaged.is_empty()
    }
}

/// One damaged file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDamage {
    /// The file's path inside the release (as the manifest names it).
    pub path: RelativePath,
    /// Everything wrong with it.
    pub problems: Vec<Problem>,
}

/// What can be wrong with a stored file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// The file is not there.
    Missing,
    /// The file cannot be read.
    Unreadable(String),
    /// The file has another size than the torrent says.
    WrongSize {
        /// The size in the torrent.
        expected: u64,
        /// The size on disk.
        actual: u64,
    },
    /// Pieces holding bytes of the file fail their SHA-1 check.
    BadPieces(Vec<u32>),
    /// The file's SHA-256 or SRI value differs from the manifest's.
    DigestMismatch(String),
    /// The manifest has no entry for the file.
    NotInManifest,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Missing => f.write_str("missing"),
            Problem::Unreadable(error) => write!(f, "unreadable: {error}"),
            Problem::WrongSize { expected, actual } => {
                write!(f, "{actual} bytes, the torrent says {expected}")
            }
            Problem::BadPieces(pieces) => write!(f, "{} bad piece(s): {pieces:?}", pieces.len()),
            Problem::DigestMismatch(error) => f.write_str(error),
            Problem::NotInManifest => f.write_str("not listed in the manifest"),
        }
    }
}

/// Reads the release in torrent order, piece by piece: each piece is SHA-1-checked, and its
/// bytes feed the digests of the files they belong to (which arrive in file order, since the
/// pieces run through the files in order). One pass over the data gives both checks.
fn verify_release(release: &StoredRelease) -> VerifyReport {
    let info = release.metainfo.info();
    let files = info.files();
    let mut hashers: Vec<FileHasher> = vec![FileHasher::new(); files.len()];
    let mut problems: Vec<Vec<Problem>> = vec![Vec::new(); files.len()];
    let mut handles: Vec<Option<File>> = Vec::with_capacity(files.len());
    for (index, file) in files.iter().enumerate() {
        let path = release.disk_path(file);
        match File::open(&path).and_then(|f| f.metadata().map(|m| (f, m))) {
            Ok((handle, meta)) => {
                if meta.len() != file.length {
                    problems[index].push(Problem::WrongSize {
                        expected: file.length,
                        actual: meta.len(),
                    });
                }
                handles.push(Some(handle));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                problems[index].push(Problem::Missing);
                handles.push(None);
            }
            Err(e) => {
                problems[index].push(Problem::Unreadable(e.to_string()));
                handles.push(None);
            }
        }
    }

    let mut bad_pieces = Vec::new();
    let mut bad_by_file: Vec<Vec<u32>> = vec![Vec::new(); files.len()];
    let mut buffer = vec![0u8; info.piece_length() as usize];
    for piece in 0..info.piece_count() {
        let mut sha1 = Sha1::new();
        let mut ok = true;
        let runs: Vec<_> = info
            .piece_file_ranges(piece)
            .into_iter()
            .flatten()
            .collect();
        for run in &runs {
            // Bounded by the piece length, which fits in memory (at most 16 MiB).
            let chunk = &mut buffer[..run.length as usize];
            let read = match &handles[run.file_index] {
                Some(handle) => handle.read_exact_at(chunk, run.file_offset),
                None => Err(io::Error::from(io::ErrorKind::NotFound)),
            };
            if read.is_err() {
                chunk.fill(0);
                ok = false;
            }
            sha1.update(&*chunk);
            hashers[run.file_index].update(chunk);
        }
        let expected = info.piece_hash(piece).copied().unwrap_or_default();
        if !ok || <[u8; 20]>::from(sha1.finalize()) != expected {
            bad_pieces.push(piece);
            for run in &runs {
                let list = &mut bad_by_file[run.file_index];
                if list.last() != Some(&piece) {
                    list.push(piece);
                }
            }
        }
    }

    let mut damaged = Vec::new();
    for (index, (file, hasher)) in files.iter().zip(hashers).enumerate() {
        let mut found = std::mem::take(&mut problems[index]);
        let bad = std::mem::take(&mut bad_by_file[index]);
        if !bad.is_empty() {
            found.push(Problem::BadPieces(bad));
        }
        let intact_so_far = found.is_empty();
        match release.manifest_file(file) {
            None => found.push(Problem::NotInManifest),
            Some(entry) if intact_so_far => {
                if let Err(error) = entry.verify_digests(&hasher.finish()) {
                    found.push(Problem::DigestMismatch(error.to_string()));
                }
            }
            Some(_) => {}
        }
        if !found.is_empty() {
            let path = release_path(info, file).unwrap_or_else(|| file.path.clone());
            damaged.push(FileDamage {
                path,
                problems: found,
            });
        }
    }
    VerifyReport {
        info_hash: release.info_hash,
        name: release.name().clone(),
        version: release.version().clone(),
        pieces: info.piece_count(),
        bad_pieces,
        damaged,
    }
}

/// Releases made in memory, for the crate's unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use swarmcdn_proto::manifest::{ManifestFile, content_type_for_path, signing_key_from_seed};
    use swarmcdn_proto::metainfo::TorrentBuilder;

    /// Stages and commits a release with `files` (path, bytes) under torrent name `name`.
    pub(crate) fn add(
        store: &Store,
        name: &str,
        version: Version,
        files: &[(&str, Vec<u8>)],
    ) -> StoredRelease {
        try_add(store, name, version, files).unwrap()
    }

    pub(crate) fn try_add(
        store: &Store,
        name: &str,
        version: Version,
        files: &[(&str, Vec<u8>)],
    ) -> Result<StoredRelease, StoreError> {
        let staging = store.stage().unwrap();
        let torrent_name = format!("{name}-{version}");
        let mut builder = TorrentBuilder::new(&torrent_name).folder(true);
        let mut entries = Vec::new();
        for (path, bytes) in files {
            let rel = RelativePath::parse(path).unwrap();
            let full = rel.prefixed(&torrent_name).unwrap();
            let digests = staging.add_bytes(&full, bytes).unwrap();
            builder = builder.add_file(rel.clone(), staging.path_of(&full));
            entries.push(
                ManifestFile::from_digests(rel, content_type_for_path(path), &digests).unwrap(),
            );
        }
        let metainfo = builder.piece_length(16 * 1024).build().unwrap();
        let manifest = Manifest::new(
            name.parse().unwrap(),
            version,
            metainfo.info_hash(),
            1_700_000_000,
            entries,
        )
        .unwrap()
        .sign(&signing_key_from_seed([3; 32]));
        store.commit(staging, &metainfo, &manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{add, try_add};
    use super::*;
    use swarmcdn_proto::manifest::{ManifestFile, signing_key_from_seed};

    fn entries(dir: &Path) -> BTreeSet<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    }

    #[test]
    fn commit_lays_out_content_torrent_and_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let release = add(
            &store,
            "share-button",
            Version::new(1, 0, 0),
            &[
                ("button.js", b"js".to_vec()),
                ("icons/a.svg", b"<svg/>".to_vec()),
            ],
        );
        let hex = release.info_hash.to_hex();
        assert_eq!(
            entries(dir.path()),
            [
                hex.clone(),
                format!("{hex}.manifest.json"),
                format!("{hex}.torrent")
            ]
            .into_iter()
            .collect()
        );
        let js = dir.path().join(&hex).join("share-button-1.0.0/button.js");
        assert_eq!(fs::read(js).unwrap(), b"js");
        let svg = dir.path().join(&hex).join("share-button-1.0.0/icons/a.svg");
        assert_eq!(fs::read(svg).unwrap(), b"<svg/>");
        for file in release.metainfo.info().files() {
            assert!(release.disk_path(file).is_file());
            assert!(release.manifest_file(file).is_some());
        }
    }

    #[test]
    fn list_get_withdraw_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let b = add(&store, "b", Version::new(1, 0, 0), &[("x", b"1".to_vec())]);
        let a2 = add(&store, "a", Version::new(2, 0, 0), &[("x", b"2".to_vec())]);
        let a1 = add(&store, "a", Version::new(1, 0, 0), &[("x", b"3".to_vec())]);
        let listed: Vec<InfoHash> = store.list().unwrap().iter().map(|r| r.info_hash).collect();
        assert_eq!(listed, [a1.info_hash, a2.info_hash, b.info_hash]);
        let found = store
            .get(&"a".parse().unwrap(), &Version::new(2, 0, 0))
            .unwrap()
            .unwrap();
        assert_eq!(found.info_hash, a2.info_hash);
        assert!(
            store
                .get(&"a".parse().unwrap(), &Version::new(3, 0, 0))
                .unwrap()
                .is_none()
        );

        assert!(store.withdraw(&a2.info_hash).unwrap());
        assert!(store.load(&a2.info_hash).unwrap().unwrap().withdrawn);

        assert!(store.remove(&a2.info_hash).unwrap());
        assert!(store.load(&a2.info_hash).unwrap().is_none());
        assert!(!store.remove(&a2.info_hash).unwrap());
        assert_eq!(store.list().unwrap().len(), 2);
        assert!(
            !entries(dir.path())
                .iter()
                .any(|e| e.starts_with(&a2.info_hash.to_hex()))
        );
    }

    #[test]
    fn committing_the_same_release_twice_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        add(&store, "a", Version::new(1, 0, 0), &[("x", b"1".to_vec())]);
        let result = try_add(&store, "a", Version::new(1, 0, 0), &[("x", b"1".to_vec())]);
        assert!(
            matches!(result, Err(StoreError::AlreadyStored { .. })),
            "{result:?}"
        );
        // The failed staging folder was cleaned up.
        assert!(
            !entries(dir.path())
                .iter()
                .any(|e| e.starts_with(TEMP_PREFIX))
        );
    }

    #[test]
    fn an_uncommitted_staging_folder_disappears() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        {
            let staging = store.stage().unwrap();
            staging
                .add_bytes(&RelativePath::parse("n/x").unwrap(), b"data")
                .unwrap();
            assert!(staging.dir().exists());
        }
        assert!(entries(dir.path()).is_empty());
    }

    #[test]
    fn a_release_without_its_manifest_is_not_listed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let release = add(&store, "a", Version::new(1, 0, 0), &[("x", b"1".to_vec())]);
        // A crash between writing the torrent and the manifest.
        fs::remove_file(
            dir.path()
                .join(format!("{}.manifest.json", release.info_hash)),
        )
        .unwrap();
        assert!(store.list().unwrap().is_empty());
        assert!(store.load(&release.info_hash).unwrap().is_none());
    }

    #[test]
    fn mismatched_metadata_is_reported_as_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = add(&store, "a", Version::new(1, 0, 0), &[("x", b"1".to_vec())]);
        let b = add(&store, "b", Version::new(1, 0, 0), &[("x", b"2".to_vec())]);
        fs::copy(
            dir.path().join(format!("{}.torrent", b.info_hash)),
            dir.path().join(format!("{}.torrent", a.info_hash)),
        )
        .unwrap();
        assert!(matches!(
            store.load(&a.info_hash),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn stale_temporaries_are_removed_and_fresh_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let staging = store.stage().unwrap();
        assert_eq!(
            store
                .remove_stale_temporaries(Duration::from_secs(3600))
                .unwrap(),
            0
        );
        assert!(staging.dir().exists());
        assert_eq!(store.remove_stale_temporaries(Duration::ZERO).unwrap(), 1);
        assert!(!staging.dir().exists());
    }

    #[test]
    fn verify_passes_an_intact_release_and_finds_damage_per_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let big: Vec<u8> = (0..50_000u32).map(|i| (i * 7) as u8).collect();
        let release = add(
            &store,
            "a",
            Version::new(1, 0, 0),
            &[
                ("a.bin", big.clone()),
                ("b.txt", b"hello".to_vec()),
                ("empty", Vec::new()),
            ],
        );
        let report = store.verify(&release.info_hash).unwrap().unwrap();
        assert!(report.is_intact(), "{report:?}");
        assert_eq!(report.pieces, 4);

        // Flip one byte in the second piece of a.bin.
        let files = release.metainfo.info().files();
        let path = release.disk_path(&files[0]);
        let mut bytes = fs::read(&path).unwrap();
        bytes[20_000] ^= 0x01;
        fs::write(&path, &bytes).unwrap();
        let report = store.verify(&release.info_hash).unwrap().unwrap();
        assert_eq!(report.bad_pieces, [1]);
        assert_eq!(report.damaged.len(), 1);
        assert_eq!(report.damaged[0].path.to_string(), "a.bin");
        assert_eq!(report.damaged[0].problems, [Problem::BadPieces(vec![1])]);

        // A missing file is damage too, and the piece it shares with a.bin fails.
        fs::write(&path, &big).unwrap();
        fs::remove_file(release.disk_path(&files[1])).unwrap();
        let report = store.verify(&release.info_hash).unwrap().unwrap();
        assert_eq!(report.bad_pieces, [3]);
        let damaged: Vec<String> = report.damaged.iter().map(|d| d.path.to_string()).collect();
        assert_eq!(damaged, ["a.bin", "b.txt"]);
        assert_eq!(report.damaged[1].problems[0], Problem::Missing);
    }

    #[test]
    fn verify_catches_a_wrong_digest_where_the_pieces_still_match() {
        // Equal-length change in a file whose manifest entry disagrees: build the manifest
        // from other bytes so only the SHA-256 check can see it.
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let release = add(
            &store,
            "a",
            Version::new(1, 0, 0),
            &[("x", b"abc".to_vec())],
        );
        let mut manifest_files = release.manifest().files().to_vec();
        manifest_files[0] =
            ManifestFile::from_bytes(manifest_files[0].path().clone(), "text/plain", b"abd")
                .unwrap();
        let manifest = Manifest::new(
            "a".parse().unwrap(),
            Version::new(1, 0, 0),
            release.info_hash,
            1,
            manifest_files,
        )
        .unwrap()
        .sign(&signing_key_from_seed([3; 32]));
        fs::write(
            dir.path()
                .join(format!("{}.manifest.json", release.info_hash)),
            manifest.to_json(),
        )
        .unwrap();
        let report = store.verify(&release.info_hash).unwrap().unwrap();
        assert!(report.bad_pieces.is_empty());
        assert!(matches!(
            report.damaged[0].problems[0],
            Problem::DigestMismatch(_)
        ));
    }
}
