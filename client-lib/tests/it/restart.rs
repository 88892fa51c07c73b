//! A client restarted on the same cache folder verifies what it has and seeds it again
//! without downloading a byte, and serves `get` from its cached manifest when the tracker is
//! gone.

use crate::common::*;

#[tokio::test]
async fn a_restarted_client_seeds_its_cache_again_without_downloading() {
    let mut tracker = TestTracker::start(300).await;
    let web = TestWebSeed::start().await;
    let files = vec![
        ("index.html", b"<p>hi</p>".to_vec()),
        ("app.js", random_bytes(9, 500 * 1024)),
    ];
    let release = publish_files(&tracker, &web, "restart-test", "1.0.0", files, 64 * 1024).await;
    let cache = tempfile::tempdir().unwrap();

    // First run: fetched from the web seed into the cache folder, on disk.
    let first = disk_client(&tracker, cache.path()).build().await.unwrap();
    let got = get_within(&first, "restart-test").await;
    assert_eq!(got.progress().bytes_from_http, release.size());
    drop(got);
    // A second `get` of the same release (a pinned route asks again and again) finds it
    // verified and does not write its manifest again.
    let manifest_file = cache.path().join("manifests/restart-test/1.0.0.json");
    let written = std::fs::metadata(&manifest_file)
        .unwrap()
        .modified()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    drop(get_within(&first, "restart-test").await);
    assert_eq!(
        std::fs::metadata(&manifest_file)
            .unwrap()
            .modified()
            .unwrap(),
        written
    );
    shutdown_clean(first).await;
    assert!(
        cache
            .path()
            .join("manifests/restart-test/1.0.0.json")
            .is_file()
    );
    assert!(cache.path().join(release.info_hash().to_hex()).is_dir());

    // From now on the web seed has nothing.
    web.set_mode(SeedMode::Missing);
    let http_before = web.bytes_served();

    // Second run: verified and seeding at once, nothing downloaded.
    let second = disk_client(&tracker, cache.path()).build().await.unwrap();
    let seeding = second
        .torrent(release.info_hash())
        .await
        .expect("the cached release is seeded at start-up");
    let progress = seeding.progress();
    assert!(progress.complete);
    assert_eq!(progress.bytes_from_http + progress.bytes_from_peers, 0);
    wait_progress(&seeding.watch(), "the restarted seeder announced", |p| {
        p.announces >= 1
    })
    .await;

    // Another client downloads it from the restarted one (the web seed is of no use).
    let other = test_client().tracker(tracker.url()).build().await.unwrap();
    let fetched = get_within(&other, "restart-test").await;
    release.assert_served_by(&fetched).await;
    assert_eq!(fetched.progress().bytes_from_peers, release.size());
    assert!(seeding.stats().await.unwrap().progress.uploaded_bytes >= release.size());
    assert_eq!(web.bytes_served(), http_before, "no byte came over HTTP");

    // With the tracker gone, the restarted client answers from its cached manifest.
    tracker.kill().await;
    let offline = get_within(&second, "restart-test").await;
    release.assert_served_by(&offline).await;
    assert_eq!(offline.version().to_string(), "1.0.0");

    shutdown_clean(other).await;
    shutdown_clean(second).await;
    web.stop().await;
}

/// A release restored from the cache announces to the client's configured tracker too,
/// like a freshly fetched one, even when its torrent names no tracker: the tracker sees
/// the restarted client in the swarm, and another client finds it there.
#[tokio::test]
async fn a_restored_release_announces_to_the_configured_tracker() {
    let tracker = TestTracker::start(300).await;
    // No `announce` in the torrent, no web seed: only the configured tracker can bring
    // peers to it.
    let release = release_of_size("restored-announce", 300 * 1024, 64 * 1024, None, Vec::new());
    tracker.publish(&release).await;
    let cache = tempfile::tempdir().unwrap();
    seed_cache(cache.path(), &release);
    assert_eq!(tracker.swarm_size(release.info_hash()), 0);

    let restored = test_client()
        .tracker(tracker.url())
        .cache_dir(cache.path())
        .build()
        .await
        .unwrap();
    wait_until("the restored release's announce", || {
        tracker.swarm_size(release.info_hash()) == 1
    })
    .await;

    let other = test_client().tracker(tracker.url()).build().await.unwrap();
    let fetched = get_within(&other, "restored-announce").await;
    release.assert_served_by(&fetched).await;
    assert_eq!(fetched.progress().bytes_from_peers, release.size());

    shutdown_clean(other).await;
    shutdown_clean(restored).await;
    wait_until("the stopped announces", || {
        tracker.swarm_size(release.info_hash()) == 0
    })
    .await;
}
