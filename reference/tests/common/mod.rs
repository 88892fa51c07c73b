//! What the reference tests and the benchmarks share: releases built in memory, the real
//! tracker run in-process, a seeding client restored from a cache folder, and librqbit
//! sessions set up as a loopback-only reference peer.
//!
//! Included by `tests/librqbit.rs` and `benches/client.rs` with `#[path]`, so it is test
//! code (unwraps and `anyhow` are fine) and not part of any library.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, ensure};
use bytes::Bytes;
use librqbit::{
    AddTorrent, AddTorrentOptions, ListenerMode, ListenerOptions, ManagedTorrent, Session,
    SessionOptions,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use swarmcdn_client::storage::{Cache, CacheConfig, Placement};
use swarmcdn_client::{Client, ClientBuilder};
use swarmcdn_proto::RelativePath;
use swarmcdn_proto::manifest::{
    Manifest, ManifestFile, SignedManifest, SigningKey, Version, content_type_for_path,
    signing_key_from_seed,
};
use swarmcdn_proto::metainfo::{Metainfo, TorrentBuilder};
use swarmcdn_tracker::AppState;
use swarmcdn_tracker::config::Config as TrackerConfig;
use swarmcdn_tracker::registry::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The publisher every client here trusts.
pub(crate) const PUBLISHER_SEED: [u8; 32] = [42; 32];

/// The publisher's signing key.
pub(crate) fn publisher() -> SigningKey {
    signing_key_from_seed(PUBLISHER_SEED)
}

/// `count` pseudo-random bytes from `seed` (incompressible, so nothing is faster than real).
pub(crate) fn random_bytes(seed: u64, count: usize) -> Vec<u8> {
    let mut out = vec![0u8; count];
    StdRng::seed_from_u64(seed).fill_bytes(&mut out);
    out
}

/// A release held in memory: the files, the torrent and the signed manifest.
pub(crate) struct Release {
    /// The asset name the manifest is published under.
    pub(crate) name: String,
    /// Inner paths and contents, in the order given.
    pub(crate) files: Vec<(String, Vec<u8>)>,
    /// The parsed torrent (a folder torrent named `<name>-<version>`).
    pub(crate) metainfo: Metainfo,
    /// The torrent as bencoded bytes.
    pub(crate) torrent: Vec<u8>,
    /// The manifest, signed by [`publisher`].
    pub(crate) manifest: SignedManifest,
}

impl Release {
    /// Builds release `name` 1.0.0 of `files` with `piece_length`, announcing to `announce`.
    pub(crate) fn new(
        name: &str,
        files: Vec<(&str, Vec<u8>)>,
        piece_length: u32,
        announce: Option<String>,
    ) -> Release {
        let version = Version::parse("1.0.0").unwrap();
        let mut builder = TorrentBuilder::new(format!("{name}-{version}"))
            .folder(true)
            .piece_length(piece_length);
        if let Some(url) = announce {
            builder = builder.announce(url);
        }
        let mut entries = Vec::new();
        for (path, bytes) in &files {
            let rel = RelativePath::parse(path).unwrap();
            entries.push(
                ManifestFile::from_bytes(rel.clone(), content_type_for_path(path), bytes).unwrap(),
            );
            builder = builder.add_bytes(rel, bytes.clone());
        }
        let metainfo = builder.build().unwrap();
        let manifest = Manifest::new(
            name.parse().unwrap(),
            version,
            metainfo.info_hash(),
            1_700_000_000,
            entries,
        )
        .unwrap()
        .sign(&publisher());
        Release {
            name: name.to_owned(),
            files: files.into_iter().map(|(p, b)| (p.to_owned(), b)).collect(),
            torrent: metainfo.to_bytes(),
            metainfo,
            manifest,
        }
    }

    /// The torrent's name (the folder its files live in).
    pub(crate) fn folder_name(&self) -> String {
        self.metainfo.info().name().to_owned()
    }

    /// Total content size in bytes.
    pub(crate) fn size(&self) -> u64 {
        self.metainfo.info().total_length()
    }

    /// The content in torrent order (what the pieces hash).
    pub(crate) fn content(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size() as usize);
        for file in self.metainfo.info().files() {
            out.extend_from_slice(self.file(&inner_path(file.path.components())));
        }
        out
    }

    /// The bytes of the file at inner path `path`.
    pub(crate) fn file(&self, path: &str) -> &[u8] {
        let (_, bytes) = self.files.iter().find(|(p, _)| p == path).unwrap();
        bytes
    }

    /// Writes the files under `dir/<folder name>/`, the layout a peer seeds from.
    pub(crate) fn write_to(&self, dir: &Path) -> PathBuf {
        let root = dir.join(self.folder_name());
        for (path, bytes) in &self.files {
            let target = root.join(path);
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::write(target, bytes).unwrap();
        }
        root
    }

    /// Checks that `root` (a release folder a peer downloaded into) holds exactly the files.
    pub(crate) fn check_folder(&self, root: &Path) -> anyhow::Result<()> {
        for (path, bytes) in &self.files {
            let got = std::fs::read(root.join(path)).with_context(|| format!("reading {path}"))?;
            ensure!(got == *bytes, "{path}: the downloaded bytes differ");
        }
        Ok(())
    }

    /// Puts a complete, verified copy in the cache folder `dir`, as a client that downloaded
    /// it leaves it; a client built on `dir` seeds it at once.
    pub(crate) fn fill_cache(&self, dir: &Path) {
        let cache = Cache::open(CacheConfig::new(dir)).unwrap();
        let store = cache
            .open_or_create(&self.metainfo, Placement::Disk)
            .unwrap();
        let content = self.content();
        let info = self.metainfo.info();
        for piece in 0..info.piece_count() {
            let start = info.piece_offset(piece).unwrap() as usize;
            let end = start + info.piece_len(piece).unwrap() as usize;
            store
                .commit_piece(piece, Bytes::copy_from_slice(&content[start..end]))
                .unwrap();
        }
        assert!(store.is_complete());
    }
}

