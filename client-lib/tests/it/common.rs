//! Shared pieces of the end-to-end tests: the real tracker run in-process, releases built and
//! published through its API, a web seed that counts requests and can lie, fake peers that
//! stall or corrupt, and helpers that wait on conditions (never on sleeps) and check that
//! clients shut down cleanly.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use swarmcdn_client::scheduler::DeadlinePolicy;
use swarmcdn_client::storage::{Cache, CacheConfig, Placement};
use swarmcdn_client::{Client, ClientBuilder, GetError, Progress, Release, TorrentHandle};
use swarmcdn_proto::manifest::{
    Manifest, ManifestFile, SignedManifest, SigningKey, Version, content_type_for_path,
    signing_key_from_seed,
};
use swarmcdn_proto::metainfo::{Metainfo, TorrentBuilder};
use swarmcdn_proto::peer::{Bitfield, Handshake, Message, Reserved, WireLimits};
use swarmcdn_proto::{InfoHash, PeerId, RelativePath};
use swarmcdn_tracker::AppState;
use swarmcdn_tracker::config::Config as TrackerConfig;
use swarmcdn_tracker::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The key every trusted release is signed with.
pub(crate) const PUBLISHER_SEED: [u8; 32] = [7; 32];
/// A key no test client trusts.
pub(crate) const STRANGER_SEED: [u8; 32] = [9; 32];

/// How long any single wait in a test may take before it fails.
pub(crate) const WAIT: Duration = Duration::from_secs(20);

pub(crate) fn publisher_key() -> SigningKey {
    signing_key_from_seed(PUBLISHER_SEED)
}

/// `count` deterministic pseudo-random bytes.
pub(crate) fn random_bytes(seed: u64, count: usize) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = vec![0u8; count];
    rng.fill_bytes(&mut out);
    out
}

// ---------------------------------------------------------------- tracker

