//! The publish flow end to end through the router: publish, announce, fetch manifests and
//! metainfo, publish a newer version, withdraw.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use swarmcdn_proto::manifest::SignedManifest;
use swarmcdn_proto::metainfo::Metainfo;
use swarmcdn_proto::tracker::AnnounceEvent;

use crate::common::*;

#[tokio::test]
async fn publish_announce_fetch_update_and_withdraw() {
    let h = Harness::new();
    let key = h.key.verifying_key();

    // Publish 1.0.0.
    let v1 = Release::small("share-button", "1.0.0", 1, &h.key);
    let reply = h.publish(&v1).await;
    let created = reply.json();
    assert_eq!(created["name"], "share-button");
    assert_eq!(created["version"], "1.0.0");
    assert_eq!(created["info_hash"], v1.info_hash.to_string());
    assert_eq!(created["manifest_url"], "/api/v1/assets/share-button/1.0.0");
    assert_eq!(
        created["torrent_url"],
        format!("/api/v1/torrents/{}", v1.info_hash)
    );
    assert_eq!(
        reply.headers[header::LOCATION],
        "/api/v1/assets/share-button/1.0.0"
    );

    // Announceable at once.
    let seeder = announce_request(v1.info_hash, 1, 6881, 0, AnnounceEvent::Started);
    h.announce(&seeder, addr("192.0.2.1:1")).await.success();

    // The latest manifest verifies against the publisher's key and names the torrent.
    let latest = h.get("/api/v1/assets/share-button").await;
    assert_eq!(latest.status, StatusCode::OK);
    assert_eq!(latest.headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(latest.headers[header::CACHE_CONTROL], "no-cache");
    let manifest = SignedManifest::from_json(&latest.body).unwrap();
    assert_eq!(manifest, v1.manifest);
    assert_eq!(
        manifest.verify_with(&key).unwrap().info_hash(),
        v1.info_hash
    );
    let exact = h.get("/api/v1/assets/share-button/1.0.0").await;
    assert_eq!(exact.status, StatusCode::OK);
    assert_eq!(exact.body, latest.body);

    // The metainfo is served byte for byte, cacheable for ever, with an entity tag.
    let torrent = h.get(&format!("/api/v1/torrents/{}", v1.info_hash)).await;
    assert_eq!(torrent.status, StatusCode::OK);
    assert_eq!(torrent.body, v1.metainfo);
    assert_eq!(
        torrent.headers[header::CONTENT_TYPE],
        "application/x-bittorrent"
    );
    assert_eq!(
        torrent.headers[header::CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );
    let etag = torrent.headers[header::ETAG].clone();
    assert_eq!(etag, format!("\"{}\"", v1.info_hash).as_str());
    assert_eq!(
        Metainfo::from_bytes(&torrent.body).unwrap().info_hash(),
        v1.info_hash
    );
    // Base32 names the same torrent; a revalidation with the tag is a 304.
    let by_base32 = h
        .get(&format!("/api/v1/torrents/{}", v1.info_hash.to_base32()))
        .await;
    assert_eq!(by_base32.body, v1.metainfo);
    let revalidate = Request::get(format!("/api/v1/torrents/{}", v1.info_hash))
        .header(header::IF_NONE_MATCH, etag)
        .body(Body::empty())
        .unwrap();
    let not_modified = h.send(revalidate).await;
    assert_eq!(not_modified.status, StatusCode::NOT_MODIFIED);
    assert!(not_modified.body.is_empty());

    // 2.0.0 becomes the latest; 1.0.0 is still there.
    let v2 = Release::small("share-button", "2.0.0", 2, &h.key);
    h.publish(&v2).await;
    let latest = h.get("/api/v1/assets/share-button").await;
    let manifest = SignedManifest::from_json(&latest.body).unwrap();
    assert_eq!(
        manifest.verify_with(&key).unwrap().version().to_string(),
        "2.0.0"
    );
    assert_eq!(
        latest.headers[header::ETAG],
        format!("\"{}\"", v2.info_hash).as_str()
    );
    assert_eq!(
        h.get("/api/v1/assets/share-button/1.0.0").await.status,
        StatusCode::OK
    );

    // Withdraw 1.0.0: announces refused, swarm dropped, metainfo gone; 2.0.0 unaffected.
    let reply = h.delete_release("share-button", "1.0.0", &h.token).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text());
    assert_eq!(
        h.announce(&seeder, addr("192.0.2.1:1")).await.failure(),
        "unregistered torrent"
    );
    assert_eq!(h.peer_count(), (0, 0));
    assert_eq!(
        h.get(&format!("/api/v1/torrents/{}", v1.info_hash))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.get("/api/v1/assets/share-button/1.0.0").await.status,
        StatusCode::NOT_FOUND
    );
    h.announce(
        &announce_request(v2.info_hash, 1, 6881, 0, AnnounceEvent::Started),
        addr("192.0.2.1:1"),
    )
    .await
    .success();

    let metrics = h.metrics().await;
    assert_eq!(metric(&metrics, "tracker_releases_published_total"), 2.0);
    assert_eq!(metric(&metrics, "tracker_registered_torrents"), 1.0);
    assert!(
        metric(
            &metrics,
            "tracker_request_duration_seconds_count{endpoint=\"publish\"}"
        ) >= 2.0
    );
}

#[tokio::test]
async fn probes_answer() {
    let h = Harness::new();
    let health = h.get("/healthz").await;
    assert_eq!(
        (health.status, health.text().as_str()),
        (StatusCode::OK, "ok\n")
    );
    let ready = h.get("/readyz").await;
    assert_eq!(
        (ready.status, ready.text().as_str()),
        (StatusCode::OK, "ready\n")
    );
    let metrics = h.get("/metrics").await;
    assert!(
        metrics.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    assert!(metrics.text().ends_with("# EOF\n"));
}

#[tokio::test]
async fn readyz_is_503_while_the_registry_cannot_answer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.sqlite3");
    let h = Harness::with_registry(
        test_config(),
        swarmcdn_tracker::registry::Registry::open(&path).unwrap(),
    );
    assert_eq!(h.get("/readyz").await.status, StatusCode::OK);

    // Damage the database behind the tracker's back (a bad restore, a stray script): the
    // table the readiness query reads is gone.
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("DROP TABLE publishers").unwrap();
    drop(other);

    let counted_before = errors(&h.metrics().await, "health", "not_ready");
    let ready = h.get("/readyz").await;
    assert_eq!(
        ready.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        ready.text()
    );
    assert_eq!(ready.error(), "the registry is unreachable");
    assert_eq!(
        errors(&h.metrics().await, "health", "not_ready"),
        counted_before + 1.0
    );
    // Liveness is a different question: the process still answers.
    assert_eq!(h.get("/healthz").await.status, StatusCode::OK);
}

#[tokio::test]
async fn metrics_can_be_switched_off() {
    let mut config = test_config();
    config.metrics_enabled = false;
    let h = Harness::with_config(config);
    assert_eq!(h.get("/metrics").await.status, StatusCode::NOT_FOUND);
}
