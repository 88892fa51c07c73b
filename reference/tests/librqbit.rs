//! librqbit as the reference peer: our client downloads a torrent a librqbit session seeds,
//! and a librqbit session downloads one our client seeds.
//!
//! librqbit is an independent implementation of the peer wire (handshake, extension bits,
//! bitfield, request pipelining, choking), so these two transfers check ours against code we
//! did not write, in both directions. Peers are handed over directly (our client's
//! bootstrap peer, librqbit's initial peers): no tracker, no DHT, no local discovery, no web
//! seed, so every byte crosses the peer wire and the only way to pass is a working exchange.
//! The release has two files and a dozen pieces with a short last piece, so piece
//! boundaries that cross files are exercised too.
//!
//! Everything binds 127.0.0.1 with OS-chosen ports; sessions and clients are stopped and
//! temp folders removed at the end (also on failure: the temp dirs drop). Each transfer has a
//! generous timeout that turns a hang into a failure.

#[allow(dead_code)]
#[path = "common/mod.rs"]
mod common;

use std::time::Duration;

use common::*;

/// The longest a loopback transfer of a few MiB may take before it counts as a hang.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(60);
/// Piece length: 256 KiB.
const PIECE_LENGTH: u32 = 256 * 1024;

/// Two files, 3 MiB and a bit: 13 pieces, one crossing the file boundary, a short last one.
fn two_file_release(name: &str) -> Release {
    let release = Release::new(
        name,
        vec![
            ("app.js", random_bytes(1, 2 * 1024 * 1024 + 4_321)),
            ("img/logo.png", random_bytes(2, 1024 * 1024 + 999)),
        ],
        PIECE_LENGTH,
        None,
    );
    assert!(release.metainfo.info().piece_count() > 10);
    release
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_downloads_what_a_librqbit_session_seeds() {
    let release = two_file_release("from-rqbit");
    let seed_dir = tempfile::tempdir().unwrap();
    release.write_to(seed_dir.path());

    let session = rqbit_session(seed_dir.path()).await.unwrap();
    let seeding = rqbit_add(&session, &release, seed_dir.path(), Vec::new(), false)
        .await
        .unwrap();
    let stats = seeding.stats();
    assert!(
        stats.finished,
        "librqbit must see its files complete: {stats}"
    );
    let seeder_addr = session.listen_addr().expect("librqbit listens");

    let client = client().bootstrap_peer(seeder_addr).build().await.unwrap();
    let handle = client.add_torrent(&release.torrent).await.unwrap();
    let progress = tokio::time::timeout(TRANSFER_TIMEOUT, handle.wait_complete())
        .await
        .expect("our client did not finish downloading from librqbit")
        .unwrap();
    assert!(progress.complete, "{progress}");
    assert_eq!(progress.bytes_from_peers, release.size(), "{progress}");
    assert_eq!(progress.bytes_from_http, 0, "{progress}");
    assert_eq!(progress.hash_failures, 0, "{progress}");
    for (index, file) in release.metainfo.info().files().iter().enumerate() {
        let stored = handle.store().read_file(index).unwrap();
        let path = inner_path(file.path.components());
        assert!(stored == release.file(&path), "{path} differs");
    }

    tokio::time::timeout(TRANSFER_TIMEOUT, client.shutdown())
        .await
        .expect("our client did not shut down");
    assert_eq!(client.task_count(), 0);
    tokio::time::timeout(TRANSFER_TIMEOUT, session.stop())
        .await
        .expect("librqbit did not stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_librqbit_session_downloads_what_our_client_seeds() {
    let release = two_file_release("to-rqbit");
    let cache_dir = tempfile::tempdir().unwrap();
    release.fill_cache(cache_dir.path());
    let client = client().cache_dir(cache_dir.path()).build().await.unwrap();
    let seeding = client
        .torrent(release.metainfo.info_hash())
        .await
        .expect("the client seeds what its cache holds");
    assert!(seeding.progress().complete);

    let fetch_dir = tempfile::tempdir().unwrap();
    let session = rqbit_session(fetch_dir.path()).await.unwrap();
    let fetching = rqbit_add(
        &session,
        &release,
        fetch_dir.path(),
        vec![client.local_peer_addr()],
        false,
    )
    .await
    .unwrap();
    tokio::time::timeout(TRANSFER_TIMEOUT, fetching.wait_until_completed())
        .await
        .unwrap_or_else(|_| panic!("librqbit did not finish: {}", fetching.stats()))
        .unwrap();
    let stats = fetching.stats();
    assert!(stats.finished, "{stats}");
    assert_eq!(stats.progress_bytes, release.size(), "{stats}");
    release
        .check_folder(&fetch_dir.path().join(release.folder_name()))
        .unwrap();
    // Every byte came from our client: it counted them on the way out.
    let uploaded = seeding.stats().await.unwrap().progress.uploaded_bytes;
    assert!(
        uploaded >= release.size(),
        "our client sent {uploaded} bytes"
    );

    tokio::time::timeout(TRANSFER_TIMEOUT, session.stop())
        .await
        .expect("librqbit did not stop");
    tokio::time::timeout(TRANSFER_TIMEOUT, client.shutdown())
        .await
        .expect("our client did not shut down");
    assert_eq!(client.task_count(), 0);
}
