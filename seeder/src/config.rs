//! The seeder's configuration: one struct, read from TOML, every field documented.
//!
//! The publisher's commands (`publish`, `unpublish`, `list`, `verify`) and the daemon
//! (`serve`) share one file, because they share the store and the tracker: a release published
//! into a store is served from that same store by the daemon, without a restart. Every field
//! has a default (`impl Default`), so an empty file is a valid configuration and
//! `--print-config` prints the whole set to start from. Unknown keys are refused, so a misspelt
//! setting fails loudly instead of silently keeping its default. Sizes are bytes, durations
//! are in fields named `..._ms` or `..._secs`.
//!
//! The library never reads the environment or the command line: the binary layers the file,
//! the `SWARMCDN_*` environment variables and the flags (in that order, last wins) and hands
//! the result to the library.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The largest release `publish` accepts by default: 1 GiB, the size of a client's disk cache.
pub const DEFAULT_MAX_RELEASE_BYTES: u64 = 1024 * 1024 * 1024;

/// The port `serve` listens on by default, and the one in the default web-seed URL.
pub const DEFAULT_PORT: u16 = 7070;

/// The port `serve` accepts peer-wire connections on by default.
pub const DEFAULT_PEER_PORT: u16 = 6881;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The text is not TOML, has a key this version does not know, or a value of the wrong
    /// type. The message names the key and its line.
    #[error("cannot read the seeder configuration: {0}")]
    Parse(#[from] toml::de::Error),
    /// The values parse but do not make sense.
    #[error("invalid seeder configuration: `{field}` {reason}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// What is wrong and what to do.
        reason: String,
    },
    /// The configuration could not be written as TOML.
    #[error("cannot write the seeder configuration: {0}")]
    Serialize(#[from] toml::ser::Error),
}

/// Everything the seeder can be told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The folder holding the published releases, one folder per info-hash (created if
    /// missing). `publish` writes into it and `serve` serves from it, so both must be given
    /// the same folder. Default `swarmcdn-store` in the working directory.
    pub store: PathBuf,

    /// The tracker's base URL, e.g. `https://tracker.example.com`. `publish` registers
    /// releases at `<tracker>/api/v1/releases` and writes `<tracker>/announce` into every
    /// torrent. Default `http://127.0.0.1:6969` (a tracker started with its defaults).
    pub tracker: String,

    /// The publisher's signing key file, made once with `swarmcdn-seeder keygen`. It must not
    /// be readable by group or others (`chmod 600`). Default `swarmcdn-publisher.key`.
    pub key: PathBuf,

    /// The public base URL of this seeder's web seed: what clients on other machines use to
    /// reach `serve`. `publish` writes `<webseed_url>/webseed/<info-hash>/` into the torrent's
    /// `url-list` (BEP 19), so it must be right at publish time. An empty string publishes
    /// without a web seed. Default `http://127.0.0.1:7070` (only right for trials on one
    /// machine).
    pub webseed_url: String,

    /// The largest release (sum of its file sizes) `publish` accepts, in bytes. Default 1 GiB,
    /// the size of a client's disk cache: a larger release could never be cached by a site.
    pub max_release_bytes: u64,

    /// Seconds `publish` and `unpublish` wait for the tracker to answer one request.
    pub tracker_timeout_secs: u64,

    /// Address and port `serve` listens on for the web seed, `/metrics` and `/healthz`.
    /// Default `127.0.0.1:7070`: loopback, reachable from nowhere until the operator decides;
    /// an origin usually listens on `0.0.0.0:7070` behind a reverse proxy or CDN.
    pub listen: SocketAddr,

    /// Address and port `serve` accepts peer-wire connections on, to seed every served
    /// release to the swarm (the port is what the tracker hands to peers). Default
    /// `0.0.0.0:6881`, the usual BitTorrent port: peers on other machines must reach it.
    /// Port `0` picks a free port (tests).
    pub peer_listen: SocketAddr,

    /// Whether `serve` seeds over the peer wire at all (`false`: a web seed only). Default
    /// `true`. Note that the peer engine re-verifies the store when it starts and moves a
    /// damaged release aside (`S/H.partial`), whatever `verify_on_start` says; that check is
    /// then the start-up verify pass.
    pub peer_seeding: bool,

    /// Milliseconds between two looks at the store by `serve`: a release published while it
    /// runs is served within this time, one unpublished stops being served. Default 2000.
    pub store_poll_interval_ms: u64,

    /// Whether `serve` re-hashes every stored release when it starts (one verify pass) and
    /// leaves out damaged ones. Releases that appear later were hashed by `publish` and are
    /// served as they are. With `peer_seeding` on, the peer engine's start-up check is that
    /// pass (it always runs), so this setting only matters for a web seed alone. Default
    /// `true`.
    pub verify_on_start: bool,

    /// The most web-seed responses `serve` sends at once; further requests wait their turn.
    pub max_concurrent_requests: usize,

    /// The upload cap shared by web-seed responses and (when peer seeding runs) peer uploads,
    /// in bytes per second: one budget that both draw from. `0` means no cap: nothing is
    /// paced and the web seed never answers `503`.
    pub upload_limit_bytes_per_sec: u64,

    /// The web seed's share of the upload cap, in percent (1 to 100). The web seed may use the
    /// whole cap while peers are idle; but when the bytes it has already promised to send
    /// (the rest of the responses in flight) would take longer than
    /// `webseed_backlog_secs` at the rate it can count on (its share, plus what the peers
    /// leave unused of the rest), new requests get `503 Service Unavailable` with
    /// `Retry-After`, and clients turn to peers. Default 50.
    pub webseed_share_percent: u8,

    /// How many seconds of web-seed traffic (at the rate it can count on, see
    /// `webseed_share_percent`) may be promised before new requests are turned away.
    /// Default 2.
    pub webseed_backlog_secs: u32,

    /// The longest `Retry-After` the web seed sends, in seconds. Default 60.
    pub max_retry_after_secs: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            store: PathBuf::from("swarmcdn-store"),
            tracker: "http://127.0.0.1:6969".to_owned(),
            key: PathBuf::from("swarmcdn-publisher.key"),
            webseed_url: format!("http://127.0.0.1:{DEFAULT_PORT}"),
            max_release_bytes: DEFAULT_MAX_RELEASE_BYTES,
            tracker_timeout_secs: 30,
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, DEFAULT_PORT)),
            peer_listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, DEFAULT_PEER_PORT)),
            peer_seeding: true,
            store_poll_interval_ms: 2000,
            verify_on_start: true,
            max_concurrent_requests: 1024,
            upload_limit_bytes_per_sec: 0,
            webseed_share_percent: 50,
            webseed_backlog_secs: 2,
            max_retry_after_secs: 60,
        }
    }
}

