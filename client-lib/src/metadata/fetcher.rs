//! Fetching the metadata we lack, piece by piece, from the peers that offer it.
//!
//! # Which size to fetch
//!
//! Each peer states the metadata's size in its extended handshake, and only one size can be
//! right (the info-hash fixes the bytes), but a peer may lie or be wrong. We keep every
//! peer as a candidate *for the size it claimed* and fetch one size at a time: the size
//! claimed by the most usable peers, ties going to the size claimed first. The choice is
//! re-made only while nothing of the current round is stored (so a crowd arriving early
//! still wins) or when no usable peer of that size is left; once pieces are in, the round
//! sticks with its size. Data carrying another `total_size` is ignored. A wrong size
//! cannot hash right, so its peers end up suspects and the next round uses another size.
//!
//! # Failures
//!
//! A reject or a request that times out sends the piece to another peer (the one with the
//! fewest requests in flight that has not been asked for it yet) and backs the failing peer
//! off for [`FetchOptions::reject_backoff`]. After [`FetchOptions::max_peer_failures`]
//! failures without a stored piece in between, a peer is no longer asked and no longer
//! votes on the size; if that leaves nobody, everyone is forgiven, so a lone slow seed is
//! retried rather than abandoned. Data that arrives after its request timed out is still
//! taken if the piece is missing: it was asked for, and the hash check has the last word.
//!
//! # Memory
//!
//! At most one round of pieces is held, each a copy of the 16 KiB a peer sent (not a slice
//! of its read buffer), so the fetcher holds at most [`MAX_METADATA_SIZE`] bytes of data
//! plus a few words per peer and piece.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sha1::{Digest, Sha1};
use swarmcdn_proto::InfoHash;
use swarmcdn_proto::peer::{
    ExtendedHandshake, MAX_METADATA_SIZE, METADATA_PIECE_LEN, MetadataMessage, UT_METADATA,
    metadata_piece_count,
};

use crate::peer::PeerKey;

/// Default for [`FetchOptions::requests_per_peer`]: two, so a peer's next answer is already
/// asked for while it sends one, without looking like a flood to clients that rate-limit
/// metadata requests.
pub const DEFAULT_REQUESTS_PER_PEER: usize = 2;
/// The largest [`FetchOptions::requests_per_peer`] honoured; larger values are clamped.
pub const MAX_REQUESTS_PER_PEER: usize = 16;
/// Default for [`FetchOptions::request_timeout`].
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for [`FetchOptions::reject_backoff`].
pub const DEFAULT_REJECT_BACKOFF: Duration = Duration::from_secs(10);
/// Default for [`FetchOptions::max_peer_failures`].
pub const DEFAULT_MAX_PEER_FAILURES: u32 = 5;

/// The fetcher's bounds and timings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchOptions {
    /// Requests in flight per peer (clamped to `1..=`[`MAX_REQUESTS_PER_PEER`]).
    pub requests_per_peer: usize,
    /// How long a request may go unanswered before the piece is asked elsewhere.
    pub request_timeout: Duration,
    /// How long a peer is not asked after it rejected a request or let one time out.
    pub reject_backoff: Duration,
    /// Failures (rejects, timeouts) in a row after which a peer is no longer asked while
    /// others are usable (at least 1).
    pub max_peer_failures: u32,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            requests_per_peer: DEFAULT_REQUESTS_PER_PEER,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            reject_backoff: DEFAULT_REJECT_BACKOFF,
            max_peer_failures: DEFAULT_MAX_PEER_FAILURES,
        }
    }
}

/// Why a peer's advertisement cannot be used for fetching. The fetcher forgets the peer
/// (as after [`MetadataFetcher::peer_disconnected`]); the connection itself may stay.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UnusablePeer {
    /// The peer does not speak `ut_metadata` (absent, or id 0: disabled).
    #[error("peer does not offer ut_metadata")]
    NotSupported,
    /// The peer speaks `ut_metadata` but gave no `metadata_size`, so it may not have the
    /// metadata itself.
    #[error("peer gave no metadata_size")]
    NoMetadataSize,
    /// The peer claimed a size of 0.
    #[error("peer claimed empty metadata")]
    Empty,
    /// The peer was reported in [`FetchEvent::HashMismatch`]; it is not trusted again
    /// (for example when a handshake it sent before being dropped is processed late).
    #[error("peer contributed to metadata that failed the hash check")]
    Suspect,
    /// The peer claimed more than [`MAX_METADATA_SIZE`].
    #[error("peer claimed {size} bytes of metadata, the limit is {limit}")]
    TooLarge {
        /// The size claimed.
        size: u32,
        /// The limit in force.
        limit: u32,
    },
}

