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

use std::io::{ErrorKind, Write};
use std::net::SocketAddr;

use bytes::{Buf, BytesMut};
use socket2::{Domain, Protocol, Socket, Type};
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
    let mut hello = Vec::with_capacity(Handshake::LEN);
    ours.encode(&mut hello);
    let (stream, sent) = timeout(opts.connect_timeout, open(addr, &hello))
        .await
        .map_err(|_| PeerError::ConnectTimeout(opts.connect_timeout))??;
    let exchange = async move {
        let mut stream = stream;
        stream.write_all(&hello[sent..]).await?;
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

/// Connects to `addr` and sends as much of `hello` as the new connection takes at once;
/// returns the stream (TCP_NODELAY set) and how many bytes of `hello` went out.
///
/// Written out with a socket of our own rather than `TcpStream::connect` for one reason: on
/// loopback the kernel completes the TCP handshake inside the `connect` call, but tokio
/// reports a connection established only once its reactor has seen the socket writable (a
/// wake-up of another thread later). Trying the write straight away sends our handshake
/// with the connect, so the peer's answer is already under way by then; a release lookup's
/// dials (`session/opening.rs`) get it back during the signature check. Anywhere else the
/// write finds the socket still connecting and this is the usual wait for writability.
async fn open(addr: SocketAddr, hello: &[u8]) -> std::io::Result<(TcpStream, usize)> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if still_connecting(&e) => {}
        Err(e) => return Err(e),
    }
    // Written through std's stream, which sends with MSG_NOSIGNAL where there is one.
    let mut std_stream: std::net::TcpStream = socket.into();
    let sent = match std_stream.write(hello) {
        Ok(sent) => sent,
        // Still connecting (WouldBlock; some kernels say NotConnected).
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::NotConnected) => 0,
        Err(e) => return Err(e),
    };
    let stream = TcpStream::from_std(std_stream)?;
    if sent == 0 {
        stream.writable().await?;
        if let Some(error) = stream.take_error()? {
            return Err(error);
        }
    }
    Ok((stream, sent))
}

/// Whether a non-blocking `connect` failed only because it has not finished yet: EINPROGRESS
/// on Unix (where EAGAIN means the connect failed), WSAEWOULDBLOCK on Windows.
fn still_connecting(error: &std::io::Error) -> bool {
    #[cfg(unix)]
    return error.raw_os_error() == Some(rustix::io::Errno::INPROGRESS.raw_os_error());
    #[cfg(not(unix))]
    return error.kind() == ErrorKind::WouldBlock;
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    const HELLO: &[u8] = b"a handshake's worth of bytes";

    /// On loopback the bytes normally go with the connect (a kernel that defers its packet
    /// processing may finish the connect later: then none have gone, and none are lost).
    #[tokio::test]
    async fn on_loopback_the_first_bytes_go_with_the_connect() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (mut stream, sent) = open(listener.local_addr().unwrap(), HELLO).await.unwrap();
        assert!(sent == HELLO.len() || sent == 0, "{sent} bytes sent");
        assert!(stream.nodelay().unwrap());
        stream.write_all(&HELLO[sent..]).await.unwrap();
        let (mut theirs, _) = listener.accept().await.unwrap();
        let mut got = vec![0; HELLO.len()];
        theirs.read_exact(&mut got).await.unwrap();
        assert_eq!(got, HELLO);
    }

    #[tokio::test]
    async fn a_refused_connect_is_an_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let error = open(addr, HELLO).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ConnectionRefused, "{error}");
    }

    /// A connect that does not complete in the call (the listener's queue is full, so its
    /// SYN is dropped until the retransmission a second later) waits for the socket to
    /// become writable and sends nothing before. (Linux: a backlog of 0 holds exactly one
    /// connection there.)
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_connect_still_under_way_is_awaited() {
        let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        listener
            .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        listener.listen(0).unwrap();
        let addr = listener.local_addr().unwrap().as_socket().unwrap();
        // A backlog of 0 holds one connection.
        let _queued = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        let start = Instant::now();
        let opening = tokio::spawn(async move { open(addr, HELLO).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !opening.is_finished(),
            "the connect completed with the queue full"
        );
        // Room again (whatever is queued is taken off, as it comes): the retransmitted SYN
        // gets through.
        listener.set_nonblocking(true).unwrap();
        let mut accepted = Vec::new();
        while !opening.is_finished() {
            assert!(start.elapsed() < Duration::from_secs(30), "never connected");
            while let Ok((conn, _)) = listener.accept() {
                accepted.push(conn);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (stream, sent) = opening.await.unwrap().unwrap();
        assert_eq!(sent, 0);
        assert!(stream.peer_addr().is_ok());
        assert!(stream.nodelay().unwrap());
    }
}
