//! `keygen`: an owner-only key file, never overwritten; keys with open permissions refused.

use std::os::unix::fs::PermissionsExt;

use crate::support::{TrackerDouble, Workspace, run_bin};

#[tokio::test]
async fn keygen_writes_a_0600_key_and_prints_the_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("publisher.key");
    let (ok, stdout, _) = run_bin(vec![
        "keygen".into(),
        "--out".into(),
        path.display().to_string(),
    ])
    .await;
    assert!(ok, "{stdout}");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let key = swarmcdn_seeder::keys::load_key(&path).unwrap();
    let public = swarmcdn_seeder::keys::public_key_hex(&key.verifying_key());
    assert!(stdout.contains(&public), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "swarmcdn-tracker publisher add YOUR-NAME --public-key {public}"
        )),
        "{stdout}"
    );
}

#[tokio::test]
async fn keygen_refuses_to_overwrite_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("publisher.key");
    let args = vec!["keygen".into(), "--out".into(), path.display().to_string()];
    assert!(run_bin(args.clone()).await.0);
    let before = std::fs::read(&path).unwrap();
    let (ok, _, stderr) = run_bin(args).await;
    assert!(!ok);
    assert!(stderr.contains("already exists"), "{stderr}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[tokio::test]
async fn publishing_with_an_open_key_file_is_refused_and_changes_nothing() {
    let tracker = TrackerDouble::start().await;
    let ws = Workspace::new();
    ws.widget();
    std::fs::set_permissions(&ws.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let before = ws.store_snapshot();
    let (ok, _, stderr) = run_bin(ws.publish_args(&tracker.url, "share-button")).await;
    assert!(!ok);
    assert!(
        stderr.contains(&format!("chmod 600 {}", ws.key.display())),
        "{stderr}"
    );
    assert_eq!(ws.store_snapshot(), before);
    assert!(tracker.publishes().is_empty());
    tracker.stop().await;
}
