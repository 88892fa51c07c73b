//! The client's errors, one enum per entry point, with variants shaped by what the caller
//! does next: fix its configuration ([`BuildError`]), give up on a release it cannot trust
//! ([`GetError::UntrustedKey`], [`GetError::BadSignature`], [`GetError::InfoHashMismatch`],
//! [`GetError::Integrity`]), try again later ([`GetError::TrackerUnreachable`],
//! [`GetError::NoManifestSource`]), or report a
//! name that does not exist ([`GetError::NotFound`]).

use std::sync::Arc;

use swarmcdn_proto::manifest::{ManifestError, NameError, ReleaseName, Version};
use swarmcdn_proto::metainfo::MetainfoError;
use swarmcdn_proto::{InfoHash, RelativePath};

use crate::session::DownloadError;
use crate::storage::StorageError;
use crate::tracker_client::TrackerError;

/// Why [`ClientBuilder::build`](crate::ClientBuilder::build) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The peer listener could not bind its address.
    #[error("cannot bind the peer listener to {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The cache folder could not be opened or read.
    #[error("cannot open the cache: {0}")]
    Cache(#[source] StorageError),
    /// The manifest folder inside the cache could not be created.
    #[error("cannot create the manifest folder {path}: {source}")]
    Manifests {
        /// The folder.
        path: std::path::PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP client could not be set up (TLS backend).
    #[error("cannot set up the HTTP client: {0}")]
    Http(#[source] reqwest::Error),
}

/// Why [`Client::get`](crate::Client::get) or
/// [`Client::get_version`](crate::Client::get_version) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GetError {
    /// The name is not a valid release name.
    #[error("invalid release name: {0}")]
    InvalidName(#[from] NameError),
    /// No tracker knows this release (or version).
    #[error("release {name}{} not found", version.as_ref().map(|v| format!(" {v}")).unwrap_or_default())]
    NotFound {
        /// The name asked for.
        name: ReleaseName,
        /// The version asked for, if any.
        version: Option<Version>,
    },
    /// No tracker could be reached (or none answered properly) and no verified copy of the
    /// manifest is cached. Try again later.
    #[error("no tracker reachable for {name} and no cached manifest: {source}")]
    TrackerUnreachable {
        /// The name asked for.
        name: ReleaseName,
        /// The last tracker error.
        #[source]
        source: TrackerError,
    },
    /// No tracker is configured and no verified copy of the manifest is cached.
    #[error("no tracker configured and no cached manifest for {0}")]
    NoTracker(ReleaseName),
    /// No tracker answered (or none is configured), no verified copy of the manifest is
    /// cached, and no bootstrap peer gave one (unreachable, or it holds none). Try again
    /// later. A peer that offered a manifest we cannot trust gives
    /// [`GetError::UntrustedKey`], [`GetError::BadSignature`] or [`GetError::WrongRelease`]
    /// instead.
    #[error(
        "no tracker reachable for {name}, no cached manifest, and no bootstrap peer gave one ({peers})"
    )]
    NoManifestSource {
        /// The name asked for.
        name: ReleaseName,
        /// Each bootstrap peer asked and why it gave nothing.
        peers: String,
        /// The last tracker error, if a tracker is configured.
        #[source]
        tracker: Option<TrackerError>,
    },
    /// The manifest came from bootstrap peers but none of them gave the metainfo it names
    /// (BEP 9). Nothing was downloaded or cached.
    #[error("no peer gave the metainfo of {info_hash}: {reason}")]
    MetadataUnavailable {
        /// The info-hash the manifest names.
        info_hash: InfoHash,
        /// What was tried.
        reason: String,
    },
    /// The manifest is signed by a key that is not trusted. Nothing was downloaded or cached.
    #[error("the manifest of {name} is signed by an untrusted key {key}")]
    UntrustedKey {
        /// The name asked for.
        name: ReleaseName,
        /// The signer's public key, in hex.
        key: String,
    },
    /// The manifest's signature does not verify (or its key is malformed). Nothing was
    /// downloaded or cached.
    #[error("the manifest of {name} has a bad signature: {source}")]
    BadSignature {
        /// The name asked for.
        name: ReleaseName,
        /// What the check said.
        #[source]
        source: ManifestError,
    },
    /// A validly signed manifest of another release or version was served for this one.
    #[error("asked for {asked}, the tracker served the signed manifest of {got}")]
    WrongRelease {
        /// What was asked for (`name` or `name version`).
        asked: String,
        /// What the manifest is for.
        got: String,
    },
    /// The metainfo's info-hash is not the one the signed manifest names. Nothing was
    /// downloaded or cached.
    #[error("the manifest names torrent {manifest}, the metainfo served is {metainfo}")]
    InfoHashMismatch {
        /// The info-hash in the manifest.
        manifest: InfoHash,
        /// The info-hash of the metainfo received.
        metainfo: InfoHash,
    },
    /// The metainfo received does not parse.
    #[error("the metainfo of {info_hash} is invalid: {source}")]
    BadMetainfo {
        /// The info-hash asked for.
        info_hash: InfoHash,
        /// Why it does not parse.
        #[source]
        source: MetainfoError,
    },
    /// A file of the release does not match its manifest entry (missing from the torrent,
    /// another size, another SHA-256). The release is not cached.
    #[error("{file} does not match the manifest: {reason}")]
    Integrity {
        /// The file (its path in the manifest).
        file: RelativePath,
        /// What differs.
        reason: String,
    },
    /// The download failed (storage error) or was stopped.
    #[error("download failed: {0}")]
    Download(#[from] DownloadError),
    /// The release could not be given a place in the cache (too large, cache full, I/O).
    #[error("cannot store the release: {0}")]
    Storage(#[source] Arc<StorageError>),
    /// The whole `get` took longer than
    /// [`ClientConfig::get_timeout`](crate::ClientConfig::get_timeout). Nothing partial
    /// is served; the download goes on in the background, so trying again later may
    /// succeed at once.
    #[error("gave up after {after:?}")]
    Timeout {
        /// The timeout in force.
        after: std::time::Duration,
    },
    /// The client is shutting down.
    #[error("the client is shut down")]
    Shutdown,
}

/// Why [`Client::add_torrent`](crate::Client::add_torrent) or
/// [`Client::add_magnet`](crate::Client::add_magnet) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AddError {
    /// The torrent does not parse.
    #[error("invalid torrent: {0}")]
    BadMetainfo(#[from] MetainfoError),
    /// The magnet link does not parse.
    #[error("invalid magnet link: {0}")]
    BadMagnet(#[from] swarmcdn_proto::magnet::MagnetError),
    /// No source gave the torrent of a magnet link (no tracker has it registered, or it was
    /// unreachable; no peer gave the metadata).
    #[error("no metadata for {info_hash}: {reason}")]
    MetadataUnavailable {
        /// The magnet's info-hash.
        info_hash: InfoHash,
        /// What was tried.
        reason: String,
    },
    /// The torrent received for a magnet link has another info-hash.
    #[error("asked for torrent {expected}, got {got}")]
    InfoHashMismatch {
        /// The magnet's info-hash.
        expected: InfoHash,
        /// The info-hash of what was received.
        got: InfoHash,
    },
    /// The release could not be given a place in the cache.
    #[error("cannot store the torrent: {0}")]
    Storage(#[source] Arc<StorageError>),
    /// The call took longer than
    /// [`ClientConfig::get_timeout`](crate::ClientConfig::get_timeout) (looking for a
    /// magnet's metadata, or making room in the cache).
    #[error("gave up after {after:?}")]
    Timeout {
        /// The timeout in force.
        after: std::time::Duration,
    },
    /// The client is shutting down.
    #[error("the client is shut down")]
    Shutdown,
}

/// Why [`Client::remove`](crate::Client::remove) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoveError {
    /// A live [`Release`](crate::Release) or [`TorrentHandle`](crate::TorrentHandle) reads
    /// the release's files, so they were not deleted (nothing was stopped). Drop the handles
    /// and try again, or remove without deleting the data.
    #[error("release {0} is in use by a handle; its files were not deleted")]
    InUse(InfoHash),
    /// The files could not be deleted (the session is stopped already).
    #[error("cannot delete the release's files: {0}")]
    Storage(#[source] Arc<StorageError>),
    /// The client is shutting down.
    #[error("the client is shut down")]
    Shutdown,
}

/// Why [`Release::bytes`](crate::Release::bytes) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The release has no such file.
    #[error("the release has no file {0}")]
    NoSuchFile(String),
    /// The store could not read it.
    #[error("cannot read {path}: {source}")]
    Storage {
        /// The file.
        path: RelativePath,
        /// The store's error.
        #[source]
        source: StorageError,
    },
}

/// Where a session could not be started.
#[derive(Debug)]
pub(crate) enum StartError {
    Storage(StorageError),
    Shutdown,
}

impl From<StartError> for GetError {
    fn from(e: StartError) -> Self {
        match e {
            StartError::Storage(e) => GetError::Storage(Arc::new(e)),
            StartError::Shutdown => GetError::Shutdown,
        }
    }
}

impl From<StartError> for AddError {
    fn from(e: StartError) -> Self {
        match e {
            StartError::Storage(e) => AddError::Storage(Arc::new(e)),
            StartError::Shutdown => AddError::Shutdown,
        }
    }
}
