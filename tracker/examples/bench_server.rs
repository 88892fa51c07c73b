//! Run with: `cargo run --release -p swarmcdn-tracker --example bench_server -- \
//!     --pool ../shared/bench/tracker/pool-10000.hex [--listen 127.0.0.1:17100] [--config FILE]`
//!
//! The tracker as the load benchmark (`bench/tracker.sh`) drives it: the production service
//! (`AppState`, router, `serve`, the same runtime as the `swarmcdn-tracker` binary) over an
//! in-memory registry into which every info-hash of the pool file (40 hex digits a line) is
//! registered, one release per torrent, through the registry's public API, exactly as the
//! publish endpoint would. The announce path is not touched: it finds these torrents in the
//! registered set the way it finds any published torrent.
//!
//! The releases carry placeholder manifest and metainfo bytes; the benchmark only announces
//! and scrapes, which never read them.
//!
//! Prints `pid=<PID> url=http://<ADDR>/announce` once it listens, and serves until SIGINT or
//! SIGTERM. `--config` takes a tracker configuration file (for example one that sets
//! `keep_alive = false`); its `listen` is overridden by `--listen`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use swarmcdn_proto::InfoHash;
use swarmcdn_tracker::AppState;
use swarmcdn_tracker::config::Config;
use swarmcdn_tracker::registry::Registry;

/// The allocator the `swarmcdn-tracker` binary uses (see `src/main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The publisher that owns the benchmark's releases.
const PUBLISHER: &str = "bench";
/// Its public key (never used: nothing is published over HTTP here).
const PUBLIC_KEY: [u8; 32] = [0x42; 32];

struct Args {
    pool: PathBuf,
    listen: SocketAddr,
    config: Option<PathBuf>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        pool: PathBuf::new(),
        listen: "127.0.0.1:17100".parse()?,
        config: None,
    };
    let mut argv = std::env::args().skip(1);
    while let Some(flag) = argv.next() {
        let mut value = || argv.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--pool" => args.pool = value()?.into(),
            "--listen" => args.listen = value()?.parse().context("--listen")?,
            "--config" => args.config = Some(value()?.into()),
            other => bail!("unknown argument {other}"),
        }
    }
    if args.pool.as_os_str().is_empty() {
        bail!("--pool FILE is required");
    }
    Ok(args)
}

/// Registers one release per info-hash of `pool` in `registry`; returns how many.
fn register_pool(registry: &Registry, pool: &PathBuf) -> Result<usize> {
    let text = std::fs::read_to_string(pool)
        .with_context(|| format!("cannot read the pool {}", pool.display()))?;
    registry.add_publisher(PUBLISHER, &PUBLIC_KEY)?;
    let publisher = registry
        .publisher(PUBLISHER)?
        .context("the publisher just added is missing")?;
    let name = PUBLISHER.parse()?;
    let mut count = 0;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let info_hash = InfoHash::from_text(line)
            .with_context(|| format!("bad info-hash {line:?} in {}", pool.display()))?;
        let version = format!("1.0.{count}");
        registry.insert_release(&publisher, &name, &version, &info_hash, b"-", b"-")?;
        count += 1;
    }
    Ok(count)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut config = match &args.config {
        Some(path) => Config::from_toml(&std::fs::read_to_string(path)?)?,
        None => Config::default(),
    };
    config.listen = args.listen;
    config.database = ":memory:".into();
    let registry = Arc::new(Registry::open_in_memory()?);
    let torrents = register_pool(&registry, &args.pool)?;
    // The same runtime the `swarmcdn-tracker` binary builds.
    tokio::runtime::Runtime::new()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let url = format!("http://{}/announce", listener.local_addr()?);
        let state = AppState::new(config, registry)?;
        println!("pid={} url={url} torrents={torrents}", std::process::id());
        std::io::stdout().flush()?;
        swarmcdn_tracker::serve(state, listener, shutdown_signal()).await?;
        Ok(())
    })
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut interrupt), Ok(mut terminate)) => {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        }
        _ => {
            tracing::error!("cannot listen for signals; stop with SIGKILL");
            std::future::pending::<()>().await;
        }
    }
}
