//! The handshake exchange over a socket, for both directions.
//!
//! The byte format is `swarmcdn_proto::peer::Handshake`; this module only moves it. Both
//! directions share three rules:
//!
//! - **TCP_NODELAY first.** Set before the first byte goes out: a release of a few KiB is
//!   fetched in a handful of request/response rounds, and Nagle's algorithm would add up to
//!   ~40 ms to each of them (delayed ACK on the other side).
//! - **Fail on the first wrong byte.** The decoder refuses a non-BitTorrent first byte at once,
//!   so an MSE-encrypted opener is answered by a close within one round trip and the other
//!   client retries in plaintext instead of waiting for our timeout.
//! - **One timeout around the whole exchange.** A peer that trickles bytes cannot stretch the
//!   handshake past [`ConnectionOptions::handshake_timeout`].
//!
//! A listener reads the first 48 bytes (through the info-hash) before it answers, so a
//! connection for a torrent we don't serve is closed without our handshake (and peer id)
//! ever being sent. Any bytes the peer sent right after its handshake (often a bitfield)
//! are kept and handed to the connection's reader.

use std::net::SocketAddr;

use bytes::{Buf, BytesMut};
use swarmcdn_proto::id::InfoHash;
use swarmcdn_proto::peer::Handshake;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::connection::{Direction, PeerConnection};
use super::listener::Route;
use super::{ConnectionOptions, PeerError};

/// The receive buffer allocated for a handshake. A handshake is 68 bytes; anything the peer
/// sends behind it in the same reads is kept, so reads never need more than this.
pub const HANDSHAKE_READ_CAPACITY: usize = 256;

/// Dials `addr`, exchanges handshakes as `ours` and returns the established connection
/// together with the peer's handshake.
///
/// Fails if the connect or the handshake takes too long, if the peer does not speak
/// plaintext BitTorrent (at its first wrong byte), if it names another torrent, or if its
/// peer id is ours (we dialled ourselves).
///
/// The connection holds no [`super::ConnectionPermit`]; a caller that counts outgoing
/// connections against a [`super::ConnectionLimit`] attaches one with
/// [`PeerConnection::set_permit`].
pub async fn connect(
    addr: SocketAddr,
    ours: Handshake,
    opts: &ConnectionOptions,
) -> Result<(PeerConnection, Handshake), PeerError> {
    let stream = timeout(opts.connect_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| PeerError::ConnectTimeout(opts.connect_timeout))??;
    stream.set_nodelay(true)?;
    let exchange = async move {
        let mut stream = stream;
        write_handshake(&mut stream, &ours).await?;
        let mut received = BytesMut::with_capacity(HANDSHAKE_READ_CAPACITY);
        let theirs = read_handshake(&mut stream, &mut received).await?;
        Ok::<_, PeerError>((stream, theirs, received))
    };
    let (stream, theirs, received) = timeout(opts.handshake_timeout, exchange)
        .await
        .map_err(|_| PeerError::HandshakeTimeout(opts.handshake_timeout))??;
    if theirs.info_hash != ours.info_hash {
        return Err(PeerError::InfoHashMismatch {
            expected: ours.info_hash,
            got: theirs.info_hash,
        });
    }
    if theirs.peer_id == ours.peer_id {
        return Err(PeerError::SelfConnection);
    }
    let conn = PeerConnection::new(stream, addr, Direction::Outgoing, ours, theirs, received);
    Ok((conn, theirs))
}

/// The listener's side of the exchange (without the timeout, which the caller applies):
/// read up to the info-hash, look it up, answer, read the rest.
pub(super) async fn accept_handshake<R>(
    mut stream: TcpStream,
    addr: SocketAddr,
    router: &R,
) -> Result<(PeerConnection, Route), PeerError>
where
    R: Fn(&InfoHash) -> Option<Route>,
{
    stream.set_nodelay(true)?;
    let mut received = BytesMut::with_capacity(HANDSHAKE_READ_CAPACITY);
    let info_hash = loop {
        if let Some((_reserved, info_hash)) = Handshake::peek_info_hash(&received)? {
            break info_hash;
        }
        read_more(&mut stream, &mut received).await?;
    };
    let route = router(&info_hash)
        .filter(|route| !route.incoming.is_closed())
        .ok_or(PeerError::UnknownTorrent(info_hash))?;
    let ours = Handshake {
        info_hash,
        ..route.ours
    };
    write_handshake(&mut stream, &ours).await?;
    let theirs = read_handshake(&mut stream, &mut received).await?;
    if theirs.peer_id == ours.peer_id {
        return Err(PeerError::SelfConnection);
    }
    let conn = PeerConnection::new(stream, addr, Direction::Incoming, ours, theirs, received);
    Ok((conn, route))
}

async fn write_handshake(stream: &mut TcpStream, ours: &Handshake) -> Result<(), PeerError> {
    let mut out = Vec::with_capacity(Handshake::LEN);
    ours.encode(&mut out);
    stream.write_all(&out).await?;
    Ok(())
}

/// Reads until a whole handshake is buffered, removes it from `buf` and returns it; bytes
/// after it stay in `buf`.
async fn read_handshake(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
) -> Result<Handshake, PeerError> {
    loop {
        if let Some((handshake, used)) = Handshake::decode(buf)? {
            buf.advance(used);
            return Ok(handshake);
        }
        read_more(stream, buf).await?;
    }
}

/// One read into `buf`'s spare room. The end of the stream during a handshake is the peer
/// giving up on us.
async fn read_more(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<(), PeerError> {
    if buf.capacity() == buf.len() {
        // Not reached while a handshake is incomplete (68 < capacity); kept for safety.
        buf.reserve(HANDSHAKE_READ_CAPACITY);
    }
    match stream.read_buf(buf).await? {
        0 => Err(PeerError::ClosedByPeer),
        _ => Ok(()),
    }
}
