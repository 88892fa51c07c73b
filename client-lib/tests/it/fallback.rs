//! The HTTP fallback: with no peers the release comes from the web seed at once, in few,
//! coalesced requests; a peer that stalls loses its pieces to HTTP after the deadline.

use std::sync::atomic::Ordering;

use swarmcdn_client::scheduler::SchedulerConfig;

use crate::common::*;

/// No peer anywhere: everything comes from the web seed, as whole-file GETs for files the
/// fetch covers and Range GETs for a large file cut by the fetch size, each byte once.
#[tokio::test]
async fn with_no_peers_the_release_arrives_entirely_from_the_web_seed() {
    let tracker = TestTracker::start(300).await;
    let web = TestWebSeed::start().await;
    let files = vec![
        ("button.html", b"<button>share</button>".to_vec()),
        ("button.css", b"button { color: red }".to_vec()),
        ("bundle.js", random_bytes(1, 1024 * 1024)),
    ];
    let release = publish_files(&tracker, &web, "no-peers", "2.1.0", files, 64 * 1024).await;

    // Fetches of at most 256 KiB: the 1 MiB file takes several Range requests.
    let client = test_client()
        .tracker(tracker.url())
        .scheduler(SchedulerConfig {
            max_http_range_bytes: 256 * 1024,
            ..test_client().current_config().scheduler.clone()
        })
        .build()
        .await
        .unwrap();
    // Two concurrent gets share one session (and one download).
    let (got, twin) = tokio::time::timeout(
        WAIT,
        futures::future::join(client.get("no-peers"), client.get("no-peers")),
    )
    .await
    .unwrap();
    let (got, twin) = (got.unwrap(), twin.unwrap());
    assert_eq!(twin.info_hash(), got.info_hash());
    release.assert_served_by(&got).await;
    let progress = got.progress();
    assert_eq!(progress.bytes_from_http, release.size(), "{progress}");
    assert_eq!(progress.bytes_from_peers, 0);
    assert_eq!(got.version().to_string(), "2.1.0");
    assert_eq!(
        got.file("button.css").unwrap().content_type(),
        "text/css; charset=utf-8"
    );

    let counters = &web.counters;
    assert!(counters.range_requests.load(Ordering::SeqCst) >= 4);
    assert!(counters.whole_file_requests.load(Ordering::SeqCst) >= 1);
    assert_eq!(web.bytes_served(), release.size(), "each byte fetched once");

    shutdown_clean(client).await;
    web.stop().await;
}

/// A peer that takes requests and never answers: its pieces go to HTTP after the deadline,
/// it is dropped for snubbing, and the download completes.
#[tokio::test]
async fn pieces_a_stalling_peer_sits_on_come_over_http() {
    let web = TestWebSeed::start().await;
    let release = release_of_size("stall", 1024 * 1024, 64 * 1024, None, vec![web.url()]);
    web.serve(&release);
    let staller = FakePeer::start(&release, FakeBehavior::Stall).await;

    let client = test_client()
        .bootstrap_peer(staller.addr)
        .build()
        .await
        .unwrap();
    let (_handle, done) = download_torrent(&client, &release).await;
    assert!(staller.requests() > 0, "the peer was asked first");
    assert_eq!(staller.connections(), 1);
    assert_eq!(done.bytes_from_http, release.size(), "{done}");
    assert_eq!(done.bytes_from_peers, 0);
    assert!(web.requests() > 0);

    shutdown_clean(client).await;
    staller.stop().await;
    web.stop().await;
}
