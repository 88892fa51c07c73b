//! End-to-end tests of the peer layer over loopback TCP: our dialer against our listener,
//! and hand-driven sockets playing misbehaving peers.
//!
//! Every test stops what it started and checks it: the listener task has returned, its port
//! can be bound again, and every connection task has ended (the session's `TaskTracker`
//! drains).
//!
//! About paused time: with `tokio::time::pause`, the runtime jumps to the next timer
//! whenever it would wait for socket I/O. Tests that use it therefore set up their sockets
//! in real time and pause afterwards, keep only the timers under test (plus ones far later),
//! and assert lower bounds that a jump can only confirm.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use bytes::Bytes;
use swarmcdn_proto::id::{InfoHash, PeerId};
use swarmcdn_proto::peer::{Handshake, Message, PeerWireError, Reserved, WireLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::*;

const INFO_HASH: InfoHash = InfoHash([0x11; 20]);
const SERVER_ID: u8 = 1;
const CLIENT_ID: u8 = 2;
/// How long a real-time test waits for something that should happen at once.
const WAIT: Duration = Duration::from_secs(30);
/// The wait used under paused time: later than every timer under test.
const PAUSED_WAIT: Duration = Duration::from_secs(24 * 3600);

fn handshake(id: u8) -> Handshake {
    Handshake {
        reserved: Reserved::NONE.with_extension_protocol().with_fast(),
        info_hash: INFO_HASH,
        peer_id: PeerId([id; 20]),
    }
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A listener serving [`INFO_HASH`] as peer [`SERVER_ID`], running on its own task.
struct Server {
    addr: SocketAddr,
    shutdown: CancellationToken,
    run: JoinHandle<()>,
    incoming: mpsc::Receiver<PeerConnection>,
    registration: Option<Registration>,
    limit: ConnectionLimit,
}

impl Server {
    async fn start(opts: ConnectionOptions) -> Server {
        let listener = Listener::bind(loopback(), opts).await.unwrap();
        let addr = listener.local_addr();
        assert_ne!(addr.port(), 0);
        let limit = listener.connection_limit();
        let registry = PeerRegistry::new();
        let (tx, incoming) = mpsc::channel(16);
        let registration = registry.register(handshake(SERVER_ID), tx).unwrap();
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(listener.run(move |ih| registry.route(ih), shutdown.clone()));
        Server {
            addr,
            shutdown,
            run,
            incoming,
            registration: Some(registration),
            limit,
        }
    }

    async fn accept(&mut self) -> PeerConnection {
        timeout(WAIT, self.incoming.recv())
            .await
            .expect("a connection in time")
            .expect("the listener is running")
    }

    /// Stops the listener and checks that its task ended and its port is free. Returns the
    /// session's queue so a test can check what was (not) delivered.
    async fn stop(self) -> mpsc::Receiver<PeerConnection> {
        self.shutdown.cancel();
        timeout(WAIT, self.run)
            .await
            .expect("the listener stops when cancelled")
            .expect("the listener did not panic");
        TcpListener::bind(self.addr)
            .await
            .expect("the listener's port is free again");
        drop(self.registration);
        self.incoming
    }
}

/// The session end of connections: one event channel, one task tracker, one token.
struct Session {
    events_tx: mpsc::Sender<(PeerKey, PeerEvent)>,
    events: mpsc::Receiver<(PeerKey, PeerEvent)>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    opts: ConnectionOptions,
    wait: Duration,
}

impl Session {
    fn new(opts: ConnectionOptions) -> Session {
        let (events_tx, events) = mpsc::channel(64);
        Session {
            events_tx,
            events,
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            opts,
            wait: WAIT,
        }
    }

    fn start(&self, conn: PeerConnection, key: u64) -> PeerHandle {
        conn.start(
            PeerKey(key),
            self.events_tx.clone(),
            &self.opts,
            &self.tasks,
            &self.shutdown,
        )
    }

    async fn next(&mut self) -> (PeerKey, PeerEvent) {
        timeout(self.wait, self.events.recv())
            .await
            .expect("an event in time")
            .expect("the channel is open")
    }

    /// Waits for `key`'s `Closed` event (skipping its messages) and returns its error.
    async fn closed(&mut self, key: u64) -> Option<PeerError> {
        loop {
            if let (PeerKey(k), PeerEvent::Closed(error)) = self.next().await
                && k == key
            {
                return error;
            }
        }
    }

    /// Checks that every connection task this session started has ended.
    async fn assert_stopped(self) {
        self.tasks.close();
        timeout(self.wait, self.tasks.wait())
            .await
            .expect("every connection task ended");
        assert!(self.tasks.is_empty());
    }
}

/// A hand-driven peer: connects and exchanges handshakes as `ours`.
async fn raw_peer(addr: SocketAddr, ours: Handshake) -> (TcpStream, Handshake) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(&handshake_bytes(&ours)).await.unwrap();
    let mut theirs = [0u8; Handshake::LEN];
    timeout(WAIT, stream.read_exact(&mut theirs))
        .await
        .expect("a handshake in time")
        .unwrap();
    let (theirs, _) = Handshake::decode(&theirs).unwrap().unwrap();
    (stream, theirs)
}

/// A hand-driven peer connected to our listener, and our side of that connection started
/// as `key` in a session with `opts`.
async fn started_with_raw_peer(
    opts: ConnectionOptions,
    key: u64,
) -> (Server, TcpStream, Session, PeerHandle) {
    let mut server = Server::start(opts.clone()).await;
    let (peer, _) = raw_peer(server.addr, handshake(CLIENT_ID)).await;
    let session = Session::new(opts);
    let handle = session.start(server.accept().await, key);
    (server, peer, session, handle)
}

/// Options with a 90 s keep-alive and no practical idle timeout (keep-alive tests).
fn keep_alive_options() -> ConnectionOptions {
    ConnectionOptions {
        keep_alive_interval: Duration::from_secs(90),
        idle_timeout: Duration::from_secs(7 * 24 * 3600),
        ..ConnectionOptions::default()
    }
}

fn handshake_bytes(h: &Handshake) -> Vec<u8> {
    let mut out = Vec::new();
    h.encode(&mut out);
    out
}

/// Reads until the other side closes; returns what was read. A reset counts as closed.
async fn read_until_closed(stream: &mut TcpStream, wait: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let _ = timeout(wait, stream.read_to_end(&mut got))
        .await
        .expect("closed in time");
    got
}

/// Both ends of one connection, our dialer to our listener, not yet started.
async fn connected_pair(
    server: &mut Server,
    opts: &ConnectionOptions,
) -> (PeerConnection, PeerConnection) {
    let (dialer, theirs) = connect(server.addr, handshake(CLIENT_ID), opts)
        .await
        .unwrap();
    assert_eq!(theirs.peer_id, PeerId([SERVER_ID; 20]));
    let accepted = server.accept().await;
    (dialer, accepted)
}

/// A deterministic mix of every kind of message, block data of many sizes included.
fn mixed_messages(seed: u32, count: u32) -> Vec<Message> {
    (0..count)
        .map(|i| match i % 12 {
            0 => Message::Have { piece: i ^ seed },
            1 => Message::Request {
                index: i,
                begin: seed,
                length: 16384,
            },
            2 | 3 => Message::Piece {
                index: i,
                begin: seed.wrapping_mul(i),
                data: Bytes::from(vec![
                    (i % 251) as u8;
                    (i as usize * 37 + seed as usize) % 20_000
                ]),
            },
            4 => Message::Interested,
            5 => Message::Unchoke,
            6 => Message::Cancel {
                index: i,
                begin: 0,
                length: 1,
            },
            7 => Message::Bitfield(Bytes::from(vec![0xa5; (i % 50 + 1) as usize])),
            8 => Message::Extended {
                id: (i % 3) as u8,
                payload: Bytes::from(format!("d1:ai{i}ee")),
            },
            9 => Message::Port(i as u16),
            10 => Message::Reject {
                index: seed,
                begin: i,
                length: 16384,
            },
            _ => Message::Choke,
        })
        .collect()
}

fn piece_bytes(messages: &[Message]) -> u64 {
    messages
        .iter()
        .map(|m| match m {
            Message::Piece { data, .. } => data.len() as u64,
            _ => 0,
        })
        .sum()
}

#[tokio::test]
async fn connect_and_accept_exchange_handshakes_and_1000_messages_each_way() {
    let opts = ConnectionOptions::default();
    let mut server = Server::start(opts.clone()).await;
    let (dialer, accepted) = connected_pair(&mut server, &opts).await;

    // Each side sees the other's identity.
    assert_eq!(dialer.remote_handshake().peer_id, PeerId([SERVER_ID; 20]));
    assert_eq!(accepted.remote_handshake().peer_id, PeerId([CLIENT_ID; 20]));
    assert_eq!(
        accepted.remote_handshake().reserved,
        handshake(CLIENT_ID).reserved
    );
    assert_eq!(dialer.local_handshake(), &handshake(CLIENT_ID));
    assert_eq!(accepted.local_handshake(), &handshake(SERVER_ID));
    assert_eq!(dialer.direction(), Direction::Outgoing);
    assert_eq!(accepted.direction(), Direction::Incoming);
    assert_eq!(dialer.peer_addr(), server.addr);
    assert!(accepted.has_permit() && !dialer.has_permit());
    assert_eq!(server.limit.available(), DEFAULT_MAX_CONNECTIONS - 1);

    let mut session = Session::new(opts.clone());
    let a = session.start(dialer, 1);
    let b = session.start(accepted, 2);
    assert_eq!((a.key(), b.key()), (PeerKey(1), PeerKey(2)));

    let from_a = mixed_messages(7, 1000);
    let from_b = mixed_messages(99, 1000);
    // Send from tasks: the receiving side applies backpressure until the test reads.
    let send_all = |handle: PeerHandle, messages: Vec<Message>| {
        tokio::spawn(async move {
            for message in messages {
                handle.send(message).await.unwrap();
            }
            handle
        })
    };
    let sending_a = send_all(a, from_a.clone());
    let sending_b = send_all(b, from_b.clone());

    let (mut got_by_a, mut got_by_b) = (Vec::new(), Vec::new());
    while got_by_a.len() + got_by_b.len() < 2000 {
        match session.next().await {
            (PeerKey(1), PeerEvent::Message(m)) => got_by_a.push(m),
            (PeerKey(2), PeerEvent::Message(m)) => got_by_b.push(m),
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert!(got_by_b == from_a, "b received a's messages in order");
    assert!(got_by_a == from_b, "a received b's messages in order");

    let a = sending_a.await.unwrap();
    let b = sending_b.await.unwrap();
    assert_eq!(a.stats().uploaded(), piece_bytes(&from_a));
    assert_eq!(b.stats().downloaded(), piece_bytes(&from_a));
    assert_eq!(b.stats().uploaded(), piece_bytes(&from_b));
    assert_eq!(a.stats().downloaded(), piece_bytes(&from_b));

    // We close a: it reports a clean close, b hears the peer leave. Once closed, a's upload
    // count is final (its writer has ended), and still the whole of what it sent.
    assert!(!a.stats().upload_final());
    a.close();
    assert!(a.is_closed());
    assert!(session.closed(1).await.is_none());
    assert!(a.stats().upload_final());
    assert_eq!(a.stats().uploaded(), piece_bytes(&from_a));
    assert!(matches!(
        session.closed(2).await,
        Some(PeerError::ClosedByPeer)
    ));
    assert!(b.is_closed());
    assert!(matches!(
        b.send(Message::Interested).await,
        Err(ConnectionClosed(Message::Interested))
    ));
    drop((a, b));
    session.assert_stopped().await;
    // The accepted connection gave its permit back.
    assert_eq!(server.limit.available(), DEFAULT_MAX_CONNECTIONS);
    server.stop().await;
}

#[tokio::test]
async fn nodelay_is_set_on_both_sides() {
    let opts = ConnectionOptions::default();
    let mut server = Server::start(opts.clone()).await;
    let (dialer, accepted) = connected_pair(&mut server, &opts).await;
    assert!(dialer.nodelay().unwrap(), "outgoing socket has TCP_NODELAY");
    assert!(
        accepted.nodelay().unwrap(),
        "accepted socket has TCP_NODELAY"
    );
    drop((dialer, accepted));
    server.stop().await;
}

#[tokio::test]
async fn bytes_right_behind_the_handshake_are_not_lost() {
    // Clients often send their bitfield in the same segment as the handshake; here a peer
    // sends far more than the handshake buffer holds before reading anything.
    let opts = ConnectionOptions::default();
    let mut server = Server::start(opts.clone()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let mut opening = handshake_bytes(&handshake(CLIENT_ID));
    let bitfield = Message::Bitfield(Bytes::from_static(&[0xf0, 0x0f]));
    bitfield.encode(&mut opening);
    for piece in 0..300 {
        Message::Have { piece }.encode(&mut opening);
    }
    Message::Unchoke.encode(&mut opening);
    assert!(opening.len() > 10 * HANDSHAKE_READ_CAPACITY);
    stream.write_all(&opening).await.unwrap();

    let accepted = server.accept().await;
    // The handshake reader took at most its bounded buffer's worth.
    assert!(accepted.received_len() <= HANDSHAKE_READ_CAPACITY - Handshake::LEN);
    let mut session = Session::new(opts);
    let handle = session.start(accepted, 5);
    assert!(matches!(session.next().await, (PeerKey(5), PeerEvent::Message(m)) if m == bitfield));
    for piece in 0..300 {
        assert!(matches!(
            session.next().await,
            (PeerKey(5), PeerEvent::Message(Message::Have { piece: p })) if p == piece
        ));
    }
    assert!(matches!(
        session.next().await,
        (PeerKey(5), PeerEvent::Message(Message::Unchoke))
    ));
    drop(handle);
    assert!(session.closed(5).await.is_none());
    session.assert_stopped().await;
    server.stop().await;
}

#[tokio::test]
async fn messages_behind_the_handshake_are_taken_up_to_a_block_and_the_reader_gets_the_rest() {
    let opts = ConnectionOptions::default();
    let mut server = Server::start(opts.clone()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let bitfield = Message::Bitfield(Bytes::from_static(&[0xc0]));
    let block = Message::Piece {
        index: 0,
        begin: 0,
        data: Bytes::from_static(b"data"),
    };
    let mut opening = handshake_bytes(&handshake(CLIENT_ID));
    for message in [
        bitfield.clone(),
        Message::KeepAlive,
        Message::Unchoke,
        block.clone(),
        Message::Have { piece: 1 },
    ] {
        message.encode(&mut opening);
    }
    stream.write_all(&opening).await.unwrap();

    let mut accepted = server.accept().await;
    // Everything up to the block (keep-alives dropped); the block and what follows stay.
    let taken = accepted.take_received_messages(&opts.wire_limits);
    assert_eq!(taken, vec![bitfield, Message::Unchoke]);
    let mut session = Session::new(opts);
    let handle = session.start(accepted, 7);
    assert!(matches!(session.next().await, (PeerKey(7), PeerEvent::Message(m)) if m == block));
    assert!(
        handle.stats().downloaded() == 4,
        "the reader counted the block"
    );
    assert!(matches!(
        session.next().await,
        (PeerKey(7), PeerEvent::Message(Message::Have { piece: 1 }))
    ));
    drop(handle);
    assert!(session.closed(7).await.is_none());
    session.assert_stopped().await;
    server.stop().await;
}

#[tokio::test]
async fn a_bad_frame_behind_the_handshake_is_left_for_the_reader_to_report() {
    let opts = ConnectionOptions::default();
    let mut server = Server::start(opts.clone()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let mut opening = handshake_bytes(&handshake(CLIENT_ID));
    Message::Interested.encode(&mut opening);
    // A HAVE two bytes short: a protocol violation.
    opening.extend_from_slice(&[0, 0, 0, 3, 4, 0, 1]);
    stream.write_all(&opening).await.unwrap();

    let mut accepted = server.accept().await;
    let taken = accepted.take_received_messages(&opts.wire_limits);
    assert_eq!(taken, vec![Message::Interested]);
    let mut session = Session::new(opts);
    let _handle = session.start(accepted, 8);
    let error = session
        .closed(8)
        .await
        .expect("the reader reports the bad frame");
    assert!(error.is_protocol_violation(), "{error}");
    session.assert_stopped().await;
    server.stop().await;
}

/// Reads frames from `stream` until `count` messages (keep-alives skipped) are decoded.
async fn read_messages(stream: &mut TcpStream, count: usize) -> Vec<Message> {
    let mut buf = bytes::BytesMut::new();
    let mut got = Vec::new();
    while got.len() < count {
        while let Some(m) = Message::decode_from(&mut buf, &WireLimits::DEFAULT).unwrap() {
            if m != Message::KeepAlive {
                got.push(m);
            }
        }
        if got.len() >= count {
            break;
        }
        let read = timeout(WAIT, stream.read_buf(&mut buf))
            .await
            .expect("messages in time")
            .unwrap();
        assert_ne!(read, 0, "closed after {} messages", got.len());
    }
    got
}

#[tokio::test]
async fn send_now_writes_at_once_when_nothing_is_queued_and_never_overtakes_the_queue() {
    let opts = ConnectionOptions::default();
    let (server, mut peer, session, handle) = started_with_raw_peer(opts, 9).await;

    // Idle: written from this task, and the peer has it.
    assert!(handle.send_now(&Message::Interested));
    assert_eq!(read_messages(&mut peer, 1).await, vec![Message::Interested]);
    // A block too (no upload cap here), counted as uploaded.
    let block = Message::Piece {
        index: 0,
        begin: 0,
        data: Bytes::from(vec![7u8; 16 * 1024]),
    };
    assert!(handle.send_now(&block));
    assert_eq!(read_messages(&mut peer, 1).await, vec![block.clone()]);
    assert_eq!(handle.stats().uploaded(), 16 * 1024);

    // The peer stops reading: queue blocks until the socket is full and the writer holds
    // some. From then on `send_now` refuses (something unwritten is queued ahead).
    let mut queued = 0usize;
    loop {
        match handle.try_send(block.clone()) {
            Ok(()) => queued += 1,
            Err(mpsc::error::TrySendError::Full(_)) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(!handle.send_now(&Message::Have { piece: 1 }));
    // Queued behind the blocks (waiting for room as the peer reads again), a control
    // message comes after every one of them.
    let reader = tokio::spawn(async move {
        let got = read_messages(&mut peer, queued + 1).await;
        (peer, got)
    });
    handle.send(Message::Have { piece: 2 }).await.unwrap();
    let (mut peer, got) = timeout(WAIT, reader).await.unwrap().unwrap();
    assert!(got[..queued].iter().all(|m| *m == block));
    assert_eq!(got[queued], Message::Have { piece: 2 });
    // Drained: direct writes again.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !handle.send_now(&Message::Have { piece: 3 }) {
        assert!(tokio::time::Instant::now() < deadline, "never idle again");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        read_messages(&mut peer, 1).await,
        vec![Message::Have { piece: 3 }]
    );

    drop(handle);
    session.assert_stopped().await;
    server.stop().await;
}

#[tokio::test]
async fn blocks_written_directly_until_the_socket_is_full_arrive_whole_and_counted() {
    let opts = ConnectionOptions::default();
    let (server, mut peer, session, handle) = started_with_raw_peer(opts, 11).await;
    // The peer does not read: direct writes fill the socket, the last one in part (its
    // rest, or the whole block, goes to the writer first in line), then they are refused.
    let mut sent = Vec::new();
    for index in 0.. {
        let block = Message::Piece {
            index,
            begin: 0,
            data: Bytes::from(vec![index as u8; 16 * 1024 + 3]),
        };
        if !handle.send_now(&block) {
            break;
        }
        sent.push(block);
        assert!(index < 10_000, "the socket never filled up");
    }
    assert!(!sent.is_empty());
    let got = read_messages(&mut peer, sent.len()).await;
    assert_eq!(got, sent);
    let total = sent.len() as u64 * (16 * 1024 + 3);
    let deadline = tokio::time::Instant::now() + WAIT;
    while handle.stats().uploaded() != total {
        assert!(
            tokio::time::Instant::now() < deadline,
            "uploaded {}",
            handle.stats().uploaded()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    drop(handle);
    session.assert_stopped().await;
    server.stop().await;
}

#[tokio::test]
async fn a_block_over_the_upload_budget_is_left_to_the_writer() {
    // 16 KiB/s: the burst covers one 16 KiB block, not two.
    let opts = ConnectionOptions {
        upload_limiter: Some(UploadLimiter::new(NonZeroU32::new(16).unwrap())),
        ..ConnectionOptions::default()
    };
    let (server, mut peer, session, handle) = started_with_raw_peer(opts, 12).await;
    let block = |index: u32| Message::Piece {
        index,
        begin: 0,
        data: Bytes::from(vec![index as u8; 16 * 1024]),
    };
    assert!(handle.send_now(&block(0)), "within the burst");
    assert!(!handle.send_now(&block(1)), "over the budget");
    // Control messages are not budgeted.
    assert!(handle.send_now(&Message::Have { piece: 5 }));
    handle.send(block(1)).await.unwrap();
    let got = read_messages(&mut peer, 3).await;
    assert_eq!(got, vec![block(0), Message::Have { piece: 5 }, block(1)]);

    drop(handle);
    session.assert_stopped().await;
    server.stop().await;
}

#[tokio::test]
async fn send_all_now_writes_a_batch_in_one_go_or_not_at_all() {
    let opts = ConnectionOptions::default();
    let (server, mut peer, session, handle) = started_with_raw_peer(opts, 14).await;
    let writer = handle.direct_writer();
    let batch: Vec<Message> = (0..50).map(|piece| Message::Have { piece }).collect();
    assert!(writer.send_all_now(&batch));
    assert_eq!(read_messages(&mut peer, 50).await, batch);
    // A block in the batch: refused whole (blocks go one by one, under the upload cap).
    let block = Message::Piece {
        index: 0,
        begin: 0,
        data: Bytes::from_static(b"x"),
    };
    assert!(!writer.send_all_now(&[Message::Interested, block]));
    // Something queued and unwritten ahead: refused, and the caller's queueing keeps order.
    handle.try_send(Message::Unchoke).unwrap();
    if !writer.send_all_now(&[Message::Have { piece: 99 }]) {
        handle.try_send(Message::Have { piece: 99 }).unwrap();
    }
    assert_eq!(
        read_messages(&mut peer, 2).await,
        vec![Message::Unchoke, Message::Have { piece: 99 }]
    );

    drop(handle);
    session.assert_stopped().await;
    server.stop().await;
}

#[tokio::test]
async fn direct_and_queued_messages_from_one_task_arrive_in_the_order_sent() {
    let opts = ConnectionOptions {
        send_queue_len: 8,
        ..ConnectionOptions::default()
    };
    let (server, mut peer, session, handle) = started_with_raw_peer(opts, 10).await;
    let messages = mixed_messages(5, 2000);
    let reader = tokio::spawn(async move {
        let got = read_messages(&mut peer, 2000).await;
        (peer, got)
    });
    let mut direct = 0;
    for message in &messages {
        if handle.send_now(message) {
            direct += 1;
        } else {
            handle.send(message.clone()).await.unwrap();
        }
    }
    let (_peer, got) = timeout(WAIT, reader).await.unwrap().unwrap();
    assert_eq!(got, messages);
    assert!(direct > 0, "some were written directly");

    drop(handle);
    session.assert_stopped().await;
    server.stop().await;
}

#[tokio::test]
async fn a_peer_that_stops_reading_is_closed_after_the_write_timeout() {
    let opts = ConnectionOptions {
        write_timeout: Duration::from_millis(300),
        ..ConnectionOptions::default()
    };
    let mut server = Server::start(opts.clone()).await;
    // The raw peer never reads after its handshake.
    let (stream, _) = raw_peer(server.addr, handshake(CLIENT_ID)).await;
    let mut session = Session::new(opts);
    let handle = session.start(server.accept().await, 8);
    let block = Bytes::from(vec![0x5a; 16 * 1024]);
    let sender = tokio::spawn(async move {
        // Until the socket buffers are full and the writer gives up.
        while handle
            .send(Message::Piece {
                index: 0,
                begin: 0,
                data: block.clone(),
            })
            .await
            .is_ok()
        {}
        handle
    });
    let error = session.closed(8).await;
    assert!(
        matches!(error, Some(PeerError::WriteTimeout(d)) if d == Duration::from_millis(300)),
        "{error:?}"
    );
    let handle = timeout(WAIT, sender).await.unwrap().unwrap();
    assert!(handle.is_closed());
    drop((handle, stream));
    session.assert_stopped().await;
    server.stop().await;
}

#[tokio::test]
async fn unknown_info_hash_is_closed_without_our_handshake() {
    let server = Server::start(ConnectionOptions::default()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let other = Handshake {
        info_hash: InfoHash([0x99; 20]),
        ..handshake(CLIENT_ID)
    };
    stream.write_all(&handshake_bytes(&other)).await.unwrap();
    let got = read_until_closed(&mut stream, WAIT).await;
    assert!(
        got.is_empty(),
        "we sent {} bytes to an unknown torrent's peer",
        got.len()
    );

    // Our dialer sees the same refusal as the end of the stream.
    let refused = connect(server.addr, other, &ConnectionOptions::default()).await;
    assert!(
        matches!(refused, Err(PeerError::ClosedByPeer | PeerError::Io(_))),
        "{refused:?}"
    );

    let mut incoming = server.stop().await;
    assert!(incoming.try_recv().is_err(), "nothing reached the session");
}

#[tokio::test]
async fn a_torrent_is_refused_once_its_session_unregisters() {
    let mut server = Server::start(ConnectionOptions::default()).await;
    drop(server.registration.take());
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(&handshake_bytes(&handshake(CLIENT_ID)))
        .await
        .unwrap();
    assert!(read_until_closed(&mut stream, WAIT).await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn mse_like_first_byte_is_refused_at_once_incoming() {
    // A long handshake timeout: only the fast failure can explain a prompt close.
    let opts = ConnectionOptions {
        handshake_timeout: Duration::from_secs(30),
        ..ConnectionOptions::default()
    };
    let server = Server::start(opts).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    // An MSE opener: a 96-byte Diffie-Hellman public key, random-looking.
    let blob: Vec<u8> = (0..96u32).map(|i| (i * 97 + 0x8f) as u8).collect();
    assert_ne!(blob[0], 19);
    stream.write_all(&blob).await.unwrap();
    let got = read_until_closed(&mut stream, WAIT).await;
    assert!(got.is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let mut incoming = server.stop().await;
    assert!(incoming.try_recv().is_err());
}

#[tokio::test]
async fn mse_like_answer_fails_our_dial_at_once() {
    let fake = TcpListener::bind(loopback()).await.unwrap();
    let addr = fake.local_addr().unwrap();
    let peer = tokio::spawn(async move {
        let (mut stream, _) = fake.accept().await.unwrap();
        let blob: Vec<u8> = (0..96u32).map(|i| (i * 31 + 0xc3) as u8).collect();
        stream.write_all(&blob).await.unwrap();
        // Hold the socket open: only our decoder can end the exchange early.
        let _ = stream.read_to_end(&mut Vec::new()).await;
    });
    let opts = ConnectionOptions {
        handshake_timeout: Duration::from_secs(30),
        ..ConnectionOptions::default()
    };
    let started = Instant::now();
    let result = connect(addr, handshake(CLIENT_ID), &opts).await;
    assert!(
        matches!(
            result,
            Err(PeerError::Wire(PeerWireError::NotBitTorrent { offset: 0 }))
        ),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    timeout(WAIT, peer).await.unwrap().unwrap();
}

#[tokio::test]
async fn answer_for_another_torrent_fails_our_dial() {
    let fake = TcpListener::bind(loopback()).await.unwrap();
    let addr = fake.local_addr().unwrap();
    let peer = tokio::spawn(async move {
        let (mut stream, _) = fake.accept().await.unwrap();
        let other = Handshake {
            info_hash: InfoHash([0x22; 20]),
            ..handshake(SERVER_ID)
        };
        stream.write_all(&handshake_bytes(&other)).await.unwrap();
        let _ = stream.read_to_end(&mut Vec::new()).await;
    });
    let result = connect(addr, handshake(CLIENT_ID), &ConnectionOptions::default()).await;
    assert!(
        matches!(
            result,
            Err(PeerError::InfoHashMismatch { expected, got })
                if expected == INFO_HASH && got == InfoHash([0x22; 20])
        ),
        "{result:?}"
    );
    timeout(WAIT, peer).await.unwrap().unwrap();
}

#[tokio::test]
async fn connecting_to_ourselves_is_rejected() {
    let server = Server::start(ConnectionOptions::default()).await;
    // The tracker handed us our own address: same peer id on both ends.
    let result = connect(
        server.addr,
        handshake(SERVER_ID),
        &ConnectionOptions::default(),
    )
    .await;
    assert!(
        matches!(result, Err(PeerError::SelfConnection)),
        "{result:?}"
    );
    assert!(PeerError::SelfConnection.is_protocol_violation());
    let mut incoming = server.stop().await;
    assert!(
        incoming.try_recv().is_err(),
        "the listener refused the self-connection too"
    );
}

#[tokio::test]
async fn oversized_length_prefix_closes_with_the_limit_error() {
    let opts = ConnectionOptions::default();
    let mut server = Server::start(opts.clone()).await;
    let (mut stream, _) = raw_peer(server.addr, handshake(CLIENT_ID)).await;
    let mut session = Session::new(opts);
    let _handle = session.start(server.accept().await, 3);

    let limit = WireLimits::DEFAULT.max_message_len;
    stream.write_all(&(limit + 1).to_be_bytes()).await.unwrap();
    let error = session.closed(3).await;
    assert!(
        matches!(
            error,
            Some(PeerError::Wire(PeerWireError::MessageTooLong { len, limit: l }))
                if len == limit + 1 && l == limit
        ),
        "{error:?}"
    );
    assert!(error.is_some_and(|e| e.is_protocol_violation()));
    read_until_closed(&mut stream, WAIT).await;
    session.assert_stopped().await;
    server.stop().await;
}

#[tokio::test]
async fn a_message_at_the_limit_is_delivered() {
    // The limit is inclusive and a maximal message is received whole.
    let opts = ConnectionOptions {
        wire_limits: WireLimits {
            max_message_len: 9 + 100_000,
        },
        ..ConnectionOptions::default()
    };
    let (server, mut stream, mut session, handle) = started_with_raw_peer(opts, 3).await;
    let piece = Message::Piece {
        index: 1,
        begin: 2,
        data: Bytes::from(vec![7u8; 100_000]),
    };
    stream.write_all(&piece.to_bytes()).await.unwrap();
    assert!(matches!(session.next().await, (PeerKey(3), PeerEvent::Message(m)) if m == piece));
    assert_eq!(handle.stats().downloaded(), 100_000);
    drop(handle);
    session.assert_stopped().await;
    server.stop().await;
}

#[tokio::test(start_paused = true)]
async fn silent_incoming_peer_is_closed_after_the_handshake_timeout() {
    let opts = ConnectionOptions {
        handshake_timeout: Duration::from_secs(10),
        ..ConnectionOptions::default()
    };
    // No timer runs until the listener has accepted (see the module docs on paused time).
    let server = Server::start(opts).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    let got = read_until_closed(&mut stream, PAUSED_WAIT).await;
    assert!(got.is_empty());
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(10), "closed after {waited:?}");
    assert!(waited < PAUSED_WAIT);
    let mut incoming = server.stop().await;
    assert!(incoming.try_recv().is_err());
}

#[tokio::test]
async fn silent_peer_fails_our_dial_after_the_handshake_timeout() {
    let fake = TcpListener::bind(loopback()).await.unwrap();
    let addr = fake.local_addr().unwrap();
    let peer = tokio::spawn(async move {
        let (mut stream, _) = fake.accept().await.unwrap();
        let _ = stream.read_to_end(&mut Vec::new()).await;
    });
    let opts = ConnectionOptions {
        handshake_timeout: Duration::from_millis(300),
        ..ConnectionOptions::default()
    };
    let started = Instant::now();
    let result = connect(addr, handshake(CLIENT_ID), &opts).await;
    assert!(
        matches!(result, Err(PeerError::HandshakeTimeout(_))),
        "{result:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    timeout(WAIT, peer).await.unwrap().unwrap();
}

#[tokio::test]
async fn keep_alives_are_sent_on_an_idle_connection() {
    let opts = keep_alive_options();
    let (server, mut stream, mut session, handle) = started_with_raw_peer(opts, 4).await;
    session.wait = PAUSED_WAIT;

    tokio::time::pause();
    let started = Instant::now();
    let mut first = [0xffu8; 4];
    timeout(PAUSED_WAIT, stream.read_exact(&mut first))
        .await
        .expect("a keep-alive in time")
        .unwrap();
    assert_eq!(first, [0, 0, 0, 0], "a keep-alive is a zero length prefix");
    assert!(
        started.elapsed() >= Duration::from_secs(90),
        "{:?}",
        started.elapsed()
    );

    drop(handle);
    assert!(session.closed(4).await.is_none());
    // Whatever else was sent before the close is keep-alives too.
    let rest = read_until_closed(&mut stream, PAUSED_WAIT).await;
    assert!(
        rest.len() % 4 == 0 && rest.iter().all(|&b| b == 0),
        "{rest:?}"
    );
    session.assert_stopped().await;
    server.stop().await;
}

#[tokio::test]
async fn direct_writes_count_as_traffic_for_keep_alives() {
    let opts = keep_alive_options();
    let (server, mut stream, mut session, handle) = started_with_raw_peer(opts, 13).await;
    session.wait = PAUSED_WAIT;

    tokio::time::pause();
    // A direct write every 60 s for 5 minutes: never 90 s of quiet, so no keep-alive
    // between them; then quiet, and a keep-alive 90 s after the last one.
    for piece in 0..5 {
        assert!(handle.send_now(&Message::Have { piece }));
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    let mut expected = bytes::BytesMut::new();
    for piece in 0..5 {
        Message::Have { piece }.encode(&mut expected);
    }
    let mut got = vec![0u8; expected.len()];
    timeout(PAUSED_WAIT, stream.read_exact(&mut got))
        .await
        .expect("the haves in time")
        .unwrap();
    assert_eq!(got, expected[..], "no keep-alive among the direct writes");
    let mut keep_alive = [0xffu8; 4];
    timeout(PAUSED_WAIT, stream.read_exact(&mut keep_alive))
        .await
        .expect("a keep-alive once quiet")
        .unwrap();
    assert_eq!(keep_alive, [0, 0, 0, 0]);

    drop(handle);
    assert!(session.closed(13).await.is_none());
    session.assert_stopped().await;
    server.stop().await;
}

#[tokio::test]
async fn a_silent_established_peer_is_closed_after_the_idle_timeout() {
    let opts = ConnectionOptions {
        keep_alive_interval: Duration::from_secs(90),
        idle_timeout: Duration::from_secs(120),
        ..ConnectionOptions::default()
    };
    let mut server = Server::start(opts.clone()).await;
    let (mut stream, _) = raw_peer(server.addr, handshake(CLIENT_ID)).await;
    let mut session = Session::new(opts);
    session.wait = PAUSED_WAIT;
    let _handle = session.start(server.accept().await, 6);

    tokio::time::pause();
    let started = Instant::now();
    let error = session.closed(6).await;
    assert!(matches!(error, Some(PeerError::IdleTimeout(d)) if d == Duration::from_secs(120)));
    assert!(started.elapsed() >= Duration::from_secs(120));
    read_until_closed(&mut stream, PAUSED_WAIT).await;
    session.assert_stopped().await;
    server.stop().await;
}

#[tokio::test]
async fn upload_rate_limit_paces_block_data() {
    // 64 KiB/s, so the burst is 64 KiB: 8 blocks of 16 KiB need at least one second.
    let limiter = UploadLimiter::new(NonZeroU32::new(64).unwrap());
    let limited = ConnectionOptions {
        upload_limiter: Some(limiter),
        ..ConnectionOptions::default()
    };
    let opts = ConnectionOptions::default();
    let mut server = Server::start(opts.clone()).await;
    let (dialer, accepted) = connected_pair(&mut server, &opts).await;
    let uploader = Session::new(limited);
    let mut downloader = Session::new(opts);
    let seeder = uploader.start(accepted, 1);
    let leecher = downloader.start(dialer, 2);

    let started = Instant::now();
    for i in 0..8 {
        seeder
            .send(Message::Piece {
                index: i,
                begin: 0,
                data: Bytes::from(vec![i as u8; 16 * 1024]),
            })
            .await
            .unwrap();
    }
    // A control message queued behind the blocks still goes out (in order).
    seeder.send(Message::Have { piece: 8 }).await.unwrap();
    for i in 0..8 {
        match downloader.next().await {
            (PeerKey(2), PeerEvent::Message(Message::Piece { index, data, .. })) => {
                assert_eq!((index, data.len()), (i, 16 * 1024));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(950),
        "8 blocks took {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "8 blocks took {elapsed:?}"
    );
    assert!(matches!(
        downloader.next().await,
        (PeerKey(2), PeerEvent::Message(Message::Have { piece: 8 }))
    ));
    assert_eq!(seeder.stats().uploaded(), 8 * 16 * 1024);
    assert_eq!(leecher.stats().downloaded(), 8 * 16 * 1024);

    drop((seeder, leecher));
    uploader.assert_stopped().await;
    downloader.assert_stopped().await;
    server.stop().await;
}

#[tokio::test]
async fn connections_over_the_limit_are_closed() {
    let opts = ConnectionOptions {
        max_connections: 2,
        ..ConnectionOptions::default()
    };
    let mut server = Server::start(opts).await;
    let (_s1, _) = raw_peer(server.addr, handshake(10)).await;
    let (_s2, _) = raw_peer(server.addr, handshake(11)).await;
    let first = server.accept().await;
    let second = server.accept().await;
    assert_eq!(server.limit.available(), 0);

    // The third is closed without a handshake.
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    let _ = third.write_all(&handshake_bytes(&handshake(12))).await;
    assert!(read_until_closed(&mut third, WAIT).await.is_empty());

    // A connection that ends gives its place back.
    drop(first);
    assert_eq!(server.limit.available(), 1);
    let (_s4, theirs) = raw_peer(server.addr, handshake(13)).await;
    assert_eq!(theirs.peer_id, PeerId([SERVER_ID; 20]));
    let fourth = server.accept().await;
    assert_eq!(fourth.remote_handshake().peer_id, PeerId([13; 20]));
    drop((second, fourth));
    server.stop().await;
}

#[tokio::test]
async fn handshakes_over_the_half_open_limit_are_closed() {
    let opts = ConnectionOptions {
        max_half_open: 1,
        ..ConnectionOptions::default()
    };
    let mut server = Server::start(opts).await;
    // A peer that sits in its handshake holds the only slot...
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    silent.write_all(&PROTOCOL_START).await.unwrap();
    // ...so a second one is closed at once, before any handshake.
    let mut second = TcpStream::connect(server.addr).await.unwrap();
    let _ = second
        .write_all(&handshake_bytes(&handshake(CLIENT_ID)))
        .await;
    assert!(read_until_closed(&mut second, WAIT).await.is_empty());

    // Once the slot is free again, peers get in.
    drop(silent);
    let deadline = Instant::now() + WAIT;
    loop {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(&handshake_bytes(&handshake(CLIENT_ID)))
            .await
            .unwrap();
        let mut answer = [0u8; Handshake::LEN];
        if stream.read_exact(&mut answer).await.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the half-open slot was never released"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _accepted = server.accept().await;
    server.stop().await;
}

/// The first bytes of a plaintext handshake.
const PROTOCOL_START: [u8; 5] = *b"\x13BitT";

#[tokio::test]
async fn dropping_the_handle_closes_the_connection_and_ends_both_tasks() {
    let opts = ConnectionOptions::default();
    let mut server = Server::start(opts.clone()).await;
    let (dialer, accepted) = connected_pair(&mut server, &opts).await;
    let mut ours = Session::new(opts.clone());
    let mut theirs = Session::new(opts);
    let handle = ours.start(dialer, 1);
    let other = theirs.start(accepted, 2);
    handle.send(Message::Interested).await.unwrap();
    assert!(matches!(
        theirs.next().await,
        (PeerKey(2), PeerEvent::Message(Message::Interested))
    ));

    drop(handle);
    assert!(ours.closed(1).await.is_none(), "closed by us: no error");
    ours.assert_stopped().await;
    // The other end sees the connection go.
    assert!(matches!(
        theirs.closed(2).await,
        Some(PeerError::ClosedByPeer)
    ));
    assert!(other.is_closed());
    drop(other);
    theirs.assert_stopped().await;
    server.stop().await;
}

#[tokio::test]
async fn session_shutdown_stops_every_connection() {
    let opts = ConnectionOptions::default();
    let mut server = Server::start(opts.clone()).await;
    let session = Session::new(opts.clone());
    let mut handles = Vec::new();
    for key in 0..3 {
        let (dialer, accepted) = connected_pair(&mut server, &opts).await;
        handles.push(session.start(dialer, key * 2));
        handles.push(session.start(accepted, key * 2 + 1));
    }
    session.shutdown.cancel();
    // The handles are still alive: cancellation alone stops the tasks.
    assert!(handles.iter().all(PeerHandle::is_closed));
    let tasks = session.tasks.clone();
    tasks.close();
    timeout(WAIT, tasks.wait()).await.expect("all tasks ended");
    drop(handles);
    session.assert_stopped().await;
    server.stop().await;
}

#[tokio::test]
async fn try_send_reports_a_full_queue() {
    let opts = ConnectionOptions {
        send_queue_len: 1,
        // Pace the writer to a crawl so the queue stays full.
        upload_limiter: Some(UploadLimiter::new(NonZeroU32::new(1).unwrap())),
        ..ConnectionOptions::default()
    };
    let mut server = Server::start(opts.clone()).await;
    let (dialer, accepted) = connected_pair(&mut server, &opts).await;
    let session = Session::new(opts);
    let handle = session.start(dialer, 1);
    let block = || Message::Piece {
        index: 0,
        begin: 0,
        data: Bytes::from(vec![0; 16 * 1024]),
    };
    // The first block uses the burst; the writer then waits on the second while the
    // third sits in the queue.
    let mut full = false;
    for _ in 0..6 {
        match handle.try_send(block()) {
            Ok(()) => tokio::task::yield_now().await,
            Err(mpsc::error::TrySendError::Full(_)) => {
                full = true;
                break;
            }
            Err(other) => panic!("{other:?}"),
        }
    }
    assert!(full, "a bounded queue eventually refuses");
    drop((handle, accepted));
    session.assert_stopped().await;
    server.stop().await;
}
