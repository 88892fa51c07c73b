//! One torrent's session: the task that owns everything about one release while it is
//! downloaded and seeded.
//!
//! # Why one task per torrent
//! The scheduler, the piece assembler, the peer table and the choke slots of a torrent are
//! changed by every event (a block, a `have`, a finished HTTP fetch, a tracker answer). One
//! task owning all of them, fed by channels, needs no lock and makes each event's effect a
//! plain sequence of calls: handle the event, [`poll`](crate::scheduler::Scheduler::poll)
//! the scheduler, execute its actions. Everything slow runs beside it as its own task and
//! reports back: connections (reader/writer tasks, see [`crate::peer`]), one feeding task
//! per peer (`peers.rs`), web-seed fetches, piece commits (hashing and disk writes), and
//! one announce loop per tracker (`announce.rs`). Dials are the exception: they are
//! futures the loop polls itself (a connect and a handshake, no work to move off the loop),
//! so the socket wakes the session directly when one ends. The loop itself never waits on
//! the network or the disk.
//!
//! The loop `select!`s over, in this order: the stop signal, commands from the client,
//! results of the tasks it started (fetches, commits, announces), its dials, connections
//! the listener routed here, events of every peer connection (one channel for all of them,
//! handled in batches), and a timer for the scheduler's or the choker's next deadline (or
//! a progress refresh).
//!
//! # Files
//! - `event_loop.rs`: the loop, the scheduler's actions, completed and failed pieces;
//! - `messages.rs`: starting a connection and every peer-wire message;
//! - `discovery.rs`: tracker answers, dialling, incoming peers, bans, and when discovery
//!   has *settled* (the scheduler then sends pieces no peer has to HTTP at once);
//! - `http.rs`: web-seed fetches and what each error does to the seed;
//! - `announce.rs`, `peers.rs`, `progress.rs`: see their docs; whom we upload to is the
//!   [`crate::choker`]'s decision, and BEP 9 requests are answered by a
//!   [`crate::metadata::MetadataServer`].
//!
//! After completion the session keeps running as a seeder (serving requests, announcing
//! on the interval) until it is stopped: client shutdown, or the release is removed.

mod announce;
mod discovery;
mod event_loop;
mod http;
mod messages;
mod opening;
mod peers;
mod progress;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use rand::SeedableRng;
use rand::rngs::StdRng;
use swarmcdn_proto::metainfo::{Info, Metainfo};
use swarmcdn_proto::{InfoHash, PeerId};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::choker::Choker;
use crate::config::ClientConfig;
use crate::metadata::MetadataServer;
use crate::peer::{
    ConnectionLimit, ConnectionOptions, PeerConnection, PeerEvent, PeerKey, PeerRegistry,
};
use crate::scheduler::{PieceGeometry, Scheduler, SchedulerStats};
use crate::storage::{PieceAssembler, Store};
use crate::webseed::WebSeed;

pub(crate) use opening::LookupStart;
pub use progress::{DownloadError, Progress};

pub use announce::{MAX_ANNOUNCE_INTERVAL, MIN_ANNOUNCE_INTERVAL};
pub use discovery::BOOTSTRAP_REDIAL;
pub use http::{WEB_SEED_RETRY_MAX, WEB_SEED_RETRY_MIN};
pub use peers::{CONTROL_QUEUE_LEN, MAX_QUEUED_UPLOADS};

/// Peer events queued between the connections and the session. Connections wait when it is
/// full (backpressure on their readers), so this bounds the memory of unprocessed blocks.
pub const PEER_EVENT_QUEUE: usize = 256;
/// Established incoming connections the listener may queue for one session.
pub const INCOMING_QUEUE: usize = 16;
/// Commands queued for one session.
const COMMAND_QUEUE: usize = 16;
/// Peer addresses waiting to be dialled; more are dropped (the tracker hands them out again
/// at the next announce).
pub const MAX_DIAL_QUEUE: usize = 200;
/// Memory for pieces assembled from peer blocks at once (per torrent). The scheduler
/// finishes begun pieces first, so few are open at a time; this only stops a pathological
/// case from growing without bound.
pub const PARTIAL_PIECE_MEMORY: u64 = 64 * 1024 * 1024;
/// A peer blamed for this many failed pieces it shared with other peers is banned (a piece
/// it alone sent that fails bans it at once).
pub const MAX_HASH_STRIKES: u32 = 2;

