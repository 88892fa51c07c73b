//! Peer connections from the session's side: taking one on, every message a peer can send,
//! and letting it go (closed, dropped or banned).
//!
//! Nothing a peer says is trusted for sizes: a bitfield is checked against the piece count
//! ([`Bitfield::from_payload`]), a `have` index against the torrent, a request's range
//! against the piece (and [`MAX_READ_BLOCK_LEN`]); a violation drops the peer. A block
//! reaches the assembler only if the scheduler says we asked this very peer for it. A
//! `bitfield` that comes late *replaces* what we knew (aria2 sends one mid-connection),
//! and every message the session does not use (suggest, allowed-fast, port, unknown ids,
//! extension messages other than the handshake) is ignored rather than fatal.

use std::net::SocketAddr;

use swarmcdn_proto::PeerId;
use swarmcdn_proto::peer::{Bitfield, ExtendedHandshake, Message};

use super::peers::{BlockRequest, PeerLink, PeerState};
use super::{MAX_QUEUED_UPLOADS, Torrent};
use crate::choker::ChokeAction;
use crate::metadata::{MetadataMessage, OUR_UT_METADATA_ID};
use crate::peer::{Direction, PeerConnection, PeerError, PeerEvent, PeerKey};
use crate::scheduler::BlockVerdict;
use crate::storage::MAX_READ_BLOCK_LEN;

/// The client name sent in extended handshakes.
const CLIENT_NAME: &str = concat!("swarmcdn/", env!("CARGO_PKG_VERSION"));

