//! `serve`: the origin daemon.
//!
//! Its parts, each in its own module, meet here:
//!
//! - the **catalog** of releases being served ([`crate::catalog`]), refreshed from the store
//!   every `store_poll_interval_ms` by a watcher task, so releases published or unpublished
//!   while the daemon runs are picked up without a restart;
//! - the **web seed** ([`crate::webseed`]) with `/metrics` and `/healthz`, one axum router;
//! - the **upload cap** ([`crate::bandwidth`]) shared by everything that uploads.
//!
//! **Seeding over the peer wire** is the other consumer of the catalog. [`Seeder::new`] starts
//! a [`swarmcdn_client::Client`] whose cache folder *is* the store: the store's layout
//! (`S/H/<files>` beside `S/H.torrent`) is the client cache's, so the client's start-up
//! restore re-verifies and seeds every release already there, announcing to each torrent's
//! trackers and the configured one. The client ignores what the store keeps beside it
//! (`S/H.manifest.json`, `S/H.withdrawn`, `S/.tmp-*`: names that are not an info-hash, or
//! an info-hash with a suffix it does not know), and it adds nothing to the store (no
//! lock, no peer entry, its verified manifests stay in memory).
//!
//! The store is the seeder's, not the client's: the client runs in
//! [`CacheMode::SeedOnly`](swarmcdn_client::CacheMode::SeedOnly), so it verifies what it
//! seeds without changing a byte or a name, never downloads into the store, never evicts,
//! and skips a damaged release with a warning (repairing it is `verify`'s and `publish`'s
//! job, not a peer engine's). A task follows [`Seeder::releases`]: every release that
//! appears goes to [`Client::add_torrent`](swarmcdn_client::Client::add_torrent), which
//! seeds the data already in the store, and every release the client seeds that is not in
//! the catalog (unpublished or withdrawn while the daemon runs, or withdrawn but restored
//! at start-up) goes to [`Client::remove`](swarmcdn_client::Client::remove), keeping its
//! files: the session says `stopped` to the trackers and handshakes for it are refused from
//! then on. A release the client could not take is tried again on a timer (from
//! `store_poll_interval_ms`, doubling up to five minutes) as well as at every change of the
//! catalog; adding one re-hashes it, so the client's `get_timeout` is a day, not a minute.
//! `peer_seeding = false` runs a web seed only.
//!
//! The engine re-verifies the store when it starts and seeds only the releases it found
//! complete and intact. That check *is* the start-up verify pass: the engine is
//! started before the first catalog is built, and the catalog then skips its own re-hashing
//! and leaves out every release the engine looked at and does not seed
//! ([`StoreWatcher::checked_elsewhere`]; `verify_on_start` applies only with
//! `peer_seeding = false`, which runs a web seed only). So a restart hashes the store
//! once, not twice; `/metrics` shows how much (`swarmcdn_seeder_startup_verified_bytes`).
//!
//! The engine uploads under the same token bucket as the web seed ([`Bandwidth::limiter`]):
//! one cap for both.
//!
//! The shape follows the workspace's convention: [`router`] builds the HTTP service from an
//! [`AppState`], and [`run`] serves it on a listener the caller bound until a shutdown future
//! completes, then stops the watcher and waits for it. In-flight responses get
//! [`SHUTDOWN_GRACE`] to finish; a client still downloading after that is cut off (it resumes
//! with a `Range` request, from us or from peers).

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tracing::Instrument;

use crate::bandwidth::Bandwidth;
use crate::catalog::{Catalog, CheckedElsewhere, StoreWatcher};
use crate::config::{Config, ConfigError};
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};
use crate::webseed;

/// How long in-flight responses may run on after shutdown was asked for.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Temporary store entries older than this are removed when `serve` starts: the remains of
/// a `publish` or `unpublish` a crash interrupted (younger ones may belong to one running).
pub const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);

/// Why `serve` could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The configuration is not valid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The HTTP server failed.
    #[error("the HTTP server failed: {0}")]
    Http(#[source] std::io::Error),
    /// The peer-wire seeder (the client engine) could not start.
    #[error("cannot start seeding over the peer wire: {0}")]
    Peer(#[source] swarmcdn_client::BuildError),
    /// A background task failed.
    #[error("internal error: {0}")]
    Internal(String),
}

/// What the request handlers share.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    catalog: watch::Receiver<Arc<Catalog>>,
    bandwidth: Arc<Bandwidth>,
    metrics: Arc<Metrics>,
    response_slots: Arc<Semaphore>,
    /// The peer engine, whose upload counters `/metrics` reads.
    peer: std::sync::OnceLock<swarmcdn_client::Client>,
    /// One `/metrics` at a time copies the engine's counters.
    peer_sync: tokio::sync::Mutex<()>,
}