/// What a message from a peer led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchEvent {
    /// Taken into account (a piece stored, a reject noted); call
    /// [`MetadataFetcher::poll`] for the requests that follow.
    Continue,
    /// Nothing changed; the reason is for logs and tests.
    Ignored(Ignored),
    /// Send this to the peer: it asked us for metadata we do not have (BEP 9: reject).
    Reply(MetadataMessage),
    /// Every piece is in and the bytes hash to the info-hash: the info dictionary. The
    /// fetcher is finished; give the bytes to [`super::metainfo_from_info_bytes`].
    Complete(Bytes),
    /// Every piece is in but the bytes do not hash to the info-hash. The pieces were
    /// discarded and the fetch starts over without `suspects`, the peers that sent any of
    /// them (one of them lied; the protocol cannot tell which). Drop their connections.
    HashMismatch {
        /// The peers that contributed pieces, in key order.
        suspects: Vec<PeerKey>,
    },
}

/// Why a message changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ignored {
    /// The fetcher has completed.
    Finished,
    /// The peer is not (or no longer) a metadata source.
    UnknownPeer,
    /// We did not ask this peer for this piece in this round (or asked for another size).
    Unrequested,
    /// The data's `total_size` is not the size being fetched.
    WrongSize {
        /// The size the data claimed.
        total_size: u32,
    },
    /// The metadata being fetched has no such piece.
    NoSuchPiece,
    /// The data is not as long as its piece must be.
    WrongLength {
        /// The piece's length.
        expected: usize,
        /// The data's length.
        got: usize,
    },
    /// The piece was already stored.
    Duplicate,
}

/// Fetches a torrent's info dictionary over BEP 9: a pure state machine; see the module
/// docs for the policy.
///
/// The session calls [`peer_supports`](Self::peer_supports) (or
/// [`on_extended_handshake`](Self::on_extended_handshake)) when a peer's extended handshake
/// arrives, [`on_message`](Self::on_message) for every `ut_metadata` message,
/// [`peer_disconnected`](Self::peer_disconnected) when a connection ends, and
/// [`poll`](Self::poll) after each of those and at [`next_deadline`](Self::next_deadline),
/// sending each returned request under [`peer_extension_id`](Self::peer_extension_id).
#[derive(Debug)]
pub struct MetadataFetcher {
    info_hash: InfoHash,
    options: FetchOptions,
    peers: BTreeMap<PeerKey, PeerState>,
    /// Peers reported after a hash mismatch; at most one entry per peer ever registered.
    suspects: BTreeSet<PeerKey>,
    /// Counter giving each registration its order, for size ties.
    next_seen: u64,
    round: Option<Round>,
    /// The peer last given a request: the next tie goes to the one after it.
    cursor: Option<PeerKey>,
    restarts: u32,
    complete: bool,
}

#[derive(Debug)]
struct PeerState {
    /// The id the peer wants `ut_metadata` messages sent under.
    extension_id: u8,
    /// The metadata size the peer claimed.
    size: u32,
    /// When it registered, relative to the others.
    seen: u64,
    /// Requests unanswered: piece and when it was asked.
    in_flight: Vec<(u32, Instant)>,
    /// Pieces asked of this peer in this round (indexed by piece, grown on demand).
    asked: Vec<bool>,
    blocked_until: Option<Instant>,
    /// Rejects and timeouts since its last stored piece.
    failures: u32,
}

impl PeerState {
    fn was_asked(&self, piece: u32) -> bool {
        self.asked.get(piece as usize).copied().unwrap_or(false)
    }

    fn forget_requests(&mut self) {
        self.in_flight.clear();
        self.asked.clear();
    }
}

#[derive(Debug)]
struct Round {
    size: u32,
    pieces: Vec<Option<StoredPiece>>,
    stored: usize,
}

#[derive(Debug)]
struct StoredPiece {
    data: Bytes,
    from: PeerKey,
}

impl Round {
    fn new(size: u32) -> Self {
        let count = metadata_piece_count(size) as usize;
        Self {
            size,
            pieces: (0..count).map(|_| None).collect(),
            stored: 0,
        }
    }
}

/// The length of piece `piece` of metadata of `size` bytes, if it has that piece.
fn piece_len(piece: u32, size: u32) -> Option<usize> {
    let start = usize::try_from(piece)
        .ok()?
        .checked_mul(METADATA_PIECE_LEN)?;
    let rest = (size as usize).checked_sub(start).filter(|&r| r > 0)?;
    Some(rest.min(METADATA_PIECE_LEN))
}

