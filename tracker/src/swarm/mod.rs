//! Swarm state: which peers are in which torrent's swarm, and whom to introduce to whom.
//!
//! The announce path is the tracker's hot path (a flash crowd is thousands of announces a
//! second), so the store is shaped by three things:
//!
//! * **A trait with plain data at its edges.** [`PeerStore`] methods take owned or borrowed
//!   plain values and write plain values back; nothing hands out a reference or a guard into
//!   internal state. That is what lets a later implementation keep swarms somewhere else (a
//!   Redis instance shared by several trackers, with time-windowed peer sets) behind the same
//!   calls. Methods return [`StoreError`] for that reason too, although the in-memory store
//!   never fails. The trait is object-safe (the random source is `&mut dyn Rng`), so the service
//!   can pick an implementation at start-up and hold an `Arc<dyn PeerStore>`.
//! * **Time and randomness are arguments.** The swarm update never reads a clock or a global
//!   random source: callers pass a [`Timestamp`] and an RNG, and tests pass a fixed clock and a
//!   seeded generator. [`Epoch`] turns the monotonic clock into timestamps at the edge.
//! * **Memory per peer is counted in bytes.** The target is under 150 bytes of resident memory
//!   per tracked peer at a million peers; [`MemoryStore`] stores an IPv4 peer in 32 bytes plus
//!   about 5 bytes of index (see `peer_map`), and `benches/peer_memory.rs` measures the whole.
//!
//! Selection rules, applied by every implementation: a `stopped` peer is removed and gets no
//! peers; `completed` counts a download once per leecher-to-seeder transition; a peer with
//! nothing left is a seeder; seeders are sent leechers first, and other seeders only in the
//! slots leechers leave; leechers get a random mix that favours seeders; the announcing peer never
//! appears in its own list (some clients stall when handed themselves); IPv4 peers go to the
//! IPv4 list and IPv6 peers to the IPv6 list; and picking is O(numwant), never O(swarm size).

mod memory;
mod peer;
mod peer_map;
mod torrent;

use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::time::Instant;

use swarmcdn_proto::{InfoHash, PeerId};

pub use memory::MemoryStore;

/// A point in time as the swarm store sees it: whole seconds since an epoch the caller chose.
///
/// `u32` seconds rather than [`Instant`] keeps each stored peer small (4 bytes for its expiry)
/// and lets a store shared between processes use a common epoch (Unix time) while a
/// single-process store uses process start ([`Epoch`]). Seconds are the granularity the
/// tracker needs: announce intervals are minutes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u32);

impl Timestamp {
    /// The timestamp `secs` seconds after the epoch.
    pub const fn from_secs(secs: u32) -> Self {
        Self(secs)
    }

    /// Seconds since the epoch.
    pub const fn secs(self) -> u32 {
        self.0
    }

    /// This timestamp plus `secs` seconds, saturating at the end of time rather than wrapping.
    pub const fn saturating_add(self, secs: u32) -> Self {
        Self(self.0.saturating_add(secs))
    }
}

/// The start of a process-local timeline: turns [`Instant`]s into [`Timestamp`]s.
///
/// The service holds one and calls [`Epoch::now`] once per request; the swarm update itself only
/// sees the resulting number. A `u32` of seconds lasts 136 years from the epoch.
#[derive(Debug, Clone, Copy)]
pub struct Epoch {
    start: Instant,
}

impl Epoch {
    /// An epoch starting at `start`.
    pub const fn new(start: Instant) -> Self {
        Self { start }
    }

    /// An epoch starting now.
    pub fn starting_now() -> Self {
        Self::new(Instant::now())
    }

    /// The timestamp of `instant` (0 for instants before the epoch).
    pub fn at(&self, instant: Instant) -> Timestamp {
        let secs = instant.saturating_duration_since(self.start).as_secs();
        Timestamp(u32::try_from(secs).unwrap_or(u32::MAX))
    }

    /// The timestamp of the current instant.
    pub fn now(&self) -> Timestamp {
        self.at(Instant::now())
    }
}

