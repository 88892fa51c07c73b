//! Updates and outages as a site sees them: a new version is fetched in full before the site
//! switches to it (and the watch says so), a stale, failing or untrusted tracker answer never
//! moves or clears what is served, a site keeps serving through a tracker and web-seed
//! outage, and a new site started during the outage on the same cache folder gets the
//! release from the site already running.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use swarmcdn_client::Release;
use swarmcdn_client::router::{RouterConfig, router_with};
use swarmcdn_proto::manifest::{Version, signing_key_from_seed};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::common::*;
use crate::router::Site;

/// The poll interval of these tests' clients.
const POLL: Duration = Duration::from_millis(30);
const NAME: &str = "updating";

fn build(tracker: &TestTracker, web: &TestWebSeed, version: &str, seed: u64) -> TestRelease {
    TestRelease::build(
        NAME,
        version,
        vec![
            ("widget.js", random_bytes(seed, 40_000)),
            ("css/style.css", random_bytes(seed + 100, 5_000)),
        ],
        16 * 1024,
        Some(tracker.announce_url()),
        vec![web.url()],
        &publisher_key(),
    )
}

/// [`build`], published to `tracker` and served by `web`.
async fn published(
    tracker: &TestTracker,
    web: &TestWebSeed,
    version: &str,
    seed: u64,
) -> TestRelease {
    let release = build(tracker, web, version, seed);
    tracker.publish(&release).await;
    web.serve(&release);
    release
}

/// Checks that `site` serves every file of `release` under its latest route and that the
/// index reports that version.
async fn assert_site_serves(http: &reqwest::Client, site: &Site, release: &TestRelease) {
    for (path, bytes) in &release.files {
        let response = http
            .get(site.url(&format!("{NAME}/{path}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::OK, "{path}");
        let body = response.bytes().await.unwrap();
        assert!(body == bytes[..], "{path} is not {}'s", release.version);
    }
    let response = http.get(site.url(NAME)).send().await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let index: serde_json::Value = response.json().await.unwrap();
    assert_eq!(index["version"], release.version.to_string());
    assert_eq!(index["info_hash"], release.info_hash().to_string());
}

/// Every file under `root/dir` with its size and modification time, sorted.
fn files_under(
    root: &std::path::Path,
    dir: &str,
) -> Vec<(std::path::PathBuf, u64, std::time::SystemTime)> {
    let mut found = Vec::new();
    let mut pending = vec![root.join(dir)];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                let path = entry.path().strip_prefix(root).unwrap().to_owned();
                found.push((path, meta.len(), meta.modified().unwrap()));
            }
        }
    }
    found.sort();
    assert!(!found.is_empty(), "nothing cached under {dir}");
    found
}

fn version_of(rx: &watch::Receiver<Option<Release>>) -> Option<Version> {
    rx.borrow().as_ref().map(|r| r.version().clone())
}

/// A router with a first-request wait long enough never to answer 503 in a test.
fn patient_router(client: &swarmcdn_client::Client) -> Router {
    router_with(
        client.clone(),
        RouterConfig {
            fetch_timeout: WAIT,
            ..RouterConfig::default()
        },
    )
}