impl AppState {
    /// State over a catalog channel, a bandwidth cap and metrics, sending at most
    /// `max_concurrent_responses` bodies at once.
    pub fn new(
        catalog: watch::Receiver<Arc<Catalog>>,
        bandwidth: Arc<Bandwidth>,
        metrics: Arc<Metrics>,
        max_concurrent_responses: usize,
    ) -> Self {
        Self(Arc::new(Shared {
            catalog,
            bandwidth,
            metrics,
            response_slots: Arc::new(Semaphore::new(
                max_concurrent_responses.clamp(1, Semaphore::MAX_PERMITS),
            )),
            peer: std::sync::OnceLock::new(),
            peer_sync: tokio::sync::Mutex::new(()),
        }))
    }

    /// Makes `/metrics` report what `peer` uploaded per release (the first engine set
    /// stays).
    pub fn set_peer_engine(&self, peer: swarmcdn_client::Client) {
        let _ = self.0.peer.set(peer);
    }

    /// Brings each served release's peer-wire byte counter up to what the engine's session
    /// of it has uploaded.
    async fn sync_peer_counters(&self) {
        let Some(peer) = self.0.peer.get() else {
            return;
        };
        let _one_at_a_time = self.0.peer_sync.lock().await;
        for served in self.catalog().releases() {
            if let Some(handle) = peer.torrent(served.release.info_hash).await {
                let uploaded = handle.progress().uploaded_bytes;
                let counted = served.counters.peer.get();
                if uploaded > counted {
                    served.counters.peer.inc_by(uploaded - counted);
                }
            }
        }
    }

    /// The current catalog snapshot.
    pub fn catalog(&self) -> Arc<Catalog> {
        Arc::clone(&self.0.catalog.borrow())
    }

    /// The shared upload cap.
    pub fn bandwidth(&self) -> &Arc<Bandwidth> {
        &self.0.bandwidth
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    pub(crate) fn response_slots(&self) -> Arc<Semaphore> {
        Arc::clone(&self.0.response_slots)
    }
}

/// The HTTP service: the web seed, `/metrics` and `/healthz`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/webseed/{info_hash}/{*path}", get(webseed::serve_file))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(state)
}

async fn metrics(State(state): State<AppState>) -> Response {
    state.sync_peer_counters().await;
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        state.metrics().encode(),
    )
        .into_response()
}

async fn healthz(State(state): State<AppState>) -> Response {
    let releases = state.catalog().len();
    (
        StatusCode::OK,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        format!("ok: serving {releases} release(s)\n"),
    )
        .into_response()
}

/// A seeder ready to serve: the store has been looked at once (and verified if asked), and
/// the peer engine, if any, is seeding.
///
/// Drop it only through [`Seeder::run`] (whose shutdown stops the peer engine), or the
/// engine's tasks run on until the runtime stops.
#[derive(Debug)]
pub struct Seeder {
    config: Config,
    state: AppState,
    catalog: watch::Sender<Arc<Catalog>>,
    watcher: StoreWatcher,
    peer: Option<swarmcdn_client::Client>,
    peer_address: watch::Sender<Option<SocketAddr>>,
}