/// The real tracker over an in-memory registry, served on 127.0.0.1:0.
pub(crate) struct TestTracker {
    pub(crate) addr: SocketAddr,
    pub(crate) state: AppState,
    /// Bearer tokens of the trusted publisher and of a stranger.
    pub(crate) token: String,
    pub(crate) stranger_token: String,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl TestTracker {
    /// A tracker whose announce interval is `interval_secs`.
    pub(crate) async fn start(interval_secs: u32) -> TestTracker {
        let config = TrackerConfig {
            database: ":memory:".into(),
            announce_interval_secs: interval_secs,
            min_announce_interval_secs: interval_secs,
            ..TrackerConfig::default()
        };
        let registry = Arc::new(Registry::open_in_memory().unwrap());
        let token = registry
            .add_publisher("acme", publisher_key().verifying_key().as_bytes())
            .unwrap()
            .into_string();
        let stranger_token = registry
            .add_publisher(
                "stranger",
                signing_key_from_seed(STRANGER_SEED)
                    .verifying_key()
                    .as_bytes(),
            )
            .unwrap()
            .into_string();
        let state = AppState::new(config, registry).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let shutdown = stop.clone();
        let serving = state.clone();
        let task = tokio::spawn(async move {
            swarmcdn_tracker::serve(serving, listener, async move { shutdown.cancelled().await })
                .await
                .unwrap();
        });
        TestTracker {
            addr,
            state,
            token,
            stranger_token,
            stop,
            task: Some(task),
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn announce_url(&self) -> String {
        format!("http://{}/announce", self.addr)
    }

    /// Publishes `release` with `token` through `POST /api/v1/releases`.
    pub(crate) async fn publish_with(&self, release: &TestRelease, token: &str) {
        let manifest: serde_json::Value =
            serde_json::from_str(&release.manifest.to_json()).unwrap();
        let body = serde_json::json!({
            "metainfo": data_encoding::BASE64.encode(&release.torrent),
            "manifest": manifest,
        });
        let response = reqwest::Client::new()
            .post(format!("{}/api/v1/releases", self.url()))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        assert_eq!(
            status,
            reqwest::StatusCode::CREATED,
            "{}",
            response.text().await.unwrap()
        );
    }

    pub(crate) async fn publish(&self, release: &TestRelease) {
        self.publish_with(release, &self.token.clone()).await;
    }

    /// Peers the swarm store holds over all torrents.
    pub(crate) fn peer_count(&self) -> usize {
        self.state.store().stats().unwrap().peers
    }

    /// Peers (seeders and leechers) in the swarm of `info_hash`.
    pub(crate) fn swarm_size(&self, info_hash: InfoHash) -> u32 {
        let stats = self.state.store().scrape(&[info_hash]).unwrap();
        stats[0].complete + stats[0].incomplete
    }

    /// Stops the tracker (graceful, like a process exit) and checks its port is free.
    pub(crate) async fn kill(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
        }
        assert_port_free(self.addr);
    }
}

impl Drop for TestTracker {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A URL where nothing listens (a port just freed).
pub(crate) fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

// ---------------------------------------------------------------- releases

/// A release: its files, torrent and signed manifest.
#[derive(Clone)]
pub(crate) struct TestRelease {
    pub(crate) name: String,
    pub(crate) version: Version,
    pub(crate) files: Vec<(String, Vec<u8>)>,
    pub(crate) metainfo: Metainfo,
    pub(crate) torrent: Vec<u8>,
    pub(crate) manifest: SignedManifest,
}

impl TestRelease {
    /// Builds `name` `version` from `files` (manifest paths), as the seeder bundles it: a
    /// multi-file torrent named `<name>-<version>`.
    pub(crate) fn build(
        name: &str,
        version: &str,
        files: Vec<(&str, Vec<u8>)>,
        piece_length: u32,
        announce: Option<String>,
        web_seeds: Vec<String>,
        key: &SigningKey,
    ) -> TestRelease {
        let version = Version::parse(version).unwrap();
        let mut builder = TorrentBuilder::new(format!("{name}-{version}"))
            .folder(true)
            .piece_length(piece_length)
            .url_list(web_seeds);
        if let Some(announce) = announce {
            builder = builder.announce(announce);
        }
        let mut entries = Vec::new();
        for (path, bytes) in &files {
            let rel = RelativePath::parse(path).unwrap();
            builder = builder.add_bytes(rel.clone(), bytes.clone());
            entries
                .push(ManifestFile::from_bytes(rel, content_type_for_path(path), bytes).unwrap());
        }
        let metainfo = builder.build().unwrap();
        let manifest = Manifest::new(
            name.parse().unwrap(),
            version.clone(),
            metainfo.info_hash(),
            1_700_000_000,
            entries,
        )
        .unwrap()
        .sign(key);
        TestRelease {
            name: name.to_owned(),
            version,
            files: files.into_iter().map(|(p, b)| (p.to_owned(), b)).collect(),
            torrent: metainfo.to_bytes(),
            metainfo,
            manifest,
        }
    }

    pub(crate) fn info_hash(&self) -> InfoHash {
        self.metainfo.info_hash()
    }

    pub(crate) fn size(&self) -> u64 {
        self.metainfo.info().total_length()
    }

    /// The torrent's byte string (files concatenated in torrent order).
    pub(crate) fn content(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for file in self.metainfo.info().files() {
            let inner = file.path.components()[1..].join("/");
            let (_, bytes) = self.files.iter().find(|(p, _)| *p == inner).unwrap();
            out.extend_from_slice(bytes);
        }
        out
    }

    /// Checks every file a release handle serves against what was published.
    pub(crate) async fn assert_served_by(&self, release: &swarmcdn_client::Release) {
        assert_eq!(release.info_hash(), self.info_hash());
        assert_eq!(release.files().len(), self.files.len());
        for (path, bytes) in &self.files {
            let served = release.bytes(path).await.unwrap();
            assert!(served == bytes[..], "{path} differs");
            let entry = release.file(path).unwrap();
            assert_eq!(entry.size(), bytes.len() as u64);
            assert!(entry.sri().starts_with("sha384-"));
        }
    }

    /// Checks a torrent handle's store holds exactly the published content.
    pub(crate) fn assert_stored_in(&self, handle: &TorrentHandle) {
        for (index, file) in self.metainfo.info().files().iter().enumerate() {
            let inner = file.path.components()[1..].join("/");
            let (_, bytes) = self.files.iter().find(|(p, _)| *p == inner).unwrap();
            assert!(handle.store().read_file(index).unwrap() == bytes[..]);
        }
    }
}

/// A one-file release of `size` random bytes in `piece_length` pieces.
pub(crate) fn release_of_size(
    name: &str,
    size: usize,
    piece_length: u32,
    announce: Option<String>,
    web_seeds: Vec<String>,
) -> TestRelease {
    TestRelease::build(
        name,
        "1.0.0",
        vec![("payload.bin", random_bytes(size as u64, size))],
        piece_length,
        announce,
        web_seeds,
        &publisher_key(),
    )
}

/// Puts a complete copy of `release` in the cache folder `dir`, the way a client that
/// downloaded it leaves it.
pub(crate) fn seed_cache(dir: &std::path::Path, release: &TestRelease) {
    let cache = Cache::open(CacheConfig::new(dir)).unwrap();
    let store = cache
        .open_or_create(&release.metainfo, Placement::Disk)
        .unwrap();
    let content = release.content();
    let info = release.metainfo.info();
    for piece in 0..info.piece_count() {
        let offset = info.piece_offset(piece).unwrap() as usize;
        let len = info.piece_len(piece).unwrap() as usize;
        store
            .commit_piece(
                piece,
                Bytes::copy_from_slice(&content[offset..offset + len]),
            )
            .unwrap();
    }
    assert!(store.is_complete());
}

// ---------------------------------------------------------------- clients

/// A client builder for tests: loopback, short deadlines and retries.
pub(crate) fn test_client() -> ClientBuilder {
    let mut builder = Client::builder()
        .listen_addr("127.0.0.1:0".parse().unwrap())
        .trust(publisher_key().verifying_key())
        .fallback_deadline(DeadlinePolicy::Adaptive {
            multiplier: 2.0,
            floor: Duration::from_millis(20),
            cap: Duration::from_millis(500),
            initial: Duration::from_millis(300),
        })
        .tracker_timeout(Duration::from_secs(3))
        .http_timeout(Duration::from_secs(5));
    let mut config = builder.current_config().clone();
    config.announce_retry_min = Duration::from_millis(100);
    config.announce_retry_max = Duration::from_secs(1);
    config.stopped_announce_timeout = Duration::from_millis(500);
    config.snub_timeout = Duration::from_secs(1);
    builder = builder.config(config);
    builder
}

/// Whether the peer at `addr` answers a handshake for `info_hash` with its own (a peer
/// that does not serve the torrent closes the connection instead).
pub(crate) async fn handshake_accepted(addr: SocketAddr, info_hash: InfoHash) -> bool {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut out = BytesMut::new();
    Handshake {
        reserved: Reserved::NONE,
        info_hash,
        peer_id: PeerId::with_random_suffix([3; 12]),
    }
    .encode(&mut out);
    stream.write_all(&out).await.unwrap();
    let mut reply = [0u8; Handshake::LEN];
    match tokio::time::timeout(WAIT, stream.read_exact(&mut reply)).await {
        Ok(Ok(_)) => Handshake::decode(&reply).is_ok_and(|h| h.is_some()),
        Ok(Err(_)) => false,
        Err(_) => panic!("the peer neither answered nor closed"),
    }
}

/// Shuts `client` down and checks nothing it started is left: no task, no bound port.
pub(crate) async fn shutdown_clean(client: Client) {
    let addr = client.local_peer_addr();
    tokio::time::timeout(WAIT, client.shutdown())
        .await
        .expect("shutdown did not finish");
    assert_eq!(client.task_count(), 0, "tasks left after shutdown");
    assert_port_free(addr);
}

pub(crate) fn assert_port_free(addr: SocketAddr) {
    swarmcdn_test_support::net::assert_not_listening(addr);
}

/// Waits until `condition` holds for the progress, failing after [`WAIT`].
pub(crate) async fn wait_progress(
    rx: &watch::Receiver<Progress>,
    what: &str,
    condition: impl Fn(&Progress) -> bool,
) -> Progress {
    let mut waiting = rx.clone();
    let result = tokio::time::timeout(WAIT, waiting.wait_for(|p| condition(p)))
        .await
        .map(|r| r.map(|p| p.clone()));
    match result {
        Ok(Ok(progress)) => progress,
        Ok(Err(_)) => panic!("session ended while waiting for {what}: {:?}", *rx.borrow()),
        Err(_) => panic!("timed out waiting for {what}: {:?}", *rx.borrow()),
    }
}

/// The handle of `client`'s session for `info_hash`, once it exists (a `get` running in
/// another task creates it).
pub(crate) async fn wait_torrent(client: &Client, info_hash: InfoHash) -> TorrentHandle {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(handle) = client.torrent(info_hash).await {
            return handle;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no session for {info_hash}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Polls `condition` (cheap checks on shared counters) until it holds, failing after
/// [`WAIT`].
pub(crate) async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ---------------------------------------------------------------- set-ups

/// Release `name` `version` of `files`, signed by the publisher, announced on `tracker`,
/// published there and served by `web`.
pub(crate) async fn publish_files(
    tracker: &TestTracker,
    web: &TestWebSeed,
    name: &str,
    version: &str,
    files: Vec<(&str, Vec<u8>)>,
    piece_length: u32,
) -> TestRelease {
    let release = TestRelease::build(
        name,
        version,
        files,
        piece_length,
        Some(tracker.announce_url()),
        vec![web.url()],
        &publisher_key(),
    );
    tracker.publish(&release).await;
    web.serve(&release);
    release
}

/// A one-file release of `size` bytes in `piece_length` pieces, announced on `tracker`,
/// published there and served by `web`: the start of most tests with both running.
pub(crate) async fn publish_sized(
    tracker: &TestTracker,
    web: &TestWebSeed,
    name: &str,
    size: usize,
    piece_length: u32,
) -> TestRelease {
    let payload = random_bytes(size as u64, size);
    publish_files(
        tracker,
        web,
        name,
        "1.0.0",
        vec![("payload.bin", payload)],
        piece_length,
    )
    .await
}

/// A test client of `tracker` that keeps everything on disk in `dir` (no memory tier).
pub(crate) fn disk_client(tracker: &TestTracker, dir: &std::path::Path) -> ClientBuilder {
    test_client()
        .tracker(tracker.url())
        .cache_dir(dir)
        .memory_threshold(0)
}

/// A client built from `builder` over a cache folder that already holds all of `release`,
/// so it seeds it from start-up; the folder is returned with it and must outlive it.
pub(crate) async fn start_seeder(
    release: &TestRelease,
    builder: ClientBuilder,
) -> (Client, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    seed_cache(dir.path(), release);
    let client = builder.cache_dir(dir.path()).build().await.unwrap();
    (client, dir)
}

/// `client.get(name)`, which must succeed within [`WAIT`].
pub(crate) async fn get_within(client: &Client, name: &str) -> Release {
    tokio::time::timeout(WAIT, client.get(name))
        .await
        .unwrap_or_else(|_| panic!("get {name} timed out"))
        .unwrap()
}

/// `client.get(name)` run in a task of its own, so the test can watch the download.
pub(crate) fn spawn_get(client: &Client, name: &str) -> JoinHandle<Result<Release, GetError>> {
    let client = client.clone();
    let name = name.to_owned();
    tokio::spawn(async move { client.get(&name).await })
}

/// The release a [`spawn_get`] task returns, which must succeed within [`WAIT`].
pub(crate) async fn join_get(task: JoinHandle<Result<Release, GetError>>) -> Release {
    tokio::time::timeout(WAIT, task)
        .await
        .expect("the get timed out")
        .unwrap()
        .unwrap()
}

/// The final progress of `handle`'s download, which must complete within [`WAIT`].
pub(crate) async fn complete_within(handle: &TorrentHandle) -> Progress {
    tokio::time::timeout(WAIT, handle.wait_complete())
        .await
        .expect("the download did not complete")
        .unwrap()
}

/// Adds `release`'s torrent to `client`, waits for the download to complete and checks the
/// stored bytes; returns the handle and the final progress.
pub(crate) async fn download_torrent(
    client: &Client,
    release: &TestRelease,
) -> (TorrentHandle, Progress) {
    let handle = client.add_torrent(&release.torrent).await.unwrap();
    let done = complete_within(&handle).await;
    release.assert_stored_in(&handle);
    (handle, done)
}

/// Waits for the first announce of the session `handle` (`what` names it in a failure).
pub(crate) async fn wait_announced(handle: &TorrentHandle, what: &str) -> Progress {
    wait_progress(&handle.watch(), what, |p| p.announces >= 1).await
}

/// Serves `app` on 127.0.0.1 at an OS-chosen port until the returned token is cancelled;
/// the task ends once it has shut down gracefully.
pub(crate) async fn serve_loopback(app: Router) -> (SocketAddr, CancellationToken, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let shutdown = stop.clone();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .unwrap();
    });
    (addr, stop, task)
}

// ---------------------------------------------------------------- web seed

/// What the test web seed does with requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SeedMode {
    /// Serves the right bytes, with Range support.
    Good,
    /// Serves the right lengths with every byte flipped.
    Corrupt,
    /// Answers 404.
    Missing,
    /// Answers 503 with `Retry-After: 1`.
    Busy,
}

#[derive(Default)]
pub(crate) struct SeedCounters {
    pub(crate) requests: AtomicUsize,
    pub(crate) range_requests: AtomicUsize,
    pub(crate) whole_file_requests: AtomicUsize,
    pub(crate) bytes: AtomicU64,
}

struct SeedState {
    files: Mutex<HashMap<String, Bytes>>,
    corrupt: AtomicBool,
    missing: AtomicBool,
    busy: AtomicBool,
    counters: Arc<SeedCounters>,
}

/// A web seed serving `/ws/<torrent name>/<path>` from memory.
pub(crate) struct TestWebSeed {
    pub(crate) addr: SocketAddr,
    pub(crate) counters: Arc<SeedCounters>,
    state: Arc<SeedState>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl TestWebSeed {
    pub(crate) async fn start() -> TestWebSeed {
        let counters = Arc::new(SeedCounters::default());
        let state = Arc::new(SeedState {
            files: Mutex::new(HashMap::new()),
            corrupt: AtomicBool::new(false),
            missing: AtomicBool::new(false),
            busy: AtomicBool::new(false),
            counters: Arc::clone(&counters),
        });
        let app = Router::new()
            .fallback(serve_file)
            .with_state(Arc::clone(&state));
        let (addr, stop, task) = serve_loopback(app).await;
        TestWebSeed {
            addr,
            counters,
            state,
            stop,
            task: Some(task),
        }
    }

    /// The `url-list` entry for releases served here.
    pub(crate) fn url(&self) -> String {
        format!("http://{}/ws/", self.addr)
    }

    pub(crate) fn serve(&self, release: &TestRelease) {
        let mut files = self.state.files.lock().unwrap();
        for (path, bytes) in &release.files {
            let key = format!("/ws/{}-{}/{path}", release.name, release.version);
            files.insert(key, Bytes::from(bytes.clone()));
        }
    }

    pub(crate) fn set_mode(&self, mode: SeedMode) {
        self.state
            .corrupt
            .store(mode == SeedMode::Corrupt, Ordering::SeqCst);
        self.state
            .missing
            .store(mode == SeedMode::Missing, Ordering::SeqCst);
        self.state
            .busy
            .store(mode == SeedMode::Busy, Ordering::SeqCst);
    }

    pub(crate) fn requests(&self) -> usize {
        self.counters.requests.load(Ordering::SeqCst)
    }

    pub(crate) fn bytes_served(&self) -> u64 {
        self.counters.bytes.load(Ordering::SeqCst)
    }

    pub(crate) async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
        }
        assert_port_free(self.addr);
    }
}

async fn serve_file(State(state): State<Arc<SeedState>>, request: Request) -> Response {
    let counters = &state.counters;
    counters.requests.fetch_add(1, Ordering::SeqCst);
    if state.busy.load(Ordering::SeqCst) {
        return Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .header(header::RETRY_AFTER, "1")
            .body(Body::empty())
            .unwrap();
    }
    let path = request.uri().path().to_owned();
    let file = state.files.lock().unwrap().get(&path).cloned();
    let Some(file) = file.filter(|_| !state.missing.load(Ordering::SeqCst)) else {
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Body::empty())
            .unwrap();
    };
    let range = request
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_range(v, file.len()));
    let (status, body, content_range) = match range {
        Some((start, end)) => {
            counters.range_requests.fetch_add(1, Ordering::SeqCst);
            (
                StatusCode::PARTIAL_CONTENT,
                file.slice(start..=end),
                Some(format!("bytes {start}-{end}/{}", file.len())),
            )
        }
        None => {
            counters.whole_file_requests.fetch_add(1, Ordering::SeqCst);
            (StatusCode::OK, file, None)
        }
    };
    let body = if state.corrupt.load(Ordering::SeqCst) {
        Bytes::from(body.iter().map(|b| !b).collect::<Vec<u8>>())
    } else {
        body
    };
    counters
        .bytes
        .fetch_add(body.len() as u64, Ordering::SeqCst);
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_LENGTH, body.len());
    if let Some(content_range) = content_range {
        response = response.header(header::CONTENT_RANGE, content_range);
    }
    response.body(Body::from(body)).unwrap()
}