#[tokio::test]
async fn a_new_version_is_fetched_in_full_before_the_site_switches_to_it() {
    let tracker = TestTracker::start(300).await;
    let web = TestWebSeed::start().await;
    let v1 = build(&tracker, &web, "1.0.0", 1);
    let v2 = build(&tracker, &web, "1.1.0", 2);
    tracker.publish(&v1).await;
    web.serve(&v1);
    web.serve(&v2);
    let client = test_client()
        .tracker(tracker.url())
        .update_interval(POLL)
        .build()
        .await
        .unwrap();
    let mut updates = client.watch_latest(NAME).unwrap();
    let site = Site::start(patient_router(&client)).await;
    let http = reqwest::Client::new();

    assert_site_serves(&http, &site, &v1).await;
    assert_eq!(version_of(&updates), Some(v1.version.clone()));
    updates.mark_unchanged();

    // v2 is published but the web seed holds it back: the poll starts fetching it, and the
    // site goes on serving v1, whole, meanwhile.
    web.set_mode(SeedMode::Busy);
    let refused_before = web.requests();
    tracker.publish(&v2).await;
    let fetching = wait_torrent(&client, v2.info_hash()).await;
    wait_until("the web seed turned a v2 request away", || {
        web.requests() > refused_before
    })
    .await;
    for _ in 0..3 {
        assert_site_serves(&http, &site, &v1).await;
    }
    assert!(!fetching.progress().complete);
    assert!(
        !updates.has_changed().unwrap(),
        "switched before v2 was complete"
    );
    assert_eq!(
        client.latest(NAME).await.unwrap().version(),
        &v1.version,
        "latest() moved before v2 was complete"
    );

    // Once v2 can arrive, it is verified, then the watch fires and the site serves it.
    web.set_mode(SeedMode::Good);
    let switched = tokio::time::timeout(
        WAIT,
        updates.wait_for(|r| r.as_ref().is_some_and(|r| r.version() == &v2.version)),
    )
    .await
    .expect("no switch to v2")
    .unwrap()
    .clone()
    .unwrap();
    v2.assert_served_by(&switched).await;
    assert!(fetching.progress().complete);
    assert_site_serves(&http, &site, &v2).await;

    site.stop().await;
    shutdown_clean(client).await;
    web.stop().await;
}

// ---------------------------------------------------------------- a tracker that lies

/// What the proxy answers to "latest manifest of a name".
#[derive(Debug, Clone)]
enum Latest {
    /// Forward to the real tracker.
    Pass,
    /// Answer with this manifest JSON.
    Serve(String),
    /// Answer 500.
    Fail,
}

struct ProxyState {
    upstream: String,
    latest: Mutex<Latest>,
    /// Requests for `NAME`'s latest manifest, alone (each poll makes one) or in a lookup.
    latest_asked: AtomicUsize,
    /// Requests for any manifest (latest or pinned, alone or in a lookup), by the path
    /// after `/api/v1/assets/` or `/api/v1/lookup/`.
    manifests_asked: Mutex<HashMap<String, usize>>,
    http: reqwest::Client,
}

/// A front for the real tracker whose latest-manifest answer can be replaced; everything
/// else is forwarded (an unreachable upstream gives 502).
struct TrackerProxy {
    url: String,
    state: Arc<ProxyState>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
    addr: std::net::SocketAddr,
}

impl TrackerProxy {
    async fn start(upstream: String) -> TrackerProxy {
        let state = Arc::new(ProxyState {
            upstream,
            latest: Mutex::new(Latest::Pass),
            latest_asked: AtomicUsize::new(0),
            manifests_asked: Mutex::new(HashMap::new()),
            http: reqwest::Client::new(),
        });
        let app = Router::new().fallback(proxy).with_state(Arc::clone(&state));
        let (addr, stop, task) = serve_loopback(app).await;
        TrackerProxy {
            url: format!("http://{addr}"),
            state,
            stop,
            task: Some(task),
            addr,
        }
    }

    fn answer_latest(&self, latest: Latest) {
        *self.state.latest.lock().unwrap() = latest;
    }

    /// Manifest requests for `path` (`name` or `name/version`) and for any manifest.
    fn manifests_asked(&self, path: &str) -> (usize, usize) {
        let asked = self.state.manifests_asked.lock().unwrap();
        let one = asked.get(path).copied();
        (one.unwrap_or(0), asked.values().sum())
    }

    fn latest_asked(&self) -> usize {
        self.state.latest_asked.load(Ordering::SeqCst)
    }

    /// Waits until the client has polled `polls` more times.
    async fn wait_polls(&self, polls: usize) {
        let target = self.latest_asked() + polls;
        wait_until("update polls", || self.latest_asked() >= target).await;
    }

    async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
        }
        assert_port_free(self.addr);
    }
}

