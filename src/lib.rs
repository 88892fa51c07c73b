//! swarmcdn's workspace package: it holds the runnable examples (`examples/`) and the
//! workspace-level integration tests (`tests/`). The libraries live in the member crates:
//! `swarmcdn-proto`, `swarmcdn-tracker`, `swarmcdn-seeder` and `swarmcdn-client`.

pub use swarmcdn_proto as proto;

pub mod demo;
