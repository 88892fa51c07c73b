//! The publisher's path end to end, with every part real and in this process: our tracker
//! (its registry in SQLite in a temp folder), the seeder library publishing a folder and
//! serving it (web seed and peer seeding), and client-lib fetching it as a site would.
//!
//! One test walks the whole life of a release name, because each step starts from what the
//! one before left: publish 1.0.0 and fetch it; publish the next version and see clients
//! asking for the latest get it; unpublish it and see the tracker fall back to 1.0.0 and
//! the seeder stop serving it; restart the seeder on the same store and see it seed 1.0.0 to
//! a fresh client over the peer wire alone, having hashed the store once (a verify pass)
//! and not republished anything.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use swarmcdn_client::{Client, Release};
use swarmcdn_proto::PeerId;
use swarmcdn_proto::manifest::{ReleaseName, Version};
use swarmcdn_proto::tracker::{AnnounceEvent, AnnounceRequest, AnnounceResponse};
use swarmcdn_seeder::store::Store;
use swarmcdn_seeder::tracker_api::TrackerApi;
use swarmcdn_test_support::payload::sha256_hex;
use tokio::net::TcpListener;

const NAME: &str = "share-button";

/// A fresh client (memory only) of the tracker, trusting the publisher's key.
async fn client(tracker: &TestTracker, publisher: &Publisher) -> Client {
    Client::builder()
        .tracker(tracker.url.clone())
        .trust(publisher.key.verifying_key())
        .listen_addr(SocketAddr::from(([127, 0, 0, 1], 0)))
        .initial_peer_wait(Duration::from_millis(500))
        .build()
        .await
        .unwrap()
}

/// `client.get(NAME)`, bounded.
async fn get_latest(client: &Client) -> Release {
    tokio::time::timeout(PATIENCE, client.get(NAME))
        .await
        .expect("get did not finish")
        .unwrap()
}

/// Every file of `release` is byte for byte the file published.
async fn assert_same_files(release: &Release, files: &[(&str, Vec<u8>)]) {
    assert_eq!(release.files().len(), files.len());
    for (path, bytes) in files {
        let got = release.bytes(path).await.unwrap();
        assert_eq!(
            sha256_hex(&got),
            sha256_hex(bytes),
            "{path} of {} differs",
            release.version()
        );
    }
}

