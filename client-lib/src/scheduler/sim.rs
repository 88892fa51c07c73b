//! A random swarm driven through the scheduler by a fake session, with every invariant
//! checked after every step.
//!
//! Peers join and leave with random bitfields (some announced late), answer requests after
//! a round trip and a per-block service time (some far past the deadline, some never),
//! choke and unchoke, reject (Fast extension) and serve corrupt pieces; web seeds answer
//! 503s and serve bad pieces. The fake session verifies pieces, bans bad peers and removes
//! bad seeds, as the real one will. Discrete events, simulated microseconds, no sleeping.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};
use std::ops::Range;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::*;

const BLOCK: u32 = 1024;
const MAX_PIECES: u32 = 24;
/// Simulated time after which a run is declared stuck.
const TIME_LIMIT_US: u64 = 900 * 1_000_000;
const STEP_LIMIT: u64 = 400_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChokeMode {
    /// Unchokes as soon as we are interested.
    Never,
    /// Never unchokes.
    Always,
    /// Unchokes, then chokes and unchokes again at random.
    Flaps,
}

#[derive(Debug, Clone)]
struct PeerSpec {
    /// Bit `i`: has piece `i`.
    mask: u32,
    /// First announces only its even pieces, the rest later.
    announce_late: bool,
    join_ms: u64,
    leave_ms: Option<u64>,
    rtt_ms: u64,
    service_us: u64,
    /// Stops answering after this many blocks (stays connected).
    stall_after: Option<u32>,
    /// Serves its queued requests in random order rather than in order.
    shuffles: bool,
    choke: ChokeMode,
    fast: bool,
    /// Serves corrupt data for this piece.
    bad_piece: Option<u32>,
}

#[derive(Debug, Clone)]
struct SeedSpec {
    rtt_ms: u64,
    /// Answers its first fetches with 503 + Retry-After.
    busy_503: u8,
    bad_piece: Option<u32>,
    added_ms: u64,
}

#[derive(Debug, Clone)]
struct Scenario {
    pieces: u32,
    piece_len: u32,
    last_len: u32,
    peers: Vec<PeerSpec>,
    seeds: Vec<SeedSpec>,
    settle_ms: Option<u64>,
    seed: u64,
    endgame: bool,
    fixed_deadline_ms: Option<u64>,
    max_range_pieces: u32,
}

impl Scenario {
    fn geometry(&self) -> PieceGeometry {
        let total =
            u64::from(self.pieces - 1) * u64::from(self.piece_len) + u64::from(self.last_len);
        PieceGeometry::new(self.piece_len, total).unwrap()
    }

    fn config(&self) -> SchedulerConfig {
        SchedulerConfig {
            block_size: BLOCK,
            endgame: self.endgame,
            deadline: match self.fixed_deadline_ms {
                Some(d) => DeadlinePolicy::Fixed(Duration::from_millis(d)),
                None => DeadlinePolicy::default(),
            },
            max_http_range_bytes: u64::from(self.max_range_pieces) * u64::from(self.piece_len),
            ..SchedulerConfig::default()
        }
    }

    /// Whether every piece has a source that will eventually deliver it: a seed that
    /// serves no bad piece, or a peer that stays, keeps answering, unchokes at some point
    /// and serves no bad piece.
    fn every_piece_has_a_source(&self) -> bool {
        if self.seeds.iter().any(|s| s.bad_piece.is_none()) {
            return true;
        }
        (0..self.pieces).all(|piece| {
            self.peers.iter().any(|p| {
                p.mask & (1 << piece) != 0
                    && p.leave_ms.is_none()
                    && p.stall_after.is_none()
                    && p.choke != ChokeMode::Always
                    && p.bad_piece.is_none()
            })
        })
    }
}

