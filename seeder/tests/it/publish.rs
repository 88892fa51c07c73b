//! `publish`, the happy path: what lands in the store, in the torrent, in the manifest and at
//! the tracker; version bumps; real tools accept the torrent.

use swarmcdn_proto::RelativePath;
use swarmcdn_proto::manifest::{SignedManifest, Version, content_type_for_path, sri_sha384};
use swarmcdn_proto::metainfo::Metainfo;
use swarmcdn_seeder::store::Store;

use crate::support::{TOKEN, TrackerDouble, Workspace, run_bin};

#[tokio::test]
async fn publish_stores_signs_and_registers_the_release() {
    let tracker = TrackerDouble::start().await;
    let ws = Workspace::new();
    let files = ws.widget();
    let published = ws
        .publish(&tracker.url, "share-button", Some("1.4.0"))
        .await;
    let ih = published.info_hash;
    let hex = ih.to_hex();

    // The store: content under <ih>/<name>-<version>/, then the torrent and the manifest.
    let content = ws.store.join(&hex).join("share-button-1.4.0");
    for (path, bytes) in &files {
        assert_eq!(&std::fs::read(content.join(path)).unwrap(), bytes, "{path}");
    }
    let torrent_bytes = std::fs::read(ws.store.join(format!("{hex}.torrent"))).unwrap();
    let manifest_bytes = std::fs::read(ws.store.join(format!("{hex}.manifest.json"))).unwrap();
    let top: Vec<String> = std::fs::read_dir(&ws.store)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(top.len(), 3, "{top:?}");

    // The torrent: its info-hash is the manifest's, announce and url-list are set.
    let torrent = Metainfo::from_bytes(&torrent_bytes).unwrap();
    assert_eq!(torrent.info_hash(), ih);
    assert_eq!(torrent.info().name(), "share-button-1.4.0");
    assert_eq!(
        torrent.announce.as_deref(),
        Some(&*format!("{}/announce", tracker.url))
    );
    assert_eq!(
        torrent.url_list,
        [format!("http://127.0.0.1:7070/webseed/{hex}/")]
    );
    let signed = SignedManifest::from_json(&manifest_bytes).unwrap();
    let key = swarmcdn_seeder::keys::load_key(&ws.key).unwrap();
    let manifest = signed.verify_with(&key.verifying_key()).unwrap();
    assert_eq!(manifest.info_hash(), ih);
    assert_eq!(manifest.name().as_str(), "share-button");
    assert_eq!(manifest.version(), &Version::new(1, 4, 0));

    // Every file: size, SHA-256, SRI and content type.
    assert_eq!(manifest.files().len(), files.len());
    for (path, bytes) in &files {
        let entry = manifest.file(&RelativePath::parse(path).unwrap()).unwrap();
        assert_eq!(entry.size(), bytes.len() as u64);
        assert_eq!(entry.sri(), sri_sha384(bytes), "{path}");
        assert!(entry.verify_file(bytes).is_ok());
        assert_eq!(entry.content_type(), content_type_for_path(path));
    }
    assert_eq!(
        manifest
            .file(&RelativePath::parse("button.js").unwrap())
            .unwrap()
            .content_type(),
        "text/javascript; charset=utf-8"
    );

    // The tracker got the torrent and the manifest, with the bearer token.
    let calls = tracker.accepted();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].authorization.as_deref(),
        Some(&*format!("Bearer {TOKEN}"))
    );
    let sent_torrent = data_encoding::BASE64
        .decode(calls[0].body["metainfo"].as_str().unwrap().as_bytes())
        .unwrap();
    assert_eq!(sent_torrent, torrent_bytes);
    let sent_manifest =
        SignedManifest::from_json(&serde_json::to_vec(&calls[0].body["manifest"]).unwrap())
            .unwrap();
    assert_eq!(&sent_manifest, &signed);

    // What publish reports.
    assert_eq!(
        published.manifest_url,
        format!("{}/api/v1/assets/share-button/1.4.0", tracker.url)
    );
    assert_eq!(
        published.torrent_url,
        format!("{}/api/v1/torrents/{hex}", tracker.url)
    );
    assert!(
        published
            .magnet
            .starts_with(&format!("magnet:?xt=urn:btih:{hex}"))
    );

    // The store lists it.
    let listed = Store::open(&ws.store).unwrap().list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].info_hash, ih);
    tracker.stop().await;
}

