//! Running the service: [`run`] opens the registry named in the configuration and serves
//! until told to stop; [`serve`] does the same over a state the caller built.
//!
//! The listener is the caller's (a test binds `127.0.0.1:0`, the binary binds the configured
//! address), and so is the shutdown signal (the binary's is SIGINT or SIGTERM, a test's a
//! channel). Shutdown is graceful and bounded:
//!
//! 1. the signal fires: no new connection is accepted, idle kept-alive connections close;
//! 2. requests in flight finish, each bounded by the request timeout; if connections are
//!    still open a grace period later (the request timeout plus [`SHUTDOWN_GRACE_EXTRA`]),
//!    they are abandoned with a warning rather than holding the process up;
//! 3. the purge and registry-refresh tasks are told to stop and are awaited, so nothing the
//!    service spawned outlives [`serve`]'s future, and the listening socket is closed when it
//!    returns.
//!
//! Each connection is served by `http::dispatch`, which answers `GET /announce` directly and
//! hands every other request to [`router`]; `keep_alive = false` makes every response close
//! its connection.
//!
//! The purge task sweeps timed-out peers out of the swarm store every
//! `purge_interval_secs`; between sweeps, expired peers are never handed out anyway (the
//! store checks expiry when picking), so the sweep only reclaims memory.
//!
//! The refresh task re-reads the registered set from the registry every
//! `registry_refresh_secs` (0: never), through [`AppState::refresh_registered`]: that is how a
//! publisher removed with the CLI, or a release written by another process, reaches the
//! running service. A failed re-read keeps the last good set (announces go on being answered
//! from it), is logged, counted in `tracker_registry_refreshes_total{result="failed"}`, and
//! retried the next period. The swarms a refresh drops are dropped once more the period after,
//! in case an announce that passed its check just before the swap recreated one.

use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::time::Duration;

use swarmcdn_proto::InfoHash;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::{Config, ConfigError};
use crate::http::dispatch::MakeDispatch;
use crate::http::listener::LimitedListener;
use crate::http::metrics::RefreshResult;
use crate::http::{AppState, Refresh, router};
use crate::registry::{Registry, RegistryError};

/// Added to the request timeout to give in-flight requests time to finish at shutdown.
pub const SHUTDOWN_GRACE_EXTRA: Duration = Duration::from_secs(2);

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The configuration is inconsistent.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The registry database could not be opened or read.
    #[error("cannot open the registry: {0}")]
    Registry(#[from] RegistryError),
    /// The server's socket failed.
    #[error("the server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Opens the registry at `config.database` and serves on `listener` until `shutdown`
/// completes. See the module docs for the shutdown sequence.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    config.validate()?;
    let registry = Arc::new(Registry::open(&config.database)?);
    let state = AppState::new(config, registry)?;
    serve(state, listener, shutdown).await
}

/// Serves [`router`] (with the announce fast path in front) over `state` on `listener` until
/// `shutdown` completes.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let config = state.config();
    let local = listener.local_addr()?;
    tracing::info!(
        address = %local,
        registered = state.registered_count(),
        "tracker listening"
    );
    let stop_tasks = CancellationToken::new();
    let purge = tokio::spawn(
        purge_loop(state.clone(), stop_tasks.clone())
            .instrument(tracing::info_span!("swarm_purge")),
    );
    let refresh = tokio::spawn(
        refresh_loop(state.clone(), stop_tasks.clone())
            .instrument(tracing::info_span!("registry_refresh")),
    );

    let listener = LimitedListener::new(
        listener,
        config.limits.max_connections,
        Duration::from_secs(config.limits.idle_timeout_secs),
        state.metrics().connections().clone(),
    );
    let stopping = CancellationToken::new();
    let signal = {
        let stopping = stopping.clone();
        async move {
            shutdown.await;
            tracing::info!("shutdown requested; finishing requests in flight");
            stopping.cancel();
        }
    };
    let grace = Duration::from_secs(config.limits.request_timeout_secs) + SHUTDOWN_GRACE_EXTRA;
    let server = axum::serve(
        listener,
        MakeDispatch::new(state.clone(), router(state.clone())),
    )
    .with_graceful_shutdown(signal)
    .into_future();
    let result = tokio::select! {
        result = server => result,
        () = async { stopping.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(?grace, "connections still open after the grace period; closing");
            Ok(())
        }
    };
    stop_tasks.cancel();
    if let Err(error) = purge.await {
        tracing::error!(%error, "the purge task failed");
    }
    if let Err(error) = refresh.await {
        tracing::error!(%error, "the registry refresh task failed");
    }
    tracing::info!(address = %local, "tracker stopped");
    Ok(result?)
}

/// Drops timed-out peers every `purge_interval_secs` until `stop` is cancelled.
async fn purge_loop(state: AppState, stop: CancellationToken) {
    let period = Duration::from_secs(u64::from(state.config().purge_interval_secs));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        match state.store().purge_expired(state.epoch().now()) {
            Ok(report) if report.peers > 0 || report.torrents > 0 => {
                tracing::debug!(peers = report.peers, torrents = report.torrents, "purged");
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "purge failed; retrying next period"),
        }
    }
    tracing::debug!("purge task stopped");
}

/// Re-reads the registered set every `registry_refresh_secs` (never when 0) until `stop` is
/// cancelled. See the module docs.
async fn refresh_loop(state: AppState, stop: CancellationToken) {
    let secs = state.config().registry_refresh_secs;
    if secs == 0 {
        tracing::debug!("registry refresh off");
        return;
    }
    let period = Duration::from_secs(u64::from(secs));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Swarms dropped by the last refresh, dropped again by this one.
    let mut lingering: Vec<InfoHash> = Vec::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let previous = std::mem::take(&mut lingering);
        let worker = state.clone();
        // SQLite blocks; a read of the torrents table is short, so shutdown waits it out.
        let outcome = tokio::task::spawn_blocking(move || {
            let lingered = worker.drop_swarms(&previous);
            (worker.refresh_registered(), lingered)
        })
        .await;
        let (refreshed, lingered) = match outcome {
            Ok(outcome) => outcome,
            Err(error) => {
                tracing::error!(%error, "the registry refresh panicked; retrying next period");
                state.metrics().refreshed(RefreshResult::Failed);
                continue;
            }
        };
        if let Err(error) = lingered {
            tracing::warn!(%error, "cannot drop the swarm of an unregistered torrent");
        }
        match refreshed {
            Ok(Refresh::Replaced { added, removed }) => {
                state.metrics().refreshed(RefreshResult::Replaced);
                if added > 0 || !removed.is_empty() {
                    tracing::info!(
                        added,
                        removed = removed.len(),
                        registered = state.registered_count(),
                        "registered torrents re-read from the registry"
                    );
                }
                lingering = removed;
            }
            Ok(Refresh::Raced) => {
                state.metrics().refreshed(RefreshResult::Raced);
                tracing::debug!("a publish raced the registry refresh; retrying next period");
            }
            Err(error) => {
                state.metrics().refreshed(RefreshResult::Failed);
                tracing::warn!(
                    %error,
                    "registry refresh failed; keeping the last good set of registered torrents"
                );
            }
        }
    }
    tracing::debug!("registry refresh task stopped");
}
