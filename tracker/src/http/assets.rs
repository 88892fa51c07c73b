//! What sites fetch before joining a swarm: signed manifests and metainfo.
//!
//! * `GET /api/v1/assets/{name}`: the latest release's signed manifest (JSON). "Latest" moves
//!   when a release is published, so caches must revalidate (`no-cache`) and get a cheap 304
//!   when nothing changed.
//! * `GET /api/v1/assets/{name}/{version}`: a given release's manifest. A version's manifest
//!   does not change, but the publisher can withdraw it, so caches keep it for minutes only.
//! * `GET /api/v1/torrents/{info_hash}`: the metainfo bytes, exactly as published. An
//!   info-hash names one info dictionary for ever, so this is cached as immutable.
//! * `GET /api/v1/lookup/{name}[/{version}]`: the manifest, the metainfo and a sample of
//!   the swarm's peers in one bencoded answer
//!   ([`ReleaseLookup`](swarmcdn_proto::tracker::ReleaseLookup)), so a site's first fetch
//!   of a release costs one round trip before the peer wire instead of three. Never cached
//!   (the peers change).
//!
//! Manifests and lookups are read through the state's release cache (see
//! [`AppState::cached_release`]): a flash crowd of new sites asking for the same release
//! costs SQLite one read per refresh period, not one per site.
//!
//! The entity tag of a manifest or torrent is the release's info-hash: one release has one
//! torrent and one torrent belongs to one release, so the tag changes exactly when the
//! content does. Lookups carry no tag (their peers change).
//! The site checks the manifest's signature and the torrent's info-hash itself: these
//! endpoints are a convenience, not a root of trust.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use swarmcdn_proto::InfoHash;
use swarmcdn_proto::manifest::ReleaseName;
use swarmcdn_proto::tracker::{MAX_LOOKUP_PEERS, write_lookup};

use super::state::ServedRelease;
use super::{AppState, Error};
use crate::swarm::AnnounceOutput;

/// `Cache-Control` of the latest manifest.
const LATEST_CACHE: &str = "no-cache";
/// `Cache-Control` of a given version's manifest.
const VERSION_CACHE: &str = "public, max-age=300";
/// `Content-Type` of a release lookup (bencode, not a torrent).
const LOOKUP_CONTENT_TYPE: &str = "application/x-swarmcdn-lookup";
/// `Cache-Control` of metainfo.
const TORRENT_CACHE: &str = "public, max-age=31536000, immutable";

/// `GET /api/v1/assets/{name}`.
pub(crate) async fn latest(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let release = served_release(&state, &name, None, false).await?;
    Ok(manifest_response(&release, LATEST_CACHE, &headers))
}

/// `GET /api/v1/assets/{name}/{version}`.
pub(crate) async fn version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let release = served_release(&state, &name, Some(version), false).await?;
    Ok(manifest_response(&release, VERSION_CACHE, &headers))
}

