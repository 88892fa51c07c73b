//! Shared test helpers: a tracker over an in-memory registry with one publisher, release
//! builders, request helpers and a metrics reader.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode};
use swarmcdn_proto::manifest::{
    Manifest, ManifestFile, SignedManifest, SigningKey, Version, signing_key_from_seed,
};
use swarmcdn_proto::metainfo::TorrentBuilder;
use swarmcdn_proto::tracker::{AnnounceEvent, AnnounceRequest, AnnounceResponse, AnnounceSuccess};
use swarmcdn_proto::{InfoHash, PeerId, RelativePath};
use swarmcdn_tracker::config::Config;
use swarmcdn_tracker::registry::Registry;
use swarmcdn_tracker::{AppState, router};
use tower::ServiceExt;

/// The address requests come from unless a test says otherwise.
pub(crate) const CLIENT: &str = "192.0.2.1:40000";

/// The publisher every harness starts with, and its signing key's seed.
pub(crate) const PUBLISHER: &str = "acme";
pub(crate) const KEY_SEED: [u8; 32] = [7; 32];

/// A second publisher's key seed (for "signed by someone else" cases).
pub(crate) const OTHER_SEED: [u8; 32] = [9; 32];

pub(crate) fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

/// A tracker state and router over an in-memory registry holding publisher [`PUBLISHER`].
pub(crate) struct Harness {
    pub(crate) state: AppState,
    router: Router,
    pub(crate) token: String,
    pub(crate) key: SigningKey,
}

/// An answer, read whole.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The `error` of a JSON error body.
    pub(crate) fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }

    /// The body as an announce response.
    pub(crate) fn announce(&self) -> AnnounceResponse {
        AnnounceResponse::from_bytes(&self.body)
            .unwrap_or_else(|e| panic!("not an announce response ({e}): {}", self.text()))
    }

    /// The peer list etc. of a successful announce; panics on a failure.
    pub(crate) fn success(&self) -> AnnounceSuccess {
        match self.announce() {
            AnnounceResponse::Success(success) => success,
            AnnounceResponse::Failure { reason } => panic!("announce refused: {reason}"),
        }
    }

    /// The `failure reason` of a refused tracker request (HTTP 200).
    pub(crate) fn failure(&self) -> String {
        assert_eq!(self.status, StatusCode::OK, "{}", self.text());
        match self.announce() {
            AnnounceResponse::Failure { reason } => reason,
            AnnounceResponse::Success(s) => panic!("expected a failure, got {s:?}"),
        }
    }
}

/// The configuration tests start from: defaults with an in-memory registry.
pub(crate) fn test_config() -> Config {
    Config {
        database: ":memory:".into(),
        ..Config::default()
    }
}

impl Harness {
    pub(crate) fn new() -> Self {
        Self::with_config(test_config())
    }

    pub(crate) fn with_config(config: Config) -> Self {
        Self::with_registry(config, Registry::open_in_memory().unwrap())
    }

    /// A harness over `registry` (say, one in a file a test can damage), to which publisher
    /// [`PUBLISHER`] is added.
    pub(crate) fn with_registry(config: Config, registry: Registry) -> Self {
        let registry = Arc::new(registry);
        let key = signing_key_from_seed(KEY_SEED);
        let token = registry
            .add_publisher(PUBLISHER, key.verifying_key().as_bytes())
            .unwrap()
            .into_string();
        let state = AppState::new(config, registry).unwrap();
        Self {
            router: router(state.clone()),
            state,
            token,
            key,
        }
    }

    /// Sends `request` as if from `from`.
    pub(crate) async fn send_from(&self, mut request: Request<Body>, from: SocketAddr) -> Reply {
        request.extensions_mut().insert(ConnectInfo(from));
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), 64 << 20)
            .await
            .unwrap()
            .to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    pub(crate) async fn send(&self, request: Request<Body>) -> Reply {
        self.send_from(request, addr(CLIENT)).await
    }

    pub(crate) async fn get(&self, uri: &str) -> Reply {
        self.get_from(uri, addr(CLIENT)).await
    }

    pub(crate) async fn get_from(&self, uri: &str, from: SocketAddr) -> Reply {
        let request = Request::get(uri).body(Body::empty()).unwrap();
        self.send_from(request, from).await
    }

    /// `GET /announce?<request>` from `from`.
    pub(crate) async fn announce(&self, request: &AnnounceRequest, from: SocketAddr) -> Reply {
        self.get_from(&format!("/announce?{}", request.to_query()), from)
            .await
    }

    /// `POST /api/v1/releases` with `body` and `token` (none: no Authorization header).
    pub(crate) async fn post_release(&self, body: impl Into<Body>, token: Option<&str>) -> Reply {
        let mut builder =
            Request::post("/api/v1/releases").header("content-type", "application/json");
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        self.send(builder.body(body.into()).unwrap()).await
    }

    /// Publishes `release` with this harness's token; asserts 201.
    pub(crate) async fn publish(&self, release: &Release) -> Reply {
        let reply = self.post_release(release.body(), Some(&self.token)).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
        reply
    }

    pub(crate) async fn delete_release(&self, name: &str, version: &str, token: &str) -> Reply {
        let request = Request::delete(format!("/api/v1/releases/{name}/{version}"))
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        self.send(request).await
    }

    /// The `/metrics` text.
    pub(crate) async fn metrics(&self) -> String {
        let reply = self.get("/metrics").await;
        assert_eq!(reply.status, StatusCode::OK);
        reply.text()
    }

    /// Peers and seeders the swarm store holds, over all torrents.
    pub(crate) fn peer_count(&self) -> (usize, usize) {
        let stats = self.state.store().stats().unwrap();
        (stats.peers, stats.seeders)
    }
}

