//! Shared test helpers: a stand-in for the tracker's API, folders and keys to publish, and a
//! running `serve`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use swarmcdn_proto::manifest::{ReleaseName, SignedManifest, Version};
use swarmcdn_proto::metainfo::Metainfo;
use swarmcdn_proto::peer::{Handshake, Reserved};
use swarmcdn_proto::{InfoHash, PeerId};
use swarmcdn_seeder::config::Config;
use swarmcdn_seeder::publish::{PublishOptions, Published, publish};
use swarmcdn_seeder::serve::Seeder;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub(crate) const TOKEN: &str = "test-token-123";

/// How the tracker double answers publishes and withdrawals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Accept (with the real tracker's duplicate check).
    Accept,
    /// Answer every POST and DELETE with this status and an error body.
    Refuse(u16),
}

/// One POST the double received.
#[derive(Debug, Clone)]
pub(crate) struct PublishCall {
    pub(crate) authorization: Option<String>,
    pub(crate) body: serde_json::Value,
    pub(crate) accepted: bool,
}

/// One DELETE the double received.
#[derive(Debug, Clone)]
pub(crate) struct DeleteCall {
    pub(crate) authorization: Option<String>,
    pub(crate) name: String,
    pub(crate) version: String,
}

#[derive(Debug, Default)]
struct DoubleState {
    mode: Option<Mode>,
    publishes: Vec<PublishCall>,
    deletes: Vec<DeleteCall>,
    /// name -> version -> manifest JSON
    releases: BTreeMap<String, BTreeMap<Version, String>>,
}

/// An axum stand-in for the tracker's publish API, on 127.0.0.1 at a free port.
pub(crate) struct TrackerDouble {
    pub(crate) url: String,
    state: Arc<Mutex<DoubleState>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    address: SocketAddr,
}

impl TrackerDouble {
    pub(crate) async fn start() -> Self {
        let state = Arc::new(Mutex::new(DoubleState {
            mode: Some(Mode::Accept),
            ..DoubleState::default()
        }));
        let app = Router::new()
            .route("/api/v1/releases", post(double_publish))
            .route("/api/v1/releases/{name}/{version}", delete(double_delete))
            .route("/api/v1/assets/{name}", get(double_latest))
            .route("/api/v1/assets/{name}/{version}", get(double_version))
            .with_state(Arc::clone(&state));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            url: format!("http://{address}"),
            state,
            stop: Some(stop),
            task: Some(task),
            address,
        }
    }

    pub(crate) fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = Some(mode);
    }

    pub(crate) fn publishes(&self) -> Vec<PublishCall> {
        self.state.lock().unwrap().publishes.clone()
    }

    pub(crate) fn accepted(&self) -> Vec<PublishCall> {
        self.publishes()
            .into_iter()
            .filter(|p| p.accepted)
            .collect()
    }

    pub(crate) fn deletes(&self) -> Vec<DeleteCall> {
        self.state.lock().unwrap().deletes.clone()
    }

    pub(crate) fn versions(&self, name: &str) -> Vec<Version> {
        self.state
            .lock()
            .unwrap()
            .releases
            .get(name)
            .map(|v| v.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Stops the server and checks that it let go of its port.
    pub(crate) async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap();
        assert_port_free(self.address).await;
    }
}

fn error(status: u16, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}

