//! What callers get back: a verified [`Release`] (from `get`) and a [`TorrentHandle`] (from
//! `add_torrent` / `add_magnet`).
//!
//! A release's files are named by their path in the *manifest* (`button.js`), not in the
//! torrent (`share-button-1.2.0/button.js`): the torrent's folder name is a detail of how
//! the seeder bundles a release. [`file_map`] pairs each manifest entry with its torrent
//! file, and [`verify_files`] checks each file's size, SHA-256 and SRI value against the
//! manifest, so a [`Release`] only ever hands out bytes the publisher signed, with an SRI
//! value browsers will accept.

use std::sync::Arc;

use bytes::Bytes;
use swarmcdn_proto::manifest::{FileHasher, Manifest, ManifestFile, SignedManifest};
use swarmcdn_proto::metainfo::{Info, Metainfo};
use swarmcdn_proto::{InfoHash, RelativePath};
use tokio::sync::watch;

use super::error::{GetError, ReadError};
use crate::session::{DownloadError, Progress, SessionHandle, SessionStats};
use crate::storage::{Store, StoreLease};

/// Files are hashed in reads of this size (a large release is never read whole).
const VERIFY_CHUNK: u64 = 1024 * 1024;

/// A verified release: every file's SHA-256 matched the publisher's signed manifest.
///
/// Holding it keeps the release's content readable: it holds a lease on the release's store
/// ([`Store::lease`]), and the cache never evicts a leased release. (An explicit
/// [`Client::remove`](crate::Client::remove) that deletes data refuses while it lives.)
#[derive(Debug, Clone)]
pub struct Release {
    manifest: SignedManifest,
    info_hash: InfoHash,
    store: StoreLease,
    /// For each manifest file (same order), its index in the torrent's files.
    files: Arc<[usize]>,
    progress: Progress,
}

impl Release {
    pub(crate) fn new(
        manifest: SignedManifest,
        store: StoreLease,
        files: Vec<usize>,
        progress: Progress,
    ) -> Self {
        Release {
            info_hash: store.store().info_hash(),
            manifest,
            store,
            files: files.into(),
            progress,
        }
    }

    /// The manifest (its signature was verified against a trusted key).
    pub fn manifest(&self) -> &Manifest {
        self.manifest.unverified_manifest()
    }

    /// The signed manifest as received (to pass on or store).
    pub fn signed_manifest(&self) -> &SignedManifest {
        &self.manifest
    }

    /// The release name.
    pub fn name(&self) -> &str {
        self.manifest().name().as_str()
    }

    /// The release version.
    pub fn version(&self) -> &swarmcdn_proto::manifest::Version {
        self.manifest().version()
    }

    /// The info-hash of the torrent that carries it.
    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }

    /// Every file: path, size, content type, SHA-256 and SRI value.
    pub fn files(&self) -> &[ManifestFile] {
        self.manifest().files()
    }

    /// The manifest entry of `path` (`button.js`).
    pub fn file(&self, path: &str) -> Option<&ManifestFile> {
        let path = RelativePath::parse(path).ok()?;
        self.manifest().file(&path)
    }

    /// The download's counters when the release was handed out (bytes from peers and from
    /// HTTP, for instance).
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// The content of the file at `path` (its path in the manifest).
    pub async fn bytes(&self, path: &str) -> Result<Bytes, ReadError> {
        let Some(position) = RelativePath::parse(path)
            .ok()
            .and_then(|p| self.files().iter().position(|f| f.path() == &p))
        else {
            return Err(ReadError::NoSuchFile(path.to_owned()));
        };
        let index = self.files[position];
        self.store
            .store()
            .read_file_async(index)
            .await
            .map_err(|source| ReadError::Storage {
                path: self.files()[position].path().clone(),
                source,
            })
    }
}

