//! The public face of the engine: [`Client`] and its builder.
//!
//! A client owns one peer listener (every release is served on the same port), one piece
//! cache, the tracker client and one session per release (see [`crate::session`]). `get`
//! is where trust is established, in this order, before anything is downloaded or cached:
//!
//! 1. the signed manifest comes from a tracker, in one release lookup with the torrent and
//!    some peers (or, when no tracker answers, from the manifests this client verified
//!    before, else from the bootstrap peers: see `client/directory.rs`);
//! 2. its signature must verify against a pinned publisher key, and it must be the
//!    manifest of the release asked for;
//! 3. the metainfo (from the lookup, the cache or the peers, along with the manifest) must
//!    have the info-hash the manifest names: from there on every piece is SHA-1-checked
//!    against that metainfo, whatever its source;
//! 4. once downloaded, every file's size and SHA-256 must match the manifest;
//! 5. only then is the manifest saved, so that a later `get` works without the tracker.
//!
//! Sessions are shared: concurrent `get`s of one release, `add_torrent` of its metainfo
//! and the seeding of a release restored from the cache all use the same session, which
//! keeps seeding after completion until the release leaves: [`Client::remove`], eviction,
//! or [`Client::shutdown`].
//!
//! # Eviction and removal
//! Everything downloaded is seeded until it is evicted. When a new release needs room in
//! a budget (memory or disk), releases are evicted least recently used first (a `get`, an
//! `add_*` or [`Client::torrent`] counts as a use): their session is stopped (a `stopped`
//! announce, connections closed) and their data dropped. A release a reader holds (a live
//! [`Release`] or [`TorrentHandle`], or a `get` in progress) is never evicted: handles hold
//! a lease on the store, so their data stays readable; if leased and pinned releases leave
//! no room, the new release fails with a storage error. [`Client::remove`] does the same
//! for one release on request, optionally keeping its files.

mod directory;
mod error;
mod eviction;
mod magnet;
mod manifests;
mod release;
mod shared_folder;
mod updates;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use swarmcdn_proto::magnet::Magnet;
use swarmcdn_proto::manifest::{ManifestError, ReleaseName, SignedManifest, VerifyingKey, Version};
use swarmcdn_proto::metainfo::Metainfo;
use swarmcdn_proto::{InfoHash, PeerId};
use tokio_util::sync::CancellationToken;
use tokio_util::task::{AbortOnDropHandle, TaskTracker};
use tracing::Instrument;

pub use error::{AddError, BuildError, GetError, ReadError, RemoveError};
pub use eviction::RemoveOptions;
pub use manifests::MANIFEST_DIR;
pub use release::{Release, TorrentHandle};
pub use shared_folder::{LOCK_FILE, MAX_LOCAL_PEERS, PEERS_DIR};

use crate::config::ClientConfig;
use crate::peer::{Listener, PeerRegistry, UploadLimiter};
use crate::scheduler::{DeadlinePolicy, SchedulerConfig};
use crate::session::{self, LookupStart, SessionHandle, SessionParams, Shared};
use crate::storage::{
    Cache, CacheConfig, CacheMode, Placement, StorageError, StoreKind, StoreLease,
};
use crate::tracker_client::{TrackerClient, TrackerError};
use directory::Directory;
use error::StartError;
use manifests::{CachedManifest, ManifestCache};

/// Releases kept in memory up to this size are checked against their manifest's digests
/// (SHA-256 and the SRI's SHA-384) on the fetch's task: about 50 µs for a 20 KiB release
/// and at most about 0.16 ms here (`openssl speed`: SHA-256 1.4 GB/s, SHA-384 0.6 GB/s), against
/// a trip to the blocking pool; larger ones would hold an async worker too long.
const INLINE_VERIFY_MAX: u64 = 64 * 1024;

/// Builds a [`Client`]; every setting has a default (see [`ClientConfig`]).
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct ClientBuilder {
    config: ClientConfig,
}

impl ClientBuilder {
    /// Adds a swarmcdn tracker's base URL (`http://tracker.example:6969`).
    pub fn tracker(mut self, base_url: impl Into<String>) -> Self {
        self.config.trackers.push(base_url.into());
        self
    }

    /// Trusts manifests signed by `key`.
    pub fn trust(mut self, key: VerifyingKey) -> Self {
        self.config.trusted_keys.push(key);
        self
    }

    /// Where the peer listener binds (default `0.0.0.0:0`).
    pub fn listen_addr(mut self, addr: SocketAddr) -> Self {
        self.config.listen_addr = addr;
        self
    }

