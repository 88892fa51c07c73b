//! Real BitTorrent clients (aria2, Transmission) finding each other through our tracker.
//!
//! The tracker runs in this process on `127.0.0.1:0`; a torrent of a few MiB of random data
//! (no web seeds, announce = our `/announce`) is registered through the publish API; then the
//! interop harness (`../shared/interop/`, beside the repository) has one client seed and the
//! other download. The clients know nothing but the torrent, so the transfer proves our
//! announces work for both: the downloaded bytes are compared with the original.
//!
//! Transmission 3.00 never dials loopback peers, so when it downloads, the seeder must dial
//! it: the seeder re-announces every few seconds (`REANNOUNCE_EVERY`) and the tracker hands
//! it the leecher (seeders are sent leechers). When Transmission seeds, aria2 dials it.
//!
//! A missing client fails the test when `CI` is set (naming the Debian package to install)
//! and skips it loudly otherwise. Every process started here is stopped by PID on drop, also
//! when the test fails.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::Rng as _;
use sha2::{Digest, Sha256};

use crate::common::*;

/// Seconds one transfer may take (the clients' 10 s choke rounds dominate: 15-25 s typical).
const FETCH_TIMEOUT_SECS: u64 = 120;
/// Seconds a seeder may take to check its data and report ready.
const SEED_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Payload size: a few MiB, several pieces.
const PAYLOAD_BYTES: usize = 4 * 1024 * 1024 + 12_345;

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
    // Straight to stderr rather than `eprintln!`, which the test harness captures and hides
    // for a passing test: a skip must be seen.
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED real-client test {message} ***\n"
    );
    false
}

/// A child process stopped by PID when dropped: SIGTERM (the harness scripts then stop their
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

    /// Waits for the process to exit by itself; `None` on timeout (it is then still running).
    fn wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(200));
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

/// A peer port `p` with `p + 1000` (the harness's control port) also free, not in `avoid`.
fn free_port_pair(avoid: &[u16]) -> u16 {
    loop {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        if port > 64_000
            || avoid
                .iter()
                .any(|a| a.abs_diff(port) == 0 || a.abs_diff(port) == 1000)
        {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port + 1000)).is_ok() {
            return port;
        }
    }
}

/// One transfer: `seeder` seeds a fresh registered torrent, `leecher` downloads it.
async fn transfer(seeder: &'static str, leecher: &'static str) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config();
    // Short intervals, so clients that follow the tracker's interval re-announce quickly.
    config.announce_interval_secs = 5;
    config.min_announce_interval_secs = 1;
    let h = Harness::with_config(config);
    let server = Running::serve(h.state.clone()).await;

    // A torrent of random bytes, announcing to us, registered through the publish API.
    let mut payload = vec![0u8; PAYLOAD_BYTES];
    rand::rng().fill_bytes(&mut payload);
    let release = Release::build(
        "interop",
        "1.0.0",
        &payload,
        &h.key,
        &server.url("/announce"),
    );
    let reply = reqwest::Client::new()
        .post(server.url("/api/v1/releases"))
        .bearer_auth(&h.token)
        .body(release.body())
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 201, "{}", reply.text().await.unwrap());
    assert_eq!(
        (release.name.as_str(), release.version.as_str()),
        ("interop", "1.0.0")
    );
    let torrent = dir.path().join("interop.torrent");
    std::fs::write(&torrent, &release.metainfo).unwrap();
    let seed_dir = dir.path().join("seed");
    let out_dir = dir.path().join("out");
    std::fs::create_dir_all(&seed_dir).unwrap();
    std::fs::File::create(seed_dir.join("payload.bin"))
        .unwrap()
        .write_all(&payload)
        .unwrap();
    let expected = data_encoding::HEXLOWER.encode(&Sha256::digest(&payload));

    let harness = interop_dir();
    let seed_port = free_port_pair(&[]);
    let fetch_port = free_port_pair(&[seed_port]);
    let ready_file = dir.path().join("seed.ready");
    let started = Instant::now();

    let mut seed = {
        let mut command = Command::new("bash");
        command
            .arg(harness.join("seed-with.sh"))
            .args([
                seeder,
                torrent.to_str().unwrap(),
                seed_dir.to_str().unwrap(),
            ])
            .arg(seed_port.to_string())
            .arg((FETCH_TIMEOUT_SECS + 60).to_string())
            .env("READY_FILE", &ready_file)
            // The seeder must find (and dial) a Transmission leecher that announced later.
            .env("REANNOUNCE_EVERY", "3");
        Guard::spawn("seeder", command, dir.path().join("seed.log"))
    };
    let ready = tokio::task::spawn_blocking({
        let ready_file = ready_file.clone();
        move || {
            let deadline = Instant::now() + SEED_READY_TIMEOUT;
            while Instant::now() < deadline {
                if ready_file.is_file() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            false
        }
    })
    .await
    .unwrap();
    assert!(
        ready && seed.is_running(),
        "{seeder} did not become ready to seed within {SEED_READY_TIMEOUT:?}:\n{}",
        seed.tail()
    );
    let seed_ready = started.elapsed();

    let fetch_started = Instant::now();
    let mut fetch = {
        let mut command = Command::new("bash");
        command
            .arg(harness.join("fetch-with.sh"))
            .args([
                leecher,
                torrent.to_str().unwrap(),
                out_dir.to_str().unwrap(),
            ])
            .arg(FETCH_TIMEOUT_SECS.to_string())
            .arg(fetch_port.to_string())
            .env("EXPECT_SHA256", &expected);
        Guard::spawn("leecher", command, dir.path().join("fetch.log"))
    };
    let (fetch, status) = tokio::task::spawn_blocking(move || {
        let status = fetch.wait(Duration::from_secs(FETCH_TIMEOUT_SECS + 30));
        (fetch, status)
    })
    .await
    .unwrap();
    let fetch_time = fetch_started.elapsed();
    let metrics = h.metrics().await;
    assert!(
        status.is_some_and(|s| s.success()),
        "{leecher} did not download from {seeder} through our tracker (exit {status:?}).\n\
         --- leecher ---\n{}\n--- seeder ---\n{}\n--- tracker announces ---\n{}",
        fetch.tail(),
        seed.tail(),
        metrics
            .lines()
            .filter(|l| l.starts_with("tracker_announces_total") || l.starts_with("tracker_errors"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let downloaded = std::fs::read(out_dir.join("payload.bin")).unwrap();
    assert!(
        downloaded == payload,
        "the downloaded bytes differ from the seeded ones"
    );
    eprintln!(
        "REAL CLIENTS {seeder} -> {leecher}: seeder ready {:.1} s, download {:.1} s, {} announces",
        seed_ready.as_secs_f64(),
        fetch_time.as_secs_f64(),
        metrics
            .lines()
            .filter(|l| l.starts_with("tracker_announces_total{"))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum::<f64>()
    );
    // Both clients found each other through us: each announced at least once.
    assert!(metric(&metrics, "tracker_announces_total{event=\"started\"}") >= 2.0);
    drop(fetch);
    seed.stop();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aria2_seeds_transmission_cli_downloads() {
    let clients = [
        ("aria2c", "aria2"),
        ("transmission-cli", "transmission-cli"),
    ];
    if tools_present("aria2 -> transmission-cli", &clients) {
        transfer("aria2", "transmission-cli").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transmission_seeds_aria2_downloads() {
    let clients = [
        ("transmission-daemon", "transmission-daemon"),
        ("transmission-remote", "transmission-cli"),
        ("aria2c", "aria2"),
    ];
    if tools_present("transmission -> aria2", &clients) {
        transfer("transmission", "aria2").await;
    }
}
