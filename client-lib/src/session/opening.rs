//! The dials a release lookup lets start before its session exists.
//!
//! A tracker's release lookup answers with the signed manifest, the torrent and a sample of the
//! swarm at once. Connecting to those peers need not wait for the manifest's signature check: the
//! connect and the BitTorrent handshake name the info-hash the tracker handed out and tell a peer
//! nothing the tracker did not already know, and nothing a peer sends is used before a session
//! takes the connection, which only happens for a manifest that verified. (A forged lookup, from a
//! rogue tracker or on an `http://` tracker's path, can thus have our peer id and an info-hash of
//! its choosing sent to addresses of its choosing, where before the check it got only connection
//! attempts; a valid signature does not vouch for the peer list either, so after the check it can
//! still direct our handshakes, with the real info-hash.) So [`LookupStart::new`] opens the
//! connections as soon as the lookup answers, with our handshakes, and the peers' answers arrive
//! while the signature is checked, the torrent parsed and the session set up. Measured on loopback
//! with a 20 KiB release: about 100 µs of connect and 130 µs of handshake exchange, against 70 µs
//! of signature check and 50 µs of session start, which all used to come first.
//!
//! The dials are futures polled in place by the fetch's task rather than tasks of their own: one
//! task and one hand-off fewer per dial (when fetches still ran on the caller's task, dial tasks
//! spawned from an application's main thread made a tiny fetch slower, 1.01 ms against 0.88 ms). A
//! poll without a waker only starts the work. The first (in `new`) connects, and where the connect
//! completes inside the call (loopback: see `peer::handshake`) sends our handshake with it;
//! elsewhere the handshake goes out at the poll after the signature check
//! ([`LookupStart::advance`]) or at a later one. The session takes what is still pending over as
//! its own dials (its event loop polls them), whose first poll registers them for the readiness
//! that has come meanwhile. Each dial holds a place in the client's connection limit from the
//! start; dropping a [`LookupStart`] (a bad signature, a torrent that does not match) closes
//! everything it opened.
//!
//! The same lookup answered what a first announce asks (who has the release), so a session started
//! from one counts it as every tracker's first answer for settling, and holds its first announce
//! back until it has a piece to offer or a moment has passed (see `announce.rs`). On a tiny release
//! that announce otherwise ran beside the first peer exchange and slowed it by about a tenth of a
//! millisecond, for no peer it did not already have.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use super::discovery::DialOutcome;
use super::{Shared, is_local_ip};
use crate::peer::{ConnectionPermit, PeerConnection, PeerError, connect};
use swarmcdn_proto::InfoHash;
use swarmcdn_proto::peer::{Handshake, Reserved};

/// A connect and handshake under way.
type Connecting =
    Pin<Box<dyn Future<Output = Result<(PeerConnection, Handshake), PeerError>> + Send>>;

/// A release lookup's sample of the swarm, with the first dials under way. See the
/// [module docs](self).
pub(crate) struct LookupStart {
    /// Dials started, at most as many as a session dials at once.
    pub(super) dials: Vec<EarlyDial>,
    /// The rest of the sample: queued when the session starts.
    pub(super) queued: Vec<SocketAddr>,
}

/// One dial a [`LookupStart`] started.
pub(super) struct EarlyDial {
    pub(super) addr: SocketAddr,
    permit: ConnectionPermit,
    state: DialState,
}

enum DialState {
    Connecting(Connecting),
    /// Boxed: a connection is large, and most dials are still connecting.
    Done(Box<Result<PeerConnection, PeerError>>),
}

