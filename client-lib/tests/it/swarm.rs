//! A swarm with no web seed: the seeder's upload counter shows the leechers traded pieces.

use crate::common::*;

/// Three clients and one seeding client share a 4 MiB release of 64 pieces; the seeder sends
/// less than twice the release, so the leechers got the rest from each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_clients_and_a_seeder_share_a_release_without_a_web_seed() {
    let tracker = TestTracker::start(300).await;
    let release = release_of_size(
        "swarm-test",
        4 * 1024 * 1024,
        64 * 1024,
        Some(tracker.announce_url()),
        Vec::new(),
    );
    assert_eq!(release.metainfo.info().piece_count(), 64);
    tracker.publish(&release).await;

    // The seeder is capped like an origin (16 MiB/s), as in production; uncapped on
    // loopback it still stays under 2x (about 1.5x measured), with less margin.
    let seed_dir = tempfile::tempdir().unwrap();
    seed_cache(seed_dir.path(), &release);
    let seeder = test_client()
        .cache_dir(seed_dir.path())
        .upload_rate_limit(16 * 1024)
        .tracker(tracker.url())
        .build()
        .await
        .unwrap();
    let seeding = seeder.torrent(release.info_hash()).await.expect("seeding");
    assert!(seeding.progress().complete);
    // The seeder is in the swarm before the leechers ask.
    wait_progress(&seeding.watch(), "the seeder's first announce", |p| {
        p.announces >= 1
    })
    .await;

    let mut leechers = Vec::new();
    for _ in 0..3 {
        leechers.push(test_client().tracker(tracker.url()).build().await.unwrap());
    }
    let gets = leechers.iter().map(|c| c.get("swarm-test"));
    let releases = tokio::time::timeout(WAIT, futures::future::join_all(gets))
        .await
        .expect("all three complete");
    for got in releases {
        let got = got.unwrap();
        release.assert_served_by(&got).await;
        let progress = got.progress();
        assert_eq!(progress.bytes_from_http, 0, "no web seed: {progress}");
        assert_eq!(progress.bytes_from_peers, release.size(), "{progress}");
    }

    let stats = seeding.stats().await.unwrap();
    let uploaded = stats.progress.uploaded_bytes;
    assert!(
        uploaded < 2 * release.size(),
        "the seeder sent {uploaded} bytes of a {}-byte release",
        release.size()
    );
    // It sent at least one copy (nobody else had the pieces at first).
    assert!(uploaded >= release.size(), "{uploaded}");

    for client in leechers {
        shutdown_clean(client).await;
    }
    shutdown_clean(seeder).await;
}