fn peer_spec() -> impl Strategy<Value = PeerSpec> {
    (
        prop_oneof![2 => Just(u32::MAX), 3 => any::<u32>()],
        any::<bool>(),
        0u64..2000,
        prop::option::weighted(0.3, 0u64..5000),
        prop_oneof![4 => 1u64..100, 1 => 400u64..3000],
        10u64..5000,
        (prop::option::weighted(0.2, 0u32..20), any::<bool>()),
        prop_oneof![
            6 => Just(ChokeMode::Never),
            1 => Just(ChokeMode::Always),
            2 => Just(ChokeMode::Flaps)
        ],
        any::<bool>(),
        prop::option::weighted(0.15, 0u32..MAX_PIECES),
    )
        .prop_map(
            |(
                mask,
                announce_late,
                join_ms,
                leave_ms,
                rtt_ms,
                service_us,
                (stall_after, shuffles),
                choke,
                fast,
                bad_piece,
            )| PeerSpec {
                mask,
                announce_late,
                join_ms,
                leave_ms: leave_ms.map(|l| join_ms + l),
                rtt_ms,
                service_us,
                stall_after,
                shuffles,
                choke,
                fast,
                bad_piece,
            },
        )
}

fn seed_spec() -> impl Strategy<Value = SeedSpec> {
    (
        1u64..300,
        0u8..3,
        prop::option::weighted(0.2, 0u32..MAX_PIECES),
        0u64..1000,
    )
        .prop_map(|(rtt_ms, busy_503, bad_piece, added_ms)| SeedSpec {
            rtt_ms,
            busy_503,
            bad_piece,
            added_ms,
        })
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        1u32..=MAX_PIECES,
        prop_oneof![Just(1024u32), Just(2500), Just(4096)],
        any::<u32>(),
        prop::collection::vec(peer_spec(), 0..6),
        prop::collection::vec(seed_spec(), 0..3),
        prop::option::weighted(0.7, 0u64..3000),
        any::<u64>(),
        prop_oneof![4 => Just(true), 1 => Just(false)],
        prop::option::weighted(0.2, 20u64..1000),
        1u32..8,
    )
        .prop_map(
            |(
                pieces,
                piece_len,
                last,
                peers,
                seeds,
                settle_ms,
                seed,
                endgame,
                fixed_deadline_ms,
                max_range_pieces,
            )| Scenario {
                pieces,
                piece_len,
                last_len: last % piece_len + 1,
                peers,
                seeds,
                settle_ms,
                seed,
                endgame,
                fixed_deadline_ms,
                max_range_pieces,
            },
        )
}

#[derive(Debug, Clone)]
enum Ev {
    Join(usize),
    Leave(usize),
    Announce(usize),
    Unchoke(usize),
    Choke(usize),
    /// The peer finished serving its current request (if `generation` still matches: a
    /// cancel or choke may have withdrawn it since).
    Served {
        peer: usize,
        generation: u64,
    },
    Block {
        peer: usize,
        piece: u32,
        begin: u32,
        length: u32,
    },
    HttpDone {
        seed: usize,
        pieces: Range<u32>,
    },
    AddSeed(usize),
    Settle,
    Wake,
}

#[derive(Debug, Default)]
struct PeerRt {
    connected: bool,
    gone: bool,
    /// What the scheduler was told.
    choking: bool,
    unchoke_scheduled: bool,
    /// Requests it has not served yet, in order, with the time each reaches it.
    queue: VecDeque<(u32, u32, u64)>,
    /// The request being served (a `Served` event is on its way), and its generation.
    current: Option<(u32, u32)>,
    generation: u64,
    /// Blocks on the wire to us: block → event id.
    wire: BTreeMap<(u32, u32), u64>,
    served: u32,
    announced: HashSet<u32>,
}

#[derive(Debug, Default)]
struct SeedRt {
    added: bool,
    removed: bool,
    busy_503_left: u8,
    backoff_until: u64,
}

struct Sim {
    spec: Scenario,
    geo: PieceGeometry,
    s: Scheduler,
    t0: Instant,
    now: u64,
    rng: StdRng,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: HashMap<u64, Ev>,
    next_id: u64,
    peers: Vec<PeerRt>,
    seeds: Vec<SeedRt>,
    /// The session's partial pieces: begin → (peer, corrupt).
    bufs: HashMap<u32, BTreeMap<u32, (usize, bool)>>,
    /// Requests the scheduler has outstanding, as seen from its actions.
    asked: HashSet<(usize, u32, u32)>,
    /// Pieces in an HTTP fetch, and the seed fetching them.
    http_inflight: HashMap<u32, usize>,
    wake_at: Option<u64>,
    served_503: u32,
    seeds_removed: u32,
}

