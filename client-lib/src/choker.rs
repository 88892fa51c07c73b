//! Upload choking: which peers may download from us (interested ones, and newcomers while a
//! slot is free), and when that changes.
//!
//! # Why choke at all
//! Upload bandwidth is the resource a peer rations. Serving every interested peer at once
//! splits it so thinly that nobody finishes a piece quickly, and it rewards peers that take
//! without giving. BitTorrent's answer (BEP 3, tit-for-tat) is a few *regular* upload slots
//! for the peers that give us the most, plus one *optimistic* slot rotated among the others
//! so that newcomers get a first piece to trade and faster partners can be discovered.
//!
//! # The rules here
//! - **Regular slots** ([`ChokerConfig::regular_slots`]) go to the interested peers with the
//!   best recent rate: what they sent us while we are leeching, what we sent them while we
//!   are seeding (a seed has nothing to receive, so it favours peers that take data fast).
//!   Rates are bytes over a sliding window ([`ChokerConfig::rate_window`]). They are
//!   re-ranked every [`ChokerConfig::rechoke_interval`]; ties go to peers already unchoked
//!   with a regular slot, then to other unchoked peers (no needless churn), then to the
//!   peer that has been waiting longest.
//! - **No waiting for a free slot.** Real clients re-rank only every 10 s, so a peer that
//!   turns up between two rechokes waits for up to 10 s even when slots are idle. Small web
//!   assets are fetched in a few latency-bound round trips, so that wait would dominate.
//!   Here a free slot is given to a waiting peer at the very next [`Choker::poll`]; only
//!   *taking a slot away* from a peer waits for the rechoke.
//! - **One optimistic slot**, turned over every [`ChokerConfig::optimistic_interval`] to a
//!   random choked interested peer. A *new* peer (connected within
//!   [`ChokerConfig::new_peer_window`] and never unchoked on this connection) weighs
//!   [`NEW_PEER_WEIGHT`] times as much in the draw: it has nothing to trade yet, and the
//!   optimistic slot is its way in. The outgoing holder is drawn again only if nobody else
//!   is waiting.
//! - **No snub notion of its own.** Snubbing has one meaning in the client,
//!   [`ClientConfig::snub_timeout`](crate::ClientConfig::snub_timeout): a peer that leaves
//!   our block requests unanswered that long is disconnected by its session, which takes
//!   it out of the choker (its slot is free at the next poll). A second, slower clock here
//!   would never fire first.
//! - **Only interested peers are unchoked**, optimistic slot included: an uninterested peer
//!   cannot use a slot. BEP 3 suggests leaving fast uninterested peers unchoked, so that they
//!   can start at once if they become interested; we choke a peer as soon as it loses
//!   interest instead, and give it a slot at once when it regains interest and one is free.
//!   That keeps the bound on unchoked peers exact, at the cost of one round trip.
//! - **Except a newcomer, while a slot is free.** A peer that has just connected and not yet
//!   said whether it is interested (*undecided*) gets a free regular slot at once: it almost
//!   always connected to download, and an UNCHOKE sent with our bitfield spares it the
//!   INTERESTED → UNCHOKE round trip, which is a large part of fetching a small release.
//!   Such a slot is held only while nobody interested needs it (interested peers are served
//!   first at every poll), and is taken back as soon as the peer says it is not interested.
//!   A peer stops being a newcomer when it says either way, when the session learns it is a
//!   seed ([`Choker::peer_is_seed`]: a seed has nothing to download), and at the first
//!   rechoke after it connected (a peer that never says anything does not hold a slot for
//!   ever).
//! - **`regular_slots = 0`** means no limit: every interested peer is unchoked as soon as it
//!   is interested (a seed with upload to spare). There is no optimistic slot then.
//!
//! # Why a pure state machine
//! Like the piece scheduler, the choker owns no socket, timer or random generator. The
//! session reports what happens ([`Choker::peer_connected`], [`Choker::record_download`],
//! ...) with the current time, calls [`Choker::poll`] after each batch of events and again
//! at [`Choker::next_wakeup`], and sends a CHOKE or UNCHOKE message for each
//! [`ChokeAction`]. `poll` returns only changes, so every action is one message. Tests then
//! run with a fixed clock and a seeded generator.
//!
//! # Example
//! ```
//! use std::time::Instant;
//!
//! use rand::SeedableRng;
//! use swarmcdn_client::choker::{ChokeAction, Choker, ChokerConfig};
//! use swarmcdn_client::peer::PeerKey;
//!
//! let now = Instant::now();
//! let mut choker = Choker::new(ChokerConfig::default(), now);
//! let mut rng = rand::rngs::StdRng::seed_from_u64(1);
//!
//! let peer = PeerKey(1);
//! choker.peer_connected(peer, now);
//! choker.peer_interested(peer, true, now);
//! // A slot is free: the peer is unchoked at once, not at the next rechoke.
//! assert_eq!(choker.poll(now, &mut rng), vec![ChokeAction::Unchoke(peer)]);
//! assert!(choker.is_unchoked(peer));
//! // Nothing changed, so there is nothing to send.
//! assert!(choker.poll(now, &mut rng).is_empty());
//!
//! choker.peer_interested(peer, false, now);
//! assert_eq!(choker.poll(now, &mut rng), vec![ChokeAction::Choke(peer)]);
//! ```

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::{Rng, RngExt};

use crate::peer::PeerKey;

/// The shortest setting for any duration of [`ChokerConfig`]; shorter values (zero
/// included) are raised to it, so that `poll` cannot be asked to run continuously.
pub const MIN_DURATION: Duration = Duration::from_millis(100);

/// The longest setting for any duration of [`ChokerConfig`]; longer values are lowered to
/// it, so that adding a setting to an `Instant` cannot overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// How many buckets a rate window is cut into. A rate covers the last
/// [`ChokerConfig::rate_window`] to within one bucket, in constant memory per peer.
pub const RATE_BUCKETS: usize = 20;

/// How many times more likely a new peer is to be drawn for the optimistic slot than a
/// peer that has had its chance.
pub const NEW_PEER_WEIGHT: u64 = 3;