/// The `Authorization` header a request to the double carried, if it is text.
fn authorization(headers: &HeaderMap) -> Option<String> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn double_publish(
    State(state): State<Arc<Mutex<DoubleState>>>,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> Response {
    let authorization = authorization(&headers);
    let mut state = state.lock().unwrap();
    let mut call = PublishCall {
        authorization: authorization.clone(),
        body: body.clone(),
        accepted: false,
    };
    if let Some(Mode::Refuse(status)) = state.mode {
        state.publishes.push(call);
        return error(status, "refused by the test double");
    }
    if authorization.as_deref() != Some(&format!("Bearer {TOKEN}")) {
        state.publishes.push(call);
        return error(401, "unknown token");
    }
    let manifest_json = serde_json::to_vec(&body["manifest"]).unwrap();
    let Ok(signed) = SignedManifest::from_json(&manifest_json) else {
        state.publishes.push(call);
        return error(400, "bad manifest");
    };
    let metainfo = data_encoding::BASE64
        .decode(body["metainfo"].as_str().unwrap_or("").as_bytes())
        .ok()
        .and_then(|bytes| Metainfo::from_bytes(&bytes).ok());
    let Some(metainfo) = metainfo else {
        state.publishes.push(call);
        return error(400, "bad metainfo");
    };
    let manifest = signed.unverified_manifest();
    if manifest.info_hash() != metainfo.info_hash() {
        state.publishes.push(call);
        return error(422, "info_hash mismatch");
    }
    let name = manifest.name().to_string();
    let version = manifest.version().clone();
    let versions = state.releases.entry(name.clone()).or_default();
    if versions.contains_key(&version) {
        state.publishes.push(call);
        return error(409, "duplicate release");
    }
    versions.insert(version.clone(), signed.to_json());
    call.accepted = true;
    state.publishes.push(call);
    (
        StatusCode::CREATED,
        Json(serde_json::json!({
            "name": name,
            "version": version.to_string(),
            "info_hash": metainfo.info_hash().to_hex(),
            "manifest_url": format!("/api/v1/assets/{name}/{version}"),
            "torrent_url": format!("/api/v1/torrents/{}", metainfo.info_hash()),
        })),
    )
        .into_response()
}

async fn double_delete(
    State(state): State<Arc<Mutex<DoubleState>>>,
    UrlPath((name, version)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let authorization = authorization(&headers);
    let mut state = state.lock().unwrap();
    state.deletes.push(DeleteCall {
        authorization: authorization.clone(),
        name: name.clone(),
        version: version.clone(),
    });
    if let Some(Mode::Refuse(status)) = state.mode {
        return error(status, "refused by the test double");
    }
    if authorization.as_deref() != Some(&format!("Bearer {TOKEN}")) {
        return error(401, "unknown token");
    }
    let Ok(version) = version.parse::<Version>() else {
        return error(404, "no such release");
    };
    match state
        .releases
        .get_mut(&name)
        .and_then(|v| v.remove(&version))
    {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => error(404, "no such release"),
    }
}

async fn double_latest(
    State(state): State<Arc<Mutex<DoubleState>>>,
    UrlPath(name): UrlPath<String>,
) -> Response {
    let state = state.lock().unwrap();
    match state
        .releases
        .get(&name)
        .and_then(|v| v.values().next_back())
    {
        Some(json) => ([("content-type", "application/json")], json.clone()).into_response(),
        None => error(404, "no release"),
    }
}

async fn double_version(
    State(state): State<Arc<Mutex<DoubleState>>>,
    UrlPath((name, version)): UrlPath<(String, String)>,
) -> Response {
    let state = state.lock().unwrap();
    let found = version
        .parse::<Version>()
        .ok()
        .and_then(|v| state.releases.get(&name).and_then(|r| r.get(&v)).cloned());
    match found {
        Some(json) => ([("content-type", "application/json")], json).into_response(),
        None => error(404, "no release"),
    }
}

/// A port nothing listens on (bound, then released).
pub(crate) async fn dead_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{address}")
}

/// Nothing of this process is left listening on `address` (its own sockets are checked:
/// rebinding the port could fail only because another test was handed it meanwhile).
pub(crate) async fn assert_port_free(address: SocketAddr) {
    swarmcdn_test_support::net::assert_not_listening(address);
}

/// A publisher's workspace: a temp folder with a key, a store and a release folder.
pub(crate) struct Workspace {
    pub(crate) temp: tempfile::TempDir,
    pub(crate) key: PathBuf,
    pub(crate) store: PathBuf,
    pub(crate) dist: PathBuf,
}

impl Workspace {
    pub(crate) fn new() -> Self {
        let temp = tempfile::tempdir().unwrap();
        let key = temp.path().join("publisher.key");
        swarmcdn_seeder::keys::keygen(&key).unwrap();
        let store = temp.path().join("store");
        std::fs::create_dir(&store).unwrap();
        let dist = temp.path().join("dist");
        std::fs::create_dir(&dist).unwrap();
        Self {
            temp,
            key,
            store,
            dist,
        }
    }

    /// Writes a widget's files into `dist`.
    pub(crate) fn widget(&self) -> Vec<(&'static str, Vec<u8>)> {
        let files = vec![
            ("button.html", b"<button>Share</button>\n".to_vec()),
            (
                "button.js",
                b"export function share() { return 1; }\n".to_vec(),
            ),
            ("button.css", b"button { color: red; }\n".to_vec()),
            (
                "icons/share.svg",
                b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>".to_vec(),
            ),
            // Over a piece and over the in-memory body limit, so bodies are streamed.
            (
                "data/big.bin",
                (0..300_000u32).map(|i| (i % 251) as u8).collect(),
            ),
        ];
        for (path, bytes) in &files {
            self.write(path, bytes);
        }
        files
    }

    pub(crate) fn write(&self, path: &str, bytes: &[u8]) {
        let full = self.dist.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, bytes).unwrap();
    }

    pub(crate) fn options(
        &self,
        tracker: &str,
        name: &str,
        version: Option<&str>,
    ) -> PublishOptions {
        PublishOptions {
            dir: self.dist.clone(),
            name: name.parse::<ReleaseName>().unwrap(),
            version: version.map(|v| v.parse().unwrap()),
            tracker: tracker.to_owned(),
            token: TOKEN.to_owned(),
            key_file: self.key.clone(),
            store: self.store.clone(),
            webseed_url: "http://127.0.0.1:7070".to_owned(),
            max_release_bytes: swarmcdn_seeder::config::DEFAULT_MAX_RELEASE_BYTES,
            tracker_timeout: Duration::from_secs(10),
            progress: false,
        }
    }

    pub(crate) async fn publish(
        &self,
        tracker: &str,
        name: &str,
        version: Option<&str>,
    ) -> Published {
        publish(&self.options(tracker, name, version))
            .await
            .unwrap()
    }

    /// Writes the widget's files and publishes them as `share-button` `version` on `tracker`.
    pub(crate) async fn publish_widget(&self, tracker: &str, version: &str) -> Published {
        self.widget();
        self.publish(tracker, "share-button", Some(version)).await
    }

    /// The command line of `publish` for this workspace's folder, key and store, as `name`
    /// on `tracker` with the test token; callers append further flags.
    pub(crate) fn publish_args(&self, tracker: &str, name: &str) -> Vec<String> {
        vec![
            "publish".into(),
            self.dist.display().to_string(),
            "--name".into(),
            name.into(),
            "--tracker".into(),
            tracker.into(),
            "--token".into(),
            TOKEN.into(),
            "--key".into(),
            self.key.display().to_string(),
            "--store".into(),
            self.store.display().to_string(),
        ]
    }

    /// Every path below the store, with file sizes: to show a failure changed nothing.
    pub(crate) fn store_snapshot(&self) -> Vec<(String, u64)> {
        snapshot(&self.store)
    }

    pub(crate) fn config(&self) -> Config {
        Config {
            store: self.store.clone(),
            store_poll_interval_ms: 50,
            ..Config::default()
        }
    }
}

