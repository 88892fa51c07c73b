//! Everything a [`Client`](crate::Client) can be told, in one struct with documented defaults.
//!
//! The defaults suit the job the library is built for: a site's server fetching small
//! releases (a few KiB to a few MiB) that it then serves and seeds for a long time. So the
//! fallback to HTTP is quick (a site never waits long for peers), the cache keeps small
//! releases in memory and larger ones on disk, and seeding is on but bounded (connection
//! limits, an optional upload cap). A library never reads the environment or argv: the
//! embedding program builds this struct (through [`ClientBuilder`](crate::ClientBuilder)).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use swarmcdn_proto::manifest::VerifyingKey;

use crate::choker::ChokerConfig;
use crate::peer::ConnectionOptions;
use crate::scheduler::SchedulerConfig;
use crate::storage::{
    CacheMode, DEFAULT_DISK_BUDGET, DEFAULT_MEMORY_BUDGET, DEFAULT_MEMORY_THRESHOLD,
};
use crate::webseed::WebSeedLimits;

/// Default [`ClientConfig::listen_addr`]: every interface, a port the OS picks.
pub const DEFAULT_LISTEN_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);
/// Default [`ClientConfig::tracker_timeout`].
pub const DEFAULT_TRACKER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`ClientConfig::stopped_announce_timeout`].
pub const DEFAULT_STOPPED_ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(2);
/// Default [`ClientConfig::lookup_announce_wait`].
pub const DEFAULT_LOOKUP_ANNOUNCE_WAIT: Duration = Duration::from_millis(50);
/// Default [`ClientConfig::announce_retry_min`].
pub const DEFAULT_ANNOUNCE_RETRY_MIN: Duration = Duration::from_secs(2);
/// Default [`ClientConfig::announce_retry_max`].
pub const DEFAULT_ANNOUNCE_RETRY_MAX: Duration = Duration::from_secs(300);
/// Default [`ClientConfig::max_peers_per_torrent`].
pub const DEFAULT_MAX_PEERS_PER_TORRENT: usize = 50;
/// Default [`ClientConfig::max_concurrent_dials`].
pub const DEFAULT_MAX_CONCURRENT_DIALS: usize = 8;
/// Default [`ClientConfig::snub_timeout`].
pub const DEFAULT_SNUB_TIMEOUT: Duration = Duration::from_secs(5);
/// Default [`ClientConfig::metadata_timeout`].
pub const DEFAULT_METADATA_TIMEOUT: Duration = Duration::from_secs(30);
/// Default [`ClientConfig::get_timeout`].
pub const DEFAULT_GET_TIMEOUT: Duration = Duration::from_secs(60);
/// Default [`ClientConfig::numwant`].
pub const DEFAULT_NUMWANT: u32 = 50;
/// Default [`ClientConfig::update_interval`]: a new version reaches sites within a minute.
pub const DEFAULT_UPDATE_INTERVAL: Duration = Duration::from_secs(60);
/// The shortest [`ClientConfig::update_interval`] honoured (shorter ones are raised to it).
pub const MIN_UPDATE_INTERVAL: Duration = Duration::from_millis(10);

