//! `GET /announce` (BEP 3, with BEP 7 IPv6 peers and BEP 23 compact lists): the hot path.
//!
//! Every site's every announce comes through here, so the path is kept to: parse the raw
//! query in place (no allocation), one read-locked set lookup for "is this torrent
//! registered", one shard lock in the swarm store, and one response buffer. The peer lists
//! and the encoding buffer are thread-local scratch space reused from request to request, and
//! the random source is a thread-local fast generator seeded from the OS once per thread; the
//! only allocation per request is the response body handed to the HTTP layer.

use std::cell::RefCell;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use swarmcdn_proto::PeerId;
use swarmcdn_proto::tracker::{
    self as wire, AnnounceHead, AnnounceRequest, write_compact_response, write_dict_response,
};

use super::client_addr::client_ip;
use super::{AppState, Error};
use crate::swarm::{AnnounceEvent, AnnounceInput, AnnounceOutput};

/// Reused per thread: the store's answer, the encoded body, and the random source.
struct Scratch {
    out: AnnounceOutput,
    body: Vec<u8>,
    rng: SmallRng,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch {
        out: AnnounceOutput::default(),
        body: Vec::with_capacity(1024),
        rng: SmallRng::from_rng(&mut rand::rng()),
    });
}

/// Refuses a query longer than the configured bound, before any parsing.
pub(crate) fn check_query_len(query: &str, state: &AppState) -> Result<(), Error> {
    let limit = state.config().limits.max_query_bytes;
    if query.len() > limit {
        return Err(Error::tracker(
            "query_too_long",
            format!("the query is {} bytes, the limit is {limit}", query.len()),
        ));
    }
    Ok(())
}

/// `GET /announce` through the router (tests, and any request the server's fast path in
/// `dispatch` passes on, such as `HEAD`).
pub(crate) async fn announce(
    State(state): State<AppState>,
    ConnectInfo(connection): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, Error> {
    respond(&state, connection, &headers, &uri)
}

/// The announce itself, for a request from `connection` with `headers` to `uri`: what both the
/// router's handler and the server's fast path run. Never waits for anything (one shard lock
/// at most), so it needs no request timeout around it.
pub(crate) fn respond(
    state: &AppState,
    connection: SocketAddr,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Response, Error> {
    let query = uri.query().unwrap_or_default();
    check_query_len(query, state)?;
    let request = AnnounceRequest::from_query(query)?;
    if !state.is_registered(&request.info_hash) {
        return Err(Error::tracker(
            "unregistered_torrent",
            "unregistered torrent",
        ));
    }
    // `request.ip` is deliberately unused: see `client_addr`.
    let ip = client_ip(connection, headers, state.trusted_proxies())?;
    let input = AnnounceInput {
        info_hash: request.info_hash,
        peer_id: request.peer_id,
        addr: SocketAddr::new(ip, request.port),
        event: match request.event {
            wire::AnnounceEvent::Started => AnnounceEvent::Started,
            wire::AnnounceEvent::Completed => AnnounceEvent::Completed,
            wire::AnnounceEvent::Stopped => AnnounceEvent::Stopped,
            // A paused partial seed (BEP 21) stays in the swarm like a regular announce.
            _ => AnnounceEvent::None,
        },
        left: request.left,
        numwant: request.numwant,
        peer_ids: !request.compact && !request.no_peer_id,
    };
    let now = state.epoch().now();
    let config = state.config();
    let body = SCRATCH.with_borrow_mut(|scratch| -> Result<Bytes, Error> {
        let Scratch { out, body, rng } = scratch;
        state.store().announce(&input, now, rng, out)?;
        let head = AnnounceHead {
            interval: config.announce_interval_secs,
            min_interval: Some(config.min_announce_interval_secs),
            complete: out.stats.complete,
            incomplete: out.stats.incomplete,
            warning: None,
            tracker_id: None,
        };
        body.clear();
        if request.compact {
            let v4 = out.peers_v4.iter().copied();
            let v6 = out.peers_v6.iter().copied();
            write_compact_response(body, &head, v4, v6);
        } else {
            // BEP 3 dictionary peers. The store keeps every peer's id anyway (to recognise it
            // on its next announce), so the ids cost a copy only for these rare answers; with
            // `no_peer_id` the id lists are empty and every peer goes without one.
            let ids = |list: &[PeerId], i: usize| list.get(i).copied();
            let v4 = (out.peers_v4.iter().enumerate())
                .map(|(i, a)| (SocketAddr::V4(*a), ids(&out.peer_ids_v4, i)));
            let v6 = (out.peers_v6.iter().enumerate())
                .map(|(i, a)| (SocketAddr::V6(*a), ids(&out.peer_ids_v6, i)));
            write_dict_response(body, &head, v4.chain(v6));
        }
        Ok(Bytes::copy_from_slice(body))
    })?;
    state.metrics().announced(request.event);
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"))],
        body,
    )
        .into_response())
}
