//! Why a peer connection could not be made or ended.
//!
//! One enum for the whole connection's life, because the session's decision is the same
//! whatever the phase: forget this peer (for a while) and use another source. The variants
//! still say which bound or rule was hit, so logs and tests can tell a slow peer from a
//! hostile one.

use std::io;
use std::time::Duration;

use swarmcdn_proto::id::InfoHash;
use swarmcdn_proto::peer::PeerWireError;

/// Why a peer connection failed or was closed by something other than us.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// The TCP connection was not established within
    /// [`super::ConnectionOptions::connect_timeout`].
    #[error("connecting to the peer timed out after {0:?}")]
    ConnectTimeout(Duration),
    /// The peer did not complete its handshake within
    /// [`super::ConnectionOptions::handshake_timeout`].
    #[error("the peer did not complete the handshake within {0:?}")]
    HandshakeTimeout(Duration),
    /// A socket operation failed (refused, reset, ...).
    #[error("peer socket: {0}")]
    Io(#[from] io::Error),
    /// The peer sent bytes that break the protocol or a [`swarmcdn_proto::peer::WireLimits`]
    /// bound. An encrypted (MSE) handshake lands here as
    /// [`PeerWireError::NotBitTorrent`], on its first byte.
    #[error("peer protocol: {0}")]
    Wire(#[from] PeerWireError),
    /// The peer answered our handshake for another torrent.
    #[error("the peer answered for torrent {got}, we asked for {expected}")]
    InfoHashMismatch {
        /// The torrent we dialled for.
        expected: InfoHash,
        /// The torrent the peer named.
        got: InfoHash,
    },
    /// The peer's id is our own: we dialled ourselves (trackers hand peers their own address).
    #[error("connected to ourselves (the peer id is ours)")]
    SelfConnection,
    /// An incoming peer asked for a torrent no session here serves. Our handshake was not sent.
    #[error("no torrent {0} is served here")]
    UnknownTorrent(InfoHash),
    /// The peer closed the connection (end of stream).
    #[error("the peer closed the connection")]
    ClosedByPeer,
    /// No byte arrived from the peer for [`super::ConnectionOptions::idle_timeout`].
    #[error("no bytes from the peer for {0:?}")]
    IdleTimeout(Duration),
    /// The peer did not take our data for [`super::ConnectionOptions::write_timeout`].
    #[error("the peer did not accept our data for {0:?}")]
    WriteTimeout(Duration),
    /// An incoming connection's torrent session did not take it (gone, or its queue stayed
    /// full for the handshake timeout).
    #[error("the torrent's session did not take the connection")]
    SessionUnavailable,
}

impl PeerError {
    /// Whether the failure came from a bound we enforce rather than from the network: a
    /// protocol violation, an identity mismatch or a self-connection. A session may want to
    /// avoid such a peer for longer than one that merely timed out.
    pub fn is_protocol_violation(&self) -> bool {
        matches!(
            self,
            PeerError::Wire(_) | PeerError::InfoHashMismatch { .. } | PeerError::SelfConnection
        )
    }
}
