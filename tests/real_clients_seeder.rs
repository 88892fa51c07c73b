//! Real BitTorrent clients (aria2, transmission-cli) downloading a release from our seeder,
//! found through our tracker, both running in this process.
//!
//! Each client downloads twice, from two different seeders:
//!
//! - **over the peer wire**: the release is published without a web seed (no `url-list`),
//!   so every byte comes from the seeder's peer engine. Transmission 3.00 never dials
//!   loopback peers, so for it the seeder must dial the leecher: the tracker's announce
//!   interval is a few seconds, and the seeder, on its next announce, is handed the
//!   leecher and connects to it;
//! - **from the web seed alone**: the torrent's `url-list` names the seeder's web seed and
//!   peer seeding is off (no peer port at all), so every byte comes over HTTP.
//!
//! The harness's `fetch-with.sh` checks the downloaded files' SHA-256 against the originals
//! (`EXPECT_SHA256_FILE`), and so does the test itself; the seeder's `/metrics` show which
//! way the bytes went. The torrent published here is the one `transmission-show` is checked
//! against in the seeder's own tests (`seeder/tests/it/publish.rs`).
//!
//! The transfers run one at a time (a lock), since the clients' choke rounds, not the
//! machine, set their pace.

mod common;

use std::time::Duration;

use common::*;
use swarmcdn_seeder::publish::Published;
use swarmcdn_test_support::ClientProcess;
use swarmcdn_test_support::interop::{fetch_command, free_port_pair, require_clients};
use swarmcdn_test_support::payload::sha256_hex;
use tokio::net::TcpListener;

/// Seconds one transfer may take (the clients' 10 s choke rounds dominate).
const FETCH_TIMEOUT_SECS: u64 = 120;
const NAME: &str = "interop-widget";

/// One transfer at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Where the client may get the bytes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The seeder's peer engine; the torrent has no web seed.
    PeerWire,
    /// The seeder's web seed; peer seeding is off.
    WebSeedOnly,
}

/// The release: a few files, several pieces, bytes without a pattern.
fn release_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("index.html", b"<script src=widget.js></script>\n".to_vec()),
        ("widget.js", noise(300_000, 1)),
        ("assets/sprite.bin", noise(2 * 1024 * 1024 + 4321, 2)),
    ]
}

async fn download(client: &'static str, source: Source) {
    let test = format!("{client} from our seeder ({source:?})");
    if !require_clients(&test, &[client]) {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    // A short announce interval: the seeder re-announces within seconds and is then handed
    // leechers that announced after it (Transmission waits for the seeder to dial it).
    let tracker = TestTracker::start(dir.path(), 3).await;
    let publisher = Publisher::new(&tracker);
    let files = release_files();
    publisher.write_files(&files);

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let webseed = match source {
        Source::PeerWire => String::new(),
        Source::WebSeedOnly => format!("http://{}", listener.local_addr().unwrap()),
    };
    let published = publisher.publish(NAME, Some("1.0.0"), &webseed).await;
    assert_eq!(published.metainfo.url_list.is_empty(), webseed.is_empty());
    let config = swarmcdn_seeder::config::Config {
        peer_seeding: source == Source::PeerWire,
        ..publisher.seeder_config()
    };
    let seeder = TestSeeder::start(config, listener).await;
    assert_eq!(
        seeder.peer_address.is_some(),
        source == Source::PeerWire,
        "the peer port is open exactly when peer seeding is on"
    );

    let (torrent, expect, out) = prepare_fetch(dir.path(), &published, &files);
    let mut command = fetch_command(
        client,
        &torrent,
        &out,
        FETCH_TIMEOUT_SECS,
        free_port_pair(&[]),
    );
    command.env("EXPECT_SHA256_FILE", &expect);
    let log = dir.path().join("fetch.log");
    let mut fetch = ClientProcess::spawn(client, command, log.clone());
    let status = fetch
        .wait_exit(Duration::from_secs(FETCH_TIMEOUT_SECS + 60))
        .await
        .unwrap_or_else(|| panic!("{test}: fetch-with.sh did not exit\n{}", fetch.tail()));
    assert!(status.success(), "{test}: {status}\n{}", fetch.tail());
    let output = std::fs::read_to_string(&log).unwrap();
    assert!(output.contains(&format!("DONE {client}")), "{output}");

    // The bytes, checked here too.
    let root = out.join(published.metainfo.info().name());
    for (path, bytes) in &files {
        let got = std::fs::read(root.join(path)).unwrap();
        assert_eq!(
            sha256_hex(&got),
            sha256_hex(bytes),
            "{test}: {path} differs"
        );
    }
    // Which way they went (the engine's upload counts reach the metrics a moment after the
    // blocks went out, so the expected total is waited for).
    let size = files.iter().map(|(_, b)| b.len()).sum::<usize>() as f64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = seeder.metrics().await;
        let bytes = |series: &str| {
            metric(
                &metrics,
                &format!(
                    "swarmcdn_seeder_{series}_bytes_total{{info_hash=\"{}\",name=\"{NAME}\",version=\"1.0.0\"}}",
                    published.info_hash.to_hex()
                ),
            )
        };
        let (over_http, to_peers) = (bytes("webseed"), bytes("peer"));
        let (unused, used) = match source {
            Source::PeerWire => (over_http, to_peers),
            Source::WebSeedOnly => (to_peers, over_http),
        };
        assert_eq!(unused, 0.0, "{test}: bytes went the other way: {metrics}");
        if used >= size {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{test}: fewer bytes than the release counted: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    seeder.stop().await;
    tracker.stop().await;
}

/// Writes the torrent and the expected checksums (`sha256sum -c` format, paths relative to
/// the output folder); returns (torrent, checksums, output folder).
fn prepare_fetch(
    dir: &std::path::Path,
    published: &Published,
    files: &[(&str, Vec<u8>)],
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let torrent = dir.join("release.torrent");
    std::fs::write(&torrent, published.metainfo.to_bytes()).unwrap();
    let folder = published.metainfo.info().name();
    let expect = dir.join("expected.sha256");
    let lines: String = files
        .iter()
        .map(|(path, bytes)| format!("{}  {folder}/{path}\n", sha256_hex(bytes)))
        .collect();
    std::fs::write(&expect, lines).unwrap();
    (torrent, expect, dir.join("out"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aria2_downloads_from_our_seeder_over_the_peer_wire() {
    download("aria2", Source::PeerWire).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transmission_downloads_from_our_seeder_over_the_peer_wire() {
    download("transmission-cli", Source::PeerWire).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aria2_downloads_from_our_web_seed_alone() {
    download("aria2", Source::WebSeedOnly).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transmission_downloads_from_our_web_seed_alone() {
    download("transmission-cli", Source::WebSeedOnly).await;
}
