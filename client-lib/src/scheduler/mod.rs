//! The piece scheduler of one torrent: what to request from which peer, and when to fetch a
//! piece from a web seed instead.
//!
//! # Why a pure state machine
//! The scheduler owns no socket, no timer and no random generator: the per-torrent session
//! feeds it events (a peer connected, a block arrived, a piece verified...) and the current
//! time, calls [`Scheduler::poll`] with its random generator, and executes the [`Action`]s it
//! gets back. Every rule below is therefore a unit test with a fixed clock and a seeded RNG,
//! and a simulation can drive thousands of random swarms through it in a second.
//!
//! # The fallback contract
//! HTTP (the publisher's origin) is a *priced* source; peers are free but may be missing or
//! slow. So a piece goes to a web seed only when:
//! 1. no usable peer has it (connected, and not choking us for longer than
//!    [`SchedulerConfig::choke_grace`]), once [`SchedulerConfig::initial_peer_wait`] has
//!    passed since start or [`Scheduler::discovery_settled`] was called; or
//! 2. a block of it is *late*: every outstanding request for it passed its deadline (see
//!    [`DeadlinePolicy`]; a timely endgame duplicate keeps the block on time). The peer
//!    requests stay outstanding and the first verified copy wins; the loser is cancelled
//!    (peer) or ignored (HTTP). With no usable web seed (none, or all backed off) the late
//!    block is asked of another peer that has it instead; a seed that is merely busy is
//!    waited for, since its fetch will come.
//!
//! Pieces that go to HTTP together and are contiguous are fetched as one range (up to
//! [`SchedulerConfig::max_http_range_bytes`]), so the origin serves few, cacheable requests.
//! A piece in an HTTP fetch is not asked of peers until the fetch ends.
//!
//! Failures are local: a piece that fails its hash is missing again (every block is fetched
//! afresh, whatever the source of the bad copy) and the source that sent it is never asked
//! for it again; peers and seeds may go away at any time and leave no request behind.
//!
//! # Peer side
//! Rarest piece first among pieces usable peers have, with a random tie-break; a piece
//! already begun is finished before a new one is started, so blocks of many pieces are not
//! spread over peers. Once every missing block has been asked for (endgame), outstanding
//! blocks may be asked of a second peer, and the duplicate is cancelled when one arrives.
//!
//! # Cost
//! `poll` runs after every event, so it must not walk every piece for every peer. Piece
//! availability is kept up to date incrementally, and pieces are indexed by what can happen
//! to them next: idle pieces some peer has sit in a set ordered by (availability, random
//! rank); pieces no peer has, begun pieces with unrequested blocks and pieces with late
//! blocks each have their own ordered set; outstanding requests are indexed by deadline.
//! Each peer counts the idle pieces it holds, so a peer with nothing new to give is skipped
//! in constant time. Only bitfields (and a peer turning (un)usable) cost O(pieces).
//!
//! # Example
//! ```
//! use std::time::Instant;
//!
//! use rand::SeedableRng;
//! use swarmcdn_client::scheduler::{
//!     Action, PieceGeometry, Scheduler, SchedulerConfig, Source, WebSeedKey,
//! };
//! use swarmcdn_proto::peer::Bitfield;
//!
//! // 40 KiB in 16 KiB pieces, nothing held yet, one web seed and no tracker.
//! let geometry = PieceGeometry::new(16 * 1024, 40 * 1024).unwrap();
//! let none = Bitfield::new(geometry.piece_count());
//! let now = Instant::now();
//! let mut scheduler = Scheduler::new(geometry, &none, SchedulerConfig::default(), now);
//! let seed = WebSeedKey(0);
//! scheduler.add_web_seed(seed);
//! scheduler.discovery_settled();
//!
//! let mut rng = rand::rngs::StdRng::seed_from_u64(1);
//! let actions = scheduler.poll(now, &mut rng);
//! assert_eq!(actions, vec![Action::HttpFetch { seed, pieces: 0..3 }]);
//! // The session fetches the range, hashes each piece and reports back.
//! for piece in 0..3 {
//!     scheduler.piece_verified(piece, Source::WebSeed(seed));
//! }
//! scheduler.http_fetch_finished(seed, 0..3);
//! assert!(scheduler.is_complete());
//! assert_eq!(scheduler.next_wakeup(), None);
//! ```

mod config;
mod geometry;
mod peer;

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ops::Range;
use std::time::Instant;

use rand::{Rng, RngExt};
use swarmcdn_proto::peer::Bitfield;

pub use config::{DeadlinePolicy, MAX_DEADLINE_MULTIPLIER, MAX_DURATION, SchedulerConfig};
pub use geometry::PieceGeometry;

use peer::{Peer, ReqInfo};

/// The most peers a block is requested from at once in endgame. (A *late* block, one whose
/// every request is overdue, may be asked of each peer that has it, once, when no web seed
/// is usable: a cap there could leave a block stuck with stalled peers.)
pub const ENDGAME_REQUESTS_PER_BLOCK: usize = 2;

/// A connection, numbered by the session (the scheduler never sees addresses). Keys are not
/// reused within one torrent. The same key names the connection in [`crate::peer`].
pub use crate::peer::PeerKey;

/// A web seed: the index of its URL in the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WebSeedKey(pub u32);

/// Where a copy of a piece came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// Blocks from a peer (if from several, the one the session holds responsible).
    Peer(PeerKey),
    /// A web seed.
    WebSeed(WebSeedKey),
}

/// Something the session must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send `interested` / `not interested`.
    Interested {
        /// To whom.
        peer: PeerKey,
        /// `true` for `interested`.
        interested: bool,
    },
    /// Send a `request`.
    Request {
        /// To whom.
        peer: PeerKey,
        /// Piece index.
        piece: u32,
        /// Byte offset in the piece.
        begin: u32,
        /// Block length.
        length: u32,
    },
    /// Send a `cancel` for an earlier request.
    Cancel {
        /// To whom.
        peer: PeerKey,
        /// Piece index.
        piece: u32,
        /// Byte offset in the piece.
        begin: u32,
        /// Block length.
        length: u32,
    },
    /// Fetch these whole, contiguous pieces from a web seed in one ranged GET, verify each,
    /// report each with [`Scheduler::piece_verified`] / [`Scheduler::piece_failed`], then
    /// call [`Scheduler::http_fetch_finished`] with the same range.
    HttpFetch {
        /// From which seed.
        seed: WebSeedKey,
        /// Which pieces.
        pieces: Range<u32>,
    },
}