/// `GET /api/v1/lookup/{name}`.
pub(crate) async fn lookup_latest(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, Error> {
    let release = served_release(&state, &name, None, true).await?;
    lookup_response(&state, &release)
}

/// `GET /api/v1/lookup/{name}/{version}`.
pub(crate) async fn lookup_version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, Error> {
    let release = served_release(&state, &name, Some(version), true).await?;
    lookup_response(&state, &release)
}

/// The release `name` (latest, or `version`), with its torrent if `with_torrent`: from the
/// cache, or read from the registry (off the async threads) and cached.
async fn served_release(
    state: &AppState,
    name: &str,
    version: Option<String>,
    with_torrent: bool,
) -> Result<Arc<ServedRelease>, Error> {
    let name = release_name(name)?;
    let key = (name.into_string(), version);
    if let Some(release) = state.cached_release(&key)
        && (release.torrent.is_some() || !with_torrent)
    {
        return Ok(release);
    }
    let generation = state.generation();
    let registry = state.registry().clone();
    let (name, version) = key.clone();
    let served = tokio::task::spawn_blocking(move || {
        let release = match &version {
            Some(version) => registry.release(&name, version)?,
            None => registry.latest_release(&name)?,
        };
        let Some(release) = release else {
            return Ok(None);
        };
        if !with_torrent {
            return Ok(Some(ServedRelease {
                release,
                torrent: None,
            }));
        }
        // Published together in one transaction; a row without its torrent is treated as
        // not there.
        let torrent = registry.torrent(&release.info_hash)?;
        Ok::<_, crate::registry::RegistryError>(torrent.map(|torrent| ServedRelease {
            release,
            torrent: Some(torrent.into()),
        }))
    })
    .await??;
    let not_there = match key.1 {
        Some(_) => "no such release",
        None => "no release of that name",
    };
    let served = Arc::new(served.ok_or_else(|| not_found(not_there))?);
    state.cache_release(key, Arc::clone(&served), generation);
    Ok(served)
}

/// A lookup of `release` (read with its torrent) with a sample of its swarm.
fn lookup_response(state: &AppState, release: &ServedRelease) -> Result<Response, Error> {
    let info_hash = release.release.info_hash;
    let torrent = release.torrent.as_deref().unwrap_or_default();
    let mut peers = AnnounceOutput::default();
    let numwant = state.config().numwant_default.min(MAX_LOOKUP_PEERS as u32);
    state.store().sample(
        &info_hash,
        Some(numwant),
        state.epoch().now(),
        &mut rand::rng(),
        &mut peers,
    )?;
    let mut body = Vec::with_capacity(
        release.release.manifest.len() + torrent.len() + peers.peer_count() * 18 + 64,
    );
    write_lookup(
        &mut body,
        &release.release.manifest,
        torrent,
        peers.peers_v4.iter().copied(),
        peers.peers_v6.iter().copied(),
    );
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(LOOKUP_CONTENT_TYPE),
        )],
        body,
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `GET /api/v1/torrents/{info_hash}`; the hash in hex or base32.
pub(crate) async fn torrent(
    State(state): State<AppState>,
    Path(text): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let info_hash = InfoHash::from_text(&text).map_err(|_| {
        Error::api(
            StatusCode::BAD_REQUEST,
            "bad_info_hash",
            "the info-hash must be 40 hex digits or 32 base32 characters",
        )
    })?;
    let registry = state.registry().clone();
    let metainfo = tokio::task::spawn_blocking(move || registry.torrent(&info_hash))
        .await??
        .ok_or_else(|| not_found("no registered torrent with that info-hash"))?;
    let etag = etag(&info_hash);
    let mut response = if matches_etag(&headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-bittorrent"),
            )],
            metainfo,
        )
            .into_response()
    };
    set_caching(&mut response, etag, TORRENT_CACHE);
    Ok(response)
}

fn release_name(text: &str) -> Result<ReleaseName, Error> {
    ReleaseName::new(text).map_err(|e| {
        Error::api(
            StatusCode::BAD_REQUEST,
            "bad_name",
            format!("bad release name: {e}"),
        )
    })
}

fn not_found(message: &'static str) -> Error {
    Error::api(StatusCode::NOT_FOUND, "not_found", message)
}

fn manifest_response(served: &ServedRelease, cache: &'static str, headers: &HeaderMap) -> Response {
    let release = &served.release;
    let etag = etag(&release.info_hash);
    let mut response = if matches_etag(headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            release.manifest.clone(),
        )
            .into_response()
    };
    set_caching(&mut response, etag, cache);
    response
}

/// The strong entity tag of a release: its info-hash, quoted.
fn etag(info_hash: &InfoHash) -> HeaderValue {
    // Hex digits and quotes are always a valid header value.
    HeaderValue::from_str(&format!("\"{info_hash}\"")).unwrap_or(HeaderValue::from_static("\"\""))
}

/// Whether `If-None-Match` lists `etag` (or `*`).
fn matches_etag(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let Ok(etag) = etag.to_str() else {
        return false;
    };
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == etag || tag == "*")
}

fn set_caching(response: &mut Response, etag: HeaderValue, cache: &'static str) {
    let headers = response.headers_mut();
    headers.insert(header::ETAG, etag);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_is_matched_by_tag_list_and_star() {
        let tag = etag(&InfoHash([0xab; 20]));
        let mut headers = HeaderMap::new();
        assert!(!matches_etag(&headers, &tag));
        headers.insert(
            header::IF_NONE_MATCH,
            format!("\"x\", W/{}", tag.to_str().unwrap())
                .parse()
                .unwrap(),
        );
        assert!(matches_etag(&headers, &tag));
        headers.insert(header::IF_NONE_MATCH, "*".parse().unwrap());
        assert!(matches_etag(&headers, &tag));
        headers.insert(header::IF_NONE_MATCH, "\"other\"".parse().unwrap());
        assert!(!matches_etag(&headers, &tag));
    }
}
