//! The `swarmcdn-tracker` command line: what it accepts, and what each command does.
//!
//! Definitions and the commands' bodies live here so `main.rs` stays glue. Everything the
//! commands do goes through the library (`Config`, `Registry`, `run`); this file only turns
//! arguments into calls and results into words for an operator, with the next step to take
//! when something fails.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use swarmcdn_proto::manifest::parse_public_key;
use swarmcdn_tracker::config::Config;
use swarmcdn_tracker::registry::Registry;

/// The swarmcdn tracker: the rendezvous of every release swarm, and the registry of
/// publishers, releases, signed manifests and torrents.
///
/// It answers BitTorrent announces and scrapes only for torrents a publisher registered, and
/// serves the publish API (POST /api/v1/releases with a bearer token), the manifests and
/// torrents sites fetch, /metrics, /healthz and /readyz.
///
/// Start with `swarmcdn-tracker --print-config > tracker.toml`, edit it, then
/// `swarmcdn-tracker serve --config tracker.toml`. Add publishers with
/// `swarmcdn-tracker publisher add NAME --public-key HEX`.
#[derive(Debug, Parser)]
#[command(name = "swarmcdn-tracker", version, about, long_about)]
pub(crate) struct Cli {
    /// TOML configuration file (see --print-config). Without it, the defaults apply.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "SWARMCDN_TRACKER_CONFIG"
    )]
    pub(crate) config: Option<PathBuf>,

    /// The registry database (SQLite file), overriding `database` from the configuration.
    #[arg(long, global = true, value_name = "PATH")]
    pub(crate) db: Option<PathBuf>,

    /// Print the default configuration as TOML (every key, documented in the crate docs)
    /// and exit.
    #[arg(long)]
    pub(crate) print_config: bool,

    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Serve announces, scrapes and the API until SIGINT or SIGTERM.
    Serve {
        /// Address to listen on, overriding `listen` from the configuration
        /// (e.g. 0.0.0.0:6969).
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
    },
    /// Manage the publishers allowed to register releases.
    #[command(subcommand)]
    Publisher(PublisherCommand),
}

/// `publisher ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum PublisherCommand {
    /// Add a publisher and print its bearer token (shown once: store it).
    Add {
        /// Publisher name: a-z, 0-9, '-', '_', '.'; at most 64 characters.
        name: String,
        /// The publisher's Ed25519 public key (64 hex digits), which must have signed every
        /// manifest it publishes. `swarmcdn-seeder` prints it.
        #[arg(long, value_name = "HEX")]
        public_key: String,
    },
    /// List publishers.
    List,
    /// Remove a publisher with all its releases (their torrents stop being tracked).
    Remove {
        /// Publisher name.
        name: String,
    },
    /// Replace a publisher's token and print the new one; the old one stops working.
    RotateToken {
        /// Publisher name.
        name: String,
    },
}

/// The configuration: the file if given (else the defaults), with `--db` applied.
pub(crate) fn load_config(cli: &Cli) -> Result<Config> {
    let mut config = match &cli.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| {
                format!(
                    "cannot read the configuration file {}; `swarmcdn-tracker --print-config` \
                     writes a template",
                    path.display()
                )
            })?;
            Config::from_toml(&text)
                .with_context(|| format!("in configuration file {}", path.display()))?
        }
        None => Config::default(),
    };
    if let Some(db) = &cli.db {
        config.database = db.clone();
    }
    Ok(config)
}

/// `serve`: binds, then runs until SIGINT or SIGTERM.
pub(crate) async fn serve(mut config: Config, listen: Option<SocketAddr>) -> Result<()> {
    if let Some(listen) = listen {
        config.listen = listen;
    }
    config.validate()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}; is another tracker running there? Choose another address \
                 with --listen or `listen` in the configuration",
                config.listen
            )
        })?;
    let database = config.database.clone();
    swarmcdn_tracker::run(config, listener, shutdown_signal())
        .await
        .with_context(|| format!("tracker failed (registry {})", database.display()))
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

/// `publisher ...`: runs one registry command, printing for an operator.
pub(crate) fn publisher(config: &Config, command: PublisherCommand) -> Result<()> {
    let registry = open_registry(&config.database)?;
    match command {
        PublisherCommand::Add { name, public_key } => {
            let key = parse_public_key(&public_key).with_context(|| {
                format!("--public-key {public_key:?} is not an Ed25519 public key (64 hex digits)")
            })?;
            let token = registry.add_publisher(&name, key.as_bytes())?;
            println!("publisher {name} added.");
            println!("token: {}", token.as_str());
            println!(
                "Store this token now (in the publisher's secret store): it is not kept and \
                 cannot be shown again. `publisher rotate-token {name}` issues a new one."
            );
        }
        PublisherCommand::List => {
            let publishers = registry.list_publishers()?;
            if publishers.is_empty() {
                println!("no publishers; add one with `publisher add NAME --public-key HEX`");
            }
            for publisher in publishers {
                println!(
                    "{}\t{}\tadded {}",
                    publisher.name,
                    data_encoding::HEXLOWER.encode(&publisher.public_key),
                    publisher.created
                );
            }
        }
        PublisherCommand::Remove { name } => {
            let removed = registry.remove_publisher(&name)?;
            let when = match config.registry_refresh_secs {
                0 => "at its next restart (registry_refresh_secs is 0)".to_owned(),
                secs => format!("within {secs} s (registry_refresh_secs)"),
            };
            println!(
                "publisher {name} removed with {} release(s); a running tracker on this \
                 database stops tracking them {when}",
                removed.len()
            );
        }
        PublisherCommand::RotateToken { name } => {
            let token = registry.rotate_token(&name)?;
            println!("new token for {name}: {}", token.as_str());
            println!(
                "The old token no longer works. Store this one now: it cannot be shown again."
            );
        }
    }
    Ok(())
}

fn open_registry(path: &Path) -> Result<Arc<Registry>> {
    if path == Path::new(":memory:") {
        bail!(
            "the registry is `:memory:`, so a publisher added here would vanish at once; give a \
             database file with --db or `database` in the configuration"
        );
    }
    let registry = Registry::open(path)
        .with_context(|| format!("cannot open the registry {}", path.display()))?;
    Ok(Arc::new(registry))
}