impl Drop for TrackerProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn proxy(State(state): State<Arc<ProxyState>>, request: Request) -> Response {
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    // A manifest request: the manifest alone (update polls) or in a lookup (`get`).
    let path = request.uri().path();
    let manifest_of = path
        .strip_prefix("/api/v1/assets/")
        .map(|what| (what, false))
        .or_else(|| {
            path.strip_prefix("/api/v1/lookup/")
                .map(|what| (what, true))
        });
    if let Some((what, _)) = manifest_of {
        let mut asked = state.manifests_asked.lock().unwrap();
        *asked.entry(what.to_owned()).or_default() += 1;
    }
    if let Some((NAME, lookup)) = manifest_of {
        state.latest_asked.fetch_add(1, Ordering::SeqCst);
        let latest = state.latest.lock().unwrap().clone();
        match latest {
            Latest::Pass => {}
            // A replacement manifest is for polls; a lookup carries the real one.
            Latest::Serve(_) if lookup => {}
            Latest::Serve(json) => return Response::new(Body::from(json)),
            Latest::Fail => {
                let mut response = Response::new(Body::from("down for maintenance"));
                *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                return response;
            }
        }
    }
    let forwarded = state
        .http
        .get(format!("{}{path_and_query}", state.upstream))
        .send()
        .await;
    let Ok(upstream) = forwarded else {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::BAD_GATEWAY;
        return response;
    };
    let status = upstream.status().as_u16();
    let body = upstream.bytes().await.unwrap_or_default();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    response
}

#[tokio::test]
async fn an_older_failing_or_untrusted_tracker_answer_never_moves_or_clears_the_release() {
    let tracker = TestTracker::start(300).await;
    let web = TestWebSeed::start().await;
    let v1 = published(&tracker, &web, "1.0.0", 11).await;
    let v2 = published(&tracker, &web, "2.0.0", 12).await;
    // Signed by a key the client does not trust, with a higher version.
    let forged = TestRelease::build(
        NAME,
        "9.0.0",
        vec![("widget.js", random_bytes(13, 1_000))],
        16 * 1024,
        None,
        vec![web.url()],
        &signing_key_from_seed(STRANGER_SEED),
    );
    let proxy = TrackerProxy::start(tracker.url()).await;
    let client = test_client()
        .tracker(proxy.url.clone())
        .update_interval(POLL)
        .build()
        .await
        .unwrap();
    let site = Site::start(patient_router(&client)).await;
    let http = reqwest::Client::new();
    assert_site_serves(&http, &site, &v2).await;
    let updates = client.watch_latest(NAME).unwrap();

    for (what, answer) in [
        ("an older version", Latest::Serve(v1.manifest.to_json())),
        (
            "an untrusted newer one",
            Latest::Serve(forged.manifest.to_json()),
        ),
        ("garbage", Latest::Serve("{not a manifest".into())),
        ("a server error", Latest::Fail),
    ] {
        proxy.answer_latest(answer);
        proxy.wait_polls(3).await;
        assert_eq!(version_of(&updates), Some(v2.version.clone()), "{what}");
        assert!(!updates.has_changed().unwrap(), "{what}");
        assert_site_serves(&http, &site, &v2).await;
    }
    // Nothing of the forged release, and nothing older, was fetched.
    assert!(client.torrent(forged.info_hash()).await.is_none());
    assert!(client.torrent(v1.info_hash()).await.is_none());

    site.stop().await;
    shutdown_clean(client).await;
    proxy.stop().await;
    web.stop().await;
}

// ---------------------------------------------------------------- outage

