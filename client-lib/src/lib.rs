//! The library sites embed to get published web assets (a widget's HTML, JS, CSS and icons)
//! from the swarm of sites that already have them, with HTTP as a fallback, and to serve
//! and seed them in turn.
//!
//! A [`Client`] fetches a release by name: the publisher's signed manifest from the tracker
//! (checked against a pinned key), the torrent it names (checked against its info-hash),
//! the pieces from peers and, for pieces no peer has or a peer is late with, from the
//! publisher's web seed; every piece is SHA-1-checked whatever its source, every file
//! SHA-256-checked against the manifest. What it has, it seeds to other sites until the
//! release is evicted from its cache (least recently used first, never while a handle
//! reads it), removed with [`Client::remove`], or the client shuts down. A whole `get` is
//! bounded by [`ClientConfig::get_timeout`].
//!
//! ```no_run
//! use swarmcdn_client::Client;
//! use swarmcdn_proto::manifest::parse_public_key;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let publisher = parse_public_key(
//!     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
//! )?;
//! let client = Client::builder()
//!     .tracker("http://tracker.example:6969")
//!     .trust(publisher)
//!     .cache_dir("/var/cache/swarmcdn")
//!     .build()
//!     .await?;
//!
//! let release = client.get("share-button").await?;
//! for file in release.files() {
//!     println!("{} {} {} {}", file.path(), file.size(), file.content_type(), file.sri());
//! }
//! let html = release.bytes("button.html").await?;
//! println!("{} bytes, {} from peers", html.len(), release.progress().bytes_from_peers);
//!
//! client.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! A site serves the *latest* release of a name with [`Client::latest`] (what the router's
//! latest routes use): the first call fetches it, later ones answer from memory, and the
//! client polls the trackers every [`ClientConfig::update_interval`], switching to a newer
//! version only once it is downloaded and verified in full, never to an older one. Code that
//! wants to know watches the switch:
//!
//! ```no_run
//! # async fn example(client: swarmcdn_client::Client) -> Result<(), swarmcdn_client::GetError> {
//! let current = client.latest("share-button").await?;
//! println!("serving {}", current.version());
//! let mut updates = client.watch_latest("share-button")?;
//! while updates.changed().await.is_ok() {
//!     if let Some(release) = updates.borrow_and_update().as_ref() {
//!         println!("switched to {}", release.version());
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Several clients may share a cache folder: the first owns the release content on disk,
//! the others keep theirs in memory, and all share the verified manifests and find each
//! other as peers (see [`client::PEERS_DIR`]), so a site started while the tracker and the
//! web seed are down still gets a release from the sites already running.
//!
//! The parts, each in its own module: the [`scheduler`] (a pure state machine deciding what
//! to ask of which peer and when to use HTTP), [`peer`] connections, [`webseed`]s (BEP 19),
//! [`storage`] (verified piece stores and the cache), the [`tracker_client`], and the
//! per-release [`session`] that glues them together. A site serves releases to browsers
//! by mounting [`Client::router`] (see [`router`]). See `docs/PROTOCOL.md` for the BEPs
//! implemented.

pub mod choker;
pub mod client;
pub mod config;
pub mod metadata;
pub mod peer;
pub mod router;
pub mod scheduler;
pub mod session;
pub mod storage;
pub mod tracker_client;
pub mod webseed;

pub use client::{
    AddError, BuildError, Client, ClientBuilder, GetError, ReadError, Release, RemoveError,
    RemoveOptions, TorrentHandle,
};
pub use config::ClientConfig;
pub use session::{DownloadError, PeerInfo, Progress, SessionStats};
pub use storage::CacheMode;
