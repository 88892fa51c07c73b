//! The whole system in one process, on loopback: a tracker, a publisher who publishes the
//! share button with the seeder, and example sites that embed the client library and serve
//! the button to browsers.
//!
//! ```no_run
//! use swarmcdn::demo::{Demo, DemoOptions};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), swarmcdn::demo::DemoError> {
//! let demo = Demo::start(DemoOptions::default()).await?;
//! for url in demo.site_urls() {
//!     println!("open {url}");
//! }
//! for site in demo.stats().await {
//!     println!("{}: {} bytes from peers, {} from the web seed", site.name, site.bytes_from_peers, site.bytes_from_http);
//! }
//! demo.shutdown().await?;
//! # Ok(())
//! # }
//! ```
//!
//! Why it is a library module and not just an example: the demo is what a newcomer runs
//! first (`cargo run --release --example demo`), and the browser test must load exactly the
//! pages the demo serves; both drive this one [`Demo`], so the example stays a thin shell
//! and what the test checks is what people see.
//!
//! Why it is built from the real parts rather than doubles: every step is the one a real
//! deployment takes. The tracker is `swarmcdn-tracker`'s service over a SQLite registry in a
//! temporary folder; the publisher's key is made by the seeder's `keygen` and registered in
//! that registry, as `swarmcdn-tracker publisher add` does; the release is built, signed and
//! registered by the seeder's `publish`, then served by its daemon (web seed and peer
//! seeding); each site is an axum app that mounts [`Client::router`] under `/widgets`, and
//! fetches the release through the swarm before it serves its first page, one site after
//! the other, so later sites can get pieces from earlier ones.
//!
//! Shutdown runs in the reverse order of start-up: the sites stop answering, their clients
//! leave the swarm (announcing `stopped` to a tracker still up), then the seeder stops, then
//! the tracker, and last the temporary folder is removed.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use swarmcdn_client::{BuildError, Client, GetError, Progress};
use swarmcdn_proto::InfoHash;
use swarmcdn_proto::manifest::{ReleaseName, Version};
use swarmcdn_seeder::keys::{self, KeyError};
use swarmcdn_seeder::publish::{self, PublishError, PublishOptions, Published};
use swarmcdn_tracker::registry::{Registry, RegistryError};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use site::SiteState;

mod site;

/// The release the demo publishes and the sites embed.
pub const ASSET_NAME: &str = "share-button";
/// The publisher's name in the tracker's registry.
pub const PUBLISHER_NAME: &str = "demo-publisher";
/// The most sites one demo runs.
pub const MAX_SITES: usize = 16;
/// How long a site may take to get the release through the swarm at start-up.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a page waits for the release's details (version, SRI) before it is rendered
/// without them.
pub const PAGE_RELEASE_WAIT: Duration = Duration::from_secs(5);
/// The largest body `POST /share` reads.
pub const MAX_SHARE_BODY: usize = 4096;
/// The longest URL `POST /share` accepts.
pub const MAX_SHARE_URL_LEN: usize = 2048;
/// The most distinct URLs one site counts shares for; shares of further URLs are refused.
pub const MAX_SHARED_URLS: usize = 1024;
/// The most responses a site remembers in [`Demo::served`] (the oldest are forgotten).
pub const MAX_SERVED_LOG: usize = 512;

/// What [`Demo::start`] sets up.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// `0` (the default): every server binds a port the OS picks. Otherwise the tracker
    /// listens on `port_base`, the seeder's web seed on `port_base + 1` and site `i` (from
    /// 0) on `port_base + 2 + i`. Everything binds 127.0.0.1.
    pub port_base: u16,
    /// How many example sites to run (1 to [`MAX_SITES`]). Default 2.
    pub sites: usize,
    /// The folder published as [`ASSET_NAME`]. Default [`default_asset_dir`].
    pub asset_dir: PathBuf,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            port_base: 0,
            sites: 2,
            asset_dir: default_asset_dir(),
        }
    }
}

/// The share button's folder in this repository: `examples/share-button/`.
pub fn default_asset_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/share-button")
}

