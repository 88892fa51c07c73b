//! A site that starts while the tracker and the web seed are both down, knowing only a
//! peer's address (`bootstrap_peers`), still gets the release: the manifest from the peer
//! over `swarmcdn_manifest` (checked against its own trusted keys), the torrent over BEP 9,
//! the pieces from the peer. A peer offering a manifest we do not trust gets nothing past
//! the signature check.

use std::net::SocketAddr;

use bytes::BytesMut;
use swarmcdn_client::{Client, ClientBuilder, GetError, Release, RemoveOptions};
use swarmcdn_proto::PeerId;
use swarmcdn_proto::manifest::{SignedManifest, signing_key_from_seed};
use swarmcdn_proto::peer::{
    ExtendedHandshake, Handshake, ManifestMessage, Message, Reserved, SWARMCDN_MANIFEST,
    WireLimits, directory_info_hash,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::common::*;

/// A two-file release published on `tracker`, served by `web`, signed with `key`.
fn site_release(
    tracker: &TestTracker,
    web: &TestWebSeed,
    seed: u64,
    key_seed: [u8; 32],
) -> TestRelease {
    TestRelease::build(
        "outage-site",
        "1.0.0",
        vec![
            ("index.html", random_bytes(seed, 20_000)),
            ("app.js", random_bytes(seed + 1, 90_000)),
        ],
        16 * 1024,
        Some(tracker.announce_url()),
        vec![web.url()],
        &signing_key_from_seed(key_seed),
    )
}

/// A new site's client: `tracker_url` (down) and `peers` as its bootstrap peers.
fn new_site(tracker_url: &str, peers: &[SocketAddr]) -> ClientBuilder {
    peers
        .iter()
        .fold(test_client().tracker(tracker_url), |b, &peer| {
            b.bootstrap_peer(peer)
        })
}

/// `client.get("outage-site")`, failing the test if it hangs.
async fn get_site(client: &Client) -> Result<Release, GetError> {
    tokio::time::timeout(WAIT, client.get("outage-site"))
        .await
        .expect("get did not finish")
}

/// `client` gets `release` by name, every file right.
async fn assert_gets(client: &Client, release: &TestRelease) -> Release {
    let got = get_site(client).await.unwrap();
    release.assert_served_by(&got).await;
    got
}

/// Site A gets the release (content from `seed`) the normal way; then the outage: the tracker
/// and the web seed are stopped. Returns A, the release and the dead tracker's URL.
async fn site_a_then_outage(seed: u64) -> (Client, TestRelease, String) {
    let mut tracker = TestTracker::start(300).await;
    let web = TestWebSeed::start().await;
    let release = site_release(&tracker, &web, seed, PUBLISHER_SEED);
    tracker.publish(&release).await;
    web.serve(&release);
    let a = test_client().tracker(tracker.url()).build().await.unwrap();
    assert_gets(&a, &release).await;
    let tracker_url = tracker.url();
    tracker.kill().await;
    web.stop().await;
    (a, release, tracker_url)
}

/// GETs `path` from `client.router()` served on 127.0.0.1:0, then stops the server.
async fn fetch_through_router(client: &Client, path: &str) -> (u16, Vec<u8>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let shutdown = stop.clone();
    let app = client.router();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .unwrap();
    });
    let response = reqwest::get(format!("http://{addr}/{path}")).await.unwrap();
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap().to_vec();
    stop.cancel();
    tokio::time::timeout(WAIT, server).await.unwrap().unwrap();
    assert_port_free(addr);
    (status, body)
}