    /// Keeps releases, their torrents and verified manifests in `dir`, and seeds what is
    /// found there at start-up.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.cache_dir = Some(dir.into());
        self
    }

    /// Whose the cache folder is (see [`ClientConfig::cache_mode`]): `SeedOnly` for a
    /// store that belongs to someone else.
    pub fn cache_mode(mut self, mode: CacheMode) -> Self {
        self.config.cache_mode = mode;
        self
    }

    /// The most bytes of release content kept in memory.
    pub fn memory_budget(mut self, bytes: u64) -> Self {
        self.config.memory_budget = bytes;
        self
    }

    /// With a cache folder, releases up to this size are kept in memory, larger ones on disk
    /// (0: everything on disk).
    pub fn memory_threshold(mut self, bytes: u64) -> Self {
        self.config.memory_threshold = bytes;
        self
    }

    /// The most bytes of release content kept on disk.
    pub fn disk_budget(mut self, bytes: u64) -> Self {
        self.config.disk_budget = bytes;
        self
    }

    /// Caps uploads to peers at `kib_per_second` KiB/s, client-wide.
    pub fn upload_rate_limit(mut self, kib_per_second: u32) -> Self {
        self.config.upload_rate_kib = Some(kib_per_second);
        self.config.connection.upload_limiter = None;
        self
    }

    /// Paces uploads to peers with `limiter`, a budget the embedding program may share with
    /// its own uploads (clones of one [`UploadLimiter`] draw from one budget). Replaces
    /// [`ClientBuilder::upload_rate_limit`].
    pub fn upload_limiter(mut self, limiter: UploadLimiter) -> Self {
        self.config.upload_rate_kib = None;
        self.config.connection.upload_limiter = Some(limiter);
        self
    }

    /// The most peer connections open at once, client-wide.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.config.connection.max_connections = max;
        self
    }

    /// How many interested peers one release uploads to by rate (regular unchoke slots,
    /// besides the optimistic one); 0 unchokes every interested peer.
    pub fn upload_slots(mut self, slots: usize) -> Self {
        self.config.choker.regular_slots = slots;
        self
    }

    /// The most peers one release keeps connected.
    pub fn max_peers_per_torrent(mut self, max: usize) -> Self {
        self.config.max_peers_per_torrent = max;
        self
    }

    /// How late a peer's block may be before its piece is also fetched over HTTP.
    pub fn fallback_deadline(mut self, deadline: DeadlinePolicy) -> Self {
        self.config.scheduler.deadline = deadline;
        self
    }

    /// How long pieces no peer has wait for peers at start before going to HTTP (ended
    /// early once discovery settles).
    pub fn initial_peer_wait(mut self, wait: Duration) -> Self {
        self.config.scheduler.initial_peer_wait = wait;
        self
    }

    /// Every scheduler setting at once.
    pub fn scheduler(mut self, config: SchedulerConfig) -> Self {
        self.config.scheduler = config;
        self
    }

    /// Dials `addr` for every release, besides the peers trackers hand out, and asks it for
    /// a release's signed manifest when no tracker answers and none is cached.
    pub fn bootstrap_peer(mut self, addr: SocketAddr) -> Self {
        self.config.bootstrap_peers.push(addr);
        self
    }

    /// Timeout of one tracker request.
    pub fn tracker_timeout(mut self, timeout: Duration) -> Self {
        self.config.tracker_timeout = timeout;
        self
    }

    /// The longest a whole `get` or `add_*` call may take (see
    /// [`ClientConfig::get_timeout`]).
    pub fn get_timeout(mut self, timeout: Duration) -> Self {
        self.config.get_timeout = timeout;
        self
    }

    /// Timeout of one web-seed request.
    pub fn http_timeout(mut self, timeout: Duration) -> Self {
        self.config.web_seed.request_timeout = timeout;
        self
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, config: ClientConfig) -> Self {
        self.config = config;
        self
    }

    /// The configuration so far.
    pub fn current_config(&self) -> &ClientConfig {
        &self.config
    }

    /// Binds the peer listener, opens the cache (verifying and seeding every complete
    /// release in it) and starts the client.
    pub async fn build(self) -> Result<Client, BuildError> {
        Client::start(self.config).await
    }
}

/// The swarmcdn client: fetches releases from the swarm with HTTP fallback, verifies them,
/// caches them and seeds them. Cheap to clone; clones share everything.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    trackers: Vec<TrackerClient>,
    cache: Option<Arc<Cache>>,
    manifests: Arc<ManifestCache>,
    /// The names whose manifests this client hands to peers.
    directory: Arc<Directory>,
    /// One session per release; the lock also serialises starting them.
    sessions: tokio::sync::Mutex<HashMap<InfoHash, SessionHandle>>,
    /// (release, manifest signature) pairs whose files were verified in this process.
    verified: Mutex<HashSet<(InfoHash, [u8; 64])>>,
    /// Bytes of release content re-hashed when the cache folder was restored.
    restored_bytes: AtomicU64,
    /// The release served as "latest" for each name (see [`updates`]).
    latest: updates::LatestReleases,
    /// This client's peer entry (and lock) in a shared cache folder, let go at shutdown.
    presence: Mutex<Option<shared_folder::Presence>>,
    /// The logical clock of releases' last use (least-recently-used eviction).
    clock: AtomicU64,
    shutdown: CancellationToken,
}

