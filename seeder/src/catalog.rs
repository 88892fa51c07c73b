//! The releases `serve` is serving right now, and how that set follows the store.
//!
//! `publish` and `unpublish` change the store while `serve` runs, in another process. Rather
//! than a control channel between them, `serve` looks at the store every few seconds
//! ([`Config::store_poll_interval_ms`](crate::config::Config)): listing the store folder is
//! cheap, a release is complete exactly when its manifest file exists (see [`crate::store`]),
//! and only releases not seen before are loaded. The result is an immutable [`Catalog`]
//! snapshot published on a `tokio::sync::watch` channel: request handlers take the current
//! snapshot without locking anything for longer than an `Arc` clone, and any other part of
//! the seeder that acts on "the releases we serve" (the peer-wire seeding, when it is plugged
//! in) subscribes to the same channel and sees the same set.
//!
//! Everything a request needs is computed once per release here: the file table keyed by the
//! path clients ask for, the header values for `Content-Type` and `ETag`, the metric
//! counters.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use axum::http::HeaderValue;
use swarmcdn_proto::{InfoHash, RelativePath};

use crate::metrics::{Metrics, ReleaseCounters};
use crate::store::{Store, StoreError, StoredRelease};

/// The releases being served: an immutable snapshot.
#[derive(Debug, Default)]
pub struct Catalog {
    releases: HashMap<InfoHash, Arc<ServedRelease>>,
}

impl Catalog {
    /// The release with this info-hash, if it is served.
    pub fn get(&self, info_hash: &InfoHash) -> Option<&Arc<ServedRelease>> {
        self.releases.get(info_hash)
    }

    /// Every release served (in no particular order).
    pub fn releases(&self) -> impl Iterator<Item = &Arc<ServedRelease>> {
        self.releases.values()
    }

    /// The info-hashes served.
    pub fn info_hashes(&self) -> BTreeSet<InfoHash> {
        self.releases.keys().copied().collect()
    }

    /// How many releases are served.
    pub fn len(&self) -> usize {
        self.releases.len()
    }

    /// Whether nothing is served.
    pub fn is_empty(&self) -> bool {
        self.releases.is_empty()
    }
}

/// One release being served.
#[derive(Debug)]
pub struct ServedRelease {
    /// The release as stored.
    pub release: StoredRelease,
    /// Its byte counters.
    pub counters: ReleaseCounters,
    files: HashMap<RelativePath, ServedFile>,
}

/// One file of a served release, with what its responses need ready.
#[derive(Debug, Clone)]
pub struct ServedFile {
    /// Where it is on disk.
    pub disk_path: PathBuf,
    /// Its size.
    pub length: u64,
    /// `Content-Type`, from the manifest.
    pub content_type: HeaderValue,
    /// The strong `ETag`: `"<info-hash>-<file index>"`.
    pub etag: HeaderValue,
}

impl ServedRelease {
    /// Prepares `release` for serving.
    pub fn new(release: StoredRelease, metrics: &Metrics) -> Self {
        let info = release.metainfo.info();
        let mut files = HashMap::with_capacity(info.files().len());
        for (index, file) in info.files().iter().enumerate() {
            let content_type = release
                .manifest_file(file)
                .and_then(|f| HeaderValue::from_str(f.content_type()).ok())
                .unwrap_or_else(|| {
                    HeaderValue::from_static(swarmcdn_proto::manifest::DEFAULT_CONTENT_TYPE)
                });
            // The info-hash names the immutable content and the index one file in it: the
            // pair never refers to other bytes, so the tag is strong.
            let etag = HeaderValue::from_str(&format!("\"{}-{index}\"", release.info_hash))
                .unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
            files.insert(
                file.path.clone(),
                ServedFile {
                    disk_path: release.disk_path(file),
                    length: file.length,
                    content_type,
                    etag,
                },
            );
        }
        let counters = metrics.release(
            &release.info_hash,
            release.name().as_str(),
            &release.version().to_string(),
        );
        Self {
            release,
            counters,
            files,
        }
    }

