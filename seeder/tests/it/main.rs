//! Integration tests of the seeder: the command line, publishing against a stand-in for the
//! tracker's API, the store, and `serve` over real sockets on 127.0.0.1.

mod bad_input;
mod keygen;
mod publish;
mod serve;
mod store;
mod support;
mod webseed;
