//! Run with: `cargo run --release --example demo`
//!
//! The whole system in one process, on loopback: a tracker, the share button published and
//! seeded by the seeder, and two example sites that fetch it through the swarm and serve it
//! to your browser. Open a site's URL, click the button, watch the counters; Ctrl-C stops
//! everything. The work lives in `swarmcdn::demo`, which the browser test drives too.

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use swarmcdn::demo::{Demo, DemoOptions, MAX_SITES, SiteStats};

/// The swarmcdn demo: tracker, seeder and example sites on 127.0.0.1.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// First port to use: tracker on it, seeder on +1, sites on +2, +3, ...
    /// 0 lets the OS pick free ports.
    #[arg(long, default_value_t = 0)]
    port_base: u16,
    /// How many example sites to run.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=MAX_SITES as i64))]
    sites: u16,
    /// Seconds between two prints of the counters.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    stats_every: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,swarmcdn=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();

    let demo = Demo::start(DemoOptions {
        port_base: args.port_base,
        sites: usize::from(args.sites),
        ..DemoOptions::default()
    })
    .await
    .context("the demo could not start")?;

    println!("swarmcdn demo: everything runs on 127.0.0.1 (Ctrl-C stops it)");
    println!("  tracker    {}", demo.tracker_url());
    println!("  web seed   {}/webseed/", demo.webseed_url());
    println!("  release    share-button {}", demo.version());
    println!("  info-hash  {}", demo.info_hash());
    println!("  publisher  {}", demo.public_key_hex());
    for site in demo.stats().await {
        println!("  {:<9}  {}", site.name, site.url);
    }
    println!();

    let mut ticks = tokio::time::interval(Duration::from_secs(args.stats_every));
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            signal = &mut stop => {
                signal.context("cannot listen for Ctrl-C")?;
                break;
            }
            _ = ticks.tick() => {
                for site in demo.stats().await {
                    println!("{}", counters(&site));
                }
            }
        }
    }

    println!("stopping...");
    demo.shutdown()
        .await
        .context("the demo did not stop cleanly")?;
    println!("stopped cleanly");
    Ok(())
}

/// One line of counters for a site.
fn counters(site: &SiteStats) -> String {
    format!(
        "{:<9} {:>9} from peers, {:>9} from the web seed, {:>9} uploaded, {} peer(s), {} share(s), {} response(s){}",
        site.name,
        size(site.bytes_from_peers),
        size(site.bytes_from_http),
        size(site.uploaded_bytes),
        site.peers_connected,
        site.shares,
        site.responses,
        if site.complete { "" } else { " (fetching)" },
    )
}

fn size(bytes: u64) -> String {
    if bytes < 1024 {
        format!("{bytes} B")
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}
