//! The commands of `swarmcdn-seeder`: each loads what it needs, calls the library, and prints
//! for a person. Output that a script may want (the public key, the info-hash) is on stdout;
//! logs and progress are on stderr.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use swarmcdn_proto::manifest::{ReleaseName, Version};
use swarmcdn_seeder::config::Config;
use swarmcdn_seeder::keys;
use swarmcdn_seeder::publish::{PublishOptions, publish};
use swarmcdn_seeder::store::Store;
use swarmcdn_seeder::tracker_api::TrackerApi;

use crate::cli::{Cli, Command, PublishArgs, ServeArgs, TrackerArgs, UnpublishArgs};

/// Runs the command line.
pub(crate) fn run(cli: Cli) -> Result<()> {
    let mut config = load_config(cli.config.as_deref())?;
    if let Some(store) = cli.store {
        config.store = store;
    }
    if cli.print_config {
        print!("{}", config.to_toml()?);
        return Ok(());
    }
    match cli.command {
        None => bail!("no command given; see `swarmcdn-seeder --help`"),
        Some(Command::Keygen { out }) => keygen(out.as_deref().unwrap_or(&config.key)),
        Some(Command::Publish(args)) => runtime()?.block_on(publish_cmd(config, args)),
        Some(Command::Serve(args)) => runtime()?.block_on(serve(config, args)),
        Some(Command::List) => list(&config),
        Some(Command::Unpublish(args)) => runtime()?.block_on(unpublish(config, args)),
        Some(Command::Verify) => verify(&config),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().context("cannot start the async runtime")
}

/// The file's configuration, or the defaults without one.
fn load_config(path: Option<&Path>) -> Result<Config> {
    let Some(path) = path else {
        return Ok(Config::default());
    };
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read the configuration file {}; `swarmcdn-seeder --print-config` prints one \
             to start from",
            path.display()
        )
    })?;
    Config::from_toml(&text).with_context(|| format!("in configuration file {}", path.display()))
}

fn apply_tracker(config: &mut Config, args: &TrackerArgs) -> Result<()> {
    if let Some(tracker) = &args.tracker {
        config.tracker.clone_from(tracker);
    }
    if let Some(secs) = args.tracker_timeout_secs {
        config.tracker_timeout_secs = secs;
    }
    config.validate()?;
    if args.token.trim().is_empty() {
        bail!(
            "the token is empty; pass --token or set SWARMCDN_TOKEN to the token the tracker's operator gave you"
        );
    }
    Ok(())
}

fn keygen(out: &Path) -> Result<()> {
    let key = keys::keygen(out)?;
    let public = keys::public_key_hex(&key.verifying_key());
    println!("Wrote a new signing key to {} (mode 0600).", out.display());
    println!("Keep it secret and back it up: releases can only be signed with it.");
    println!();
    println!("Public key: {public}");
    println!();
    println!("Next:");
    println!("  1. Have the tracker's operator register it and give you a token:");
    println!("       swarmcdn-tracker publisher add YOUR-NAME --public-key {public}");
    println!("  2. Pin it in the sites that use your releases (their trusted publisher keys).");
    println!(
        "  3. Publish: SWARMCDN_TOKEN=... swarmcdn-seeder publish ./dist --name NAME --key {}",
        out.display()
    );
    Ok(())
}

async fn publish_cmd(mut config: Config, args: PublishArgs) -> Result<()> {
    apply_tracker(&mut config, &args.tracker)?;
    if let Some(key) = args.key {
        config.key = key;
    }
    if let Some(url) = args.webseed_url {
        config.webseed_url = url;
    }
    if let Some(max) = args.max_release_bytes {
        config.max_release_bytes = max;
    }
    config.validate()?;
    let options = PublishOptions {
        dir: args.dir,
        name: args.name,
        version: args.version,
        tracker: config.tracker.clone(),
        token: args.tracker.token,
        key_file: config.key.clone(),
        store: config.store.clone(),
        webseed_url: config.webseed_url.clone(),
        max_release_bytes: config.max_release_bytes,
        tracker_timeout: Duration::from_secs(config.tracker_timeout_secs),
        progress: !args.no_progress,
    };
    let published = publish(&options).await?;
    println!("Published {} {}", published.name, published.version);
    println!("  info-hash  {}", published.info_hash);
    println!("  magnet     {}", published.magnet);
    println!("  manifest   {}", published.manifest_url);
    println!("  torrent    {}", published.torrent_url);
    match &published.webseed_url {
        Some(url) => println!("  web seed   {url}"),
        None => println!("  web seed   (none)"),
    }
    println!("  stored in  {}", published.content_dir.display());
    println!("Files (size, content type, SRI):");
    for file in &published.files {
        println!(
            "  {}  {} bytes  {}  {}",
            file.path(),
            file.size(),
            file.content_type(),
            file.sri()
        );
    }
    Ok(())
}