/// How a [`Client`](crate::Client) behaves. Build it with
/// [`Client::builder`](crate::Client::builder); every field has a default.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Base URLs of the swarmcdn trackers to ask for manifests and metainfo
    /// (`http://tracker.example:6969`), tried in order. Every release the client seeds is
    /// also announced to their `/announce`, besides its torrent's own trackers. Default: none (only
    /// [`Client::add_torrent`](crate::Client::add_torrent) works then).
    pub trackers: Vec<String>,
    /// Publisher keys whose manifests are trusted. A manifest signed by any other key is
    /// refused. Default: none (so [`Client::get`](crate::Client::get) refuses everything until
    /// a key is pinned).
    pub trusted_keys: Vec<VerifyingKey>,
    /// Where the peer listener binds. Default [`DEFAULT_LISTEN_ADDR`].
    pub listen_addr: SocketAddr,
    /// The cache folder: releases too large for memory, the torrents next to them and the
    /// verified manifests. Releases found there at start-up are verified and seeded again.
    /// `None` (the default) keeps everything in memory and forgets it at exit. Several
    /// clients may share one folder (see [`LOCK_FILE`](crate::client::LOCK_FILE)).
    pub cache_dir: Option<PathBuf>,
    /// Whose the cache folder is. [`CacheMode::ReadWrite`] (the default): the client's own,
    /// downloaded into, repaired and evicted from. [`CacheMode::SeedOnly`]: someone else's
    /// store (the seeder's), from which complete, intact releases are seeded and nothing is
    /// ever changed; a damaged release is skipped with a warning naming its bad pieces, and
    /// a release not complete in it cannot be fetched. A seed-only client adds nothing to
    /// the folder (no lock, no peer entry, verified manifests kept in memory) and reads it
    /// whoever else holds its lock.
    pub cache_mode: CacheMode,
    /// The most bytes of release content kept in memory. Default [`DEFAULT_MEMORY_BUDGET`].
    pub memory_budget: u64,
    /// Releases up to this size are kept in memory when a cache folder is set, larger ones
    /// on disk. (Without a cache folder everything is in memory.) Default
    /// [`DEFAULT_MEMORY_THRESHOLD`].
    pub memory_threshold: u64,
    /// The most bytes of release content kept on disk. Default [`DEFAULT_DISK_BUDGET`].
    pub disk_budget: u64,
    /// Upload cap for block data sent to peers, in KiB per second, shared by every
    /// connection. `None` (the default): no cap.
    pub upload_rate_kib: Option<u32>,
    /// Peer-wire timeouts and bounds, and the client-wide connection limit
    /// (`max_connections`). The upload limiter inside is made from
    /// [`ClientConfig::upload_rate_kib`] when that is set; otherwise the one given here (a
    /// budget shared with the embedding program, see
    /// [`ClientBuilder::upload_limiter`](crate::ClientBuilder::upload_limiter)) is used.
    pub connection: ConnectionOptions,
    /// The most peers one torrent keeps connected.
    pub max_peers_per_torrent: usize,
    /// The most outgoing connection attempts one torrent has in flight.
    pub max_concurrent_dials: usize,
    /// Who one torrent uploads to: regular slots by rate, an optimistic slot, rechoke
    /// timing (see [`crate::choker`]).
    pub choker: ChokerConfig,
    /// The client's one snubbing setting. A peer that has had block requests of ours
    /// outstanding for this long without sending a block is *snubbing* us: its session
    /// disconnects it (its pieces then count as nobody's, so they go to HTTP or other
    /// peers, and its upload slot is free for the choker to give away) and does not dial
    /// it again for [`SNUB_REDIAL_DELAY`](crate::session::SNUB_REDIAL_DELAY). The choker
    /// has no snub clock of its own. Default [`DEFAULT_SNUB_TIMEOUT`].
    pub snub_timeout: Duration,
    /// The piece scheduler's settings, among them the HTTP fallback policy:
    /// [`SchedulerConfig::deadline`] (how late a peer block may be before the piece goes to
    /// HTTP) and [`SchedulerConfig::initial_peer_wait`] (how long pieces no peer has wait for
    /// peers at start).
    pub scheduler: SchedulerConfig,
    /// Peers dialled for every torrent besides those trackers hand out (e.g. a site's own
    /// other servers, or a seeder's address). When no tracker answers and no manifest is
    /// cached, `get` also asks them for the release's signed manifest. The clients found on
    /// a shared cache folder are used the same way but never added here.
    pub bootstrap_peers: Vec<SocketAddr>,
    /// Bounds for web-seed (HTTP) requests: timeouts, concurrency, backoff clamps.
    pub web_seed: WebSeedLimits,
    /// Timeout of one tracker request (manifest, metainfo, announce).
    pub tracker_timeout: Duration,
    /// How long the last announces of a session may take when it stops (an announce under
    /// way, then `stopped`).
    pub stopped_announce_timeout: Duration,
    /// A download found through a release lookup already knows the swarm, so its first
    /// announce waits until it has a piece to offer, or at most this long. The default,
    /// 50 ms, lets a small release finish its peer exchange without an announce running
    /// beside it, and is short enough for a flash crowd's clients to find each other: with
    /// 1 s, 20 clients sharing 16 MiB from a 20 MB/s-capped seeder drew 1.8 to 1.95
    /// copies from it instead of 1.15 to 1.3.
    pub lookup_announce_wait: Duration,
    /// The first wait before announcing again to a tracker that could not be reached; it
    /// doubles on each failure up to [`ClientConfig::announce_retry_max`].
    pub announce_retry_min: Duration,
    /// The longest wait between attempts to reach a tracker.
    pub announce_retry_max: Duration,
    /// Peers asked for in each announce.
    pub numwant: u32,
    /// How long [`Client::add_magnet`](crate::Client::add_magnet) (or a `get` during a
    /// tracker outage) looks for a peer that gives the torrent's metadata (BEP 9), when no
    /// tracker has the torrent. It also bounds asking the bootstrap peers for a manifest,
    /// up to 10 s.
    pub metadata_timeout: Duration,
    /// How often the trackers are asked for a newer version of every release the client
    /// serves as "latest" (see [`Client::latest`](crate::Client::latest)); a newer one is
    /// downloaded and verified in full before it replaces the one served. `None` (or zero)
    /// turns polling off. Default [`DEFAULT_UPDATE_INTERVAL`].
    pub update_interval: Option<Duration>,
    /// The longest a whole [`Client::get`](crate::Client::get) (manifest, metainfo,
    /// download, verification) or `add_*` call may take before it fails with a `Timeout`
    /// error. A download cut off this way is never served; it goes on in the background,
    /// holding no lease (so a later `get` resumes it, and the cache may evict it for room).
    /// Default [`DEFAULT_GET_TIMEOUT`], which leaves room for the slowest path that ends
    /// with its own error (a tracker outage: one [`ClientConfig::tracker_timeout`] per
    /// tracker, the bootstrap peers asked for the manifest for up to 10 s, then one
    /// [`ClientConfig::metadata_timeout`] for its metainfo); raise it with either of those,
    /// or with several trackers.
    pub get_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            trackers: Vec::new(),
            trusted_keys: Vec::new(),
            listen_addr: DEFAULT_LISTEN_ADDR,
            cache_dir: None,
            cache_mode: CacheMode::ReadWrite,
            memory_budget: DEFAULT_MEMORY_BUDGET,
            memory_threshold: DEFAULT_MEMORY_THRESHOLD,
            disk_budget: DEFAULT_DISK_BUDGET,
            upload_rate_kib: None,
            connection: ConnectionOptions::default(),
            max_peers_per_torrent: DEFAULT_MAX_PEERS_PER_TORRENT,
            max_concurrent_dials: DEFAULT_MAX_CONCURRENT_DIALS,
            choker: ChokerConfig::default(),
            snub_timeout: DEFAULT_SNUB_TIMEOUT,
            scheduler: SchedulerConfig::default(),
            bootstrap_peers: Vec::new(),
            web_seed: WebSeedLimits::default(),
            tracker_timeout: DEFAULT_TRACKER_TIMEOUT,
            stopped_announce_timeout: DEFAULT_STOPPED_ANNOUNCE_TIMEOUT,
            lookup_announce_wait: DEFAULT_LOOKUP_ANNOUNCE_WAIT,
            announce_retry_min: DEFAULT_ANNOUNCE_RETRY_MIN,
            announce_retry_max: DEFAULT_ANNOUNCE_RETRY_MAX,
            numwant: DEFAULT_NUMWANT,
            metadata_timeout: DEFAULT_METADATA_TIMEOUT,
            update_interval: Some(DEFAULT_UPDATE_INTERVAL),
            get_timeout: DEFAULT_GET_TIMEOUT,
        }
    }
}

