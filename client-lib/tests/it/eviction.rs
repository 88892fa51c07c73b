//! Eviction and removal stop seeding cleanly: the evicted or removed release's session
//! says `stopped` to the tracker and its data goes, while a release a handle reads from is
//! never evicted from under it.

use swarmcdn_client::storage::StorageError;
use swarmcdn_client::{Client, GetError, Release, RemoveError, RemoveOptions};
use swarmcdn_proto::InfoHash;

use crate::common::*;

/// A tracker, a web seed, and two one-file releases of 600 KiB published on the one and
/// served by the other.
async fn two_releases() -> (TestTracker, TestWebSeed, TestRelease, TestRelease) {
    let tracker = TestTracker::start(300).await;
    let web = TestWebSeed::start().await;
    let (a, b) = published_pair(&tracker, &web).await;
    (tracker, web, a, b)
}

async fn published_pair(tracker: &TestTracker, web: &TestWebSeed) -> (TestRelease, TestRelease) {
    let build = |name: &str, seed: u64| {
        TestRelease::build(
            name,
            "1.0.0",
            vec![("payload.bin", random_bytes(seed, 600 * 1024))],
            64 * 1024,
            Some(tracker.announce_url()),
            vec![web.url()],
            &publisher_key(),
        )
    };
    let (a, b) = (build("evict-a", 31), build("evict-b", 32));
    for release in [&a, &b] {
        tracker.publish(release).await;
        web.serve(release);
    }
    (a, b)
}

/// A client keeping releases on disk in `dir`, whose budget holds one of the releases of
/// [`two_releases`], not both.
async fn one_release_on_disk(tracker: &TestTracker, dir: &std::path::Path) -> Client {
    test_client()
        .tracker(tracker.url())
        .cache_dir(dir)
        .memory_threshold(0)
        .disk_budget(1024 * 1024)
        .build()
        .await
        .unwrap()
}

/// `client.get(name)`, which must succeed (and not hang).
async fn get_ok(client: &Client, name: &str) -> Release {
    tokio::time::timeout(WAIT, client.get(name))
        .await
        .unwrap()
        .unwrap()
}

/// `client.remove(info_hash, options)`, which must not fail: whether it had the release.
async fn removed(client: &Client, info_hash: InfoHash, options: RemoveOptions) -> bool {
    client.remove(info_hash, options).await.unwrap()
}

/// Deleting `info_hash` is refused: a handle reads its files.
async fn assert_in_use(client: &Client, info_hash: InfoHash) {
    let refused = client.remove(info_hash, RemoveOptions::default()).await;
    assert!(
        matches!(refused, Err(RemoveError::InUse(ih)) if ih == info_hash),
        "{refused:?}"
    );
}

/// A memory-only client whose budget holds one of the releases, not both: the second `get`
/// evicts the first, whose session announces `stopped`; while a `Release` of the first is
/// held, the second is refused instead and the held one stays readable.
#[tokio::test]
async fn eviction_stops_the_seeding_session_but_never_a_held_release() {
    let (tracker, web, a, b) = two_releases().await;
    let client = test_client()
        .tracker(tracker.url())
        .memory_budget(1024 * 1024)
        .build()
        .await
        .unwrap();

    let held = get_ok(&client, "evict-a").await;
    wait_until("a's announce", || tracker.swarm_size(a.info_hash()) == 1).await;

    // A handle reads `a`: it is not evicted, so `b` finds no room.
    let refused = tokio::time::timeout(WAIT, client.get("evict-b"))
        .await
        .unwrap();
    assert!(
        matches!(&refused, Err(GetError::Storage(e)) if matches!(**e, StorageError::CacheFull { .. })),
        "{refused:?}"
    );
    a.assert_served_by(&held).await;
    assert!(client.torrent(a.info_hash()).await.is_some());

    // Handle dropped: `a` is only seeded, and goes to make room for `b`.
    drop(held);
    let got_b = get_ok(&client, "evict-b").await;
    b.assert_served_by(&got_b).await;
    assert!(
        client.torrent(a.info_hash()).await.is_none(),
        "a still runs"
    );
    wait_until("a's stopped announce", || {
        tracker.swarm_size(a.info_hash()) == 0
    })
    .await;
    wait_until("b's announce", || tracker.swarm_size(b.info_hash()) == 1).await;

    // Asked for again, `a` is downloaded again (evicting `b`, now that no handle holds it).
    drop(got_b);
    let again = get_ok(&client, "evict-a").await;
    a.assert_served_by(&again).await;
    assert!(client.torrent(b.info_hash()).await.is_none());
    drop(again);
    shutdown_clean(client).await;
    web.stop().await;
}

