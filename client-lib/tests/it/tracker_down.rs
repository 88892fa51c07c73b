//! The tracker is a rendezvous, not a dependency: without it a release still arrives from
//! the web seed and the peers already known, and `get` answers from the verified manifest
//! it cached.

use swarmcdn_client::GetError;

use crate::common::*;

/// No tracker reachable from the start, the torrent given as metainfo: the first announce
/// fails at once, discovery settles, and everything comes from the web seed.
#[tokio::test]
async fn with_the_tracker_down_from_the_start_a_torrent_completes_from_the_web_seed() {
    let web = TestWebSeed::start().await;
    let announce = format!("{}/announce", dead_url());
    let release = release_of_size(
        "no-tracker",
        300 * 1024,
        64 * 1024,
        Some(announce),
        vec![web.url()],
    );
    web.serve(&release);

    let client = test_client().build().await.unwrap();
    let started = std::time::Instant::now();
    let handle = client.add_torrent(&release.torrent).await.unwrap();
    let done = complete_within(&handle).await;
    release.assert_stored_in(&handle);
    assert_eq!(done.bytes_from_http, release.size(), "{done}");
    assert_eq!(done.announces, 0);
    // No waiting out the initial peer wait and more: a refused announce settles at once.
    assert!(started.elapsed() < std::time::Duration::from_secs(5));

    shutdown_clean(client).await;
    web.stop().await;
}

/// The tracker dies while a download is under way (the only peer is slow and the web seed
/// busy): the download goes on with the peer it knows and, once the web seed takes
/// requests again, HTTP. Then `get` with the tracker down answers from the cached manifest,
/// and a client with nothing cached gets a typed error.
#[tokio::test]
async fn a_tracker_killed_mid_download_does_not_stop_it_and_get_uses_the_cached_manifest() {
    let mut tracker = TestTracker::start(300).await;
    let web = TestWebSeed::start().await;
    let release = publish_sized(&tracker, &web, "tracker-dies", 1024 * 1024, 64 * 1024).await;
    web.set_mode(SeedMode::Busy);

    // A seeder capped at 64 KiB/s: one piece at once, then one a second.
    let (seeder, _seed_dir) = start_seeder(&release, test_client().upload_rate_limit(64)).await;
    let seeding = seeder.torrent(release.info_hash()).await.unwrap();
    wait_announced(&seeding, "the seeder announced").await;

    let leecher = test_client().tracker(tracker.url()).build().await.unwrap();
    let fetching = spawn_get(&leecher, "tracker-dies");
    let handle = wait_torrent(&leecher, release.info_hash()).await;
    wait_progress(&handle.watch(), "a first piece from the peer", |p| {
        p.bytes_from_peers > 0
    })
    .await;

    tracker.kill().await;
    assert!(!handle.progress().complete, "killed mid-download");
    web.set_mode(SeedMode::Good);

    let got = join_get(fetching).await;
    release.assert_served_by(&got).await;
    let progress = handle.progress();
    assert!(
        progress.bytes_from_peers > 0 && progress.bytes_from_http > 0,
        "{progress}"
    );
    assert_eq!(
        progress.bytes_from_peers + progress.bytes_from_http,
        release.size()
    );

    // The tracker is gone: the verified manifest cached by the first get answers.
    let again = get_within(&leecher, "tracker-dies").await;
    assert_eq!(again.info_hash(), release.info_hash());
    release.assert_served_by(&again).await;

    // A client that never fetched it has nothing to fall back on.
    let newcomer = test_client().tracker(tracker.url()).build().await.unwrap();
    match newcomer.get("tracker-dies").await {
        Err(GetError::TrackerUnreachable { name, .. }) => assert_eq!(name.as_str(), "tracker-dies"),
        other => panic!("expected TrackerUnreachable, got {other:?}"),
    }

    shutdown_clean(newcomer).await;
    shutdown_clean(leecher).await;
    shutdown_clean(seeder).await;
    web.stop().await;
}
