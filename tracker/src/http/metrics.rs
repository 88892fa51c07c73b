//! Prometheus metrics: what the tracker counts, the layer that times every request, and the
//! `/metrics` endpoint.
//!
//! Counting must not slow the announce path, so the hot series are resolved once at start:
//! announces by event and latency by endpoint are plain arrays of counters and histograms
//! (each an atomic or two), indexed without a lookup. Only errors go through a labelled
//! family lookup, and errors are the rare case. Gauges that describe state (peers, seeders,
//! torrents) are not maintained on every announce at all: they are read from the swarm store
//! and the registered set when `/metrics` is scraped, which is when someone wants them.
//!
//! One layer ([`track`]) wraps every route: it times the request, and counts the error when
//! the response carries an [`ErrorReason`] (every [`super::Error`] does), or when a layer
//! below the handlers refused the request (timeout, unknown route) with an error status.
//!
//! | series | type | labels |
//! |---|---|---|
//! | `tracker_announces_total` | counter | `event`: none, started, completed, stopped, paused |
//! | `tracker_scrapes_total` | counter | |
//! | `tracker_releases_published_total` | counter | |
//! | `tracker_errors_total` | counter | `endpoint`, `reason` |
//! | `tracker_request_duration_seconds` | histogram | `endpoint` |
//! | `tracker_registry_refreshes_total` | counter | `result`: replaced, raced, failed |
//! | `tracker_registered_torrents` | gauge | |
//! | `tracker_swarms` | gauge | |
//! | `tracker_peers` | gauge | |
//! | `tracker_seeders` | gauge | |
//! | `tracker_open_connections` | gauge | |

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use swarmcdn_proto::tracker::AnnounceEvent;

use super::error::ErrorReason;
use super::{AppState, Error};

/// The part of the service a request went to: the `endpoint` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Endpoint {
    Announce,
    Scrape,
    Publish,
    Unpublish,
    Asset,
    Lookup,
    Torrent,
    Metrics,
    Health,
    Other,
}

impl Endpoint {
    const ALL: [Endpoint; 10] = [
        Endpoint::Announce,
        Endpoint::Scrape,
        Endpoint::Publish,
        Endpoint::Unpublish,
        Endpoint::Asset,
        Endpoint::Lookup,
        Endpoint::Torrent,
        Endpoint::Metrics,
        Endpoint::Health,
        Endpoint::Other,
    ];

