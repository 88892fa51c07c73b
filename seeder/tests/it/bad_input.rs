//! Every way a publish can be refused: each is a clear error, and leaves the store and the
//! tracker as they were.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};

use swarmcdn_seeder::publish::{PublishError, PublishOptions, publish};
use swarmcdn_seeder::tracker_api::TrackerError;

use crate::support::{Mode, TrackerDouble, Workspace, dead_url, run_bin};

/// Publishes with `options` and checks that it fails, that nothing changed in the store and
/// that the tracker accepted nothing new; returns the error.
async fn refused(ws: &Workspace, tracker: &TrackerDouble, options: PublishOptions) -> PublishError {
    let before = ws.store_snapshot();
    let accepted = tracker.accepted().len();
    let error = publish(&options)
        .await
        .expect_err("publish should have failed");
    assert_eq!(ws.store_snapshot(), before, "the store changed: {error}");
    assert_eq!(
        tracker.accepted().len(),
        accepted,
        "the tracker accepted: {error}"
    );
    error
}

#[tokio::test]
async fn a_symlink_out_of_the_folder_is_refused() {
    let tracker = TrackerDouble::start().await;
    let ws = Workspace::new();
    ws.widget();
    let secret = ws.temp.path().join("secret.txt");
    std::fs::write(&secret, "not for publishing").unwrap();
    symlink(&secret, ws.dist.join("leak.txt")).unwrap();
    let error = refused(&ws, &tracker, ws.options(&tracker.url, "w", Some("1.0.0"))).await;
    assert!(
        matches!(error, PublishError::SymlinkEscapes { .. }),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.contains("leak.txt") && message.contains("remove the link"),
        "{message}"
    );
    assert!(tracker.publishes().is_empty());
    tracker.stop().await;
}

#[tokio::test]
async fn unreadable_files_are_refused() {
    let tracker = TrackerDouble::start().await;
    let ws = Workspace::new();
    ws.widget();

    // A FIFO: reading it would block forever. It is refused before anything opens it.
    let fifo = ws.dist.join("pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let options = ws.options(&tracker.url, "w", Some("1.0.0"));
    let error = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        refused(&ws, &tracker, options.clone()),
    )
    .await
    .expect("publish blocked on a FIFO");
    assert!(matches!(error, PublishError::NotAFile { .. }), "{error}");
    assert!(error.to_string().contains("pipe"), "{error}");
    std::fs::remove_file(&fifo).unwrap();

    // A file without read permission. Root reads it anyway (permission bits do not apply),
    // so this part only runs as another user.
    let locked = ws.dist.join("locked.js");
    std::fs::write(&locked, "x").unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::File::open(&locked).is_ok() {
        eprintln!("SKIPPED (running as root, permission bits do not apply): chmod 000 file");
    } else {
        let error = refused(&ws, &tracker, options).await;
        assert!(matches!(error, PublishError::Unreadable { .. }), "{error}");
        assert!(error.to_string().contains("locked.js"), "{error}");
    }
    assert!(tracker.publishes().is_empty());
    tracker.stop().await;
}

#[tokio::test]
async fn a_name_that_is_not_utf8_is_refused() {
    let tracker = TrackerDouble::start().await;
    let ws = Workspace::new();
    ws.widget();
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9.js");
    std::fs::write(ws.dist.join(name), "x").unwrap();
    let error = refused(&ws, &tracker, ws.options(&tracker.url, "w", Some("1.0.0"))).await;
    assert!(matches!(error, PublishError::NonUtf8Name { .. }), "{error}");
    assert!(error.to_string().contains("rename it"), "{error}");
    tracker.stop().await;
}

#[tokio::test]
async fn an_empty_folder_is_refused() {
    let tracker = TrackerDouble::start().await;
    let ws = Workspace::new();
    let error = refused(&ws, &tracker, ws.options(&tracker.url, "w", Some("1.0.0"))).await;
    assert!(matches!(error, PublishError::EmptyFolder { .. }), "{error}");
    assert!(error.to_string().contains("no files"), "{error}");
    tracker.stop().await;
}