impl ClientConfig {
    /// The config with every count brought to at least 1 and the retry bounds ordered.
    /// (The choker and scheduler correct their own settings.)
    pub(crate) fn sanitized(mut self) -> Self {
        self.max_peers_per_torrent = self.max_peers_per_torrent.max(1);
        self.max_concurrent_dials = self.max_concurrent_dials.max(1);
        self.snub_timeout = self.snub_timeout.max(Duration::from_millis(10));
        self.get_timeout = self.get_timeout.max(Duration::from_millis(10));
        self.announce_retry_min = self.announce_retry_min.max(Duration::from_millis(10));
        self.announce_retry_max = self.announce_retry_max.max(self.announce_retry_min);
        self.update_interval = self
            .update_interval
            .filter(|i| !i.is_zero())
            .map(|i| i.max(MIN_UPDATE_INTERVAL));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_memory_only_with_quick_fallback() {
        let c = ClientConfig::default();
        assert!(c.cache_dir.is_none());
        assert_eq!(c.listen_addr.port(), 0);
        assert!(c.scheduler.initial_peer_wait <= Duration::from_secs(1));
        assert!(c.announce_retry_min <= c.announce_retry_max);
        assert!(c.upload_rate_kib.is_none());
    }

    #[test]
    fn sanitized_keeps_counts_positive_and_bounds_ordered() {
        let c = ClientConfig {
            max_peers_per_torrent: 0,
            max_concurrent_dials: 0,
            announce_retry_min: Duration::from_secs(10),
            announce_retry_max: Duration::from_secs(1),
            get_timeout: Duration::ZERO,
            ..ClientConfig::default()
        }
        .sanitized();
        assert_eq!(
            c.get_timeout,
            Duration::from_millis(10),
            "a zero timeout would fail every get"
        );
        assert_eq!((c.max_peers_per_torrent, c.max_concurrent_dials), (1, 1));
        assert_eq!(c.announce_retry_max, Duration::from_secs(10));
    }

    #[test]
    fn a_zero_update_interval_turns_polling_off_and_tiny_ones_are_raised() {
        assert_eq!(
            ClientConfig::default().sanitized().update_interval,
            Some(DEFAULT_UPDATE_INTERVAL)
        );
        let off = ClientConfig {
            update_interval: Some(Duration::ZERO),
            ..ClientConfig::default()
        };
        assert_eq!(off.sanitized().update_interval, None);
        let tiny = ClientConfig {
            update_interval: Some(Duration::from_micros(1)),
            ..ClientConfig::default()
        };
        assert_eq!(tiny.sanitized().update_interval, Some(MIN_UPDATE_INTERVAL));
    }
}