impl Action {
    /// The peer the action is for, if it is for a peer.
    pub fn peer(&self) -> Option<PeerKey> {
        match *self {
            Action::Interested { peer, .. }
            | Action::Request { peer, .. }
            | Action::Cancel { peer, .. } => Some(peer),
            Action::HttpFetch { .. } => None,
        }
    }
}

/// What to do with a received block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockVerdict {
    /// We asked this peer for exactly this block: store it.
    Expected,
    /// We never asked this peer for this block (or it is no block of the torrent): drop the
    /// data; nothing changed.
    Unrequested,
    /// A valid block we already have (e.g. it crossed our `cancel`): drop the data.
    AlreadyHave,
}

/// Counters for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SchedulerStats {
    /// Pieces verified from peer blocks.
    pub pieces_from_peers: u32,
    /// Pieces verified from web seeds.
    pub pieces_from_http: u32,
    /// Requests sent to peers.
    pub blocks_requested: u64,
    /// Bytes asked of peers.
    pub bytes_requested_from_peers: u64,
    /// Requests for a block already asked of another peer (endgame or overdue).
    pub duplicate_requests: u64,
    /// Requested blocks that arrived.
    pub blocks_received: u64,
    /// Bytes of requested blocks that arrived.
    pub bytes_received_from_peers: u64,
    /// Cancels sent.
    pub cancels_sent: u64,
    /// Requests that passed their deadline.
    pub overdue_requests: u64,
    /// HTTP fetches started.
    pub http_fetches: u64,
    /// Bytes asked of web seeds.
    pub bytes_requested_over_http: u64,
    /// Pieces that failed their hash.
    pub hash_failures: u32,
    /// Index entries visited while choosing requests (the scheduler's own work; a test
    /// checks it stays near-linear in the number of pieces).
    pub selection_steps: u64,
}

/// A piece with peer requests or received blocks.
#[derive(Debug)]
struct ActivePiece {
    blocks: Vec<Slot>,
    /// Blocks neither received nor requested.
    unrequested: u32,
    /// Blocks received.
    received: u32,
    /// Late blocks (see [`Slot::is_late`]).
    late: u32,
}

impl ActivePiece {
    fn new(blocks: u32) -> Self {
        ActivePiece {
            blocks: (0..blocks).map(|_| Slot::default()).collect(),
            unrequested: blocks,
            received: 0,
            late: 0,
        }
    }

    fn all_received(&self) -> bool {
        self.received as usize == self.blocks.len()
    }

    /// Changes one slot through `change`, keeping the piece's counters right: the only
    /// way slots are changed.
    fn update_slot<T>(&mut self, block: u32, change: impl FnOnce(&mut Slot) -> T) -> Option<T> {
        let slot = self.blocks.get_mut(block as usize)?;
        let before = (
            slot.is_unrequested(),
            slot.received.is_some(),
            slot.is_late(),
        );
        let out = change(slot);
        let after = (
            slot.is_unrequested(),
            slot.received.is_some(),
            slot.is_late(),
        );
        let adjust = |n: &mut u32, was: bool, is: bool| match (was, is) {
            (false, true) => *n += 1,
            (true, false) => *n -= 1,
            _ => {}
        };
        adjust(&mut self.unrequested, before.0, after.0);
        adjust(&mut self.received, before.1, after.1);
        adjust(&mut self.late, before.2, after.2);
        Some(out)
    }
}

/// Picks blocks for one peer from a list of active pieces: one selection step per piece
/// looked at, only pieces the peer has, at most `free` blocks in all.
struct PickBlocks<'a> {
    has: &'a Bitfield,
    active: &'a BTreeMap<u32, ActivePiece>,
    free: &'a mut usize,
    steps: &'a mut u64,
    picks: &'a mut Vec<(u32, u32)>,
}

impl PickBlocks<'_> {
    /// Picks the blocks of `pieces` whose slot is `wanted`, in order.
    fn from(&mut self, pieces: &BTreeSet<u32>, wanted: impl Fn(&Slot) -> bool) {
        for &piece in pieces {
            *self.steps += 1;
            if *self.free == 0 {
                break;
            }
            if !self.has.has(piece) {
                continue;
            }
            let Some(a) = self.active.get(&piece) else {
                continue;
            };
            for (b, slot) in a.blocks.iter().enumerate() {
                if *self.free == 0 {
                    break;
                }
                if wanted(slot) {
                    self.picks.push((piece, b as u32));
                    *self.free -= 1;
                }
            }
        }
    }
}

/// One block of an active piece.
#[derive(Debug, Default)]
struct Slot {
    /// Who delivered it.
    received: Option<PeerKey>,
    /// Who has an outstanding request for it.
    requesters: Vec<PeerKey>,
    /// How many of those requests are not yet overdue.
    timely: u32,
}

impl Slot {
    fn is_unrequested(&self) -> bool {
        self.received.is_none() && self.requesters.is_empty()
    }

    /// Requested, not received, and every request for it overdue.
    fn is_late(&self) -> bool {
        self.received.is_none() && !self.requesters.is_empty() && self.timely == 0
    }
}

/// One web seed.
#[derive(Debug, Default)]
struct Seed {
    /// Not used before this time (503 + Retry-After).
    backoff_until: Option<Instant>,
    /// Fetches in flight.
    in_flight: Vec<Range<u32>>,
}