    /// The file at `path` (the torrent's path: the torrent's name, then the file's path), if
    /// the release has it.
    pub fn file(&self, path: &RelativePath) -> Option<&ServedFile> {
        self.files.get(path)
    }
}

/// What changed in one look at the store.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Releases now served.
    pub added: Vec<InfoHash>,
    /// Releases no longer served.
    pub removed: Vec<InfoHash>,
}

/// Follows the store: each [`StoreWatcher::refresh`] looks at it once and returns the new
/// catalog when the set of servable releases (complete, not withdrawn) changed.
#[derive(Debug)]
pub struct StoreWatcher {
    store: Store,
    metrics: Arc<Metrics>,
    /// Re-hash releases before serving them (set for the first look only, see
    /// [`Config::verify_on_start`](crate::config::Config)).
    verify: bool,
    /// Releases someone else (the peer engine) checked before the first look: those that
    /// were checked and are not intact are damaged. Used by the first look only.
    checked_elsewhere: Option<CheckedElsewhere>,
    /// Releases that failed to load: tried again at every look, logged only the first time.
    failed: BTreeSet<InfoHash>,
    /// Releases found damaged: never served by this process (`verify` tells what is wrong;
    /// unpublishing and publishing again, or a restart after repair, brings them back).
    damaged: BTreeSet<InfoHash>,
}

/// The outcome of a verify pass made by someone else (the peer engine's start-up check).
#[derive(Debug, Clone, Default)]
pub struct CheckedElsewhere {
    /// The releases the check looked at (the store's listing taken before it began).
    pub checked: BTreeSet<InfoHash>,
    /// Those it found intact.
    pub intact: BTreeSet<InfoHash>,
}

/// Why a release is not served.
enum Skip {
    /// Withdrawn, or gone between listing and loading.
    NotServable,
    /// Its metadata cannot be read.
    Failed,
    /// Its content does not match its torrent or manifest.
    Damaged,
}

impl StoreWatcher {
    /// A watcher of `store`; with `verify_first`, the releases found by the first look are
    /// re-hashed before they are served.
    pub fn new(store: Store, metrics: Arc<Metrics>, verify_first: bool) -> Self {
        Self {
            store,
            metrics,
            verify: verify_first,
            checked_elsewhere: None,
            failed: BTreeSet::new(),
            damaged: BTreeSet::new(),
        }
    }

    /// Takes `outcome` as the first look's verify pass instead of re-hashing: a release it
    /// checked and did not find intact is left out as damaged; one it did not check (stored
    /// after it began) is served as `publish` hashed it.
    pub fn checked_elsewhere(&mut self, outcome: CheckedElsewhere) {
        self.verify = false;
        self.checked_elsewhere = Some(outcome);
    }

