//! Shutting down stops everything the client started: sessions say `stopped` to the tracker,
//! connections close, every task ends and the peer port is free.

use swarmcdn_client::GetError;

use crate::common::*;

#[tokio::test]
async fn shutdown_announces_stopped_ends_every_task_and_frees_the_port() {
    let tracker = TestTracker::start(300).await;
    let release = release_of_size(
        "shutdown-test",
        256 * 1024,
        64 * 1024,
        Some(tracker.announce_url()),
        Vec::new(),
    );
    tracker.publish(&release).await;
    let (seeder, _seed_dir) = start_seeder(&release, test_client()).await;
    let seeding = seeder.torrent(release.info_hash()).await.unwrap();
    wait_announced(&seeding, "the seeder announced").await;

    let leecher = test_client().tracker(tracker.url()).build().await.unwrap();
    let got = get_within(&leecher, "shutdown-test").await;
    release.assert_served_by(&got).await;
    assert!(leecher.task_count() > 0 && seeder.task_count() > 0);
    wait_until("both peers in the swarm", || tracker.peer_count() == 2).await;

    // The leecher leaves: its `stopped` reached the tracker before shutdown returned.
    shutdown_clean(leecher.clone()).await;
    assert_eq!(tracker.peer_count(), 1);
    assert!(matches!(
        leecher.get("shutdown-test").await,
        Err(GetError::Shutdown)
    ));
    // What was fetched stays readable after shutdown.
    release.assert_served_by(&got).await;

    shutdown_clean(seeder).await;
    assert_eq!(tracker.peer_count(), 0);
}
