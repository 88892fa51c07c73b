//! End-to-end tests of the client: real clients, the real tracker (in-process, over HTTP on
//! loopback), a test web seed and fake peers, all on 127.0.0.1 with ports from the OS.
//! Every test shuts down what it started and checks that nothing is left running.

mod common;

mod bootstrap;
mod eviction;
mod fallback;
mod integrity;
mod lookup;
mod magnet;
mod real_clients;
mod restart;
mod router;
mod seed_only;
mod shutdown;
mod swarm;
mod timeout;
mod tracker_down;
mod trust;
mod updates;
mod versions;
