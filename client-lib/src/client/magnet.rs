//! Getting the torrent of a magnet link from peers (BEP 9), before its session starts.
//!
//! [`Client::add_magnet`](crate::Client::add_magnet) first asks the configured trackers'
//! torrent endpoint: one request, and a swarmcdn tracker has the torrent of every release
//! it registered. Only when none has it (or none answers) does it come here: announce once
//! to the magnet's trackers (and the configured ones), dial the peers they hand out and the
//! bootstrap peers, and let a [`MetadataFetcher`] ask those that offer `ut_metadata` for
//! the info dictionary, which it checks against the info-hash. The connections exist only
//! for the fetch and are closed afterwards: the session that follows dials the swarm
//! afresh with the full torrent (a handful of extra handshakes, against a session that
//! would otherwise need a metadata-less mode everywhere).
//!
//! The fetch ends with the metainfo, or with an error when every source is exhausted
//! (trackers answered, every dial resolved, no connected peer left that could still
//! answer) or after [`ClientConfig::metadata_timeout`](crate::ClientConfig::metadata_timeout).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use swarmcdn_proto::magnet::Magnet;
use swarmcdn_proto::metainfo::Metainfo;
use swarmcdn_proto::peer::{ExtendedHandshake, Handshake, Message, Reserved};
use swarmcdn_proto::tracker::{AnnounceEvent, AnnounceRequest};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::metadata::{
    FetchEvent, FetchOptions, MetadataFetcher, MetadataMessage, OUR_UT_METADATA_ID,
    advertise_fetching, metainfo_from_info_bytes,
};
use crate::peer::{PeerConnection, PeerError, PeerEvent, PeerHandle, PeerKey, connect};
use crate::session::{PEER_EVENT_QUEUE, Shared};
use crate::tracker_client::{TrackerClient, TrackerError};

/// What the helper tasks of a fetch report.
enum Found {
    Peers(Result<Vec<SocketAddr>, TrackerError>),
    Dialled(SocketAddr, Box<Result<PeerConnection, PeerError>>),
}