#[tokio::test]
async fn a_release_over_the_size_limit_is_refused() {
    let tracker = TrackerDouble::start().await;
    let ws = Workspace::new();
    ws.widget();
    // A sparse file one byte over the 1 GiB default: nothing is read or written.
    let big = std::fs::File::create(ws.dist.join("huge.bin")).unwrap();
    big.set_len(swarmcdn_seeder::config::DEFAULT_MAX_RELEASE_BYTES + 1)
        .unwrap();
    let error = refused(&ws, &tracker, ws.options(&tracker.url, "w", Some("1.0.0"))).await;
    assert!(
        matches!(error, PublishError::FileTooLarge { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("huge.bin"), "{error}");
    tracker.stop().await;
}

#[tokio::test]
async fn a_refused_token_rolls_the_store_back() {
    let tracker = TrackerDouble::start().await;
    let ws = Workspace::new();
    ws.widget();
    let mut options = ws.options(&tracker.url, "w", Some("1.0.0"));
    options.token = "wrong-token".into();
    let error = refused(&ws, &tracker, options).await;
    assert!(
        matches!(
            error,
            PublishError::Tracker(TrackerError::Unauthorized { .. })
        ),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains("SWARMCDN_TOKEN"), "{message}");
    assert!(message.contains("Nothing was published"), "{message}");
    // The tracker was asked (and said no): the store was written, then rolled back.
    assert_eq!(tracker.publishes().len(), 1);
    assert_eq!(
        tracker.publishes()[0].authorization.as_deref(),
        Some("Bearer wrong-token")
    );
    tracker.stop().await;
}

#[tokio::test]
async fn a_tracker_that_is_down_is_reported() {
    let tracker = TrackerDouble::start().await;
    let ws = Workspace::new();
    ws.widget();
    let dead = dead_url().await;
    for version in [Some("1.0.0"), None] {
        let error = refused(&ws, &tracker, ws.options(&dead, "w", version)).await;
        assert!(
            matches!(
                error,
                PublishError::Tracker(TrackerError::Unreachable { .. })
            ),
            "{error}"
        );
        assert!(error.to_string().contains("Is it running"), "{error}");
    }

    // The command line says so too, and exits non-zero.
    let (ok, _, stderr) = run_bin(ws.publish_args(&dead, "w")).await;
    assert!(!ok);
    assert!(stderr.contains("cannot reach the tracker"), "{stderr}");
    assert!(ws.store_snapshot().is_empty());
    tracker.stop().await;
}

#[tokio::test]
async fn a_version_that_exists_is_refused() {
    let tracker = TrackerDouble::start().await;
    let ws = Workspace::new();
    ws.write("a.js", b"first");
    ws.publish(&tracker.url, "w", Some("1.0.0")).await;

    // Found before anything is copied.
    ws.write("a.js", b"second");
    let error = refused(&ws, &tracker, ws.options(&tracker.url, "w", Some("1.0.0"))).await;
    assert!(
        matches!(error, PublishError::VersionExists { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("--version"), "{error}");

    // Refused by the tracker itself (409): rolled back.
    tracker.set_mode(Mode::Refuse(409));
    let error = refused(&ws, &tracker, ws.options(&tracker.url, "w", Some("1.0.1"))).await;
    assert!(
        matches!(error, PublishError::Tracker(TrackerError::Conflict { .. })),
        "{error}"
    );
    tracker.stop().await;
}

#[tokio::test]
async fn other_tracker_refusals_roll_back_too() {
    let tracker = TrackerDouble::start().await;
    let ws = Workspace::new();
    ws.widget();
    for (status, check) in [
        (
            403,
            (|e: &TrackerError| matches!(e, TrackerError::Forbidden { .. }))
                as fn(&TrackerError) -> bool,
        ),
        (422, |e| {
            matches!(e, TrackerError::Rejected { status: 422, .. })
        }),
        (413, |e| matches!(e, TrackerError::TooLarge { .. })),
        (500, |e| {
            matches!(e, TrackerError::Unexpected { status: 500, .. })
        }),
    ] {
        tracker.set_mode(Mode::Refuse(status));
        let error = refused(&ws, &tracker, ws.options(&tracker.url, "w", Some("1.0.0"))).await;
        match &error {
            PublishError::Tracker(inner) => assert!(check(inner), "{status}: {error}"),
            other => panic!("{status}: {other}"),
        }
    }
    tracker.stop().await;
}

#[tokio::test]
async fn a_key_with_open_permissions_is_refused() {
    let tracker = TrackerDouble::start().await;
    let ws = Workspace::new();
    ws.widget();
    std::fs::set_permissions(&ws.key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let error = refused(&ws, &tracker, ws.options(&tracker.url, "w", Some("1.0.0"))).await;
    assert!(matches!(error, PublishError::Key(_)), "{error}");
    assert!(error.to_string().contains("chmod 600"), "{error}");
    assert!(tracker.publishes().is_empty());
    tracker.stop().await;
}
