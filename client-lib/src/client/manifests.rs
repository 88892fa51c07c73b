//! Verified manifests kept by the client, so that `get` still answers when no tracker can
//! be reached.
//!
//! Only manifests that passed every check (trusted signature, matching metainfo, files
//! verified against it) are saved, together with the metainfo they name, so that the
//! release can be served (or fetched again from peers and web seeds) without the tracker.
//! With a cache folder they live in `<cache>/manifests/<name>/<version>.json` and
//! `<version>.torrent`, each written to a temporary file and renamed into place (a crash
//! never leaves half a manifest); without one they live in memory for the client's life.
//! The "latest" version of a name is the highest version saved: no pointer file that a
//! crash could leave stale.
//!
//! What is read back is checked again as if it came from the network: the signature against
//! today's trusted keys (a key removed from the configuration stops vouching for what it
//! signed), the metainfo's info-hash against the manifest.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use swarmcdn_proto::manifest::{ReleaseName, SignedManifest, VerifyingKey, Version};
use swarmcdn_proto::metainfo::Metainfo;

/// The folder inside the cache folder that holds manifests.
pub const MANIFEST_DIR: &str = "manifests";

/// A verified manifest with the metainfo it names.
#[derive(Debug, Clone)]
pub(crate) struct CachedManifest {
    pub(crate) manifest: SignedManifest,
    pub(crate) metainfo: Arc<Metainfo>,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct ManifestCache {
    dir: Option<PathBuf>,
    /// Used only without a folder.
    memory: Mutex<HashMap<ReleaseName, BTreeMap<Version, CachedManifest>>>,
}

impl ManifestCache {
    /// A cache in `<cache_dir>/manifests` (created now), or in memory.
    pub(crate) fn open(cache_dir: Option<&Path>) -> io::Result<Self> {
        let dir = cache_dir.map(|d| d.join(MANIFEST_DIR));
        if let Some(dir) = &dir {
            fs::create_dir_all(dir)?;
        }
        Ok(ManifestCache {
            dir,
            memory: Mutex::new(HashMap::new()),
        })
    }

    /// The manifest folder, if on disk.
    #[cfg(test)]
    fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Whether saved manifests go to files (else they are kept in memory only).
    pub(crate) fn on_disk(&self) -> bool {
        self.dir.is_some()
    }

    /// Saves a verified manifest and its metainfo. Blocking when on disk.
    pub(crate) fn save(&self, entry: &CachedManifest) -> io::Result<()> {
        let manifest = entry.manifest.unverified_manifest();
        if let Some(dir) = &self.dir {
            // The torrent first: a manifest on disk always has its torrent next to it.
            let folder = dir.join(manifest.name().as_str());
            fs::create_dir_all(&folder)?;
            let version = manifest.version().to_string();
            write_atomically(
                &folder.join(format!("{version}.torrent")),
                &entry.metainfo.to_bytes(),
            )?;
            return write_atomically(
                &folder.join(format!("{version}.json")),
                entry.manifest.to_json().as_bytes(),
            );
        }
        self.memory
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(manifest.name().clone())
            .or_default()
            .insert(manifest.version().clone(), entry.clone());
        Ok(())
    }

    /// The cached manifest of `name` at `version` (the highest version when `None`) that
    /// still verifies against `trusted`. Blocking when on disk.
    pub(crate) fn load(
        &self,
        name: &ReleaseName,
        version: Option<&Version>,
        trusted: &[VerifyingKey],
    ) -> Option<CachedManifest> {
        self.load_matching(name, version, trusted, |_| true)
    }

    /// As [`ManifestCache::load`], among the entries `accept` takes only: without a
    /// version, the highest one it takes. Blocking when on disk.
    pub(crate) fn load_matching(
        &self,
        name: &ReleaseName,
        version: Option<&Version>,
        trusted: &[VerifyingKey],
        accept: impl Fn(&CachedManifest) -> bool,
    ) -> Option<CachedManifest> {
        let Some(dir) = &self.dir else {
            let memory = self.memory.lock().unwrap_or_else(PoisonError::into_inner);
            let versions = memory.get(name)?;
            let usable = |e: &&CachedManifest| e.manifest.verify(trusted).is_ok() && accept(e);
            let entry = match version {
                Some(v) => versions.get(v).filter(usable),
                None => versions.values().rev().find(usable),
            };
            return entry.cloned();
        };
        let folder = dir.join(name.as_str());
        let mut versions = match version {
            Some(v) => vec![v.clone()],
            None => saved_versions(&folder),
        };
        // Highest first; a damaged or no longer trusted entry falls back to the next.
        versions.sort_unstable_by(|a, b| b.cmp(a));
        versions.into_iter().find_map(|v| {
            let entry = read_entry(&folder, &v, trusted)?;
            let manifest = entry.manifest.unverified_manifest();
            (manifest.name() == name && manifest.version() == &v && accept(&entry)).then_some(entry)
        })
    }
}

impl ManifestCache {
    /// The names with at least one saved manifest (on disk: the name folders; whether an
    /// entry still verifies is checked when it is loaded). Blocking when on disk.
    pub(crate) fn names(&self) -> Vec<ReleaseName> {
        let Some(dir) = &self.dir else {
            let memory = self.memory.lock().unwrap_or_else(PoisonError::into_inner);
            return memory.keys().cloned().collect();
        };
        let Ok(listing) = fs::read_dir(dir) else {
            return Vec::new();
        };
        listing
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok()?.parse().ok())
            .collect()
    }
}