/// `bytes=a-b` (one range) as inclusive offsets.
fn parse_range(value: &str, len: usize) -> Option<(usize, usize)> {
    let (start, end) = value.strip_prefix("bytes=")?.split_once('-')?;
    let start: usize = start.parse().ok()?;
    let end: usize = end.parse().ok()?;
    (start <= end && end < len).then_some((start, end))
}

// ---------------------------------------------------------------- fake peers

/// How a fake peer answers requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FakeBehavior {
    /// Takes requests and never answers them.
    Stall,
    /// Answers every request with bytes that are not the torrent's.
    Corrupt,
    /// Serves the right bytes, but announces its pieces the way aria2 does: an empty
    /// bitfield first, then a full one mid-connection.
    LateBitfield,
    /// Sends a bitfield one byte too long (claiming pieces that do not exist).
    BadBitfield,
}

/// A peer written with the wire codec alone: it claims every piece, unchokes at once and
/// misbehaves as told.
pub(crate) struct FakePeer {
    pub(crate) addr: SocketAddr,
    pub(crate) connections: Arc<AtomicUsize>,
    pub(crate) requests: Arc<AtomicUsize>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl FakePeer {
    pub(crate) async fn start(release: &TestRelease, behavior: FakeBehavior) -> FakePeer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let info_hash = release.info_hash();
        let info = Arc::new(release.metainfo.info().clone());
        let content = Bytes::from(release.content());
        let (conns, reqs, token) = (
            Arc::clone(&connections),
            Arc::clone(&requests),
            stop.clone(),
        );
        let task = tokio::spawn(async move {
            let mut handlers = Vec::new();
            loop {
                let accepted = tokio::select! {
                    () = token.cancelled() => break,
                    accepted = listener.accept() => accepted,
                };
                let Ok((stream, _)) = accepted else { continue };
                conns.fetch_add(1, Ordering::SeqCst);
                let (reqs, token) = (Arc::clone(&reqs), token.clone());
                let (info, content) = (Arc::clone(&info), content.clone());
                handlers.push(tokio::spawn(async move {
                    tokio::select! {
                        () = token.cancelled() => {}
                        _ = fake_connection(stream, info_hash, &info, content, behavior, reqs) => {}
                    }
                }));
            }
            for handler in handlers {
                let _ = handler.await;
            }
        });
        FakePeer {
            addr,
            connections,
            requests,
            stop,
            task: Some(task),
        }
    }

    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub(crate) fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    pub(crate) async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
        }
        assert_port_free(self.addr);
    }
}

