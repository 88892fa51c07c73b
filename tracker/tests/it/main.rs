//! Integration tests of the tracker service: through the router (`oneshot`), through a real
//! server on `127.0.0.1:0`, through the binary, and against real BitTorrent clients.

mod announce;
mod bad_input;
mod cli;
mod common;
mod lifecycle;
mod lookup;
mod publish;
mod real_clients;
mod refresh;
