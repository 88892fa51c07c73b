//! The publisher's side of swarmcdn.
pub mod config;
pub mod keys;
pub mod store;
