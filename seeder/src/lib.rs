//! The publisher's side of swarmcdn.
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