impl Client {
    /// A builder with the default configuration.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    async fn start(config: ClientConfig) -> Result<Client, BuildError> {
        let config = config.sanitized();
        let mut conn_opts = config.connection.clone();
        if let Some(kib) = config.upload_rate_kib {
            conn_opts.upload_limiter = NonZeroU32::new(kib).map(UploadLimiter::new);
        }
        let listener = Listener::bind(config.listen_addr, conn_opts.clone())
            .await
            .map_err(|source| BuildError::Listen {
                addr: config.listen_addr,
                source,
            })?;
        let listen_addr = listener.local_addr();
        let web_http = crate::webseed::http_client(&config.web_seed).map_err(BuildError::Http)?;
        let tracker_http = reqwest::Client::builder()
            .timeout(config.tracker_timeout)
            .connect_timeout(config.tracker_timeout)
            .user_agent(crate::webseed::USER_AGENT)
            .build()
            .map_err(BuildError::Http)?;
        let trackers = config
            .trackers
            .iter()
            .map(|url| TrackerClient::new(url, tracker_http.clone()))
            .collect();

        // The release content of a folder another live client owns stays in memory; the
        // manifests are shared and the clients on it are dialled (see `shared_folder`).
        // A seed-only folder is someone else's store: no lock, no peer entry, no manifest
        // folder in it, and it is read whoever else uses it.
        let seed_only = config.cache_mode == CacheMode::SeedOnly;
        let owned = match seed_only {
            true => None,
            false => shared_folder::join(&config).await?,
        };
        let cache = match config
            .cache_dir
            .as_ref()
            .filter(|_| seed_only || owned.is_some())
        {
            Some(dir) => {
                let cache_config = CacheConfig {
                    dir: dir.clone(),
                    disk_budget: config.disk_budget,
                    memory_budget: config.memory_budget,
                    memory_threshold: config.memory_threshold,
                    mode: config.cache_mode,
                };
                let cache = blocking(move || Cache::open(cache_config))
                    .await
                    .map_err(BuildError::Cache)?;
                Some(Arc::new(cache))
            }
            None => None,
        };
        let manifests = {
            let dir = config.cache_dir.clone().filter(|_| !seed_only);
            let opened = tokio::task::spawn_blocking(move || ManifestCache::open(dir.as_deref()))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            opened.map_err(|source| BuildError::Manifests {
                path: config
                    .cache_dir
                    .clone()
                    .unwrap_or_default()
                    .join(MANIFEST_DIR),
                source,
            })?
        };
        let manifests = Arc::new(manifests);