    /// Looks at the store once. Returns the new catalog and what changed, or `None` if
    /// nothing did. A release that fails to load or (on the first look) to verify is logged
    /// and left out.
    pub fn refresh(&mut self, current: &Catalog) -> Result<Option<(Catalog, Changes)>, StoreError> {
        let verify = std::mem::replace(&mut self.verify, false);
        if let Some(outcome) = self.checked_elsewhere.take() {
            for info_hash in outcome.checked.difference(&outcome.intact) {
                if !self.damaged.contains(info_hash) {
                    tracing::error!(
                        %info_hash,
                        "stored release failed the peer engine's check; not serving it (see \
                         `swarmcdn-seeder verify`)"
                    );
                    self.damaged.insert(*info_hash);
                }
            }
        }
        let on_disk = self.store.info_hashes()?;
        self.failed.retain(|info_hash| on_disk.contains(info_hash));
        self.damaged.retain(|info_hash| on_disk.contains(info_hash));
        let mut changes = Changes::default();
        let mut releases = HashMap::with_capacity(on_disk.len());
        for info_hash in &on_disk {
            let withdrawn = self.store.is_withdrawn(info_hash);
            if let Some(served) = current.get(info_hash) {
                if !withdrawn {
                    releases.insert(*info_hash, Arc::clone(served));
                }
                continue;
            }
            if withdrawn || self.damaged.contains(info_hash) {
                continue;
            }
            match self.load(info_hash, verify) {
                Ok(release) => {
                    self.failed.remove(info_hash);
                    changes.added.push(*info_hash);
                    let served = ServedRelease::new(release, &self.metrics);
                    releases.insert(*info_hash, Arc::new(served));
                }
                Err(Skip::NotServable) => {}
                Err(Skip::Failed) => {
                    self.failed.insert(*info_hash);
                }
                Err(Skip::Damaged) => {
                    self.damaged.insert(*info_hash);
                }
            }
        }
        for (info_hash, served) in &current.releases {
            if !releases.contains_key(info_hash) {
                changes.removed.push(*info_hash);
                self.metrics.forget_release(
                    info_hash,
                    served.release.name().as_str(),
                    &served.release.version().to_string(),
                );
            }
        }
        if changes.added.is_empty() && changes.removed.is_empty() {
            return Ok(None);
        }
        self.metrics.set_releases(releases.len());
        Ok(Some((Catalog { releases }, changes)))
    }

    /// Loads (and with `verify` re-hashes) a release.
    fn load(&self, info_hash: &InfoHash, verify: bool) -> Result<StoredRelease, Skip> {
        let release = match self.store.load(info_hash) {
            Ok(Some(release)) if !release.withdrawn => release,
            Ok(_) => return Err(Skip::NotServable),
            Err(error) => {
                if !self.failed.contains(info_hash) {
                    tracing::warn!(%info_hash, %error, "cannot load a stored release; not serving it");
                }
                return Err(Skip::Failed);
            }
        };
        if verify {
            self.metrics
                .startup_verified("store", release.metainfo.info().total_length());
            match self.store.verify(info_hash) {
                Ok(Some(report)) if report.is_intact() => {}
                Ok(Some(report)) => {
                    tracing::error!(
                        %info_hash,
                        name = %report.name,
                        version = %report.version,
                        bad_pieces = report.bad_pieces.len(),
                        damaged_files = report.damaged.len(),
                        "stored release is damaged; not serving it (see `swarmcdn-seeder verify`)"
                    );
                    return Err(Skip::Damaged);
                }
                Ok(None) => return Err(Skip::NotServable),
                Err(error) => {
                    if !self.failed.contains(info_hash) {
                        tracing::warn!(%info_hash, %error, "cannot verify a stored release; not serving it");
                    }
                    return Err(Skip::Failed);
                }
            }
        }
        Ok(release)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::add;
    use swarmcdn_proto::manifest::Version;

    #[test]
    fn the_catalog_follows_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let metrics = Arc::new(Metrics::new());
        let mut watcher = StoreWatcher::new(store.clone(), Arc::clone(&metrics), true);
        let empty = Catalog::default();
        assert!(watcher.refresh(&empty).unwrap().is_none());

        let a = add(
            &store,
            "a",
            Version::new(1, 0, 0),
            &[("x.js", b"1".to_vec())],
        );
        let (catalog, changes) = watcher.refresh(&empty).unwrap().unwrap();
        assert_eq!(changes.added, [a.info_hash]);
        let served = catalog.get(&a.info_hash).unwrap();
        let path = RelativePath::parse("a-1.0.0/x.js").unwrap();
        let file = served.file(&path).unwrap();
        assert_eq!(file.length, 1);
        assert_eq!(file.content_type, "text/javascript; charset=utf-8");
        assert_eq!(file.etag, format!("\"{}-0\"", a.info_hash).as_str());
        assert!(served.file(&RelativePath::parse("x.js").unwrap()).is_none());
        assert!(watcher.refresh(&catalog).unwrap().is_none());

        let b = add(&store, "b", Version::new(1, 0, 0), &[("y", b"2".to_vec())]);
        let (catalog, changes) = watcher.refresh(&catalog).unwrap().unwrap();
        assert_eq!(changes.added, [b.info_hash]);
        assert_eq!(catalog.len(), 2);
        // The release served before is the same object, not reloaded.
        assert!(Arc::ptr_eq(catalog.get(&a.info_hash).unwrap(), served));

        store.withdraw(&a.info_hash).unwrap();
        store.remove(&b.info_hash).unwrap();
        let (catalog, changes) = watcher.refresh(&catalog).unwrap().unwrap();
        let mut removed = changes.removed.clone();
        removed.sort();
        let mut expected = vec![a.info_hash, b.info_hash];
        expected.sort();
        assert_eq!(removed, expected);
        assert!(catalog.is_empty());
        assert!(metrics.encode().contains("swarmcdn_seeder_releases 0"));
    }