#[tokio::test]
async fn a_new_site_gets_the_release_from_a_bootstrap_peer_while_tracker_and_web_seed_are_down() {
    let (a, release, tracker_url) = site_a_then_outage(40).await;

    // A new site B, nothing cached, knows A's address.
    let cache = tempfile::tempdir().unwrap();
    let b = new_site(&tracker_url, &[a.local_peer_addr()])
        .cache_dir(cache.path())
        .memory_threshold(0)
        .build()
        .await
        .unwrap();
    let got = assert_gets(&b, &release).await;
    assert_eq!(got.signed_manifest(), &release.manifest);
    let progress = b.torrent(release.info_hash()).await.unwrap().progress();
    assert!(progress.complete, "{progress}");
    assert_eq!(progress.bytes_from_peers, release.size(), "{progress}");
    assert_eq!(progress.bytes_from_http, 0, "{progress}");

    // B serves it to its site...
    let (status, body) = fetch_through_router(&b, "outage-site/app.js").await;
    assert_eq!(status, 200);
    assert!(body == release.files[1].1, "app.js differs");
    // ...and, having cached the manifest, hands it on: a third site that only knows B
    // gets it from B alone.
    let c = new_site(&tracker_url, &[b.local_peer_addr()])
        .build()
        .await
        .unwrap();
    assert_gets(&c, &release).await;

    shutdown_clean(c).await;
    shutdown_clean(b).await;
    shutdown_clean(a).await;

    // B's manifest and files survived on disk: restarted with no tracker and no peer, it
    // hands the manifest on from the start (before any `get` of its own) and still serves.
    let b = test_client()
        .cache_dir(cache.path())
        .memory_threshold(0)
        .build()
        .await
        .unwrap();
    let d = new_site(&tracker_url, &[b.local_peer_addr()])
        .build()
        .await
        .unwrap();
    assert_gets(&d, &release).await;
    assert_gets(&b, &release).await;
    shutdown_clean(d).await;
    shutdown_clean(b).await;
}

#[tokio::test]
async fn a_bootstrap_peer_offering_an_untrusted_manifest_is_refused_and_nothing_is_cached() {
    // A hostile site H trusts a stranger's key and holds the stranger's "outage-site".
    let mut tracker = TestTracker::start(300).await;
    let web = TestWebSeed::start().await;
    let forged = site_release(&tracker, &web, 50, STRANGER_SEED);
    tracker
        .publish_with(&forged, &tracker.stranger_token.clone())
        .await;
    web.serve(&forged);
    let hostile = test_client()
        .trust(signing_key_from_seed(STRANGER_SEED).verifying_key())
        .tracker(tracker.url())
        .build()
        .await
        .unwrap();
    get_site(&hostile).await.unwrap();
    let tracker_url = tracker.url();
    tracker.kill().await;
    let web_requests = web.requests();

    // A new site trusting only the publisher asks H during the outage.
    let cache = tempfile::tempdir().unwrap();
    let b = new_site(&tracker_url, &[hostile.local_peer_addr()])
        .cache_dir(cache.path())
        .build()
        .await
        .unwrap();
    match get_site(&b).await {
        Err(GetError::UntrustedKey { name, key }) => {
            assert_eq!(name.as_str(), "outage-site");
            assert_eq!(key.len(), 64);
        }
        other => panic!("expected UntrustedKey, got {other:?}"),
    }
    assert!(b.torrent(forged.info_hash()).await.is_none());
    assert_eq!(web.requests(), web_requests, "nothing was downloaded");
    let manifests = cache.path().join("manifests");
    assert_eq!(
        std::fs::read_dir(&manifests).unwrap().count(),
        0,
        "nothing cached"
    );

    shutdown_clean(b).await;
    shutdown_clean(hostile).await;
    web.stop().await;
}

