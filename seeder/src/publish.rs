//! Publishing: a folder becomes a signed, versioned release in the store and at the tracker.
//!
//! The steps, in the order that keeps a failure from leaving anything half done:
//!
//! 1. **Check what can be checked cheaply**: the key file (permissions, format), the version
//!    (given, or the tracker's latest with its patch bumped), that the tracker does not have
//!    that version yet and the store does not either, and the folder itself (see `walk`). A
//!    tracker that is down or refuses fails here, before anything is written.
//! 2. **Copy into the store's staging folder**, computing each file's SHA-256 and SRI value
//!    while copying (files are streamed, never held whole), on every core.
//! 3. **Build the torrent from the copy**, not from the source folder, so the stored bytes are
//!    exactly the hashed ones even if the source changes meanwhile. The torrent is a
//!    multi-file torrent named `<name>-<version>` (see [`torrent_name`]), `announce` is the
//!    tracker's, and `url-list` is this seeder's web seed for the info-hash: the info-hash is
//!    only known once the `info` dictionary is built, but `url-list` lies outside it, so it
//!    is set on the built torrent without changing the hash.
//! 4. **Sign the manifest** (name, version, info-hash, per-file size, content type, SHA-256,
//!    SRI) with the publisher's key.
//! 5. **Commit to the store** (atomic: see [`crate::store`]), so `serve` has the content
//!    before any client learns of the release.
//! 6. **Register at the tracker.** If the tracker refuses or cannot be reached, the release is
//!    removed from the store again: store and tracker end as they began.
//!
//! Without `--version`, the next version is the latest's patch plus one (`1.4.2` becomes
//! `1.4.3`; a pre-release such as `1.5.0-beta.1` becomes its release, `1.5.0`, as
//! `npm version patch` does), and the first release of a name is [`FIRST_VERSION`], `1.0.0`:
//! a publisher who has not chosen a version is shipping something they mean to be used.

mod walk;

use std::io::IsTerminal;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use swarmcdn_proto::InfoHash;
use swarmcdn_proto::manifest::{
    FileDigests, Manifest, ManifestError, ManifestFile, ReleaseName, SignedManifest, SigningKey,
    Version, content_type_for_path,
};
use swarmcdn_proto::metainfo::{BuildError, Metainfo, TorrentBuilder};
use swarmcdn_proto::path::PathError;

use crate::keys::{self, KeyError};
use crate::store::{Staging, Store, StoreError};
use crate::tracker_api::{TrackerApi, TrackerError};

/// The version of a name's first release when none is given.
pub const FIRST_VERSION: Version = Version::new(1, 0, 0);

/// Everything `publish` needs.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// The folder whose files become the release.
    pub dir: PathBuf,
    /// The release name.
    pub name: ReleaseName,
    /// The version; `None` takes the tracker's latest with its patch bumped.
    pub version: Option<Version>,
    /// The tracker's base URL.
    pub tracker: String,
    /// The publisher's bearer token.
    pub token: String,
    /// The signing key file.
    pub key_file: PathBuf,
    /// The store folder.
    pub store: PathBuf,
    /// The web seed's public base URL; empty for none.
    pub webseed_url: String,
    /// The largest release accepted, in bytes.
    pub max_release_bytes: u64,
    /// How long to wait for the tracker per request.
    pub tracker_timeout: Duration,
    /// Show progress bars on stderr (only drawn when stderr is a terminal).
    pub progress: bool,
}

/// A published release.
#[derive(Debug, Clone)]
pub struct Published {
    /// The release name.
    pub name: ReleaseName,
    /// The version.
    pub version: Version,
    /// The torrent's info-hash.
    pub info_hash: InfoHash,
    /// The magnet link (with the tracker and the web seed).
    pub magnet: String,
    /// Where sites fetch the signed manifest.
    pub manifest_url: String,
    /// Where sites fetch the torrent.
    pub torrent_url: String,
    /// The web-seed URL written into the torrent, if any.
    pub webseed_url: Option<String>,
    /// The files, with their sizes, content types and SRI values.
    pub files: Vec<ManifestFile>,
    /// The signed manifest.
    pub manifest: SignedManifest,
    /// The torrent.
    pub metainfo: Metainfo,
    /// Where the content is in the store.
    pub content_dir: PathBuf,
}