        let registry = PeerRegistry::new();
        let conn_limit = listener.connection_limit();
        let tasks = TaskTracker::new();
        let shutdown = CancellationToken::new();
        let peer_id = PeerId::with_random_suffix(rand::random());
        let (directory, directory_incoming) = Directory::open(peer_id, &manifests).await;
        let (router, dir) = (registry.clone(), Arc::clone(&directory));
        tasks.spawn(
            listener
                .run(
                    move |ih| router.route(ih).or_else(|| dir.route(ih)),
                    shutdown.clone(),
                )
                .instrument(tracing::info_span!("peer_listener", %listen_addr)),
        );
        let presence = match config.cache_dir.clone().filter(|_| !seed_only) {
            Some(dir) => blocking(move || {
                Ok(shared_folder::Presence::announce(
                    &dir,
                    peer_id,
                    listen_addr,
                    owned,
                ))
            })
            .await
            .ok(),
            None => None,
        };
        tracing::info!(%listen_addr, %peer_id, "swarmcdn client started");
        let shared = Arc::new(Shared {
            config,
            peer_id,
            listen_addr,
            registry,
            conn_opts,
            conn_limit,
            web_http,
            tracker_http,
            tasks,
        });
        shared.tasks.spawn(
            directory::serve(
                Arc::clone(&directory),
                directory_incoming,
                Arc::clone(&manifests),
                Arc::clone(&shared),
                shutdown.clone(),
            )
            .instrument(tracing::info_span!("directory")),
        );
        let client = Client {
            inner: Arc::new(Inner {
                shared,
                trackers,
                cache,
                manifests,
                directory,
                sessions: tokio::sync::Mutex::new(HashMap::new()),
                verified: Mutex::new(HashSet::new()),
                restored_bytes: AtomicU64::new(0),
                latest: updates::LatestReleases::default(),
                presence: Mutex::new(presence),
                clock: AtomicU64::new(0),
                shutdown,
            }),
        };
        client.restore().await?;
        if let Some(interval) = client.config().update_interval {
            updates::spawn_poller(&client, interval);
        }
        Ok(client)
    }

    /// Verifies every release in the cache folder and seeds the complete ones.
    async fn restore(&self) -> Result<(), BuildError> {
        let Some(cache) = self.inner.cache.clone() else {
            return Ok(());
        };
        let stores = blocking(move || cache.restore())
            .await
            .map_err(BuildError::Cache)?;
        let hashed = stores.iter().map(|s| s.size()).sum();
        self.inner.restored_bytes.store(hashed, Ordering::Relaxed);
        for store in stores.into_iter().filter(|s| s.is_complete()) {
            let Some(metainfo) = self.cached_metainfo(store.info_hash()).await else {
                continue;
            };
            match self
                .start_session(Arc::new(metainfo), Vec::new(), None)
                .await
            {
                Ok(_leased) => {
                    tracing::info!(info_hash = %store.info_hash(), "seeding cached release")
                }
                Err(error) => tracing::warn!(?error, "cannot seed a cached release"),
            }
        }
        Ok(())
    }

    /// The address peers reach this client at (the listener's bound address; with the
    /// default `0.0.0.0` the port is what matters).
    pub fn local_peer_addr(&self) -> SocketAddr {
        self.inner.shared.listen_addr
    }

    /// Bytes of release content re-hashed at start-up, when the releases in the cache folder
    /// were verified (0 without a cache folder): what a restart costs in hashing.
    pub fn restored_bytes(&self) -> u64 {
        self.inner.restored_bytes.load(Ordering::Relaxed)
    }

    /// Whether this client keeps release content in its cache folder: false without one, or
    /// when another live client owns the folder (see [`LOCK_FILE`]).
    pub fn owns_cache(&self) -> bool {
        self.inner.cache.is_some()
    }

    /// This client's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.inner.shared.peer_id
    }

    /// The peers dialled for every release and asked for manifests when no tracker answers:
    /// the configured bootstrap peers, then the clients on the same cache folder as found
    /// now (read again each time: a client that left is no longer dialled).
    async fn bootstrap_peers(&self) -> Vec<SocketAddr> {
        let mut peers = self.inner.shared.config.bootstrap_peers.clone();
        if let Some(dir) = self.inner.shared.config.cache_dir.clone() {
            let own = self.inner.shared.peer_id;
            let local = tokio::task::spawn_blocking(move || shared_folder::local_peers(&dir, own))
                .await
                .unwrap_or_default();
            for addr in local {
                if !peers.contains(&addr) {
                    peers.push(addr);
                }
            }
        }
        peers
    }

    /// The configuration in force (the bootstrap peers as configured: the clients found on
    /// a shared cache folder are not added to it).
    pub fn config(&self) -> &ClientConfig {
        &self.inner.shared.config
    }

    /// How many tasks the client is running (connections, sessions, announces, the
    /// listener). 0 after [`Client::shutdown`].
    pub fn task_count(&self) -> usize {
        self.inner.shared.tasks.len()
    }

    /// The latest release of `name`, verified. See the [module docs](self) for the checks.
    /// It always asks the trackers; [`Client::latest`] answers from what the client already
    /// serves. If `name` is served as latest (or watched), a newer release got here becomes
    /// the one served.
    /// Fails with [`GetError::Timeout`] after [`ClientConfig::get_timeout`].
    pub async fn get(&self, name: &str) -> Result<Release, GetError> {
        let name: ReleaseName = name.parse()?;
        let after = self.inner.shared.config.get_timeout;
        let release = bounded(after, self.fetch(name.clone(), None))
            .await
            .unwrap_or(Err(GetError::Timeout { after }))?;
        self.inner.latest.offer_if_tracked(&name, &release);
        Ok(release)
    }

    /// Version `version` of `name`, verified. Fails with [`GetError::Timeout`] after
    /// [`ClientConfig::get_timeout`].
    pub async fn get_version(&self, name: &str, version: &Version) -> Result<Release, GetError> {
        let name: ReleaseName = name.parse()?;
        let after = self.inner.shared.config.get_timeout;
        bounded(after, self.fetch(name, Some(version.clone())))
            .await
            .unwrap_or(Err(GetError::Timeout { after }))
    }

    async fn fetch(
        &self,
        name: ReleaseName,
        version: Option<Version>,
    ) -> Result<Release, GetError> {
        self.fetch_with(name, version, false).await
    }

    /// [`Client::fetch`]; with `cached_first`, a pinned `version` whose verified manifest is
    /// cached is taken from the cache without asking the trackers (one that lags behind may
    /// not know it yet).
    ///
    /// The work runs in a task of its own, on the runtime's workers, whatever thread awaits it.
    /// Dropping the returned future aborts it; [`Client::shutdown`] ends it (with
    /// [`GetError::Shutdown`]) and waits for it like for the client's other tasks. A fetch hands
    /// work back and forth between its lookup's connection, its dials and its session, all on the
    /// workers; awaited from an application's main thread (`block_on`), each of those hand-offs
    /// woke that thread and then a worker in turn: a cold fetch of a 20 KiB release from `main`
    /// took 0.80 ms this way against 0.92 ms before (medians of 16 paired bench runs). Awaited from
    /// a worker, the task starts on the same worker.
    async fn fetch_with(
        &self,
        name: ReleaseName,
        version: Option<Version>,
        cached_first: bool,
    ) -> Result<Release, GetError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(GetError::Shutdown);
        }
        let client = self.clone();
        let stop = self.inner.shutdown.clone();
        let fetching = self.inner.shared.tasks.spawn(
            async move {
                tokio::select! {
                    biased;
                    () = stop.cancelled() => Err(GetError::Shutdown),
                    result = client.fetch_here(name, version, cached_first) => result,
                }
            }
            .in_current_span(),
        );
        match AbortOnDropHandle::new(fetching).await {
            Ok(result) => result,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(_) => Err(GetError::Shutdown),
        }
    }

    /// [`Client::fetch_with`], on the caller's task.
    async fn fetch_here(
        &self,
        name: ReleaseName,
        version: Option<Version>,
        cached_first: bool,
    ) -> Result<Release, GetError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(GetError::Shutdown);
        }
        let trusted = &self.inner.shared.config.trusted_keys;
        let asked = match &version {
            Some(v) => format!("{name} {v}"),
            None => name.to_string(),
        };
        let cached = match &version {
            Some(v) if cached_first => self.cached_manifest(&name, Some(v)).await,
            _ => None,
        };
        let found = match cached {
            Some(cached) => Ok((cached.manifest.clone(), ManifestSource::Cache(cached))),
            None => self.find_manifest(&name, version.as_ref()).await,
        };
        let peers_to_ask = match &found {
            Err(GetError::TrackerUnreachable { .. } | GetError::NoTracker(_)) => {
                !self.bootstrap_peers().await.is_empty()
            }
            _ => false,
        };
        let (signed, source) = match found {
            Err(e @ (GetError::TrackerUnreachable { .. } | GetError::NoTracker(_)))
                if peers_to_ask =>
            {
                let offered = self.manifest_from_peers(&name, version.as_ref(), e).await?;
                let (signed, metainfo) = self.usable_offer(&name, offered).await?;
                (signed, ManifestSource::Peers(metainfo))
            }
            found => found?,
        };
        // Dials to the lookup's peers start now, while the signature is checked (see
        // `session::LookupStart`); dropped, closing them, if the check fails.
        let claimed = signed.unverified_manifest().info_hash();
        let mut lookup = match &source {
            ManifestSource::Tracker { peers, .. } if !self.is_running(claimed).await => {
                Some(LookupStart::new(&self.inner.shared, claimed, peers.clone()))
            }
            _ => None,
        };
        let manifest = signed.verify(trusted).map_err(|e| match e {
            ManifestError::UntrustedKey { key } => GetError::UntrustedKey {
                name: name.clone(),
                key,
            },
            source => GetError::BadSignature {
                name: name.clone(),
                source,
            },
        })?;
        if manifest.name() != &name || version.as_ref().is_some_and(|v| v != manifest.version()) {
            return Err(GetError::WrongRelease {
                asked,
                got: format!("{} {}", manifest.name(), manifest.version()),
            });
        }
        if let Some(lookup) = &mut lookup {
            lookup.advance();
        }
        let info_hash = manifest.info_hash();
        let files = |metainfo: &Metainfo| release::file_map(manifest, metainfo.info());

        // The session (and its metainfo): running, or from where the manifest came.
        let running = self.running_session(info_hash).await;
        // The lease keeps the release from being evicted while it downloads and while the
        // caller holds the Release.
        let (session, lease) = match running {
            Some(running) => running,
            None => {
                let metainfo = match &source {
                    ManifestSource::Cache(cached) => Arc::clone(&cached.metainfo),
                    // Parsed only now that the manifest is trusted, so a bad one is reported
                    // against the info-hash the publisher signed.
                    ManifestSource::Tracker { torrent, .. } => {
                        let metainfo = Metainfo::from_bytes(torrent)
                            .map_err(|source| GetError::BadMetainfo { info_hash, source })?;
                        Arc::new(metainfo)
                    }
                    ManifestSource::Peers(metainfo) => Arc::clone(metainfo),
                };
                if metainfo.info_hash() != info_hash {
                    return Err(GetError::InfoHashMismatch {
                        manifest: info_hash,
                        metainfo: metainfo.info_hash(),
                    });
                }
                // Refuse a torrent that does not carry the manifest's files before
                // downloading anything.
                files(&metainfo)?;
                self.start_session(metainfo, Vec::new(), lookup).await?
            }
        };
        let files = files(&session.metainfo)?;
        let progress = session.wait_complete().await?;

        let already = self
            .inner
            .verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&(info_hash, *signed.signature()));
        if !already {
            // A small release in memory is checked right here (see INLINE_VERIFY_MAX);
            // anything else on the blocking pool.
            let verdict = if session.store.kind() == StoreKind::Memory
                && manifest.total_size() <= INLINE_VERIFY_MAX
            {
                release::verify_files(manifest, &session.store, &files)
            } else {
                let (manifest, store, map) =
                    (manifest.clone(), Arc::clone(&session.store), files.clone());
                tokio::task::spawn_blocking(move || release::verify_files(&manifest, &store, &map))
                    .await
                    .map_err(|_| GetError::Shutdown)?
            };
            if let Err(error) = verdict {
                tracing::error!(%error, %info_hash, "release does not match its signed manifest");
                drop(lease);
                // A task of its own: a `get` timeout dropping this call must not leave the
                // rejected release half discarded (stopped, its files kept and seeded again
                // at the next start).
                let client = self.clone();
                let discarding = self.inner.shared.tasks.spawn(
                    async move { client.discard(session).await }
                        .instrument(tracing::info_span!("discard", %info_hash)),
                );
                let _ = discarding.await;
                return Err(error);
            }
            self.inner
                .verified
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert((info_hash, *signed.signature()));
        }
        // Saved once, when first verified (a pinned route asks for the same release again
        // and again; the copy saved then is the same).
        if !already && !matches!(source, ManifestSource::Cache(_)) {
            let entry = CachedManifest {
                manifest: signed.clone(),
                metainfo: Arc::clone(&session.metainfo),
            };
            let saved = if self.inner.manifests.on_disk() {
                let inner = Arc::clone(&self.inner);
                tokio::task::spawn_blocking(move || inner.manifests.save(&entry))
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e)))
            } else {
                self.inner.manifests.save(&entry)
            };
            if let Err(error) = saved {
                tracing::warn!(%error, "cannot cache the manifest");
            }
        }
        self.inner.directory.publish(&name);
        Ok(Release::new(signed, lease, files, progress))
    }

    /// The manifest from the first tracker that has it, with the release's metainfo and
    /// some of its peers (one request: a release lookup). When none has it: `NotFound` if a
    /// tracker said so and every other one answered too; otherwise (some tracker could not
    /// be reached) the verified copy cached earlier, if any.
    async fn find_manifest(
        &self,
        name: &ReleaseName,
        version: Option<&Version>,
    ) -> Result<(SignedManifest, ManifestSource), GetError> {
        let mut last_error = None;
        let mut said_not_found = false;
        for tracker in &self.inner.trackers {
            match tracker.release(name, version).await {
                Ok(lookup) => {
                    let peers = (lookup.peers.into_iter().map(SocketAddr::V4))
                        .chain(lookup.peers6.into_iter().map(SocketAddr::V6))
                        .collect();
                    let source = ManifestSource::Tracker {
                        torrent: lookup.torrent,
                        peers,
                    };
                    return Ok((lookup.manifest, source));
                }
                Err(TrackerError::NotFound { .. }) => said_not_found = true,
                Err(error) => {
                    tracing::info!(url = %tracker.base_url(), %error, "tracker did not answer");
                    last_error = Some(error);
                }
            }
        }
        let not_found = || GetError::NotFound {
            name: name.clone(),
            version: version.cloned(),
        };
        if said_not_found && last_error.is_none() {
            return Err(not_found());
        }
        match (self.cached_manifest(name, version).await, last_error) {
            (Some(cached), _) => {
                tracing::info!(%name, "no tracker answered; using the cached manifest");
                Ok((cached.manifest.clone(), ManifestSource::Cache(cached)))
            }
            (None, _) if said_not_found => Err(not_found()),
            (None, Some(source)) => Err(GetError::TrackerUnreachable {
                name: name.clone(),
                source,
            }),
            (None, None) => Err(GetError::NoTracker(name.clone())),
        }
    }

    /// The verified manifest of `name` at `version` (the highest cached when `None`) saved
    /// earlier, if any.
    async fn cached_manifest(
        &self,
        name: &ReleaseName,
        version: Option<&Version>,
    ) -> Option<CachedManifest> {
        let inner = Arc::clone(&self.inner);
        let (n, v) = (name.clone(), version.cloned());
        tokio::task::spawn_blocking(move || {
            inner
                .manifests
                .load(&n, v.as_ref(), &inner.shared.config.trusted_keys)
        })
        .await
        .ok()
        .flatten()
    }

    /// The torrent stored next to a cached release, if any.
    async fn cached_metainfo(&self, info_hash: InfoHash) -> Option<Metainfo> {
        let cache = self.inner.cache.clone()?;
        blocking(move || cache.load_metainfo(&info_hash))
            .await
            .ok()
            .flatten()
    }

    /// The running session of `info_hash`, leased and marked used.
    /// Whether a session for `info_hash` is running.
    async fn is_running(&self, info_hash: InfoHash) -> bool {
        let sessions = self.inner.sessions.lock().await;
        sessions.get(&info_hash).is_some_and(|s| !s.is_finished())
    }

    async fn running_session(&self, info_hash: InfoHash) -> Option<(SessionHandle, StoreLease)> {
        let sessions = self.inner.sessions.lock().await;
        let session = sessions.get(&info_hash).filter(|s| !s.is_finished())?;
        Some(self.use_session(session))
    }

    /// Leases `session`'s store and marks it used. Called with the session lock held, so
    /// an eviction never picks a release between finding it and leasing it.
    fn use_session(&self, session: &SessionHandle) -> (SessionHandle, StoreLease) {
        let now = self.inner.clock.fetch_add(1, Ordering::Relaxed) + 1;
        session.last_used.store(now, Ordering::Relaxed);
        if let Some(cache) = &self.inner.cache {
            cache.touch(&session.info_hash());
        }
        (session.clone(), session.store.lease())
    }

    /// The running session of `metainfo`'s torrent, or a new one (with the store the cache
    /// gives it, which may already hold some or all of it). Every session announces to the
    /// same set of trackers however it started (fetched, added, restored from the cache):
    /// see [`announce_targets`].
    /// `lookup`: the release lookup the torrent came from (its peers, the first being
    /// dialled already), if any; dropped if the session is running already.
    async fn start_session(
        &self,
        metainfo: Arc<Metainfo>,
        extra_announce: Vec<String>,
        lookup: Option<LookupStart>,
    ) -> Result<(SessionHandle, StoreLease), StartError> {
        let info_hash = metainfo.info_hash();
        // A seed-only store is verified (the whole release read) as it opens: done before
        // the session lock is taken, so other releases' calls are not held up meanwhile.
        // (Nothing is evicted from a seed-only cache, so no room needs planning under it.)
        let _opened = match &self.inner.cache {
            Some(cache) if cache.config().mode == CacheMode::SeedOnly => {
                let (cache, metainfo) = (Arc::clone(cache), Arc::clone(&metainfo));
                Some(
                    blocking(move || cache.open_or_create(&metainfo, Placement::Disk))
                        .await
                        .map_err(StartError::Storage)?,
                )
            }
            _ => None,
        };
        let mut sessions = self.inner.sessions.lock().await;
        if self.inner.shutdown.is_cancelled() {
            return Err(StartError::Shutdown);
        }
        if let Some(session) = sessions.get(&info_hash).filter(|s| !s.is_finished()) {
            return Ok(self.use_session(session));
        }
        let store = self.open_store(&metainfo, &mut sessions).await?;
        let configured = self.inner.trackers.iter().map(TrackerClient::announce_url);
        let bootstrap_peers = self.bootstrap_peers().await;
        let announce_urls = announce_targets(metainfo.trackers(), extra_announce, configured);
        let params = SessionParams {
            metainfo,
            store,
            announce_urls,
            shared: Arc::clone(&self.inner.shared),
            bootstrap_peers,
            lookup,
            stop: self.inner.shutdown.child_token(),
        };
        let session = session::spawn(params).map_err(|_| StartError::Shutdown)?;
        let leased = self.use_session(&session);
        sessions.insert(info_hash, session);
        Ok(leased)
    }

    /// Downloads (and then seeds) a torrent given as its bytes. Pieces are checked against
    /// the torrent; there is no manifest to check files against. Returns once the download
    /// has started (or the torrent is found complete in the cache); fails with
    /// [`AddError::Timeout`] after [`ClientConfig::get_timeout`].
    pub async fn add_torrent(&self, torrent: &[u8]) -> Result<TorrentHandle, AddError> {
        let metainfo = Metainfo::from_bytes(torrent)?;
        let after = self.inner.shared.config.get_timeout;
        bounded(after, self.add_metainfo(metainfo))
            .await
            .unwrap_or(Err(AddError::Timeout { after }))
    }

    async fn add_metainfo(&self, metainfo: Metainfo) -> Result<TorrentHandle, AddError> {
        let (session, lease) = self
            .start_session(Arc::new(metainfo), Vec::new(), None)
            .await?;
        Ok(TorrentHandle::new(session, lease))
    }

    /// Downloads (and then seeds) the torrent of a magnet link. The torrent comes from the
    /// configured trackers' torrent endpoint when one has it, else from peers (BEP 9) found
    /// through the magnet's trackers, the configured ones and the bootstrap peers. Fails
    /// with [`AddError::Timeout`] after [`ClientConfig::get_timeout`].
    pub async fn add_magnet(&self, uri: &str) -> Result<TorrentHandle, AddError> {
        let magnet = Magnet::parse(uri)?;
        let after = self.inner.shared.config.get_timeout;
        bounded(after, self.add_from_magnet(magnet))
            .await
            .unwrap_or(Err(AddError::Timeout { after }))
    }

    async fn add_from_magnet(&self, magnet: Magnet) -> Result<TorrentHandle, AddError> {
        let info_hash = magnet.info_hash;
        if let Some((session, lease)) = self.running_session(info_hash).await {
            return Ok(TorrentHandle::new(session, lease));
        }
        let ours: Vec<String> = self
            .inner
            .trackers
            .iter()
            .map(TrackerClient::announce_url)
            .collect();
        let metainfo = match self.cached_metainfo(info_hash).await {
            Some(metainfo) => metainfo,
            None => match self.metainfo_from_trackers(info_hash).await {
                Ok(metainfo) => metainfo,
                Err(AddError::MetadataUnavailable { reason, .. }) => {
                    let mut announce = magnet.trackers.clone();
                    announce.extend(
                        ours.iter()
                            .filter(|u| !magnet.trackers.contains(u))
                            .cloned(),
                    );
                    tracing::info!(%info_hash, %reason, "no tracker has the torrent; asking peers");
                    magnet::fetch_from_peers(
                        &self.inner.shared,
                        &magnet,
                        &announce,
                        &self.bootstrap_peers().await,
                        &self.inner.shutdown,
                    )
                    .await
                    .map_err(|peers| AddError::MetadataUnavailable {
                        info_hash,
                        reason: format!("{reason}; peers: {peers}"),
                    })?
                }
                Err(other) => return Err(other),
            },
        };
        if metainfo.info_hash() != info_hash {
            return Err(AddError::InfoHashMismatch {
                expected: info_hash,
                got: metainfo.info_hash(),
            });
        }
        let (session, lease) = self
            .start_session(Arc::new(metainfo), magnet.trackers.clone(), None)
            .await?;
        Ok(TorrentHandle::new(session, lease))
    }

    async fn metainfo_from_trackers(&self, info_hash: InfoHash) -> Result<Metainfo, AddError> {
        let mut reasons = Vec::new();
        for tracker in &self.inner.trackers {
            match tracker.metainfo(info_hash).await {
                Ok(bytes) => match Metainfo::from_bytes(&bytes) {
                    Ok(metainfo) if metainfo.info_hash() == info_hash => return Ok(metainfo),
                    Ok(metainfo) => {
                        return Err(AddError::InfoHashMismatch {
                            expected: info_hash,
                            got: metainfo.info_hash(),
                        });
                    }
                    Err(e) => reasons.push(format!("{}: {e}", tracker.base_url())),
                },
                Err(e) => reasons.push(e.to_string()),
            }
        }
        if reasons.is_empty() {
            reasons.push("no tracker configured".into());
        }
        Err(AddError::MetadataUnavailable {
            info_hash,
            reason: reasons.join("; "),
        })
    }

    /// The releases the client runs a session for (downloading or seeding), in no
    /// particular order.
    pub async fn info_hashes(&self) -> Vec<InfoHash> {
        let sessions = self.inner.sessions.lock().await;
        sessions
            .iter()
            .filter(|(_, s)| !s.is_finished())
            .map(|(ih, _)| *ih)
            .collect()
    }

    /// The handle of a running release, if any.
    pub async fn torrent(&self, info_hash: InfoHash) -> Option<TorrentHandle> {
        self.running_session(info_hash)
            .await
            .map(|(session, lease)| TorrentHandle::new(session, lease))
    }

    /// Stops every session (sending `stopped` announces, bounded by
    /// [`ClientConfig::stopped_announce_timeout`]), closes every connection and the
    /// listener, and waits until every task the client started has ended.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.sessions.lock().await.clear();
        let tasks = &self.inner.shared.tasks;
        tasks.close();
        tasks.wait().await;
        // Ends every watch on "latest" and lets go of the releases served.
        self.inner.latest.close();
        drop(
            self.inner
                .presence
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        tracing::info!("swarmcdn client stopped");
    }
}

