//! Real BitTorrent clients seeding, our client downloading: the test that our peer wire,
//! piece picking and announces work against code other people wrote, not only against our
//! own seeder and the fake peers in `common`.
//!
//! The tracker runs in this process on `127.0.0.1:0`; a release of a few MiB of random bytes
//! (announce = our `/announce`, no web seed) is published to it; the interop harness
//! (`<repo>/../shared/interop/`, or `$SWARMCDN_INTEROP`) seeds it with a real client; then our
//! `Client` is handed the torrent and nothing else. The seeder's address reaches it only
//! through the tracker, and with no web seed every byte must come from that peer, so the
//! test asserts exactly that (`bytes_from_peers == size`, `bytes_from_http == 0`) besides
//! comparing the bytes.
//!
//! The clients are slow to start serving, which sets the time budget: aria2 opens outgoing
//! connections with an encrypted handshake and retries plaintext about a second later, and
//! both aria2 and Transmission unchoke a new peer only at their 10 s rechoke. Transmission
//! 3.00 never dials loopback peers, so with it our client must be the one that dials (it
//! dials the peers the tracker lists).
//!
//! A missing client fails the test when `CI` is set (naming the Debian package to install)
//! and skips it loudly otherwise. Every process started here is stopped by PID on drop, so
//! also when an assertion fails.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// How long our client may take to download from a real seeder (choke rounds of 10 s
/// dominate: 15-25 s is typical).
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a seeder may take to check its data and report ready.
const SEED_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Seconds the harness lets a seeder run before it stops it by itself (a backstop only:
/// the test stops it first).
const SEED_MAX_SECS: u64 = 240;
/// Payload size: a few MiB, with an odd tail so the last piece is short.
const PAYLOAD_BYTES: usize = 3 * 1024 * 1024 + 12_345;
/// Piece length: 256 KiB, which gives a dozen or so pieces.
const PIECE_LENGTH: u32 = 256 * 1024;
/// Announce interval of the test tracker, so our client asks again soon when its first
/// announce came before the seeder's.
const ANNOUNCE_INTERVAL_SECS: u32 = 3;

/// The interop harness: `$SWARMCDN_INTEROP`, else `shared/interop` beside the repository.
fn interop_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SWARMCDN_INTEROP") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/interop")
}

/// Commands the harness needs, with the Debian package that provides each.
const BASE_TOOLS: &[(&str, &str)] = &[
    ("bash", "bash"),
    ("python3", "python3"),
    ("curl", "curl"),
    ("ss", "iproute2"),
    ("stdbuf", "coreutils"),
    ("timeout", "coreutils"),
];

fn on_path(command: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(command).is_file()))
}

/// Whether the test can run: every tool present, or (outside CI) a loud skip. In CI a
/// missing tool fails the test.
fn tools_present(test: &str, clients: &[(&str, &str)]) -> bool {
    let harness = interop_dir();
    let mut missing: Vec<String> = BASE_TOOLS
        .iter()
        .chain(clients)
        .filter(|(command, _)| !on_path(command))
        .map(|(command, package)| format!("`{command}` (Debian package {package})"))
        .collect();
    if !harness.join("seed-with.sh").is_file() {
        missing.push(format!(
            "the interop harness at {} (set SWARMCDN_INTEROP to its folder)",
            harness.display()
        ));
    }
    if missing.is_empty() {
        return true;
    }
    let message = format!("{test}: missing {}", missing.join(", "));
    if std::env::var_os("CI").is_some() {
        panic!(
            "{message}; .ci/run installs the packages, and CI runs with shared/ beside the clone"
        );
    }
    // Straight to stderr rather than `eprintln!`, which the test harness captures for a
    // passing test: a skip must be seen.
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED real-client test {message} ***\n"
    );
    false
}

/// A child process stopped by PID when dropped: SIGTERM (the harness script then stops its
/// client gracefully), then SIGKILL if it is still there after a grace period.
struct Guard {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Guard {
    fn spawn(name: &str, mut command: Command, log: PathBuf) -> Self {
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Self {
            name: name.to_owned(),
            child: Some(child),
            log,
        }
    }

    fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| child.try_wait().unwrap().is_none())
    }

    /// The last lines of the process's output, for failure messages.
    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(25)..].join("\n")
    }

    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("{} ignored SIGTERM for 30 s; killing it", self.name);
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A free peer port `p` whose control port `p + 1000` (the harness's default) is free too.
fn free_port_pair() -> u16 {
    loop {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        if port > 64_000 {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port + 1000)).is_ok() {
            return port;
        }
    }
}

/// `seeder` (a harness client name) seeds a fresh published release; our client downloads
/// it, finding the seeder only through the tracker.
async fn real_client_seeds_our_client_downloads(seeder: &'static str) {
    let dir = tempfile::tempdir().unwrap();
    let tracker = TestTracker::start(ANNOUNCE_INTERVAL_SECS).await;
    let release = release_of_size(
        &format!("interop-{seeder}"),
        PAYLOAD_BYTES,
        PIECE_LENGTH,
        Some(tracker.announce_url()),
        Vec::new(),
    );
    assert!(release.metainfo.info().piece_count() > 4);
    tracker.publish(&release).await;

    // The harness seeds `DATADIR/<torrent name>`: the release folder with its one file.
    let torrent = dir.path().join("interop.torrent");
    std::fs::write(&torrent, &release.torrent).unwrap();
    let seed_dir = dir.path().join("seed");
    let folder = seed_dir.join(release.metainfo.info().name());
    std::fs::create_dir_all(&folder).unwrap();
    for (path, bytes) in &release.files {
        std::fs::write(folder.join(path), bytes).unwrap();
    }

    let started = Instant::now();
    let ready_file = dir.path().join("seed.ready");
    let mut seed = {
        let mut command = Command::new("bash");
        command
            .arg(interop_dir().join("seed-with.sh"))
            .args([
                seeder,
                torrent.to_str().unwrap(),
                seed_dir.to_str().unwrap(),
            ])
            .arg(free_port_pair().to_string())
            .arg(SEED_MAX_SECS.to_string())
            .env("READY_FILE", &ready_file);
        Guard::spawn("seeder", command, dir.path().join("seed.log"))
    };
    let deadline = Instant::now() + SEED_READY_TIMEOUT;
    while !ready_file.is_file() && seed.is_running() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        ready_file.is_file() && seed.is_running(),
        "{seeder} did not become ready to seed within {SEED_READY_TIMEOUT:?}:\n{}",
        seed.tail()
    );
    let seed_ready = started.elapsed();

    // Our client: the torrent and nothing else (no web seed, no bootstrap peer, no
    // configured tracker beyond the torrent's announce).
    let client = test_client().build().await.unwrap();
    let download_started = Instant::now();
    let handle = client.add_torrent(&release.torrent).await.unwrap();
    let done = tokio::time::timeout(DOWNLOAD_TIMEOUT, handle.wait_complete()).await;
    let download_time = download_started.elapsed();
    let done = match done {
        Ok(Ok(done)) => done,
        other => panic!(
            "our client did not download from {seeder} within {DOWNLOAD_TIMEOUT:?} \
             ({other:?}); progress {:?}\n--- seeder ---\n{}",
            handle.progress(),
            seed.tail()
        ),
    };
    assert!(done.complete, "{done}");
    release.assert_stored_in(&handle);
    assert_eq!(done.bytes_from_peers, release.size(), "{done}");
    assert_eq!(done.bytes_from_http, 0, "no web seed: {done}");
    assert_eq!(done.hash_failures, 0, "{done}");
    assert!(done.announces >= 1, "{done}");
    let _ = writeln!(
        std::io::stderr(),
        "REAL CLIENTS {seeder} -> swarmcdn-client: seeder ready {:.1} s, download {:.1} s",
        seed_ready.as_secs_f64(),
        download_time.as_secs_f64(),
    );

    shutdown_clean(client).await;
    seed.stop();
    let mut tracker = tracker;
    tracker.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aria2_seeds_our_client_downloads() {
    if tools_present("aria2 -> swarmcdn-client", &[("aria2c", "aria2")]) {
        real_client_seeds_our_client_downloads("aria2").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transmission_seeds_our_client_downloads() {
    let clients = [
        ("transmission-daemon", "transmission-daemon"),
        ("transmission-remote", "transmission-cli"),
    ];
    if tools_present("transmission -> swarmcdn-client", &clients) {
        real_client_seeds_our_client_downloads("transmission").await;
    }
}