/// With a cache folder, eviction deletes the evicted release's folder and torrent.
#[tokio::test]
async fn disk_eviction_deletes_the_seeded_release_folder() {
    let (tracker, web, a, b) = two_releases().await;
    let cache = tempfile::tempdir().unwrap();
    let client = one_release_on_disk(&tracker, cache.path()).await;
    let got_a = get_ok(&client, "evict-a").await;
    drop(got_a);
    let folder_a = cache.path().join(a.info_hash().to_hex());
    assert!(folder_a.is_dir());

    let got_b = get_ok(&client, "evict-b").await;
    b.assert_served_by(&got_b).await;
    assert!(!folder_a.exists(), "a's folder is still there");
    assert!(
        !cache
            .path()
            .join(format!("{}.torrent", a.info_hash().to_hex()))
            .exists()
    );
    assert!(client.torrent(a.info_hash()).await.is_none());
    wait_until("a's stopped announce", || {
        tracker.swarm_size(a.info_hash()) == 0
    })
    .await;
    drop(got_b);
    shutdown_clean(client).await;
    web.stop().await;
}

/// `remove` stops seeding (the tracker hears `stopped`), deletes the files unless asked to
/// keep them, and refuses to delete files a live handle reads.
#[tokio::test]
async fn remove_stops_seeding_and_deletes_or_keeps_the_files() {
    let (tracker, web, a, b) = two_releases().await;
    let cache = tempfile::tempdir().unwrap();
    let client = test_client()
        .tracker(tracker.url())
        .cache_dir(cache.path())
        .memory_threshold(0)
        .build()
        .await
        .unwrap();
    let got_a = get_ok(&client, "evict-a").await;
    let got_b = get_ok(&client, "evict-b").await;
    drop(got_b);
    wait_until("both announced", || {
        tracker.swarm_size(a.info_hash()) == 1 && tracker.swarm_size(b.info_hash()) == 1
    })
    .await;

    // A handle reads `a`: its files are not deleted and it keeps seeding.
    assert_in_use(&client, a.info_hash()).await;
    assert!(client.torrent(a.info_hash()).await.is_some());
    a.assert_served_by(&got_a).await;
    drop(got_a);

    let folder_a = cache.path().join(a.info_hash().to_hex());
    assert!(removed(&client, a.info_hash(), RemoveOptions::default()).await);
    assert!(!folder_a.exists());
    assert!(client.torrent(a.info_hash()).await.is_none());
    wait_until("a's stopped announce", || {
        tracker.swarm_size(a.info_hash()) == 0
    })
    .await;

    // Keeping the data: seeding stops, the files stay.
    let folder_b = cache.path().join(b.info_hash().to_hex());
    assert!(removed(&client, b.info_hash(), RemoveOptions::keep_data()).await);
    assert!(client.torrent(b.info_hash()).await.is_none());
    assert!(folder_b.is_dir());
    wait_until("b's stopped announce", || {
        tracker.swarm_size(b.info_hash()) == 0
    })
    .await;
    // Removing what is gone says so.
    assert!(!removed(&client, a.info_hash(), RemoveOptions::default()).await);
    shutdown_clean(client).await;
    web.stop().await;
}

/// A release whose data `remove` kept while a handle reads it is still the handle's: a
/// later `remove` that deletes refuses, a new `get` shares the same store (so eviction
/// cannot delete the folder the handle reads either), and once the handle is gone the
/// files can be deleted.
#[tokio::test]
async fn files_a_handle_reads_survive_remove_after_keep_data() {
    let (tracker, web, a, _b) = two_releases().await;
    let cache = tempfile::tempdir().unwrap();
    let client = one_release_on_disk(&tracker, cache.path()).await;
    let held = get_ok(&client, "evict-a").await;
    let folder_a = cache.path().join(a.info_hash().to_hex());
    assert!(removed(&client, a.info_hash(), RemoveOptions::keep_data()).await);
    assert!(client.torrent(a.info_hash()).await.is_none());
    assert_in_use(&client, a.info_hash()).await;
    assert!(folder_a.is_dir());
    a.assert_served_by(&held).await;

    // Asked for again: the same files, still protected by the first handle's lease, so
    // `b` finds no room.
    let again = get_ok(&client, "evict-a").await;
    drop(again);
    let refused = tokio::time::timeout(WAIT, client.get("evict-b"))
        .await
        .unwrap();
    assert!(
        matches!(&refused, Err(GetError::Storage(e)) if matches!(**e, StorageError::CacheFull { .. })),
        "{refused:?}"
    );
    assert!(folder_a.is_dir());
    a.assert_served_by(&held).await;

    drop(held);
    assert!(removed(&client, a.info_hash(), RemoveOptions::default()).await);
    assert!(!folder_a.exists());
    shutdown_clean(client).await;
    web.stop().await;
}
