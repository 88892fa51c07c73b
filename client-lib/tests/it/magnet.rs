//! Magnet links: the torrent comes from the tracker's torrent endpoint, or from peers over
//! BEP 9 when no tracker has it.

use swarmcdn_client::AddError;
use swarmcdn_proto::magnet::Magnet;

use crate::common::*;

/// The tracker registered the torrent: one request gets it, the web seed in the link
/// delivers the content.
#[tokio::test]
async fn a_magnet_link_is_resolved_through_the_trackers_torrent_endpoint() {
    let tracker = TestTracker::start(300).await;
    let web = TestWebSeed::start().await;
    let release = publish_sized(&tracker, &web, "magnet-tracker", 100 * 1024, 16 * 1024).await;

    let client = test_client().tracker(tracker.url()).build().await.unwrap();
    let uri = Magnet::new(release.info_hash()).to_uri();
    let handle = client.add_magnet(&uri).await.unwrap();
    assert_eq!(handle.metainfo().info_hash(), release.info_hash());
    let done = complete_within(&handle).await;
    release.assert_stored_in(&handle);
    assert_eq!(done.bytes_from_http, release.size());

    shutdown_clean(client).await;
    web.stop().await;
}

/// No tracker at all, only a peer that seeds the release: the metadata and then the
/// content come from it.
#[tokio::test]
async fn a_magnet_link_is_resolved_from_a_peer_over_bep_9() {
    let release = release_of_size("magnet-peers", 300 * 1024, 16 * 1024, None, Vec::new());
    let (seeder, _seed_dir) = start_seeder(&release, test_client()).await;

    let client = test_client()
        .bootstrap_peer(seeder.local_peer_addr())
        .build()
        .await
        .unwrap();
    let handle = tokio::time::timeout(
        WAIT,
        client.add_magnet(&Magnet::new(release.info_hash()).to_uri()),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(handle.metainfo().info(), release.metainfo.info());
    let done = complete_within(&handle).await;
    release.assert_stored_in(&handle);
    assert_eq!(done.bytes_from_peers, release.size());

    shutdown_clean(client).await;
    shutdown_clean(seeder).await;
}

/// Nobody to ask: a typed error at once, not a hang.
#[tokio::test]
async fn a_magnet_link_with_no_source_fails_with_a_typed_error() {
    let client = test_client().build().await.unwrap();
    let info_hash = release_of_size("nowhere", 1000, 16 * 1024, None, Vec::new()).info_hash();
    match client.add_magnet(&Magnet::new(info_hash).to_uri()).await {
        Err(AddError::MetadataUnavailable { info_hash: ih, .. }) => assert_eq!(ih, info_hash),
        other => panic!("expected MetadataUnavailable, got {other:?}"),
    }
    assert!(matches!(
        client.add_magnet("magnet:?dn=nothing").await,
        Err(AddError::BadMagnet(_))
    ));
    shutdown_clean(client).await;
}
