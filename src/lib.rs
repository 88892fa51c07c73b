//! swarmcdn's workspace package: it holds the runnable examples (`examples/`), the
//! workspace-level integration tests (`tests/`) and [`demo`], the whole system in one
//! process, which the demo example and the browser test both run (so what the test checks is
//! what people see). The libraries live in the member crates: `swarmcdn-proto`,
//! `swarmcdn-tracker`, `swarmcdn-seeder` and `swarmcdn-client`.

pub use swarmcdn_proto as proto;

pub mod demo;

/// The README's Rust examples, compiled as doctests so that they keep compiling.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
