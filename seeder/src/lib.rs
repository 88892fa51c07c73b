//! The publisher's side of swarmcdn.
pub mod config;
pub mod keys;
pub mod publish;
pub mod store;
pub mod tracker_api;