/// A torrent added with [`Client::add_torrent`](crate::Client::add_torrent) or
/// [`Client::add_magnet`](crate::Client::add_magnet). Dropping it does not stop the
/// download: the client keeps it (and then seeds it) until it is removed
/// ([`Client::remove`](crate::Client::remove)), evicted from the cache to make room, or the
/// client shuts down. Like a [`Release`], a live handle keeps the release from being
/// evicted.
#[derive(Debug, Clone)]
pub struct TorrentHandle {
    session: SessionHandle,
    _lease: StoreLease,
}

impl TorrentHandle {
    pub(crate) fn new(session: SessionHandle, lease: StoreLease) -> Self {
        TorrentHandle {
            session,
            _lease: lease,
        }
    }

    /// The torrent's info-hash.
    pub fn info_hash(&self) -> InfoHash {
        self.session.info_hash()
    }

    /// The torrent.
    pub fn metainfo(&self) -> &Metainfo {
        &self.session.metainfo
    }

    /// The progress now.
    pub fn progress(&self) -> Progress {
        self.session.progress.borrow().clone()
    }

    /// A watch on the progress (changes as pieces arrive; keeps its last value after the
    /// session ends).
    pub fn watch(&self) -> watch::Receiver<Progress> {
        self.session.progress.clone()
    }

    /// Waits until every piece is verified (or the session ended without that).
    pub async fn wait_complete(&self) -> Result<Progress, DownloadError> {
        self.session.wait_complete().await
    }

    /// A fresh, detailed snapshot (peers, scheduler counters); `None` once the session ended.
    pub async fn stats(&self) -> Option<SessionStats> {
        self.session.stats().await
    }

    /// The piece store (to read files by their torrent path once complete).
    pub fn store(&self) -> &Arc<Store> {
        &self.session.store
    }
}

/// For each manifest file, the index of the torrent file that carries it, checking sizes.
///
/// A multi-file torrent carries `<name>/<path>` for each manifest `<path>`; a single-file
/// torrent carries the one file of a one-file manifest.
pub(crate) fn file_map(manifest: &Manifest, info: &Info) -> Result<Vec<usize>, GetError> {
    let mut indexes = Vec::with_capacity(manifest.files().len());
    for file in manifest.files() {
        let index = if info.is_multi_file() {
            let mut components = vec![info.name().to_owned()];
            components.extend(file.path().components().iter().cloned());
            RelativePath::from_components(components)
                .ok()
                .and_then(|path| info.files().iter().position(|f| f.path == path))
        } else {
            (manifest.files().len() == 1).then_some(0)
        };
        let Some(index) = index else {
            return Err(GetError::Integrity {
                file: file.path().clone(),
                reason: "the torrent does not carry this file".into(),
            });
        };
        let length = info.files().get(index).map_or(0, |f| f.length);
        if length != file.size() {
            return Err(GetError::Integrity {
                file: file.path().clone(),
                reason: format!(
                    "the torrent's file is {length} bytes, the manifest says {}",
                    file.size()
                ),
            });
        }
        indexes.push(index);
    }
    Ok(indexes)
}

