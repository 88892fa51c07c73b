//! Finding peers: tracker answers, dialling, incoming connections, bans, and the moment
//! discovery has *settled*.
//!
//! We dial every peer a tracker hands us (and the configured bootstrap peers), because some
//! clients never dial loopback peers themselves, skipping our own address, peers already
//! connected or being dialled, and banned ones. Dials run concurrently, at most
//! [`ClientConfig::max_concurrent_dials`](crate::ClientConfig::max_concurrent_dials) at a
//! time and each with a permit of the client-wide connection limit; the rest wait in a
//! queue of at most [`MAX_DIAL_QUEUE`] addresses.
//!
//! *Settled* means: every tracker has answered (or failed) once, and every dial started
//! before that has failed, or connected and delivered its first message (usually the
//! bitfield: until then we do not know what the peer has). The scheduler is told at that
//! moment, and pieces no connected peer has go to HTTP at once instead of waiting out
//! [`SchedulerConfig::initial_peer_wait`](crate::scheduler::SchedulerConfig::initial_peer_wait).
//! With no tracker reachable and no peer, a download therefore starts over HTTP within one
//! failed connection attempt.
//!
//! A ban (a piece that failed its hash, a protocol violation) is for this release: the peer
//! id and its addresses are never connected again, whoever hands them out.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use swarmcdn_proto::PeerId;
use tracing::Instrument;

use super::announce::{AnnounceOutcome, Announcer};
use super::opening::{is_own_listener, our_handshake};
use super::{MAX_DIAL_QUEUE, Torrent};
use crate::peer::{ConnectionPermit, PeerConnection, PeerError, PeerKey};
use crate::tracker_client::TrackerClient;

/// While a download is incomplete, configured bootstrap peers that are not connected are
/// dialled again this often (trackers' answers also bring them back).
pub const BOOTSTRAP_REDIAL: Duration = Duration::from_secs(5);

/// Identities of peers that left, kept so a failed piece they contributed to can still get
/// them banned. Oldest forgotten first.
const MAX_GONE_IDENTITIES: usize = 1024;

/// Where a peer stands with respect to snubbing ([`snub_check`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Snub {
    /// We have no request outstanding at it.
    Idle,
    /// Our requests are outstanding, for less than the snub timeout since its last block.
    Waiting,
    /// It has left our requests unanswered for the snub timeout: drop it.
    Snubbing,
}

/// The client's one snub rule
/// ([`ClientConfig::snub_timeout`](crate::ClientConfig::snub_timeout)): a peer is
/// snubbing us once it has had block requests of ours outstanding for `timeout` without
/// sending a block. `waiting_since` is the peer's clock: set when requests go out to an idle
/// peer and reset by every block (by the caller), cleared here when nothing is outstanding.
pub(super) fn snub_check(
    waiting_since: &mut Option<tokio::time::Instant>,
    outstanding: usize,
    now: tokio::time::Instant,
    timeout: Duration,
) -> Snub {
    if outstanding == 0 {
        *waiting_since = None;
        return Snub::Idle;
    }
    let since = *waiting_since.get_or_insert(now);
    if now.saturating_duration_since(since) >= timeout {
        Snub::Snubbing
    } else {
        Snub::Waiting
    }
}

/// The result of one dial.
#[derive(Debug)]
pub(super) struct DialOutcome {
    pub(super) addr: SocketAddr,
    /// Whether discovery waits for this dial.
    pub(super) settling: bool,
    pub(super) result: Result<PeerConnection, PeerError>,
}

/// Who a peer key was, for bans after it left.
#[derive(Debug, Default)]
pub(super) struct Identities {
    by_key: std::collections::HashMap<PeerKey, (PeerId, SocketAddr)>,
    order: VecDeque<PeerKey>,
}

impl Torrent {
    /// Starts one announce loop per tracker URL.
    pub(super) fn start_announcers(&mut self) {
        let config = &self.shared.config;
        for (index, url) in self.announce_urls.iter().enumerate() {
            let announcer = Announcer {
                index,
                url: url.clone(),
                client: TrackerClient::new(url, self.shared.tracker_http.clone()),
                info_hash: self.info_hash,
                peer_id: self.shared.peer_id,
                port: self.shared.listen_addr.port(),
                numwant: config.numwant,
                retry_min: config.announce_retry_min,
                retry_max: config.announce_retry_max,
                stopped_timeout: config.stopped_announce_timeout,
                first_waits: self.first_announce_waits,
                first_wait: config.lookup_announce_wait,
                progress: self.progress_tx.subscribe(),
                results: self.results_tx.clone(),
                stop: self.stop.clone(),
            };
            let span = tracing::debug_span!("announce", %url);
            self.shared.tasks.spawn(announcer.run().instrument(span));
        }
    }

