//! Peer connections: dialling peers, accepting them, and moving peer-wire messages between a
//! TCP socket and the torrent's session.
//!
//! This layer moves messages reliably and within bounds; it decides nothing about the
//! torrent. What to request, whom to choke and how to use extensions (BEP 9 metadata, BEP 10)
//! is the session's business. The byte formats are `swarmcdn_proto::peer`.
//!
//! The parts:
//!
//! - [`connect`] dials a peer and exchanges handshakes; [`Listener`] accepts peers and routes
//!   them by info-hash through a [`PeerRegistry`] to the session that serves the torrent.
//!   Both give a [`PeerConnection`]: handshake done, nothing running yet.
//! - [`PeerConnection::start`] runs it as a reader task and a writer task. The session keeps
//!   the [`PeerHandle`] (to send and close) and receives [`PeerEvent`]s for all its peers on
//!   one channel, tagged with the [`PeerKey`] it chose.
//! - [`ConnectionOptions`] holds every timeout and bound; [`ConnectionLimit`] caps open
//!   connections; [`UploadLimiter`] caps upload bandwidth client-wide.
//!
//! Lessons from real clients that shape it: TCP_NODELAY on every socket (small releases are
//! fetched in a few latency-bound rounds), a fast failure on an encrypted (MSE) handshake so
//! that clients such as aria2 retry in plaintext at once, and a refusal of connections to
//! ourselves (trackers hand peers their own address).
//!
//! ```
//! use swarmcdn_client::peer::{
//!     connect, ConnectionOptions, Listener, PeerEvent, PeerKey, PeerRegistry,
//! };
//! use swarmcdn_proto::id::{InfoHash, PeerId};
//! use swarmcdn_proto::peer::{Handshake, Message, Reserved};
//! use tokio::sync::mpsc;
//! use tokio_util::{sync::CancellationToken, task::TaskTracker};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let opts = ConnectionOptions::default();
//! let info_hash = InfoHash([7; 20]);
//! let handshake = |id: u8| Handshake {
//!     reserved: Reserved::NONE.with_extension_protocol(),
//!     info_hash,
//!     peer_id: PeerId([id; 20]),
//! };
//!
//! // A seeding side: a listener and one torrent session registered with it.
//! let shutdown = CancellationToken::new();
//! let registry = PeerRegistry::new();
//! let (incoming_tx, mut incoming) = mpsc::channel(8);
//! let _registration = registry.register(handshake(1), incoming_tx)?;
//! let listener = Listener::bind("127.0.0.1:0".parse()?, opts.clone()).await?;
//! let addr = listener.local_addr();
//! let router = registry.clone();
//! let accept_loop = tokio::spawn(listener.run(move |ih| router.route(ih), shutdown.clone()));
//!
//! // A fetching side dials it.
//! let (conn, theirs) = connect(addr, handshake(2), &opts).await?;
//! assert_eq!(theirs.peer_id, PeerId([1; 20]));
//!
//! // Each side's session starts its connection and talks through channels.
//! let tasks = TaskTracker::new();
//! let (events_tx, mut events) = mpsc::channel(64);
//! let dialer = conn.start(PeerKey(1), events_tx.clone(), &opts, &tasks, &shutdown);
//! let accepted = incoming.recv().await.expect("the listener hands the peer over");
//! let seeder = accepted.start(PeerKey(2), events_tx, &opts, &tasks, &shutdown);
//!
//! dialer.send(Message::Interested).await?;
//! match events.recv().await {
//!     Some((PeerKey(2), PeerEvent::Message(Message::Interested))) => {}
//!     other => panic!("unexpected {other:?}"),
//! }
//!
//! // Shut down: stop everything and wait until it has stopped.
//! shutdown.cancel();
//! drop((dialer, seeder));
//! accept_loop.await?;
//! tasks.close();
//! tasks.wait().await;
//! # Ok(())
//! # }
//! ```

mod connection;
mod error;
mod handshake;
mod listener;
mod options;
mod registry;
mod upload_limit;

#[cfg(test)]
mod tests;

pub use connection::{
    ConnectionClosed, ConnectionLimit, ConnectionPermit, ConnectionStats, DirectWriter, Direction,
    MAX_BATCH_BYTES, MIN_READ_ROOM, PeerConnection, PeerEvent, PeerHandle, PeerKey, READ_CHUNK,
};
pub use error::PeerError;
pub use handshake::{HANDSHAKE_READ_CAPACITY, connect};
pub use listener::{ACCEPT_ERROR_BACKOFF, Listener, Route};
pub use options::{
    ConnectionOptions, DEFAULT_CONNECT_TIMEOUT, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_KEEP_ALIVE_INTERVAL, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_HALF_OPEN,
    DEFAULT_SEND_QUEUE_LEN, DEFAULT_WRITE_TIMEOUT,
};
pub use registry::{AlreadyRegistered, PeerRegistry, Registration};
pub use upload_limit::{CELL_BYTES, MAX_BURST_KIB, MIN_BURST_KIB, UploadLimiter};
