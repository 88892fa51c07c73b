//! A `get` through a tracker's release lookup: the lookup's peers are dialled while the
//! manifest's signature is checked (and dropped if it fails), and the session's first
//! announce waits until it has a piece to offer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::RawQuery;
use axum::routing::get;
use swarmcdn_client::GetError;
use swarmcdn_proto::manifest::signing_key_from_seed;
use swarmcdn_proto::peer::Handshake;
use swarmcdn_proto::tracker::{AnnounceEvent, AnnounceRequest, AnnounceResponse, AnnounceSuccess};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use crate::common::*;

/// What the tracker double saw of one announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    port: u16,
    event: AnnounceEvent,
    left: u64,
}

/// A tracker double: answers lookups for `release` with `peers`, and records announces
/// (once handled; a `completed` takes `slow_completed` to handle).
async fn lookup_tracker(
    release: &TestRelease,
    peers: Vec<std::net::SocketAddrV4>,
    slow_completed: Duration,
) -> (
    String,
    Arc<Mutex<Vec<Seen>>>,
    tokio_util::sync::CancellationToken,
) {
    let mut lookup = Vec::new();
    swarmcdn_proto::tracker::write_lookup(
        &mut lookup,
        release.manifest.to_json().as_bytes(),
        &release.torrent,
        peers,
        [],
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = Arc::clone(&seen);
    let app = Router::new()
        .route("/api/v1/lookup/{name}", get(move || async move { lookup }))
        .route(
            "/announce",
            get(move |RawQuery(query): RawQuery| async move {
                let request = AnnounceRequest::from_query(&query.unwrap_or_default()).unwrap();
                if request.event == AnnounceEvent::Completed {
                    tokio::time::sleep(slow_completed).await;
                }
                recorder.lock().unwrap().push(Seen {
                    port: request.port,
                    event: request.event,
                    left: request.left,
                });
                let mut body = Vec::new();
                AnnounceResponse::Success(AnnounceSuccess {
                    interval: 300,
                    ..AnnounceSuccess::default()
                })
                .encode_compact(&mut body);
                body
            }),
        );
    let (addr, stop, _task) = serve_loopback(app).await;
    (format!("http://{addr}"), seen, stop)
}

/// A one-piece release of `name` seeded by a client, and a [`lookup_tracker`] handing out
/// that seeder (`slow_completed` as there).
struct SeededLookup {
    release: TestRelease,
    seeder: swarmcdn_client::Client,
    _dir: tempfile::TempDir,
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: tokio_util::sync::CancellationToken,
}

impl SeededLookup {
    async fn start(name: &str, slow_completed: Duration) -> SeededLookup {
        // One piece: the first piece in is the whole release.
        let release = release_of_size(name, 20_000, 32 * 1024, None, Vec::new());
        let (seeder, _dir) = start_seeder(&release, test_client()).await;
        let std::net::SocketAddr::V4(seeder_addr) = seeder.local_peer_addr() else {
            unreachable!("bound to 127.0.0.1");
        };
        let (url, seen, stop) = lookup_tracker(&release, vec![seeder_addr], slow_completed).await;
        SeededLookup {
            release,
            seeder,
            _dir,
            url,
            seen,
            stop,
        }
    }

    /// The announces the tracker double handled from the client listening on `port`.
    fn announces_from(&self, port: u16) -> Vec<Seen> {
        let all = self.seen.lock().unwrap();
        all.iter().filter(|s| s.port == port).copied().collect()
    }

    async fn stop(self) {
        shutdown_clean(self.seeder).await;
        self.stop.cancel();
    }
}

#[tokio::test]
async fn a_lookups_peers_are_dialled_during_the_signature_check_and_dropped_when_it_fails() {
    let release = TestRelease::build(
        "stranger-widget",
        "1.0.0",
        vec![("x.js", random_bytes(3, 20_000))],
        16 * 1024,
        None,
        Vec::new(),
        &signing_key_from_seed(STRANGER_SEED),
    );
    // The lookup's one peer: a bare listener that records what reaches it.
    let peer = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let std::net::SocketAddr::V4(peer_addr) = peer.local_addr().unwrap() else {
        unreachable!("bound to 127.0.0.1");
    };
    let (url, _, stop) = lookup_tracker(&release, vec![peer_addr], Duration::ZERO).await;
    let client = test_client().tracker(url).build().await.unwrap();

    let refused = client.get("stranger-widget").await;
    assert!(
        matches!(refused, Err(GetError::UntrustedKey { .. })),
        "{refused:?}"
    );
    // The dial had started (the connection is in the listener's queue) ...
    let (mut stream, _) = tokio::time::timeout(Duration::from_secs(5), peer.accept())
        .await
        .expect("the lookup's peer was not dialled")
        .unwrap();
    // ... and was closed with the refusal. Our handshake may have gone with the connect
    // (on loopback it does: see `peer::handshake::open`), naming the info-hash the tracker
    // gave out, but nothing after it: no message of a session.
    let mut received = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut received))
        .await
        .expect("the dial was not closed")
        .unwrap();
    if !received.is_empty() {
        let (handshake, used) = Handshake::decode(&received)
            .expect("not a handshake")
            .expect("a partial handshake");
        assert_eq!(handshake.info_hash, release.info_hash());
        assert_eq!(used, received.len(), "bytes sent after the handshake");
    }
    assert!(client.torrent(release.info_hash()).await.is_none());

    shutdown_clean(client).await;
    stop.cancel();
}