/// How long a peer dropped for snubbing us is not dialled again.
pub const SNUB_REDIAL_DELAY: Duration = Duration::from_secs(300);
/// The longest gap between two checks for snubbing peers.
const SNUB_CHECK_MAX: Duration = Duration::from_millis(250);

/// Client-wide things every session uses.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: ClientConfig,
    pub(crate) peer_id: PeerId,
    /// The peer listener's address.
    pub(crate) listen_addr: SocketAddr,
    pub(crate) registry: PeerRegistry,
    pub(crate) conn_opts: ConnectionOptions,
    pub(crate) conn_limit: ConnectionLimit,
    /// For web seeds.
    pub(crate) web_http: reqwest::Client,
    /// For trackers.
    pub(crate) tracker_http: reqwest::Client,
    pub(crate) tasks: TaskTracker,
}

/// What a session is started with.
pub(crate) struct SessionParams {
    pub(crate) metainfo: Arc<Metainfo>,
    pub(crate) store: Arc<Store>,
    /// Announce URLs, in order, without duplicates.
    pub(crate) announce_urls: Vec<String>,
    pub(crate) shared: Arc<Shared>,
    /// The peers dialled besides those trackers hand out (configured bootstrap peers and
    /// clients on the same cache folder), as found when the session starts.
    pub(crate) bootstrap_peers: Vec<SocketAddr>,
    /// The release lookup the session comes from, if any: its peers, the first of them
    /// being dialled already (see `opening.rs`).
    pub(crate) lookup: Option<LookupStart>,
    /// Stops this session (a child of the client's shutdown token).
    pub(crate) stop: CancellationToken,
}

/// Requests the client sends a running session.
#[derive(Debug)]
pub(crate) enum Command {
    /// Fresh counters and per-peer details.
    Stats(oneshot::Sender<SessionStats>),
}

/// A detailed snapshot of a session, taken on request.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SessionStats {
    /// The progress counters, freshly computed.
    pub progress: Progress,
    /// The scheduler's counters.
    pub scheduler: SchedulerStats,
    /// The connected peers.
    pub peers: Vec<PeerInfo>,
    /// Web seeds still in use (their URLs).
    pub web_seeds: Vec<String>,
}

/// One connected peer, as [`SessionStats`] shows it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PeerInfo {
    /// Its address.
    pub addr: SocketAddr,
    /// Its peer id.
    pub peer_id: PeerId,
    /// Whether we dialled it.
    pub outgoing: bool,
    /// Pieces it claims.
    pub pieces: u32,
    /// Block bytes we sent it.
    pub uploaded: u64,
}

/// The client's handle on a running session. Clones share the session.
#[derive(Debug, Clone)]
pub(crate) struct SessionHandle {
    pub(crate) metainfo: Arc<Metainfo>,
    pub(crate) store: Arc<Store>,
    pub(crate) progress: watch::Receiver<Progress>,
    commands: mpsc::Sender<Command>,
    stop: CancellationToken,
    /// When the client last used the release (its logical clock), for least-recently-used
    /// eviction of memory-only clients.
    pub(crate) last_used: Arc<AtomicU64>,
}

impl SessionHandle {
    /// The torrent's info-hash.
    pub(crate) fn info_hash(&self) -> InfoHash {
        self.metainfo.info_hash()
    }

    /// Whether the session task has ended.
    pub(crate) fn is_finished(&self) -> bool {
        self.commands.is_closed()
    }

    /// Asks the session for a detailed snapshot; `None` once it has ended.
    pub(crate) async fn stats(&self) -> Option<SessionStats> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Stats(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Waits until the release is complete, or the session ended without completing.
    pub(crate) async fn wait_complete(&self) -> Result<Progress, DownloadError> {
        let mut rx = self.progress.clone();
        let result = rx
            .wait_for(|p| p.complete || p.failure.is_some())
            .await
            .map(|p| p.clone());
        let progress = match result {
            Ok(progress) => progress,
            // The session ended: its last value is final.
            Err(_) => rx.borrow().clone(),
        };
        match (&progress.failure, progress.complete) {
            (_, true) => Ok(progress),
            (Some(failure), false) => Err(failure.clone()),
            (None, false) => Err(DownloadError::Stopped),
        }
    }

    /// Stops the session (its announce loops say `stopped`, its connections close).
    pub(crate) fn stop(&self) {
        self.stop.cancel();
    }
}

/// What the tasks a session started report back.
#[derive(Debug)]
enum TaskResult {
    Http(http::HttpOutcome),
    Commit(event_loop::CommitOutcome),
    Announce(announce::AnnounceOutcome),
}

/// One web seed of the torrent.
#[derive(Debug)]
struct SeedSlot {
    seed: WebSeed,
    removed: bool,
    /// Consecutive transient failures (for the backoff).
    failures: u32,
}

/// The session's state: see the module docs. Only the session task touches it.
struct Torrent {
    info_hash: InfoHash,
    info: Arc<Info>,
    store: Arc<Store>,
    shared: Arc<Shared>,
    /// See [`SessionParams::bootstrap_peers`].
    bootstrap_peers: Vec<SocketAddr>,
    stop: CancellationToken,
    scheduler: Scheduler,
    assembler: PieceAssembler,
    rng: StdRng,