/// What the announcing peer says happened (BEP 3 `event`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum AnnounceEvent {
    /// A regular announce, sent every interval.
    #[default]
    None,
    /// The peer joined the swarm.
    Started,
    /// The peer finished downloading (sent once, when `left` reaches 0).
    Completed,
    /// The peer is leaving the swarm.
    Stopped,
}

/// One announce, as the HTTP layer extracted it from the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnounceInput {
    /// The torrent whose swarm the peer announces to.
    pub info_hash: InfoHash,
    /// The id the peer calls itself.
    pub peer_id: PeerId,
    /// Where other peers can reach this one: the request's source address (or the one a
    /// trusted proxy vouched for) with the port the peer announced. An IPv4-mapped IPv6
    /// address (`::ffff:a.b.c.d`) is treated as the IPv4 address it maps.
    pub addr: SocketAddr,
    /// What happened.
    pub event: AnnounceEvent,
    /// Bytes the peer still needs; 0 makes it a seeder.
    pub left: u64,
    /// How many peers it asks for; `None` means the configured default. Capped by the
    /// configured maximum either way.
    pub numwant: Option<u32>,
    /// Whether the answer must carry the selected peers' ids ([`AnnounceOutput::peer_ids_v4`]
    /// and `_v6`): a dictionary-model answer without `no_peer_id`. Compact answers have no
    /// place for ids, so they leave this off and skip copying them.
    pub peer_ids: bool,
}

/// A swarm's counters, as announce and scrape responses report them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SwarmStats {
    /// Seeders in the swarm (BEP 3 `complete`).
    pub complete: u32,
    /// Leechers in the swarm (BEP 3 `incomplete`).
    pub incomplete: u32,
    /// Completed downloads this store has seen (BEP 48 `downloaded`).
    pub downloaded: u64,
}

/// The answer to one announce. The caller owns it and passes it back in for the next
/// announce, so the peer lists' buffers are reused rather than reallocated per request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnnounceOutput {
    /// The swarm's counters after this announce was applied.
    pub stats: SwarmStats,
    /// Selected IPv4 peers (BEP 23 compact `peers`).
    pub peers_v4: Vec<SocketAddrV4>,
    /// Selected IPv6 peers (BEP 7 `peers6`).
    pub peers_v6: Vec<SocketAddrV6>,
    /// The ids of [`Self::peers_v4`], in the same order, when [`AnnounceInput::peer_ids`]
    /// asked for them; empty otherwise.
    pub peer_ids_v4: Vec<PeerId>,
    /// The ids of [`Self::peers_v6`], likewise.
    pub peer_ids_v6: Vec<PeerId>,
}

impl AnnounceOutput {
    /// Empties the lists and zeroes the counters, keeping the lists' capacity.
    pub fn clear(&mut self) {
        self.stats = SwarmStats::default();
        self.peers_v4.clear();
        self.peers_v6.clear();
        self.peer_ids_v4.clear();
        self.peer_ids_v6.clear();
    }

    /// Number of peers selected, both families together.
    pub fn peer_count(&self) -> usize {
        self.peers_v4.len() + self.peers_v6.len()
    }
}

/// Totals across every swarm in a store, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct StoreStats {
    /// Torrents that have swarm state.
    pub torrents: usize,
    /// Peers tracked, seeders and leechers.
    pub peers: usize,
    /// Of those, seeders.
    pub seeders: usize,
}

/// What a purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PurgeReport {
    /// Peers whose last announce is older than the peer timeout.
    pub peers: usize,
    /// Torrents left with no peers and nothing worth remembering.
    pub torrents: usize,
}

