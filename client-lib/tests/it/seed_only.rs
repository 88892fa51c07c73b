//! `CacheMode::SeedOnly`: a cache folder that is someone else's store is seeded from but
//! never changed; a damaged release in it is skipped, not renamed to `.partial` or
//! repaired.

use std::path::Path;

use swarmcdn_client::client::LOCK_FILE;
use swarmcdn_client::storage::StorageError;
use swarmcdn_client::{AddError, CacheMode, Client, GetError, RemoveOptions, TorrentHandle};

use crate::common::*;

/// A client seeding from the store `dir`, seed-only.
async fn seed_only_client(tracker: &TestTracker, dir: &Path) -> Client {
    test_client()
        .tracker(tracker.url())
        .cache_dir(dir)
        .cache_mode(CacheMode::SeedOnly)
        .build()
        .await
        .unwrap()
}

/// The handle of `release`, which `client` must be seeding complete.
async fn seeding(client: &Client, release: &TestRelease) -> TorrentHandle {
    let seeding = client
        .torrent(release.info_hash())
        .await
        .expect("the release in the store is seeded");
    assert!(seeding.progress().complete);
    seeding
}

#[tokio::test]
async fn a_seed_only_cache_skips_a_damaged_release_and_leaves_its_files_untouched() {
    let tracker = TestTracker::start(300).await;
    let good = release_of_size("store-good", 200 * 1024, 64 * 1024, None, Vec::new());
    let damaged = release_of_size("store-damaged", 200 * 1024, 64 * 1024, None, Vec::new());
    tracker.publish(&good).await;
    tracker.publish(&damaged).await;
    let store = tempfile::tempdir().unwrap();
    seed_cache(store.path(), &good);
    seed_cache(store.path(), &damaged);
    // One byte of piece 2 flipped, as a disk error or a stray edit would.
    let folder = store.path().join(damaged.info_hash().to_hex());
    let file = folder.join("store-damaged-1.0.0").join("payload.bin");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[2 * 64 * 1024 + 10] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();
    let modified = std::fs::metadata(&file).unwrap().modified().unwrap();

    let client = seed_only_client(&tracker, store.path()).await;

    // The intact release is seeded, the damaged one is not.
    let seeding = seeding(&client, &good).await;
    assert!(client.torrent(damaged.info_hash()).await.is_none());
    assert!(handshake_accepted(client.local_peer_addr(), good.info_hash()).await);
    assert!(
        !handshake_accepted(client.local_peer_addr(), damaged.info_hash()).await,
        "the damaged release is offered to peers"
    );

    // Asking for it names the bad piece and repairs nothing.
    let added = client.add_torrent(&damaged.torrent).await;
    assert!(
        matches!(&added, Err(AddError::Storage(e))
            if matches!(&**e, StorageError::Damaged { bad_pieces, .. } if bad_pieces == &[2])),
        "{added:?}"
    );
    let got = client.get("store-damaged").await;
    assert!(matches!(got, Err(GetError::Storage(_))), "{got:?}");
    assert!(folder.is_dir(), "the damaged folder was moved");
    assert!(
        !store
            .path()
            .join(format!("{}.partial", damaged.info_hash().to_hex()))
            .exists()
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        bytes,
        "the damaged file changed"
    );
    assert_eq!(
        std::fs::metadata(&file).unwrap().modified().unwrap(),
        modified
    );

    // Removing a release from a seed-only cache stops seeding and never deletes.
    assert!(
        client
            .remove(good.info_hash(), RemoveOptions::default())
            .await
            .unwrap()
    );
    assert!(client.torrent(good.info_hash()).await.is_none());
    assert!(store.path().join(good.info_hash().to_hex()).is_dir());
    drop(seeding);
    shutdown_clean(client).await;
}

/// Every path below `root` with its size (0 for folders), sorted.
fn listing(root: &Path) -> Vec<(String, u64)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u64)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if meta.is_dir() {
                out.push((format!("{rel}/"), 0));
                walk(root, &path, out);
            } else {
                out.push((rel, meta.len()));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// A seed-only client adds nothing to the store (no lock, no peer entry, no manifest
/// folder) and seeds from it even while another process holds the folder's lock.
#[tokio::test]
async fn a_seed_only_client_adds_nothing_to_the_store_and_ignores_its_lock() {
    let tracker = TestTracker::start(300).await;
    let good = release_of_size("store-locked", 200 * 1024, 64 * 1024, None, Vec::new());
    tracker.publish(&good).await;
    let store = tempfile::tempdir().unwrap();
    seed_cache(store.path(), &good);
    // Another process owns the folder.
    let lock = std::fs::File::create(store.path().join(LOCK_FILE)).unwrap();
    lock.lock().unwrap();
    let before = listing(store.path());

    let client = seed_only_client(&tracker, store.path()).await;
    let seeding = seeding(&client, &good).await;
    let got = tokio::time::timeout(WAIT, client.get("store-locked"))
        .await
        .unwrap()
        .unwrap();
    good.assert_served_by(&got).await;
    drop((got, seeding));
    assert_eq!(listing(store.path()), before, "the store changed");
    shutdown_clean(client).await;
    assert_eq!(
        listing(store.path()),
        before,
        "the store changed at shutdown"
    );
    drop(lock);
}