/// Why a release was not published. Whatever the error, the store and the tracker are as
/// they were before (except [`PublishError::RollbackFailed`], which says what is left).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The signing key could not be loaded.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The version has build metadata, which the tracker does not accept.
    #[error(
        "version {0} has build metadata (`+...`), which releases may not carry; drop it or use \
         a pre-release such as 1.0.0-rc.1"
    )]
    BuildMetadata(Version),
    /// The tracker already has this version.
    #[error(
        "{name} {version} is already published. Versions are immutable: choose another \
         --version, or leave --version out to take the next patch version"
    )]
    VersionExists {
        /// The name.
        name: ReleaseName,
        /// The version.
        version: Version,
    },
    /// The folder does not exist.
    #[error("the folder {} does not exist", path.display())]
    FolderMissing {
        /// The path given.
        path: PathBuf,
    },
    /// The path given is not a folder.
    #[error("{} is not a folder; publish takes the folder holding the release's files", path.display())]
    NotAFolder {
        /// The path given.
        path: PathBuf,
    },
    /// The folder holds no data.
    #[error(
        "{} holds {}; a release needs at least one non-empty file",
        path.display(),
        if *only_empty_files { "only empty files" } else { "no files" }
    )]
    EmptyFolder {
        /// The folder.
        path: PathBuf,
        /// Whether there were files, all empty.
        only_empty_files: bool,
    },
    /// A file or folder name is not UTF-8.
    #[error(
        "the name of {} is not UTF-8, and torrents and manifests name files in UTF-8; rename it",
        path.display()
    )]
    NonUtf8Name {
        /// The path.
        path: PathBuf,
    },
    /// A name cannot be a torrent path component (a backslash or control character in it).
    #[error("{} cannot be named in a release ({source}); rename it", path.display())]
    BadName {
        /// The path.
        path: PathBuf,
        /// What is wrong with the name.
        #[source]
        source: PathError,
    },
    /// A symbolic link points outside the folder.
    #[error(
        "{} is a symbolic link to {}, outside the folder being published; copy the file into \
         the folder or remove the link",
        path.display(), target.display()
    )]
    SymlinkEscapes {
        /// The link.
        path: PathBuf,
        /// Where it points.
        target: PathBuf,
    },
    /// A symbolic link leads back to a folder that contains it.
    #[error("{} is a symbolic link that loops back to a folder above it; remove the link", path.display())]
    SymlinkLoop {
        /// The link.
        path: PathBuf,
    },
    /// A symbolic link points at nothing.
    #[error("{} is a symbolic link to something that does not exist; fix or remove it", path.display())]
    DanglingSymlink {
        /// The link.
        path: PathBuf,
    },
    /// A FIFO, socket or device.
    #[error(
        "{} is not a regular file (a FIFO, socket or device); only files and folders can be \
         published: remove it from the folder",
        path.display()
    )]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// A file or folder cannot be read.
    #[error(
        "cannot read {}: {source}; make it readable (e.g. `chmod a+r`) or remove it from the folder",
        path.display()
    )]
    Unreadable {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// One file is over the release size limit.
    #[error(
        "{} is {size} bytes, over the release limit of {limit} bytes; a site's cache holds at \
         most that much. Leave the file out or split the release",
        path.display()
    )]
    FileTooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The files together are over the release size limit.
    #[error(
        "the folder holds more than the release limit of {limit} bytes ({total} bytes up to and \
         including {}); leave files out or split the release",
        path.display()
    )]
    ReleaseTooLarge {
        /// The file that crossed the limit.
        path: PathBuf,
        /// The total up to that file.
        total: u64,
        /// The limit.
        limit: u64,
    },
    /// More files than a manifest may list.
    #[error("the folder holds more than {limit} files, the most a release may have; split it")]
    TooManyFiles {
        /// The limit.
        limit: usize,
    },
    /// Writing to the store failed (nothing was published).
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The tracker refused the release, or could not be reached. Nothing was published: the
    /// store was rolled back.
    #[error("{0}\nNothing was published: the store is unchanged.")]
    Tracker(#[from] TrackerError),
    /// The tracker refused and removing the release from the store failed too.
    #[error(
        "{tracker}\nThe release could not be removed from the store again ({store}); remove \
         {info_hash} by hand with `swarmcdn-seeder unpublish`"
    )]
    RollbackFailed {
        /// Why the tracker refused.
        tracker: Box<TrackerError>,
        /// Why the removal failed.
        store: Box<StoreError>,
        /// The release left in the store.
        info_hash: InfoHash,
    },
    /// The torrent could not be built.
    #[error("cannot build the torrent: {0}")]
    Build(#[from] BuildError),
    /// The manifest could not be built.
    #[error("cannot build the manifest: {0}")]
    Manifest(#[from] ManifestError),
    /// A worker thread or task failed.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The torrent's name (and so the folder clients save it in): `<name>-<version>`.
///
/// The name is inside the info dictionary, so it is part of the info-hash. Carrying the
/// version there means two versions with the same bytes still get two info-hashes (the
/// tracker and the store key releases by info-hash), and a torrent client saving a release
/// names the folder recognisably, one folder per version.
pub fn torrent_name(name: &ReleaseName, version: &Version) -> String {
    format!("{name}-{version}")
}

/// The version that follows `latest` (see the module docs), or [`FIRST_VERSION`].
pub fn next_version(latest: Option<&Version>) -> Version {
    match latest {
        None => FIRST_VERSION,
        Some(v) if !v.pre.is_empty() => Version::new(v.major, v.minor, v.patch),
        Some(v) => Version::new(v.major, v.minor, v.patch.saturating_add(1)),
    }
}

/// The web-seed URL for a release: `<base>/webseed/<info-hash>/`. BEP 19 clients append the
/// torrent's name and the file's path to a URL ending in `/`.
pub fn webseed_url_for(base: &str, info_hash: &InfoHash) -> String {
    format!("{}/webseed/{}/", base.trim_end_matches('/'), info_hash)
}

/// Publishes the folder `options.dir` (see the module docs for the steps).
pub async fn publish(options: &PublishOptions) -> Result<Published, PublishError> {
    let key = keys::load_key(&options.key_file)?;
    let api = TrackerApi::new(&options.tracker, options.tracker_timeout)?;
    let version = match &options.version {
        Some(version) => {
            if !version.build.is_empty() {
                return Err(PublishError::BuildMetadata(version.clone()));
            }
            if api.release_exists(&options.name, version).await? {
                return Err(PublishError::VersionExists {
                    name: options.name.clone(),
                    version: version.clone(),
                });
            }
            version.clone()
        }
        None => {
            let latest = api.latest(&options.name).await?;
            let latest = latest.as_ref().map(|m| m.unverified_manifest().version());
            next_version(latest)
        }
    };
    let store = Store::open(&options.store)?;
    if let Some(existing) = store.get(&options.name, &version)? {
        return Err(StoreError::AlreadyStored {
            info_hash: existing.info_hash,
            name: options.name.clone(),
            version,
        }
        .into());
    }

    let stored = {
        let (options, store, version, announce) = (
            options.clone(),
            store.clone(),
            version.clone(),
            api.announce_url(),
        );
        tokio::task::spawn_blocking(move || {
            let (staging, metainfo, manifest) =
                prepare(&options, &store, &version, &key, announce)?;
            Ok::<_, PublishError>(store.commit(staging, &metainfo, &manifest)?)
        })
        .await
        .map_err(|e| PublishError::Internal(e.to_string()))??
    };
    let info_hash = stored.info_hash;

    let registered = match api
        .publish(
            &options.token,
            &stored.metainfo.to_bytes(),
            &stored.manifest,
        )
        .await
    {
        Ok(registered) => registered,
        Err(tracker) => {
            let removal = {
                let store = store.clone();
                tokio::task::spawn_blocking(move || store.remove(&info_hash))
                    .await
                    .map_err(|e| PublishError::Internal(e.to_string()))?
            };
            return Err(match removal {
                Ok(_) => PublishError::Tracker(tracker),
                Err(store) => PublishError::RollbackFailed {
                    tracker: Box::new(tracker),
                    store: Box::new(store),
                    info_hash,
                },
            });
        }
    };
    tracing::info!(name = %options.name, %version, %info_hash, "published");
    Ok(Published {
        name: options.name.clone(),
        version,
        info_hash,
        magnet: stored.metainfo.magnet().to_uri(),
        manifest_url: registered.manifest_url,
        torrent_url: registered.torrent_url,
        webseed_url: stored.metainfo.url_list.first().cloned(),
        files: stored.manifest().files().to_vec(),
        manifest: stored.manifest.clone(),
        metainfo: stored.metainfo.clone(),
        content_dir: stored.content_dir.clone(),
    })
}

/// Steps 2 to 4: walk, copy and digest, build the torrent, sign. Blocking.
fn prepare(
    options: &PublishOptions,
    store: &Store,
    version: &Version,
    key: &SigningKey,
    announce: String,
) -> Result<(Staging, Metainfo, SignedManifest), PublishError> {
    let entries = walk::walk(&options.dir, options.max_release_bytes)?;
    let total: u64 = entries.iter().map(|e| e.size).sum();
    let name = torrent_name(&options.name, version);
    let staging = store.stage()?;

    let bar = progress_bar(options.progress, Some(total), "copying and hashing");
    let started = Instant::now();
    let digests = copy_all(&staging, &name, &entries, &bar)?;
    bar.finish_and_clear();
    // Phase timings, for `bench/seeder.sh` (RUST_LOG=swarmcdn_seeder=debug) and for anyone
    // wondering where a slow publish spends its time.
    tracing::debug!(
        bytes = total,
        ms = started.elapsed().as_millis() as u64,
        "copied into the store with per-file SHA-256 and SHA-384"
    );

    let mut builder = TorrentBuilder::new(&name).folder(true).announce(announce);
    let mut files = Vec::with_capacity(entries.len());
    for (entry, digests) in entries.iter().zip(&digests) {
        let full = entry
            .path
            .prefixed(&name)
            .map_err(|source| PublishError::BadName {
                path: entry.source.clone(),
                source,
            })?;
        builder = builder.add_file(entry.path.clone(), staging.path_of(&full));
        let content_type = content_type_for_path(&entry.path.to_string());
        files.push(ManifestFile::from_digests(
            entry.path.clone(),
            content_type,
            digests,
        )?);
    }
    let spinner = progress_bar(options.progress, None, "hashing pieces");
    let started = Instant::now();
    let built = builder.build();
    spinner.finish_and_clear();
    tracing::debug!(
        bytes = total,
        ms = started.elapsed().as_millis() as u64,
        "hashed the pieces (SHA-1)"
    );
    let mut metainfo = built?;
    if !options.webseed_url.is_empty() {
        metainfo.url_list = vec![webseed_url_for(&options.webseed_url, &metainfo.info_hash())];
    }

    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let manifest = Manifest::new(
        options.name.clone(),
        version.clone(),
        metainfo.info_hash(),
        created,
        files,
    )?
    .sign(key);
    Ok((staging, metainfo, manifest))
}

/// Copies every entry into the staging folder under the torrent's folder `name`, returning
/// each file's digests in entry order. Files are shared out between threads (one per core).
fn copy_all(
    staging: &Staging,
    name: &str,
    entries: &[walk::Entry],
    bar: &ProgressBar,
) -> Result<Vec<FileDigests>, PublishError> {
    let threads = std::thread::available_parallelism()
        .map_or(1, NonZeroUsize::get)
        .min(entries.len())
        .max(1);
    let next = AtomicUsize::new(0);
    let copy_one = |entry: &walk::Entry| -> Result<FileDigests, PublishError> {
        let full = entry
            .path
            .prefixed(name)
            .map_err(|source| PublishError::BadName {
                path: entry.source.clone(),
                source,
            })?;
        let digests = staging
            .add_file(&full, &entry.source, |n| bar.inc(n))
            .map_err(|error| match error {
                StoreError::Io { path, source, .. } if path == entry.source => {
                    PublishError::Unreadable { path, source }
                }
                other => other.into(),
            })?;
        if digests.size != entry.size {
            return Err(PublishError::Unreadable {
                path: entry.source.clone(),
                source: std::io::Error::other("the file changed size while it was being copied"),
            });
        }
        Ok(digests)
    };
    let results: Vec<Vec<(usize, Result<FileDigests, PublishError>)>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(entry) = entries.get(index) else {
                            break;
                        };
                        let result = copy_one(entry);
                        let failed = result.is_err();
                        done.push((index, result));
                        if failed {
                            // Stop handing out work: the publish fails anyway.
                            next.store(entries.len(), Ordering::Relaxed);
                            break;
                        }
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_default())
            .collect()
    });
    let mut ordered: Vec<Option<FileDigests>> = vec![None; entries.len()];
    let mut first_error: Option<(usize, PublishError)> = None;
    for (index, result) in results.into_iter().flatten() {
        match result {
            Ok(digests) => ordered[index] = Some(digests),
            Err(error) => {
                if first_error.as_ref().is_none_or(|(i, _)| index < *i) {
                    first_error = Some((index, error));
                }
            }
        }
    }
    if let Some((_, error)) = first_error {
        return Err(error);
    }
    ordered
        .into_iter()
        .map(|d| d.ok_or_else(|| PublishError::Internal("a copy thread stopped early".into())))
        .collect()
}