impl Seeder {
    /// Opens the store, clears stale temporaries, starts the peer engine (when
    /// `peer_seeding` is on; it verifies the store), and builds the first catalog (re-hashing
    /// every release if `verify_on_start` is set and the engine did not).
    pub async fn new(config: Config) -> Result<Self, ServeError> {
        config.validate()?;
        let store = Store::open(&config.store)?;
        let metrics = Arc::new(Metrics::new());
        let bandwidth = Arc::new(Bandwidth::from_config(&config));
        let listed = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || {
                match store.remove_stale_temporaries(STALE_TEMP_AGE) {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(removed = n, "removed leftovers of interrupted writes"),
                    Err(error) => {
                        tracing::warn!(%error, "cannot clear old temporary store entries")
                    }
                }
                store.info_hashes()
            })
            .await
            .map_err(|e| ServeError::Internal(e.to_string()))??
        };
        let mut watcher = StoreWatcher::new(store, Arc::clone(&metrics), config.verify_on_start);
        let peer = if config.peer_seeding {
            // Seed-only, the engine reads the store whoever else does (it takes no lock), so
            // its start-up check always covers every stored release.
            let peer = start_peer_seeding(&config, &bandwidth).await?;
            metrics.startup_verified("peer_engine", peer.restored_bytes());
            // The engine seeds exactly the releases it found complete and intact.
            let mut intact = std::collections::BTreeSet::new();
            for info_hash in &listed {
                if peer.torrent(*info_hash).await.is_some() {
                    intact.insert(*info_hash);
                }
            }
            watcher.checked_elsewhere(CheckedElsewhere {
                checked: listed,
                intact,
            });
            Some(peer)
        } else {
            None
        };
        let first = tokio::task::spawn_blocking(move || {
            let first = watcher.refresh(&Catalog::default());
            (watcher, first)
        })
        .await
        .map_err(|e| ServeError::Internal(e.to_string()));
        let (watcher, first) = match first {
            Ok((watcher, Ok(first))) => (watcher, first),
            Ok((_, Err(error))) => {
                stop_peer(peer.as_ref()).await;
                return Err(error.into());
            }
            Err(error) => {
                stop_peer(peer.as_ref()).await;
                return Err(error);
            }
        };
        let catalog = first.map(|(catalog, _)| catalog).unwrap_or_default();
        tracing::info!(
            store = %config.store.display(),
            releases = catalog.len(),
            "store loaded"
        );
        let (sender, receiver) = watch::channel(Arc::new(catalog));
        let state = AppState::new(receiver, bandwidth, metrics, config.max_concurrent_requests);
        if let Some(peer) = &peer {
            state.set_peer_engine(peer.clone());
        }
        let peer_address = peer.as_ref().map(swarmcdn_client::Client::local_peer_addr);
        Ok(Self {
            config,
            state,
            catalog: sender,
            watcher,
            peer,
            peer_address: watch::channel(peer_address).0,
        })
    }

    /// The request handlers' state.
    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// The releases being served, as a channel that yields a new snapshot whenever the set
    /// changes: what a peer-wire seeding component subscribes to.
    pub fn releases(&self) -> watch::Receiver<Arc<Catalog>> {
        self.catalog.subscribe()
    }

    /// The address of the peer-wire listener (known from [`Seeder::new`] on, which starts
    /// the engine; `None` with `peer_seeding` off), as a channel that lives as long as the
    /// seeder.
    pub fn peer_address(&self) -> watch::Receiver<Option<SocketAddr>> {
        self.peer_address.subscribe()
    }

    /// The upload cap, for peer uploads to share.
    pub fn bandwidth(&self) -> Arc<Bandwidth> {
        Arc::clone(self.state.bandwidth())
    }

    /// Serves on `listener` until `shutdown` completes, following the store meanwhile.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let Seeder {
            config,
            state,
            catalog,
            watcher,
            peer,
            peer_address: _keep_address,
        } = self;
        let (stop, stopped) = watch::channel(false);
        let releases = catalog.subscribe();
        let interval = Duration::from_millis(config.store_poll_interval_ms);
        let watch_task = tokio::spawn(
            follow_store(watcher, catalog, interval, stopped)
                .instrument(tracing::info_span!("store_watcher")),
        );
        let peer_task = peer.clone().map(|peer| {
            tokio::spawn(
                follow_releases(peer, releases, stop.subscribe(), interval)
                    .instrument(tracing::info_span!("peer_seeding")),
            )
        });
        if let Ok(address) = listener.local_addr() {
            tracing::info!(%address, "serving the web seed");
        }

        let (signalled, on_signal) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            shutdown.await;
            tracing::info!("shutting down");
            let _ = signalled.send(());
        };
        let server = axum::serve(listener, router(state))
            .with_graceful_shutdown(shutdown)
            .into_future();
        let result = tokio::select! {
            result = server => result.map_err(ServeError::Http),
            () = async {
                if on_signal.await.is_ok() {
                    tokio::time::sleep(SHUTDOWN_GRACE).await;
                } else {
                    std::future::pending::<()>().await;
                }
            } => {
                tracing::warn!("responses still running after the shutdown grace period were cut off");
                Ok(())
            }
        };

        let _ = stop.send(true);
        let followed = match peer_task {
            Some(task) => task.await,
            None => Ok(()),
        };
        stop_peer(peer.as_ref()).await;
        watch_task
            .await
            .map_err(|e| ServeError::Internal(format!("the store watcher failed: {e}")))?;
        followed.map_err(|e| ServeError::Internal(format!("the peer seeding task failed: {e}")))?;
        result
    }
}

/// Serves `config` on `listener` until `shutdown` completes (see [`Seeder`]).
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    Seeder::new(config).await?.run(listener, shutdown).await
}

/// The longest the peer engine may take to verify and start seeding one release.
const PEER_ADD_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
/// The longest wait between two tries of the releases the peer engine could not take.
const PEER_RETRY_MAX: Duration = Duration::from_secs(300);