/// The piece scheduler of one torrent. See the [module docs](self).
#[derive(Debug)]
pub struct Scheduler {
    geo: PieceGeometry,
    config: SchedulerConfig,
    have: Bitfield,
    missing: u32,
    /// Usable peers holding each piece.
    avail: Vec<u32>,
    /// Random rank per piece, the tie-break among equally rare pieces (drawn at first poll).
    rank: Vec<u32>,
    ranked: bool,
    /// The availability a piece was filed under in `candidates`, if it is there.
    cand_key: Vec<Option<u32>>,
    /// Idle missing pieces some usable peer has, as (availability, rank, piece).
    candidates: BTreeSet<(u32, u32, u32)>,
    /// Missing pieces no usable peer has (excluding fetched and fully received ones).
    orphans: BTreeSet<u32>,
    /// Active pieces with unrequested blocks that some usable peer has.
    partial: BTreeSet<u32>,
    /// Active pieces with a late block (every request for it overdue).
    late: BTreeSet<u32>,
    /// Pieces with peer requests or received blocks.
    active: BTreeMap<u32, ActivePiece>,
    /// The web seed fetching each piece, if any.
    http: Vec<Option<WebSeedKey>>,
    /// Outstanding requests not yet overdue, by deadline.
    deadlines: BTreeSet<(Instant, PeerKey, u32, u32)>,
    peers: BTreeMap<PeerKey, Peer>,
    seeds: BTreeMap<WebSeedKey, Seed>,
    removed_seeds: HashSet<WebSeedKey>,
    /// (piece, source) pairs never used again: the source sent a bad copy of the piece (or,
    /// for a peer, rejected it twice while unchoking us).
    excluded: HashSet<(u32, Source)>,
    /// (piece, peer) pairs rejected once while unchoking us.
    rejected_once: HashSet<(u32, PeerKey)>,
    /// Until when pieces no peer has wait for peers; `None` once over.
    peer_wait_until: Option<Instant>,
    pending: Vec<Action>,
    stats: SchedulerStats,
}

impl Scheduler {
    /// A scheduler for a torrent laid out as `geometry`, of which the pieces in `have` are
    /// already held (bits past the piece count are ignored). `now` starts the initial wait
    /// for peers. The config is brought into range (see [`SchedulerConfig`]).
    pub fn new(
        geometry: PieceGeometry,
        have: &Bitfield,
        config: SchedulerConfig,
        now: Instant,
    ) -> Self {
        let count = geometry.piece_count();
        let n = count as usize;
        let mut held = Bitfield::new(count);
        for piece in (0..count).filter(|&p| have.has(p)) {
            let _ = held.set(piece);
        }
        let config = config.sanitized();
        let peer_wait_until = Some(now.checked_add(config.initial_peer_wait).unwrap_or(now));
        let mut scheduler = Scheduler {
            geo: geometry,
            missing: count - held.count(),
            have: held,
            avail: vec![0; n],
            rank: vec![0; n],
            ranked: false,
            cand_key: vec![None; n],
            candidates: BTreeSet::new(),
            orphans: BTreeSet::new(),
            partial: BTreeSet::new(),
            late: BTreeSet::new(),
            active: BTreeMap::new(),
            http: vec![None; n],
            deadlines: BTreeSet::new(),
            peers: BTreeMap::new(),
            seeds: BTreeMap::new(),
            removed_seeds: HashSet::new(),
            excluded: HashSet::new(),
            rejected_once: HashSet::new(),
            peer_wait_until,
            pending: Vec::new(),
            stats: SchedulerStats::default(),
            config,
        };
        for piece in 0..count {
            scheduler.reindex(piece);
        }
        scheduler
    }

    // ---- queries ----

    /// The layout.
    pub fn geometry(&self) -> &PieceGeometry {
        &self.geo
    }

    /// The config in use (after correction).
    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// The pieces verified so far.
    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    /// Whether every piece is verified.
    pub fn is_complete(&self) -> bool {
        self.missing == 0
    }

    /// How many pieces are still missing.
    pub fn missing_count(&self) -> u32 {
        self.missing
    }

    /// Counters.
    pub fn stats(&self) -> &SchedulerStats {
        &self.stats
    }

    /// Whether we are interested in `peer` (it has a piece we lack), i.e. the last
    /// `Interested` action for it said so.
    pub fn peer_wants(&self, peer: PeerKey) -> bool {
        self.peers.get(&peer).is_some_and(|p| p.interested)
    }

    /// Requests outstanding to `peer`.
    pub fn outstanding_requests(&self, peer: PeerKey) -> usize {
        self.peers.get(&peer).map_or(0, |p| p.reqs.len())
    }

    /// How many requests `peer` is allowed in flight now.
    pub fn peer_pipeline(&self, peer: PeerKey) -> Option<usize> {
        self.peers.get(&peer).map(|p| p.est.pipeline)
    }

    /// The deadline a request sent to `peer` now would get.
    pub fn peer_deadline(&self, peer: PeerKey) -> Option<std::time::Duration> {
        self.peers.get(&peer).map(|p| p.est.deadline(&self.config))
    }

    /// The smoothed block latency of `peer`, once it delivered a block.
    pub fn peer_latency(&self, peer: PeerKey) -> Option<std::time::Duration> {
        self.peers.get(&peer).and_then(|p| p.est.latency())
    }

    /// The peers whose blocks make up what we hold of `piece` (for the session to decide
    /// whom to blame when it fails its hash).
    pub fn piece_contributors(&self, piece: u32) -> Vec<PeerKey> {
        let mut peers: Vec<PeerKey> = self
            .active
            .get(&piece)
            .map(|a| a.blocks.iter().filter_map(|s| s.received).collect())
            .unwrap_or_default();
        peers.sort_unstable();
        peers.dedup();
        peers
    }

    // ---- peers ----

    /// A connection completed its handshake. It starts choking us and having nothing;
    /// `fast_extension` says whether both sides support BEP 6 (then a choke keeps our
    /// requests until the peer rejects them). A key already connected is ignored.
    pub fn peer_connected(&mut self, peer: PeerKey, fast_extension: bool, now: Instant) {
        let count = self.geo.piece_count();
        self.peers
            .entry(peer)
            .or_insert_with(|| Peer::new(count, fast_extension, now, &self.config));
    }

