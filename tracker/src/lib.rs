//! The swarmcdn tracker: the rendezvous of every release swarm.
//!
//! Sites that serve a publisher's widget find each other here. The tracker is not an open
//! tracker: it answers announces only for torrents that a publisher registered, and it keeps
//! the registry of publishers, releases, signed manifests and metainfo that clients fetch
//! before they join a swarm.
//!
//! | module | what it holds |
//! |---|---|
//! | [`swarm`] | the [`PeerStore`](swarm::PeerStore) trait and the sharded in-memory store: who is in which swarm, and whom to introduce to whom |
//! | [`registry`] | publishers, releases and torrents in SQLite (embedded) |
//! | [`config`] | the service's one configuration struct, read from TOML |
//! | [`http`] | the HTTP service: announce, scrape, the publish and asset API, metrics, probes |
//! | [`server`] | running it: [`run`] serves until a shutdown signal, then stops cleanly |
//!
//! The announce path touches only the swarm store and an in-memory set of registered
//! info-hashes; SQLite is for publishing and for the release API, both rare by comparison.
//!
//! ```
//! use std::net::SocketAddr;
//! use rand::SeedableRng;
//! use swarmcdn_proto::{InfoHash, PeerId};
//! use swarmcdn_tracker::swarm::{
//!     AnnounceEvent, AnnounceInput, AnnounceOutput, MemoryStore, PeerStore, StoreConfig, Timestamp,
//! };
//!
//! let store = MemoryStore::new(StoreConfig::default());
//! let mut rng = rand::rngs::StdRng::seed_from_u64(1);
//! let mut out = AnnounceOutput::default();
//! for (n, left) in [(1u8, 0u64), (2, 100)] {
//!     let input = AnnounceInput {
//!         info_hash: InfoHash([7; 20]),
//!         peer_id: PeerId([n; 20]),
//!         addr: SocketAddr::from(([192, 0, 2, n], 6881)),
//!         event: AnnounceEvent::Started,
//!         left,
//!         numwant: None,
//!         peer_ids: false,
//!     };
//!     store.announce(&input, Timestamp::from_secs(0), &mut rng, &mut out)?;
//! }
//! // The leecher (peer 2) is handed the seeder, and never itself.
//! assert_eq!(out.peers_v4, vec!["192.0.2.1:6881".parse().unwrap()]);
//! assert_eq!((out.stats.complete, out.stats.incomplete), (1, 1));
//! # Ok::<(), swarmcdn_tracker::swarm::StoreError>(())
//! ```

pub mod config;
pub mod http;
pub mod registry;
pub mod server;
pub mod swarm;

pub use http::{AppState, router};
pub use server::{ServeError, run, serve};
