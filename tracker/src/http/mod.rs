//! The tracker's HTTP service: routes, handlers and the layers around them.
//!
//! | route | module | for |
//! |---|---|---|
//! | `GET /announce` | `announce` | BitTorrent clients joining or staying in a swarm |
//! | `GET /scrape` | `scrape` | swarm counts (BEP 48) |
//! | `POST /api/v1/releases`, `DELETE /api/v1/releases/{name}/{version}` | `publish` | publishers (bearer token) |
//! | `GET /api/v1/assets/{name}[/{version}]`, `GET /api/v1/torrents/{info_hash}`, `GET /api/v1/lookup/{name}[/{version}]` | `assets` | sites fetching manifests, metainfo, or both with peers |
//! | `GET /metrics` | `metrics` | Prometheus |
//! | `GET /healthz`, `GET /readyz` | `health` | orchestrators |
//!
//! [`router`] builds the routes over an [`AppState`]; tests call it with
//! `tower::ServiceExt::oneshot`, the server ([`crate::run`]) serves it. Handlers return
//! `Result<_, Error>`, and [`Error`] decides the response shape (bencoded failure for
//! BitTorrent clients, JSON for the API, opaque 500 for our own failures).
//!
//! Around every route, from the outside in: the metrics layer (times every request, counts
//! every error by reason), the request timeout (`limits.request_timeout_secs`, answered with
//! 408), and the handlers, which bound what they read themselves (query length, publish body
//! size). The connection count and idle time are bounded below HTTP, in `listener`.
//!
//! The server does not hand announces to the router: `dispatch` answers `GET /announce`
//! itself, with the same handler code and the same metrics, because the router's work around
//! a request costs about as much as an announce (see that module for what is skipped and why
//! that changes nothing a client or an operator sees).

mod announce;
mod assets;
mod auth;
mod client_addr;
pub(crate) mod dispatch;
mod error;
mod health;
pub(crate) mod listener;
pub(crate) mod metrics;
mod publish;
mod scrape;
mod state;

use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::middleware;
use axum::routing::{delete, get, post};
use tower_http::timeout::TimeoutLayer;

pub use client_addr::MAX_FORWARDED_HOPS;
pub use error::Error;
pub use state::{AppState, Refresh, RefreshError};

/// The service's routes over `state`, with the metrics and timeout layers.
pub fn router(state: AppState) -> Router {
    let config = state.config();
    let mut router = Router::new()
        .route("/announce", get(announce::announce))
        .route("/scrape", get(scrape::scrape))
        .route("/api/v1/releases", post(publish::publish))
        .route(
            "/api/v1/releases/{name}/{version}",
            delete(publish::unpublish),
        )
        .route("/api/v1/assets/{name}", get(assets::latest))
        .route("/api/v1/assets/{name}/{version}", get(assets::version))
        .route("/api/v1/torrents/{info_hash}", get(assets::torrent))
        .route("/api/v1/lookup/{name}", get(assets::lookup_latest))
        .route(
            "/api/v1/lookup/{name}/{version}",
            get(assets::lookup_version),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz));
    if config.metrics_enabled {
        router = router.route("/metrics", get(metrics::serve));
    }
    let timeout = Duration::from_secs(config.limits.request_timeout_secs);
    router
        .fallback(not_found)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .with_state(state)
}

/// Any other path.
async fn not_found() -> Error {
    Error::api(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}
