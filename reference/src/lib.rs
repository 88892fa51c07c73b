//! Reference-peer tests (`tests/librqbit.rs`) and benchmarks (`benches/client.rs`) for
//! `swarmcdn-client`.
//!
//! They live in their own crate so that `cargo test -p swarmcdn-client` never builds the
//! reference peer, which takes minutes; this library is empty on purpose.