#[tokio::test]
async fn without_bootstrap_peers_or_a_cache_the_tracker_error_remains_and_dead_peers_are_named() {
    let dead = dead_url();
    // No bootstrap peer: the error of before.
    let lone = test_client().tracker(dead.clone()).build().await.unwrap();
    match lone.get("outage-site").await {
        Err(GetError::TrackerUnreachable { name, .. }) => assert_eq!(name.as_str(), "outage-site"),
        other => panic!("expected TrackerUnreachable, got {other:?}"),
    }
    shutdown_clean(lone).await;

    // A bootstrap peer that is not there, and one that has nothing for the name.
    let empty = test_client().build().await.unwrap();
    let gone: SocketAddr = dead.trim_start_matches("http://").parse().unwrap();
    let asking = new_site(&dead, &[gone, empty.local_peer_addr()])
        .build()
        .await
        .unwrap();
    match get_site(&asking).await {
        Err(GetError::NoManifestSource {
            name,
            peers,
            tracker,
        }) => {
            assert_eq!(name.as_str(), "outage-site");
            assert!(peers.contains(&gone.to_string()), "{peers}");
            assert!(
                peers.contains(&empty.local_peer_addr().to_string()),
                "{peers}"
            );
            assert!(tracker.is_some());
        }
        other => panic!("expected NoManifestSource, got {other:?}"),
    }
    shutdown_clean(asking).await;
    shutdown_clean(empty).await;
}

/// A directory peer written with the wire codec alone: to every connection it answers the
/// handshake (whatever id is asked), speaks `swarmcdn_manifest` and answers the first
/// request with `reply`, a raw payload.
struct FakeDirectoryPeer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

/// The id the fake peer asks `swarmcdn_manifest` messages to be sent under.
const FAKE_MANIFEST_ID: u8 = 5;

impl FakeDirectoryPeer {
    async fn start(reply: Vec<u8>) -> FakeDirectoryPeer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            // Dropped (aborting every connection) when the task is aborted.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let reply = reply.clone();
                connections.spawn(async move {
                    let _ = answer(stream, &reply).await;
                });
            }
        });
        FakeDirectoryPeer { addr, task }
    }

    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
        assert_port_free(self.addr);
    }
}

