//! The library that sites embed to get published assets from the swarm.
//!
//! This crate is a skeleton for now. It will hold (see `../shared/DESIGN.md`):
//! - `Client`: fetches a release by name (signed manifest from the tracker, checked against a
//!   pinned publisher key; metainfo checked against the manifest's info-hash);
//! - the peer engine: peer wire over TCP, a scheduler written as a pure state machine, and
//!   web seeds (BEP 19) as a priced fallback source used per piece when peers are missing or
//!   late; every piece SHA-1-checked whatever its source;
//! - the cache (memory for small releases, disk for large ones) and seeding back to other sites;
//! - `router()`: serves verified files to browsers, never a `.torrent`.

pub mod choker;
pub mod metadata;
pub mod peer;
pub mod scheduler;
pub mod storage;
pub mod tracker_client;
pub mod webseed;