    #[test]
    fn releases_that_fail_to_load_are_left_out_and_tried_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let metrics = Arc::new(Metrics::new());
        let a = add(&store, "a", Version::new(1, 0, 0), &[("x", b"1".to_vec())]);
        let torrent = dir.path().join(format!("{}.torrent", a.info_hash));
        let good = std::fs::read(&torrent).unwrap();
        std::fs::write(&torrent, b"not a torrent").unwrap();
        let mut watcher = StoreWatcher::new(store.clone(), metrics, false);
        assert!(watcher.refresh(&Catalog::default()).unwrap().is_none());
        assert!(watcher.failed.contains(&a.info_hash));
        assert!(watcher.refresh(&Catalog::default()).unwrap().is_none());
        // Repaired: served at the next look.
        std::fs::write(&torrent, &good).unwrap();
        let (catalog, _) = watcher.refresh(&Catalog::default()).unwrap().unwrap();
        assert!(catalog.get(&a.info_hash).is_some());
        assert!(watcher.failed.is_empty());
    }

    #[test]
    fn a_release_found_damaged_stays_out() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = add(&store, "a", Version::new(1, 0, 0), &[("x", b"1".to_vec())]);
        let file = a.disk_path(&a.metainfo.info().files()[0]);
        std::fs::write(&file, b"2").unwrap();
        let mut watcher = StoreWatcher::new(store.clone(), Arc::new(Metrics::new()), true);
        assert!(watcher.refresh(&Catalog::default()).unwrap().is_none());
        // Later looks do not re-verify, and do not let it in either.
        assert!(watcher.refresh(&Catalog::default()).unwrap().is_none());
        assert!(watcher.damaged.contains(&a.info_hash));
    }

    #[test]
    fn a_check_made_elsewhere_replaces_the_verify_pass() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let metrics = Arc::new(Metrics::new());
        let good = add(&store, "a", Version::new(1, 0, 0), &[("x", b"1".to_vec())]);
        let bad = add(&store, "b", Version::new(1, 0, 0), &[("x", b"2".to_vec())]);
        let later = add(&store, "c", Version::new(1, 0, 0), &[("x", b"3".to_vec())]);
        let mut watcher = StoreWatcher::new(store.clone(), Arc::clone(&metrics), true);
        watcher.checked_elsewhere(CheckedElsewhere {
            checked: [good.info_hash, bad.info_hash].into(),
            intact: [good.info_hash].into(),
        });
        let (catalog, _) = watcher.refresh(&Catalog::default()).unwrap().unwrap();
        assert!(catalog.get(&good.info_hash).is_some());
        assert!(catalog.get(&bad.info_hash).is_none(), "failed the check");
        assert!(
            catalog.get(&later.info_hash).is_some(),
            "not checked: served"
        );
        // Nothing was re-hashed here, and the damaged release stays out.
        assert!(!metrics.encode().contains("by=\"store\""));
        assert!(watcher.refresh(&catalog).unwrap().is_none());
    }
}
