//! Test-only helpers shared by swarmcdn's test crates, above all for tests that drive real,
//! independent BitTorrent clients (aria2, Transmission, ...) through the interop harness
//! (`<repo>/../shared/interop/`, or the folder in `$SWARMCDN_INTEROP`).
//!
//! Why a crate: the tracker, the client library and the seeder all prove their wire work
//! against clients other people wrote, and each of those tests needs the same plumbing:
//! find the harness, skip (or, under `CI`, fail) when a client is missing, start a harness
//! script with its log in a file, stop it by PID even when an assertion fails, wait for its
//! ready file, and make a random payload on disk. Kept here once, it behaves the same in
//! every crate. The crate knows nothing of swarmcdn's own types, so any test crate can use it
//! as a dev-dependency without a dependency cycle.
//!
//! A typical test (the harness seeds, the code under test downloads):
//!
//! ```no_run
//! use std::time::Duration;
//! use swarmcdn_test_support::{ClientProcess, interop, payload};
//!
//! # async fn example() {
//! if !interop::require_clients("aria2 -> ours", &["aria2"]) {
//!     return; // printed SKIPPED (outside CI; under CI this panicked instead)
//! }
//! let dir = tempfile_like_dir();
//! let bytes = payload::random_bytes(1 << 20);
//! payload::write_files(&dir.join("seed"), [("payload.bin", &bytes[..])]);
//! let ready = dir.join("seed.ready");
//! let mut command = interop::seed_command(
//!     "aria2",
//!     &dir.join("t.torrent"),
//!     &dir.join("seed"),
//!     interop::free_port_pair(&[]),
//!     240,
//! );
//! command.env("READY_FILE", &ready);
//! let mut seed = ClientProcess::spawn("seeder", command, dir.join("seed.log"));
//! assert!(
//!     payload::wait_for_file(&ready, Duration::from_secs(60), &mut seed).await,
//!     "seeder not ready:\n{}",
//!     seed.tail()
//! );
//! // ... download with the code under test, compare bytes ...
//! seed.stop(); // also done on drop
//! # }
//! # fn tempfile_like_dir() -> std::path::PathBuf { unimplemented!() }
//! ```

#![warn(missing_docs)]

pub mod interop;
pub mod metrics;
pub mod net;
pub mod payload;
mod process;

pub use process::ClientProcess;

use std::io::Write as _;

/// Writes `message` and a newline straight to the process's stderr, bypassing the test
/// harness's capture (which hides `eprintln!` output of passing tests): for SKIPPED notices
/// and measured figures that must be seen.
pub fn say(message: &str) {
    let _ = writeln!(std::io::stderr(), "{message}");
}