/// Why the demo could not start or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// The options cannot work (what is wrong is said).
    #[error("invalid demo options: {0}")]
    Options(&'static str),
    /// The temporary work folder could not be made.
    #[error("cannot create the demo's work folder: {0}")]
    WorkDir(#[source] io::Error),
    /// A port could not be bound.
    #[error("cannot listen on {addr} for the {what}: {source}")]
    Bind {
        /// Which server.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The tracker's registry refused something.
    #[error("tracker registry: {0}")]
    Registry(#[from] RegistryError),
    /// The tracker failed.
    #[error("tracker: {0}")]
    Tracker(#[from] swarmcdn_tracker::ServeError),
    /// The publisher's key could not be made.
    #[error("publisher key: {0}")]
    Key(#[from] KeyError),
    /// The release could not be published.
    #[error("cannot publish {ASSET_NAME}: {0}")]
    Publish(#[from] PublishError),
    /// The seeder failed.
    #[error("seeder: {0}")]
    Seeder(#[from] swarmcdn_seeder::serve::ServeError),
    /// A site's client could not start.
    #[error("{site}: cannot start its client: {source}")]
    Client {
        /// The site's name.
        site: String,
        /// Why.
        #[source]
        source: BuildError,
    },
    /// A site could not get the release.
    #[error("{site}: cannot get {ASSET_NAME}: {source}")]
    Fetch {
        /// The site's name.
        site: String,
        /// Why.
        #[source]
        source: GetError,
    },
    /// A site did not get the release within [`FETCH_TIMEOUT`].
    #[error("{site}: {ASSET_NAME} did not arrive within {FETCH_TIMEOUT:?}")]
    FetchTimeout {
        /// The site's name.
        site: String,
    },
    /// A site's HTTP server failed.
    #[error("{site}: the HTTP server failed: {source}")]
    Site {
        /// The site's name.
        site: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A background task panicked or was cancelled.
    #[error("the {0} task ended abnormally")]
    Task(&'static str),
}

/// One site's counters, as [`Demo::stats`] reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SiteStats {
    /// The site's name (`Site A`, `Site B`, ...).
    pub name: String,
    /// Its page's URL.
    pub url: String,
    /// Where its client accepts peers.
    pub peer_addr: SocketAddr,
    /// Whether it holds the whole release.
    pub complete: bool,
    /// The release's size.
    pub total_bytes: u64,
    /// Verified release bytes that came from peers (other sites, the seeder's peer).
    pub bytes_from_peers: u64,
    /// Verified release bytes that came from the publisher's web seed (HTTP).
    pub bytes_from_http: u64,
    /// Bytes it uploaded to other peers.
    pub uploaded_bytes: u64,
    /// Peers connected now.
    pub peers_connected: usize,
    /// Shares its `POST /share` endpoint counted, over every URL.
    pub shares: u64,
    /// HTTP responses it sent (pages, widget files, shares).
    pub responses: u64,
}

/// One response a site sent, as [`Demo::served`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// The request path.
    pub path: String,
    /// The status code.
    pub status: u16,
    /// The `Content-Type` sent, if any.
    pub content_type: Option<String>,
}

/// The demo, running: see the module docs.
#[derive(Debug)]
pub struct Demo {
    tracker_url: String,
    webseed_url: String,
    public_key_hex: String,
    published: Published,
    sites: Vec<Site>,
    running: Running,
    work_dir: tempfile::TempDir,
}

#[derive(Debug)]
struct Site {
    url: String,
    client: Client,
    state: Arc<SiteState>,
}

/// What is running, in the order it must stop.
#[derive(Debug, Default)]
struct Running {
    sites_stop: CancellationToken,
    site_tasks: Vec<(String, JoinHandle<io::Result<()>>)>,
    clients: Vec<Client>,
    seeder_stop: CancellationToken,
    seeder_task: Option<JoinHandle<Result<(), swarmcdn_seeder::serve::ServeError>>>,
    tracker_stop: CancellationToken,
    tracker_task: Option<JoinHandle<Result<(), swarmcdn_tracker::ServeError>>>,
}

impl Running {
    /// Stops everything started so far; the first error is returned, after everything
    /// was stopped anyway.
    async fn stop(&mut self) -> Result<(), DemoError> {
        let mut first_error = None;
        let mut keep = |result: Result<(), DemoError>| {
            if let Err(error) = result {
                tracing::warn!(%error, "while stopping the demo");
                first_error.get_or_insert(error);
            }
        };
        self.sites_stop.cancel();
        for (site, task) in self.site_tasks.drain(..) {
            keep(match task.await {
                Ok(result) => result.map_err(|source| DemoError::Site { site, source }),
                Err(_) => Err(DemoError::Task("site")),
            });
        }
        for client in self.clients.drain(..) {
            client.shutdown().await;
        }
        self.seeder_stop.cancel();
        if let Some(task) = self.seeder_task.take() {
            keep(match task.await {
                Ok(result) => result.map_err(DemoError::from),
                Err(_) => Err(DemoError::Task("seeder")),
            });
        }
        self.tracker_stop.cancel();
        if let Some(task) = self.tracker_task.take() {
            keep(match task.await {
                Ok(result) => result.map_err(DemoError::from),
                Err(_) => Err(DemoError::Task("tracker")),
            });
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Running {
    /// A demo dropped without [`Demo::shutdown`] still stops its servers (without waiting
    /// for them or telling the tracker the sites left).
    fn drop(&mut self) {
        self.sites_stop.cancel();
        self.seeder_stop.cancel();
        self.tracker_stop.cancel();
    }
}

impl Demo {
    /// Starts the tracker, publishes the share button, starts the seeder and the sites, and
    /// returns once every site holds the release. Whatever fails, what was started is
    /// stopped again before the error is returned.
    pub async fn start(options: DemoOptions) -> Result<Demo, DemoError> {
        if options.sites == 0 || options.sites > MAX_SITES {
            return Err(DemoError::Options("sites must be from 1 to 16"));
        }
        let last_port = u16::try_from(options.sites + 1)
            .ok()
            .and_then(|n| options.port_base.checked_add(n));
        if options.port_base != 0 && last_port.is_none() {
            return Err(DemoError::Options(
                "port_base leaves no room for every server",
            ));
        }
        let work_dir = tempfile::Builder::new()
            .prefix("swarmcdn-demo-")
            .tempdir()
            .map_err(DemoError::WorkDir)?;
        let mut running = Running::default();
        match start_parts(&options, work_dir.path(), &mut running).await {
            Ok(parts) => Ok(Demo {
                tracker_url: parts.tracker_url,
                webseed_url: parts.webseed_url,
                public_key_hex: parts.public_key_hex,
                published: parts.published,
                sites: parts.sites,
                running,
                work_dir,
            }),
            Err(error) => {
                // The start-up error is the one worth reporting; `stop` logs its own.
                let _ = running.stop().await;
                Err(error)
            }
        }
    }

    /// The tracker's base URL.
    pub fn tracker_url(&self) -> &str {
        &self.tracker_url
    }

    /// The seeder's base URL (its web seed is under `/webseed/`).
    pub fn webseed_url(&self) -> &str {
        &self.webseed_url
    }

    /// The publisher's public key (64 hex digits), which every site trusts.
    pub fn public_key_hex(&self) -> &str {
        &self.public_key_hex
    }

    /// The URL of each site's page, in site order.
    pub fn site_urls(&self) -> Vec<String> {
        self.sites.iter().map(|site| site.url.clone()).collect()
    }

    /// The published release's info-hash.
    pub fn info_hash(&self) -> InfoHash {
        self.published.info_hash
    }

    /// The published release's version.
    pub fn version(&self) -> &Version {
        &self.published.version
    }

    /// The release's magnet link.
    pub fn magnet(&self) -> &str {
        &self.published.magnet
    }

    /// The folder holding the registry, the key and the seeder's store (removed at
    /// shutdown).
    pub fn work_dir(&self) -> &Path {
        self.work_dir.path()
    }

    /// Each site's counters, in site order.
    pub async fn stats(&self) -> Vec<SiteStats> {
        let mut out = Vec::with_capacity(self.sites.len());
        for site in &self.sites {
            let progress = match site.client.torrent(self.published.info_hash).await {
                Some(handle) => handle.progress(),
                None => Progress::default(),
            };
            out.push(SiteStats {
                name: site.state.name().to_owned(),
                url: site.url.clone(),
                peer_addr: site.client.local_peer_addr(),
                complete: progress.complete,
                total_bytes: progress.total_bytes,
                bytes_from_peers: progress.bytes_from_peers,
                bytes_from_http: progress.bytes_from_http,
                uploaded_bytes: progress.uploaded_bytes,
                peers_connected: progress.peers_connected,
                shares: site.state.total_shares(),
                responses: site.state.responses(),
            });
        }
        out
    }

    /// The responses site `index` sent most recently (up to [`MAX_SERVED_LOG`]), oldest
    /// first; empty for an index with no site.
    pub fn served(&self, index: usize) -> Vec<Served> {
        self.sites
            .get(index)
            .map(|site| site.state.served())
            .unwrap_or_default()
    }

    /// Stops everything (see the module docs for the order) and removes the work folder.
    pub async fn shutdown(mut self) -> Result<(), DemoError> {
        let stopped = self.running.stop().await;
        let removed = self.work_dir.close().map_err(DemoError::WorkDir);
        stopped.and(removed)
    }
}

/// What `start_parts` hands back besides what it put into `Running`.
struct Parts {
    tracker_url: String,
    webseed_url: String,
    public_key_hex: String,
    published: Published,
    sites: Vec<Site>,
}

async fn bind(what: &'static str, port: u16) -> Result<TcpListener, DemoError> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpListener::bind(addr)
        .await
        .map_err(|source| DemoError::Bind { what, addr, source })
}

fn local_url(listener: &TcpListener, what: &'static str) -> Result<String, DemoError> {
    listener
        .local_addr()
        .map(|addr| format!("http://{addr}"))
        .map_err(|source| DemoError::Bind {
            what,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            source,
        })
}

/// The port for server `offset` (0 tracker, 1 seeder, 2.. sites), `0` when the OS picks.
fn port(options: &DemoOptions, offset: usize) -> u16 {
    if options.port_base == 0 {
        return 0;
    }
    // `start` checked that every offset fits.
    u16::try_from(offset)
        .ok()
        .and_then(|offset| options.port_base.checked_add(offset))
        .unwrap_or(0)
}

/// The site's display name: `Site A`, `Site B`, ...
fn site_name(index: usize) -> String {
    let letter = u8::try_from(index % 26).map_or('?', |i| char::from(b'A' + i));
    format!("Site {letter}")
}

async fn start_parts(
    options: &DemoOptions,
    work: &Path,
    running: &mut Running,
) -> Result<Parts, DemoError> {
    // Bind everything first: the seeder's URL goes into the torrent at publish time.
    let tracker_listener = bind("tracker", port(options, 0)).await?;
    let seeder_listener = bind("seeder", port(options, 1)).await?;
    let mut site_listeners = Vec::with_capacity(options.sites);
    for index in 0..options.sites {
        site_listeners.push(bind("site", port(options, 2 + index)).await?);
    }
    let tracker_url = local_url(&tracker_listener, "tracker")?;
    let webseed_url = local_url(&seeder_listener, "seeder")?;

    // The tracker, with its registry in SQLite.
    let tracker_config = swarmcdn_tracker::config::Config {
        listen: tracker_listener
            .local_addr()
            .unwrap_or(swarmcdn_tracker::config::Config::default().listen),
        database: work.join("tracker.sqlite3"),
        ..swarmcdn_tracker::config::Config::default()
    };
    let registry = Arc::new(Registry::open(&tracker_config.database)?);

    // The publisher: a key, registered with the tracker (its bearer token comes back).
    let key_file = work.join("publisher.key");
    let key = keys::keygen(&key_file)?;
    let public_key_hex = keys::public_key_hex(&key.verifying_key());
    let token = registry
        .add_publisher(PUBLISHER_NAME, key.verifying_key().as_bytes())?
        .into_string();
    let state = swarmcdn_tracker::AppState::new(tracker_config, registry)?;
    let stop = running.tracker_stop.clone();
    running.tracker_task = Some(tokio::spawn(
        swarmcdn_tracker::serve(state, tracker_listener, async move {
            stop.cancelled().await;
        })
        .instrument(tracing::info_span!("tracker")),
    ));
    tracing::info!(url = %tracker_url, "tracker started");

    // Publish the share button, then serve it: web seed and peer seeding.
    let seeder_defaults = swarmcdn_seeder::config::Config::default();
    let store = work.join("store");
    let published = publish::publish(&PublishOptions {
        dir: options.asset_dir.clone(),
        name: ReleaseName::new(ASSET_NAME).map_err(|_| DemoError::Options("bad asset name"))?,
        version: None,
        tracker: tracker_url.clone(),
        token,
        key_file: key_file.clone(),
        store: store.clone(),
        webseed_url: webseed_url.clone(),
        max_release_bytes: seeder_defaults.max_release_bytes,
        tracker_timeout: Duration::from_secs(seeder_defaults.tracker_timeout_secs),
        progress: false,
    })
    .await?;
    tracing::info!(
        info_hash = %published.info_hash,
        version = %published.version,
        "published {ASSET_NAME}"
    );
    let seeder_config = swarmcdn_seeder::config::Config {
        store,
        tracker: tracker_url.clone(),
        key: key_file,
        webseed_url: webseed_url.clone(),
        listen: seeder_listener
            .local_addr()
            .unwrap_or(seeder_defaults.listen),
        peer_listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        ..seeder_defaults
    };
    let seeder = swarmcdn_seeder::serve::Seeder::new(seeder_config).await?;
    let stop = running.seeder_stop.clone();
    running.seeder_task = Some(tokio::spawn(
        seeder
            .run(seeder_listener, async move { stop.cancelled().await })
            .instrument(tracing::info_span!("seeder")),
    ));

    // The sites, one after the other: each gets the release before the next starts.
    let mut sites = Vec::with_capacity(options.sites);
    for (index, listener) in site_listeners.into_iter().enumerate() {
        let name = site_name(index);
        let client = Client::builder()
            .tracker(tracker_url.clone())
            .trust(key.verifying_key())
            .listen_addr(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .build()
            .await
            .map_err(|source| DemoError::Client {
                site: name.clone(),
                source,
            })?;
        running.clients.push(client.clone());
        let url = format!("{}/", local_url(&listener, "site")?);
        let state = Arc::new(SiteState::new(name.clone(), client.clone()));
        let app = site::router(Arc::clone(&state));
        let stop = running.sites_stop.clone();
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            stop.cancelled().await;
        });
        let span = tracing::info_span!("site", name = %name);
        running.site_tasks.push((
            name.clone(),
            tokio::spawn(async move { server.await }.instrument(span)),
        ));
        match tokio::time::timeout(FETCH_TIMEOUT, client.get(ASSET_NAME)).await {
            Err(_) => return Err(DemoError::FetchTimeout { site: name }),
            Ok(Err(source)) => return Err(DemoError::Fetch { site: name, source }),
            Ok(Ok(release)) => {
                let progress = release.progress();
                tracing::info!(
                    site = %name,
                    %url,
                    from_peers = progress.bytes_from_peers,
                    from_web_seed = progress.bytes_from_http,
                    "site has the release"
                );
            }
        }
        sites.push(Site { url, client, state });
    }
    Ok(Parts {
        tracker_url,
        webseed_url,
        public_key_hex,
        published,
        sites,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_names_and_ports() {
        assert_eq!(site_name(0), "Site A");
        assert_eq!(site_name(2), "Site C");
        let options = DemoOptions {
            port_base: 8000,
            ..DemoOptions::default()
        };
        assert_eq!((port(&options, 0), port(&options, 3)), (8000, 8003));
        assert_eq!(port(&DemoOptions::default(), 3), 0);
    }

    #[tokio::test]
    async fn bad_options_are_refused() {
        for options in [
            DemoOptions {
                sites: 0,
                ..DemoOptions::default()
            },
            DemoOptions {
                sites: MAX_SITES + 1,
                ..DemoOptions::default()
            },
            DemoOptions {
                port_base: u16::MAX - 1,
                ..DemoOptions::default()
            },
        ] {
            let error = Demo::start(options).await.unwrap_err();
            assert!(matches!(error, DemoError::Options(_)), "{error}");
        }
    }

    /// The whole demo over HTTP: pages, widget files, shares (good and bad), counters, and a
    /// clean shutdown that frees every port.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn demo_serves_pages_widgets_and_shares() {
        let demo = tokio::time::timeout(
            Duration::from_secs(120),
            Demo::start(DemoOptions::default()),
        )
        .await
        .expect("the demo starts in time")
        .expect("the demo starts");
        let urls = demo.site_urls();
        assert_eq!(urls.len(), 2);
        let http = reqwest::Client::new();

        for url in &urls {
            let page = http.get(url).send().await.unwrap();
            assert_eq!(page.status(), 200);
            assert!(
                page.headers()["content-security-policy"]
                    .to_str()
                    .unwrap()
                    .contains("default-src 'self'")
            );
            let html = page.text().await.unwrap();
            assert!(html.contains("class=\"swarm-share\""));
            assert!(html.contains("integrity=\"sha384-"), "{html}");
            assert!(html.contains(&demo.info_hash().to_string()));

            let script = http
                .get(format!("{url}widgets/{ASSET_NAME}/button.js"))
                .send()
                .await
                .unwrap();
            assert_eq!(script.status(), 200);
            assert!(
                script.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("text/javascript")
            );
            assert!(script.text().await.unwrap().contains("swarmShareButton"));
        }

        let share = |body: &'static str| {
            http.post(format!("{}share", urls[0]))
                .header("content-type", "application/json")
                .body(body)
                .send()
        };
        for expected in [1, 2] {
            let answer = share(r#"{"url":"http://example.com/post"}"#).await.unwrap();
            assert_eq!(answer.status(), 200);
            let body: serde_json::Value = answer.json().await.unwrap();
            assert_eq!(body["count"], expected);
        }
        // Bad input: not JSON, no url, a URL that is not http(s), a URL too long, a body
        // over the limit.
        for bad in [
            "not json",
            r#"{"link":"http://example.com/"}"#,
            r#"{"url":"javascript:alert(1)"}"#,
        ] {
            assert_eq!(share(bad).await.unwrap().status(), 400, "{bad}");
        }
        let url_of = |len: usize| format!(r#"{{"url":"http://example.com/{}"}}"#, "a".repeat(len));
        for (body, status) in [
            (url_of(MAX_SHARE_URL_LEN), 400),
            (url_of(MAX_SHARE_BODY), 413),
        ] {
            let answer = http
                .post(format!("{}share", urls[0]))
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), status);
        }

        let stats = demo.stats().await;
        assert_eq!(stats.len(), 2);
        for site in &stats {
            assert!(site.complete, "{site:?}");
            assert_eq!(
                site.bytes_from_peers + site.bytes_from_http,
                site.total_bytes,
                "{site:?}"
            );
        }
        assert_eq!(stats[0].shares, 2);
        assert_eq!(stats[1].shares, 0);
        let served = demo.served(0);
        assert!(served.iter().any(|s| s.path == "/share" && s.status == 400));
        assert!(demo.served(7).is_empty());

        let addrs: Vec<SocketAddr> = urls
            .iter()
            .chain([&demo.tracker_url, &demo.webseed_url])
            .map(|url| {
                url.trim_start_matches("http://")
                    .trim_end_matches('/')
                    .parse()
                    .unwrap()
            })
            .collect();
        let work_dir = demo.work_dir().to_owned();
        tokio::time::timeout(Duration::from_secs(60), demo.shutdown())
            .await
            .expect("the demo stops in time")
            .expect("the demo stops cleanly");
        assert!(!work_dir.exists());
        for addr in addrs {
            std::net::TcpListener::bind(addr).expect("the port is free again");
        }
    }
}
