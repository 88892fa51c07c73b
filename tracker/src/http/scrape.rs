//! `GET /scrape` (BEP 48): swarm counts for a few registered torrents.
//!
//! A scrape names its torrents; a scrape that names none (a "full scrape") would list every
//! registered torrent, which is the registry's business and not public, so it is refused. The
//! number of hashes is bounded twice: by the wire parser's [`MAX_SCRAPE_HASHES`] and by the
//! operator's `max_scrape_hashes`, which may be lower. Torrents that are not registered are
//! left out of the answer, as BEP 48 allows, so a scrape cannot probe the registry either.
//!
//! [`MAX_SCRAPE_HASHES`]: swarmcdn_proto::tracker::MAX_SCRAPE_HASHES

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use swarmcdn_proto::tracker::{ScrapeRequest, ScrapeResponse, ScrapeStats};

use super::announce::check_query_len;
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
    let stats = state.store().scrape(&request.info_hashes)?;
    let files: BTreeMap<_, _> = request
        .info_hashes
        .iter()
        .zip(stats)
        .filter(|(info_hash, _)| state.is_registered(info_hash))
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
