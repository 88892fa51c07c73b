//! Probes for orchestrators: `/healthz` says the process serves requests, `/readyz` that it
//! can do its whole job.
//!
//! They answer different questions on purpose. A failing liveness probe gets the process
//! restarted, which does not fix an unreachable database, so `/healthz` checks nothing but
//! that a request gets an answer. `/readyz` also asks the registry a question: a tracker that
//! cannot read its registry cannot publish or serve manifests and should be taken out of the
//! load balancer until it can.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::{AppState, Error};

/// `GET /healthz`: 200 while the process answers.
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: 200 when the registry answers a query, 503 otherwise.
pub(crate) async fn readyz(State(state): State<AppState>) -> Result<Response, Error> {
    let registry = state.registry().clone();
    match tokio::task::spawn_blocking(move || registry.ping()).await? {
        Ok(()) => Ok("ready\n".into_response()),
        Err(error) => {
            tracing::warn!(%error, "readiness check failed");
            Err(Error::api(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "the registry is unreachable",
            ))
        }
    }
}