/// Why a peer is dropped for breaking the protocol.
#[derive(Debug)]
struct Violation(&'static str);

impl Torrent {
    /// Takes on an established connection (dialled or incoming), unless the peer is banned,
    /// already connected, or one too many. `settling`: discovery waits for its first
    /// message.
    pub(super) fn add_connection(&mut self, mut conn: PeerConnection, settling: bool) {
        let theirs = *conn.remote_handshake();
        let ours = *conn.local_handshake();
        let addr = conn.peer_addr();
        let direction = conn.direction();
        if let Some(&existing) = self.peer_ids.get(&theirs.peer_id) {
            if self.keep_new_duplicate(existing, direction, &theirs.peer_id) {
                tracing::debug!(%addr, "a second connection to a peer replaces the first");
                self.remove_peer(existing);
            } else {
                tracing::debug!(%addr, "refusing a second connection to a peer");
                if settling {
                    self.settle_one();
                }
                return;
            }
        }
        let refuse =
            if self.banned_ids.contains(&theirs.peer_id) || self.banned_addrs.contains(&addr) {
                Some("banned")
            } else if self.peers.len() >= self.shared.config.max_peers_per_torrent {
                Some("peer limit reached")
            } else {
                None
            };
        if let Some(reason) = refuse {
            tracing::debug!(%addr, reason, "refusing peer connection");
            if settling {
                self.settle_one();
            }
            return;
        }
        let key = crate::peer::PeerKey(self.next_key);
        self.next_key += 1;
        let fast = ours.reserved.supports_fast() && theirs.reserved.supports_fast();
        let extended = ours.reserved.supports_extension_protocol()
            && theirs.reserved.supports_extension_protocol();
        let early = conn.take_received_messages(&self.shared.conn_opts.wire_limits);
        let handle = conn.start(
            key,
            self.events_tx.clone(),
            &self.shared.conn_opts,
            &self.shared.tasks,
            &self.stop,
        );
        let link = PeerLink::spawn(handle, self.store.clone(), &self.shared.tasks, &self.stop);
        let listen_addr = (direction == Direction::Outgoing).then_some(addr);
        tracing::debug!(%addr, key = key.0, ?direction, fast, extended, "peer connected");

        let now = tokio::time::Instant::now().into_std();
        self.scheduler.peer_connected(key, fast, now);
        self.choker.peer_connected(key, now);
        self.peer_ids.insert(theirs.peer_id, key);
        self.connected_addrs.insert(addr);
        self.remember_identity(key, theirs.peer_id, addr);
        let piece_count = self.info.piece_count();
        self.peers.insert(
            key,
            PeerState {
                link,
                addr,
                listen_addr,
                peer_id: theirs.peer_id,
                direction,
                fast,
                has: Bitfield::new(piece_count),
                interested: false,
                settling,
                waiting_since: None,
                reported_upload: 0,
                ut_metadata: None,
            },
        );

        // Our pieces first (a bitfield may only be the first message), then BEP 10.
        let have = self.scheduler.have();
        let opening = if fast && have.is_complete() {
            Some(Message::HaveAll)
        } else if fast && have.count() == 0 {
            Some(Message::HaveNone)
        } else if have.count() > 0 {
            Some(have.to_message())
        } else {
            None
        };
        if let Some(message) = opening {
            self.send_or_drop(key, message);
        }
        if extended {
            let mut handshake = ExtendedHandshake {
                p: Some(self.shared.listen_addr.port()),
                v: Some(CLIENT_NAME.to_owned()),
                reqq: Some(MAX_QUEUED_UPLOADS as u32),
                ..ExtendedHandshake::default()
            };
            if let Some(server) = &self.metadata {
                server.advertise(&mut handshake);
            }
            self.send_or_drop(key, handshake.to_message());
        }
        // What came with the handshake, handled now (see
        // `PeerConnection::take_received_messages`).
        for message in early {
            self.peer_event(key, PeerEvent::Message(message));
        }
    }

    /// Which of two connections to the same peer survives. When both were opened from the
    /// same side, the new one wins: the peer (or we) reconnected, so the old one is likely
    /// dead or about to close. When the two sides dialled each other at once, both must
    /// keep the same one, so the connection dialled by the lower peer id wins.
    fn keep_new_duplicate(&self, existing: PeerKey, new: Direction, theirs: &PeerId) -> bool {
        let Some(old) = self.peers.get(&existing).map(|p| p.direction) else {
            return true;
        };
        if old == new {
            return true;
        }
        let we_are_lower = self.shared.peer_id.0 < theirs.0;
        // The new connection was dialled by us if it is outgoing.
        let new_dialled_by_us = new == Direction::Outgoing;
        new_dialled_by_us == we_are_lower
    }

    /// One event of one connection.
    pub(super) fn peer_event(&mut self, key: PeerKey, event: PeerEvent) {
        match event {
            PeerEvent::Closed(error) => {
                if self.peers.contains_key(&key) {
                    tracing::debug!(key = key.0, error = ?error, "peer connection closed");
                    if error.as_ref().is_some_and(PeerError::is_protocol_violation) {
                        self.ban_peer(key, "protocol violation");
                    } else {
                        self.remove_peer(key);
                    }
                }
            }
            PeerEvent::Message(message) => {
                let Some(peer) = self.peers.get_mut(&key) else {
                    // A message that was in flight when we dropped the peer.
                    return;
                };
                if peer.settling {
                    peer.settling = false;
                    self.settle_one();
                }
                if let Err(Violation(what)) = self.message(key, message) {
                    tracing::info!(key = key.0, what, "peer broke the protocol; dropping it");
                    self.ban_peer(key, what);
                }
            }
        }
    }

    /// Handles one message. `Err` means the peer broke the protocol: the caller bans it.
    ///
    /// Our view of the peer's pieces (`has`) is kept next to the scheduler's: the session
    /// uses it to skip `have`s a peer does not need and to tell when both sides are seeds.
    fn message(&mut self, key: PeerKey, message: Message) -> Result<(), Violation> {
        let now = tokio::time::Instant::now().into_std();
        let piece_count = self.info.piece_count();
        match message {
            // Nothing we act on: no DHT (`port`), no piece suggestions, and we never
            // request while choked, so allowed-fast sets are of no use to us.
            Message::KeepAlive | Message::Port(_) | Message::Suggest { .. } => {}
            Message::AllowedFast { .. } | Message::Unknown { .. } => {}
            Message::Choke | Message::Unchoke => {
                let choked = message == Message::Choke;
                self.scheduler.peer_choked(key, choked, now);
            }
            Message::Interested => self.set_interested(key, true),
            Message::NotInterested => self.set_interested(key, false),
            Message::Have { piece } => {
                if piece >= piece_count {
                    return Err(Violation("have for a piece past the end"));
                }
                if let Some(p) = self.peers.get_mut(&key) {
                    let _ = p.has.set(piece);
                }
                self.scheduler.peer_have(key, piece);
                self.drop_if_both_seeds(key);
            }
            // First or late (aria2), a bitfield replaces what we knew.
            Message::Bitfield(payload) => {
                let bitfield = Bitfield::from_payload(&payload, piece_count)
                    .map_err(|_| Violation("bitfield of the wrong size"))?;
                self.scheduler.peer_bitfield(key, &bitfield);
                if let Some(p) = self.peers.get_mut(&key) {
                    p.has = bitfield;
                }
                self.drop_if_both_seeds(key);
            }
            // BEP 6 forms of the bitfield; accepted even if the peer did not set the Fast
            // bit, as they are unambiguous.
            Message::HaveAll => {
                self.scheduler.peer_have_all(key);
                if let Some(p) = self.peers.get_mut(&key) {
                    p.has = Bitfield::full(piece_count);
                }
                self.drop_if_both_seeds(key);
            }
            Message::HaveNone => {
                self.scheduler.peer_have_none(key);
                if let Some(p) = self.peers.get_mut(&key) {
                    p.has = Bitfield::new(piece_count);
                }
            }
            Message::Request {
                index,
                begin,
                length,
            } => self.upload_request(
                key,
                BlockRequest {
                    piece: index,
                    begin,
                    length,
                },
            )?,
            // A cancel removes a queued upload; a block already handed to the connection
            // still goes out (BEP 3 allows that).
            Message::Cancel {
                index,
                begin,
                length,
            } => {
                if let Some(p) = self.peers.get(&key) {
                    p.link.uploads().cancel(&BlockRequest {
                        piece: index,
                        begin,
                        length,
                    });
                }
            }
            Message::Piece { index, begin, data } => self.block(key, index, begin, data)?,
            Message::Reject {
                index,
                begin,
                length,
            } => self.scheduler.peer_rejected(key, index, begin, length),
            Message::Extended { id, payload } => {
                if id == swarmcdn_proto::peer::EXTENDED_HANDSHAKE_ID {
                    self.extended_handshake(key, &payload);
                } else if id == OUR_UT_METADATA_ID {
                    self.metadata_message(key, &payload);
                }
            }
        }
        Ok(())
    }

    /// A BEP 10 handshake: the peer's listen port (so we do not dial it a second time) and
    /// the id it wants `ut_metadata` messages under.
    fn extended_handshake(&mut self, key: PeerKey, payload: &[u8]) {
        let Ok(handshake) = ExtendedHandshake::decode(payload) else {
            // Not fatal: the extension is optional, the peer still speaks BEP 3.
            tracing::debug!(key = key.0, "ignoring a malformed extended handshake");
            return;
        };
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        peer.ut_metadata = handshake.extension_id(swarmcdn_proto::peer::UT_METADATA);
        if let Some(port) = handshake.p.filter(|&p| p != 0) {
            let listen = SocketAddr::new(peer.addr.ip(), port);
            peer.listen_addr = Some(listen);
            self.connected_addrs.insert(listen);
        }
    }

    /// A BEP 9 message: requests are answered (data, or a reject past the end); anything
    /// else is ignored (we never request metadata in a running session: we have it).
    fn metadata_message(&mut self, key: PeerKey, payload: &bytes::Bytes) {
        let Ok(message) = MetadataMessage::decode(payload) else {
            tracing::debug!(key = key.0, "ignoring a malformed ut_metadata message");
            return;
        };
        let answer = self.metadata.as_ref().and_then(|s| s.answer(&message));
        let id = self.peers.get(&key).and_then(|p| p.ut_metadata);
        if let (Some(answer), Some(id)) = (answer, id) {
            self.send_or_drop(key, answer.to_message(id));
        }
    }

    /// A block arrived: stored if we asked this peer for it, dropped otherwise.
    fn block(
        &mut self,
        key: PeerKey,
        piece: u32,
        begin: u32,
        data: bytes::Bytes,
    ) -> Result<(), Violation> {
        let Ok(length) = u32::try_from(data.len()) else {
            return Err(Violation("block too long"));
        };
        // A new piece the assembler has no room for: leave the request outstanding (its
        // deadline sends the block elsewhere) rather than lose a block the scheduler would
        // count as received.
        if !self.assembler.is_partial(piece)
            && self.assembler.partial_count() >= self.assembler.max_partial_pieces()
            && !self.scheduler.have().has(piece)
        {
            tracing::debug!(piece, "no room to assemble another piece; block dropped");
            return Ok(());
        }
        let now = tokio::time::Instant::now();
        if let Some(peer) = self.peers.get_mut(&key) {
            peer.waiting_since = Some(now);
        }
        match self
            .scheduler
            .block_received(key, piece, begin, length, now.into_std())
        {
            BlockVerdict::Expected => {
                self.choker
                    .record_download(key, u64::from(length), now.into_std());
                match self.assembler.add_block(piece, begin, &data) {
                    Ok(Some(whole)) => self.commit_from_peers(piece, whole),
                    Ok(None) => {}
                    Err(error) if error.blames_source() => {
                        return Err(Violation("block off the grid"));
                    }
                    Err(error) => tracing::debug!(%error, "block not assembled"),
                }
            }
            BlockVerdict::Unrequested | BlockVerdict::AlreadyHave => {}
        }
        Ok(())
    }

    /// A request from the peer: queued for upload if we unchoke it and hold the piece.
    fn upload_request(&mut self, key: PeerKey, request: BlockRequest) -> Result<(), Violation> {
        let piece_len = self
            .info
            .piece_len(request.piece)
            .ok_or(Violation("request for a piece past the end"))?;
        if request.length == 0
            || request.length > MAX_READ_BLOCK_LEN
            || u64::from(request.begin) + u64::from(request.length) > u64::from(piece_len)
        {
            return Err(Violation("request outside its piece"));
        }
        let Some(peer) = self.peers.get(&key) else {
            return Ok(());
        };
        let served = self.choker.is_unchoked(key)
            && self.store.has_piece(request.piece)
            && peer.link.uploads().push(request);
        if !served && peer.fast {
            self.send_or_drop(
                key,
                Message::Reject {
                    index: request.piece,
                    begin: request.begin,
                    length: request.length,
                },
            );
        }
        Ok(())
    }

    /// The peer said (not) interested; the choker decides at the next poll.
    fn set_interested(&mut self, key: PeerKey, interested: bool) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        peer.interested = interested;
        let now = tokio::time::Instant::now().into_std();
        self.choker.peer_interested(key, interested, now);
    }

    /// Sends the choker's decisions. A choked peer's queued requests are dropped (and
    /// rejected, with BEP 6).
    pub(super) fn apply_choke(&mut self, actions: Vec<ChokeAction>) {
        for action in actions {
            match action {
                ChokeAction::Unchoke(key) => self.send_or_drop(key, Message::Unchoke),
                ChokeAction::Choke(key) => {
                    let Some(peer) = self.peers.get(&key) else {
                        continue;
                    };
                    let dropped = peer.link.uploads().clear();
                    let fast = peer.fast;
                    self.send_or_drop(key, Message::Choke);
                    if fast {
                        for r in dropped {
                            self.send_or_drop(
                                key,
                                Message::Reject {
                                    index: r.piece,
                                    begin: r.begin,
                                    length: r.length,
                                },
                            );
                        }
                    }
                }
            }
        }
    }

    /// A peer that has everything will not download from us (the choker is told); once we
    /// are complete too, it is of no use to either side and is dropped.
    fn drop_if_both_seeds(&mut self, key: PeerKey) {
        if !self.peers.get(&key).is_some_and(PeerState::is_seed) {
            return;
        }
        self.choker.peer_is_seed(key);
        if self.scheduler.is_complete() {
            tracing::debug!(key = key.0, "both sides are seeds; disconnecting");
            self.remove_peer(key);
        }
    }

    /// Closes and forgets a peer; the scheduler frees what it had asked of it.
    pub(super) fn remove_peer(&mut self, key: PeerKey) {
        let Some(peer) = self.peers.remove(&key) else {
            return;
        };
        peer.link.close();
        self.counters
            .closing
            .push(std::sync::Arc::clone(peer.link.stats()));
        self.scheduler.peer_disconnected(key);
        if self.peer_ids.get(&peer.peer_id) == Some(&key) {
            self.peer_ids.remove(&peer.peer_id);
        }
        self.connected_addrs.remove(&peer.addr);
        if let Some(listen) = peer.listen_addr {
            self.connected_addrs.remove(&listen);
        }
        if peer.settling {
            self.settle_one();
        }
        self.choker.peer_disconnected(key);
    }
}
