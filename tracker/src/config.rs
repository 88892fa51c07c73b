//! The tracker's configuration: one struct, read from TOML, every field documented.
//!
//! Every field has a default (`impl Default`), so an empty file is a valid configuration and
//! `--print-config` can print the whole set to start from. Unknown keys are refused rather than
//! ignored, so a misspelt limit fails loudly at start instead of silently keeping its default.
//! Durations are whole seconds in fields named `..._secs`, sizes are bytes.
//!
//! The library never reads the environment or the command line: the binary reads the file and
//! calls [`Config::from_toml`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use swarmcdn_proto::tracker::MAX_SCRAPE_HASHES;

use crate::swarm::StoreConfig;

/// The most peers an operator may allow per announce answer ([`Config::numwant_max`]).
/// Beyond a few hundred, answers grow without helping: a client keeps few connections open.
pub const NUMWANT_MAX_LIMIT: u32 = 1_000;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The text is not TOML, has a key this version does not know, or a value of the wrong
    /// type. The message names the key and its line.
    #[error("cannot read tracker configuration: {0}")]
    Parse(#[from] toml::de::Error),
    /// The values parse but do not make sense together.
    #[error("invalid tracker configuration: {field}: {reason}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The configuration could not be written as TOML.
    #[error("cannot write tracker configuration: {0}")]
    Serialize(#[from] toml::ser::Error),
}

/// Everything the tracker service can be told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address and port the HTTP server (announce, scrape, release API, metrics) listens on.
    ///
    /// Default `127.0.0.1:6969`: loopback, so a tracker started with defaults is reachable
    /// from nowhere until its operator decides. Public trackers listen on `0.0.0.0:6969` or
    /// `[::]:6969`, usually behind a reverse proxy (see `trusted_proxies`).
    pub listen: SocketAddr,

    /// The registry's SQLite database file (created if missing). `:memory:` keeps the registry
    /// in memory, losing every registration at exit: for trials only.
    pub database: PathBuf,

    /// Seconds a client should wait between announces (BEP 3 `interval`).
    ///
    /// Default 300 (five minutes), shorter than the common 1800: our peers are long-lived site
    /// servers in small release swarms, and a shorter interval means a new site is found, and a
    /// dead one forgotten, within minutes. At a million peers it costs about 3,300 announces a
    /// second, a fraction of one core.
    pub announce_interval_secs: u32,

    /// Seconds a client must at least wait between announces (`min interval`).
    pub min_announce_interval_secs: u32,

    /// A peer that has not announced for this many announce intervals is dropped from its
    /// swarm. Default 2: one lost or late announce does not drop a peer, two do.
    pub peer_timeout_intervals: u32,

    /// Seconds between sweeps that drop timed-out peers. Between sweeps, timed-out peers are
    /// still counted but never handed out.
    pub purge_interval_secs: u32,

    /// Seconds between re-reads of the registered torrents from the registry; 0 turns the
    /// re-read off.
    ///
    /// The announce path checks an in-memory copy of the registered set. The publish API
    /// keeps that copy in step at once, but a change made to the database by another process
    /// (`swarmcdn-tracker publisher remove`, a second tracker on the same file) reaches it only
    /// through this re-read: announces for a removed publisher's torrents are refused, and
    /// their swarms dropped, within this many seconds; a release added elsewhere becomes
    /// announceable as quickly. Default 30: a scan of the small torrents table twice a minute.
    /// With 0, such changes take effect at the next restart.
    pub registry_refresh_secs: u32,

    /// Peers returned to an announce that does not say how many it wants (`numwant`).
    pub numwant_default: u32,

    /// The most peers returned to one announce, whatever it asks for (at most
    /// [`NUMWANT_MAX_LIMIT`]).
    pub numwant_max: u32,

    /// The most peers one swarm holds. A new peer beyond that still gets peers but is not
    /// stored. Bounds the memory one torrent can take (about 50 bytes a peer). Default 200,000:
    /// twice the largest swarm we plan for.
    pub max_peers_per_torrent: u32,

    /// The most info-hashes one scrape request may ask about (at most [`MAX_SCRAPE_HASHES`]);
    /// a longer request is refused.
    pub max_scrape_hashes: u32,

    /// Reverse proxies whose `X-Forwarded-For` header is believed. A request from any other
    /// address is taken to come from its socket's peer address, whatever its headers say.
    /// Empty by default: with no proxy in front, the header is a client's free claim.
    pub trusted_proxies: Vec<IpAddr>,

    /// Whether `GET /metrics` serves Prometheus metrics. The endpoint is unauthenticated: keep
    /// it away from the public side of a reverse proxy.
    pub metrics_enabled: bool,

    /// Whether a client connection stays open for further requests after a response (HTTP/1.1
    /// keep-alive). Default on: a site announces every few minutes and fetches assets, and
    /// reusing its connection saves a TCP handshake per request. Off, the server answers every
    /// request with `Connection: close` and closes the connection: for deployments behind a
    /// load balancer that must spread every request anew.
    pub keep_alive: bool,

    /// Bounds on what one client can make the server hold or do.
    pub limits: Limits,
}