/// Settings of a [`Choker`]. Out-of-range durations are corrected when the choker is built
/// (to [`MIN_DURATION`]..=[`MAX_DURATION`]), never rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChokerConfig {
    /// Regular upload slots, given to the interested peers with the best rate (free ones to
    /// newcomers, see the module docs). `0` means no limit: every interested peer and every
    /// newcomer is unchoked (and there is no optimistic slot).
    pub regular_slots: usize,
    /// How often the regular slots are re-ranked. A free slot is filled at once regardless.
    pub rechoke_interval: Duration,
    /// How long a peer keeps the optimistic slot before it is drawn again.
    pub optimistic_interval: Duration,
    /// The span over which transfer rates are measured.
    pub rate_window: Duration,
    /// A peer connected this recently and never unchoked on this connection is *new*: it
    /// weighs [`NEW_PEER_WEIGHT`] times as much in the optimistic draw.
    pub new_peer_window: Duration,
}

impl Default for ChokerConfig {
    fn default() -> Self {
        ChokerConfig {
            regular_slots: 4,
            rechoke_interval: Duration::from_secs(10),
            optimistic_interval: Duration::from_secs(30),
            rate_window: Duration::from_secs(20),
            new_peer_window: Duration::from_secs(60),
        }
    }
}

impl ChokerConfig {
    /// Every duration brought into `MIN_DURATION..=MAX_DURATION`.
    fn corrected(mut self) -> Self {
        for duration in [
            &mut self.rechoke_interval,
            &mut self.optimistic_interval,
            &mut self.rate_window,
            &mut self.new_peer_window,
        ] {
            *duration = (*duration).clamp(MIN_DURATION, MAX_DURATION);
        }
        self
    }
}

/// A change of our choke state towards a peer, to be sent as the matching peer-wire message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChokeAction {
    /// Send UNCHOKE: the peer may now request blocks from us.
    Unchoke(PeerKey),
    /// Send CHOKE: the peer may no longer request blocks; drop its queued requests.
    Choke(PeerKey),
}

/// Which kind of slot an unchoked peer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Regular,
    Optimistic,
}

/// The holder of the optimistic slot and the end of its turn.
#[derive(Debug, Clone, Copy)]
struct OptimisticTurn {
    peer: PeerKey,
    until: Instant,
}

/// One bucket of a [`RateWindow`]: bytes counted during bucket number `index`.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    index: u64,
    bytes: u64,
}

/// Bytes transferred over the last [`RATE_BUCKETS`] buckets, as a ring indexed by bucket
/// number modulo its length.
#[derive(Debug, Clone, Default)]
struct RateWindow {
    buckets: [Bucket; RATE_BUCKETS],
}

impl RateWindow {
    /// Counts `bytes` in bucket number `index`.
    fn add(&mut self, index: u64, bytes: u64) {
        let bucket = &mut self.buckets[ring_position(index)];
        if bucket.index == index {
            bucket.bytes = bucket.bytes.saturating_add(bytes);
        } else if bucket.index < index {
            *bucket = Bucket { index, bytes };
        }
        // Otherwise the ring already holds a newer bucket in that place, so `index` is a
        // whole window older than it: out of every future window, nothing to count.
    }

    /// Bytes counted in the window that ends with bucket number `now`.
    fn total(&self, now: u64) -> u64 {
        self.buckets
            .iter()
            .filter(|b| b.index <= now && now - b.index < RATE_BUCKETS as u64)
            .fold(0, |sum, b| sum.saturating_add(b.bytes))
    }
}

/// Where bucket number `index` lives in a ring of [`RATE_BUCKETS`].
fn ring_position(index: u64) -> usize {
    // The remainder is below RATE_BUCKETS, so it fits any usize.
    (index % RATE_BUCKETS as u64) as usize
}

/// What the choker knows about one connected peer.
#[derive(Debug, Clone)]
struct PeerState {
    connected_at: Instant,
    /// The peer is interested in what we have.
    interested: bool,
    /// It has not said yet whether it is interested (see the module docs).
    undecided: bool,
    /// When the peer last became interested: the longest waiting peer goes first on ties.
    interested_since: Option<Instant>,
    /// We have unchoked this peer at least once on this connection.
    tried: bool,
    /// Our current choke state towards it: unchoked iff `Some`.
    slot: Option<Slot>,
    /// Bytes of pieces it sent us.
    downloaded: RateWindow,
    /// Bytes of pieces we sent it.
    uploaded: RateWindow,
}

impl PeerState {
    fn new(now: Instant) -> Self {
        PeerState {
            connected_at: now,
            interested: false,
            undecided: true,
            interested_since: None,
            tried: false,
            slot: None,
            downloaded: RateWindow::default(),
            uploaded: RateWindow::default(),
        }
    }
}

/// A peer competing for a regular slot, with the keys it is ranked by.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    peer: PeerKey,
    rate: u64,
    /// 0 for a regular slot, 1 for the optimistic one, 2 for none: the lower wins ties.
    held: u8,
    waiting_since: Option<Instant>,
}

/// The upload choker of one torrent: see the [module documentation](self).
#[derive(Debug, Clone)]
pub struct Choker {
    config: ChokerConfig,
    /// Time zero of the rate buckets.
    epoch: Instant,
    /// `rate_window / RATE_BUCKETS`, never zero.
    bucket_width: Duration,
    /// Ordered, so that a seeded generator gives the same draws on every run.
    peers: BTreeMap<PeerKey, PeerState>,
    seeding: bool,
    next_rechoke: Instant,
    /// Re-rank at the next poll whatever the time (the ranking criterion changed).
    rechoke_due: bool,
    optimistic: Option<OptimisticTurn>,
}

impl Choker {
    /// A choker with no peers, leeching, whose first rechoke is one interval after `now`.
    pub fn new(config: ChokerConfig, now: Instant) -> Self {
        let config = config.corrected();
        // RATE_BUCKETS is a small constant; MIN_DURATION / 20 is still 5 ms.
        let bucket_width = config.rate_window / RATE_BUCKETS as u32;
        Choker {
            next_rechoke: later(now, config.rechoke_interval),
            config,
            epoch: now,
            bucket_width,
            peers: BTreeMap::new(),
            seeding: false,
            rechoke_due: false,
            optimistic: None,
        }
    }

    /// The settings in force (after correction).
    pub fn config(&self) -> &ChokerConfig {
        &self.config
    }

