//! `GET /scrape` (BEP 48): swarm counts for a few registered torrents.
//!
//! A scrape names its torrents; a scrape that names none (a "full scrape") would list every
//! registered torrent, which is the registry's business and not public, so it is refused. The
//! number of hashes is bounded twice: by the wire parser's [`MAX_SCRAPE_HASHES`] and by the
//! operator's `max_scrape_hashes`, which may be lower.
//!
//! Unregistered torrents are bad input like anywhere else, but one unknown hash must not cost
//! a client the counts of the registered ones it named with it: those are answered, the unknown
//! ones left out (as BEP 48 allows), and the request is counted once in
//! `tracker_errors_total{endpoint="scrape",reason="unregistered_torrent"}`. A scrape that names
//! no registered torrent at all gets the failure reason `unregistered torrent`, as an announce
//! would (so a scrape reveals no more about the registry than an announce does). Either way
//! the swarm store is asked about registered torrents only, so an unknown hash touches no
//! state.
//!
//! [`MAX_SCRAPE_HASHES`]: swarmcdn_proto::tracker::MAX_SCRAPE_HASHES

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use swarmcdn_proto::tracker::{ScrapeRequest, ScrapeResponse, ScrapeStats};

use super::announce::check_query_len;
use super::metrics::Endpoint;
use super::{AppState, Error};

/// `GET /scrape`.
pub(crate) async fn scrape(State(state): State<AppState>, uri: Uri) -> Result<Response, Error> {
    let query = uri.query().unwrap_or_default();
    check_query_len(query, &state)?;
    let request = ScrapeRequest::from_query(query)?;
    let limit = state.config().max_scrape_hashes as usize;
    if request.info_hashes.len() > limit {
        return Err(Error::tracker(
            "too_many_info_hashes",
            format!("a scrape may name at most {limit} info-hashes"),
        ));
    }
    let mut registered = request.info_hashes;
    let named = registered.len();
    registered.retain(|info_hash| state.is_registered(info_hash));
    if registered.is_empty() {
        return Err(Error::tracker(
            "unregistered_torrent",
            "unregistered torrent",
        ));
    }
    if registered.len() < named {
        state
            .metrics()
            .error(Endpoint::Scrape, "unregistered_torrent");
    }
    let stats = state.store().scrape(&registered)?;
    let files: BTreeMap<_, _> = registered
        .iter()
        .zip(stats)
        .map(|(info_hash, stats)| {
            let counts = ScrapeStats {
                complete: stats.complete,
                incomplete: stats.incomplete,
                downloaded: u32::try_from(stats.downloaded).unwrap_or(u32::MAX),
            };
            (*info_hash, counts)
        })
        .collect();
    let mut body = Vec::with_capacity(16 + files.len() * 80);
    ScrapeResponse::Files(files).encode(&mut body);
    state.metrics().scraped();
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"))],
        body,
    )
        .into_response())
}