    pub(super) fn announce_finished(&mut self, outcome: AnnounceOutcome) {
        let AnnounceOutcome { tracker, result } = outcome;
        match result {
            Ok(peers) => {
                self.counters.announces += 1;
                tracing::debug!(tracker, peers = peers.len(), "tracker answered");
                for addr in peers {
                    self.queue_dial(addr);
                }
            }
            Err(error) => {
                tracing::debug!(tracker, %error, "announce failed");
            }
        }
        // Configured peers that are not connected get another try with every answer.
        self.redial_bootstrap();
        if let Some(heard) = self.heard_from.get_mut(tracker)
            && !*heard
        {
            // Only each tracker's first outcome counts towards settling.
            *heard = true;
            self.first_round_pending -= 1;
        }
        self.maybe_settle();
    }

    /// Queues the bootstrap peers that are not connected, and dials.
    pub(super) fn redial_bootstrap(&mut self) {
        for addr in self.bootstrap_peers.clone() {
            self.queue_dial(addr);
        }
        self.start_dials();
    }

    /// Whether `addr` is our own listener as someone else sees it.
    fn is_self(&self, addr: SocketAddr) -> bool {
        self.self_addrs.contains(&addr) || is_own_listener(addr, self.shared.listen_addr)
    }

    /// Whether `addr` snubbed us recently.
    fn avoided(&mut self, addr: SocketAddr) -> bool {
        match self.avoid_until.get(&addr) {
            Some(&until) if until > tokio::time::Instant::now() => true,
            Some(_) => {
                self.avoid_until.remove(&addr);
                false
            }
            None => false,
        }
    }

    /// Disconnects peers that have had our requests for
    /// [`ClientConfig::snub_timeout`](crate::ClientConfig::snub_timeout) without sending a
    /// block, and keeps them from being dialled again for a while. Returns when to check
    /// next, if anything is waiting.
    pub(super) fn check_snubs(&mut self) -> Option<tokio::time::Instant> {
        let now = tokio::time::Instant::now();
        let timeout = self.shared.config.snub_timeout;
        let mut snubbing = Vec::new();
        let mut waiting = false;
        for (&key, peer) in &mut self.peers {
            let outstanding = self.scheduler.outstanding_requests(key);
            match snub_check(&mut peer.waiting_since, outstanding, now, timeout) {
                Snub::Idle => {}
                Snub::Waiting => waiting = true,
                Snub::Snubbing => snubbing.push(key),
            }
        }
        for key in snubbing {
            if let Some(peer) = self.peers.get(&key) {
                tracing::info!(addr = %peer.addr, "peer sent no block for our requests; dropping it");
                let until = now + super::SNUB_REDIAL_DELAY;
                self.avoid_until.insert(peer.addr, until);
                if let Some(listen) = peer.listen_addr {
                    self.avoid_until.insert(listen, until);
                }
            }
            self.remove_peer(key);
        }
        waiting.then(|| now + (timeout / 4).min(super::SNUB_CHECK_MAX))
    }

    /// Queues `addr` for dialling unless it is us, known, banned or being dialled.
    pub(super) fn queue_dial(&mut self, addr: SocketAddr) {
        if addr.port() == 0
            || self.is_self(addr)
            || self.banned_addrs.contains(&addr)
            || self.connected_addrs.contains(&addr)
            || self.dialing.contains(&addr)
            || self.dial_queue.contains(&addr)
            || self.dial_queue.len() >= MAX_DIAL_QUEUE
        {
            return;
        }
        self.dial_queue.push_back(addr);
    }

    /// Starts queued dials while the bounds allow.
    pub(super) fn start_dials(&mut self) {
        let max_dials = self.shared.config.max_concurrent_dials;
        let max_peers = self.shared.config.max_peers_per_torrent;
        while self.dialing.len() < max_dials && self.peers.len() + self.dialing.len() < max_peers {
            let Some(addr) = self.dial_queue.pop_front() else {
                break;
            };
            if self.connected_addrs.contains(&addr)
                || self.banned_addrs.contains(&addr)
                || self.avoided(addr)
            {
                continue;
            }
            let Some(permit) = self.shared.conn_limit.try_acquire() else {
                tracing::debug!("connection limit reached; not dialling");
                self.dial_queue.clear();
                break;
            };
            self.dial(addr, permit);
        }
    }

