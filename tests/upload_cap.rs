//! The seeder's one upload cap, shared by peer uploads and web-seed responses, with our
//! tracker, our seeder and a client-lib leecher all real and in this process.
//!
//! The release is published without a web seed in its torrent, so the leecher's bytes can
//! only come over the peer wire; HTTP traffic is made separately with plain requests to the
//! web seed. Two things are checked:
//!
//! - peers and the web seed, both busy, together stay within the cap (counted at the
//!   receiving end over a few seconds, with generous slack for bursts and bytes in flight;
//!   two separate caps would send about twice as much);
//! - a web-seed request that an idle swarm would let in is turned away with `503` and
//!   `Retry-After` while the peers use the budget.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use swarmcdn_client::{Client, TorrentHandle};
use swarmcdn_seeder::publish::Published;
use tokio::net::TcpListener;
use tokio::time::Instant;

const NAME: &str = "big-widget";
/// The cap: 256 KiB/s, half of it the web seed's share, 2 s of backlog. So the web seed may
/// promise 512 KiB while peers are idle and 256 KiB while they use the whole budget.
const CAP: u64 = 256 * 1024;
/// The release: large enough that nobody finishes during the test.
const RELEASE_BYTES: usize = 8 * 1024 * 1024;

struct Setup {
    _tracker_dir: tempfile::TempDir,
    tracker: TestTracker,
    _publisher: Publisher,
    seeder: TestSeeder,
    published: Published,
}

async fn setup() -> Setup {
    let tracker_dir = tempfile::tempdir().unwrap();
    let tracker = TestTracker::start(tracker_dir.path(), 300).await;
    let publisher = Publisher::new(&tracker);
    publisher.write_files(&[("big.bin", noise(RELEASE_BYTES, 3))]);
    // No web seed in the torrent: the leecher gets bytes from peers only.
    let published = publisher.publish(NAME, Some("1.0.0"), "").await;
    let config = swarmcdn_seeder::config::Config {
        upload_limit_bytes_per_sec: CAP,
        webseed_share_percent: 50,
        webseed_backlog_secs: 2,
        ..publisher.seeder_config()
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let seeder = TestSeeder::start(config, listener).await;
    Setup {
        _tracker_dir: tracker_dir,
        tracker,
        _publisher: publisher,
        seeder,
        published,
    }
}

impl Setup {
    fn file_url(&self) -> String {
        format!(
            "{}/webseed/{}/{NAME}-1.0.0/big.bin",
            self.seeder.url, self.published.info_hash
        )
    }

    /// A leecher downloading the release over the peer wire from the seeder, once it has
    /// received its first verified bytes.
    async fn leecher(&self) -> (Client, TorrentHandle) {
        let client = Client::builder()
            .listen_addr(SocketAddr::from(([127, 0, 0, 1], 0)))
            .bootstrap_peer(self.seeder.peer_address.expect("peer seeding is on"))
            .build()
            .await
            .unwrap();
        let handle = client
            .add_torrent(&self.published.metainfo.to_bytes())
            .await
            .unwrap();
        let mut progress = handle.watch();
        tokio::time::timeout(PATIENCE, progress.wait_for(|p| p.bytes_from_peers > 0))
            .await
            .expect("the leecher got nothing from the seeder")
            .unwrap();
        (client, handle)
    }

    async fn stop(self) {
        self.seeder.stop().await;
        self.tracker.stop().await;
    }
}

/// `GET` of `len` bytes of the file from `offset`: the status and `Retry-After`, if any.
async fn range(http: &reqwest::Client, url: &str, offset: u64, len: u64) -> reqwest::Response {
    http.get(url)
        .header("range", format!("bytes={offset}-{}", offset + len - 1))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_and_the_web_seed_stay_within_one_cap() {
    let setup = setup().await;
    let (leecher, handle) = setup.leecher().await;
    let http = reqwest::Client::new();

    // From here on, both are busy for a few seconds: the leecher keeps asking the seeder
    // for blocks, and one HTTP client reads the whole file from the web seed.
    let start = Instant::now();
    let from_peers_before = handle.progress().bytes_from_peers;
    let mut response = http.get(setup.file_url()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let mut over_http = 0u64;
    let window = Duration::from_secs(6);
    while start.elapsed() < window {
        match tokio::time::timeout(window.saturating_sub(start.elapsed()), response.chunk()).await {
            Ok(chunk) => over_http += chunk.unwrap().expect("the body ended early").len() as u64,
            Err(_) => break,
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let from_peers = handle.progress().bytes_from_peers - from_peers_before;
    drop(response);

    // The bucket holds one second of the cap, which may go at once; pieces in flight when
    // the window opened add a few hundred KiB more. Two separate caps would have sent about
    // twice the cap all along (measured: 3.3 MB in 6 s, against 1.7 MB with one cap).
    let allowed = CAP as f64 * elapsed * 1.1 + CAP as f64 + 512.0 * 1024.0;
    let total = (from_peers + over_http) as f64;
    assert!(
        total <= allowed,
        "{from_peers} bytes over the peer wire and {over_http} over HTTP in {elapsed:.1} s: \
         more than one cap of {CAP} B/s allows ({allowed:.0})"
    );
    assert!(
        from_peers > 0 && over_http > 0,
        "both should have been served"
    );

    leecher.shutdown().await;
    assert_eq!(leecher.task_count(), 0);
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_seed_answers_503_when_peers_use_the_budget() {
    let setup = setup().await;
    let http = reqwest::Client::new();
    let url = setup.file_url();
    // 384 KiB promised: more than 2 s at the web seed's share (256 KiB), less than 2 s at
    // the whole cap (512 KiB).
    let promised = 384 * 1024;

    // Peers idle: a sample of the peers' rate, a window later the 384 KiB response, and a
    // second request on top of it is let in.
    assert_eq!(range(&http, &url, 0, 1024).await.status(), 206);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let first = range(&http, &url, 0, promised).await;
    assert_eq!(first.status(), 206);
    let second = range(&http, &url, promised, 1024).await;
    assert_eq!(second.status(), 206, "refused although the peers are idle");
    assert_eq!(first.bytes().await.unwrap().len() as u64, promised);
    drop(second);

    // Peers busy: the same two requests, and the second one is turned away.
    let (leecher, _handle) = setup.leecher().await;
    assert_eq!(range(&http, &url, 0, 1024).await.status(), 206);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let first = range(&http, &url, 0, promised).await;
    assert_eq!(first.status(), 206);
    let second = range(&http, &url, promised, 1024).await;
    assert_eq!(
        second.status(),
        503,
        "admitted although the peers use the budget"
    );
    let retry: u32 = second.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // The admitted response still completes, sharing the budget with the peers.
    assert_eq!(first.bytes().await.unwrap().len() as u64, promised);
    let metrics = setup.seeder.metrics().await;
    assert_eq!(
        metric(&metrics, "swarmcdn_seeder_webseed_throttled_total"),
        1.0,
        "{metrics}"
    );

    leecher.shutdown().await;
    assert_eq!(leecher.task_count(), 0);
    setup.stop().await;
}