    /// The label value.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Endpoint::Announce => "announce",
            Endpoint::Scrape => "scrape",
            Endpoint::Publish => "publish",
            Endpoint::Unpublish => "unpublish",
            Endpoint::Asset => "asset",
            Endpoint::Lookup => "lookup",
            Endpoint::Torrent => "torrent",
            Endpoint::Metrics => "metrics",
            Endpoint::Health => "health",
            Endpoint::Other => "other",
        }
    }

    /// The endpoint of a route, from the path pattern it matched (see `super::router`).
    fn of_route(route: Option<&str>) -> Self {
        match route {
            Some("/announce") => Endpoint::Announce,
            Some("/scrape") => Endpoint::Scrape,
            Some("/api/v1/releases") => Endpoint::Publish,
            Some("/api/v1/releases/{name}/{version}") => Endpoint::Unpublish,
            Some("/api/v1/assets/{name}" | "/api/v1/assets/{name}/{version}") => Endpoint::Asset,
            Some("/api/v1/lookup/{name}" | "/api/v1/lookup/{name}/{version}") => Endpoint::Lookup,
            Some("/api/v1/torrents/{info_hash}") => Endpoint::Torrent,
            Some("/metrics") => Endpoint::Metrics,
            Some("/healthz" | "/readyz") => Endpoint::Health,
            _ => Endpoint::Other,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EventLabels {
    event: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// How a re-read of the registered set ended: the `result` label of
/// `tracker_registry_refreshes_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum RefreshResult {
    /// The set was replaced by the registry's.
    Replaced,
    /// A publish raced the read; the set was left for the next period.
    Raced,
    /// The registry (or the swarm store) failed.
    Failed,
}

impl RefreshResult {
    const ALL: [RefreshResult; 3] = [
        RefreshResult::Replaced,
        RefreshResult::Raced,
        RefreshResult::Failed,
    ];

    const fn as_str(self) -> &'static str {
        match self {
            RefreshResult::Replaced => "replaced",
            RefreshResult::Raced => "raced",
            RefreshResult::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ErrorLabels {
    endpoint: &'static str,
    reason: &'static str,
}

/// The proto events, in the order of [`Metrics::announces`].
const EVENTS: [AnnounceEvent; 5] = [
    AnnounceEvent::None,
    AnnounceEvent::Started,
    AnnounceEvent::Completed,
    AnnounceEvent::Stopped,
    AnnounceEvent::Paused,
];

/// Every series the tracker exports. Cheap to update from any thread.
pub(crate) struct Metrics {
    registry: Registry,
    /// Indexed like [`EVENTS`].
    announces: [Counter; 5],
    scrapes: Counter,
    published: Counter,
    errors: Family<ErrorLabels, Counter>,
    /// Indexed like [`Endpoint::ALL`].
    latency: [Histogram; Endpoint::ALL.len()],
    /// Indexed like [`RefreshResult::ALL`].
    refreshes: [Counter; 3],
    registered: Gauge,
    swarms: Gauge,
    peers: Gauge,
    seeders: Gauge,
    connections: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("tracker");

        let announce_family = Family::<EventLabels, Counter>::default();
        let announces = EVENTS.map(|event| {
            let event = match event {
                AnnounceEvent::None => "none",
                other => other.as_str(),
            };
            announce_family
                .get_or_create(&EventLabels { event })
                .clone()
        });
        registry.register(
            "announces",
            "Announces answered with a peer list, by event",
            announce_family,
        );

        let scrapes = Counter::default();
        registry.register("scrapes", "Scrapes answered", scrapes.clone());
        let published = Counter::default();
        registry.register(
            "releases_published",
            "Releases registered through the publish API",
            published.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "errors",
            "Requests refused or failed, by endpoint and reason",
            errors.clone(),
        );

        // 50 us to about 1.6 s, doubling.
        let latency_family = Family::<EndpointLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
        });
        let latency = Endpoint::ALL.map(|endpoint| {
            latency_family
                .get_or_create(&EndpointLabels {
                    endpoint: endpoint.as_str(),
                })
                .clone()
        });
        registry.register_with_unit(
            "request_duration",
            "Time from request to response, by endpoint",
            prometheus_client::registry::Unit::Seconds,
            latency_family,
        );

        let refresh_family = Family::<ResultLabels, Counter>::default();
        let refreshes = RefreshResult::ALL.map(|result| {
            refresh_family
                .get_or_create(&ResultLabels {
                    result: result.as_str(),
                })
                .clone()
        });
        registry.register(
            "registry_refreshes",
            "Re-reads of the registered torrents from the registry, by result",
            refresh_family,
        );

        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let gauge = Gauge::default();
            registry.register(name, help, gauge.clone());
            gauge
        };
        let registered = gauge(
            &mut registry,
            "registered_torrents",
            "Torrents registered by publishers (announces accepted)",
        );
        let swarms = gauge(&mut registry, "swarms", "Torrents with swarm state");
        let peers = gauge(
            &mut registry,
            "peers",
            "Peers tracked, seeders and leechers",
        );
        let seeders = gauge(&mut registry, "seeders", "Seeders tracked");
        let connections = gauge(
            &mut registry,
            "open_connections",
            "Client connections open now",
        );
        Self {
            registry,
            announces,
            scrapes,
            published,
            errors,
            latency,
            refreshes,
            registered,
            swarms,
            peers,
            seeders,
            connections,
        }
    }

    /// Counts an answered announce.
    pub(crate) fn announced(&self, event: AnnounceEvent) {
        let index = EVENTS.iter().position(|e| *e == event).unwrap_or(0);
        if let Some(counter) = self.announces.get(index) {
            counter.inc();
        }
    }

    /// Counts an answered scrape.
    pub(crate) fn scraped(&self) {
        self.scrapes.inc();
    }

    /// Counts a registered release.
    pub(crate) fn published(&self) {
        self.published.inc();
    }

    /// Counts one re-read of the registered set.
    pub(crate) fn refreshed(&self, result: RefreshResult) {
        let index = RefreshResult::ALL
            .iter()
            .position(|r| *r == result)
            .unwrap_or(0);
        if let Some(counter) = self.refreshes.get(index) {
            counter.inc();
        }
    }

    /// The open-connections gauge, for the listener.
    pub(crate) fn connections(&self) -> &Gauge {
        &self.connections
    }

    /// Records one finished request.
    pub(crate) fn record(&self, endpoint: Endpoint, elapsed: Duration, response: &Response) {
        let index = Endpoint::ALL
            .iter()
            .position(|e| *e == endpoint)
            .unwrap_or(Endpoint::ALL.len() - 1);
        if let Some(histogram) = self.latency.get(index) {
            histogram.observe(elapsed.as_secs_f64());
        }
        let reason = match response.extensions().get::<ErrorReason>() {
            Some(ErrorReason(reason)) => Some(*reason),
            // Refused below the handlers: by the timeout layer, the router, an extractor.
            None => match response.status() {
                StatusCode::REQUEST_TIMEOUT => Some("request_timeout"),
                StatusCode::NOT_FOUND => Some("not_found"),
                StatusCode::METHOD_NOT_ALLOWED => Some("method_not_allowed"),
                StatusCode::PAYLOAD_TOO_LARGE => Some("body_too_large"),
                status if status.is_client_error() || status.is_server_error() => {
                    Some("http_error")
                }
                _ => None,
            },
        };
        if let Some(reason) = reason {
            self.error(endpoint, reason);
        }
    }

    /// Counts one error under `reason` for `endpoint`. The layer counts every error response
    /// itself; handlers call this only for a fault in a request they still answer (a scrape
    /// that also named unregistered torrents).
    pub(crate) fn error(&self, endpoint: Endpoint, reason: &'static str) {
        self.errors
            .get_or_create(&ErrorLabels {
                endpoint: endpoint.as_str(),
                reason,
            })
            .inc();
    }

    /// The OpenMetrics text of every series, with the state gauges refreshed from `state`.
    pub(crate) fn render(&self, state: &AppState) -> Result<String, Error> {
        let stats = state.store().stats()?;
        let as_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.registered.set(as_i64(state.registered_count()));
        self.swarms.set(as_i64(stats.torrents));
        self.peers.set(as_i64(stats.peers));
        self.seeders.set(as_i64(stats.seeders));
        let mut text = String::with_capacity(8 * 1024);
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .map_err(Error::internal)?;
        Ok(text)
    }
}

