//! The registered set of a running tracker follows changes other processes make to its
//! database (the `publisher remove` command, a second writer), through the periodic re-read.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use swarmcdn_proto::tracker::{AnnounceEvent, AnnounceResponse};
use swarmcdn_tracker::registry::Registry;

use crate::common::*;

/// Generous bound on "the next refresh happened" (the period is 1 s).
const WITHIN: Duration = Duration::from_secs(15);

/// Polls `check` until it returns true; fails the test with `what` after [`WITHIN`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + WITHIN;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {WITHIN:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A harness over a registry file in `dir`, re-read every second.
fn harness(dir: &Path) -> Harness {
    let mut config = test_config();
    config.registry_refresh_secs = 1;
    Harness::with_registry(
        config,
        Registry::open(dir.join("registry.sqlite3")).unwrap(),
    )
}

/// A tracker served over [`harness`] with release `n` (published through the API when
/// `publish`), its temporary directory first so it outlives the server.
async fn start(n: u8, publish: bool) -> (tempfile::TempDir, Harness, Release, Running) {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path());
    let release = Release::small("share-button", "1.0.0", n, &h.key);
    if publish {
        h.publish(&release).await;
    }
    let server = Running::serve(h.state.clone()).await;
    (dir, h, release, server)
}

/// A second handle on the harness's registry file, as another process would open it.
fn other_handle(dir: &Path) -> Registry {
    Registry::open(dir.join("registry.sqlite3")).unwrap()
}

/// Announces a seeder for `release` and returns the answer.
async fn announce(h: &Harness, release: &Release) -> AnnounceResponse {
    let request = announce_request(release.info_hash, 1, 6881, 0, AnnounceEvent::Started);
    h.announce(&request, addr(CLIENT)).await.announce()
}

fn refreshes(text: &str, result: &str) -> f64 {
    metric(
        text,
        &format!("tracker_registry_refreshes_total{{result=\"{result}\"}}"),
    )
}

#[tokio::test]
async fn a_publisher_removed_elsewhere_stops_being_tracked_and_its_swarm_goes() {
    let (dir, h, release, server) = start(1, true).await;
    assert!(matches!(
        announce(&h, &release).await,
        AnnounceResponse::Success(_)
    ));
    let metrics = h.metrics().await;
    assert_eq!(metric(&metrics, "tracker_swarms"), 1.0);
    assert_eq!(metric(&metrics, "tracker_registered_torrents"), 1.0);

    // What `swarmcdn-tracker publisher remove acme` does, from another handle on the file.
    let removed = other_handle(dir.path())
        .remove_publisher(PUBLISHER)
        .unwrap();
    assert_eq!(removed, vec![release.info_hash]);

    eventually("announces refused as unregistered", || async {
        matches!(
            announce(&h, &release).await,
            AnnounceResponse::Failure { ref reason } if reason == "unregistered torrent"
        )
    })
    .await;
    eventually("the swarm gone from /metrics", || async {
        metric(&h.metrics().await, "tracker_swarms") == 0.0
    })
    .await;
    let metrics = h.metrics().await;
    assert_eq!(metric(&metrics, "tracker_registered_torrents"), 0.0);
    assert_eq!(metric(&metrics, "tracker_peers"), 0.0);
    assert!(refreshes(&metrics, "replaced") >= 1.0, "{metrics}");
    assert_eq!(refreshes(&metrics, "failed"), 0.0);
    server.stop().await;
}

#[tokio::test]
async fn a_release_removed_elsewhere_stops_being_served_to_sites() {
    let (dir, h, release, server) = start(3, true).await;
    // Served (and so cached) before the removal.
    for uri in ["/api/v1/assets/share-button", "/api/v1/lookup/share-button"] {
        assert_eq!(h.get(uri).await.status, axum::http::StatusCode::OK, "{uri}");
    }
    other_handle(dir.path())
        .remove_release(&release.name, &release.version)
        .unwrap();
    for uri in [
        "/api/v1/assets/share-button",
        "/api/v1/assets/share-button/1.0.0",
        "/api/v1/lookup/share-button",
        "/api/v1/lookup/share-button/1.0.0",
    ] {
        eventually(&format!("{uri} answers 404"), || async {
            h.get(uri).await.status == axum::http::StatusCode::NOT_FOUND
        })
        .await;
    }
    server.stop().await;
}

#[tokio::test]
async fn a_release_added_by_another_process_becomes_announceable() {
    let (dir, h, release, server) = start(2, false).await;
    assert!(matches!(
        announce(&h, &release).await,
        AnnounceResponse::Failure { ref reason } if reason == "unregistered torrent"
    ));

    // Another process writes the release straight into the database.
    let other = other_handle(dir.path());
    let publisher = other.publisher(PUBLISHER).unwrap().unwrap();
    other
        .insert_release(
            &publisher,
            &release.name.parse().unwrap(),
            &release.version,
            &release.info_hash,
            release.manifest.to_json().as_bytes(),
            &release.metainfo,
        )
        .unwrap();

    eventually("the release announceable", || async {
        matches!(announce(&h, &release).await, AnnounceResponse::Success(_))
    })
    .await;
    assert!(h.state.is_registered(&release.info_hash));
    assert_eq!(
        metric(&h.metrics().await, "tracker_registered_torrents"),
        1.0
    );
    server.stop().await;
}

#[tokio::test]
async fn a_failed_refresh_keeps_the_last_good_set_and_is_counted() {
    let (dir, h, release, server) = start(3, true).await;

    // Make the registered torrents unreadable behind the tracker's back.
    let path = dir.path().join("registry.sqlite3");
    let damage = rusqlite::Connection::open(&path).unwrap();
    damage
        .execute_batch("ALTER TABLE torrents RENAME TO torrents_away")
        .unwrap();
    eventually("a failed refresh counted", || async {
        refreshes(&h.metrics().await, "failed") >= 1.0
    })
    .await;
    // The last good set still answers.
    assert!(matches!(
        announce(&h, &release).await,
        AnnounceResponse::Success(_)
    ));
    assert!(h.state.is_registered(&release.info_hash));
    assert_eq!(
        metric(&h.metrics().await, "tracker_registered_torrents"),
        1.0
    );

    // Repaired, the next refresh succeeds again and still knows the release.
    damage
        .execute_batch("ALTER TABLE torrents_away RENAME TO torrents")
        .unwrap();
    drop(damage);
    let replaced_before = refreshes(&h.metrics().await, "replaced");
    eventually("a refresh succeeding again", || async {
        refreshes(&h.metrics().await, "replaced") > replaced_before
    })
    .await;
    assert!(h.state.is_registered(&release.info_hash));
    server.stop().await;
}

#[tokio::test]
async fn refresh_zero_leaves_the_set_to_the_publish_api() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config();
    config.registry_refresh_secs = 0;
    let h = Harness::with_registry(
        config,
        Registry::open(dir.path().join("registry.sqlite3")).unwrap(),
    );
    let release = Release::small("share-button", "1.0.0", 4, &h.key);
    h.publish(&release).await;
    let server = Running::serve(h.state.clone()).await;
    other_handle(dir.path())
        .remove_publisher(PUBLISHER)
        .unwrap();
    // Nothing to wait for: with the refresh off, the set changes only through the API.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(h.state.is_registered(&release.info_hash));
    let metrics = h.metrics().await;
    for result in ["replaced", "raced", "failed"] {
        assert_eq!(refreshes(&metrics, result), 0.0, "{result}");
    }
    server.stop().await;
}