/// Bounds on requests and connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Longest accepted query string, in bytes. An announce carries two percent-encoded
    /// 20-byte ids and a few numbers (under 400 bytes); a scrape carries one `info_hash` per
    /// torrent (up to 63 bytes each), so this also caps scrapes.
    pub max_query_bytes: usize,

    /// Largest accepted body of a publish request, in bytes: metainfo (20 bytes of hash per
    /// piece) plus the signed manifest (a few hundred bytes per file).
    pub max_publish_body_bytes: usize,

    /// Seconds a request may take, from its first byte to the end of its response, before it
    /// is cut off. Stops slow clients from holding connections open.
    pub request_timeout_secs: u64,

    /// Seconds a connection may go without sending or receiving a byte before it is closed:
    /// bounds clients that send their headers slowly or open connections and never use them,
    /// and idle kept-alive connections.
    pub idle_timeout_secs: u64,

    /// Most connections served at once; further ones wait to be accepted. Keep the process's
    /// open-file limit above this.
    pub max_connections: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 6969),
            database: PathBuf::from("swarmcdn-tracker.sqlite3"),
            announce_interval_secs: 300,
            min_announce_interval_secs: 60,
            peer_timeout_intervals: 2,
            purge_interval_secs: 60,
            registry_refresh_secs: 30,
            numwant_default: 50,
            numwant_max: 50,
            max_peers_per_torrent: 200_000,
            max_scrape_hashes: 64,
            trusted_proxies: Vec::new(),
            metrics_enabled: true,
            keep_alive: true,
            limits: Limits::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_query_bytes: 8 * 1024,
            max_publish_body_bytes: 16 * 1024 * 1024,
            request_timeout_secs: 10,
            idle_timeout_secs: 60,
            max_connections: 8_192,
        }
    }
}

