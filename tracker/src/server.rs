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
//! 3. the purge task is told to stop and is awaited, so nothing the service spawned
//!    outlives [`serve`]'s future, and the listening socket is closed when it returns.
//!
//! Each connection is served by `http::dispatch`, which answers `GET /announce` directly and
//! hands every other request to [`router`]; `keep_alive = false` makes every response close
//! its connection.
//!
//! The purge task sweeps timed-out peers out of the swarm store every
//! `purge_interval_secs`; between sweeps, expired peers are never handed out anyway (the
//! store checks expiry when picking), so the sweep only reclaims memory.

use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::{Config, ConfigError};
use crate::http::dispatch::MakeDispatch;
use crate::http::listener::LimitedListener;
use crate::http::{AppState, router};
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