fn key(peer: usize) -> PeerKey {
    PeerKey(peer as u64)
}

fn seed_key(seed: usize) -> WebSeedKey {
    WebSeedKey(seed as u32)
}

impl Sim {
    fn new(spec: Scenario) -> Self {
        let geo = spec.geometry();
        let t0 = Instant::now();
        let s = Scheduler::new(geo, &Bitfield::new(geo.piece_count()), spec.config(), t0);
        let mut sim = Sim {
            geo,
            s,
            t0,
            now: 0,
            rng: StdRng::seed_from_u64(spec.seed),
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            next_id: 0,
            peers: spec.peers.iter().map(|_| PeerRt::default()).collect(),
            seeds: spec.seeds.iter().map(|_| SeedRt::default()).collect(),
            bufs: HashMap::new(),
            asked: HashSet::new(),
            http_inflight: HashMap::new(),
            wake_at: None,
            served_503: 0,
            seeds_removed: 0,
            spec,
        };
        for i in 0..sim.spec.peers.len() {
            let p = &sim.spec.peers[i];
            let (join, leave) = (p.join_ms, p.leave_ms);
            sim.schedule(join * 1000, Ev::Join(i));
            if let Some(leave) = leave {
                sim.schedule(leave * 1000, Ev::Leave(i));
            }
        }
        for i in 0..sim.spec.seeds.len() {
            sim.seeds[i].busy_503_left = sim.spec.seeds[i].busy_503;
            let at = sim.spec.seeds[i].added_ms * 1000;
            sim.schedule(at, Ev::AddSeed(i));
        }
        if let Some(settle) = sim.spec.settle_ms {
            sim.schedule(settle * 1000, Ev::Settle);
        }
        sim.schedule(0, Ev::Wake);
        sim
    }

    fn instant(&self, us: u64) -> Instant {
        self.t0 + Duration::from_micros(us)
    }