    /// A connection to `peer` is up: it starts choked, not interested, choking us, and a
    /// newcomer (it may get a free slot at the next poll). A key already known is taken as a
    /// new connection and starts afresh (a new connection is choked on both sides, so no
    /// CHOKE is owed to it).
    pub fn peer_connected(&mut self, peer: PeerKey, now: Instant) {
        if self.peers.insert(peer, PeerState::new(now)).is_some() {
            self.forget_optimistic(peer);
        }
    }

    /// The connection to `peer` is gone: it no longer holds a slot, and the next poll gives
    /// the slot to a waiting peer.
    pub fn peer_disconnected(&mut self, peer: PeerKey) {
        if self.peers.remove(&peer).is_some() {
            self.forget_optimistic(peer);
        }
    }

    /// The peer sent INTERESTED (`true`) or NOT_INTERESTED (`false`). Unknown peers are
    /// ignored.
    pub fn peer_interested(&mut self, peer: PeerKey, interested: bool, now: Instant) {
        if let Some(state) = self.peers.get_mut(&peer) {
            state.undecided = false;
            if interested && !state.interested {
                state.interested_since = Some(now);
            } else if !interested {
                state.interested_since = None;
            }
            state.interested = interested;
        }
    }

    /// The peer has every piece: it will not download, so it is no newcomer any more (its
    /// free slot, if any, is taken back at the next poll unless it says it is interested).
    pub fn peer_is_seed(&mut self, peer: PeerKey) {
        if let Some(state) = self.peers.get_mut(&peer) {
            state.undecided = false;
        }
    }

    /// The peer sent us `bytes` of piece data.
    pub fn record_download(&mut self, peer: PeerKey, bytes: u64, now: Instant) {
        let bucket = self.bucket_of(now);
        if let Some(state) = self.peers.get_mut(&peer)
            && bytes > 0
        {
            state.downloaded.add(bucket, bytes);
        }
    }

    /// We sent the peer `bytes` of piece data.
    pub fn record_upload(&mut self, peer: PeerKey, bytes: u64, now: Instant) {
        let bucket = self.bucket_of(now);
        if let Some(state) = self.peers.get_mut(&peer) {
            state.uploaded.add(bucket, bytes);
        }
    }

    /// Whether we have the whole torrent: a seed ranks peers by how fast we upload to them.
    /// A change re-ranks the regular slots at the next poll.
    pub fn set_seeding(&mut self, seeding: bool) {
        if self.seeding != seeding {
            self.seeding = seeding;
            self.rechoke_due = true;
        }
    }

    /// Whether we are unchoking `peer`, as far as the actions returned so far go. The
    /// session answers REQUESTs only from unchoked peers.
    pub fn is_unchoked(&self, peer: PeerKey) -> bool {
        self.peers.get(&peer).is_some_and(|p| p.slot.is_some())
    }

