//! Bad data never gets in: a peer sending corrupt blocks is banned for the release, a web
//! seed serving wrong bytes is dropped, and the download completes from the honest sources.

use swarmcdn_proto::PeerId;
use swarmcdn_proto::tracker::{AnnounceEvent, AnnounceRequest};

use crate::common::*;

/// A peer answers requests with garbage: the pieces fail their hash, the peer is banned
/// and never dialled again (though the tracker keeps handing it out), and the release
/// comes whole and correct from the web seed.
#[tokio::test]
async fn a_peer_sending_corrupt_pieces_is_banned_and_the_data_is_right() {
    let tracker = TestTracker::start(1).await;
    let web = TestWebSeed::start().await;
    let release = publish_sized(&tracker, &web, "corrupt-peer", 512 * 1024, 64 * 1024).await;
    let liar = FakePeer::start(&release, FakeBehavior::Corrupt).await;
    // The liar is in the swarm: every announce hands it out.
    let mut announce = AnnounceRequest::new(
        release.info_hash(),
        PeerId::new([0xfa; 20]),
        liar.addr.port(),
    );
    announce.event = AnnounceEvent::Started;
    swarmcdn_client::tracker_client::TrackerClient::new(&tracker.url(), reqwest::Client::new())
        .announce(&tracker.announce_url(), &announce)
        .await
        .unwrap();

    let client = test_client()
        .tracker(tracker.url())
        .bootstrap_peer(liar.addr)
        .build()
        .await
        .unwrap();
    let got = get_within(&client, "corrupt-peer").await;
    release.assert_served_by(&got).await;
    let handle = client.torrent(release.info_hash()).await.unwrap();
    let progress = handle.progress();
    assert!(liar.requests() > 0, "the liar was asked");
    assert!(progress.hash_failures >= 1, "{progress:?}");
    assert_eq!(progress.peers_banned, 1, "{progress:?}");
    assert_eq!(progress.bytes_from_peers, 0);
    assert_eq!(progress.bytes_from_http, release.size());

    // Two more announce rounds hand the liar out again (and re-offer the bootstrap peer):
    // it is not dialled again.
    let announces = progress.announces;
    wait_progress(&handle.watch(), "two more announces", |p| {
        p.announces >= announces + 2
    })
    .await;
    assert_eq!(liar.connections(), 1, "a banned peer was dialled again");

    shutdown_clean(client).await;
    liar.stop().await;
    web.stop().await;
}

/// The web seed serves wrong bytes: the pieces fail their hash, the seed is dropped for the
/// release, and a seeding peer that joins later supplies everything.
#[tokio::test]
async fn a_web_seed_serving_wrong_bytes_is_dropped_and_peers_finish_the_job() {
    let tracker = TestTracker::start(300).await;
    let web = TestWebSeed::start().await;
    let release = publish_sized(&tracker, &web, "corrupt-seed", 512 * 1024, 64 * 1024).await;
    web.set_mode(SeedMode::Corrupt);

    let leecher = test_client().tracker(tracker.url()).build().await.unwrap();
    let fetching = spawn_get(&leecher, "corrupt-seed");
    // Alone in the swarm, it goes to the web seed at once, and drops it.
    let handle = wait_torrent(&leecher, release.info_hash()).await;
    wait_progress(&handle.watch(), "the web seed dropped", |p| {
        p.web_seeds_removed == 1
    })
    .await;
    assert!(handle.progress().hash_failures >= 1);
    assert_eq!(handle.progress().have_pieces, 0);

    // A seeder joins; it dials the leecher the tracker hands it.
    let (seeder, _seed_dir) = start_seeder(&release, test_client()).await;
    let got = join_get(fetching).await;
    release.assert_served_by(&got).await;
    let progress = got.progress();
    assert_eq!(progress.bytes_from_peers, release.size(), "{progress}");
    assert_eq!(progress.bytes_from_http, 0);
    assert_eq!(progress.web_seeds_removed, 1);
    let requests = web.requests();
    assert!(requests >= 1);

    shutdown_clean(leecher).await;
    shutdown_clean(seeder).await;
    assert_eq!(
        web.requests(),
        requests,
        "a dropped seed is never asked again"
    );
    web.stop().await;
}

/// A peer that announces its pieces as aria2 does (an empty bitfield, then a full one
/// mid-connection, no Fast extension): the late bitfield replaces the first, and the
/// release comes from it.
#[tokio::test]
async fn a_late_bitfield_replaces_the_first_one() {
    let release = release_of_size("late-bitfield", 200 * 1024, 16 * 1024, None, Vec::new());
    let peer = FakePeer::start(&release, FakeBehavior::LateBitfield).await;
    let client = test_client()
        .bootstrap_peer(peer.addr)
        .build()
        .await
        .unwrap();
    let (_handle, done) = download_torrent(&client, &release).await;
    assert_eq!(done.bytes_from_peers, release.size(), "{done}");
    assert_eq!(peer.connections(), 1);

    shutdown_clean(client).await;
    peer.stop().await;
}

/// A bitfield of the wrong size (claiming pieces past the end) is a protocol violation:
/// the peer is dropped and banned, and the release comes from the web seed.
#[tokio::test]
async fn a_peer_sending_a_bitfield_of_the_wrong_size_is_dropped() {
    let web = TestWebSeed::start().await;
    let release = release_of_size("bad-bitfield", 100 * 1024, 16 * 1024, None, vec![web.url()]);
    web.serve(&release);
    let liar = FakePeer::start(&release, FakeBehavior::BadBitfield).await;
    let client = test_client()
        .bootstrap_peer(liar.addr)
        .build()
        .await
        .unwrap();
    let (_handle, done) = download_torrent(&client, &release).await;
    assert_eq!(done.peers_banned, 1, "{done:?}");
    assert_eq!(done.bytes_from_http, release.size());
    assert_eq!(liar.requests(), 0, "nothing was asked of it");

    shutdown_clean(client).await;
    liar.stop().await;
    web.stop().await;
}
