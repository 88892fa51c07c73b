//! Run with: `cargo run --example site -- --tracker http://127.0.0.1:6969 --trust <64 hex digits>`
//!
//! The smallest real site that embeds swarmcdn's client library: a starting point to copy.
//!
//! It serves one page at `/` that shows the publisher's share button, and mounts the
//! client's router at `/widgets`, so the browser loads the button's files from this site's
//! own origin (`/widgets/share-button/button.js`, ...). Behind that router, the client gets
//! each release from the other sites that have it (the swarm) or from the publisher's web
//! seed, checks every byte against the publisher's signed manifest, keeps it in its cache,
//! and seeds it to other sites in turn.
//!
//! To try it against the demo's tracker: run `cargo run --release --example demo`, which
//! prints the tracker URL and the publisher's key, and pass them here with
//! `--listen 127.0.0.1:0` (or use your own tracker and key, see the README).
//!
//! The flags can also come from the environment: `SWARMCDN_TRACKER`, `SWARMCDN_TRUST`,
//! `SWARMCDN_LISTEN`, `SWARMCDN_CACHE_DIR`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use axum::Router;
use axum::response::Html;
use axum::routing::get;
use clap::Parser;
use swarmcdn_client::Client;
use swarmcdn_proto::manifest::parse_public_key;

#[derive(Debug, Parser)]
struct Args {
    /// The swarmcdn tracker's base URL: where the client asks for releases and peers.
    #[arg(long, env = "SWARMCDN_TRACKER")]
    tracker: String,
    /// The publisher's public key (64 hex digits). Releases signed by any other key are
    /// refused, so a compromised tracker cannot make this site serve someone else's code.
    #[arg(long, env = "SWARMCDN_TRUST")]
    trust: String,
    /// Where this site listens for browsers.
    #[arg(long, env = "SWARMCDN_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// A folder that keeps releases across restarts (without it, releases live in memory
    /// and are fetched again after a restart).
    #[arg(long, env = "SWARMCDN_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    // 1. The client: which tracker to ask, which publisher to trust. It also listens for
    //    peers (other sites) on a port the OS picks; set `.listen_addr(...)` to choose one,
    //    and open it in your firewall so other sites can fetch from you.
    let publisher = parse_public_key(&args.trust).context("--trust is not a public key")?;
    let mut builder = Client::builder().tracker(args.tracker).trust(publisher);
    if let Some(dir) = args.cache_dir {
        builder = builder.cache_dir(dir);
    }
    let client = builder.build().await.context("cannot start the client")?;

    // 2. Optional: fetch the release now, so the first visitor does not wait for it. (Without
    //    this, the first request under /widgets fetches it.)
    match client.get("share-button").await {
        Ok(release) => tracing::info!(version = %release.version(), "share-button is ready"),
        Err(error) => tracing::warn!(%error, "share-button is not available yet"),
    }

    // 3. The site: your own routes, plus the client's router under /widgets.
    let app = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .nest("/widgets", client.router());

    // 4. Serve until Ctrl-C, then leave the swarm cleanly (the tracker is told we are gone).
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!("open http://{}/", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    client.shutdown().await;
    Ok(())
}

/// The page: the button's stylesheet and script come from `/widgets/share-button/`. A click
/// posts `{"url": ...}` to `data-endpoint`; this minimal site has no such endpoint (see
/// `swarmcdn::demo` for one that counts shares), so the button shows the error it gets.
const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>My site</title>
  <link rel="stylesheet" href="/widgets/share-button/button.css">
</head>
<body>
  <h1>My site</h1>
  <div class="swarm-share" data-endpoint="/share"></div>
  <script src="/widgets/share-button/button.js"></script>
</body>
</html>
"#;
