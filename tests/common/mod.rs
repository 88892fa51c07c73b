//! What the workspace's end-to-end tests share: our tracker (SQLite in a temp folder) and
//! our seeder (`serve`), both in this process on `127.0.0.1` at OS-chosen ports, and a
//! publisher's workspace (key, store, release folder) publishing through the seeder library.
//!
//! Every part is stopped by the test that started it, with a check that it stopped cleanly
//! and let go of its port; a test that fails half-way still stops them on drop.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use swarmcdn_proto::manifest::{ReleaseName, SigningKey, Version};
use swarmcdn_seeder::catalog::Catalog;
use swarmcdn_seeder::config::Config as SeederConfig;
use swarmcdn_seeder::publish::{PublishOptions, Published, publish};
use swarmcdn_seeder::serve::{Seeder, ServeError};
use swarmcdn_tracker::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// The publisher's name at the tracker.
pub(crate) const PUBLISHER: &str = "acme";
/// How long anything a test waits for may take before the wait counts as a hang.
pub(crate) const PATIENCE: Duration = Duration::from_secs(60);

/// Nothing of this process is left listening on `address`.
pub(crate) fn assert_port_free(address: SocketAddr) {
    swarmcdn_test_support::net::assert_not_listening(address);
}

/// Our tracker, served by its library with its registry in a SQLite file.
pub(crate) struct TestTracker {
    /// `http://127.0.0.1:<port>`.
    pub(crate) url: String,
    /// The registry (the same database the service uses).
    pub(crate) registry: Arc<Registry>,
    address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), swarmcdn_tracker::ServeError>>>,
}

impl TestTracker {
    /// Starts a tracker whose registry is `dir/tracker.sqlite`, announcing every
    /// `announce_interval_secs` (clients that follow it re-announce that often).
    pub(crate) async fn start(dir: &Path, announce_interval_secs: u32) -> Self {
        let database = dir.join("tracker.sqlite");
        let registry = Arc::new(Registry::open(&database).unwrap());
        let config = swarmcdn_tracker::config::Config {
            database,
            announce_interval_secs,
            min_announce_interval_secs: 1,
            ..swarmcdn_tracker::config::Config::default()
        };
        let state = swarmcdn_tracker::AppState::new(config, Arc::clone(&registry)).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(swarmcdn_tracker::serve(state, listener, async {
            let _ = stopped.await;
        }));
        Self {
            url: format!("http://{address}"),
            registry,
            address,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Registers a publisher with `key` (the operator's library call) and returns its token.
    pub(crate) fn add_publisher(&self, key: &SigningKey) -> String {
        self.registry
            .add_publisher(PUBLISHER, key.verifying_key().as_bytes())
            .unwrap()
            .into_string()
    }

    /// Stops the tracker; checks that it stopped without error and let go of its port.
    pub(crate) async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(PATIENCE, self.task.take().unwrap())
            .await
            .expect("the tracker did not stop")
            .unwrap()
            .unwrap();
        assert_port_free(self.address);
    }
}

impl Drop for TestTracker {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A publisher's workspace: a key, a store and a folder of files to publish.
pub(crate) struct Publisher {
    /// The temp folder everything lives in.
    pub(crate) temp: tempfile::TempDir,
    /// The signing key file.
    pub(crate) key_file: PathBuf,
    /// The signing key.
    pub(crate) key: SigningKey,
    /// The seeder's store.
    pub(crate) store: PathBuf,
    /// The folder published.
    pub(crate) dist: PathBuf,
    /// The tracker's URL.
    pub(crate) tracker: String,
    /// The publisher's token.
    pub(crate) token: String,
}

impl Publisher {
    /// A workspace with a fresh key, registered at `tracker`.
    pub(crate) fn new(tracker: &TestTracker) -> Self {
        let temp = tempfile::tempdir().unwrap();
        let key_file = temp.path().join("publisher.key");
        let key = swarmcdn_seeder::keys::keygen(&key_file).unwrap();
        let token = tracker.add_publisher(&key);
        let store = temp.path().join("store");
        std::fs::create_dir(&store).unwrap();
        let dist = temp.path().join("dist");
        std::fs::create_dir(&dist).unwrap();
        Self {
            temp,
            key_file,
            key,
            store,
            dist,
            tracker: tracker.url.clone(),
            token,
        }
    }

    /// Replaces the release folder's content with `files`.
    pub(crate) fn write_files(&self, files: &[(&str, Vec<u8>)]) {
        std::fs::remove_dir_all(&self.dist).unwrap();
        for (path, bytes) in files {
            let full = self.dist.join(path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, bytes).unwrap();
        }
    }

    /// Publishes the folder as `name` (`version`: `None` bumps the latest's patch), with
    /// `webseed_url` (empty: none) in the torrent.
    pub(crate) async fn publish(
        &self,
        name: &str,
        version: Option<&str>,
        webseed_url: &str,
    ) -> Published {
        let options = PublishOptions {
            dir: self.dist.clone(),
            name: name.parse::<ReleaseName>().unwrap(),
            version: version.map(|v| v.parse::<Version>().unwrap()),
            tracker: self.tracker.clone(),
            token: self.token.clone(),
            key_file: self.key_file.clone(),
            store: self.store.clone(),
            webseed_url: webseed_url.to_owned(),
            max_release_bytes: swarmcdn_seeder::config::DEFAULT_MAX_RELEASE_BYTES,
            tracker_timeout: Duration::from_secs(10),
            progress: false,
        };
        publish(&options).await.unwrap()
    }

    /// The seeder configuration over this store: peer seeding on loopback at a free port,
    /// the store watched every 100 ms.
    pub(crate) fn seeder_config(&self) -> SeederConfig {
        SeederConfig {
            store: self.store.clone(),
            tracker: self.tracker.clone(),
            peer_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            store_poll_interval_ms: 100,
            ..SeederConfig::default()
        }
    }
}

/// Files of a widget, `variant` making each version's bytes differ. One file is larger than
/// a piece, so releases have several pieces.
pub(crate) fn widget_files(variant: u8) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "button.html",
            format!("<button>Share v{variant}</button>\n").into_bytes(),
        ),
        (
            "button.js",
            format!("export const version = {variant};\n").into_bytes(),
        ),
        ("css/button.css", b"button { color: teal; }\n".to_vec()),
        (
            "data/blob.bin",
            (0..600_000u32).map(|i| (i % 253) as u8 ^ variant).collect(),
        ),
    ]
}

