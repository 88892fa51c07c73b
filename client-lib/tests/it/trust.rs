//! A release is trusted only through a pinned publisher key and the info-hash its signed
//! manifest names. Failing either check is a typed error, and nothing is downloaded or
//! cached.

use std::path::Path;

use axum::Router;
use axum::routing::get;
use swarmcdn_client::GetError;
use swarmcdn_client::client::{LOCK_FILE, PEERS_DIR};
use swarmcdn_proto::manifest::signing_key_from_seed;
use tokio::net::TcpListener;

use crate::common::*;

/// Everything in a cache folder apart from empty folders and the client's lock and peer
/// entry.
fn cached_files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            // The client's presence in the folder (its lock and peer entry), not content.
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if folder == dir && [LOCK_FILE, PEERS_DIR].contains(&name) {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

/// A release published (validly, at the tracker) by a publisher this client does not trust.
#[tokio::test]
async fn a_manifest_signed_by_an_untrusted_key_is_refused_and_nothing_is_cached() {
    let tracker = TestTracker::start(300).await;
    let web = TestWebSeed::start().await;
    let release = TestRelease::build(
        "stranger-widget",
        "1.0.0",
        vec![("x.js", random_bytes(3, 50_000))],
        16 * 1024,
        Some(tracker.announce_url()),
        vec![web.url()],
        &signing_key_from_seed(STRANGER_SEED),
    );
    tracker
        .publish_with(&release, &tracker.stranger_token.clone())
        .await;
    web.serve(&release);

    let cache = tempfile::tempdir().unwrap();
    let client = test_client()
        .tracker(tracker.url())
        .cache_dir(cache.path())
        .build()
        .await
        .unwrap();
    match client.get("stranger-widget").await {
        Err(GetError::UntrustedKey { name, key }) => {
            assert_eq!(name.as_str(), "stranger-widget");
            assert_eq!(key.len(), 64);
        }
        other => panic!("expected UntrustedKey, got {other:?}"),
    }
    assert!(client.torrent(release.info_hash()).await.is_none());
    assert_eq!(web.requests(), 0, "nothing was downloaded");
    assert_eq!(cached_files(cache.path()), Vec::<String>::new());

    shutdown_clean(client).await;
    web.stop().await;
}

/// How a lying tracker (a test double: the real one refuses such releases at publish)
/// hands out a trusted manifest with a torrent that is not the one it names.
#[derive(Debug, Clone, Copy)]
enum Liar {
    /// In a release lookup.
    Lookup,
    /// Through the manifest and torrent endpoints only (a tracker without lookups).
    Separately,
}

/// A tracker that serves a trusted manifest with the torrent of another release, or with
/// bytes that are no torrent at all: refused with a typed error, nothing downloaded or kept.
#[tokio::test]
async fn a_metainfo_that_is_not_the_manifests_torrent_is_refused() {
    let web = TestWebSeed::start().await;
    let wanted = release_of_size("lied-about", 40_000, 16 * 1024, None, vec![web.url()]);
    let other = release_of_size("something-else", 60_000, 16 * 1024, None, vec![web.url()]);
    web.serve(&wanted);
    web.serve(&other);

    for (liar, torrent) in [
        (Liar::Lookup, other.torrent.clone()),
        (Liar::Separately, other.torrent.clone()),
        (Liar::Lookup, b"d4:infodee".to_vec()),
    ] {
        let torrent_ok = torrent != b"d4:infodee";
        let manifest_json = wanted.manifest.to_json();
        let app = match liar {
            Liar::Lookup => {
                let mut lookup = Vec::new();
                swarmcdn_proto::tracker::write_lookup(
                    &mut lookup,
                    manifest_json.as_bytes(),
                    &torrent,
                    [],
                    [],
                );
                Router::new().route("/api/v1/lookup/{name}", get(move || async move { lookup }))
            }
            Liar::Separately => Router::new()
                .route(
                    "/api/v1/assets/{name}",
                    get(move || async move { manifest_json }),
                )
                .route(
                    "/api/v1/torrents/{info_hash}",
                    get(move || async move { torrent }),
                ),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let serving = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let cache = tempfile::tempdir().unwrap();
        let client = test_client()
            .tracker(url)
            .cache_dir(cache.path())
            .build()
            .await
            .unwrap();
        match client.get("lied-about").await {
            Err(GetError::InfoHashMismatch { manifest, metainfo }) if torrent_ok => {
                assert_eq!(manifest, wanted.info_hash(), "{liar:?}");
                assert_eq!(metainfo, other.info_hash(), "{liar:?}");
            }
            Err(GetError::BadMetainfo { info_hash, .. }) if !torrent_ok => {
                assert_eq!(info_hash, wanted.info_hash(), "{liar:?}");
            }
            other => panic!("{liar:?}: expected a refused metainfo, got {other:?}"),
        }
        assert!(client.torrent(other.info_hash()).await.is_none());
        assert!(client.torrent(wanted.info_hash()).await.is_none());
        assert_eq!(web.requests(), 0, "nothing was downloaded");
        assert_eq!(cached_files(cache.path()), Vec::<String>::new());

        shutdown_clean(client).await;
        serving.abort();
    }
    web.stop().await;
}

/// The publisher signed a manifest whose file digests do not match the torrent it names
/// (same sizes, other bytes): the download completes piece-verified, the file check fails,
/// and the release is removed from the cache, its manifest never saved.
#[tokio::test]
async fn files_that_do_not_match_the_signed_manifest_are_refused_and_removed() {
    use swarmcdn_proto::RelativePath;
    use swarmcdn_proto::manifest::{Manifest, ManifestFile};

    let tracker = TestTracker::start(300).await;
    let web = TestWebSeed::start().await;
    let honest = release_of_size(
        "mislabelled",
        100 * 1024,
        16 * 1024,
        Some(tracker.announce_url()),
        vec![web.url()],
    );
    web.serve(&honest);
    // The same torrent, described with another file's digests.
    let decoy = random_bytes(77, honest.size() as usize);
    let entry = ManifestFile::from_bytes(
        RelativePath::parse("payload.bin").unwrap(),
        "application/octet-stream",
        &decoy,
    )
    .unwrap();
    let manifest = Manifest::new(
        "mislabelled".parse().unwrap(),
        honest.version.clone(),
        honest.info_hash(),
        1_700_000_000,
        vec![entry],
    )
    .unwrap()
    .sign(&publisher_key());
    let release = TestRelease {
        manifest,
        ..honest.clone()
    };
    tracker.publish(&release).await;

    let cache = tempfile::tempdir().unwrap();
    let client = disk_client(&tracker, cache.path()).build().await.unwrap();
    match tokio::time::timeout(WAIT, client.get("mislabelled"))
        .await
        .unwrap()
    {
        Err(GetError::Integrity { file, .. }) => assert_eq!(file.to_string(), "payload.bin"),
        other => panic!("expected Integrity, got {other:?}"),
    }
    assert!(web.bytes_served() >= honest.size(), "it was downloaded");
    assert!(client.torrent(release.info_hash()).await.is_none());
    assert_eq!(cached_files(cache.path()), Vec::<String>::new());

    shutdown_clean(client).await;
    web.stop().await;
}