    /// The peers we are unchoking, in key order.
    pub fn unchoked_peers(&self) -> impl Iterator<Item = PeerKey> + '_ {
        self.peers
            .iter()
            .filter(|(_, p)| p.slot.is_some())
            .map(|(key, _)| *key)
    }

    /// The holder of the optimistic slot, if any.
    pub fn optimistic_peer(&self) -> Option<PeerKey> {
        self.optimistic.map(|turn| turn.peer)
    }

    /// Decides who is unchoked at `now` and returns the changes: chokes first (they free
    /// upload bandwidth), then unchokes, each in key order. Call it after each batch of
    /// events and at [`Choker::next_wakeup`]; calling it more often is harmless.
    pub fn poll<R: Rng + ?Sized>(&mut self, now: Instant, rng: &mut R) -> Vec<ChokeAction> {
        let previous_optimistic = self.end_optimistic_turn(now);
        let rechoke = self.rechoke_due || now >= self.next_rechoke;
        if rechoke {
            self.rechoke_due = false;
            self.next_rechoke = later(now, self.config.rechoke_interval);
            // Newcomers have had a rechoke period to say whether they are interested.
            for peer in self.peers.values_mut() {
                peer.undecided = false;
            }
        }
        let regular = self.regular_peers(now, rechoke, rng);
        if self.config.regular_slots > 0 && self.optimistic.is_none() {
            self.draw_optimistic(now, &regular, previous_optimistic, rng);
        }
        self.apply(&regular)
    }

    /// When `poll` must run even if no event comes: the next rechoke (while some peer is
    /// interested or unchoked) or the end of the optimistic turn. `None` with unlimited
    /// slots, where only events change anything.
    pub fn next_wakeup(&self) -> Option<Instant> {
        if self.config.regular_slots == 0 {
            return None;
        }
        let active = self
            .peers
            .values()
            .any(|p| p.interested || p.slot.is_some());
        let rechoke = active.then_some(self.next_rechoke);
        rechoke
            .into_iter()
            .chain(self.optimistic.map(|turn| turn.until))
            .min()
    }

    // ---- internals ----

    /// Clears the optimistic slot if `peer` held it.
    fn forget_optimistic(&mut self, peer: PeerKey) {
        if self.optimistic_peer() == Some(peer) {
            self.optimistic = None;
        }
    }

    /// Frees the optimistic slot if its holder lost interest (`None` returned) or its turn
    /// is over (the holder returned, so that someone else is drawn if possible).
    fn end_optimistic_turn(&mut self, now: Instant) -> Option<PeerKey> {
        let turn = self.optimistic?;
        let interested = self.peers.get(&turn.peer).is_some_and(|p| p.interested);
        if !interested {
            self.optimistic = None;
            None
        } else if now >= turn.until {
            self.optimistic = None;
            Some(turn.peer)
        } else {
            None
        }
    }

    /// The peers that hold a regular slot after this poll. On a rechoke every slot is
    /// ranked afresh; otherwise current holders that are still interested keep theirs and
    /// only free slots are handed out.
    fn regular_peers<R: Rng + ?Sized>(
        &self,
        now: Instant,
        rechoke: bool,
        rng: &mut R,
    ) -> BTreeSet<PeerKey> {
        let interested = self.peers.iter().filter(|(_, p)| p.interested);
        let slots = self.config.regular_slots;
        if slots == 0 {
            return self
                .peers
                .iter()
                .filter(|(_, p)| p.interested || p.undecided)
                .map(|(key, _)| *key)
                .collect();
        }
        let mut regular: BTreeSet<PeerKey> = if rechoke {
            BTreeSet::new()
        } else {
            interested
                .clone()
                .filter(|(_, p)| p.slot == Some(Slot::Regular))
                .map(|(key, _)| *key)
                .collect()
        };
        let free = slots.saturating_sub(regular.len());
        if free == 0 {
            return regular;
        }
        let holder = self.optimistic_peer();
        let bucket = self.bucket_of(now);
        let mut candidates: Vec<Candidate> = interested
            .filter(|(key, _)| Some(**key) != holder && !regular.contains(*key))
            .map(|(key, p)| Candidate {
                peer: *key,
                rate: self.rate_of(p, bucket),
                held: match p.slot {
                    Some(Slot::Regular) => 0,
                    Some(Slot::Optimistic) => 1,
                    None => 2,
                },
                waiting_since: p.interested_since,
            })
            .collect();
        // Shuffle first so that exact ties fall randomly; the sort is stable.
        candidates.shuffle(rng);
        candidates.sort_by_key(|c| (Reverse(c.rate), c.held, c.waiting_since));
        regular.extend(candidates.iter().take(free).map(|c| c.peer));
        // Slots nobody interested wants go to undecided newcomers, those holding one first
        // (no churn), then in connection order.
        let free = slots.saturating_sub(regular.len());
        let mut undecided: Vec<(bool, PeerKey)> = self
            .peers
            .iter()
            .filter(|(key, p)| p.undecided && Some(**key) != holder)
            .map(|(key, p)| (p.slot.is_none(), *key))
            .collect();
        undecided.sort_unstable();
        regular.extend(undecided.into_iter().take(free).map(|(_, key)| key));
        regular
    }

    /// Gives the optimistic slot to an interested peer without a regular slot, new peers
    /// weighted [`NEW_PEER_WEIGHT`]; `previous` (the holder whose turn just ended) only if
    /// nobody else is waiting.
    fn draw_optimistic<R: Rng + ?Sized>(
        &mut self,
        now: Instant,
        regular: &BTreeSet<PeerKey>,
        previous: Option<PeerKey>,
        rng: &mut R,
    ) {
        let eligible = |key: &PeerKey, p: &PeerState| p.interested && !regular.contains(key);
        let mut pool: Vec<(PeerKey, u64)> = self
            .peers
            .iter()
            .filter(|(key, p)| eligible(key, p) && Some(**key) != previous)
            .map(|(key, p)| {
                (
                    *key,
                    if self.is_new(p, now) {
                        NEW_PEER_WEIGHT
                    } else {
                        1
                    },
                )
            })
            .collect();
        if pool.is_empty() {
            let again =
                previous.filter(|key| self.peers.get(key).is_some_and(|p| eligible(key, p)));
            pool.extend(again.map(|key| (key, 1)));
        }
        let total: u64 = pool.iter().map(|(_, weight)| weight).sum();
        if total == 0 {
            return;
        }
        let mut ticket = rng.random_range(0..total);
        for (peer, weight) in pool {
            if ticket < weight {
                let until = later(now, self.config.optimistic_interval);
                self.optimistic = Some(OptimisticTurn { peer, until });
                return;
            }
            ticket -= weight;
        }
    }

    /// Moves every peer to its new slot (or none) and lists the changes.
    fn apply(&mut self, regular: &BTreeSet<PeerKey>) -> Vec<ChokeAction> {
        let holder = self.optimistic_peer();
        let mut actions = Vec::new();
        let mut unchokes = Vec::new();
        for (key, peer) in &mut self.peers {
            let slot = if holder == Some(*key) {
                Some(Slot::Optimistic)
            } else if regular.contains(key) {
                Some(Slot::Regular)
            } else {
                None
            };
            match (peer.slot.is_some(), slot.is_some()) {
                (true, false) => actions.push(ChokeAction::Choke(*key)),
                (false, true) => {
                    unchokes.push(ChokeAction::Unchoke(*key));
                    peer.tried = true;
                }
                _ => {}
            }
            peer.slot = slot;
        }
        actions.append(&mut unchokes);
        actions
    }

    /// New to us: recently connected and never given a slot.
    fn is_new(&self, peer: &PeerState, now: Instant) -> bool {
        !peer.tried
            && now.saturating_duration_since(peer.connected_at) < self.config.new_peer_window
    }

    /// The rate the peer is ranked by, as bytes in the window ending with bucket `bucket`.
    fn rate_of(&self, peer: &PeerState, bucket: u64) -> u64 {
        if self.seeding {
            peer.uploaded.total(bucket)
        } else {
            peer.downloaded.total(bucket)
        }
    }

    /// The number of the rate bucket `at` falls in (times before the epoch count as 0).
    fn bucket_of(&self, at: Instant) -> u64 {
        let elapsed = at.saturating_duration_since(self.epoch).as_nanos();
        let width = self.bucket_width.as_nanos().max(1);
        u64::try_from(elapsed / width).unwrap_or(u64::MAX)
    }
}

