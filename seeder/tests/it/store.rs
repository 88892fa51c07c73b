//! The store from the command line: `list`, `verify`, `unpublish`.

use swarmcdn_seeder::store::{Problem, Store};

use crate::support::{TOKEN, TrackerDouble, Workspace, run_bin};

fn store_args(ws: &Workspace, command: &str) -> Vec<String> {
    vec![
        command.into(),
        "--store".into(),
        ws.store.display().to_string(),
    ]
}

#[tokio::test]
async fn verify_finds_a_flipped_byte() {
    let tracker = TrackerDouble::start().await;
    let ws = Workspace::new();
    let published = ws.publish_widget(&tracker.url, "1.0.0").await;
    let (ok, stdout, _) = run_bin(store_args(&ws, "verify")).await;
    assert!(ok, "{stdout}");
    assert!(stdout.contains("1 release(s) intact"), "{stdout}");

    let file = published
        .content_dir
        .join("share-button-1.0.0/data/big.bin");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[123_456] ^= 0x01;
    std::fs::write(&file, bytes).unwrap();

    let report = Store::open(&ws.store)
        .unwrap()
        .verify(&published.info_hash)
        .unwrap()
        .unwrap();
    assert!(!report.is_intact());
    assert_eq!(report.damaged.len(), 1);
    assert_eq!(report.damaged[0].path.to_string(), "data/big.bin");
    assert!(matches!(
        report.damaged[0].problems[0],
        Problem::BadPieces(_)
    ));

    let (ok, stdout, stderr) = run_bin(store_args(&ws, "verify")).await;
    assert!(!ok);
    assert!(stdout.contains("DAMAGED share-button 1.0.0"), "{stdout}");
    assert!(stdout.contains("data/big.bin"), "{stdout}");
    assert!(stderr.contains("damaged"), "{stderr}");
    tracker.stop().await;
}

#[tokio::test]
async fn list_shows_the_releases() {
    let tracker = TrackerDouble::start().await;
    let ws = Workspace::new();
    let (ok, stdout, _) = run_bin(store_args(&ws, "list")).await;
    assert!(ok);
    assert!(stdout.contains("holds no releases"), "{stdout}");
    let published = ws.publish_widget(&tracker.url, "1.2.3").await;
    let (ok, stdout, _) = run_bin(store_args(&ws, "list")).await;
    assert!(ok);
    let line = stdout.lines().nth(1).unwrap();
    assert!(line.starts_with("share-button"), "{stdout}");
    assert!(
        line.contains("1.2.3") && line.contains(&published.info_hash.to_hex()),
        "{line}"
    );
    assert!(line.ends_with("served"), "{line}");
    tracker.stop().await;
}

fn unpublish_args(ws: &Workspace, tracker: &str, version: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "unpublish".to_owned(),
        "share-button".into(),
        version.into(),
        "--tracker".into(),
        tracker.into(),
        "--token".into(),
        TOKEN.into(),
        "--store".into(),
        ws.store.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

#[tokio::test]
async fn unpublish_tells_the_tracker_and_removes_or_keeps_the_content() {
    let tracker = TrackerDouble::start().await;
    let ws = Workspace::new();
    let one = ws.publish_widget(&tracker.url, "1.0.0").await;
    ws.write("extra.txt", b"v2");
    let two = ws
        .publish(&tracker.url, "share-button", Some("2.0.0"))
        .await;

    let (ok, stdout, stderr) = run_bin(unpublish_args(&ws, &tracker.url, "1.0.0", &[])).await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("no longer lists"), "{stdout}");
    let deletes = tracker.deletes();
    assert_eq!(deletes.len(), 1);
    assert_eq!(
        (deletes[0].name.as_str(), deletes[0].version.as_str()),
        ("share-button", "1.0.0")
    );
    assert_eq!(
        deletes[0].authorization.as_deref(),
        Some(&*format!("Bearer {TOKEN}"))
    );
    let store = Store::open(&ws.store).unwrap();
    assert!(store.load(&one.info_hash).unwrap().is_none());
    assert!(!one.content_dir.exists());
    assert_eq!(
        tracker.versions("share-button"),
        std::slice::from_ref(&two.version)
    );

    let (ok, _, stderr) = run_bin(unpublish_args(
        &ws,
        &tracker.url,
        "2.0.0",
        &["--keep-content"],
    ))
    .await;
    assert!(ok, "{stderr}");
    let kept = store.load(&two.info_hash).unwrap().unwrap();
    assert!(kept.withdrawn);
    assert!(two.content_dir.exists());
    assert!(tracker.versions("share-button").is_empty());
    tracker.stop().await;
}

#[tokio::test]
async fn unpublish_with_the_tracker_down_changes_nothing() {
    let tracker = TrackerDouble::start().await;
    let ws = Workspace::new();
    ws.publish_widget(&tracker.url, "1.0.0").await;
    let before = ws.store_snapshot();
    let dead = crate::support::dead_url().await;
    let (ok, _, stderr) = run_bin(unpublish_args(&ws, &dead, "1.0.0", &[])).await;
    assert!(!ok);
    assert!(stderr.contains("cannot reach the tracker"), "{stderr}");
    assert!(stderr.contains("store is unchanged"), "{stderr}");
    assert_eq!(ws.store_snapshot(), before);
    tracker.stop().await;
}