#[tokio::test]
async fn without_a_version_publish_bumps_the_latest_patch() {
    let tracker = TrackerDouble::start().await;
    let ws = Workspace::new();
    ws.write("a.js", b"one");
    let first = ws.publish(&tracker.url, "counter", None).await;
    assert_eq!(first.version, Version::new(1, 0, 0));

    ws.write("a.js", b"two");
    ws.publish(&tracker.url, "counter", Some("1.4.2")).await;
    ws.write("a.js", b"three");
    let bumped = ws.publish(&tracker.url, "counter", None).await;
    assert_eq!(bumped.version, Version::new(1, 4, 3));
    assert_eq!(
        tracker.versions("counter"),
        [
            Version::new(1, 0, 0),
            Version::new(1, 4, 2),
            Version::new(1, 4, 3)
        ]
    );
    assert_eq!(Store::open(&ws.store).unwrap().list().unwrap().len(), 3);
    tracker.stop().await;
}

#[tokio::test]
async fn the_same_files_under_two_versions_are_two_torrents() {
    let tracker = TrackerDouble::start().await;
    let ws = Workspace::new();
    ws.write("a.js", b"same");
    let one = ws.publish(&tracker.url, "same", Some("1.0.0")).await;
    let two = ws.publish(&tracker.url, "same", Some("1.0.1")).await;
    assert_ne!(one.info_hash, two.info_hash);
    tracker.stop().await;
}

#[tokio::test]
async fn transmission_show_accepts_the_published_torrent() {
    if std::process::Command::new("transmission-show")
        .arg("--version")
        .output()
        .is_err()
    {
        if std::env::var_os("CI").is_some() {
            panic!("transmission-show is missing: install the Debian package transmission-cli");
        }
        eprintln!("SKIPPED: transmission-show is not installed (package transmission-cli)");
        return;
    }
    let tracker = TrackerDouble::start().await;
    let ws = Workspace::new();
    let published = ws.publish_widget(&tracker.url, "2.0.0").await;
    let torrent = ws.store.join(format!("{}.torrent", published.info_hash));
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("transmission-show")
            .arg(&torrent)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains(&published.info_hash.to_hex()), "{stdout}");
    assert!(stdout.contains("share-button-2.0.0"), "{stdout}");
    assert!(stdout.contains("button.js"), "{stdout}");
    tracker.stop().await;
}

#[tokio::test]
async fn the_command_prints_what_a_publisher_needs() {
    let tracker = TrackerDouble::start().await;
    let ws = Workspace::new();
    let files = ws.widget();
    let mut args = ws.publish_args(&tracker.url, "share-button");
    args.extend(
        [
            "--version",
            "3.1.4",
            "--webseed-url",
            "https://origin.example",
        ]
        .map(String::from),
    );
    let (ok, stdout, stderr) = run_bin(args).await;
    assert!(ok, "{stderr}");
    let release = Store::open(&ws.store).unwrap().list().unwrap().remove(0);
    let hex = release.info_hash.to_hex();
    assert!(stdout.contains(&format!("info-hash  {hex}")), "{stdout}");
    assert!(stdout.contains("magnet:?xt=urn:btih:"), "{stdout}");
    assert!(
        stdout.contains(&format!("{}/api/v1/assets/share-button/3.1.4", tracker.url)),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("https://origin.example/webseed/{hex}/")),
        "{stdout}"
    );
    for (path, bytes) in &files {
        assert!(
            stdout.contains(&format!("{path}  {} bytes", bytes.len())),
            "{stdout}"
        );
        assert!(stdout.contains(&sri_sha384(bytes)), "{stdout}");
    }
    tracker.stop().await;
}