#[tokio::test]
async fn a_session_from_a_lookup_announces_once_it_has_a_piece() {
    let fx = SeededLookup::start("one-piece", Duration::ZERO).await;
    // The wait for a piece is bounded; here by more than any download can take.
    let mut config = test_client().current_config().clone();
    config.lookup_announce_wait = WAIT;
    let client = test_client()
        .config(config)
        .tracker(fx.url.clone())
        .build()
        .await
        .unwrap();
    let port = client.local_peer_addr().port();

    let got = get_within(&client, "one-piece").await;
    assert_eq!(got.progress().bytes_from_peers, fx.release.size());
    let ours = || fx.announces_from(port);
    tokio::time::timeout(WAIT, async {
        while ours().len() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the client did not announce twice");
    // `started` once the piece was in (nothing left), then `completed`: never an announce
    // for a download the lookup had already found peers for.
    assert_eq!(
        ours()[..2],
        [
            Seen {
                port,
                event: AnnounceEvent::Started,
                left: 0
            },
            Seen {
                port,
                event: AnnounceEvent::Completed,
                left: 0
            },
        ]
    );

    drop(got);
    shutdown_clean(client).await;
    fx.stop().await;
}

/// The session stops while its `completed` announce is at the tracker: `stopped` goes out
/// only once that one is answered, so the tracker does not list the client again after it
/// said goodbye.
#[tokio::test]
async fn stopped_is_the_last_announce_even_with_one_under_way() {
    let slow = Duration::from_millis(300);
    let fx = SeededLookup::start("slow-tracker", slow).await;
    let client = test_client().tracker(fx.url.clone()).build().await.unwrap();
    let port = client.local_peer_addr().port();
    let got = get_within(&client, "slow-tracker").await;
    let ours =
        || -> Vec<AnnounceEvent> { fx.announces_from(port).iter().map(|s| s.event).collect() };
    // `started` is handled; `completed` follows at once and takes `slow` to handle.
    wait_until("the started announce", || !ours().is_empty()).await;
    drop(got);
    shutdown_clean(client).await;
    assert_eq!(
        ours(),
        [
            AnnounceEvent::Started,
            AnnounceEvent::Completed,
            AnnounceEvent::Stopped
        ]
    );
    fx.stop().await;
}