    peers: HashMap<PeerKey, peers::PeerState>,
    next_key: u64,
    /// Peer ids connected now, to refuse a second connection to the same peer.
    peer_ids: HashMap<PeerId, PeerKey>,
    /// Addresses connected now (dialled, incoming and told listen addresses).
    connected_addrs: HashSet<SocketAddr>,
    choker: Choker,
    /// Answers BEP 9 requests (`None` if the info dictionary is too large to serve).
    metadata: Option<MetadataServer>,
    /// Hash strikes of peers that shared failed pieces with others.
    strikes: HashMap<PeerKey, u32>,
    banned_ids: HashSet<PeerId>,
    banned_addrs: HashSet<SocketAddr>,
    /// Addresses found to be ourselves.
    self_addrs: HashSet<SocketAddr>,
    /// Addresses not to dial before the given time (peers that snubbed us).
    avoid_until: HashMap<SocketAddr, tokio::time::Instant>,

    dial_queue: VecDeque<SocketAddr>,
    dialing: HashSet<SocketAddr>,
    /// The dials of `dialing`, polled by the event loop.
    dials: FuturesUnordered<opening::Dialing>,
    /// Dials in flight and connected peers awaiting their first message that discovery
    /// waits for.
    settling: usize,
    /// Trackers that have not reported their first outcome yet.
    first_round_pending: usize,
    /// Which trackers have reported an outcome.
    heard_from: Vec<bool>,
    /// The first announces wait for a piece to offer (the session came from a release
    /// lookup: see `opening.rs`).
    first_announce_waits: bool,
    identities: discovery::Identities,
    settled: bool,

    seeds: Vec<SeedSlot>,
    announce_urls: Vec<String>,

    events_tx: mpsc::Sender<(PeerKey, PeerEvent)>,
    results_tx: mpsc::UnboundedSender<TaskResult>,