/// Why a store could not answer. The in-memory store never fails; a store backed by another
/// service (Redis) reports that service being unreachable here.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backing service failed or is unreachable; the request may be retried later.
    #[error("swarm store unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The knobs of the swarm update, usually derived from the service's [`crate::config::Config`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreConfig {
    /// A peer that has not announced for this many seconds is dropped.
    pub peer_timeout_secs: u32,
    /// Peers returned when an announce does not say how many it wants.
    pub numwant_default: u32,
    /// The most peers returned to one announce, whatever it asks for.
    pub numwant_max: u32,
    /// The most peers one swarm holds; a new peer beyond that still gets peers but is not
    /// stored. Bounds the memory one torrent can take, whatever arrives on the network.
    pub max_peers_per_torrent: u32,
    /// Number of independently locked shards (at least 1). More shards mean less contention
    /// between cores; each costs a lock and an empty map.
    pub shards: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            peer_timeout_secs: 600,
            numwant_default: 50,
            numwant_max: 50,
            max_peers_per_torrent: 200_000,
            shards: 64,
        }
    }
}

/// Where swarms live. See the module docs for the rules every implementation follows.
///
/// Every method is callable concurrently from many threads.
pub trait PeerStore: Send + Sync {
    /// Applies one announce at time `now` and writes the answer into `out` (which is cleared
    /// first). The announcing peer is added, refreshed, moved between seeders and leechers, or
    /// removed (`stopped`); then up to numwant other peers are picked with `rng`.
    ///
    /// The caller must have checked that the torrent is registered: the store keeps state for
    /// any info-hash it is given.
    fn announce(
        &self,
        input: &AnnounceInput,
        now: Timestamp,
        rng: &mut dyn rand::Rng,
        out: &mut AnnounceOutput,
    ) -> Result<(), StoreError>;

    /// Up to `numwant` (capped like an announce's) live peers of `info_hash` for a client
    /// that has not announced, picked as for a leecher, into `out` (cleared first, counters
    /// included). Read-only: nothing is stored, no swarm is created.
    fn sample(
        &self,
        info_hash: &InfoHash,
        numwant: Option<u32>,
        now: Timestamp,
        rng: &mut dyn rand::Rng,
        out: &mut AnnounceOutput,
    ) -> Result<(), StoreError>;

    /// The counters of each torrent in `info_hashes`, in the same order; a torrent without
    /// swarm state has all counters at zero. The caller bounds the list (the service's
    /// `max_scrape_hashes`).
    fn scrape(&self, info_hashes: &[InfoHash]) -> Result<Vec<SwarmStats>, StoreError>;

    /// Drops every peer whose last announce is older than the peer timeout at `now`.
    fn purge_expired(&self, now: Timestamp) -> Result<PurgeReport, StoreError>;

    /// Totals for metrics.
    fn stats(&self) -> Result<StoreStats, StoreError>;

    /// Forgets a torrent's swarm (its release was withdrawn). Returns whether it had state.
    fn remove_torrent(&self, info_hash: &InfoHash) -> Result<bool, StoreError>;
}

/// `addr` with an IPv4-mapped IPv6 address turned into the IPv4 address it carries, so a
/// dual-stack socket's view of an IPv4 client lands in the IPv4 list.
pub(crate) fn normalize_addr(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, v6.port())),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    #[test]
    fn mapped_ipv6_becomes_ipv4() {
        let mapped: SocketAddr = "[::ffff:192.0.2.7]:6881".parse().unwrap();
        assert_eq!(
            normalize_addr(mapped),
            SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 7), 6881))
        );
        let v6 = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 1, 0, 0));
        assert_eq!(normalize_addr(v6), v6);
    }

    #[test]
    fn epoch_counts_whole_seconds_and_saturates_before_start() {
        let start = Instant::now();
        let epoch = Epoch::new(start);
        assert_eq!(epoch.at(start), Timestamp(0));
        assert_eq!(epoch.at(start + Duration::from_millis(2_999)), Timestamp(2));
        // An instant before the epoch (possible only through misuse) is clamped to 0.
        if let Some(before) = start.checked_sub(Duration::from_secs(5)) {
            assert_eq!(epoch.at(before), Timestamp(0));
        }
        assert_eq!(Timestamp(u32::MAX).saturating_add(10), Timestamp(u32::MAX));
    }
}