    fn schedule(&mut self, at: u64, ev: Ev) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.queue.push(Reverse((at, id)));
        self.events.insert(id, ev);
        id
    }

    fn has_piece(&self, peer: usize, piece: u32) -> bool {
        self.spec.peers[peer].mask & (1 << piece) != 0
    }

    /// Runs to completion or until stuck; returns whether the download completed.
    fn run(&mut self) -> bool {
        let mut steps = 0u64;
        while !self.s.is_complete() {
            let Some(Reverse((at, id))) = self.queue.pop() else {
                break;
            };
            let Some(ev) = self.events.remove(&id) else {
                continue; // cancelled
            };
            assert!(at >= self.now);
            self.now = at;
            if self.now > TIME_LIMIT_US {
                break;
            }
            steps += 1;
            assert!(steps < STEP_LIMIT, "runaway simulation");
            self.handle(ev);
            self.step();
        }
        self.s.is_complete()
    }

    fn handle(&mut self, ev: Ev) {
        let now = self.instant(self.now);
        match ev {
            Ev::Wake => {
                if self.wake_at == Some(self.now) {
                    self.wake_at = None;
                }
            }
            Ev::Settle => self.s.discovery_settled(),
            Ev::AddSeed(i) => {
                self.seeds[i].added = true;
                self.s.add_web_seed(seed_key(i));
            }
            Ev::Join(i) => {
                let spec = self.spec.peers[i].clone();
                let rt = &mut self.peers[i];
                rt.connected = true;
                rt.choking = true;
                self.s.peer_connected(key(i), spec.fast, now);
                let held: Vec<u32> = (0..self.geo.piece_count())
                    .filter(|&p| self.has_piece(i, p))
                    .collect();
                let initial: Vec<u32> = if spec.announce_late {
                    held.iter().copied().filter(|p| p % 2 == 0).collect()
                } else {
                    held.clone()
                };
                if initial.len() == held.len() && held.len() == self.geo.piece_count() as usize {
                    self.s.peer_have_all(key(i));
                } else if initial.is_empty() && self.rng.random_bool(0.5) {
                    self.s.peer_have_none(key(i));
                } else {
                    let mut bf = Bitfield::new(self.geo.piece_count());
                    for &p in &initial {
                        bf.set(p).unwrap();
                    }
                    self.s.peer_bitfield(key(i), &bf);
                }
                self.peers[i].announced = initial.into_iter().collect();
                if spec.announce_late {
                    let at = self.now + spec.rtt_ms * 3000 + 100_000;
                    self.schedule(at, Ev::Announce(i));
                }
            }
            Ev::Announce(i) => {
                if !self.peers[i].connected {
                    return;
                }
                let held: Vec<u32> = (0..self.geo.piece_count())
                    .filter(|&p| self.has_piece(i, p))
                    .collect();
                if self.rng.random_bool(0.5) {
                    // A second, complete bitfield replaces the first.
                    let mut bf = Bitfield::new(self.geo.piece_count());
                    for &p in &held {
                        bf.set(p).unwrap();
                    }
                    self.s.peer_bitfield(key(i), &bf);
                } else {
                    for &p in &held {
                        self.s.peer_have(key(i), p);
                    }
                }
                self.peers[i].announced = held.into_iter().collect();
            }
            Ev::Leave(i) => self.disconnect(i),
            Ev::Unchoke(i) => {
                let rt = &mut self.peers[i];
                rt.unchoke_scheduled = false;
                if !rt.connected || !rt.choking {
                    return;
                }
                rt.choking = false;
                self.s.peer_choked(key(i), false, now);
                if self.spec.peers[i].choke == ChokeMode::Flaps {
                    // Long enough to serve requests sent when we saw the unchoke.
                    let after = self.rng.random_range(200_000..2_000_000)
                        + self.spec.peers[i].rtt_ms * 2000;
                    self.schedule(self.now + after, Ev::Choke(i));
                }
            }
            Ev::Choke(i) => {
                if !self.peers[i].connected || self.peers[i].choking {
                    return;
                }
                self.peers[i].choking = true;
                self.s.peer_choked(key(i), true, now);
                // The peer drops (or, with the Fast extension, rejects) what it has not
                // served; blocks it sent after deciding to choke are not sent either.
                let rt = &mut self.peers[i];
                let mut dropped: Vec<(u32, u32)> = rt
                    .queue
                    .drain(..)
                    .map(|(piece, begin, _)| (piece, begin))
                    .collect();
                dropped.extend(rt.current.take());
                for ((piece, begin), id) in std::mem::take(&mut rt.wire) {
                    self.events.remove(&id);
                    dropped.push((piece, begin));
                }
                rt.generation += 1;
                for (piece, begin) in dropped {
                    self.asked.remove(&(i, piece, begin));
                    if self.spec.peers[i].fast {
                        let length = self.block_len(piece, begin);
                        self.s.peer_rejected(key(i), piece, begin, length);
                    }
                }
                if !self.spec.peers[i].fast {
                    // The choke discarded every request, answered or not.
                    self.asked.retain(|&(p, _, _)| p != i);
                }
                let after = self.rng.random_range(100_000..1_000_000);
                self.peers[i].unchoke_scheduled = true;
                self.schedule(self.now + after, Ev::Unchoke(i));
            }
            Ev::Served { peer, generation } => self.served(peer, generation),
            Ev::Block {
                peer,
                piece,
                begin,
                length,
            } => self.block(peer, piece, begin, length, now),
            Ev::HttpDone { seed, pieces } => self.http_done(seed, pieces, now),
        }
    }

    fn block_len(&self, piece: u32, begin: u32) -> u32 {
        BLOCK.min(self.geo.piece_len(piece) - begin)
    }

    fn disconnect(&mut self, i: usize) {
        let rt = &mut self.peers[i];
        if !rt.connected {
            return;
        }
        rt.connected = false;
        rt.gone = true;
        rt.queue.clear();
        rt.generation += 1;
        rt.current = None;
        for (_, id) in std::mem::take(&mut rt.wire) {
            self.events.remove(&id);
        }
        self.asked.retain(|&(p, _, _)| p != i);
        self.s.peer_disconnected(key(i));
    }

    /// Starts serving a queued request of peer `i` (the first, or a random one if it
    /// shuffles), unless it is busy or stalled.
    fn serve_next(&mut self, i: usize) {
        let spec = &self.spec.peers[i];
        let rt = &self.peers[i];
        if rt.current.is_some()
            || !rt.connected
            || spec.stall_after.is_some_and(|n| rt.served >= n)
            || rt.queue.is_empty()
        {
            return;
        }
        let index = if spec.shuffles {
            self.rng.random_range(0..rt.queue.len())
        } else {
            0
        };
        let service = spec.service_us;
        let rt = &mut self.peers[i];
        let Some((piece, begin, ready)) = rt.queue.remove(index) else {
            return;
        };
        rt.current = Some((piece, begin));
        let generation = rt.generation;
        let done = self.now.max(ready) + service;
        self.schedule(
            done,
            Ev::Served {
                peer: i,
                generation,
            },
        );
    }

    fn served(&mut self, i: usize, generation: u64) {
        let rt = &mut self.peers[i];
        if rt.generation != generation || !rt.connected {
            return;
        }
        if let Some((piece, begin)) = rt.current.take() {
            rt.served += 1;
            let length = self.block_len(piece, begin);
            let at = self.now + self.spec.peers[i].rtt_ms * 500;
            let id = self.schedule(
                at,
                Ev::Block {
                    peer: i,
                    piece,
                    begin,
                    length,
                },
            );
            self.peers[i].wire.insert((piece, begin), id);
        }
        self.serve_next(i);
    }

    fn block(&mut self, peer: usize, piece: u32, begin: u32, length: u32, now: Instant) {
        self.peers[peer].wire.remove(&(piece, begin));
        if !self.peers[peer].connected {
            return;
        }
        let verdict = self.s.block_received(key(peer), piece, begin, length, now);
        let was_asked = self.asked.remove(&(peer, piece, begin));
        assert_eq!(
            verdict == BlockVerdict::Expected,
            was_asked,
            "verdict {verdict:?} for a block {} asked",
            if was_asked { "still" } else { "not" }
        );
        if verdict != BlockVerdict::Expected {
            return;
        }
        let corrupt = self.spec.peers[peer].bad_piece == Some(piece);
        let buf = self.bufs.entry(piece).or_default();
        assert!(buf.insert(begin, (peer, corrupt)).is_none(), "block twice");
        let blocks = self.geo.piece_len(piece).div_ceil(BLOCK) as usize;
        if buf.len() < blocks {
            return;
        }
        let buf = self.bufs.remove(&piece).unwrap_or_default();
        let bad = buf.values().find(|(_, corrupt)| *corrupt).map(|(p, _)| *p);
        let contributors = self.s.piece_contributors(piece);
        assert!(buf.values().all(|(p, _)| contributors.contains(&key(*p))));
        match bad {
            Some(culprit) => {
                self.s.piece_failed(piece, Source::Peer(key(culprit)));
                self.disconnect(culprit);
            }
            None => {
                self.s.piece_verified(piece, Source::Peer(key(peer)));
            }
        }
    }

    fn http_done(&mut self, seed: usize, pieces: Range<u32>, now: Instant) {
        if self.seeds[seed].removed {
            return;
        }
        for piece in pieces.clone() {
            self.http_inflight.remove(&piece);
        }
        if self.seeds[seed].busy_503_left > 0 {
            self.seeds[seed].busy_503_left -= 1;
            self.served_503 += 1;
            let until = self.now + 200_000;
            self.seeds[seed].backoff_until = until;
            self.s.web_seed_backoff(seed_key(seed), self.instant(until));
            self.s.http_fetch_finished(seed_key(seed), pieces);
            return;
        }
        let _ = now;
        for piece in pieces.clone() {
            if self.s.have().has(piece) {
                continue; // a peer copy won
            }
            if self.spec.seeds[seed].bad_piece == Some(piece) {
                // As documented: after a failure every block is fetched afresh.
                self.bufs.remove(&piece);
                self.s.piece_failed(piece, Source::WebSeed(seed_key(seed)));
                self.remove_seed(seed);
                return;
            }
            self.bufs.remove(&piece);
            self.s
                .piece_verified(piece, Source::WebSeed(seed_key(seed)));
        }
        self.s.http_fetch_finished(seed_key(seed), pieces);
    }

    fn remove_seed(&mut self, seed: usize) {
        self.seeds[seed].removed = true;
        self.seeds_removed += 1;
        self.http_inflight.retain(|_, s| *s != seed);
        self.s.web_seed_removed(seed_key(seed));
    }

    /// Polls, checks every invariant and carries out the actions.
    fn step(&mut self) {
        let now = self.instant(self.now);
        let actions = self.s.poll(now, &mut self.rng);
        self.s.check_invariants();
        if let Some(wake) = self.s.next_wakeup() {
            assert!(wake > now, "wakeup in the past");
            let nanos = wake.duration_since(self.t0).as_nanos();
            let at = u64::try_from(nanos.div_ceil(1000)).unwrap();
            if self.wake_at.is_none_or(|w| w > at || w < self.now) {
                self.wake_at = Some(at);
                self.schedule(at, Ev::Wake);
            }
        }
        for action in actions {
            self.act(action);
        }
    }

    fn act(&mut self, action: Action) {
        match action {
            Action::Interested { peer, interested } => {
                let i = peer.0 as usize;
                let rt = &self.peers[i];
                assert!(rt.connected, "interest sent to a gone peer");
                let mode = self.spec.peers[i].choke;
                if interested && rt.choking && !rt.unchoke_scheduled && mode != ChokeMode::Always {
                    let at = self.now + self.spec.peers[i].rtt_ms * 500;
                    self.peers[i].unchoke_scheduled = true;
                    self.schedule(at, Ev::Unchoke(i));
                }
            }
            Action::Request {
                peer,
                piece,
                begin,
                length,
            } => {
                let i = peer.0 as usize;
                let rt = &self.peers[i];
                assert!(rt.connected, "request to a disconnected peer");
                assert!(!rt.choking, "request to a choking peer");
                assert!(!self.s.have().has(piece), "request for a piece we have");
                assert!(
                    rt.announced.contains(&piece),
                    "request for an unannounced piece"
                );
                assert_eq!(length, self.block_len(piece, begin));
                assert!(
                    self.asked.insert((i, piece, begin)),
                    "same request twice: {i} {piece} {begin}"
                );
                let ready = self.now + self.spec.peers[i].rtt_ms * 500;
                self.peers[i].queue.push_back((piece, begin, ready));
                self.serve_next(i);
            }
            Action::Cancel {
                peer, piece, begin, ..
            } => {
                let i = peer.0 as usize;
                assert!(
                    self.asked.remove(&(i, piece, begin)),
                    "cancel without a request"
                );
                // A request not yet served is dropped; a block already on the wire crosses
                // the cancel and arrives anyway.
                let rt = &mut self.peers[i];
                if let Some(pos) = rt
                    .queue
                    .iter()
                    .position(|&(p, b, _)| (p, b) == (piece, begin))
                {
                    rt.queue.remove(pos);
                } else if rt.current == Some((piece, begin)) {
                    rt.current = None;
                    rt.generation += 1;
                    self.serve_next(i);
                }
            }
            Action::HttpFetch { seed, pieces } => {
                let i = seed.0 as usize;
                let rt = &self.seeds[i];
                assert!(rt.added && !rt.removed, "fetch from an unusable seed");
                assert!(self.now >= rt.backoff_until, "fetch from a backed-off seed");
                assert!(!pieces.is_empty());
                let bytes = self.geo.range_len(&pieces);
                assert!(
                    pieces.len() == 1 || bytes <= self.s.config().max_http_range_bytes,
                    "range too large"
                );
                for piece in pieces.clone() {
                    assert!(!self.s.have().has(piece), "fetch of a piece we have");
                    assert!(
                        self.http_inflight.insert(piece, i).is_none(),
                        "piece {piece} fetched twice at once"
                    );
                }
                let at = self.now + self.spec.seeds[i].rtt_ms * 1000 + pieces.len() as u64 * 100;
                self.schedule(at, Ev::HttpDone { seed: i, pieces });
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random swarms: every invariant holds after every step, and the download completes
    /// whenever every piece has a source that will deliver it.
    #[test]
    fn random_swarms_keep_invariants_and_complete(spec in scenario()) {
        let expect_completion = spec.every_piece_has_a_source();
        let mut sim = Sim::new(spec);
        let complete = sim.run();
        if expect_completion {
            prop_assert!(complete, "stuck at {} µs, missing {}", sim.now, sim.s.missing_count());
        }
        let stats = *sim.s.stats();
        let total = sim.geo.total_length();
        let rounds = 2 + u64::from(sim.served_503) + u64::from(stats.hash_failures)
            + u64::from(sim.seeds_removed);
        prop_assert!(
            stats.bytes_requested_over_http <= total * rounds,
            "{} HTTP bytes for {} bytes", stats.bytes_requested_over_http, total
        );
    }

    /// Peers that have everything and answer on time: HTTP is never used.
    #[test]
    fn timely_peers_keep_http_idle(
        pieces in 1u32..=MAX_PIECES,
        piece_len in prop_oneof![Just(1024u32), Just(4096), Just(16384)],
        peers in prop::collection::vec((0u64..50, 1u64..80, 50u64..3000, any::<bool>()), 1..5),
        seed in any::<u64>(),
    ) {
        let spec = Scenario {
            pieces,
            piece_len,
            last_len: piece_len,
            peers: peers
                .into_iter()
                .map(|(join_ms, rtt_ms, service_us, fast)| PeerSpec {
                    mask: u32::MAX,
                    announce_late: false,
                    join_ms,
                    leave_ms: None,
                    rtt_ms,
                    service_us,
                    stall_after: None,
                    // Random service order can keep a request waiting arbitrarily long:
                    // not "on time". The general simulation covers it.
                    shuffles: false,
                    choke: ChokeMode::Never,
                    fast,
                    bad_piece: None,
                })
                .collect(),
            seeds: vec![SeedSpec { rtt_ms: 20, busy_503: 0, bad_piece: None, added_ms: 0 }],
            settle_ms: Some(60),
            seed,
            endgame: true,
            fixed_deadline_ms: None,
            max_range_pieces: 4,
        };
        let mut sim = Sim::new(spec);
        prop_assert!(sim.run());
        let stats = *sim.s.stats();
        prop_assert_eq!(stats.bytes_requested_over_http, 0);
        prop_assert_eq!(stats.overdue_requests, 0);
        prop_assert_eq!(stats.pieces_from_peers, pieces);
    }
}

/// The simulation itself: a run with one good seeder and one good seed completes.
#[test]
fn simulation_completes_a_plain_swarm() {
    let spec = Scenario {
        pieces: 10,
        piece_len: 4096,
        last_len: 100,
        peers: vec![PeerSpec {
            mask: u32::MAX,
            announce_late: false,
            join_ms: 0,
            leave_ms: None,
            rtt_ms: 20,
            service_us: 100,
            stall_after: None,
            shuffles: false,
            choke: ChokeMode::Never,
            fast: false,
            bad_piece: None,
        }],
        seeds: vec![SeedSpec {
            rtt_ms: 20,
            busy_503: 1,
            bad_piece: None,
            added_ms: 0,
        }],
        settle_ms: Some(10),
        seed: 1,
        endgame: true,
        fixed_deadline_ms: None,
        max_range_pieces: 2,
    };
    let mut sim = Sim::new(spec);
    assert!(sim.run());
    let stats = sim.s.stats();
    assert_eq!(stats.pieces_from_peers + stats.pieces_from_http, 10);
    assert_eq!(stats.pieces_from_http, 0, "the seeder was there in time");
}