#[tokio::test]
async fn through_an_outage_a_site_keeps_serving_and_a_new_site_on_its_cache_folder_gets_the_release()
 {
    let mut tracker = TestTracker::start(300).await;
    let web = TestWebSeed::start().await;
    let v1 = published(&tracker, &web, "1.0.0", 21).await;
    let proxy = TrackerProxy::start(tracker.url()).await;
    let cache = tempfile::tempdir().unwrap();
    // The first site keeps the release on disk, in the shared folder.
    let first = test_client()
        .tracker(proxy.url.clone())
        .cache_dir(cache.path())
        .memory_threshold(0)
        .update_interval(POLL)
        .build()
        .await
        .unwrap();
    let site = Site::start(patient_router(&first)).await;
    let http = reqwest::Client::new();
    assert_site_serves(&http, &site, &v1).await;
    let updates = first.watch_latest(NAME).unwrap();

    // The tracker and the web seed go down (the proxy in front of the tracker stays, so
    // the polls that fail can be counted).
    tracker.kill().await;
    web.stop().await;
    for _ in 0..3 {
        proxy.wait_polls(2).await;
        assert_site_serves(&http, &site, &v1).await;
    }
    assert_eq!(version_of(&updates), Some(v1.version.clone()));
    let owner_files = files_under(cache.path(), &v1.info_hash().to_hex());

    // A new site starts on the same cache folder, knowing no peer: the first site owns the
    // folder's content (the new one leaves those files alone), the new one reads the shared
    // manifests, finds the first site's address there and downloads from it.
    let second = test_client()
        .tracker(proxy.url.clone())
        .cache_dir(cache.path())
        .update_interval(POLL)
        .build()
        .await
        .unwrap();
    assert!(
        second.config().bootstrap_peers.is_empty(),
        "the peers found in the folder are not added to the configuration"
    );
    let second_site = Site::start(patient_router(&second)).await;
    assert_site_serves(&http, &second_site, &v1).await;
    let got = second.latest(NAME).await.unwrap();
    assert_eq!(got.progress().bytes_from_peers, v1.size());
    assert_eq!(got.progress().bytes_from_http, 0);
    assert_eq!(
        files_under(cache.path(), &v1.info_hash().to_hex()),
        owner_files,
        "the first site's copy is where it was, untouched"
    );

    // Now nothing at all answers at the tracker's address either: both keep serving.
    proxy.stop().await;
    for _ in 0..3 {
        assert_site_serves(&http, &site, &v1).await;
        assert_site_serves(&http, &second_site, &v1).await;
    }

    second_site.stop().await;
    shutdown_clean(second).await;
    site.stop().await;
    shutdown_clean(first).await;
    // Both clients let go of the folder: no peer entry left behind.
    let peers = cache.path().join(swarmcdn_client::client::PEERS_DIR);
    assert_eq!(std::fs::read_dir(peers).unwrap().count(), 0);
}

// ---------------------------------------------------------------- the pointer

/// Regression: the latest route used to ask the tracker on every request. Now only the
/// first request for a name does (polling off here), and a pinned route naming the version
/// served is answered from the same release.
#[tokio::test]
async fn latest_routes_ask_the_tracker_once_not_per_request() {
    let tracker = TestTracker::start(300).await;
    let web = TestWebSeed::start().await;
    let v1 = published(&tracker, &web, "1.0.0", 31).await;
    let proxy = TrackerProxy::start(tracker.url()).await;
    let client = test_client()
        .tracker(proxy.url.clone())
        .update_interval(Duration::ZERO)
        .build()
        .await
        .unwrap();
    assert_eq!(client.config().update_interval, None);
    let site = Site::start(patient_router(&client)).await;
    let http = reqwest::Client::new();
    for _ in 0..5 {
        assert_site_serves(&http, &site, &v1).await;
    }
    let pinned = http
        .get(site.url(&format!("{NAME}@1.0.0/widget.js")))
        .send()
        .await
        .unwrap();
    assert_eq!(pinned.status(), reqwest::StatusCode::OK);
    assert_eq!(pinned.bytes().await.unwrap(), v1.files[0].1);
    assert_eq!(proxy.latest_asked(), 1);
    assert_eq!(proxy.manifests_asked(NAME), (1, 1));

    site.stop().await;
    shutdown_clean(client).await;
    proxy.stop().await;
    web.stop().await;
}