impl Config {
    /// Parses and checks a TOML configuration; keys left out keep their defaults.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// This configuration as TOML that [`Config::from_toml`] reads back unchanged (what
    /// `--print-config` prints).
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        Ok(toml::to_string_pretty(self)?)
    }

    /// Checks that the values make sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, reason: &str| {
            Err(ConfigError::Invalid {
                field,
                reason: reason.to_owned(),
            })
        };
        if !(self.tracker.starts_with("http://") || self.tracker.starts_with("https://")) {
            return invalid("tracker", "must be an http:// or https:// URL");
        }
        let webseed_ok = self.webseed_url.is_empty()
            || self.webseed_url.starts_with("http://")
            || self.webseed_url.starts_with("https://");
        if !webseed_ok {
            return invalid(
                "webseed_url",
                "must be an http:// or https:// URL (or empty for no web seed)",
            );
        }
        if self.max_release_bytes == 0 {
            return invalid("max_release_bytes", "must be above 0");
        }
        if self.store_poll_interval_ms == 0 {
            return invalid("store_poll_interval_ms", "must be above 0");
        }
        if self.tracker_timeout_secs == 0 {
            return invalid("tracker_timeout_secs", "must be above 0");
        }
        if self.max_concurrent_requests == 0 {
            return invalid("max_concurrent_requests", "must be above 0");
        }
        if !(1..=100).contains(&self.webseed_share_percent) {
            return invalid("webseed_share_percent", "must be between 1 and 100");
        }
        if self.webseed_backlog_secs == 0 {
            return invalid("webseed_backlog_secs", "must be above 0");
        }
        if self.max_retry_after_secs == 0 {
            return invalid("max_retry_after_secs", "must be above 0");
        }
        if self.upload_limit_bytes_per_sec != 0 && self.upload_limit_bytes_per_sec < 1024 {
            return invalid(
                "upload_limit_bytes_per_sec",
                "must be 0 (no cap) or at least 1024 (the cap counts whole KiB)",
            );
        }
        Ok(())
    }

    /// The tracker URL without a trailing `/`.
    pub fn tracker_base(&self) -> &str {
        self.tracker.trim_end_matches('/')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_through_toml() {
        let config = Config::default();
        let text = config.to_toml().unwrap();
        assert_eq!(Config::from_toml(&text).unwrap(), config);
    }

    #[test]
    fn changed_values_round_trip_through_toml() {
        let config = Config {
            store: "/var/lib/swarmcdn".into(),
            upload_limit_bytes_per_sec: 10 * 1024 * 1024,
            webseed_share_percent: 25,
            verify_on_start: false,
            ..Config::default()
        };
        let text = config.to_toml().unwrap();
        assert_eq!(Config::from_toml(&text).unwrap(), config);
    }

    #[test]
    fn an_empty_file_gives_the_defaults() {
        assert_eq!(Config::from_toml("").unwrap(), Config::default());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let error = Config::from_toml("stroe = \"x\"\n").unwrap_err();
        assert!(error.to_string().contains("stroe"), "{error}");
    }

    #[test]
    fn nonsense_values_are_refused() {
        for text in [
            "webseed_share_percent = 0",
            "webseed_share_percent = 101",
            "tracker = \"ftp://x\"",
            "webseed_url = \"x\"",
            "store_poll_interval_ms = 0",
            "upload_limit_bytes_per_sec = 10",
            "max_release_bytes = 0",
        ] {
            assert!(
                matches!(Config::from_toml(text), Err(ConfigError::Invalid { .. })),
                "{text}"
            );
        }
        assert!(Config::from_toml("webseed_url = \"\"").is_ok());
    }

    #[test]
    fn tracker_base_drops_the_trailing_slash() {
        let config = Config {
            tracker: "http://t.example/".into(),
            ..Config::default()
        };
        assert_eq!(config.tracker_base(), "http://t.example");
    }
}
