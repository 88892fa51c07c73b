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
//! **Seeding over the peer wire** is the other consumer of the catalog. [`Seeder::run`] starts
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
//! One limit of the client as it stands, accepted for now: its upload limiter is its own,
//! so the peer wire is capped by `upload_limit_bytes_per_sec` on its own rather than
//! sharing one budget with the web seed (both together may send up to twice the cap).
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
use crate::catalog::{Catalog, StoreWatcher};
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
        }))
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

/// A seeder ready to serve: the store has been looked at once (and verified if asked).
#[derive(Debug)]
pub struct Seeder {
    config: Config,
    state: AppState,
    catalog: watch::Sender<Arc<Catalog>>,
    watcher: StoreWatcher,
    peer_address: watch::Sender<Option<SocketAddr>>,
}

impl Seeder {
    /// Opens the store, clears stale temporaries, and builds the first catalog (re-hashing
    /// every release if `verify_on_start` is set).
    pub async fn new(config: Config) -> Result<Self, ServeError> {
        config.validate()?;
        let store = Store::open(&config.store)?;
        let metrics = Arc::new(Metrics::new());
        let mut watcher =
            StoreWatcher::new(store.clone(), Arc::clone(&metrics), config.verify_on_start);
        let (watcher, first) = tokio::task::spawn_blocking(move || {
            match store.remove_stale_temporaries(STALE_TEMP_AGE) {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "removed leftovers of interrupted writes"),
                Err(error) => tracing::warn!(%error, "cannot clear old temporary store entries"),
            }
            let first = watcher.refresh(&Catalog::default());
            (watcher, first)
        })
        .await
        .map_err(|e| ServeError::Internal(e.to_string()))?;
        let catalog = first?.map(|(catalog, _)| catalog).unwrap_or_default();
        tracing::info!(
            store = %config.store.display(),
            releases = catalog.len(),
            "store loaded"
        );
        let (sender, receiver) = watch::channel(Arc::new(catalog));
        let state = AppState::new(
            receiver,
            Arc::new(Bandwidth::from_config(&config)),
            metrics,
            config.max_concurrent_requests,
        );
        Ok(Self {
            config,
            state,
            catalog: sender,
            watcher,
            peer_address: watch::channel(None).0,
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

    /// The address of the peer-wire listener, once [`Seeder::run`] has started seeding over
    /// the peer wire (`None` before, or with `peer_seeding` off).
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
            peer_address,
        } = self;
        let (stop, stopped) = watch::channel(false);
        let releases = catalog.subscribe();
        let interval = Duration::from_millis(config.store_poll_interval_ms);
        let watch_task = tokio::spawn(
            follow_store(watcher, catalog, interval, stopped)
                .instrument(tracing::info_span!("store_watcher")),
        );
        let peer = if config.peer_seeding {
            match start_peer_seeding(&config).await {
                Ok(peer) => {
                    peer_address.send_replace(Some(peer.local_peer_addr()));
                    Some(peer)
                }
                Err(error) => {
                    let _ = stop.send(true);
                    let _ = watch_task.await;
                    return Err(error);
                }
            }
        } else {
            None
        };
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
        if let Some(peer) = &peer {
            peer.shutdown().await;
        }
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

/// The upload cap of the peer wire in KiB per second, from the configured bytes per second
/// (`None`: no cap; a cap below 1 KiB/s is rounded up to 1 KiB/s).
fn peer_upload_kib(bytes_per_sec: u64) -> Option<u32> {
    (bytes_per_sec > 0).then(|| u32::try_from(bytes_per_sec.div_ceil(1024)).unwrap_or(u32::MAX))
}

/// The longest the peer engine may take to verify and start seeding one release.
const PEER_ADD_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
/// The longest wait between two tries of the releases the peer engine could not take.
const PEER_RETRY_MAX: Duration = Duration::from_secs(300);

/// Starts the client engine over the store, seed-only, which re-verifies and seeds every
/// intact release already there.
async fn start_peer_seeding(config: &Config) -> Result<swarmcdn_client::Client, ServeError> {
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
    if let Some(kib) = peer_upload_kib(config.upload_limit_bytes_per_sec) {
        builder = builder.upload_rate_limit(kib);
    }
    let client = builder.build().await.map_err(ServeError::Peer)?;
    tracing::info!(address = %client.local_peer_addr(), "seeding over the peer wire");
    Ok(client)
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
