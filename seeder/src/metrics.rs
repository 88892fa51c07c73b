//! What `/metrics` shows (Prometheus text format).
//!
//! The question an origin's operator asks is "how much of my uplink goes to HTTP, how much to
//! the swarm, and for which release", so bytes are counted per release and per path (web
//! seed, peer wire). The per-release counters are looked up once, when a release starts being
//! served, and then cloned into every response (a counter is a shared atomic), so the hot path
//! does one atomic add per chunk and no label lookup. A release's series are removed when it
//! stops being served, which keeps the label set bounded by the store.
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `swarmcdn_seeder_webseed_bytes_total` | `info_hash`, `name`, `version` | body bytes sent by the web seed |
//! | `swarmcdn_seeder_peer_bytes_total` | `info_hash`, `name`, `version` | bytes uploaded to peers (the peer engine's count, brought up to date when `/metrics` is read) |
//! | `swarmcdn_seeder_webseed_requests_total` | `status` | web-seed responses by status code |
//! | `swarmcdn_seeder_webseed_throttled_total` | | requests turned away with `503` (over the web seed's share) |
//! | `swarmcdn_seeder_releases` | | releases being served |
//! | `swarmcdn_seeder_startup_verified_bytes_total` | `by` (`store`, `peer_engine`) | bytes re-hashed when `serve` started, by the store's verify pass or the peer engine's restore: what a restart costs |

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use swarmcdn_proto::InfoHash;

/// The labels of a per-release series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReleaseLabels {
    info_hash: String,
    name: String,
    version: String,
}

/// The label of a per-status series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: u16,
}

/// The label of the start-up hashing series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerifierLabels {
    by: String,
}

/// The seeder's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    webseed_bytes: Family<ReleaseLabels, Counter>,
    peer_bytes: Family<ReleaseLabels, Counter>,
    requests: Family<StatusLabels, Counter>,
    throttled: Counter,
    releases: Gauge,
    startup_verified: Family<VerifierLabels, Counter>,
}

/// The byte counters of one release, cheap to clone into each response.
#[derive(Debug, Clone, Default)]
pub struct ReleaseCounters {
    /// Bytes sent by the web seed.
    pub webseed: Counter,
    /// Bytes uploaded to peers.
    pub peer: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Fresh, zeroed metrics.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("swarmcdn_seeder");
        let webseed_bytes = Family::<ReleaseLabels, Counter>::default();
        let peer_bytes = Family::<ReleaseLabels, Counter>::default();
        let requests = Family::<StatusLabels, Counter>::default();
        let throttled = Counter::default();
        let releases = Gauge::default();
        let startup_verified = Family::<VerifierLabels, Counter>::default();
        registry.register(
            "webseed_bytes",
            "Body bytes sent by the web seed, per release",
            webseed_bytes.clone(),
        );
        registry.register(
            "peer_bytes",
            "Bytes uploaded to peers over the peer wire, per release",
            peer_bytes.clone(),
        );
        registry.register(
            "webseed_requests",
            "Web-seed responses by HTTP status",
            requests.clone(),
        );
        registry.register(
            "webseed_throttled",
            "Web-seed requests turned away with 503 because the web seed was over its share of \
             the upload cap",
            throttled.clone(),
        );
        registry.register("releases", "Releases being served", releases.clone());
        registry.register(
            "startup_verified_bytes",
            "Bytes re-hashed when serve started, by the store's verify pass or the peer engine",
            startup_verified.clone(),
        );
        Self {
            registry,
            webseed_bytes,
            peer_bytes,
            requests,
            throttled,
            releases,
            startup_verified,
        }
    }

    fn labels(info_hash: &InfoHash, name: &str, version: &str) -> ReleaseLabels {
        ReleaseLabels {
            info_hash: info_hash.to_hex(),
            name: name.to_owned(),
            version: version.to_owned(),
        }
    }

    /// The counters of a release (created at zero the first time).
    pub fn release(&self, info_hash: &InfoHash, name: &str, version: &str) -> ReleaseCounters {
        let labels = Self::labels(info_hash, name, version);
        ReleaseCounters {
            webseed: self.webseed_bytes.get_or_create(&labels).clone(),
            peer: self.peer_bytes.get_or_create(&labels).clone(),
        }
    }

    /// Drops a release's series (it is no longer served).
    pub fn forget_release(&self, info_hash: &InfoHash, name: &str, version: &str) {
        let labels = Self::labels(info_hash, name, version);
        self.webseed_bytes.remove(&labels);
        self.peer_bytes.remove(&labels);
    }

    /// Counts a web-seed response.
    pub fn response(&self, status: u16) {
        self.requests.get_or_create(&StatusLabels { status }).inc();
    }

    /// Counts a request turned away with `503`.
    pub fn throttled(&self) {
        self.throttled.inc();
    }

    /// Counts `bytes` re-hashed at start-up by `by` (`store` or `peer_engine`).
    pub fn startup_verified(&self, by: &str, bytes: u64) {
        self.startup_verified
            .get_or_create(&VerifierLabels { by: by.to_owned() })
            .inc_by(bytes);
    }

    /// Sets the number of releases served.
    pub fn set_releases(&self, count: usize) {
        self.releases.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_show_up_per_release_and_go_away() {
        let metrics = Metrics::new();
        let ih = InfoHash::new([1; 20]);
        let counters = metrics.release(&ih, "a", "1.0.0");
        counters.webseed.inc_by(42);
        metrics.response(200);
        metrics.response(200);
        metrics.throttled();
        metrics.set_releases(1);
        metrics.startup_verified("store", 7);
        let text = metrics.encode();
        let expected = format!(
            "swarmcdn_seeder_webseed_bytes_total{{info_hash=\"{}\",name=\"a\",version=\"1.0.0\"}} 42",
            ih.to_hex()
        );
        assert!(text.contains(&expected), "{text}");
        assert!(
            text.contains("swarmcdn_seeder_webseed_requests_total{status=\"200\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("swarmcdn_seeder_webseed_throttled_total 1"),
            "{text}"
        );
        assert!(text.contains("swarmcdn_seeder_releases 1"), "{text}");
        assert!(
            text.contains("swarmcdn_seeder_startup_verified_bytes_total{by=\"store\"} 7"),
            "{text}"
        );
        metrics.forget_release(&ih, "a", "1.0.0");
        assert!(!metrics.encode().contains("name=\"a\""));
    }
}