/// Checks every file's size, SHA-256 and SRI value against the manifest, reading the store
/// in chunks. Blocking (reads the whole release).
pub(crate) fn verify_files(
    manifest: &Manifest,
    store: &Store,
    files: &[usize],
) -> Result<(), GetError> {
    for (entry, &index) in manifest.files().iter().zip(files) {
        let mut hasher = FileHasher::new();
        let mut offset = 0;
        while offset < entry.size() {
            let len = VERIFY_CHUNK.min(entry.size() - offset);
            let chunk =
                store
                    .read_file_range(index, offset, len)
                    .map_err(|e| GetError::Integrity {
                        file: entry.path().clone(),
                        reason: format!("cannot read it: {e}"),
                    })?;
            hasher.update(&chunk);
            offset += len;
        }
        entry
            .verify_digests(&hasher.finish())
            .map_err(|e| GetError::Integrity {
                file: entry.path().clone(),
                reason: e.to_string(),
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmcdn_proto::manifest::{Version, signing_key_from_seed};
    use swarmcdn_proto::metainfo::TorrentBuilder;

    fn manifest_for(files: &[(&str, &[u8])], info_hash: InfoHash) -> Manifest {
        let entries = files
            .iter()
            .map(|(p, b)| {
                ManifestFile::from_bytes(RelativePath::parse(p).unwrap(), "text/plain", b).unwrap()
            })
            .collect();
        Manifest::new(
            "w".parse().unwrap(),
            Version::new(1, 0, 0),
            info_hash,
            1,
            entries,
        )
        .unwrap()
    }

    #[test]
    fn files_map_into_the_torrent_folder_and_verify() {
        let torrent = TorrentBuilder::new("w-1.0.0")
            .add_bytes(RelativePath::parse("a.js").unwrap(), b"aaaa".to_vec())
            .add_bytes(RelativePath::parse("css/b.css").unwrap(), b"bb".to_vec())
            .folder(true)
            .build()
            .unwrap();
        let manifest = manifest_for(
            &[("a.js", b"aaaa"), ("css/b.css", b"bb")],
            torrent.info_hash(),
        );
        let map = file_map(&manifest, torrent.info()).unwrap();
        let store = Store::memory(&torrent);
        for piece in 0..torrent.info().piece_count() {
            let offset = torrent.info().piece_offset(piece).unwrap() as usize;
            let len = torrent.info().piece_len(piece).unwrap() as usize;
            let mut all = Vec::new();
            for f in torrent.info().files() {
                let name = f.path.file_name();
                all.extend_from_slice(if name == "a.js" { b"aaaa" } else { b"bb" });
            }
            store
                .commit_piece(piece, Bytes::copy_from_slice(&all[offset..offset + len]))
                .unwrap();
        }
        verify_files(&manifest, &store, &map).unwrap();

        // Same sizes, other bytes: the SHA-256 catches it.
        let lying = manifest_for(
            &[("a.js", b"aaab"), ("css/b.css", b"bb")],
            torrent.info_hash(),
        );
        assert!(matches!(
            verify_files(&lying, &store, &map),
            Err(GetError::Integrity { file, .. }) if file.to_string() == "a.js"
        ));
        // The right bytes under an SRI value that is not theirs: refused too (browsers would
        // block the file).
        let odd_entry = ManifestFile::new(
            RelativePath::parse("a.js").unwrap(),
            4,
            "text/plain",
            FileHasher::digest(b"aaaa").sha256,
            &FileHasher::digest(b"aaab").sri(),
        )
        .unwrap();
        let entries = vec![odd_entry, manifest.files()[1].clone()];
        let odd_sri = Manifest::new(
            "w".parse().unwrap(),
            Version::new(1, 0, 0),
            torrent.info_hash(),
            1,
            entries,
        )
        .unwrap();
        assert!(matches!(
            verify_files(&odd_sri, &store, &map),
            Err(GetError::Integrity { file, reason })
                if file.to_string() == "a.js" && reason.contains("SRI")
        ));
        // A file the torrent lacks, or of another size.
        let missing = manifest_for(&[("c.js", b"c")], torrent.info_hash());
        assert!(matches!(
            file_map(&missing, torrent.info()),
            Err(GetError::Integrity { .. })
        ));
        let resized = manifest_for(&[("a.js", b"aaaaa")], torrent.info_hash());
        assert!(matches!(
            file_map(&resized, torrent.info()),
            Err(GetError::Integrity { .. })
        ));
        let _ = signing_key_from_seed;
    }

    #[test]
    fn a_single_file_torrent_carries_a_one_file_manifest() {
        let torrent = TorrentBuilder::new("payload.bin")
            .add_bytes(RelativePath::parse("payload.bin").unwrap(), vec![1; 10])
            .build()
            .unwrap();
        let one = manifest_for(&[("payload.bin", &[1; 10])], torrent.info_hash());
        assert_eq!(file_map(&one, torrent.info()).unwrap(), vec![0]);
        let two = manifest_for(&[("a", &[1; 5]), ("b", &[1; 5])], torrent.info_hash());
        assert!(file_map(&two, torrent.info()).is_err());
    }
}
