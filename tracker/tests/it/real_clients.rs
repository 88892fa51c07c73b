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

use std::time::{Duration, Instant};

use swarmcdn_test_support::{ClientProcess, interop, payload};

use crate::common::*;

/// Seconds one transfer may take (the clients' 10 s choke rounds dominate: 15-25 s typical).
const FETCH_TIMEOUT_SECS: u64 = 120;
/// Seconds a seeder may take to check its data and report ready.
const SEED_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Payload size: a few MiB, several pieces.
const PAYLOAD_BYTES: usize = 4 * 1024 * 1024 + 12_345;

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
    let payload = payload::random_bytes(PAYLOAD_BYTES);
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
    payload::write_files(&seed_dir, [("payload.bin", &payload)]);
    let expected = payload::sha256_hex(&payload);

    let seed_port = interop::free_port_pair(&[]);
    let fetch_port = interop::free_port_pair(&[seed_port]);
    let ready_file = dir.path().join("seed.ready");
    let started = Instant::now();

    let mut seed = {
        let mut command = interop::seed_command(
            seeder,
            &torrent,
            &seed_dir,
            seed_port,
            FETCH_TIMEOUT_SECS + 60,
        );
        command
            .env("READY_FILE", &ready_file)
            // The seeder must find (and dial) a Transmission leecher that announced later.
            .env("REANNOUNCE_EVERY", "3");
        ClientProcess::spawn("seeder", command, dir.path().join("seed.log"))
    };
    let ready = payload::wait_for_file(&ready_file, SEED_READY_TIMEOUT, &mut seed).await;
    assert!(
        ready && seed.is_running(),
        "{seeder} did not become ready to seed within {SEED_READY_TIMEOUT:?}:\n{}",
        seed.tail()
    );
    let seed_ready = started.elapsed();

    let fetch_started = Instant::now();
    let mut fetch = {
        let mut command =
            interop::fetch_command(leecher, &torrent, &out_dir, FETCH_TIMEOUT_SECS, fetch_port);
        command.env("EXPECT_SHA256", &expected);
        ClientProcess::spawn("leecher", command, dir.path().join("fetch.log"))
    };
    let status = fetch
        .wait_exit(Duration::from_secs(FETCH_TIMEOUT_SECS + 30))
        .await;
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
    if interop::require_clients("aria2 -> transmission-cli", &["aria2", "transmission-cli"]) {
        transfer("aria2", "transmission-cli").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transmission_seeds_aria2_downloads() {
    if interop::require_clients("transmission -> aria2", &["transmission", "aria2"]) {
        transfer("transmission", "aria2").await;
    }
}