fn progress_bar(enabled: bool, total: Option<u64>, message: &'static str) -> ProgressBar {
    let target = if enabled && std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(total, target).with_message(message);
    let style = match total {
        Some(_) => ProgressStyle::with_template(
            "{msg:20} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        ),
        None => ProgressStyle::with_template("{spinner} {msg} ({elapsed})"),
    };
    if let Ok(style) = style {
        bar.set_style(style.progress_chars("=> "));
    }
    if total.is_none() {
        bar.enable_steady_tick(Duration::from_millis(120));
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmcdn_proto::RelativePath;

    #[test]
    fn the_next_version_bumps_the_patch() {
        assert_eq!(next_version(None), Version::new(1, 0, 0));
        assert_eq!(
            next_version(Some(&Version::new(1, 4, 2))),
            Version::new(1, 4, 3)
        );
        assert_eq!(
            next_version(Some(&"1.5.0-beta.1".parse().unwrap())),
            Version::new(1, 5, 0)
        );
    }

    #[test]
    fn torrent_names_carry_the_version() {
        let name: ReleaseName = "share-button".parse().unwrap();
        assert_eq!(
            torrent_name(&name, &Version::new(1, 2, 3)),
            "share-button-1.2.3"
        );
        assert!(RelativePath::parse(&torrent_name(&name, &"1.0.0-rc.1".parse().unwrap())).is_ok());
    }

    #[test]
    fn web_seed_urls_end_in_a_slash() {
        let ih = InfoHash::new([0xab; 20]);
        let expected = format!("http://o.example/webseed/{ih}/");
        assert_eq!(webseed_url_for("http://o.example/", &ih), expected);
        assert_eq!(webseed_url_for("http://o.example", &ih), expected);
    }
}