async fn answer(mut stream: TcpStream, reply: &[u8]) -> std::io::Result<()> {
    let mut buf = BytesMut::new();
    let theirs = loop {
        if let Ok(Some((theirs, used))) = Handshake::decode(&buf) {
            let _ = buf.split_to(used);
            break theirs;
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    };
    let mut out = Vec::new();
    Handshake {
        reserved: Reserved::NONE.with_extension_protocol(),
        info_hash: theirs.info_hash,
        peer_id: PeerId::new([0xfd; 20]),
    }
    .encode(&mut out);
    let mut handshake = ExtendedHandshake::default();
    handshake
        .m
        .insert(SWARMCDN_MANIFEST.to_owned(), FAKE_MANIFEST_ID);
    handshake.to_message().encode(&mut out);
    stream.write_all(&out).await?;
    let limits = WireLimits::default();
    let mut their_id = None;
    loop {
        while let Ok(Some((message, used))) = Message::decode(&buf, &limits) {
            let _ = buf.split_to(used);
            let Message::Extended { id, payload } = message else {
                continue;
            };
            if id == 0 {
                their_id = ExtendedHandshake::decode(&payload)
                    .ok()
                    .and_then(|hs| hs.extension_id(SWARMCDN_MANIFEST));
            } else if let (FAKE_MANIFEST_ID, Some(their_id)) = (id, their_id) {
                let answer = Message::Extended {
                    id: their_id,
                    payload: reply.to_vec().into(),
                };
                stream.write_all(&answer.to_bytes()).await?;
            }
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
}

/// `signed` with its info-hash changed after signing.
fn tampered(signed: &SignedManifest) -> Vec<u8> {
    let mut json: serde_json::Value = serde_json::from_str(&signed.to_json()).unwrap();
    json["manifest"]["info_hash"] = "00".repeat(20).into();
    let forged = SignedManifest::from_json(json.to_string().as_bytes()).unwrap();
    let mut payload = Vec::new();
    ManifestMessage::Manifest(Box::new(forged)).encode(&mut payload);
    payload
}

#[tokio::test]
async fn a_tampered_or_garbled_manifest_from_a_peer_is_refused_and_a_good_peer_still_serves() {
    let (a, release, tracker_url) = site_a_then_outage(60).await;

    let liar = FakeDirectoryPeer::start(tampered(&release.manifest)).await;
    let garbler = FakeDirectoryPeer::start(b"d8:msg_typei1e8:manifest4:junke".to_vec()).await;

    // Only the liar: its manifest fails the signature check; nothing is fetched or cached.
    let cache = tempfile::tempdir().unwrap();
    let b = new_site(&tracker_url, &[liar.addr])
        .cache_dir(cache.path())
        .build()
        .await
        .unwrap();
    match get_site(&b).await {
        Err(GetError::BadSignature { name, .. }) => assert_eq!(name.as_str(), "outage-site"),
        other => panic!("expected BadSignature, got {other:?}"),
    }
    assert!(b.torrent(release.info_hash()).await.is_none());
    let manifests = std::fs::read_dir(cache.path().join("manifests")).unwrap();
    assert_eq!(manifests.count(), 0, "nothing cached");
    shutdown_clean(b).await;

    // Only the garbler: a malformed answer is no manifest at all.
    let b = new_site(&tracker_url, &[garbler.addr])
        .build()
        .await
        .unwrap();
    match get_site(&b).await {
        Err(GetError::NoManifestSource { peers, .. }) => {
            assert!(peers.contains("bad answer"), "{peers}");
        }
        other => panic!("expected NoManifestSource, got {other:?}"),
    }
    shutdown_clean(b).await;

    // The liar, the garbler and the genuine site: the genuine manifest wins.
    let b = new_site(
        &tracker_url,
        &[liar.addr, garbler.addr, a.local_peer_addr()],
    )
    .build()
    .await
    .unwrap();
    assert_gets(&b, &release).await;
    shutdown_clean(b).await;

    liar.stop().await;
    garbler.stop().await;
    shutdown_clean(a).await;
}

/// A peer offering a genuine, trusted manifest of a newer version that it cannot serve (no
/// peer has its torrent) does not spoil the outage fetch: the older version an honest peer
/// offers is got instead.
#[tokio::test]
async fn a_newer_manifest_no_peer_can_serve_falls_back_to_the_older_one_offered() {
    let (a, release, tracker_url) = site_a_then_outage(70).await;
    let newer = TestRelease::build(
        "outage-site",
        "2.0.0",
        vec![("index.html", random_bytes(71, 5_000))],
        16 * 1024,
        None,
        Vec::new(),
        &publisher_key(),
    );
    let mut offer = Vec::new();
    ManifestMessage::Manifest(Box::new(newer.manifest.clone())).encode(&mut offer);
    let withholder = FakeDirectoryPeer::start(offer).await;

    let builder = new_site(&tracker_url, &[withholder.addr, a.local_peer_addr()]);
    // The newer version's metainfo is looked for this long before the older one is tried.
    let mut config = builder.current_config().clone();
    config.metadata_timeout = std::time::Duration::from_secs(5);
    let b = builder.config(config).build().await.unwrap();
    let got = assert_gets(&b, &release).await;
    assert_eq!(got.version().to_string(), "1.0.0");
    drop(got);
    shutdown_clean(b).await;
    withholder.stop().await;
    shutdown_clean(a).await;
}

/// A client offers peers the manifests of releases it still seeds only: once it removed the
/// release, a new site hears "no such manifest" rather than a version no one can serve.
#[tokio::test]
async fn a_removed_release_is_no_longer_offered_to_peers() {
    let (a, release, tracker_url) = site_a_then_outage(80).await;
    assert!(
        a.remove(release.info_hash(), RemoveOptions::default())
            .await
            .unwrap()
    );
    let b = new_site(&tracker_url, &[a.local_peer_addr()])
        .build()
        .await
        .unwrap();
    match get_site(&b).await {
        Err(GetError::NoManifestSource { peers, .. }) => {
            assert!(peers.contains("no such manifest"), "{peers}");
        }
        other => panic!("expected NoManifestSource, got {other:?}"),
    }
    shutdown_clean(b).await;
    shutdown_clean(a).await;
}

/// Reads messages from `stream` until one is an extended message or the peer closes.
async fn next_extended(stream: &mut TcpStream, buf: &mut BytesMut) -> Option<(u8, Vec<u8>)> {
    let limits = WireLimits::default();
    loop {
        while let Ok(Some((message, used))) = Message::decode(buf, &limits) {
            let _ = buf.split_to(used);
            if let Message::Extended { id, payload } = message {
                return Some((id, payload.to_vec()));
            }
        }
        if stream.read_buf(buf).await.ok()? == 0 {
            return None;
        }
    }
}

/// The serving side seen from a raw peer: a handshake for an unknown name is closed
/// unanswered; for a held name the newest manifest, an exact version or a reject, and at most
/// four lookups per connection (`MAX_REQUESTS_PER_CONNECTION`): later requests are rejected.
#[tokio::test]
async fn a_directory_connection_answers_requests_within_its_bound() {
    let (a, release, _) = site_a_then_outage(70).await;

    let handshake = |name: &str| {
        let mut out = Vec::new();
        Handshake {
            reserved: Reserved::NONE.with_extension_protocol(),
            info_hash: directory_info_hash(&name.parse().unwrap()),
            peer_id: PeerId::new([0xee; 20]),
        }
        .encode(&mut out);
        out
    };

    // A name A does not hold: closed without a byte.
    let mut stream = TcpStream::connect(a.local_peer_addr()).await.unwrap();
    stream.write_all(&handshake("unknown-site")).await.unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut rest)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?} {rest:?}");

    // The held name.
    let mut stream = TcpStream::connect(a.local_peer_addr()).await.unwrap();
    stream.write_all(&handshake("outage-site")).await.unwrap();
    let mut buf = BytesMut::new();
    let theirs = loop {
        if let Some((theirs, used)) = Handshake::decode(&buf).unwrap() {
            let _ = buf.split_to(used);
            break theirs;
        }
        assert!(stream.read_buf(&mut buf).await.unwrap() > 0, "closed early");
    };
    assert_eq!(
        theirs.info_hash,
        directory_info_hash(&"outage-site".parse().unwrap())
    );
    assert!(theirs.reserved.supports_extension_protocol());
    let (id, payload) = next_extended(&mut stream, &mut buf).await.unwrap();
    assert_eq!(id, 0);
    let their_id = ExtendedHandshake::decode(&payload)
        .unwrap()
        .extension_id(SWARMCDN_MANIFEST)
        .expect("A speaks swarmcdn_manifest");

    const OURS: u8 = 7;
    let mut ours = ExtendedHandshake::default();
    ours.m.insert(SWARMCDN_MANIFEST.to_owned(), OURS);
    let mut out = ours.to_message().to_bytes();
    let requests = [
        None,
        Some(release.version.clone()),
        Some("9.9.9".parse().unwrap()),
        None,
        None,
        None,
    ];
    for version in &requests {
        let request = ManifestMessage::Request {
            version: version.clone(),
        };
        out.extend_from_slice(&request.to_message(their_id).to_bytes());
    }
    stream.write_all(&out).await.unwrap();

    let mut answers = Vec::new();
    while answers.len() < requests.len() {
        let (id, payload) = tokio::time::timeout(WAIT, next_extended(&mut stream, &mut buf))
            .await
            .unwrap()
            .expect("an answer to every request");
        assert_eq!(id, OURS);
        answers.push(ManifestMessage::decode(&payload).unwrap());
    }
    let genuine = ManifestMessage::Manifest(Box::new(release.manifest.clone()));
    assert_eq!(
        answers,
        vec![
            genuine.clone(),
            genuine.clone(),
            ManifestMessage::Reject,
            genuine,
            ManifestMessage::Reject,
            ManifestMessage::Reject,
        ],
        "four lookups, then rejects"
    );
    drop(stream);

    shutdown_clean(a).await;
}