/// A name only watched (never requested) is fetched by the next poll, and the watch says so;
/// shutdown ends a watch loop and `latest` answers no more.
#[tokio::test]
async fn watching_a_name_prefetches_it() {
    let mut tracker = TestTracker::start(300).await;
    let web = TestWebSeed::start().await;
    let v1 = published(&tracker, &web, "1.0.0", 41).await;
    let client = test_client()
        .tracker(tracker.url())
        .update_interval(POLL)
        .build()
        .await
        .unwrap();
    let mut updates = client.watch_latest(NAME).unwrap();
    assert!(updates.borrow().is_none());
    let got = tokio::time::timeout(WAIT, updates.wait_for(Option::is_some))
        .await
        .expect("the poll did not fetch the watched name")
        .unwrap()
        .clone()
        .unwrap();
    v1.assert_served_by(&got).await;
    assert_eq!(
        client.latest(NAME).await.unwrap().info_hash(),
        v1.info_hash()
    );
    assert!(matches!(
        client.watch_latest("../bad"),
        Err(swarmcdn_client::GetError::InvalidName(_))
    ));

    // The documented loop: it ends once the client shuts down.
    let mut watch = client.watch_latest(NAME).unwrap();
    let watching = tokio::spawn(async move {
        let mut seen = 0;
        while watch.changed().await.is_ok() {
            seen += 1;
        }
        seen
    });
    let same = client.clone();
    shutdown_clean(client).await;
    tokio::time::timeout(WAIT, watching)
        .await
        .expect("the watch loop did not end at shutdown")
        .unwrap();
    assert!(matches!(
        same.latest(NAME).await,
        Err(swarmcdn_client::GetError::Shutdown)
    ));
    assert!(matches!(
        same.watch_latest(NAME),
        Err(swarmcdn_client::GetError::Shutdown)
    ));
    drop(same);
    tracker.kill().await;
    web.stop().await;
}

