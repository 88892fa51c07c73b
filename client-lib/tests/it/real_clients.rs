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

use std::time::{Duration, Instant};

use swarmcdn_test_support::{ClientProcess, interop, payload, say};

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
    payload::write_files(
        &seed_dir.join(release.metainfo.info().name()),
        release.files.iter().map(|(path, bytes)| (path, bytes)),
    );

    let started = Instant::now();
    let ready_file = dir.path().join("seed.ready");
    let mut seed = {
        let mut command = interop::seed_command(
            seeder,
            &torrent,
            &seed_dir,
            interop::free_port_pair(&[]),
            SEED_MAX_SECS,
        );
        command.env("READY_FILE", &ready_file);
        ClientProcess::spawn("seeder", command, dir.path().join("seed.log"))
    };
    let ready = payload::wait_for_file(&ready_file, SEED_READY_TIMEOUT, &mut seed).await;
    assert!(
        ready && seed.is_running(),
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
    say(&format!(
        "REAL CLIENTS {seeder} -> swarmcdn-client: seeder ready {:.1} s, download {:.1} s",
        seed_ready.as_secs_f64(),
        download_time.as_secs_f64(),
    ));

    shutdown_clean(client).await;
    seed.stop();
    let mut tracker = tracker;
    tracker.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aria2_seeds_our_client_downloads() {
    if interop::require_clients("aria2 -> swarmcdn-client", &["aria2"]) {
        real_client_seeds_our_client_downloads("aria2").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transmission_seeds_our_client_downloads() {
    if interop::require_clients("transmission -> swarmcdn-client", &["transmission"]) {
        real_client_seeds_our_client_downloads("transmission").await;
    }
}
