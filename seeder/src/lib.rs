//! The publisher's side of swarmcdn: turn a folder of widget files into a signed, versioned
//! release, register it with the tracker, and serve it as its origin.
//!
//! The `swarmcdn-seeder` binary is a thin shell over this library:
//!
//! | command | library |
//! |---|---|
//! | `keygen` | [`keys::keygen`]: an Ed25519 key from the OS generator, in a `0600` file |
//! | `publish` | [`publish::publish`]: walk, copy and digest, build the torrent, sign, store, register |
//! | `serve` | [`serve::run`]: the web seed over the store, `/metrics`, `/healthz`, the upload cap |
//! | `list`, `verify` | [`store::Store::list`], [`store::Store::verify`] |
//! | `unpublish` | [`tracker_api::TrackerApi::unpublish`], then [`store::Store::remove`] or [`store::Store::withdraw`] |
//!
//! | module | what it holds |
//! |---|---|
//! | [`config`] | the one TOML configuration shared by every command |
//! | [`keys`] | the publisher's signing key on disk |
//! | [`store`] | releases on disk, content-addressed by info-hash, written atomically, verifiable |
//! | [`publish`] | folder to release, with every bad input refused before anything changes |
//! | [`tracker_api`] | the tracker's publish API, with errors shaped by what the publisher must fix |
//! | [`catalog`] | the releases being served, following the store while `serve` runs |
//! | [`webseed`] | `GET`/`HEAD /webseed/<info-hash>/<path>` with ranges, ETags, caching |
//! | [`bandwidth`] | the upload cap shared by web seed and peers, and the web seed's `503` policy |
//! | [`metrics`] | the Prometheus metrics |
//! | [`serve`] | the daemon: [`serve::router`], [`serve::run`]: web seed and peer-wire seeding over the store |
//!
//! `serve` also seeds every stored release over the peer wire with the client library's
//! engine, under the same upload cap as the web seed; [`serve`]'s docs say how.
//!
//! Serving a store, here until a shutdown future completes at once:
//!
//! ```
//! use swarmcdn_seeder::config::Config;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = tempfile::tempdir()?;
//! let config = Config { store: store.path().to_owned(), ..Config::default() };
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! swarmcdn_seeder::serve::run(config, listener, async {}).await?;
//! # Ok(())
//! # }
//! ```

pub mod bandwidth;
pub mod catalog;
pub mod config;
pub mod keys;
pub mod metrics;
pub mod publish;
pub mod serve;
pub mod store;
pub mod tracker_api;
pub mod webseed;