async fn serve(mut config: Config, args: ServeArgs) -> Result<()> {
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(peer_listen) = args.peer_listen {
        config.peer_listen = peer_listen;
    }
    if let Some(limit) = args.upload_limit {
        config.upload_limit_bytes_per_sec = limit;
    }
    if let Some(share) = args.webseed_share {
        config.webseed_share_percent = share;
    }
    if let Some(ms) = args.poll_interval_ms {
        config.store_poll_interval_ms = ms;
    }
    if args.no_verify {
        config.verify_on_start = false;
    }
    if let Some(n) = args.max_concurrent_requests {
        config.max_concurrent_requests = n;
    }
    if let Some(secs) = args.webseed_backlog_secs {
        config.webseed_backlog_secs = secs;
    }
    if let Some(secs) = args.max_retry_after_secs {
        config.max_retry_after_secs = secs;
    }
    config.validate()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}; is another seeder running there? Choose another address \
                 with --listen or `listen` in the configuration",
                config.listen
            )
        })?;
    let store = config.store.clone();
    swarmcdn_seeder::serve::run(config, listener, shutdown_signal())
        .await
        .with_context(|| format!("serving the store {} failed", store.display()))
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let terminate = async {
        match signal(SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        result = tokio::signal::ctrl_c() => {
            if let Err(error) = result {
                tracing::error!(%error, "cannot listen for Ctrl-C");
                std::future::pending::<()>().await;
            }
        }
        () = terminate => {}
    }
}

fn list(config: &Config) -> Result<()> {
    let store = Store::open(&config.store)?;
    let releases = store.list()?;
    if releases.is_empty() {
        println!("The store {} holds no releases.", config.store.display());
        return Ok(());
    }
    println!(
        "{:<24} {:<14} {:<40} {:>5} {:>12}  STATUS",
        "NAME", "VERSION", "INFO-HASH", "FILES", "BYTES"
    );
    for release in releases {
        println!(
            "{:<24} {:<14} {:<40} {:>5} {:>12}  {}",
            release.name().as_str(),
            release.version().to_string(),
            release.info_hash.to_hex(),
            release.manifest().files().len(),
            release.metainfo.info().total_length(),
            if release.withdrawn {
                "withdrawn (kept)"
            } else {
                "served"
            }
        );
    }
    Ok(())
}

async fn unpublish(mut config: Config, args: UnpublishArgs) -> Result<()> {
    apply_tracker(&mut config, &args.tracker)?;
    let store = Store::open(&config.store)?;
    let stored = store.get(&args.name, &args.version)?;
    let api = TrackerApi::new(
        &config.tracker,
        Duration::from_secs(config.tracker_timeout_secs),
    )?;
    let (name, version): (&ReleaseName, &Version) = (&args.name, &args.version);
    let known = api
        .unpublish(&args.tracker.token, name, version)
        .await
        .context("the release was not withdrawn; the store is unchanged")?;
    if known {
        println!("The tracker no longer lists {name} {version}.");
    } else {
        println!("The tracker did not list {name} {version}.");
    }
    match stored {
        None => println!("The store {} does not hold it.", config.store.display()),
        Some(release) if args.keep_content => {
            store.withdraw(&release.info_hash)?;
            println!(
                "Kept its content in {} (withdrawn: no longer served).",
                release.content_dir.display()
            );
        }
        Some(release) => {
            store.remove(&release.info_hash)?;
            println!("Removed it from the store ({}).", release.info_hash);
        }
    }
    Ok(())
}

fn verify(config: &Config) -> Result<()> {
    let store = Store::open(&config.store)?;
    let mut damaged = 0usize;
    let mut checked = 0usize;
    for info_hash in store.info_hashes()? {
        checked += 1;
        let report = match store.verify(&info_hash) {
            Ok(Some(report)) => report,
            Ok(None) => continue,
            Err(error) => {
                damaged += 1;
                println!("DAMAGED {info_hash}: {error}");
                continue;
            }
        };
        if report.is_intact() {
            println!(
                "ok      {} {} ({}, {} pieces)",
                report.name, report.version, report.info_hash, report.pieces
            );
            continue;
        }
        damaged += 1;
        println!(
            "DAMAGED {} {} ({}): {} of {} pieces bad",
            report.name,
            report.version,
            report.info_hash,
            report.bad_pieces.len(),
            report.pieces
        );
        for file in &report.damaged {
            let problems: Vec<String> = file.problems.iter().map(ToString::to_string).collect();
            println!("  {}: {}", file.path, problems.join("; "));
        }
    }
    if damaged > 0 {
        bail!(
            "{damaged} of {checked} stored release(s) are damaged; restore the files, or \
             `swarmcdn-seeder unpublish` the release and publish it again"
        );
    }
    println!("{checked} release(s) intact.");
    Ok(())
}