    fn dial(&mut self, addr: SocketAddr, permit: ConnectionPermit) {
        let settling = !self.settled;
        if settling {
            self.settling += 1;
        }
        self.dialing.insert(addr);
        let ours = our_handshake(self.info_hash, &self.shared);
        self.dials.push(super::opening::dial(
            &self.shared,
            addr,
            permit,
            ours,
            settling,
        ));
    }

    pub(super) fn dial_finished(&mut self, outcome: DialOutcome) {
        let DialOutcome {
            addr,
            settling,
            result,
        } = outcome;
        self.dialing.remove(&addr);
        match result {
            Ok(conn) => {
                // The peer's first message settles it (or its leaving does).
                self.add_connection(conn, settling);
            }
            Err(error) => {
                tracing::debug!(%addr, %error, "dial failed");
                match error {
                    PeerError::SelfConnection => {
                        self.self_addrs.insert(addr);
                    }
                    e if e.is_protocol_violation() => {
                        self.banned_addrs.insert(addr);
                    }
                    _ => {}
                }
                if settling {
                    self.settle_one();
                }
            }
        }
        self.start_dials();
        self.maybe_settle();
    }

    /// A connection the listener routed here.
    pub(super) fn incoming(&mut self, conn: PeerConnection) {
        self.add_connection(conn, false);
    }

    /// One dial or first message discovery was waiting for has resolved.
    pub(super) fn settle_one(&mut self) {
        self.settling = self.settling.saturating_sub(1);
        self.maybe_settle();
    }

    /// Tells the scheduler once discovery has settled (see the module docs).
    pub(super) fn maybe_settle(&mut self) {
        if !self.settled
            && self.first_round_pending == 0
            && self.settling == 0
            && self.dial_queue.is_empty()
        {
            self.settled = true;
            tracing::debug!(peers = self.peers.len(), "peer discovery settled");
            self.scheduler.discovery_settled();
        }
    }

    /// Records who `key` is, for a ban after it left.
    pub(super) fn remember_identity(&mut self, key: PeerKey, peer_id: PeerId, addr: SocketAddr) {
        let ids = &mut self.identities;
        if ids.by_key.insert(key, (peer_id, addr)).is_none() {
            ids.order.push_back(key);
        }
        while ids.order.len() > MAX_GONE_IDENTITIES + self.peers.len() {
            if let Some(old) = ids.order.pop_front() {
                ids.by_key.remove(&old);
            }
        }
    }

    /// Never deal with this peer again for this release; disconnects it if connected.
    pub(super) fn ban_peer(&mut self, key: PeerKey, reason: &'static str) {
        let listen = self.peers.get(&key).and_then(|p| p.listen_addr);
        let Some(&(peer_id, addr)) = self.identities.by_key.get(&key) else {
            self.remove_peer(key);
            return;
        };
        if self.banned_ids.insert(peer_id) {
            self.counters.peers_banned += 1;
            tracing::info!(%addr, key = key.0, reason, "peer banned for this release");
        }
        self.banned_addrs.insert(addr);
        if let Some(listen) = listen {
            self.banned_addrs.insert(listen);
        }
        self.dial_queue.retain(|a| *a != addr && Some(*a) != listen);
        self.remove_peer(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_snubs_after_the_timeout_with_requests_outstanding_only() {
        let t0 = tokio::time::Instant::now();
        let timeout = Duration::from_secs(5);
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        let mut clock = None;
        // Nothing asked of it: never snubbing, however long.
        assert_eq!(snub_check(&mut clock, 0, at(100), timeout), Snub::Idle);
        assert_eq!(clock, None);
        // Requests go out at 100 s: the clock starts.
        assert_eq!(snub_check(&mut clock, 3, at(100), timeout), Snub::Waiting);
        assert_eq!(snub_check(&mut clock, 3, at(104), timeout), Snub::Waiting);
        // A block at 104 s restarts it (the caller sets the clock).
        clock = Some(at(104));
        assert_eq!(snub_check(&mut clock, 2, at(108), timeout), Snub::Waiting);
        assert_eq!(snub_check(&mut clock, 2, at(109), timeout), Snub::Snubbing);
        // Everything answered or cancelled: the clock stops.
        assert_eq!(snub_check(&mut clock, 0, at(110), timeout), Snub::Idle);
        assert_eq!(snub_check(&mut clock, 1, at(200), timeout), Snub::Waiting);
    }
}