pub(crate) use swarmcdn_test_support::metrics::metric;

/// `tracker_errors_total{endpoint=..,reason=..}`.
pub(crate) fn errors(text: &str, endpoint: &str, reason: &str) -> f64 {
    metric(
        text,
        &format!("tracker_errors_total{{endpoint=\"{endpoint}\",reason=\"{reason}\"}}"),
    )
}

/// A release: its torrent (one file, `payload.bin`) and its signed manifest.
#[derive(Debug, Clone)]
pub(crate) struct Release {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) info_hash: InfoHash,
    pub(crate) metainfo: Vec<u8>,
    pub(crate) manifest: SignedManifest,
}

impl Release {
    /// A release of `payload` signed with `key`; the torrent announces to `announce`.
    pub(crate) fn build(
        name: &str,
        version: &str,
        payload: &[u8],
        key: &SigningKey,
        announce: &str,
    ) -> Self {
        let path = RelativePath::parse("payload.bin").unwrap();
        let metainfo = TorrentBuilder::new(name)
            .add_bytes(path.clone(), payload.to_vec())
            .announce(announce)
            .build()
            .unwrap();
        let info_hash = metainfo.info_hash();
        Self::with_info_hash(name, version, payload, key, metainfo.to_bytes(), info_hash)
    }

    /// A release whose manifest names `info_hash` (which may not be the torrent's).
    pub(crate) fn with_info_hash(
        name: &str,
        version: &str,
        payload: &[u8],
        key: &SigningKey,
        metainfo: Vec<u8>,
        info_hash: InfoHash,
    ) -> Self {
        let file = ManifestFile::from_bytes(
            RelativePath::parse("payload.bin").unwrap(),
            "application/octet-stream",
            payload,
        )
        .unwrap();
        let manifest = Manifest::new(
            name.parse().unwrap(),
            Version::parse(version).unwrap(),
            info_hash,
            1_700_000_000,
            vec![file],
        )
        .unwrap()
        .sign(key);
        Self {
            name: name.to_owned(),
            version: version.to_owned(),
            info_hash,
            metainfo,
            manifest,
        }
    }

    /// A small release with a payload derived from `n`, signed with `key`.
    pub(crate) fn small(name: &str, version: &str, n: u8, key: &SigningKey) -> Self {
        let payload: Vec<u8> = (0..40_000u32).map(|i| (i as u8) ^ n).collect();
        Self::build(
            name,
            version,
            &payload,
            key,
            "http://127.0.0.1:6969/announce",
        )
    }

    /// The publish request body.
    pub(crate) fn body(&self) -> String {
        publish_body(&self.metainfo, &self.manifest.to_json())
    }
}

/// `{"metainfo": base64(metainfo), "manifest": <manifest_json>}`.
pub(crate) fn publish_body(metainfo: &[u8], manifest_json: &str) -> String {
    let manifest: serde_json::Value = serde_json::from_str(manifest_json).unwrap();
    serde_json::json!({
        "metainfo": data_encoding::BASE64.encode(metainfo),
        "manifest": manifest,
    })
    .to_string()
}

/// An announce for `info_hash` by peer `n` on `port`.
pub(crate) fn announce_request(
    info_hash: InfoHash,
    n: u8,
    port: u16,
    left: u64,
    event: AnnounceEvent,
) -> AnnounceRequest {
    let mut request = AnnounceRequest::new(info_hash, PeerId::new([n; 20]), port);
    request.left = left;
    request.event = event;
    request
}

/// A tracker served on `127.0.0.1:0` in this process, stopped by [`Running::stop`].
pub(crate) struct Running {
    pub(crate) addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), swarmcdn_tracker::ServeError>>>,
}

impl Running {
    /// `run(config, ...)` on a fresh loopback port.
    pub(crate) async fn run(config: Config) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::run_on(config, listener)
    }

    /// `run(config, listener, ...)`.
    pub(crate) fn run_on(config: Config, listener: tokio::net::TcpListener) -> Self {
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(swarmcdn_tracker::run(config, listener, shutdown));
        Self {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// `serve(state, ...)` on a fresh loopback port.
    pub(crate) async fn serve(state: AppState) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(swarmcdn_tracker::serve(state, listener, shutdown));
        Self {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Signals shutdown and asserts that the server's future completes (within 10 s, well
    /// under the grace period of a stuck connection) and that the port is free again.
    pub(crate) async fn stop(mut self) -> std::time::Duration {
        let started = std::time::Instant::now();
        let _ = self.stop.take().unwrap().send(());
        let task = self.task.take().unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(10), task)
            .await
            .expect("the server did not stop within 10 s of the shutdown signal")
            .expect("the server task panicked")
            .expect("the server returned an error");
        let took = started.elapsed();
        // The listening socket is closed (checked on this process's own sockets: another
        // test may already have been handed the freed port).
        swarmcdn_test_support::net::assert_not_listening(self.addr);
        took
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A test that failed before `stop` still stops its server.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