async fn fake_connection(
    mut stream: TcpStream,
    info_hash: InfoHash,
    info: &swarmcdn_proto::metainfo::Info,
    content: Bytes,
    behavior: FakeBehavior,
    requests: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    // Their handshake, then ours, our pieces and an unchoke.
    loop {
        if let Ok(Some((_, used))) = Handshake::decode(&buf) {
            let _ = buf.split_to(used);
            break;
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
    let mut out = Vec::new();
    Handshake {
        reserved: Reserved::NONE,
        info_hash,
        peer_id: PeerId::new([0xfa; 20]),
    }
    .encode(&mut out);
    let piece_count = info.piece_count();
    if behavior == FakeBehavior::LateBitfield {
        Bitfield::new(piece_count).to_message().encode(&mut out);
        Message::Unchoke.encode(&mut out);
        stream.write_all(&out).await?;
        out.clear();
    }
    if behavior == FakeBehavior::BadBitfield {
        let mut bits = Bitfield::full(piece_count).as_bytes().to_vec();
        bits.push(0xff);
        Message::Bitfield(Bytes::from(bits)).encode(&mut out);
    } else {
        Bitfield::full(piece_count).to_message().encode(&mut out);
    }
    Message::Unchoke.encode(&mut out);
    stream.write_all(&out).await?;
    loop {
        while let Ok(Some(message)) = Message::decode_from(&mut buf, &WireLimits::DEFAULT) {
            if let Message::Request {
                index,
                begin,
                length,
            } = message
            {
                requests.fetch_add(1, Ordering::SeqCst);
                let start = info.piece_offset(index).unwrap_or(0) as usize + begin as usize;
                let data = match behavior {
                    FakeBehavior::Stall | FakeBehavior::BadBitfield => continue,
                    FakeBehavior::Corrupt => Bytes::from(vec![0xAB; length as usize]),
                    FakeBehavior::LateBitfield => content.slice(start..start + length as usize),
                };
                let mut out = Vec::new();
                Message::Piece { index, begin, data }.encode(&mut out);
                stream.write_all(&out).await?;
            }
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
}
