//! The publisher's side of swarmcdn: turns a folder of widget files into a versioned, signed
//! release and acts as its origin.
//!
//! This crate is a skeleton for now. It will hold (see `../shared/DESIGN.md`):
//! - `publish`: build the release bundle deterministically with `swarmcdn-proto`'s torrent
//!   builder, sign its manifest with the publisher's Ed25519 key, store the content by
//!   info-hash and register the release with the tracker;
//! - `serve`: seed every stored release as a peer (with the `swarmcdn-client` engine) and serve
//!   it as a BEP 19 web seed over HTTP with Range support and a bandwidth cap;
//! - the `swarmcdn-seeder` command line (`keygen`, `publish`, `serve`, `list`, `unpublish`,
//!   `verify`).
