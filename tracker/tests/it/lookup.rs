//! Release lookups (`GET /api/v1/lookup/{name}[/{version}]`): manifest, metainfo and peers
//! in one answer, always the current release, and read-only for the swarm.

use axum::http::{StatusCode, header};
use swarmcdn_proto::tracker::{AnnounceEvent, ReleaseLookup};

use crate::common::*;

/// Fetches and decodes a lookup, checking the response headers.
async fn lookup(h: &Harness, uri: &str) -> ReleaseLookup {
    let reply = h.get(uri).await;
    assert_eq!(reply.status, StatusCode::OK, "{uri}: {}", reply.text());
    assert_eq!(
        reply.headers[header::CONTENT_TYPE],
        "application/x-swarmcdn-lookup"
    );
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
    ReleaseLookup::from_bytes(&reply.body).unwrap()
}

#[tokio::test]
async fn lookups_carry_the_current_release_and_a_sample_of_its_swarm() {
    let h = Harness::new();
    let v1 = Release::small("share-button", "1.0.0", 1, &h.key);
    h.publish(&v1).await;
    // A manifest request first caches the manifest alone; the lookup still gets the torrent.
    assert_eq!(
        h.get("/api/v1/assets/share-button").await.status,
        StatusCode::OK
    );

    let got = lookup(&h, "/api/v1/lookup/share-button").await;
    assert_eq!(got.manifest, v1.manifest);
    assert_eq!(got.torrent, v1.metainfo);
    assert!(got.peers.is_empty() && got.peers6.is_empty());

    // A seeder joins: the next lookup names it, and fetching lookups stores nobody.
    let seeder = announce_request(v1.info_hash, 1, 6881, 0, AnnounceEvent::Started);
    h.announce(&seeder, addr("192.0.2.7:1")).await.success();
    assert_eq!(h.peer_count(), (1, 1));
    let got = lookup(&h, "/api/v1/lookup/share-button/1.0.0").await;
    assert_eq!(
        got.peers,
        [addr("192.0.2.7:6881").to_string().parse().unwrap()]
    );
    assert_eq!(h.peer_count(), (1, 1), "a lookup fetch added a peer");

    // A newer release is the latest at once (the cache does not hold the old one back);
    // the old version stays reachable by its number.
    let v2 = Release::small("share-button", "2.0.0", 2, &h.key);
    h.publish(&v2).await;
    let latest = lookup(&h, "/api/v1/lookup/share-button").await;
    assert_eq!(latest.manifest, v2.manifest);
    assert_eq!(latest.torrent, v2.metainfo);
    assert!(latest.peers.is_empty(), "v1's seeder is not v2's");
    let old = lookup(&h, "/api/v1/lookup/share-button/1.0.0").await;
    assert_eq!(old.manifest, v1.manifest);

    // Withdrawn: gone from lookups at once, latest falls back.
    h.delete_release("share-button", "2.0.0", &h.token).await;
    assert_eq!(
        h.get("/api/v1/lookup/share-button/2.0.0").await.status,
        StatusCode::NOT_FOUND
    );
    let latest = lookup(&h, "/api/v1/lookup/share-button").await;
    assert_eq!(latest.manifest, v1.manifest);
    // The manifest endpoints read through the same cache and agree.
    let manifest = h.get("/api/v1/assets/share-button").await;
    assert_eq!(
        manifest.headers[header::ETAG],
        format!("\"{}\"", v1.info_hash).as_str()
    );

    let metrics = h.metrics().await;
    assert!(
        metric(
            &metrics,
            "tracker_request_duration_seconds_count{endpoint=\"lookup\"}"
        ) >= 5.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn lookups_of_unknown_or_malformed_names_are_refused() {
    let h = Harness::new();
    let unknown = h.get("/api/v1/lookup/nothing-here").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.error(), "no release of that name");
    let v1 = Release::small("share-button", "1.0.0", 1, &h.key);
    h.publish(&v1).await;
    let no_version = h.get("/api/v1/lookup/share-button/9.9.9").await;
    assert_eq!(no_version.status, StatusCode::NOT_FOUND);
    let bad = h.get("/api/v1/lookup/Bad%20Name").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.error().starts_with("bad release name"),
        "{}",
        bad.text()
    );
    assert_eq!(h.peer_count(), (0, 0));
    assert_eq!(metric(&h.metrics().await, "tracker_swarms"), 0.0);
}