/// Where a manifest came from.
#[derive(Debug)]
enum ManifestSource {
    /// A tracker's release lookup: the torrent's bytes and a sample of the swarm came with
    /// it.
    Tracker {
        torrent: Vec<u8>,
        peers: Vec<SocketAddr>,
    },
    Cache(CachedManifest),
    /// The bootstrap peers (no tracker answered, nothing cached), with the release's
    /// metainfo (got with it: see `Client::usable_offer`).
    Peers(Arc<Metainfo>),
}

/// The announce URLs of a release, in order and without duplicates: its metainfo's
/// trackers (`announce`, `announce-list`), then `extra` ones (a magnet link's), then the
/// client's configured trackers, which every release is announced to so that the tracker
/// the client relies on knows every peer it seeds.
fn announce_targets(
    metainfo: Vec<String>,
    extra: Vec<String>,
    configured: impl IntoIterator<Item = String>,
) -> Vec<String> {
    let mut urls: Vec<String> = Vec::new();
    for url in metainfo.into_iter().chain(extra).chain(configured) {
        if !urls.contains(&url) {
            urls.push(url);
        }
    }
    urls
}

/// `work`, or `None` if it takes longer than `after`. (Dropping a `get` leaves its session
/// running without a lease: see [`ClientConfig::get_timeout`].)
async fn bounded<T>(after: Duration, work: impl std::future::Future<Output = T>) -> Option<T> {
    tokio::time::timeout(after, work).await.ok()
}

/// Runs blocking storage work on tokio's blocking pool.
async fn blocking<T, F>(work: F) -> Result<T, StorageError>
where
    F: FnOnce() -> Result<T, StorageError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or(Err(StorageError::Cancelled))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announce_targets_are_the_metainfos_then_the_configured_trackers_deduplicated() {
        let s = |v: &[&str]| v.iter().map(|u| (*u).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            announce_targets(
                s(&["http://a/announce", "http://b/announce"]),
                s(&["http://m/announce", "http://a/announce"]),
                s(&["http://b/announce", "http://c/announce"]),
            ),
            s(&[
                "http://a/announce",
                "http://b/announce",
                "http://m/announce",
                "http://c/announce"
            ])
        );
        // A torrent without trackers (restored from the cache, say) still gets the
        // configured ones.
        assert_eq!(
            announce_targets(Vec::new(), Vec::new(), s(&["http://c/announce"])),
            s(&["http://c/announce"])
        );
    }
}