/// The versions with a manifest in `folder`.
fn saved_versions(folder: &Path) -> Vec<Version> {
    let Ok(listing) = fs::read_dir(folder) else {
        return Vec::new();
    };
    listing
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            Version::parse(name.strip_suffix(".json")?).ok()
        })
        .collect()
}

/// Reads and re-checks one saved entry.
fn read_entry(
    folder: &Path,
    version: &Version,
    trusted: &[VerifyingKey],
) -> Option<CachedManifest> {
    let json = fs::read(folder.join(format!("{version}.json"))).ok()?;
    let manifest = SignedManifest::from_json(&json).ok()?;
    let info_hash = manifest.verify(trusted).ok()?.info_hash();
    let torrent = fs::read(folder.join(format!("{version}.torrent"))).ok()?;
    let metainfo = Metainfo::from_bytes(&torrent).ok()?;
    (metainfo.info_hash() == info_hash).then(|| CachedManifest {
        manifest,
        metainfo: Arc::new(metainfo),
    })
}

/// Writes `bytes` to `path` through a synced temporary file and a rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    let temp = PathBuf::from(temp);
    let mut file = fs::File::create(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&temp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmcdn_proto::RelativePath;
    use swarmcdn_proto::manifest::{Manifest, ManifestFile, signing_key_from_seed};
    use swarmcdn_proto::metainfo::TorrentBuilder;

    fn entry(version: &str, seed: u8) -> CachedManifest {
        let metainfo = TorrentBuilder::new(format!("w-{version}"))
            .add_bytes(RelativePath::parse("a.js").unwrap(), vec![seed; 100])
            .folder(true)
            .build()
            .unwrap();
        let file = ManifestFile::from_bytes(
            RelativePath::parse("a.js").unwrap(),
            "text/javascript",
            &[seed; 100],
        )
        .unwrap();
        let manifest = Manifest::new(
            "w".parse().unwrap(),
            Version::parse(version).unwrap(),
            metainfo.info_hash(),
            1,
            vec![file],
        )
        .unwrap()
        .sign(&signing_key_from_seed([1; 32]));
        CachedManifest {
            manifest,
            metainfo: Arc::new(metainfo),
        }
    }

    #[test]
    fn latest_is_the_highest_version_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let trusted = [signing_key_from_seed([1; 32]).verifying_key()];
        let name: ReleaseName = "w".parse().unwrap();
        let cache = ManifestCache::open(Some(dir.path())).unwrap();
        assert!(cache.load(&name, None, &trusted).is_none());
        cache.save(&entry("1.2.0", 1)).unwrap();
        cache.save(&entry("1.10.0", 2)).unwrap();
        cache.save(&entry("1.9.0", 3)).unwrap();

        let reopened = ManifestCache::open(Some(dir.path())).unwrap();
        assert_eq!(reopened.names(), vec![name.clone()]);
        let latest = reopened.load(&name, None, &trusted).unwrap();
        assert_eq!(
            latest.manifest.unverified_manifest().version(),
            &Version::new(1, 10, 0)
        );
        let exact = reopened
            .load(&name, Some(&Version::new(1, 2, 0)), &trusted)
            .unwrap();
        assert_eq!(
            exact.metainfo.info_hash(),
            entry("1.2.0", 1).metainfo.info_hash()
        );
        assert!(
            reopened
                .load(&name, Some(&Version::new(2, 0, 0)), &trusted)
                .is_none()
        );
    }

    #[test]
    fn untrusted_or_damaged_entries_are_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let name: ReleaseName = "w".parse().unwrap();
        let trusted = [signing_key_from_seed([1; 32]).verifying_key()];
        let other = [signing_key_from_seed([2; 32]).verifying_key()];
        let cache = ManifestCache::open(Some(dir.path())).unwrap();
        cache.save(&entry("1.0.0", 1)).unwrap();
        cache.save(&entry("1.1.0", 2)).unwrap();
        // A key no longer trusted vouches for nothing, in memory or on disk.
        assert!(cache.load(&name, None, &other).is_none());
        let reopened = ManifestCache::open(Some(dir.path())).unwrap();
        assert!(reopened.load(&name, None, &other).is_none());
        // A damaged latest falls back to the previous version.
        let folder = dir.path().join(MANIFEST_DIR).join("w");
        fs::write(folder.join("1.1.0.json"), b"{not json").unwrap();
        let latest = reopened.load(&name, None, &trusted).unwrap();
        assert_eq!(
            latest.manifest.unverified_manifest().version(),
            &Version::new(1, 0, 0)
        );
        // A torrent that does not match its manifest is refused.
        fs::copy(folder.join("1.1.0.torrent"), folder.join("1.0.0.torrent")).unwrap();
        assert!(
            ManifestCache::open(Some(dir.path()))
                .unwrap()
                .load(&name, None, &trusted)
                .is_none()
        );
    }

    #[test]
    fn memory_only_cache_keeps_entries_for_its_life() {
        let name: ReleaseName = "w".parse().unwrap();
        let trusted = [signing_key_from_seed([1; 32]).verifying_key()];
        let cache = ManifestCache::open(None).unwrap();
        assert!(cache.dir().is_none());
        assert!(cache.names().is_empty());
        cache.save(&entry("0.1.0", 1)).unwrap();
        assert!(cache.load(&name, None, &trusted).is_some());
        assert_eq!(cache.names(), vec![name]);
    }
}