/// Names browsers ask for that do not exist are answered (404) but never become polled
/// names: the set of names a client polls grows only with releases it got.
#[tokio::test]
async fn unknown_names_are_not_polled() {
    let tracker = TestTracker::start(300).await;
    let web = TestWebSeed::start().await;
    let v1 = published(&tracker, &web, "1.0.0", 51).await;
    let proxy = TrackerProxy::start(tracker.url()).await;
    let client = test_client()
        .tracker(proxy.url.clone())
        .update_interval(POLL)
        .build()
        .await
        .unwrap();
    let site = Site::start(patient_router(&client)).await;
    let http = reqwest::Client::new();
    assert_site_serves(&http, &site, &v1).await;
    for ghost in ["ghost-1", "ghost-2"] {
        let response = http
            .get(site.url(&format!("{ghost}/app.js")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::NOT_FOUND);
    }
    proxy.wait_polls(3).await;
    // Each ghost was asked for once, by its first request: a lookup and, since a tracker
    // without lookups also answers 404, the manifest alone. Polls never ask again.
    assert_eq!(proxy.manifests_asked("ghost-1").0, 2);
    assert_eq!(proxy.manifests_asked("ghost-2").0, 2);

    site.stop().await;
    shutdown_clean(client).await;
    proxy.stop().await;
    web.stop().await;
}

// ---------------------------------------------------------------- a tracker that never answers

/// Accepts connections and never answers; counts them.
struct BlackHole {
    url: String,
    addr: std::net::SocketAddr,
    accepted: Arc<AtomicUsize>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl BlackHole {
    async fn start() -> BlackHole {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let (count, stopped) = (Arc::clone(&accepted), stop.clone());
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                tokio::select! {
                    () = stopped.cancelled() => break,
                    Ok((socket, _)) = listener.accept() => {
                        held.push(socket);
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        });
        BlackHole {
            url: format!("http://{addr}"),
            addr,
            accepted,
            stop,
            task,
        }
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .unwrap()
            .unwrap();
        assert_port_free(self.addr);
    }
}

/// Regression: a round used to ask about one name after the other, so a tracker that never
/// answers made it last one tracker timeout per name. Now the names are asked about at
/// once: both requests are open together while the first has not timed out.
#[tokio::test]
async fn names_are_polled_concurrently() {
    let hole = BlackHole::start().await;
    let client = test_client()
        .tracker(hole.url.clone())
        .tracker_timeout(Duration::from_secs(600))
        .update_interval(POLL)
        .build()
        .await
        .unwrap();
    let _first = client.watch_latest("first-name").unwrap();
    let _second = client.watch_latest("second-name").unwrap();
    wait_until("both names asked about at once", || {
        hole.accepted.load(Ordering::SeqCst) >= 2
    })
    .await;

    shutdown_clean(client).await;
    hole.stop().await;
}

// ---------------------------------------------------------------- restart

/// Regression: after a restart the pointer was set from whatever the first tracker called
/// latest, so a tracker lagging behind sent a site that had served v2 back to v1. The
/// newest manifest verified before (in the cache folder) is now the floor, for `latest`
/// and for a watched name alike.
#[tokio::test]
async fn a_restarted_site_never_goes_back_to_an_older_version() {
    let tracker = TestTracker::start(300).await;
    let web = TestWebSeed::start().await;
    let v1 = published(&tracker, &web, "1.0.0", 61).await;
    let v2 = published(&tracker, &web, "2.0.0", 62).await;
    let proxy = TrackerProxy::start(tracker.url()).await;
    let cache = tempfile::tempdir().unwrap();
    let start = || {
        test_client()
            .tracker(proxy.url.clone())
            .cache_dir(cache.path())
            .update_interval(POLL)
            .build()
    };
    let before = start().await.unwrap();
    assert_eq!(before.latest(NAME).await.unwrap().version(), &v2.version);
    shutdown_clean(before).await;

    // From now on the tracker calls v1 the latest.
    proxy.answer_latest(Latest::Serve(v1.manifest.to_json()));
    let after = start().await.unwrap();
    let served = after.latest(NAME).await.unwrap();
    assert_eq!(served.version(), &v2.version);
    v2.assert_served_by(&served).await;
    let updates = after.watch_latest(NAME).unwrap();
    proxy.wait_polls(3).await;
    assert_eq!(version_of(&updates), Some(v2.version.clone()));
    assert!(
        after.torrent(v1.info_hash()).await.is_none(),
        "v1 was fetched"
    );
    drop(served);
    shutdown_clean(after).await;

    // A name only watched after a restart starts from the same floor.
    let watching = start().await.unwrap();
    let mut updates = watching.watch_latest(NAME).unwrap();
    let got = tokio::time::timeout(WAIT, updates.wait_for(Option::is_some))
        .await
        .expect("the poll did not fetch the watched name")
        .unwrap()
        .clone()
        .unwrap();
    assert_eq!(got.version(), &v2.version);
    assert!(
        watching.torrent(v1.info_hash()).await.is_none(),
        "v1 was fetched"
    );
    drop((got, updates));
    shutdown_clean(watching).await;

    proxy.stop().await;
    web.stop().await;
}

// ---------------------------------------------------------------- a site that left

/// Regression: the clients found on a shared cache folder at start-up were added to the
/// configured bootstrap peers for good, so a site that had left was still dialled (its
/// port may belong to some other program by now). They are read again for each session.
#[tokio::test]
async fn a_site_that_left_the_folder_is_not_dialled() {
    let tracker = TestTracker::start(300).await;
    let web = TestWebSeed::start().await;
    let v1 = published(&tracker, &web, "1.0.0", 71).await;
    let cache = tempfile::tempdir().unwrap();
    let start = || {
        test_client()
            .tracker(tracker.url())
            .cache_dir(cache.path())
            .build()
    };
    let left = start().await.unwrap();
    let staying = start().await.unwrap();
    let gone = left.local_peer_addr();
    shutdown_clean(left).await;

    // Something else listens on the port of the site that left.
    let listener = TcpListener::bind(gone).await.unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let other = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            tokio::select! {
                () = stopped.cancelled() => break,
                Ok((socket, _)) = listener.accept() => {
                    held.push(socket);
                    count.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    });

    // The session dials its bootstrap peers as it starts, long before the web seed has
    // delivered the release: a dial to the old port would be counted by now.
    let got = staying.get(NAME).await.unwrap();
    v1.assert_served_by(&got).await;
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "the site that left was dialled"
    );
    assert!(staying.config().bootstrap_peers.is_empty());

    drop(got);
    shutdown_clean(staying).await;
    stop.cancel();
    tokio::time::timeout(WAIT, other).await.unwrap().unwrap();
    assert_port_free(gone);
    web.stop().await;
}