/// `now + duration`, or `now` in the (theoretical) case the clock cannot go that far.
fn later(now: Instant, duration: Duration) -> Instant {
    now.checked_add(duration).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const KIB: u64 = 1024;

    /// A choker on a fixed clock with a seeded generator; times are milliseconds after `t0`.
    struct Bench {
        c: Choker,
        t0: Instant,
        rng: StdRng,
    }

    impl Bench {
        fn new(slots: usize) -> Self {
            Bench::with(ChokerConfig {
                regular_slots: slots,
                ..ChokerConfig::default()
            })
        }

        fn with(config: ChokerConfig) -> Self {
            let t0 = Instant::now();
            Bench {
                c: Choker::new(config, t0),
                t0,
                rng: StdRng::seed_from_u64(7),
            }
        }

        fn at(&self, ms: u64) -> Instant {
            self.t0 + Duration::from_millis(ms)
        }

        fn poll(&mut self, ms: u64) -> Vec<ChokeAction> {
            let now = self.at(ms);
            self.c.poll(now, &mut self.rng)
        }

        /// `peer` connects and declares interest at `ms`.
        fn join(&mut self, peer: u64, ms: u64) {
            let now = self.at(ms);
            self.c.peer_connected(PeerKey(peer), now);
            self.c.peer_interested(PeerKey(peer), true, now);
        }

        fn download(&mut self, peer: u64, bytes: u64, ms: u64) {
            let now = self.at(ms);
            self.c.record_download(PeerKey(peer), bytes, now);
        }

        fn upload(&mut self, peer: u64, bytes: u64, ms: u64) {
            let now = self.at(ms);
            self.c.record_upload(PeerKey(peer), bytes, now);
        }

        fn unchoked(&self) -> Vec<u64> {
            self.c.unchoked_peers().map(|p| p.0).collect()
        }

        fn regular(&self) -> Vec<u64> {
            self.c
                .peers
                .iter()
                .filter(|(_, p)| p.slot == Some(Slot::Regular))
                .map(|(k, _)| k.0)
                .collect()
        }

        fn optimistic(&self) -> Option<u64> {
            self.c.optimistic_peer().map(|p| p.0)
        }
    }

    fn unchoke(peer: u64) -> ChokeAction {
        ChokeAction::Unchoke(PeerKey(peer))
    }

    fn choke(peer: u64) -> ChokeAction {
        ChokeAction::Choke(PeerKey(peer))
    }

    #[test]
    fn free_slot_unchokes_a_new_interested_peer_at_once() {
        let mut b = Bench::new(4);
        assert_eq!(b.poll(0), vec![]);
        b.join(1, 1_000);
        assert_eq!(b.poll(1_000), vec![unchoke(1)]);
        b.join(2, 2_500);
        assert_eq!(b.poll(2_500), vec![unchoke(2)]);
        assert_eq!(b.regular(), vec![1, 2]);
        // Both went in between rechokes: the first rechoke is still where it was.
        assert_eq!(b.c.next_wakeup(), Some(b.at(10_000)));
    }

    #[test]
    fn uninterested_peers_are_never_unchoked() {
        let mut b = Bench::new(2);
        for peer in 1..=3 {
            b.c.peer_connected(PeerKey(peer), b.at(0));
            b.c.peer_interested(PeerKey(peer), false, b.at(0));
        }
        // Even the fastest uploader to us gets nothing while it wants nothing, through
        // many rechokes and optimistic turns.
        for second in 0..300 {
            b.download(1, 100 * KIB, second * 1_000);
            assert_eq!(b.poll(second * 1_000), vec![], "at {second} s");
        }
        assert!(!b.c.is_unchoked(PeerKey(1)));
        assert_eq!(b.c.next_wakeup(), None);
        b.c.peer_interested(PeerKey(1), true, b.at(300_000));
        assert_eq!(b.poll(300_000), vec![unchoke(1)]);
    }

    #[test]
    fn newcomers_get_free_slots_before_saying_interested_and_give_them_back() {
        let mut b = Bench::new(2);
        // Two newcomers: unchoked at once (the UNCHOKE goes out with our bitfield).
        b.c.peer_connected(PeerKey(1), b.at(0));
        b.c.peer_connected(PeerKey(2), b.at(0));
        assert_eq!(b.poll(0), vec![unchoke(1), unchoke(2)]);
        // One says it is interested: it keeps its slot, no message.
        b.c.peer_interested(PeerKey(1), true, b.at(10));
        assert_eq!(b.poll(10), vec![]);
        // An interested peer arrives with no slot free: the undecided newcomer gives its
        // slot back at once (not at the next rechoke).
        b.join(3, 20);
        let actions = b.poll(20);
        assert!(actions.contains(&choke(2)), "{actions:?}");
        assert!(b.c.is_unchoked(PeerKey(3)));
        assert!(!b.c.is_unchoked(PeerKey(2)));
        // A newcomer that says it is not interested is choked at once.
        let mut b = Bench::new(4);
        b.c.peer_connected(PeerKey(5), b.at(0));
        assert_eq!(b.poll(0), vec![unchoke(5)]);
        b.c.peer_interested(PeerKey(5), false, b.at(1));
        assert_eq!(b.poll(1), vec![choke(5)]);
        // Undecided peers never get the optimistic slot.
        assert_eq!(b.optimistic(), None);

        // A seed is no newcomer: its free slot goes back at the next poll.
        let mut b = Bench::new(4);
        b.c.peer_connected(PeerKey(6), b.at(0));
        assert_eq!(b.poll(0), vec![unchoke(6)]);
        b.c.peer_is_seed(PeerKey(6));
        assert_eq!(b.poll(1), vec![choke(6)]);

        // A peer that never says anything is a newcomer until the first rechoke only.
        let mut b = Bench::new(4);
        b.c.peer_connected(PeerKey(7), b.at(0));
        assert_eq!(b.poll(0), vec![unchoke(7)]);
        assert_eq!(b.poll(9_000), vec![]);
        assert_eq!(b.poll(10_000), vec![choke(7)]);
        assert_eq!(b.c.next_wakeup(), None, "nothing left to rechoke for");
    }

    #[test]
    fn optimistic_slot_goes_to_interested_peers_only() {
        let mut b = Bench::new(1);
        b.join(1, 0);
        b.c.peer_connected(PeerKey(2), b.at(0));
        assert_eq!(b.poll(0), vec![unchoke(1)]);
        assert_eq!(b.optimistic(), None, "no interested peer is left to draw");
        b.join(3, 1_000);
        assert_eq!(b.poll(1_000), vec![unchoke(3)]);
        assert_eq!(b.optimistic(), Some(3));
    }

    #[test]
    fn losing_interest_chokes_and_the_slot_goes_to_a_waiting_peer() {
        let mut b = Bench::new(1);
        b.join(1, 0);
        assert_eq!(b.poll(0), vec![unchoke(1)]);
        b.join(2, 1);
        assert_eq!(b.poll(1), vec![unchoke(2)]);
        assert_eq!(b.optimistic(), Some(2));
        b.join(3, 2);
        assert_eq!(b.poll(2), vec![], "both slots are taken");
        b.c.peer_interested(PeerKey(1), false, b.at(3));
        assert_eq!(b.poll(3), vec![choke(1), unchoke(3)]);
        assert_eq!(b.regular(), vec![3]);
        // Regaining interest: no slot is free, so it waits for the next rechoke.
        b.c.peer_interested(PeerKey(1), true, b.at(4));
        assert_eq!(b.poll(4), vec![]);
    }

    #[test]
    fn disconnect_frees_the_slot_for_the_longest_waiting_peer_at_once() {
        let mut b = Bench::new(1);
        b.join(1, 0);
        assert_eq!(b.poll(0), vec![unchoke(1)]);
        b.join(2, 0);
        assert_eq!(b.poll(0), vec![unchoke(2)]);
        assert_eq!((b.regular(), b.optimistic()), (vec![1], Some(2)));
        b.join(4, 1_000);
        b.join(3, 2_000);
        assert_eq!(b.poll(2_000), vec![]);
        b.c.peer_disconnected(PeerKey(1));
        assert!(!b.c.is_unchoked(PeerKey(1)));
        // No CHOKE for the departed peer; peer 4 has been waiting longer than peer 3.
        assert_eq!(b.poll(2_100), vec![unchoke(4)]);
        assert_eq!(b.regular(), vec![4]);
        // The optimistic holder leaves: the last waiting peer is drawn at once.
        b.c.peer_disconnected(PeerKey(2));
        assert_eq!(b.poll(2_200), vec![unchoke(3)]);
        assert_eq!(b.optimistic(), Some(3));
    }

    /// Peers 1 and 2 hold the regular slots and peer 3 the optimistic one from t=0; peers 4
    /// and 5 wait from t=1 s. Peers 4 and 5 send us much (they unchoke us) but we send them
    /// nothing (we choke them); we send 1 and 2 a little and they send us nothing.
    fn rate_bench(seeding: bool) -> Bench {
        let mut b = Bench::new(2);
        b.c.set_seeding(seeding);
        b.join(1, 0);
        b.join(2, 0);
        assert_eq!(b.poll(0), vec![unchoke(1), unchoke(2)]);
        b.join(3, 0);
        assert_eq!(b.poll(0), vec![unchoke(3)]);
        b.join(4, 1_000);
        b.join(5, 1_000);
        assert_eq!(b.poll(1_000), vec![]);
        for second in 1..10 {
            let ms = second * 1_000;
            b.download(5, 500 * KIB, ms);
            b.download(4, 400 * KIB, ms);
            b.download(3, 300 * KIB, ms);
            b.upload(1, 20 * KIB, ms);
            b.upload(2, 10 * KIB, ms);
            b.upload(3, 900 * KIB, ms);
        }
        b
    }

    #[test]
    fn leeching_regular_slots_go_to_the_fastest_uploaders_to_us() {
        let mut b = rate_bench(false);
        assert_eq!(b.poll(9_999), vec![], "no re-ranking before the rechoke");
        assert_eq!(
            b.poll(10_000),
            vec![choke(1), choke(2), unchoke(4), unchoke(5)]
        );
        assert_eq!(b.regular(), vec![4, 5]);
        // Peer 3 keeps its optimistic turn until 30 s although it is slower.
        assert_eq!(b.optimistic(), Some(3));
    }

    #[test]
    fn seeding_regular_slots_go_to_the_fastest_downloaders_from_us() {
        let mut b = rate_bench(true);
        assert_eq!(
            b.poll(10_000),
            vec![],
            "1 and 2 take data, 4 and 5 took none"
        );
        assert_eq!(b.regular(), vec![1, 2]);
        // At 30 s peer 3's optimistic turn ends and it competes: we upload to it fastest.
        for second in 10..30 {
            let ms = second * 1_000;
            b.upload(1, 20 * KIB, ms);
            b.upload(2, 10 * KIB, ms);
            b.upload(3, 900 * KIB, ms);
            b.poll(ms);
        }
        b.poll(30_000);
        assert_eq!(b.regular(), vec![1, 3]);
        assert!(matches!(b.optimistic(), Some(2 | 4 | 5)));
    }

    #[test]
    fn switching_to_seeding_re_ranks_at_the_next_poll() {
        let mut b = rate_bench(false);
        assert_eq!(
            b.poll(10_000),
            vec![choke(1), choke(2), unchoke(4), unchoke(5)]
        );
        b.c.set_seeding(true);
        // Long before the next rechoke: by upload rate, 1 and 2 win again.
        assert_eq!(
            b.poll(10_500),
            vec![choke(4), choke(5), unchoke(1), unchoke(2)]
        );
        b.c.set_seeding(true);
        assert_eq!(b.poll(10_600), vec![], "no change, no re-ranking");
    }

    #[test]
    fn old_transfers_fall_out_of_the_rate_window() {
        let mut b = Bench::new(1);
        b.join(1, 0);
        b.join(2, 0);
        b.poll(0);
        let (regular, other) = (b.regular()[0], b.optimistic().unwrap_or(0));
        // The regular peer sent much long ago, the other a little lately.
        b.download(regular, 10_000 * KIB, 1_000);
        b.download(other, KIB, 25_000);
        for second in 1..30 {
            b.poll(second * 1_000);
            assert_eq!(b.regular(), vec![regular], "at {second} s");
        }
        // Rechoke and end of the optimistic turn: only the recent bytes count.
        b.poll(30_000);
        assert_eq!(b.regular(), vec![other]);
    }

    #[test]
    fn rate_window_counts_only_its_buckets() {
        let mut w = RateWindow::default();
        w.add(0, 5);
        w.add(0, 5);
        w.add(3, 1);
        assert_eq!(w.total(3), 11);
        assert_eq!(w.total(RATE_BUCKETS as u64 - 1), 11);
        assert_eq!(w.total(RATE_BUCKETS as u64), 1, "bucket 0 left the window");
        // A late report for a bucket whose place holds a newer one is dropped.
        w.add(RATE_BUCKETS as u64 + 3, 7);
        w.add(3, 100);
        assert_eq!(w.total(RATE_BUCKETS as u64 + 3), 7);
        w.add(u64::MAX, u64::MAX);
        w.add(u64::MAX, 1);
        assert_eq!(w.total(u64::MAX), u64::MAX, "saturates");
    }

    #[test]
    fn optimistic_slot_rotates_every_interval() {
        let mut b = Bench::new(1);
        for peer in 1..=6 {
            b.join(peer, 0);
        }
        b.download(1, 16 * KIB, 0);
        b.poll(0);
        assert_eq!(b.regular(), vec![1]);
        let mut holder = b.optimistic().expect("five peers wait");
        let mut holders = BTreeSet::from([holder]);
        for second in 1..=1_200 {
            let ms = second * 1_000;
            b.download(1, 16 * KIB, ms);
            let actions = b.poll(ms);
            let now = b.optimistic().expect("someone always waits");
            assert_eq!(b.regular(), vec![1], "at {second} s");
            if second % 30 == 0 {
                assert_ne!(now, holder, "a new holder at {second} s");
                assert_eq!(actions, vec![choke(holder), unchoke(now)]);
                assert_eq!(b.c.next_wakeup(), Some(b.at(ms + 10_000)));
                holder = now;
                holders.insert(holder);
            } else {
                assert_eq!((now, actions), (holder, vec![]), "at {second} s");
            }
        }
        assert_eq!(
            holders,
            BTreeSet::from([2, 3, 4, 5, 6]),
            "everyone had turns"
        );
    }

    #[test]
    fn optimistic_draw_prefers_new_peers() {
        // Peer 1 holds the regular slot; 2, 3, 4 connected long ago; 5 connects now (or
        // long ago too, as a control). All of 2..=5 become interested at 120 s.
        let trial = |rng: &mut StdRng, fresh: bool| {
            let t0 = Instant::now();
            let at = |s: u64| t0 + Duration::from_secs(s);
            let mut c = Choker::new(
                ChokerConfig {
                    regular_slots: 1,
                    ..ChokerConfig::default()
                },
                t0,
            );
            for peer in 1..=5 {
                if peer < 5 || !fresh {
                    c.peer_connected(PeerKey(peer), t0);
                }
            }
            c.peer_interested(PeerKey(1), true, t0);
            c.poll(t0, rng);
            if fresh {
                c.peer_connected(PeerKey(5), at(120));
            }
            for peer in 2..=5 {
                c.peer_interested(PeerKey(peer), true, at(120));
            }
            c.poll(at(120), rng);
            assert!(c.is_unchoked(PeerKey(1)));
            c.optimistic_peer() == Some(PeerKey(5))
        };
        let mut rng = StdRng::seed_from_u64(42);
        let trials = 4_000;
        let fresh = (0..trials).filter(|_| trial(&mut rng, true)).count();
        let aged = (0..trials).filter(|_| trial(&mut rng, false)).count();
        // Weights 3 against 1+1+1: one half; without the bonus, one quarter. The bounds are
        // over six standard deviations wide.
        let share = |n: usize| n as f64 / trials as f64;
        assert!((0.45..0.55).contains(&share(fresh)), "{}", share(fresh));
        assert!((0.20..0.30).contains(&share(aged)), "{}", share(aged));
    }

    #[test]
    fn a_seed_keeps_the_peer_it_uploads_to_fastest() {
        let mut b = Bench::new(1);
        b.c.set_seeding(true);
        b.join(1, 0);
        b.poll(0);
        b.join(2, 0);
        b.poll(0);
        b.join(3, 1_000);
        for second in 1..=120 {
            b.upload(1, 16 * KIB, second * 1_000);
            b.poll(second * 1_000);
            assert_eq!(b.regular(), vec![1], "at {second} s");
        }
    }

    #[test]
    fn unlimited_slots_unchoke_every_interested_peer() {
        let mut b = Bench::new(0);
        for peer in 1..=10 {
            b.join(peer, 0);
        }
        for peer in 11..=13 {
            b.c.peer_connected(PeerKey(peer), b.at(0));
            b.c.peer_interested(PeerKey(peer), false, b.at(0));
        }
        let actions = b.poll(0);
        assert_eq!(actions, (1..=10).map(unchoke).collect::<Vec<_>>());
        assert_eq!(b.optimistic(), None);
        assert_eq!(b.c.next_wakeup(), None);
        assert_eq!(b.poll(600_000), vec![]);
        b.c.peer_interested(PeerKey(12), true, b.at(600_000));
        b.c.peer_interested(PeerKey(3), false, b.at(600_000));
        assert_eq!(b.poll(600_000), vec![choke(3), unchoke(12)]);
    }

    #[test]
    fn poll_only_reports_changes() {
        let mut b = Bench::new(4);
        b.join(1, 0);
        b.join(2, 0);
        assert_eq!(b.poll(0), vec![unchoke(1), unchoke(2)]);
        assert_eq!(b.poll(0), vec![]);
        for second in 1..=120 {
            b.download(1, KIB, second * 1_000);
            b.upload(2, KIB, second * 1_000);
            assert_eq!(b.poll(second * 1_000), vec![], "at {second} s");
        }
        assert_eq!(b.unchoked(), vec![1, 2]);
    }

    #[test]
    fn next_wakeup_is_the_rechoke_or_the_end_of_the_optimistic_turn() {
        let mut b = Bench::new(1);
        assert_eq!(b.c.next_wakeup(), None, "no peers");
        b.join(1, 0);
        assert_eq!(b.c.next_wakeup(), Some(b.at(10_000)));
        b.poll(0);
        b.join(2, 5_000);
        b.poll(5_000);
        assert_eq!(b.optimistic(), Some(2));
        assert_eq!(b.c.next_wakeup(), Some(b.at(10_000)));
        b.poll(10_000);
        assert_eq!(b.c.next_wakeup(), Some(b.at(20_000)));
        b.poll(30_000);
        assert_eq!(b.c.next_wakeup(), Some(b.at(35_000)), "the optimistic turn");
        b.poll(35_000);
        assert_eq!(b.optimistic(), Some(2), "nobody else waits: same holder");
        assert_eq!(b.c.next_wakeup(), Some(b.at(40_000)));
    }

    #[test]
    fn out_of_range_durations_are_corrected() {
        let config = ChokerConfig {
            rechoke_interval: Duration::ZERO,
            optimistic_interval: Duration::ZERO,
            rate_window: Duration::ZERO,
            new_peer_window: Duration::MAX,
            regular_slots: 1,
        };
        let mut b = Bench::with(config);
        assert_eq!(b.c.config().rechoke_interval, MIN_DURATION);
        assert_eq!(b.c.config().new_peer_window, MAX_DURATION);
        b.join(1, 0);
        b.join(2, 0);
        b.poll(0);
        // Time moves on between wake-ups: no busy loop.
        assert!(b.c.next_wakeup().is_some_and(|w| w > b.at(0)));
        b.download(1, KIB, 0);
        assert_eq!(b.poll(0), vec![]);
    }

    #[test]
    fn reconnecting_key_starts_choked_and_uninterested() {
        let mut b = Bench::new(1);
        b.join(1, 0);
        b.poll(0);
        b.join(2, 0);
        b.poll(0);
        assert_eq!(b.optimistic(), Some(2));
        b.c.peer_connected(PeerKey(2), b.at(1_000));
        assert!(!b.c.is_unchoked(PeerKey(2)));
        assert_eq!(b.optimistic(), None);
        assert_eq!(b.poll(1_000), vec![], "owes no CHOKE to a fresh connection");
    }

    #[test]
    fn events_for_unknown_peers_are_ignored() {
        let mut b = Bench::new(1);
        let stranger = PeerKey(9);
        b.c.peer_interested(stranger, true, b.at(0));
        b.c.record_download(stranger, KIB, b.at(0));
        b.c.record_upload(stranger, KIB, b.at(0));
        b.c.peer_disconnected(stranger);
        assert_eq!(b.poll(0), vec![]);
        assert!(!b.c.is_unchoked(stranger));
    }

    /// One thing the session may report.
    #[derive(Debug, Clone)]
    enum Event {
        Connect(u64),
        Disconnect(u64),
        Interested(u64, bool),
        Download(u64, u64),
        Upload(u64, u64),
        Seeding(bool),
        Advance(u64),
        Poll,
    }

    fn event() -> impl Strategy<Value = Event> {
        let peer = 0u64..8;
        prop_oneof![
            1 => peer.clone().prop_map(Event::Connect),
            1 => peer.clone().prop_map(Event::Disconnect),
            3 => (peer.clone(), any::<bool>()).prop_map(|(p, i)| Event::Interested(p, i)),
            1 => (peer.clone(), 0u64..1_000_000).prop_map(|(p, n)| Event::Download(p, n)),
            1 => (peer, 0u64..1_000_000).prop_map(|(p, n)| Event::Upload(p, n)),
            1 => any::<bool>().prop_map(Event::Seeding),
            2 => (0u64..40_000).prop_map(Event::Advance),
            3 => Just(Event::Poll),
        ]
    }

    /// Checks everything that must hold right after a poll at `now`.
    fn check_after_poll(c: &Choker, now: Instant, sent: &BTreeSet<PeerKey>) {
        let unchoked: BTreeSet<PeerKey> = c.unchoked_peers().collect();
        assert_eq!(&unchoked, sent, "state matches the actions sent");
        for peer in &unchoked {
            let state = &c.peers[peer];
            assert!(
                state.interested || state.undecided,
                "{peer:?} unchoked but not interested"
            );
        }
        let interested: BTreeSet<PeerKey> = c
            .peers
            .iter()
            .filter(|(_, p)| p.interested)
            .map(|(k, _)| *k)
            .collect();
        let undecided: BTreeSet<PeerKey> = c
            .peers
            .iter()
            .filter(|(_, p)| p.undecided)
            .map(|(k, _)| *k)
            .collect();
        let slots = c.config.regular_slots;
        if slots == 0 {
            assert_eq!(unchoked, &interested | &undecided);
            assert!(c.optimistic.is_none());
            return;
        }
        assert!(
            unchoked.len() <= slots + 1,
            "{} > {slots} + 1",
            unchoked.len()
        );
        let regular = c
            .peers
            .values()
            .filter(|p| p.slot == Some(Slot::Regular))
            .count();
        assert!(regular <= slots);
        if let Some(holder) = c.optimistic_peer() {
            assert_eq!(c.peers[&holder].slot, Some(Slot::Optimistic));
        }
        // No slot stays idle while someone eligible waits.
        let waiting: Vec<&PeerState> = interested
            .difference(&unchoked)
            .map(|k| &c.peers[k])
            .collect();
        if !waiting.is_empty() {
            assert!(c.optimistic.is_some(), "optimistic slot idle");
            assert!(regular == slots, "a regular slot idle");
            // Interested peers come first: none waits while a newcomer holds a slot.
            assert!(
                unchoked.iter().all(|k| !c.peers[k].undecided),
                "an undecided peer holds a slot an interested one waits for"
            );
        }
        // A free regular slot goes to any newcomer.
        if regular < slots {
            assert!(
                undecided.is_subset(&unchoked),
                "a newcomer waits for a free slot"
            );
        }
        assert!(
            c.next_wakeup().is_none_or(|w| w > now),
            "wake-up in the past"
        );
    }

    proptest! {
        #[test]
        fn invariants_hold_after_any_event_sequence(
            slots in 0usize..5,
            seed in any::<u64>(),
            events in prop::collection::vec(event(), 0..300),
        ) {
            let t0 = Instant::now();
            let mut now = t0;
            let mut rng = StdRng::seed_from_u64(seed);
            let config = ChokerConfig { regular_slots: slots, ..ChokerConfig::default() };
            let mut c = Choker::new(config, t0);
            // Who is unchoked according to the actions sent so far.
            let mut sent = BTreeSet::new();
            for event in events {
                match event {
                    Event::Connect(p) => {
                        c.peer_connected(PeerKey(p), now);
                        sent.remove(&PeerKey(p));
                    }
                    Event::Disconnect(p) => {
                        c.peer_disconnected(PeerKey(p));
                        sent.remove(&PeerKey(p));
                    }
                    Event::Interested(p, i) => c.peer_interested(PeerKey(p), i, now),
                    Event::Download(p, n) => c.record_download(PeerKey(p), n, now),
                    Event::Upload(p, n) => c.record_upload(PeerKey(p), n, now),
                    Event::Seeding(s) => c.set_seeding(s),
                    Event::Advance(ms) => now += Duration::from_millis(ms),
                    Event::Poll => {
                        for action in c.poll(now, &mut rng) {
                            match action {
                                ChokeAction::Unchoke(p) => {
                                    prop_assert!(c.peers.contains_key(&p));
                                    prop_assert!(sent.insert(p), "repeated unchoke {:?}", p);
                                }
                                ChokeAction::Choke(p) => {
                                    prop_assert!(sent.remove(&p), "choke of a choked {:?}", p);
                                }
                            }
                        }
                        check_after_poll(&c, now, &sent);
                        prop_assert_eq!(c.poll(now, &mut rng), vec![], "second poll");
                    }
                }
                // Between polls, only connected peers count as unchoked.
                for peer in c.unchoked_peers() {
                    prop_assert!(sent.contains(&peer));
                }
            }
        }
    }
}