    /// A `bitfield` message: *replaces* what we knew of the peer's pieces (one may come late
    /// or twice). Requests for pieces it no longer claims are cancelled.
    pub fn peer_bitfield(&mut self, peer: PeerKey, bitfield: &Bitfield) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        let changed: Vec<(u32, bool)> = (0..self.geo.piece_count())
            .filter_map(|piece| {
                let new = bitfield.has(piece) && !self.is_excluded(piece, Source::Peer(peer));
                (new != p.has.has(piece)).then_some((piece, new))
            })
            .collect();
        for (piece, has) in changed {
            self.set_peer_piece(peer, piece, has);
        }
    }

    /// A `have` message (an index past the end is ignored: the session drops such peers).
    pub fn peer_have(&mut self, peer: PeerKey, piece: u32) {
        if piece < self.geo.piece_count()
            && self.peers.get(&peer).is_some_and(|p| !p.has.has(piece))
            && !self.is_excluded(piece, Source::Peer(peer))
        {
            self.set_peer_piece(peer, piece, true);
        }
    }

    /// A BEP 6 `have all`.
    pub fn peer_have_all(&mut self, peer: PeerKey) {
        self.peer_bitfield(peer, &Bitfield::full(self.geo.piece_count()));
    }

    /// A BEP 6 `have none`.
    pub fn peer_have_none(&mut self, peer: PeerKey) {
        self.peer_bitfield(peer, &Bitfield::new(self.geo.piece_count()));
    }

    /// A `choke` (`true`) or `unchoke` (`false`). Without the Fast extension a choke discards
    /// every outstanding request to that peer (no `cancel` is needed); with it, they stay
    /// until rejected. A peer choking us for longer than `choke_grace` stops counting as a
    /// holder of its pieces.
    pub fn peer_choked(&mut self, peer: PeerKey, choked: bool, now: Instant) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.choked == choked {
            return;
        }
        p.choked = choked;
        if choked {
            p.choked_since = now;
            if !p.fast {
                self.drop_all_requests(peer, false);
            }
        } else if !p.usable {
            self.set_usable(peer, true);
        }
    }

    /// A BEP 6 `reject`: the request is freed. A peer that rejects while unchoking us is not
    /// asked for that piece a third time (it may not have it after all).
    pub fn peer_rejected(&mut self, peer: PeerKey, piece: u32, begin: u32, length: u32) {
        let Some(block) = self
            .geo
            .block_index(piece, begin, length, self.config.block_size)
        else {
            return;
        };
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let Some(info) = p.reqs.remove(&(piece, block)) else {
            return;
        };
        let choked = p.choked;
        self.forget_request(peer, piece, block, info);
        if !choked && !self.rejected_once.insert((piece, peer)) {
            self.exclude(piece, Source::Peer(peer));
        }
        self.settle(piece);
    }

    /// The connection is gone (closed, failed or banned). Its requests are freed at once,
    /// and actions queued for it are dropped.
    pub fn peer_disconnected(&mut self, peer: PeerKey) {
        if !self.peers.contains_key(&peer) {
            return;
        }
        self.drop_all_requests(peer, false);
        if self.peers.get(&peer).is_some_and(|p| p.usable) {
            self.set_usable(peer, false);
        }
        self.peers.remove(&peer);
        self.rejected_once.retain(|&(_, key)| key != peer);
        // Cancels or interest changes queued for it have no connection to go to.
        self.pending.retain(|a| a.peer() != Some(peer));
    }

    /// A block arrived. Only a block we asked this very peer for is [`BlockVerdict::Expected`];
    /// its arrival cancels the same block asked of other peers and updates this peer's
    /// latency and throughput estimate.
    pub fn block_received(
        &mut self,
        peer: PeerKey,
        piece: u32,
        begin: u32,
        length: u32,
        now: Instant,
    ) -> BlockVerdict {
        let Some(block) = self
            .geo
            .block_index(piece, begin, length, self.config.block_size)
        else {
            return BlockVerdict::Unrequested;
        };
        let already = self.have.has(piece)
            || self
                .active
                .get(&piece)
                .and_then(|a| a.blocks.get(block as usize))
                .is_some_and(|s| s.received.is_some());
        if already {
            return BlockVerdict::AlreadyHave;
        }
        let Some(p) = self.peers.get_mut(&peer) else {
            return BlockVerdict::Unrequested;
        };
        let Some(info) = p.reqs.remove(&(piece, block)) else {
            return BlockVerdict::Unrequested;
        };
        p.est.block_arrived(
            now.saturating_duration_since(info.sent),
            length,
            now,
            &self.config,
        );
        self.forget_request(peer, piece, block, info);
        self.stats.blocks_received += 1;
        self.stats.bytes_received_from_peers += u64::from(length);
        let others = self
            .active
            .get_mut(&piece)
            .and_then(|a| {
                a.update_slot(block, |slot| {
                    slot.received = Some(peer);
                    slot.requesters.clone()
                })
            })
            .unwrap_or_default();
        for other in others {
            self.cancel_request(other, piece, block);
        }
        self.settle(piece);
        BlockVerdict::Expected
    }

    /// The first tracker answer came and the dials it led to resolved (or there is no
    /// tracker): pieces no peer has go to HTTP from now on.
    pub fn discovery_settled(&mut self) {
        self.peer_wait_until = None;
    }

    // ---- web seeds ----

    /// A web seed may be used. A seed removed before is never taken back.
    pub fn add_web_seed(&mut self, seed: WebSeedKey) {
        if !self.removed_seeds.contains(&seed) {
            self.seeds.entry(seed).or_default();
        }
    }

    /// The seed asked us to come back later (503 + Retry-After): no new fetch before
    /// `until`. Fetches in flight are unaffected (the session reports them finished).
    pub fn web_seed_backoff(&mut self, seed: WebSeedKey, until: Instant) {
        if let Some(s) = self.seeds.get_mut(&seed) {
            s.backoff_until = Some(s.backoff_until.map_or(until, |t| t.max(until)));
        }
    }

    /// The seed served bad bytes or failed hard: never used again. Its fetches in flight
    /// are abandoned and their unverified pieces become eligible again at once.
    pub fn web_seed_removed(&mut self, seed: WebSeedKey) {
        self.removed_seeds.insert(seed);
        if let Some(s) = self.seeds.remove(&seed) {
            for range in s.in_flight {
                self.release_http(seed, range);
            }
        }
    }

    /// A fetch ended (every piece in it was reported verified or failed, or the fetch
    /// failed): frees its slot, and its unverified pieces become eligible again.
    pub fn http_fetch_finished(&mut self, seed: WebSeedKey, pieces: Range<u32>) {
        let Some(s) = self.seeds.get_mut(&seed) else {
            return;
        };
        let Some(index) = s.in_flight.iter().position(|r| *r == pieces) else {
            return;
        };
        s.in_flight.swap_remove(index);
        self.release_http(seed, pieces);
    }

    // ---- outcomes ----

    /// A copy of `piece` from `source` passed its hash. The first verified copy wins:
    /// outstanding peer requests for it are cancelled; a fetch still in flight for it is
    /// left to finish and its copy is to be dropped by the session. Later calls for the
    /// same piece change nothing.
    pub fn piece_verified(&mut self, piece: u32, source: Source) {
        if piece >= self.geo.piece_count() || self.have.has(piece) {
            return;
        }
        self.cancel_piece_requests(piece);
        self.active.remove(&piece);
        let _ = self.have.set(piece);
        self.missing -= 1;
        match source {
            Source::Peer(_) => self.stats.pieces_from_peers += 1,
            Source::WebSeed(_) => self.stats.pieces_from_http += 1,
        }
        self.reindex(piece);
        let holders: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(_, p)| p.has.has(piece))
            .map(|(&k, _)| k)
            .collect();
        for key in holders {
            if let Some(p) = self.peers.get_mut(&key) {
                p.wanted -= 1;
            }
            self.update_interest(key);
        }
    }

    /// A copy of `piece` from `source` failed its hash: the piece is missing again, every
    /// block of it will be requested afresh (the session drops any partial data it holds),
    /// and `source` is never asked for it again. The session is expected to disconnect and
    /// ban a bad peer, or remove a bad seed. Ignored once the piece is verified.
    pub fn piece_failed(&mut self, piece: u32, source: Source) {
        if piece >= self.geo.piece_count() || self.have.has(piece) {
            return;
        }
        self.stats.hash_failures += 1;
        self.cancel_piece_requests(piece);
        self.active.remove(&piece);
        self.exclude(piece, source);
        self.reindex(piece);
    }

    // ---- driving ----

    /// Advances the clock to `now` and returns what to do: queued cancels and interest
    /// changes, HTTP fetches, then requests.
    pub fn poll<R: Rng + ?Sized>(&mut self, now: Instant, rng: &mut R) -> Vec<Action> {
        if !self.ranked {
            self.draw_ranks(rng);
        }
        self.advance_clock(now);
        if !self.is_complete() {
            self.http_stage();
            self.peer_stage(now, rng);
        }
        std::mem::take(&mut self.pending)
    }

    /// When `poll` should run next even if no event comes: the earliest deadline, backoff
    /// end, end of the initial wait for peers or end of a choke grace.
    pub fn next_wakeup(&self) -> Option<Instant> {
        if self.is_complete() {
            return None;
        }
        let deadline = self.deadlines.first().map(|d| d.0);
        let backoffs = self.seeds.values().filter_map(|s| s.backoff_until);
        let graces = self
            .peers
            .values()
            .filter(|p| p.choked && p.usable)
            .map(|p| self.choke_grace_end(p));
        deadline
            .into_iter()
            .chain(self.peer_wait_until)
            .chain(backoffs)
            .chain(graces)
            .min()
    }

    // ---- internals: time ----

    fn draw_ranks<R: Rng + ?Sized>(&mut self, rng: &mut R) {
        self.ranked = true;
        let filed: Vec<u32> = self.candidates.iter().map(|&(_, _, p)| p).collect();
        self.candidates.clear();
        for r in &mut self.rank {
            *r = rng.random();
        }
        for piece in filed {
            if let Some(a) = self.cand_key[piece as usize] {
                self.candidates
                    .insert((a, self.rank[piece as usize], piece));
            }
        }
    }

    fn choke_grace_end(&self, p: &Peer) -> Instant {
        p.choked_since
            .checked_add(self.config.choke_grace)
            .unwrap_or(p.choked_since)
    }

    fn advance_clock(&mut self, now: Instant) {
        if self.peer_wait_until.is_some_and(|t| t <= now) {
            self.peer_wait_until = None;
        }
        for s in self.seeds.values_mut() {
            if s.backoff_until.is_some_and(|t| t <= now) {
                s.backoff_until = None;
            }
        }
        let expired: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(_, p)| p.choked && p.usable && self.choke_grace_end(p) <= now)
            .map(|(&k, _)| k)
            .collect();
        for key in expired {
            self.set_usable(key, false);
        }
        while let Some(&(deadline, peer, piece, block)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            if let Some(info) = self
                .peers
                .get_mut(&peer)
                .and_then(|p| p.reqs.get_mut(&(piece, block)))
            {
                info.overdue = true;
            }
            if let Some(a) = self.active.get_mut(&piece) {
                a.update_slot(block, |slot| slot.timely -= 1);
            }
            self.stats.overdue_requests += 1;
            self.reindex(piece);
        }
    }

    // ---- internals: HTTP ----

    /// Whether some web seed could take a fetch now or soon (present and not backed off).
    fn any_usable_seed(&self) -> bool {
        self.config.max_http_in_flight_per_seed > 0
            && self.seeds.values().any(|s| s.backoff_until.is_none())
    }

    fn http_eligible(&self, piece: u32) -> bool {
        (self.peer_wait_until.is_none() && self.orphans.contains(&piece))
            || self.late.contains(&piece)
    }

    fn http_stage(&mut self) {
        let mut exhausted: Vec<WebSeedKey> = Vec::new();
        loop {
            if self.late.is_empty() && (self.orphans.is_empty() || self.peer_wait_until.is_some()) {
                return;
            }
            let max = self.config.max_http_in_flight_per_seed;
            let seed = self
                .seeds
                .iter()
                .filter(|(k, s)| {
                    s.backoff_until.is_none() && s.in_flight.len() < max && !exhausted.contains(k)
                })
                .min_by_key(|(k, s)| (s.in_flight.len(), **k))
                .map(|(&k, _)| k);
            let Some(seed) = seed else {
                return;
            };
            match self.next_http_range(seed) {
                Some(range) => self.start_fetch(seed, range),
                None => exhausted.push(seed),
            }
        }
    }

    /// The lowest eligible piece `seed` may serve, extended over the following eligible
    /// pieces up to the range limit.
    fn next_http_range(&mut self, seed: WebSeedKey) -> Option<Range<u32>> {
        let source = Source::WebSeed(seed);
        let first_orphan = if self.peer_wait_until.is_none() {
            self.orphans
                .iter()
                .copied()
                .find(|&p| !self.is_excluded(p, source))
        } else {
            None
        };
        let first_late = self
            .late
            .iter()
            .copied()
            .find(|&p| !self.is_excluded(p, source));
        let start = first_orphan.into_iter().chain(first_late).min()?;
        let mut end = start + 1;
        let mut bytes = u64::from(self.geo.piece_len(start));
        while end < self.geo.piece_count() && self.http_eligible(end) {
            let len = u64::from(self.geo.piece_len(end));
            if bytes + len > self.config.max_http_range_bytes || self.is_excluded(end, source) {
                break;
            }
            bytes += len;
            end += 1;
        }
        self.stats.selection_steps += u64::from(end - start);
        Some(start..end)
    }

    fn start_fetch(&mut self, seed: WebSeedKey, range: Range<u32>) {
        for piece in range.clone() {
            self.http[piece as usize] = Some(seed);
            self.reindex(piece);
        }
        self.stats.http_fetches += 1;
        self.stats.bytes_requested_over_http += self.geo.range_len(&range);
        if let Some(s) = self.seeds.get_mut(&seed) {
            s.in_flight.push(range.clone());
        }
        self.pending.push(Action::HttpFetch {
            seed,
            pieces: range,
        });
    }

    fn release_http(&mut self, seed: WebSeedKey, range: Range<u32>) {
        for piece in range.start..range.end.min(self.geo.piece_count()) {
            if self.http[piece as usize] == Some(seed) {
                self.http[piece as usize] = None;
                self.reindex(piece);
            }
        }
    }

    // ---- internals: peers ----

    fn peer_stage<R: Rng + ?Sized>(&mut self, now: Instant, rng: &mut R) {
        let keys: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(_, p)| p.free_slots() > 0 && p.wanted > 0)
            .map(|(&k, _)| k)
            .collect();
        if keys.is_empty() {
            return;
        }
        let duplicates_allowed = !self.any_usable_seed();
        let start = rng.random_range(0..keys.len());
        for i in 0..keys.len() {
            let key = keys[(start + i) % keys.len()];
            self.fill_peer(key, now, duplicates_allowed);
        }
    }

    /// Fills `key`'s free request slots: late blocks (if allowed), begun pieces,
    /// new pieces rarest first, then endgame duplicates.
    fn fill_peer(&mut self, key: PeerKey, now: Instant, duplicates_allowed: bool) {
        let Some(p) = self.peers.get(&key) else {
            return;
        };
        let mut free = p.free_slots();
        let mut picks: Vec<(u32, u32)> = Vec::new();
        let mut steps = 0u64;

        let mut pick = PickBlocks {
            has: &p.has,
            active: &self.active,
            free: &mut free,
            steps: &mut steps,
            picks: &mut picks,
        };
        // 1. Late blocks (every request overdue), when no web seed can step in.
        if duplicates_allowed {
            pick.from(&self.late, |slot| {
                slot.is_late() && !slot.requesters.contains(&key)
            });
        }
        // 2. Begun pieces first.
        pick.from(&self.partial, Slot::is_unrequested);

        // 3. New pieces, rarest first.
        let mut new_pieces: Vec<u32> = Vec::new();
        if free > 0 && p.idle_held > 0 {
            let mut need = free;
            for &(_, _, piece) in &self.candidates {
                steps += 1;
                if p.has.has(piece) {
                    new_pieces.push(piece);
                    let blocks = self.geo.block_count(piece, self.config.block_size) as usize;
                    if blocks >= need {
                        break;
                    }
                    need -= blocks;
                }
            }
        }

        // 4. Endgame: every missing block a peer could give us has been asked for. (Blocks
        // picked in step 1 are not yet marked as requested by this peer.)
        let late_picked: BTreeSet<(u32, u32)> = picks.iter().copied().collect();
        let endgame = self.config.endgame
            && self.candidates.is_empty()
            && self.partial.is_empty()
            && new_pieces.is_empty();
        let mut endgame_picks: Vec<(u32, u32)> = Vec::new();
        if endgame && free > 0 {
            for (&piece, a) in &self.active {
                steps += 1;
                if free == 0 {
                    break;
                }
                if !p.has.has(piece) || self.http[piece as usize].is_some() || a.all_received() {
                    continue;
                }
                for (b, slot) in a.blocks.iter().enumerate() {
                    if free == 0 {
                        break;
                    }
                    if slot.received.is_none()
                        && !slot.requesters.is_empty()
                        && slot.requesters.len() < ENDGAME_REQUESTS_PER_BLOCK
                        && !slot.requesters.contains(&key)
                        && !late_picked.contains(&(piece, b as u32))
                    {
                        endgame_picks.push((piece, b as u32));
                        free -= 1;
                    }
                }
            }
        }
        self.stats.selection_steps += steps;

        let mut touched: Vec<u32> = Vec::new();
        for (piece, block) in picks.into_iter().chain(endgame_picks) {
            self.send_request(key, piece, block, now);
            touched.push(piece);
        }
        for piece in new_pieces {
            self.activate(piece);
            let blocks = self.geo.block_count(piece, self.config.block_size);
            for block in 0..blocks {
                if self.peers.get(&key).is_none_or(|p| p.free_slots() == 0) {
                    break;
                }
                self.send_request(key, piece, block, now);
            }
            touched.push(piece);
        }
        touched.dedup();
        for piece in touched {
            self.reindex(piece);
        }
    }

    fn activate(&mut self, piece: u32) {
        let blocks = self.geo.block_count(piece, self.config.block_size);
        self.active.insert(piece, ActivePiece::new(blocks));
        self.reindex(piece);
    }

    /// Sends one request; the caller reindexes the piece afterwards.
    fn send_request(&mut self, key: PeerKey, piece: u32, block: u32, now: Instant) {
        let Some(a) = self.active.get_mut(&piece) else {
            return;
        };
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        let Some(slot) = a.blocks.get(block as usize) else {
            return;
        };
        if slot.requesters.contains(&key) || slot.received.is_some() {
            debug_assert!(false, "request for block {block} of {piece} twice");
            return;
        }
        if !slot.requesters.is_empty() {
            self.stats.duplicate_requests += 1;
        }
        a.update_slot(block, |slot| {
            slot.requesters.push(key);
            slot.timely += 1;
        });
        if p.reqs.is_empty() {
            p.est.resume(now);
        }
        p.est.request_sent(now);
        let deadline = now.checked_add(p.est.deadline(&self.config)).unwrap_or(now);
        p.reqs.insert(
            (piece, block),
            ReqInfo {
                sent: now,
                deadline,
                overdue: false,
            },
        );
        self.deadlines.insert((deadline, key, piece, block));
        let (begin, length) = self.geo.block(piece, block, self.config.block_size);
        self.stats.blocks_requested += 1;
        self.stats.bytes_requested_from_peers += u64::from(length);
        self.pending.push(Action::Request {
            peer: key,
            piece,
            begin,
            length,
        });
    }

    /// Removes a request (already taken out of the peer's map) from the deadline index and
    /// its slot. The caller settles the piece.
    fn forget_request(&mut self, key: PeerKey, piece: u32, block: u32, info: ReqInfo) {
        if !info.overdue {
            self.deadlines.remove(&(info.deadline, key, piece, block));
        }
        if let Some(a) = self.active.get_mut(&piece) {
            a.update_slot(block, |slot| {
                slot.requesters.retain(|&r| r != key);
                if !info.overdue {
                    slot.timely -= 1;
                }
            });
        }
    }

    /// Withdraws the request for `(piece, block)` from `key` and sends a `cancel`.
    fn cancel_request(&mut self, key: PeerKey, piece: u32, block: u32) {
        let Some(info) = self
            .peers
            .get_mut(&key)
            .and_then(|p| p.reqs.remove(&(piece, block)))
        else {
            return;
        };
        self.forget_request(key, piece, block, info);
        let (begin, length) = self.geo.block(piece, block, self.config.block_size);
        self.stats.cancels_sent += 1;
        self.pending.push(Action::Cancel {
            peer: key,
            piece,
            begin,
            length,
        });
    }

    /// Cancels every outstanding request for `piece`; the caller settles it.
    fn cancel_piece_requests(&mut self, piece: u32) {
        let reqs: Vec<(PeerKey, u32)> = self
            .active
            .get(&piece)
            .map(|a| {
                a.blocks
                    .iter()
                    .enumerate()
                    .flat_map(|(b, s)| s.requesters.iter().map(move |&r| (r, b as u32)))
                    .collect()
            })
            .unwrap_or_default();
        for (key, block) in reqs {
            self.cancel_request(key, piece, block);
        }
    }

    /// Frees every request to `key`, sending cancels if `cancel`.
    fn drop_all_requests(&mut self, key: PeerKey, cancel: bool) {
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        let reqs = std::mem::take(&mut p.reqs);
        let mut pieces: Vec<u32> = Vec::new();
        for ((piece, block), info) in reqs {
            self.forget_request(key, piece, block, info);
            if cancel {
                let (begin, length) = self.geo.block(piece, block, self.config.block_size);
                self.stats.cancels_sent += 1;
                self.pending.push(Action::Cancel {
                    peer: key,
                    piece,
                    begin,
                    length,
                });
            }
            pieces.push(piece);
        }
        pieces.dedup();
        for piece in pieces {
            self.settle(piece);
        }
    }

    /// After requests of `piece` went away: a begun piece with nothing received and
    /// nothing requested goes back to idle; then the indexes are brought up to date.
    fn settle(&mut self, piece: u32) {
        if self
            .active
            .get(&piece)
            .is_some_and(|a| a.received == 0 && a.unrequested as usize == a.blocks.len())
        {
            self.active.remove(&piece);
        }
        self.reindex(piece);
    }

    /// Marks whether `key` has `piece`, keeping availability, interest and the indexes
    /// right. Requests to a peer that no longer claims the piece are cancelled.
    fn set_peer_piece(&mut self, key: PeerKey, piece: u32, has: bool) {
        let was_candidate = self.cand_key[piece as usize].is_some();
        let missing = !self.have.has(piece);
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        if p.has.has(piece) == has {
            return;
        }
        if has {
            let _ = p.has.set(piece);
        } else {
            p.has.clear(piece);
        }
        let delta = |n: &mut u32| {
            if has {
                *n += 1;
            } else {
                *n -= 1;
            }
        };
        if was_candidate {
            delta(&mut p.idle_held);
        }
        if missing {
            delta(&mut p.wanted);
        }
        if p.usable {
            delta(&mut self.avail[piece as usize]);
        }
        if !has {
            let blocks: Vec<u32> = p
                .reqs
                .range((piece, 0)..=(piece, u32::MAX))
                .map(|(&(_, b), _)| b)
                .collect();
            for block in blocks {
                self.cancel_request(key, piece, block);
            }
            self.settle(piece);
        } else {
            self.reindex(piece);
        }
        self.update_interest(key);
    }

    /// Adds or removes all of `key`'s pieces from availability.
    fn set_usable(&mut self, key: PeerKey, usable: bool) {
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        if p.usable == usable {
            return;
        }
        p.usable = usable;
        let pieces: Vec<u32> = p.has.pieces().collect();
        for piece in pieces {
            let n = &mut self.avail[piece as usize];
            if usable {
                *n += 1;
            } else {
                *n -= 1;
            }
            self.reindex(piece);
        }
    }

    fn update_interest(&mut self, key: PeerKey) {
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        let want = p.wanted > 0;
        if p.interested != want {
            p.interested = want;
            self.pending.push(Action::Interested {
                peer: key,
                interested: want,
            });
        }
    }

    fn is_excluded(&self, piece: u32, source: Source) -> bool {
        !self.excluded.is_empty() && self.excluded.contains(&(piece, source))
    }

    /// Never use `source` for `piece` again.
    fn exclude(&mut self, piece: u32, source: Source) {
        self.excluded.insert((piece, source));
        if let Source::Peer(key) = source
            && self.peers.get(&key).is_some_and(|p| p.has.has(piece))
        {
            self.set_peer_piece(key, piece, false);
        }
    }

    // ---- internals: indexes ----

    /// Files `piece` in the index sets that match its state, and keeps the peers'
    /// `idle_held` counters right when it enters or leaves the candidates.
    fn reindex(&mut self, piece: u32) {
        let i = piece as usize;
        let was = self.cand_key[i].take();
        if let Some(a) = was {
            self.candidates.remove(&(a, self.rank[i], piece));
        }
        self.orphans.remove(&piece);
        self.partial.remove(&piece);
        self.late.remove(&piece);
        let mut is_candidate = false;
        let act = self.active.get(&piece);
        let open = !self.have.has(piece)
            && self.http[i].is_none()
            && !act.is_some_and(ActivePiece::all_received);
        if open {
            let avail = self.avail[i];
            if avail == 0 {
                self.orphans.insert(piece);
            } else if act.is_none() {
                self.candidates.insert((avail, self.rank[i], piece));
                self.cand_key[i] = Some(avail);
                is_candidate = true;
            }
            if let Some(a) = act {
                if a.unrequested > 0 && avail > 0 {
                    self.partial.insert(piece);
                }
                if a.late > 0 {
                    self.late.insert(piece);
                }
            }
        }
        if was.is_some() != is_candidate {
            for p in self.peers.values_mut().filter(|p| p.has.has(piece)) {
                if is_candidate {
                    p.idle_held += 1;
                } else {
                    p.idle_held -= 1;
                }
            }
        }
    }
}