/// `len` bytes without a pattern a transfer could get right by accident (a multiplicative
/// hash of the offset), different for each `seed`.
pub(crate) fn noise(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_add(seed << 24).wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// Our seeder's `serve`, running in this process.
pub(crate) struct TestSeeder {
    /// The web seed's base URL.
    pub(crate) url: String,
    /// Where the web seed listens.
    pub(crate) address: SocketAddr,
    /// Where it accepts peer-wire connections (`None` with peer seeding off).
    pub(crate) peer_address: Option<SocketAddr>,
    /// The releases it serves.
    pub(crate) releases: watch::Receiver<Arc<Catalog>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServeError>>>,
}

impl TestSeeder {
    /// Starts `serve` with `config` on `listener` (bound by the caller, so that the web-seed
    /// URL can be known before publishing).
    pub(crate) async fn start(config: SeederConfig, listener: TcpListener) -> Self {
        let seeder = Seeder::new(config).await.unwrap();
        let releases = seeder.releases();
        let peer_address = *seeder.peer_address().borrow();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(seeder.run(listener, async {
            let _ = stopped.await;
        }));
        Self {
            url: format!("http://{address}"),
            address,
            peer_address,
            releases,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Waits until the served set satisfies `condition`.
    pub(crate) async fn wait_for(&mut self, condition: impl FnMut(&Arc<Catalog>) -> bool) {
        tokio::time::timeout(PATIENCE, self.releases.wait_for(condition))
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

    /// Stops the seeder; checks that it stopped without error and let go of its ports.
    pub(crate) async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(PATIENCE, self.task.take().unwrap())
            .await
            .expect("the seeder did not stop")
            .unwrap()
            .unwrap();
        assert_port_free(self.address);
        if let Some(peer) = self.peer_address {
            assert_port_free(peer);
        }
    }
}

impl Drop for TestSeeder {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

pub(crate) use swarmcdn_test_support::metrics::metric;