/// Starts the client engine over the store, seed-only, which re-verifies and seeds every
/// intact release already there, uploading under the shared cap.
async fn start_peer_seeding(
    config: &Config,
    bandwidth: &Bandwidth,
) -> Result<swarmcdn_client::Client, ServeError> {
    let mut builder = swarmcdn_client::Client::builder()
        .cache_dir(&config.store)
        .tracker(config.tracker.clone())
        .listen_addr(config.peer_listen)
        // The store is ours, not the engine's: it reads and seeds, never changes it.
        .cache_mode(swarmcdn_client::CacheMode::SeedOnly)
        .disk_budget(u64::MAX)
        .memory_threshold(0)
        // Adding a release re-hashes it from the store: a large one must not time out.
        .get_timeout(PEER_ADD_TIMEOUT);
    if let Some(limiter) = bandwidth.limiter() {
        builder = builder.upload_limiter(limiter);
    }
    let client = builder.build().await.map_err(ServeError::Peer)?;
    tracing::info!(address = %client.local_peer_addr(), "seeding over the peer wire");
    Ok(client)
}

/// Stops the peer engine, if there is one.
async fn stop_peer(peer: Option<&swarmcdn_client::Client>) {
    if let Some(peer) = peer {
        peer.shutdown().await;
    }
}

/// Keeps the client engine seeding exactly the catalog, until `stopped` turns true: every
/// release that appears is handed to it, and every release it seeds that the catalog does
/// not list is removed from it (its files stay: they are the store's).
async fn follow_releases(
    client: swarmcdn_client::Client,
    mut releases: watch::Receiver<Arc<Catalog>>,
    mut stopped: watch::Receiver<bool>,
    first_retry: Duration,
) {
    let mut retry = first_retry;
    loop {
        let catalog = Arc::clone(&releases.borrow_and_update());
        let sync = sync_peer_seeding(&client, &catalog);
        let all_seeded = tokio::select! {
            all = sync => all,
            _ = stopped.wait_for(|stop| *stop) => return,
        };
        // What the engine could not take (a file put right since, say) is tried again, less
        // and less often, and at once when the catalog changes.
        let wait = retry;
        let again = async move {
            match all_seeded {
                true => std::future::pending::<()>().await,
                false => tokio::time::sleep(wait).await,
            }
        };
        tokio::select! {
            changed = releases.changed() => {
                if changed.is_err() {
                    return;
                }
                retry = first_retry;
            }
            () = again => retry = (retry * 2).min(PEER_RETRY_MAX),
            _ = stopped.wait_for(|stop| *stop) => return,
        }
    }
}

/// One pass of [`follow_releases`]: returns whether every release of the catalog is
/// seeded. Failures are logged.
async fn sync_peer_seeding(client: &swarmcdn_client::Client, catalog: &Catalog) -> bool {
    let seeded: std::collections::BTreeSet<_> = client.info_hashes().await.into_iter().collect();
    for info_hash in seeded.iter().filter(|ih| catalog.get(ih).is_none()) {
        let keep = swarmcdn_client::RemoveOptions::keep_data();
        match client.remove(*info_hash, keep).await {
            Ok(_) => tracing::info!(%info_hash, "no longer seeding a release over the peer wire"),
            Err(error) => tracing::warn!(%info_hash, %error, "cannot stop seeding a release"),
        }
    }
    let mut all_seeded = true;
    for served in catalog.releases() {
        let info_hash = served.release.info_hash;
        if seeded.contains(&info_hash) {
            continue;
        }
        match client
            .add_torrent(&served.release.metainfo.to_bytes())
            .await
        {
            Ok(_) => tracing::debug!(%info_hash, "seeding a release"),
            Err(error) => {
                all_seeded = false;
                tracing::warn!(%info_hash, %error, "cannot seed a release; will try again");
            }
        }
    }
    all_seeded
}

/// Looks at the store every `interval` and publishes each changed catalog, until `stopped`
/// turns true.
async fn follow_store(
    watcher: StoreWatcher,
    catalog: watch::Sender<Arc<Catalog>>,
    interval: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let mut watcher = Some(watcher);
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
        let Some(mut current_watcher) = watcher.take() else {
            return;
        };
        let current = Arc::clone(&catalog.borrow());
        let outcome = tokio::task::spawn_blocking(move || {
            let result = current_watcher.refresh(&current);
            (current_watcher, result)
        })
        .await;
        match outcome {
            Ok((returned, result)) => {
                watcher = Some(returned);
                match result {
                    Ok(Some((next, changes))) => {
                        for info_hash in &changes.added {
                            tracing::info!(%info_hash, "now serving a release");
                        }
                        for info_hash in &changes.removed {
                            tracing::info!(%info_hash, "no longer serving a release");
                        }
                        catalog.send_replace(Arc::new(next));
                    }
                    Ok(None) => {}
                    Err(error) => tracing::warn!(%error, "cannot look at the store"),
                }
            }
            Err(error) => {
                tracing::error!(%error, "the store watcher's worker failed; no longer following the store");
                return;
            }
        }
    }
}