/// The layer around every route: times the request and counts errors (see the module docs).
pub(crate) async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let endpoint = Endpoint::of_route(
        request
            .extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str),
    );
    let start = Instant::now();
    let response = next.run(request).await;
    state.metrics().record(endpoint, start.elapsed(), &response);
    response
}

/// `GET /metrics`.
pub(crate) async fn serve(State(state): State<AppState>) -> Result<Response, Error> {
    let text = state.metrics().render(&state)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        text,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_its_endpoint() {
        assert_eq!(Endpoint::of_route(Some("/announce")), Endpoint::Announce);
        assert_eq!(
            Endpoint::of_route(Some("/api/v1/assets/{name}/{version}")),
            Endpoint::Asset
        );
        assert_eq!(Endpoint::of_route(None), Endpoint::Other);
        // The arrays are indexed by position in ALL: every endpoint must be there once.
        for (n, endpoint) in Endpoint::ALL.iter().enumerate() {
            assert_eq!(Endpoint::ALL.iter().position(|e| e == endpoint), Some(n));
        }
    }

    #[test]
    fn errors_and_latency_are_recorded() {
        let metrics = Metrics::new();
        let mut response = StatusCode::OK.into_response();
        response
            .extensions_mut()
            .insert(ErrorReason("bad_id_length"));
        metrics.record(Endpoint::Announce, Duration::from_micros(80), &response);
        metrics.record(
            Endpoint::Other,
            Duration::from_micros(80),
            &StatusCode::NOT_FOUND.into_response(),
        );
        metrics.announced(AnnounceEvent::Completed);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &metrics.registry).unwrap();
        for line in [
            "tracker_errors_total{endpoint=\"announce\",reason=\"bad_id_length\"} 1",
            "tracker_errors_total{endpoint=\"other\",reason=\"not_found\"} 1",
            "tracker_announces_total{event=\"completed\"} 1",
            "tracker_announces_total{event=\"started\"} 0",
            "tracker_request_duration_seconds_count{endpoint=\"announce\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }
}