impl LookupStart {
    /// Starts dials to the first `peers` of a lookup for `info_hash` (as many as a session
    /// dials at once, each with a place in the connection limit); the others are kept for
    /// the session to queue. Call from within the runtime.
    pub(crate) fn new(shared: &Shared, info_hash: InfoHash, peers: Vec<SocketAddr>) -> Self {
        let max_dials = shared
            .config
            .max_concurrent_dials
            .min(shared.config.max_peers_per_torrent);
        let mut start = LookupStart {
            dials: Vec::new(),
            queued: Vec::new(),
        };
        let mut permits_left = true;
        for addr in peers {
            if addr.port() == 0
                || is_own_listener(addr, shared.listen_addr)
                || start.dials.iter().any(|d| d.addr == addr)
                || start.queued.contains(&addr)
            {
                continue;
            }
            let permit = if permits_left && start.dials.len() < max_dials {
                shared.conn_limit.try_acquire()
            } else {
                None
            };
            let Some(permit) = permit else {
                permits_left = false;
                start.queued.push(addr);
                continue;
            };
            let ours = our_handshake(info_hash, shared);
            let opts = shared.conn_opts.clone();
            let connecting: Connecting = Box::pin(async move { connect(addr, ours, &opts).await });
            start.dials.push(EarlyDial {
                addr,
                permit,
                state: DialState::Connecting(connecting),
            });
        }
        start.advance();
        start
    }

    /// Takes each dial as far as it can go now, without waiting (see the module docs).
    pub(crate) fn advance(&mut self) {
        let mut cx = Context::from_waker(Waker::noop());
        for dial in &mut self.dials {
            if let DialState::Connecting(connecting) = &mut dial.state
                && let Poll::Ready(result) = connecting.as_mut().poll(&mut cx)
            {
                dial.state = DialState::Done(Box::new(result.map(|(conn, _)| conn)));
            }
        }
    }
}

impl EarlyDial {
    /// The dial as one of the session's own (see [`Dialing`]): done already, or going on.
    pub(super) fn into_dialing(self) -> Dialing {
        let EarlyDial {
            addr,
            permit,
            state,
        } = self;
        match state {
            DialState::Done(result) => {
                let outcome = dial_outcome(addr, true, permit, *result);
                Box::pin(std::future::ready(outcome))
            }
            DialState::Connecting(connecting) => finish_dial(addr, permit, connecting, true),
        }
    }
}

impl std::fmt::Debug for LookupStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LookupStart")
            .field(
                "dialing",
                &self.dials.iter().map(|d| d.addr).collect::<Vec<_>>(),
            )
            .field("queued", &self.queued)
            .finish()
    }
}

/// Whether `addr` is our own listener (as seen on this host).
pub(super) fn is_own_listener(addr: SocketAddr, listen: SocketAddr) -> bool {
    addr.port() == listen.port() && is_local_ip(addr.ip(), listen.ip())
}

/// The handshake we send for `info_hash`: BEP 10 and BEP 6 bits set.
pub(super) fn our_handshake(info_hash: InfoHash, shared: &Shared) -> Handshake {
    Handshake {
        reserved: Reserved::NONE.with_extension_protocol().with_fast(),
        info_hash,
        peer_id: shared.peer_id,
    }
}

/// A dial of the session's: polled by its event loop (no task of its own, so the session
/// is woken by the socket itself when the dial ends), dropped with it.
pub(super) type Dialing = Pin<Box<dyn Future<Output = DialOutcome> + Send>>;

/// A dial of `addr` as `ours`, holding `permit` (kept by the connection it makes).
pub(super) fn dial(
    shared: &Shared,
    addr: SocketAddr,
    permit: ConnectionPermit,
    ours: Handshake,
    settling: bool,
) -> Dialing {
    let opts = shared.conn_opts.clone();
    let connecting: Connecting = Box::pin(async move { connect(addr, ours, &opts).await });
    finish_dial(addr, permit, connecting, settling)
}

fn finish_dial(
    addr: SocketAddr,
    permit: ConnectionPermit,
    connecting: Connecting,
    settling: bool,
) -> Dialing {
    Box::pin(async move {
        let result = connecting.await.map(|(conn, _)| conn);
        dial_outcome(addr, settling, permit, result)
    })
}

fn dial_outcome(
    addr: SocketAddr,
    settling: bool,
    permit: ConnectionPermit,
    result: Result<PeerConnection, PeerError>,
) -> DialOutcome {
    DialOutcome {
        addr,
        settling,
        result: result.map(|mut conn| {
            conn.set_permit(permit);
            conn
        }),
    }
}