/// Fetches the info dictionary of `magnet` from peers; see the module docs.
pub(crate) async fn fetch_from_peers(
    shared: &Arc<Shared>,
    magnet: &Magnet,
    announce_urls: &[String],
    bootstrap_peers: &[SocketAddr],
    stop: &CancellationToken,
) -> Result<Metainfo, String> {
    let stop = stop.child_token();
    let _stop_on_exit = stop.clone().drop_guard();
    let info_hash = magnet.info_hash;
    let (found_tx, mut found) = mpsc::unbounded_channel();
    for url in announce_urls {
        let client = TrackerClient::new(url, shared.tracker_http.clone());
        let mut request =
            AnnounceRequest::new(info_hash, shared.peer_id, shared.listen_addr.port());
        request.event = AnnounceEvent::Started;
        // We do not know the size yet; anything but 0 keeps us from counting as a seed.
        request.left = 1;
        request.numwant = Some(shared.config.numwant);
        let (tx, url, stop) = (found_tx.clone(), url.clone(), stop.clone());
        shared.tasks.spawn(
            async move {
                let result = tokio::select! {
                    () = stop.cancelled() => return,
                    r = client.announce(&url, &request) => r,
                };
                let peers = result.map(|ok| ok.peers.into_iter().map(SocketAddr::V4).collect());
                let _ = tx.send(Found::Peers(peers));
            }
            .instrument(tracing::debug_span!("metadata_announce")),
        );
    }
    // Sources not yet exhausted: when all are, and no connection is left, there is
    // nobody to ask.
    let mut announces_pending = announce_urls.len();

    let ours = Handshake {
        reserved: Reserved::NONE.with_extension_protocol(),
        info_hash,
        peer_id: shared.peer_id,
    };
    let (events_tx, mut events) = mpsc::channel(PEER_EVENT_QUEUE);
    let mut fetcher = MetadataFetcher::new(info_hash, FetchOptions::default());
    let mut handles: HashMap<PeerKey, PeerHandle> = HashMap::new();
    let mut tried: HashSet<SocketAddr> = HashSet::new();
    let mut dials_pending = 0usize;
    let mut next_key = 1u64;
    let deadline = Instant::now() + shared.config.metadata_timeout;

    // Dials `addr` once, never ourselves, at most `max_peers_per_torrent` addresses, each
    // with a permit of the client-wide connection limit.
    let dial = |addr: SocketAddr, tried: &mut HashSet<SocketAddr>, pending: &mut usize| {
        let listen = shared.listen_addr;
        let is_self = addr.port() == listen.port()
            && (addr.ip().is_loopback() || addr.ip().is_unspecified() || addr.ip() == listen.ip());
        if is_self || !tried.insert(addr) || tried.len() > shared.config.max_peers_per_torrent {
            return;
        }
        let Some(permit) = shared.conn_limit.try_acquire() else {
            return;
        };
        *pending += 1;
        let (tx, opts, stop) = (found_tx.clone(), shared.conn_opts.clone(), stop.clone());
        shared.tasks.spawn(
            async move {
                let result = tokio::select! {
                    () = stop.cancelled() => return,
                    r = connect(addr, ours, &opts) => r,
                };
                let result = result.map(|(mut conn, _)| {
                    conn.set_permit(permit);
                    conn
                });
                let _ = tx.send(Found::Dialled(addr, Box::new(result)));
            }
            .instrument(tracing::debug_span!("metadata_dial", %addr)),
        );
    };
    for &addr in bootstrap_peers {
        dial(addr, &mut tried, &mut dials_pending);
    }

    // The loop: tracker answers and dials feed connections; extended handshakes tell the
    // fetcher who serves the metadata; after every event its requests go out.
    loop {
        let now = Instant::now();
        let exhausted = announces_pending == 0 && dials_pending == 0 && handles.is_empty();
        if exhausted {
            return Err("no peer offers the metadata".into());
        }
        let wake = fetcher
            .next_deadline()
            .map(Instant::from_std)
            .map_or(deadline, |t| t.min(deadline));
        tokio::select! {
            biased;
            () = stop.cancelled() => return Err("stopped".into()),
            () = tokio::time::sleep_until(wake) => {
                if Instant::now() >= deadline {
                    return Err(format!(
                        "no peer gave the metadata within {:?}",
                        shared.config.metadata_timeout
                    ));
                }
            }
            Some(item) = found.recv() => match item {
                Found::Peers(result) => {
                    announces_pending -= 1;
                    match result {
                        Ok(peers) => {
                            for addr in peers {
                                dial(addr, &mut tried, &mut dials_pending);
                            }
                        }
                        Err(error) => tracing::debug!(%error, "announce for metadata failed"),
                    }
                }
                Found::Dialled(addr, result) => {
                    dials_pending -= 1;
                    match *result {
                        Ok(conn) if conn.remote_handshake().reserved.supports_extension_protocol() => {
                            let key = PeerKey(next_key);
                            next_key += 1;
                            let handle = conn.start(key, events_tx.clone(), &shared.conn_opts, &shared.tasks, &stop);
                            let mut handshake = ExtendedHandshake {
                                p: Some(shared.listen_addr.port()),
                                ..ExtendedHandshake::default()
                            };
                            advertise_fetching(&mut handshake);
                            if handle.try_send(handshake.to_message()).is_ok() {
                                handles.insert(key, handle);
                            }
                        }
                        Ok(_) => tracing::debug!(%addr, "peer does not speak BEP 10"),
                        Err(error) => tracing::debug!(%addr, %error, "metadata dial failed"),
                    }
                }
            },
            Some((key, event)) = events.recv() => match event {
                PeerEvent::Closed(_) => {
                    handles.remove(&key);
                    fetcher.peer_disconnected(key);
                }
                PeerEvent::Message(Message::Extended { id, payload }) => {
                    if id == swarmcdn_proto::peer::EXTENDED_HANDSHAKE_ID {
                        let usable = ExtendedHandshake::decode(&payload)
                            .ok()
                            .is_some_and(|hs| fetcher.on_extended_handshake(key, &hs).is_ok());
                        if !usable {
                            // Nothing to get from it here.
                            handles.remove(&key);
                        }
                    } else if id == OUR_UT_METADATA_ID {
                        let Ok(message) = MetadataMessage::decode(&payload) else {
                            continue;
                        };
                        match fetcher.on_message(key, message, now.into_std()) {
                            FetchEvent::Complete(bytes) => {
                                return metainfo_from_info_bytes(&bytes, &magnet.trackers, &magnet.web_seeds)
                                    .map_err(|e| format!("the metadata does not parse: {e}"));
                            }
                            FetchEvent::HashMismatch { suspects } => {
                                for suspect in suspects {
                                    handles.remove(&suspect);
                                }
                            }
                            FetchEvent::Reply(reply) => {
                                if let (Some(handle), Some(id)) = (handles.get(&key), fetcher.peer_extension_id(key)) {
                                    let _ = handle.try_send(reply.to_message(id));
                                }
                            }
                            FetchEvent::Continue | FetchEvent::Ignored(_) => {}
                        }
                    }
                }
                PeerEvent::Message(_) => {}
            },
        }
        for (peer, request) in fetcher.poll(Instant::now().into_std()) {
            let sent = match (handles.get(&peer), fetcher.peer_extension_id(peer)) {
                (Some(handle), Some(id)) => handle.try_send(request.to_message(id)).is_ok(),
                _ => false,
            };
            if !sent {
                handles.remove(&peer);
                fetcher.peer_disconnected(peer);
            }
        }
    }
}