    /// Counters not derivable from the scheduler.
    counters: Counters,
    progress_tx: watch::Sender<Progress>,
    failure: Option<DownloadError>,
}

#[derive(Debug, Default)]
struct Counters {
    have_bytes: u64,
    bytes_from_peers: u64,
    bytes_from_http: u64,
    /// Uploads of connections already closed (whose writers have ended).
    closed_uploaded: u64,
    /// Connections let go of whose writers may still be finishing a write: their uploads
    /// move to `closed_uploaded` once final (see [`Torrent::settle_closing`]).
    closing: Vec<Arc<crate::peer::ConnectionStats>>,
    peers_banned: usize,
    web_seeds_removed: usize,
    hash_failures: u32,
    announces: u32,
}

/// Starts a session for `params` on the client's task tracker and returns its handle.
/// Fails only if a session for the torrent is registered with the listener already.
pub(crate) fn spawn(
    params: SessionParams,
) -> Result<SessionHandle, crate::peer::AlreadyRegistered> {
    let SessionParams {
        metainfo,
        store,
        announce_urls,
        shared,
        bootstrap_peers,
        lookup,
        stop,
    } = params;
    let info_hash = metainfo.info_hash();
    let info = Arc::clone(store.info());
    let ours = opening::our_handshake(info_hash, &shared);
    let (incoming_tx, incoming_rx) = mpsc::channel::<PeerConnection>(INCOMING_QUEUE);
    let registration = shared.registry.register(ours, incoming_tx)?;

    let (events_tx, events_rx) = mpsc::channel(PEER_EVENT_QUEUE);
    let (results_tx, results_rx) = mpsc::unbounded_channel();
    let (commands_tx, commands_rx) = mpsc::channel(COMMAND_QUEUE);
    let now = tokio::time::Instant::now().into_std();
    let have = store.have();
    let scheduler = Scheduler::new(
        PieceGeometry::from_info(&info),
        &have,
        shared.config.scheduler.clone(),
        now,
    );
    let partial_limit = (PARTIAL_PIECE_MEMORY / u64::from(info.piece_length().max(1)))
        .max(crate::storage::DEFAULT_MAX_PARTIAL_PIECES as u64)
        .min(u64::from(info.piece_count().max(1)));
    let assembler = PieceAssembler::with_limit(Arc::clone(&info), partial_limit as usize);

    let mut seeds = Vec::new();
    for url in &metainfo.url_list {
        match WebSeed::new(
            url,
            Arc::clone(&info),
            shared.web_http.clone(),
            shared.config.web_seed,
        ) {
            Ok(seed) => seeds.push(SeedSlot {
                seed,
                removed: false,
                failures: 0,
            }),
            Err(error) => tracing::warn!(%info_hash, %url, %error, "ignoring unusable web seed"),
        }
    }

    let have_bytes: u64 = have
        .pieces()
        .filter_map(|p| info.piece_len(p))
        .map(u64::from)
        .sum();
    let initial = Progress {
        total_bytes: info.total_length(),
        have_bytes,
        total_pieces: info.piece_count(),
        have_pieces: have.count(),
        complete: store.is_complete(),
        ..Progress::default()
    };
    let (progress_tx, progress_rx) = watch::channel(initial);

    let mut choker = Choker::new(shared.config.choker.clone(), now);
    choker.set_seeding(store.is_complete());
    let metadata = MetadataServer::from_metainfo(&metainfo)
        .map_err(|error| tracing::warn!(%info_hash, %error, "metadata too large to serve"))
        .ok();
    let mut torrent = Torrent {
        info_hash,
        info,
        store: Arc::clone(&store),
        shared: Arc::clone(&shared),
        bootstrap_peers,
        stop: stop.clone(),
        scheduler,
        assembler,
        rng: StdRng::from_rng(&mut rand::rng()),
        peers: HashMap::new(),
        next_key: 1,
        peer_ids: HashMap::new(),
        connected_addrs: HashSet::new(),
        choker,
        metadata,
        strikes: HashMap::new(),
        banned_ids: HashSet::new(),
        banned_addrs: HashSet::new(),
        self_addrs: HashSet::new(),
        avoid_until: HashMap::new(),
        dial_queue: VecDeque::new(),
        dialing: HashSet::new(),
        dials: FuturesUnordered::new(),
        settling: 0,
        // A release lookup counts as every tracker's first answer (see `opening.rs`).
        first_round_pending: if lookup.is_some() {
            0
        } else {
            announce_urls.len()
        },
        heard_from: vec![lookup.is_some(); announce_urls.len()],
        first_announce_waits: lookup.is_some(),
        identities: discovery::Identities::default(),
        settled: false,
        seeds,
        announce_urls,
        events_tx,
        results_tx,
        counters: Counters {
            have_bytes,
            ..Counters::default()
        },
        progress_tx,
        failure: None,
    };
    // The lookup's dials under way are the session's own; the rest of its peers are
    // dialled as soon as the session runs (with the bootstrap peers).
    if let Some(lookup) = lookup {
        for dial in lookup.dials {
            torrent.dialing.insert(dial.addr);
            torrent.settling += 1;
            torrent.dials.push(dial.into_dialing());
        }
        for addr in lookup.queued {
            torrent.queue_dial(addr);
        }
    }
    let span =
        tracing::info_span!("torrent", info_hash = %info_hash, name = %metainfo.info().name());
    shared.tasks.spawn(
        torrent
            .run(
                event_loop::Inputs {
                    events: events_rx,
                    incoming: incoming_rx,
                    results: results_rx,
                    commands: commands_rx,
                },
                registration,
            )
            .instrument(span),
    );
    Ok(SessionHandle {
        metainfo,
        store,
        progress: progress_rx,
        commands: commands_tx,
        stop,
        last_used: Arc::new(AtomicU64::new(0)),
    })
}

/// Whether `ip` could be one of our own addresses as a tracker sees it.
fn is_local_ip(ip: IpAddr, listen: IpAddr) -> bool {
    ip.is_loopback() || ip.is_unspecified() || ip == listen
}