impl MetadataFetcher {
    /// A fetcher for the info dictionary whose SHA-1 is `info_hash`.
    pub fn new(info_hash: InfoHash, options: FetchOptions) -> Self {
        let options = FetchOptions {
            requests_per_peer: options.requests_per_peer.clamp(1, MAX_REQUESTS_PER_PEER),
            max_peer_failures: options.max_peer_failures.max(1),
            ..options
        };
        Self {
            info_hash,
            options,
            peers: BTreeMap::new(),
            suspects: BTreeSet::new(),
            next_seen: 0,
            round: None,
            cursor: None,
            restarts: 0,
            complete: false,
        }
    }

    /// The info-hash being fetched.
    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }

    /// Whether the metadata has been fetched and checked.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// The size the current round fetches, once one is chosen.
    pub fn target_size(&self) -> Option<u32> {
        self.round.as_ref().map(|r| r.size)
    }

    /// Pieces stored and pieces needed in the current round.
    pub fn progress(&self) -> Option<(usize, usize)> {
        self.round.as_ref().map(|r| (r.stored, r.pieces.len()))
    }

    /// How many times a hash mismatch made the fetch start over.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// The extended message id `peer` wants `ut_metadata` messages under: send the requests
    /// [`poll`](Self::poll) returns with [`MetadataMessage::to_message`] and this id.
    pub fn peer_extension_id(&self, peer: PeerKey) -> Option<u8> {
        self.peers.get(&peer).map(|p| p.extension_id)
    }

    /// Requests in flight to `peer`.
    pub fn in_flight(&self, peer: PeerKey) -> usize {
        self.peers.get(&peer).map_or(0, |p| p.in_flight.len())
    }

    /// Records what `peer`'s extended handshake says about `ut_metadata`; see
    /// [`peer_supports`](Self::peer_supports).
    pub fn on_extended_handshake(
        &mut self,
        peer: PeerKey,
        handshake: &ExtendedHandshake,
    ) -> Result<(), UnusablePeer> {
        let Some(id) = handshake.extension_id(UT_METADATA) else {
            self.peer_disconnected(peer);
            return Err(UnusablePeer::NotSupported);
        };
        let Some(size) = handshake.metadata_size else {
            self.peer_disconnected(peer);
            return Err(UnusablePeer::NoMetadataSize);
        };
        self.peer_supports(peer, id, size)
    }

    /// Records that `peer` serves metadata of `metadata_size` bytes and wants requests
    /// under extended id `ut_metadata_id`. A repeated handshake (BEP 10 allows one) updates
    /// the id; a new size also cancels the peer's requests. An id of 0, an empty size, one
    /// over [`MAX_METADATA_SIZE`] or a peer already reported as a suspect is refused, and
    /// the peer is forgotten. A size
    /// other than the one being fetched is kept as a candidate for a later round. After
    /// completion this does nothing.
    pub fn peer_supports(
        &mut self,
        peer: PeerKey,
        ut_metadata_id: u8,
        metadata_size: u32,
    ) -> Result<(), UnusablePeer> {
        if self.complete {
            return Ok(());
        }
        let refusal = if self.suspects.contains(&peer) {
            Some(UnusablePeer::Suspect)
        } else if ut_metadata_id == 0 {
            Some(UnusablePeer::NotSupported)
        } else if metadata_size == 0 {
            Some(UnusablePeer::Empty)
        } else if metadata_size > MAX_METADATA_SIZE {
            Some(UnusablePeer::TooLarge {
                size: metadata_size,
                limit: MAX_METADATA_SIZE,
            })
        } else {
            None
        };
        if let Some(refusal) = refusal {
            self.peer_disconnected(peer);
            return Err(refusal);
        }
        if let Some(state) = self.peers.get_mut(&peer) {
            state.extension_id = ut_metadata_id;
            if state.size != metadata_size {
                state.size = metadata_size;
                state.forget_requests();
            }
            return Ok(());
        }
        self.peers.insert(
            peer,
            PeerState {
                extension_id: ut_metadata_id,
                size: metadata_size,
                seen: self.next_seen,
                in_flight: Vec::new(),
                asked: Vec::new(),
                blocked_until: None,
                failures: 0,
            },
        );
        self.next_seen += 1;
        Ok(())
    }

    /// Forgets `peer`: its requests in flight will be asked elsewhere. Pieces it already
    /// sent are kept (and still count against it if the hash does not match).
    pub fn peer_disconnected(&mut self, peer: PeerKey) {
        self.peers.remove(&peer);
    }

    /// The requests to send now, as `(peer, MetadataMessage::Request)`. Expires requests
    /// older than [`FetchOptions::request_timeout`], then gives each missing piece that is
    /// not in flight to a peer with room, preferring peers not yet asked for that piece and,
    /// among those, the least loaded.
    pub fn poll(&mut self, now: Instant) -> Vec<(PeerKey, MetadataMessage)> {
        if self.complete {
            return Vec::new();
        }
        self.expire(now);
        self.forgive_if_nobody_usable();
        self.choose_round();
        let Some(round) = &self.round else {
            return Vec::new();
        };
        let size = round.size;
        let mut missing: Vec<bool> = round.pieces.iter().map(Option::is_none).collect();
        for state in self.peers.values().filter(|p| p.size == size) {
            for &(piece, _) in &state.in_flight {
                if let Some(m) = missing.get_mut(piece as usize) {
                    *m = false;
                }
            }
        }

        let options = self.options;
        let mut out = Vec::new();
        for (index, _) in missing.iter().enumerate().filter(|(_, m)| **m) {
            let piece = index as u32;
            let cursor = self.cursor;
            let chosen = self
                .peers
                .iter()
                .filter(|(_, p)| {
                    p.size == size
                        && p.failures < options.max_peer_failures
                        && p.in_flight.len() < options.requests_per_peer
                        && p.blocked_until.is_none_or(|until| until <= now)
                })
                .min_by_key(|(key, p)| {
                    let after_cursor = cursor.is_none_or(|c| **key > c);
                    (p.was_asked(piece), p.in_flight.len(), !after_cursor, **key)
                })
                .map(|(key, _)| *key);
            // No peer has room for this piece, so none has room for the next.
            let Some(key) = chosen else { break };
            if let Some(state) = self.peers.get_mut(&key) {
                state.in_flight.push((piece, now));
                if state.asked.len() <= index {
                    state.asked.resize(index + 1, false);
                }
                state.asked[index] = true;
            }
            self.cursor = Some(key);
            out.push((key, MetadataMessage::Request { piece }));
        }
        out
    }

    /// When [`poll`](Self::poll) next has something to do without any message arriving: a
    /// request timing out or a backed-off peer becoming free.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.complete {
            return None;
        }
        let timeout = self.options.request_timeout;
        let timeouts = self
            .peers
            .values()
            .flat_map(|p| p.in_flight.iter())
            .filter_map(|&(_, asked)| asked.checked_add(timeout));
        let unblocks = self.peers.values().filter_map(|p| p.blocked_until);
        timeouts.chain(unblocks).min()
    }

    /// Handles a `ut_metadata` message from `peer`, received at `now`.
    pub fn on_message(
        &mut self,
        peer: PeerKey,
        message: MetadataMessage,
        now: Instant,
    ) -> FetchEvent {
        if self.complete {
            return FetchEvent::Ignored(Ignored::Finished);
        }
        match message {
            MetadataMessage::Request { piece } => {
                FetchEvent::Reply(MetadataMessage::Reject { piece })
            }
            MetadataMessage::Reject { piece } => self.on_reject(peer, piece, now),
            MetadataMessage::Data {
                piece,
                total_size,
                data,
            } => self.on_data(peer, piece, total_size, &data),
        }
    }

    fn on_reject(&mut self, peer: PeerKey, piece: u32, now: Instant) -> FetchEvent {
        let Some(state) = self.peers.get_mut(&peer) else {
            return FetchEvent::Ignored(Ignored::UnknownPeer);
        };
        let Some(at) = state.in_flight.iter().position(|&(p, _)| p == piece) else {
            return FetchEvent::Ignored(Ignored::Unrequested);
        };
        state.in_flight.swap_remove(at);
        state.failures = state.failures.saturating_add(1);
        state.blocked_until = now.checked_add(self.options.reject_backoff);
        FetchEvent::Continue
    }

    fn on_data(&mut self, peer: PeerKey, piece: u32, total_size: u32, data: &[u8]) -> FetchEvent {
        let Some(state) = self.peers.get_mut(&peer) else {
            return FetchEvent::Ignored(Ignored::UnknownPeer);
        };
        let Some(round) = self.round.as_mut() else {
            return FetchEvent::Ignored(Ignored::Unrequested);
        };
        if total_size != round.size {
            return FetchEvent::Ignored(Ignored::WrongSize { total_size });
        }
        let (Some(expected), Some(slot)) = (
            piece_len(piece, round.size),
            round.pieces.get_mut(piece as usize),
        ) else {
            return FetchEvent::Ignored(Ignored::NoSuchPiece);
        };
        if data.len() != expected {
            return FetchEvent::Ignored(Ignored::WrongLength {
                expected,
                got: data.len(),
            });
        }
        if state.size != round.size || !state.was_asked(piece) {
            return FetchEvent::Ignored(Ignored::Unrequested);
        }
        state.in_flight.retain(|&(p, _)| p != piece);
        if slot.is_some() {
            return FetchEvent::Ignored(Ignored::Duplicate);
        }
        *slot = Some(StoredPiece {
            data: Bytes::copy_from_slice(data),
            from: peer,
        });
        round.stored += 1;
        state.failures = 0;
        state.blocked_until = None;
        if round.stored == round.pieces.len() {
            self.finish()
        } else {
            FetchEvent::Continue
        }
    }

    /// All pieces are in: check the hash, then complete or start over.
    fn finish(&mut self) -> FetchEvent {
        let Some(round) = self.round.take() else {
            return FetchEvent::Continue;
        };
        let mut bytes = Vec::with_capacity(round.size as usize);
        let mut contributors = BTreeSet::new();
        for stored in round.pieces.into_iter().flatten() {
            bytes.extend_from_slice(&stored.data);
            contributors.insert(stored.from);
        }
        if InfoHash::new(Sha1::digest(&bytes).into()) == self.info_hash {
            self.complete = true;
            self.peers.clear();
            return FetchEvent::Complete(Bytes::from(bytes));
        }
        for suspect in &contributors {
            self.peers.remove(suspect);
        }
        self.suspects.extend(contributors.iter().copied());
        self.restarts = self.restarts.saturating_add(1);
        // Same size again; `choose_round` moves on if no peer of it is left. Requests in
        // flight to the remaining peers stay valid: their answers are still welcome.
        self.round = Some(Round::new(round.size));
        FetchEvent::HashMismatch {
            suspects: contributors.into_iter().collect(),
        }
    }

    /// Drops requests older than the timeout; each counts as a failure of its peer. Clears
    /// backoffs that have run out.
    fn expire(&mut self, now: Instant) {
        let options = self.options;
        for state in self.peers.values_mut() {
            let before = state.in_flight.len();
            state.in_flight.retain(|&(_, asked)| {
                asked
                    .checked_add(options.request_timeout)
                    .is_some_and(|deadline| deadline > now)
            });
            let expired = (before - state.in_flight.len()) as u32;
            if expired > 0 {
                state.failures = state.failures.saturating_add(expired);
                state.blocked_until = now.checked_add(options.reject_backoff);
            }
            // A backoff that has run out is cleared, so `next_deadline` never names a past
            // instant (the session would wake up in a loop).
            if state.blocked_until.is_some_and(|until| until <= now) {
                state.blocked_until = None;
            }
        }
    }

    /// When every peer has failed too often, gives them all another chance: a slow source
    /// beats none.
    fn forgive_if_nobody_usable(&mut self) {
        let max = self.options.max_peer_failures;
        if self.peers.values().all(|p| p.failures >= max) {
            for state in self.peers.values_mut() {
                state.failures = 0;
            }
        }
    }

    /// Keeps or replaces the round; see the module docs ("Which size to fetch").
    fn choose_round(&mut self) {
        let max = self.options.max_peer_failures;
        if let Some(round) = &self.round
            && round.stored > 0
            && self
                .peers
                .values()
                .any(|p| p.size == round.size && p.failures < max)
        {
            return;
        }
        // Per size: (usable peers claiming it, earliest claim).
        let mut votes: BTreeMap<u32, (usize, u64)> = BTreeMap::new();
        for state in self.peers.values().filter(|p| p.failures < max) {
            let vote = votes.entry(state.size).or_insert((0, u64::MAX));
            vote.0 += 1;
            vote.1 = vote.1.min(state.seen);
        }
        let Some((best, _)) = votes
            .into_iter()
            .max_by_key(|&(_, (count, seen))| (count, std::cmp::Reverse(seen)))
        else {
            return;
        };
        if self.round.as_ref().is_some_and(|r| r.size == best) {
            return;
        }
        for state in self.peers.values_mut() {
            state.forget_requests();
        }
        self.round = Some(Round::new(best));
    }
}