/// A file's path inside the release folder (its torrent path without the folder name).
pub(crate) fn inner_path(components: &[String]) -> String {
    components[1..].join("/")
}

/// The real tracker on 127.0.0.1:0 with an in-memory registry that knows [`publisher`].
pub(crate) struct Tracker {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    token: String,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Tracker {
    /// Starts it with an announce interval of `interval_secs`.
    pub(crate) async fn start(interval_secs: u32) -> Tracker {
        let config = TrackerConfig {
            database: ":memory:".into(),
            announce_interval_secs: interval_secs,
            min_announce_interval_secs: interval_secs,
            ..TrackerConfig::default()
        };
        let registry = Arc::new(Registry::open_in_memory().unwrap());
        let token = registry
            .add_publisher("bench", publisher().verifying_key().as_bytes())
            .unwrap()
            .into_string();
        let state = AppState::new(config, registry).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            swarmcdn_tracker::serve(state, listener, async move { stopped.cancelled().await })
                .await
                .unwrap();
        });
        Tracker {
            addr,
            token,
            stop,
            task: Some(task),
        }
    }

    /// The base URL clients are given.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The announce URL torrents carry.
    pub(crate) fn announce_url(&self) -> String {
        format!("{}/announce", self.url())
    }

    /// Publishes `release` (metainfo and signed manifest) through the publish API.
    pub(crate) async fn publish(&self, release: &Release) {
        let manifest: serde_json::Value =
            serde_json::from_str(&release.manifest.to_json()).unwrap();
        let body = serde_json::json!({
            "metainfo": data_encoding::BASE64.encode(&release.torrent),
            "manifest": manifest,
        });
        let response = reqwest::Client::new()
            .post(format!("{}/api/v1/releases", self.url()))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::CREATED);
    }

    /// Stops it and waits for its task.
    pub(crate) async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .unwrap()
                .unwrap();
        }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A client on 127.0.0.1:0 that trusts [`publisher`].
pub(crate) fn client() -> ClientBuilder {
    Client::builder()
        .listen_addr("127.0.0.1:0".parse().unwrap())
        .trust(publisher().verifying_key())
}

/// A librqbit session as a loopback-only peer: TCP on 127.0.0.1:0, no DHT, no local
/// service discovery, no persistence, downloads under `dir`.
pub(crate) async fn rqbit_session(dir: &Path) -> anyhow::Result<Arc<Session>> {
    let options = SessionOptions {
        dht: None,
        persistence: None,
        disable_local_service_discovery: true,
        listen: Some(ListenerOptions {
            mode: ListenerMode::TcpOnly,
            listen_addr: "127.0.0.1:0".parse().unwrap(),
            ..ListenerOptions::default()
        }),
        ..SessionOptions::default()
    };
    Session::new_with_opts(dir.to_owned(), options).await
}

/// Adds `release` to `session` with its files in `dir/<folder name>`: seeding when they are
/// there already (checked first), downloading from `peers` otherwise. Trackers are left out
/// when `use_trackers` is false.
pub(crate) async fn rqbit_add(
    session: &Arc<Session>,
    release: &Release,
    dir: &Path,
    peers: Vec<SocketAddr>,
    use_trackers: bool,
) -> anyhow::Result<Arc<ManagedTorrent>> {
    let options = AddTorrentOptions {
        overwrite: true,
        output_folder: Some(
            dir.join(release.folder_name())
                .to_string_lossy()
                .into_owned(),
        ),
        initial_peers: Some(peers),
        disable_trackers: !use_trackers,
        ..AddTorrentOptions::default()
    };
    let added = session
        .add_torrent(
            AddTorrent::TorrentFileBytes(Bytes::from(release.torrent.clone())),
            Some(options),
        )
        .await?;
    let handle = added
        .into_handle()
        .context("librqbit did not add the torrent")?;
    handle.wait_until_initialized().await?;
    Ok(handle)
}