#[cfg(test)]
impl Scheduler {
    /// Recomputes every derived count and index from scratch and panics on a mismatch.
    pub(crate) fn check_invariants(&self) {
        let count = self.geo.piece_count();
        assert_eq!(self.missing, count - self.have.count(), "missing count");
        let mut deadline_count = 0usize;
        for (&key, p) in &self.peers {
            let wanted = p.has.pieces().filter(|&i| !self.have.has(i)).count() as u32;
            assert_eq!(p.wanted, wanted, "wanted of {key:?}");
            let idle = p
                .has
                .pieces()
                .filter(|&i| self.cand_key[i as usize].is_some())
                .count() as u32;
            assert_eq!(p.idle_held, idle, "idle_held of {key:?}");
            assert_eq!(p.interested, wanted > 0, "interest in {key:?}");
            assert!(p.usable || p.choked, "an unchoking peer is usable");
            if !p.choked {
                assert!(p.usable);
            }
            for (&(piece, block), info) in &p.reqs {
                assert!(!self.have.has(piece), "request for a piece we have");
                assert!(
                    p.has.has(piece),
                    "request to {key:?} for piece {piece} it lacks"
                );
                assert!(
                    !self.is_excluded(piece, Source::Peer(key)),
                    "request to an excluded peer"
                );
                let slot = &self.active[&piece].blocks[block as usize];
                assert!(slot.requesters.contains(&key));
                assert!(slot.received.is_none(), "request for a received block");
                if info.overdue {
                    assert!(!self.deadlines.contains(&(info.deadline, key, piece, block)));
                } else {
                    deadline_count += 1;
                    assert!(self.deadlines.contains(&(info.deadline, key, piece, block)));
                }
            }
        }
        assert_eq!(self.deadlines.len(), deadline_count, "stale deadlines");
        for piece in 0..count {
            let i = piece as usize;
            let usable_holders = self
                .peers
                .values()
                .filter(|p| p.usable && p.has.has(piece))
                .count() as u32;
            assert_eq!(self.avail[i], usable_holders, "availability of {piece}");
            let act = self.active.get(&piece);
            if self.have.has(piece) {
                assert!(act.is_none(), "active piece {piece} we have");
            }
            if let Some(a) = act {
                let mut unrequested = 0;
                let mut received = 0;
                let mut late = 0;
                for (b, slot) in a.blocks.iter().enumerate() {
                    if slot.received.is_some() {
                        received += 1;
                        assert!(slot.requesters.is_empty());
                    } else if slot.requesters.is_empty() {
                        unrequested += 1;
                    }
                    let mut timely = 0;
                    for r in &slot.requesters {
                        let info = self.peers[r].reqs[&(piece, b as u32)];
                        timely += u32::from(!info.overdue);
                    }
                    assert_eq!(slot.timely, timely, "timely requests of {piece}/{b}");
                    late += u32::from(slot.is_late());
                    let mut requesters = slot.requesters.clone();
                    requesters.sort_unstable();
                    requesters.dedup();
                    assert_eq!(requesters.len(), slot.requesters.len(), "a requester twice");
                }
                assert_eq!(a.unrequested, unrequested, "unrequested of {piece}");
                assert_eq!(a.received, received, "received of {piece}");
                assert_eq!(a.late, late, "late blocks of {piece}");
                assert!(
                    received > 0 || unrequested < a.blocks.len() as u32,
                    "idle piece {piece} left active"
                );
            }
            let open = !self.have.has(piece)
                && self.http[i].is_none()
                && !act.is_some_and(ActivePiece::all_received);
            let avail = self.avail[i];
            assert_eq!(self.orphans.contains(&piece), open && avail == 0);
            let cand = open && avail > 0 && act.is_none();
            assert_eq!(self.cand_key[i], cand.then_some(avail), "candidate {piece}");
            assert_eq!(
                self.candidates.contains(&(avail, self.rank[i], piece)),
                cand
            );
            assert_eq!(
                self.partial.contains(&piece),
                open && avail > 0 && act.is_some_and(|a| a.unrequested > 0)
            );
            assert_eq!(
                self.late.contains(&piece),
                open && act.is_some_and(|a| a.late > 0)
            );
            if let Some(seed) = self.http[i] {
                assert!(
                    self.seeds
                        .get(&seed)
                        .is_some_and(|s| s.in_flight.iter().any(|r| r.contains(&piece))),
                    "piece {piece} fetched by a seed not fetching it"
                );
            }
        }
        assert_eq!(
            self.candidates.len(),
            self.cand_key.iter().filter(|k| k.is_some()).count()
        );
        for (&key, s) in &self.seeds {
            assert!(!self.removed_seeds.contains(&key));
            assert!(s.in_flight.len() <= self.config.max_http_in_flight_per_seed);
            for range in &s.in_flight {
                for piece in range.clone() {
                    let owner = self.http[piece as usize];
                    assert!(
                        owner == Some(key) || self.have.has(piece),
                        "in-flight piece {piece} not owned by its seed"
                    );
                }
            }
        }
    }
}