impl Config {
    /// Reads a configuration from TOML text; missing keys take their defaults. The result is
    /// [validated](Config::validate).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// This configuration as TOML text that [`Config::from_toml`] reads back unchanged (what
    /// `--print-config` prints).
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        Ok(toml::to_string_pretty(self)?)
    }

    /// Checks that the values make sense together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, reason: &str| {
            Err(ConfigError::Invalid {
                field,
                reason: reason.to_owned(),
            })
        };
        if self.announce_interval_secs == 0 {
            return invalid("announce_interval_secs", "must be at least 1");
        }
        if self.min_announce_interval_secs > self.announce_interval_secs {
            return invalid(
                "min_announce_interval_secs",
                "must not exceed announce_interval_secs",
            );
        }
        if self.peer_timeout_intervals == 0 {
            return invalid("peer_timeout_intervals", "must be at least 1");
        }
        if self
            .announce_interval_secs
            .checked_mul(self.peer_timeout_intervals)
            .is_none()
        {
            return invalid(
                "peer_timeout_intervals",
                "announce_interval_secs times this overflows",
            );
        }
        if self.purge_interval_secs == 0 {
            return invalid("purge_interval_secs", "must be at least 1");
        }
        if self.numwant_max > NUMWANT_MAX_LIMIT {
            return invalid("numwant_max", "must be at most 1000");
        }
        if self.numwant_default > self.numwant_max {
            return invalid("numwant_default", "must not exceed numwant_max");
        }
        if self.max_peers_per_torrent == 0 {
            return invalid("max_peers_per_torrent", "must be at least 1");
        }
        if self.max_scrape_hashes == 0 {
            return invalid("max_scrape_hashes", "must be at least 1");
        }
        if self.max_scrape_hashes as usize > MAX_SCRAPE_HASHES {
            return invalid(
                "max_scrape_hashes",
                "must be at most 64 (the wire parser's bound)",
            );
        }
        let limits = &self.limits;
        if limits.max_query_bytes == 0 {
            return invalid("limits.max_query_bytes", "must be at least 1");
        }
        if limits.max_publish_body_bytes == 0 {
            return invalid("limits.max_publish_body_bytes", "must be at least 1");
        }
        if limits.request_timeout_secs == 0 {
            return invalid("limits.request_timeout_secs", "must be at least 1");
        }
        if limits.idle_timeout_secs == 0 {
            return invalid("limits.idle_timeout_secs", "must be at least 1");
        }
        if limits.max_connections == 0 {
            return invalid("limits.max_connections", "must be at least 1");
        }
        Ok(())
    }

    /// Seconds after its last announce that a peer is dropped.
    pub fn peer_timeout_secs(&self) -> u32 {
        self.announce_interval_secs
            .saturating_mul(self.peer_timeout_intervals)
    }

    /// The swarm store's settings.
    pub fn store_config(&self) -> StoreConfig {
        StoreConfig {
            peer_timeout_secs: self.peer_timeout_secs(),
            numwant_default: self.numwant_default,
            numwant_max: self.numwant_max,
            max_peers_per_torrent: self.max_peers_per_torrent,
            ..StoreConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_through_toml() {
        let text = Config::default().to_toml().unwrap();
        assert_eq!(Config::from_toml(&text).unwrap(), Config::default());
        // Every field is written out, nested limits included.
        for key in [
            "listen",
            "announce_interval_secs",
            "trusted_proxies",
            "registry_refresh_secs = 30",
            "[limits]",
        ] {
            assert!(text.contains(key), "{key} missing from:\n{text}");
        }
    }

    #[test]
    fn a_changed_config_round_trips() {
        let mut config = Config {
            listen: "[::]:443".parse().unwrap(),
            trusted_proxies: vec!["10.0.0.1".parse().unwrap(), "::1".parse().unwrap()],
            metrics_enabled: false,
            keep_alive: false,
            ..Config::default()
        };
        config.limits.max_connections = 7;
        let text = config.to_toml().unwrap();
        assert_eq!(Config::from_toml(&text).unwrap(), config);
    }

    #[test]
    fn empty_text_is_the_defaults_and_partial_text_keeps_other_defaults() {
        assert_eq!(Config::from_toml("").unwrap(), Config::default());
        let config =
            Config::from_toml("numwant_default = 20\n[limits]\nrequest_timeout_secs = 3\n")
                .unwrap();
        assert_eq!(config.numwant_default, 20);
        assert_eq!(config.limits.request_timeout_secs, 3);
        assert_eq!(
            config.limits.max_connections,
            Limits::default().max_connections
        );
        assert_eq!(config.numwant_max, Config::default().numwant_max);
        // 0 is allowed: it turns the registry re-read off.
        let off = Config::from_toml("registry_refresh_secs = 0\n").unwrap();
        assert_eq!(off.registry_refresh_secs, 0);
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let error = Config::from_toml("anounce_interval_secs = 10\n").unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, ConfigError::Parse(_)));
        assert!(message.contains("anounce_interval_secs"), "{message}");

        let error = Config::from_toml("[limits]\nmax_conections = 1\n").unwrap_err();
        assert!(error.to_string().contains("max_conections"), "{error}");
    }

    #[test]
    fn wrong_types_are_rejected() {
        assert!(matches!(
            Config::from_toml("listen = \"not an address\"\n"),
            Err(ConfigError::Parse(_))
        ));
        assert!(matches!(
            Config::from_toml("announce_interval_secs = -5\n"),
            Err(ConfigError::Parse(_))
        ));
    }

    #[test]
    fn inconsistent_values_are_rejected() {
        let cases = [
            ("announce_interval_secs = 0", "announce_interval_secs"),
            (
                "min_announce_interval_secs = 301",
                "min_announce_interval_secs",
            ),
            ("peer_timeout_intervals = 0", "peer_timeout_intervals"),
            (
                "peer_timeout_intervals = 4000000000",
                "peer_timeout_intervals",
            ),
            ("purge_interval_secs = 0", "purge_interval_secs"),
            ("numwant_default = 51", "numwant_default"),
            ("numwant_max = 1001", "numwant_max"),
            ("max_peers_per_torrent = 0", "max_peers_per_torrent"),
            ("max_scrape_hashes = 0", "max_scrape_hashes"),
            ("max_scrape_hashes = 65", "max_scrape_hashes"),
            (
                "[limits]\nidle_timeout_secs = 0",
                "limits.idle_timeout_secs",
            ),
            ("[limits]\nmax_query_bytes = 0", "limits.max_query_bytes"),
            (
                "[limits]\nmax_publish_body_bytes = 0",
                "limits.max_publish_body_bytes",
            ),
            (
                "[limits]\nrequest_timeout_secs = 0",
                "limits.request_timeout_secs",
            ),
            ("[limits]\nmax_connections = 0", "limits.max_connections"),
        ];
        for (text, field) in cases {
            match Config::from_toml(text) {
                Err(ConfigError::Invalid { field: f, .. }) => assert_eq!(f, field, "{text}"),
                other => panic!("{text}: expected Invalid({field}), got {other:?}"),
            }
        }
    }

    #[test]
    fn store_config_follows_the_service_config() {
        let config = Config::from_toml(
            "announce_interval_secs = 100\npeer_timeout_intervals = 3\nnumwant_max = 80\n",
        )
        .unwrap();
        let store = config.store_config();
        assert_eq!(store.peer_timeout_secs, 300);
        assert_eq!(store.numwant_max, 80);
        assert_eq!(store.numwant_default, 50);
        assert_eq!(store.max_peers_per_torrent, 200_000);
    }
}
