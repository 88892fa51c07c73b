//! The accept loop: one listening socket for the whole client, routing each incoming peer to
//! the session of the torrent it names.
//!
//! Why it works this way:
//!
//! - **One port, many torrents.** A client seeds every release it holds; peers find all of
//!   them at the one address it announces. The handshake names the torrent, so the listener
//!   reads the first 48 bytes (through the info-hash), asks the router, and only then sends
//!   our handshake with the peer id of that torrent's session. A connection for a torrent we
//!   don't serve is closed without a byte from us.
//! - **Bounded before any work.** A socket is admitted only if a half-open slot
//!   ([`ConnectionOptions::max_half_open`]) and a connection permit
//!   ([`ConnectionOptions::max_connections`]) are free; otherwise it is closed at once. Each
//!   handshake runs in its own task under [`ConnectionOptions::handshake_timeout`], so a
//!   silent or trickling peer holds one slot for a bounded time and never the accept loop.
//! - **The session decides.** The established connection goes to the session over its
//!   channel (from [`Route::incoming`]); the session starts it (or drops it). The permit
//!   travels inside the connection and is released when the connection ends.
//! - **Clean shutdown.** `run` returns only after the listening socket is closed and every
//!   handshake task it started has ended.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use swarmcdn_proto::id::InfoHash;
use swarmcdn_proto::peer::Handshake;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::connection::{ConnectionLimit, ConnectionPermit, PeerConnection};
use super::handshake::accept_handshake;
use super::{ConnectionOptions, PeerError};

/// After a failed `accept` (typically out of file descriptors), the loop waits this long
/// before trying again instead of spinning.
pub const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Where incoming peers of one torrent go.
#[derive(Debug, Clone)]
pub struct Route {
    /// The handshake we answer with (our peer id and extension bits for this torrent).
    pub ours: Handshake,
    /// The torrent session's queue of established incoming connections.
    pub incoming: mpsc::Sender<PeerConnection>,
}

/// The peer listener. Bind it, announce [`Listener::local_addr`]'s port, then [`Listener::run`].
#[derive(Debug)]
pub struct Listener {
    socket: TcpListener,
    local_addr: SocketAddr,
    opts: ConnectionOptions,
    limit: ConnectionLimit,
}

impl Listener {
    /// Binds `addr` (port 0 picks a free port). The connection limit is a new
    /// [`ConnectionLimit`] of [`ConnectionOptions::max_connections`]; share it with outgoing
    /// dials through [`Listener::connection_limit`].
    pub async fn bind(addr: SocketAddr, opts: ConnectionOptions) -> io::Result<Self> {
        let socket = TcpListener::bind(addr).await?;
        let local_addr = socket.local_addr()?;
        let limit = ConnectionLimit::new(opts.max_connections);
        Ok(Listener {
            socket,
            local_addr,
            opts,
            limit,
        })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The connection limit incoming connections count against.
    pub fn connection_limit(&self) -> ConnectionLimit {
        self.limit.clone()
    }

    /// Counts incoming connections against `limit` instead (one shared with other parts of
    /// the client).
    #[must_use]
    pub fn with_connection_limit(mut self, limit: ConnectionLimit) -> Self {
        self.limit = limit;
        self
    }

    /// Accepts connections until `shutdown` is cancelled, then closes the socket and waits
    /// for every handshake still running to stop.
    ///
    /// `router` maps the info-hash a peer asks for to the torrent's [`Route`], or `None` when
    /// no session serves it (see [`super::PeerRegistry::route`]).
    pub async fn run<R>(self, router: R, shutdown: CancellationToken)
    where
        R: Fn(&InfoHash) -> Option<Route> + Send + Sync + 'static,
    {
        let Listener {
            socket,
            local_addr,
            opts,
            limit,
        } = self;
        let router = Arc::new(router);
        let half_open = Arc::new(Semaphore::new(opts.max_half_open));
        let handshakes = TaskTracker::new();
        tracing::debug!(%local_addr, "peer listener running");
        loop {
            let accepted = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                accepted = socket.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accepting a peer connection failed");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(ACCEPT_ERROR_BACKOFF) => continue,
                    }
                }
            };
            let Ok(slot) = Arc::clone(&half_open).try_acquire_owned() else {
                tracing::debug!(%peer, "too many handshakes in progress; closing");
                continue;
            };
            let Some(permit) = limit.try_acquire() else {
                tracing::debug!(%peer, "connection limit reached; closing");
                continue;
            };
            let handshake = Handshaking {
                stream,
                peer,
                permit,
                _slot: slot,
                handshake_timeout: opts.handshake_timeout,
            };
            let span = tracing::debug_span!("peer_handshake", %peer);
            handshakes.spawn(
                handshake
                    .run(Arc::clone(&router), shutdown.clone())
                    .instrument(span),
            );
        }
        drop(socket);
        handshakes.close();
        handshakes.wait().await;
        tracing::debug!(%local_addr, "peer listener stopped");
    }
}

/// One incoming connection in its handshake.
struct Handshaking {
    stream: TcpStream,
    peer: SocketAddr,
    permit: ConnectionPermit,
    /// The half-open slot, given back when the handshake task ends.
    _slot: OwnedSemaphorePermit,
    handshake_timeout: Duration,
}

impl Handshaking {
    async fn run<R>(self, router: Arc<R>, shutdown: CancellationToken)
    where
        R: Fn(&InfoHash) -> Option<Route>,
    {
        let Handshaking {
            stream,
            peer,
            permit,
            _slot,
            handshake_timeout,
        } = self;
        let exchange = async move {
            let (mut conn, route) = accept_handshake(stream, peer, &*router).await?;
            conn.set_permit(permit);
            route
                .incoming
                .send(conn)
                .await
                .map_err(|_| PeerError::SessionUnavailable)
        };
        let result = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            result = timeout(handshake_timeout, exchange) => {
                result.unwrap_or(Err(PeerError::HandshakeTimeout(handshake_timeout)))
            }
        };
        match result {
            Ok(()) => tracing::debug!("incoming peer handed to its session"),
            Err(error) => tracing::debug!(%error, "incoming peer refused"),
        }
    }
}