/// The body of a `GET url` as text (the status is not checked).
pub(crate) async fn get_text(client: &reqwest::Client, url: impl reqwest::IntoUrl) -> String {
    client.get(url).send().await.unwrap().text().await.unwrap()
}

pub(crate) fn snapshot(root: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u64)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let meta = std::fs::symlink_metadata(entry.path()).unwrap();
            let rel = entry
                .path()
                .strip_prefix(root)
                .unwrap()
                .display()
                .to_string();
            if meta.is_dir() {
                out.push((format!("{rel}/"), 0));
                walk(root, &entry.path(), out);
            } else {
                out.push((rel, meta.len()));
            }
        }
    }
    walk(root, root, &mut out);
    out.sort();
    out
}

/// A `serve` running on 127.0.0.1 at a free port.
pub(crate) struct RunningSeeder {
    pub(crate) url: String,
    pub(crate) address: SocketAddr,
    pub(crate) releases: tokio::sync::watch::Receiver<Arc<swarmcdn_seeder::catalog::Catalog>>,
    peer: tokio::sync::watch::Receiver<Option<SocketAddr>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), swarmcdn_seeder::serve::ServeError>>>,
}

impl RunningSeeder {
    pub(crate) async fn start(mut config: Config) -> Self {
        // Peer seeding on loopback at a free port unless the test chose an address.
        if config.peer_listen == Config::default().peer_listen {
            config.peer_listen = SocketAddr::from(([127, 0, 0, 1], 0));
        }
        let seeder = Seeder::new(config).await.unwrap();
        let releases = seeder.releases();
        let peer = seeder.peer_address();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(seeder.run(listener, async {
            let _ = stopped.await;
        }));
        Self {
            url: format!("http://{address}"),
            address,
            releases,
            peer,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Waits (up to 10 s) until the served set satisfies `condition`.
    pub(crate) async fn wait_for(
        &mut self,
        condition: impl FnMut(&Arc<swarmcdn_seeder::catalog::Catalog>) -> bool,
    ) {
        tokio::time::timeout(Duration::from_secs(10), self.releases.wait_for(condition))
            .await
            .expect("the seeder did not pick up the change in time")
            .unwrap();
    }

    /// The `/metrics` text.
    pub(crate) async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The peer-wire listener's address, once peer seeding has started (up to 10 s).
    pub(crate) async fn peer_addr(&mut self) -> SocketAddr {
        let address =
            tokio::time::timeout(Duration::from_secs(10), self.peer.wait_for(Option::is_some))
                .await
                .expect("peer seeding did not start in time")
                .unwrap();
        address.expect("checked above")
    }

    /// Stops the seeder, checks it stopped without error and let go of its port.
    pub(crate) async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let result = tokio::time::timeout(Duration::from_secs(20), self.task.take().unwrap())
            .await
            .expect("the seeder did not stop");
        result.unwrap().unwrap();
        assert_port_free(self.address).await;
    }
}

/// Whether the peer at `address` answers a BitTorrent handshake for `info_hash` with its
/// own; a peer that does not seed the torrent closes the connection instead.
pub(crate) async fn handshake_accepted(address: SocketAddr, info_hash: InfoHash) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut out = Vec::new();
    Handshake {
        reserved: Reserved::NONE,
        info_hash,
        peer_id: PeerId::with_random_suffix([5; 12]),
    }
    .encode(&mut out);
    stream.write_all(&out).await.unwrap();
    let mut reply = [0u8; Handshake::LEN];
    match tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut reply)).await {
        Ok(Ok(_)) => Handshake::decode(&reply).is_ok_and(|h| h.is_some()),
        Ok(Err(_)) => false,
        Err(_) => panic!("the peer neither answered nor closed"),
    }
}

/// Polls until `address` answers handshakes for `info_hash` as `accepted` says (up to 10 s).
pub(crate) async fn wait_handshake(address: SocketAddr, info_hash: InfoHash, accepted: bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while handshake_accepted(address, info_hash).await != accepted {
        assert!(
            tokio::time::Instant::now() < deadline,
            "handshakes for {info_hash} still {}",
            if accepted { "refused" } else { "accepted" }
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The seeder binary.
pub(crate) fn seeder_bin() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_swarmcdn-seeder"));
    command.env_remove("SWARMCDN_TOKEN").env("RUST_LOG", "warn");
    command
}

/// Runs the seeder binary off the async runtime and returns (exit ok, stdout, stderr).
pub(crate) async fn run_bin(args: Vec<String>) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || {
        let output = seeder_bin().args(&args).output().unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}