async fn stop_client(client: Client) {
    client.shutdown().await;
    assert_eq!(client.task_count(), 0, "the client left tasks running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_fetch_update_unpublish_and_restart() {
    let tracker_dir = tempfile::tempdir().unwrap();
    let tracker = TestTracker::start(tracker_dir.path(), 300).await;
    let publisher = Publisher::new(&tracker);
    let v1_files = widget_files(1);
    let v2_files = widget_files(2);

    // The web seed's port is known before publishing, since the torrent names it.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let webseed = format!("http://{}", listener.local_addr().unwrap());

    // 1.0.0: published, served, fetched.
    publisher.write_files(&v1_files);
    let v1 = publisher.publish(NAME, Some("1.0.0"), &webseed).await;
    assert_eq!(v1.version, Version::new(1, 0, 0));
    let mut seeder = TestSeeder::start(publisher.seeder_config(), listener).await;
    assert!(seeder.releases.borrow().get(&v1.info_hash).is_some());
    let first = client(&tracker, &publisher).await;
    let release = get_latest(&first).await;
    assert_eq!(release.version(), &v1.version);
    assert_eq!(release.info_hash(), v1.info_hash);
    assert_same_files(&release, &v1_files).await;
    stop_client(first).await;

    // The next version, published while the seeder runs (no restart), is what a client
    // asking for the latest gets.
    publisher.write_files(&v2_files);
    let v2 = publisher.publish(NAME, None, &webseed).await;
    assert_eq!(v2.version, Version::new(1, 0, 1), "the patch is bumped");
    assert_ne!(v2.info_hash, v1.info_hash);
    seeder.wait_for(|c| c.get(&v2.info_hash).is_some()).await;
    let second = client(&tracker, &publisher).await;
    let release = get_latest(&second).await;
    assert_eq!(release.version(), &v2.version);
    assert_same_files(&release, &v2_files).await;
    stop_client(second).await;

    // Unpublished (the seeder's unpublish path: the tracker, then the store): the tracker
    // no longer has 1.0.1 and its latest is 1.0.0 again; the seeder stops serving it.
    let api = TrackerApi::new(&tracker.url, Duration::from_secs(10)).unwrap();
    let name: ReleaseName = NAME.parse().unwrap();
    assert!(
        api.unpublish(&publisher.token, &name, &v2.version)
            .await
            .unwrap()
    );
    assert!(
        Store::open(&publisher.store)
            .unwrap()
            .remove(&v2.info_hash)
            .unwrap()
    );
    let http = reqwest::Client::new();
    let status = |url: String| {
        let http = http.clone();
        async move { http.get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(
        status(format!("{}/api/v1/assets/{NAME}/1.0.1", tracker.url)).await,
        404
    );
    assert_eq!(
        status(format!("{}/api/v1/torrents/{}", tracker.url, v2.info_hash)).await,
        404
    );
    // Its swarm is closed too: an announce for it is refused, one for 1.0.0 is answered
    // (`stopped`, so that the made-up peer is not handed to anyone).
    for (info_hash, registered) in [(v2.info_hash, false), (v1.info_hash, true)] {
        let mut request = AnnounceRequest::new(info_hash, PeerId::new([7; 20]), 9);
        request.event = AnnounceEvent::Stopped;
        let body = http
            .get(format!("{}/announce?{}", tracker.url, request.to_query()))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let answer = AnnounceResponse::from_bytes(&body).unwrap();
        assert_eq!(
            matches!(answer, AnnounceResponse::Success(_)),
            registered,
            "{info_hash}: {answer:?}"
        );
    }
    let latest = api.latest(&name).await.unwrap().expect("a latest release");
    assert_eq!(latest.unverified_manifest().version(), &v1.version);
    seeder.wait_for(|c| c.get(&v2.info_hash).is_none()).await;
    assert_eq!(
        status(format!(
            "{}/webseed/{}/{NAME}-1.0.1/button.js",
            seeder.url, v2.info_hash
        ))
        .await,
        404
    );
    let third = client(&tracker, &publisher).await;
    let release = get_latest(&third).await;
    assert_eq!(release.version(), &v1.version);
    assert_same_files(&release, &v1_files).await;
    stop_client(third).await;
    seeder.stop().await;

    // Restarted on the same store, on another web-seed port: the torrent's web seed is now
    // dead, so a fresh client gets every byte over the peer wire, from the restarted seeder.
    let before = snapshot(&publisher.store);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let seeder = TestSeeder::start(publisher.seeder_config(), listener).await;
    assert!(seeder.releases.borrow().get(&v1.info_hash).is_some());
    assert!(seeder.releases.borrow().get(&v2.info_hash).is_none());
    // One verify pass, no more: the peer engine re-hashed the store once (1.0.0, the only
    // release left) and the store's own pass was skipped, and nothing was re-published.
    let metrics = seeder.metrics().await;
    let hashed_by = |by: &str| {
        metric(
            &metrics,
            &format!("swarmcdn_seeder_startup_verified_bytes_total{{by=\"{by}\"}}"),
        )
    };
    let v1_size: u64 = v1_files.iter().map(|(_, b)| b.len() as u64).sum();
    assert_eq!(hashed_by("peer_engine"), v1_size as f64, "{metrics}");
    assert_eq!(hashed_by("store"), 0.0, "{metrics}");
    assert_eq!(snapshot(&publisher.store), before, "the store changed");

    let fourth = client(&tracker, &publisher).await;
    let release = get_latest(&fourth).await;
    assert_eq!(release.version(), &v1.version);
    assert_same_files(&release, &v1_files).await;
    let progress = release.progress();
    assert_eq!(progress.bytes_from_http, 0, "{progress:?}");
    assert_eq!(progress.bytes_from_peers, v1_size, "{progress:?}");
    // The engine's upload counts reach the metrics a moment after the blocks went out.
    let peer_bytes = format!(
        "swarmcdn_seeder_peer_bytes_total{{info_hash=\"{}\",name=\"{NAME}\",version=\"1.0.0\"}}",
        v1.info_hash.to_hex()
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = seeder.metrics().await;
        if metric(&metrics, &peer_bytes) >= v1_size as f64 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the seeder's peer uploads never reached the release size: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_client(fourth).await;
    seeder.stop().await;
    tracker.stop().await;
}

/// Every path of the store's releases below `root` with its size (folders as `name/`),
/// sorted; what the peer engine keeps beside them (its lock, peer entries and manifests) is
/// left out.
fn snapshot(root: &std::path::Path) -> Vec<(String, u64)> {
    let engines = [
        swarmcdn_client::client::LOCK_FILE,
        swarmcdn_client::client::PEERS_DIR,
        swarmcdn_client::client::MANIFEST_DIR,
    ];
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            if dir == root && engines.iter().any(|name| entry.file_name() == *name) {
                continue;
            }
            let meta = entry.metadata().unwrap();
            let rel = entry
                .path()
                .strip_prefix(root)
                .unwrap()
                .display()
                .to_string();
            if meta.is_dir() {
                out.push((format!("{rel}/"), 0));
                stack.push(entry.path());
            } else {
                out.push((rel, meta.len()));
            }
        }
    }
    out.sort();
    out
}
