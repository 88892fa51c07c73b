//! `serve` follows the store: releases published or removed while it runs, restarts, damage
//! found at start.

use std::time::Duration;

use reqwest::StatusCode;
use swarmcdn_seeder::config::Config;
use swarmcdn_seeder::publish::Published;
use swarmcdn_seeder::store::Store;

use crate::support::{
    RunningSeeder, TrackerDouble, Workspace, get_text, handshake_accepted, wait_handshake,
};

#[tokio::test]
async fn a_release_published_while_serving_is_served_without_restart() {
    let tracker = TrackerDouble::start().await;
    let ws = Workspace::new();
    let mut seeder = RunningSeeder::start(ws.config()).await;
    assert!(seeder.releases.borrow().is_empty());

    ws.write("widget.js", b"console.log('v1');");
    let v1 = ws.publish(&tracker.url, "widget", Some("1.0.0")).await;
    seeder.wait_for(|c| c.get(&v1.info_hash).is_some()).await;
    let client = reqwest::Client::new();
    let base = seeder.url.clone();
    let url = |version: &str, ih| format!("{base}/webseed/{ih}/widget-{version}/widget.js");
    let body = get_text(&client, url("1.0.0", v1.info_hash)).await;
    assert_eq!(body, "console.log('v1');");

    // A second version joins the first.
    ws.write("widget.js", b"console.log('v2');");
    let v2 = ws.publish(&tracker.url, "widget", None).await;
    seeder.wait_for(|c| c.get(&v2.info_hash).is_some()).await;
    let body = get_text(&client, url("1.0.1", v2.info_hash)).await;
    assert_eq!(body, "console.log('v2');");
    assert_eq!(seeder.releases.borrow().len(), 2);

    // Removed from the store: no longer served.
    Store::open(&ws.store)
        .unwrap()
        .remove(&v1.info_hash)
        .unwrap();
    seeder.wait_for(|c| c.get(&v1.info_hash).is_none()).await;
    let response = client.get(url("1.0.0", v1.info_hash)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // Withdrawn (content kept): not served either.
    Store::open(&ws.store)
        .unwrap()
        .withdraw(&v2.info_hash)
        .unwrap();
    seeder.wait_for(|c| c.is_empty()).await;

    seeder.stop().await;
    tracker.stop().await;
}

/// A store with the widget published as `share-button` 1.0.0.
async fn one_widget() -> (TrackerDouble, Workspace, Published) {
    let tracker = TrackerDouble::start().await;
    let ws = Workspace::new();
    let published = ws.publish_widget(&tracker.url, "1.0.0").await;
    (tracker, ws, published)
}

#[tokio::test]
async fn a_restarted_seeder_serves_the_same_store() {
    let (tracker, ws, published) = one_widget().await;
    for _ in 0..2 {
        let seeder = RunningSeeder::start(ws.config()).await;
        assert!(seeder.releases.borrow().get(&published.info_hash).is_some());
        let url = format!(
            "{}/webseed/{}/share-button-1.0.0/button.html",
            seeder.url, published.info_hash
        );
        let response = reqwest::get(&url).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        seeder.stop().await;
    }
    tracker.stop().await;
}

#[tokio::test]
async fn a_release_damaged_at_start_is_not_served() {
    let tracker = TrackerDouble::start().await;
    let ws = Workspace::new();
    ws.write("a.js", b"intact");
    let good = ws.publish(&tracker.url, "good", Some("1.0.0")).await;
    ws.write("a.js", b"to be damaged");
    let bad = ws.publish(&tracker.url, "bad", Some("1.0.0")).await;
    let file = ws.store.join(bad.info_hash.to_hex()).join("bad-1.0.0/a.js");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[0] ^= 0x20;
    std::fs::write(&file, bytes).unwrap();

    // Peer seeding is on: the peer engine seeds the intact release only, and leaves the
    // damaged one as it is (no `.partial`, no repair): the store is the seeder's.
    let before = ws.store_snapshot();
    let bad_bytes = std::fs::read(&file).unwrap();
    let mut seeder = RunningSeeder::start(ws.config()).await;
    {
        let catalog = seeder.releases.borrow();
        assert!(catalog.get(&good.info_hash).is_some());
        assert!(catalog.get(&bad.info_hash).is_none());
    }
    let peer = seeder.peer_addr().await;
    wait_handshake(peer, good.info_hash, true).await;
    assert!(!handshake_accepted(peer, bad.info_hash).await);
    seeder.stop().await;
    // Not one entry added (no lock, no peer entry, no manifest folder) or changed.
    assert_eq!(
        ws.store_snapshot(),
        before,
        "peer seeding changed the store"
    );
    assert_eq!(std::fs::read(&file).unwrap(), bad_bytes);

    // Without the verify pass it is served as it is (clients check every piece anyway).
    let seeder = RunningSeeder::start(Config {
        verify_on_start: false,
        peer_seeding: false,
        ..ws.config()
    })
    .await;
    assert!(seeder.releases.borrow().get(&bad.info_hash).is_some());
    seeder.stop().await;
    tracker.stop().await;
}

/// A release the peer engine refuses is tried again on a timer, not only when the catalog
/// changes: once its file is put right it is seeded, though the catalog never changed. (The
/// release arrives while `serve` runs, so the catalog takes it without a verify pass, as it
/// takes every release published later; the engine's own check refuses it.)
#[tokio::test]
async fn a_release_the_peer_engine_refused_is_tried_again() {
    let tracker = TrackerDouble::start().await;
    let ws = Workspace::new();
    let mut seeder = RunningSeeder::start(ws.config()).await;

    // Published into another store, damaged there, then moved into the served one.
    let elsewhere = Workspace::new();
    elsewhere.write("a.js", b"put right later");
    let release = elsewhere
        .publish(&tracker.url, "later", Some("1.0.0"))
        .await;
    let hex = release.info_hash.to_hex();
    let file = |store: &std::path::Path| store.join(&hex).join("later-1.0.0/a.js");
    let intact = std::fs::read(file(&elsewhere.store)).unwrap();
    let mut damaged = intact.clone();
    damaged[0] ^= 0x20;
    std::fs::write(file(&elsewhere.store), &damaged).unwrap();
    // Content first, then the manifest, then the torrent (what makes the store list it).
    for name in [
        hex.clone(),
        format!("{hex}.manifest.json"),
        format!("{hex}.torrent"),
    ] {
        std::fs::rename(elsewhere.store.join(&name), ws.store.join(&name)).unwrap();
    }

    let mut releases = seeder.releases.clone();
    tokio::time::timeout(
        Duration::from_secs(20),
        releases.wait_for(|catalog| catalog.get(&release.info_hash).is_some()),
    )
    .await
    .expect("the catalog never took the release")
    .unwrap();
    let peer = seeder.peer_addr().await;
    assert!(!handshake_accepted(peer, release.info_hash).await);
    std::fs::write(file(&ws.store), &intact).unwrap();
    wait_handshake(peer, release.info_hash, true).await;
    seeder.stop().await;
    tracker.stop().await;
}

/// Unpublished or withdrawn while `serve` runs: the release is no longer seeded over the
/// peer wire (handshakes for it are refused), and a withdrawn release's files stay.
#[tokio::test]
async fn a_release_unpublished_while_serving_is_no_longer_seeded_to_peers() {
    let tracker = TrackerDouble::start().await;
    let ws = Workspace::new();
    ws.write("app.js", b"console.log('one');");
    let one = ws.publish(&tracker.url, "one", Some("1.0.0")).await;
    ws.write("app.js", b"console.log('two');");
    let two = ws.publish(&tracker.url, "two", Some("1.0.0")).await;
    let mut seeder = RunningSeeder::start(ws.config()).await;
    let peer = seeder.peer_addr().await;
    wait_handshake(peer, one.info_hash, true).await;
    wait_handshake(peer, two.info_hash, true).await;

    Store::open(&ws.store)
        .unwrap()
        .remove(&one.info_hash)
        .unwrap();
    seeder.wait_for(|c| c.get(&one.info_hash).is_none()).await;
    wait_handshake(peer, one.info_hash, false).await;
    assert!(handshake_accepted(peer, two.info_hash).await);

    Store::open(&ws.store)
        .unwrap()
        .withdraw(&two.info_hash)
        .unwrap();
    seeder.wait_for(|c| c.is_empty()).await;
    wait_handshake(peer, two.info_hash, false).await;
    assert!(
        ws.store.join(two.info_hash.to_hex()).is_dir(),
        "withdrawn content was deleted"
    );
    seeder.stop().await;

    // Restarted: the withdrawn release, intact in the store, is not seeded either.
    let mut seeder = RunningSeeder::start(ws.config()).await;
    let peer = seeder.peer_addr().await;
    wait_handshake(peer, two.info_hash, false).await;
    seeder.stop().await;
    tracker.stop().await;
}

#[tokio::test]
async fn with_peer_seeding_the_engines_check_is_the_only_verify_pass() {
    let (tracker, ws, published) = one_widget().await;
    // Peer seeding on, verify_on_start on (the defaults): the engine re-hashes the store
    // once, and the store's own pass is skipped.
    let seeder = RunningSeeder::start(ws.config()).await;
    assert!(seeder.releases.borrow().get(&published.info_hash).is_some());
    let metrics = seeder.metrics().await;
    let size = published.metainfo.info().total_length();
    assert!(
        metrics.contains(&format!(
            "swarmcdn_seeder_startup_verified_bytes_total{{by=\"peer_engine\"}} {size}"
        )),
        "{metrics}"
    );
    assert!(
        !metrics.contains("swarmcdn_seeder_startup_verified_bytes_total{by=\"store\"}"),
        "the store was hashed a second time: {metrics}"
    );
    seeder.stop().await;
    tracker.stop().await;
}

#[tokio::test]
async fn two_serves_on_one_store_both_seed_it_read_only() {
    let (tracker, ws, published) = one_widget().await;
    let before = ws.store_snapshot();
    // A seed-only engine takes no lock on the store and writes nothing to it, so a second
    // daemon on the same store seeds it too, each after its own engine's check.
    let mut first = RunningSeeder::start(ws.config()).await;
    let mut second = RunningSeeder::start(ws.config()).await;
    let size = published.metainfo.info().total_length();
    for seeder in [&mut first, &mut second] {
        assert!(seeder.releases.borrow().get(&published.info_hash).is_some());
        let peer = seeder.peer_addr().await;
        wait_handshake(peer, published.info_hash, true).await;
        let metrics = seeder.metrics().await;
        assert!(
            metrics.contains(&format!(
                "swarmcdn_seeder_startup_verified_bytes_total{{by=\"peer_engine\"}} {size}"
            )),
            "{metrics}"
        );
    }
    assert_eq!(ws.store_snapshot(), before, "the store was changed");
    second.stop().await;
    first.stop().await;
    tracker.stop().await;
}
