//! One established peer connection, run as two tokio tasks with channels toward its session.
//!
//! Why it is shaped this way:
//!
//! - **A reader task and a writer task.** Reading and writing never wait on each other: a
//!   peer that stops reading cannot stop us from taking its requests off the wire, and a slow
//!   session (which applies backpressure to the reader through its bounded event channel)
//!   cannot stop keep-alives from going out.
//! - **All of a session's peers share one event channel.** The session passes in one
//!   `mpsc::Sender<(PeerKey, PeerEvent)>`; each event carries the [`PeerKey`] the session
//!   chose, so its event loop has one receiver for every peer and the scheduler never sees
//!   addresses.
//! - **The writer batches.** It takes every message queued so far (up to
//!   [`MAX_BATCH_BYTES`]), encodes them into one reused buffer and writes the batch with
//!   vectored writes. With TCP_NODELAY on, a lone message leaves at once (no Nagle delay),
//!   and a burst of requests or haves still leaves as a few full segments rather than one
//!   tiny packet each. Blocks of [`VECTORED_BLOCK_MIN`] bytes or more are not copied into
//!   the buffer: only their header is, and the block goes to the socket from the buffer it
//!   was read into (on a fast upload that copy cost as much as the socket write).
//! - **Zero-copy reads.** The reader decodes with `Message::decode_from` on a `BytesMut`;
//!   block data reaches the session as a slice of the receive buffer. It reserves room for a
//!   whole frame as soon as the length prefix is in (after the prefix is checked against
//!   [`swarmcdn_proto::peer::WireLimits`]), so a 16 KiB block is received into one
//!   allocation instead of growing the buffer read by read. A block shares its receive
//!   chunk ([`READ_CHUNK`]) with its neighbours, so a session should copy blocks into its
//!   piece buffers (or drop them) promptly rather than hold on to them.
//! - **A message may skip the queue.** When nothing is queued for the writer and the
//!   socket takes the whole message at once, [`DirectWriter::send_now`] writes it straight
//!   from the caller's task (a non-blocking write under a small lock the writer takes to
//!   count what it holds). A small release is fetched in two or three request/response
//!   rounds, and each message that went through the writer task waited for that task's
//!   turn (just after a connection starts, for the task's first poll): that hand-off was a
//!   fifth of the peer-wire time of a 20 KiB fetch on loopback. A block skips the queue
//!   only when the upload limiter has budget for it at once; the writer paces the rest.
//! - **One `Closed` event, last.** The reader task is the connection's main task: when it
//!   stops (error, end of stream, idle timeout, cancellation) it stops the writer, waits for
//!   it, releases the connection permit and only then reports `PeerEvent::Closed` with the
//!   first error of either side. After that event no task of the connection runs.
//! - **Everything stops on cancellation.** Each connection has a child token of the
//!   session's shutdown token; `PeerHandle::close`, dropping the handle and the session's
//!   shutdown all cancel it.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use swarmcdn_proto::peer::{Handshake, Message, WireLimits};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::{Instant, sleep_until, timeout};
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::{ConnectionOptions, PeerError, UploadLimiter};

/// The writer stops adding queued messages to a batch once this many bytes are encoded.
/// Bounds the writer's buffer (plus one message) and the size of a single `write_all`.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;
/// The reader allocates receive room in steps of at least this many bytes (four 16 KiB
/// blocks with headers), so a stream of blocks is read in few system calls.
pub const READ_CHUNK: usize = 64 * 1024;
/// While reads keep filling all the room they were given (a fast stream of blocks), the
/// step doubles up to this many bytes, so a fast peer is read in a quarter of the calls
/// (and wake-ups); it falls back to [`READ_CHUNK`] when the stream slows down.
const MAX_READ_CHUNK: usize = 256 * 1024;
/// Blocks at least this long are written from their own buffer rather than copied into
/// the writer's batch.
const VECTORED_BLOCK_MIN: usize = 4 * 1024;
/// The most buffers handed to one vectored write.
const MAX_WRITE_SLICES: usize = 64;
/// The reader makes sure at least this much room is free before each read.
pub const MIN_READ_ROOM: usize = 4 * 1024;

/// What the writer task is handed: a message, or the unwritten rest of one
/// [`DirectWriter::send_now`] could only write in part.
#[derive(Debug)]
enum Outgoing {
    Message(Message),
    /// A block whose upload budget is already taken.
    Charged(Message),
    /// The unwritten rest of a message, and the block bytes it finishes sending (counted
    /// as uploaded once written).
    Raw {
        parts: Vec<Bytes>,
        upload: u64,
    },
}

/// What the writer task and [`DirectWriter::send_now`] share to keep the byte stream in
/// order.
#[derive(Debug)]
struct WriteGate {
    state: Mutex<GateState>,
}

#[derive(Debug)]
struct GateState {
    /// Items queued for the writer task or in its batch, not yet written. Direct writes
    /// only happen at 0 (and under the lock, so the writer cannot start one meanwhile).
    pending: usize,
    /// The socket's write half, until the writer ends (then it is dropped, which shuts the
    /// write side down).
    socket: Option<Arc<OwnedWriteHalf>>,
    /// When a direct write last sent something (keep-alives are for quiet connections).
    last_direct: Option<Instant>,
}

/// Takes one item back off a gate's count when dropped, unless disarmed (`None`).
struct Uncount<'a>(Option<&'a WriteGate>);

impl Drop for Uncount<'_> {
    fn drop(&mut self) {
        if let Some(gate) = self.0 {
            gate.sub(1);
        }
    }
}

impl WriteGate {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn add(&self, items: usize) {
        self.lock().pending += items;
    }

    fn sub(&self, items: usize) {
        let mut state = self.lock();
        state.pending = state.pending.saturating_sub(items);
    }
}

/// The id byte of a PIECE message.
const PIECE_ID: u8 = 7;

/// The session's number for one of its connections. Events carry it; the session maps it to
/// its own state for the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerKey(pub u64);

/// Who opened the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// We dialled the peer.
    Outgoing,
    /// The peer dialled our listener.
    Incoming,
}

/// What a connection reports to its session.
#[derive(Debug)]
pub enum PeerEvent {
    /// A message from the peer, in the order received. Keep-alives are not reported (they
    /// only reset the idle timeout).
    Message(Message),
    /// The connection is closed and both of its tasks have ended. `None` when we closed it
    /// (handle closed or dropped, session shutdown); otherwise why it ended. Always the last
    /// event of a connection, and sent once.
    Closed(Option<PeerError>),
}

/// Byte counters of one connection, readable by the session at any time.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    uploaded: AtomicU64,
    downloaded: AtomicU64,
    /// The writer has ended: `uploaded` is final.
    writer_done: std::sync::atomic::AtomicBool,
}

impl ConnectionStats {
    /// Block payload bytes sent to the peer (counted once written to the socket).
    pub fn uploaded(&self) -> u64 {
        self.uploaded.load(Ordering::Relaxed)
    }

    /// Block payload bytes received from the peer.
    pub fn downloaded(&self) -> u64 {
        self.downloaded.load(Ordering::Relaxed)
    }

    /// Whether the connection's writer has ended, so that [`ConnectionStats::uploaded`]
    /// will not change any more (a batch being written when the connection was closed is
    /// counted once its write returns, which may be after the session let go of it).
    pub fn upload_final(&self) -> bool {
        self.writer_done.load(Ordering::Acquire)
    }
}

/// A count of peer connections shared by the listener and outgoing dials. Clones share the
/// count.
#[derive(Debug, Clone)]
pub struct ConnectionLimit {
    semaphore: Arc<Semaphore>,
    max: usize,
}

/// One connection's place in a [`ConnectionLimit`], given back when dropped. A started
/// connection holds its permit until both of its tasks have ended.
#[derive(Debug)]
pub struct ConnectionPermit {
    _permit: OwnedSemaphorePermit,
}

impl ConnectionLimit {
    /// A limit of `max` connections open at once.
    pub fn new(max: usize) -> Self {
        ConnectionLimit {
            semaphore: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// A permit if fewer than the maximum are taken; never waits.
    pub fn try_acquire(&self) -> Option<ConnectionPermit> {
        let permit = Arc::clone(&self.semaphore).try_acquire_owned().ok()?;
        Some(ConnectionPermit { _permit: permit })
    }

    /// How many more connections may be opened now.
    pub fn available(&self) -> usize {
        self.semaphore.available_permits()
    }

    /// The maximum.
    pub fn max(&self) -> usize {
        self.max
    }
}

/// A connection whose handshake is done, not yet running. The session starts it with
/// [`PeerConnection::start`] once it has decided to keep the peer.
#[derive(Debug)]
pub struct PeerConnection {
    stream: TcpStream,
    peer_addr: SocketAddr,
    direction: Direction,
    ours: Handshake,
    theirs: Handshake,
    /// Bytes the peer sent right after its handshake, not yet decoded.
    received: BytesMut,
    permit: Option<ConnectionPermit>,
}

impl PeerConnection {
    pub(super) fn new(
        stream: TcpStream,
        peer_addr: SocketAddr,
        direction: Direction,
        ours: Handshake,
        theirs: Handshake,
        received: BytesMut,
    ) -> Self {
        PeerConnection {
            stream,
            peer_addr,
            direction,
            ours,
            theirs,
            received,
            permit: None,
        }
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// Who opened the connection.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// The handshake we sent.
    pub fn local_handshake(&self) -> &Handshake {
        &self.ours
    }

    /// The handshake the peer sent (its peer id and extension bits).
    pub fn remote_handshake(&self) -> &Handshake {
        &self.theirs
    }

    /// Whether TCP_NODELAY is set on the socket (it always is; exposed for tests).
    pub fn nodelay(&self) -> std::io::Result<bool> {
        self.stream.nodelay()
    }

    /// Makes the connection hold `permit` until it is closed (for outgoing connections that
    /// count against the listener's [`ConnectionLimit`]). Replaces any permit it held.
    pub fn set_permit(&mut self, permit: ConnectionPermit) {
        self.permit = Some(permit);
    }

    /// Whether the connection holds a [`ConnectionPermit`].
    pub fn has_permit(&self) -> bool {
        self.permit.is_some()
    }

    /// Takes the messages that arrived with the handshake (a dialled peer's bitfield,
    /// extended handshake and often an unchoke come in the same segment), so the session
    /// can act on them at once instead of waiting for the reader task's first turn. Stops at
    /// the first frame that is incomplete, fails to decode or carries a block (blocks are
    /// counted by the reader): that frame and everything after it stay for the reader, which
    /// reports them (or the error) as usual. Keep-alives are dropped.
    pub fn take_received_messages(&mut self, limits: &WireLimits) -> Vec<Message> {
        let mut messages = Vec::new();
        while let Ok(Some(total)) = Message::frame_len(&self.received, limits) {
            if self.received.len() < total || (total > 4 && self.received[4] == PIECE_ID) {
                break;
            }
            // Decoded from a copy, so a frame that fails stays for the reader to report.
            let mut frame = BytesMut::from(&self.received[..total]);
            match Message::decode_from(&mut frame, limits) {
                Ok(Some(message)) => {
                    self.received.advance(total);
                    if message != Message::KeepAlive {
                        messages.push(message);
                    }
                }
                _ => break,
            }
        }
        messages
    }

    /// How many bytes the peer sent after its handshake that were read with it.
    #[cfg(test)]
    pub(super) fn received_len(&self) -> usize {
        self.received.len()
    }

    /// Starts the reader and writer tasks on `tasks` and returns the session's handle.
    ///
    /// Events go to `events`, tagged with `key`. The tasks stop when `shutdown` is cancelled,
    /// when the handle is closed or dropped, or when the connection fails; then
    /// `PeerEvent::Closed` is sent (unless `shutdown` was cancelled, when nobody listens).
    pub fn start(
        self,
        key: PeerKey,
        events: mpsc::Sender<(PeerKey, PeerEvent)>,
        opts: &ConnectionOptions,
        tasks: &TaskTracker,
        shutdown: &CancellationToken,
    ) -> PeerHandle {
        let PeerConnection {
            stream,
            peer_addr,
            received,
            permit,
            ..
        } = self;
        let cancel = shutdown.child_token();
        let stats = Arc::new(ConnectionStats::default());
        let (outgoing, queue) = mpsc::channel(opts.send_queue_len.max(1));
        let (read_half, write_half) = stream.into_split();
        let write_half = Arc::new(write_half);
        let gate = Arc::new(WriteGate {
            state: Mutex::new(GateState {
                pending: 0,
                socket: Some(Arc::clone(&write_half)),
                last_direct: None,
            }),
        });

        let writer = Writer {
            socket: write_half,
            gate: Arc::clone(&gate),
            batch_items: 0,
            buf: BytesMut::with_capacity(READ_CHUNK),
            parts: Vec::new(),
            parts_len: 0,
            unflushed_upload: 0,
            stats: Arc::clone(&stats),
            limiter: opts.upload_limiter.clone(),
            write_timeout: opts.write_timeout,
            cancel: cancel.clone(),
        };
        let writer_span = tracing::debug_span!("peer_writer", peer = %peer_addr, key = key.0);
        let write_task = tasks.spawn(
            writer
                .run(queue, opts.keep_alive_interval)
                .instrument(writer_span),
        );

        let reader = Reader {
            socket: read_half,
            buf: received,
            chunk: READ_CHUNK,
            key,
            events: events.clone(),
            stats: Arc::clone(&stats),
            limits: opts.wire_limits,
            idle_timeout: opts.idle_timeout,
            cancel: cancel.clone(),
        };
        let reader_span = tracing::debug_span!("peer_reader", peer = %peer_addr, key = key.0);
        let shutdown = shutdown.clone();
        let reader_cancel = cancel.clone();
        tasks.spawn(
            async move {
                let read_result = reader.run().await;
                reader_cancel.cancel();
                let write_result = write_task.await.unwrap_or(Ok(()));
                drop(permit);
                let error = read_result.err().or(write_result.err());
                tracing::debug!(error = ?error, "peer connection closed");
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => {}
                    _ = events.send((key, PeerEvent::Closed(error))) => {}
                }
            }
            .instrument(reader_span),
        );

        PeerHandle {
            key,
            peer_addr,
            control: DirectWriter {
                outgoing,
                gate,
                stats: Arc::clone(&stats),
                limiter: opts.upload_limiter.clone(),
                cancel: cancel.clone(),
            },
            stats,
            cancel: cancel.clone(),
            _close_on_drop: cancel.drop_guard(),
        }
    }
}

/// The session's side of a running connection. Dropping it closes the connection.
#[derive(Debug)]
pub struct PeerHandle {
    key: PeerKey,
    peer_addr: SocketAddr,
    control: DirectWriter,
    stats: Arc<ConnectionStats>,
    cancel: CancellationToken,
    _close_on_drop: DropGuard,
}

/// The connection is closed; the message was not sent.
#[derive(Debug, thiserror::Error)]
#[error("the peer connection is closed")]
pub struct ConnectionClosed(pub Message);

impl PeerHandle {
    /// The session's key for this connection.
    pub fn key(&self) -> PeerKey {
        self.key
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// Byte counters of the connection.
    pub fn stats(&self) -> &Arc<ConnectionStats> {
        &self.stats
    }

    /// Queues `message`, waiting while the queue is full. Messages go out in the order
    /// queued (and after any [`DirectWriter::send_now`] that returned `true` before).
    pub async fn send(&self, message: Message) -> Result<(), ConnectionClosed> {
        let control = &self.control;
        control.gate.add(1);
        // Uncounted again unless queued (an error, or this future dropped while waiting).
        let mut uncount = Uncount(Some(&control.gate));
        let sent = control.outgoing.send(Outgoing::Message(message)).await;
        if sent.is_ok() {
            uncount.0 = None;
        }
        sent.map_err(|e| ConnectionClosed(e.0.into_message()))
    }

    /// Queues `message` if there is room now. A session's event loop should prefer this (and
    /// treat a full queue as a slow peer) so that one peer cannot stall the loop.
    pub fn try_send(&self, message: Message) -> Result<(), TrySendError<Message>> {
        self.control.queue(message)
    }

    /// See [`DirectWriter::send_now`].
    pub fn send_now(&self, message: &Message) -> bool {
        self.control.send_now(message)
    }

    /// The connection's control-message writer, for a task other than the one holding the
    /// handle.
    pub fn direct_writer(&self) -> DirectWriter {
        self.control.clone()
    }

    /// Closes the connection now. Messages still queued are dropped; the session then
    /// receives `PeerEvent::Closed(None)`.
    pub fn close(&self) {
        self.cancel.cancel();
    }

    /// Whether the connection has been closed (by either side).
    pub fn is_closed(&self) -> bool {
        self.cancel.is_cancelled() || self.control.outgoing.is_closed()
    }
}

/// Writes control messages of one connection from any task: at once when nothing is
/// queued ahead (see the module docs), else through the connection's queue. Clones write to
/// the same connection.
#[derive(Debug, Clone)]
pub struct DirectWriter {
    outgoing: mpsc::Sender<Outgoing>,
    gate: Arc<WriteGate>,
    stats: Arc<ConnectionStats>,
    limiter: Option<UploadLimiter>,
    cancel: CancellationToken,
}

impl DirectWriter {
    /// Writes `message` to the socket now, from this task, if nothing queued for the
    /// connection's writer is still unwritten and the socket takes it without waiting.
    /// `true` when it is sent (or handed to the writer first in line: written in part, or
    /// a block whose upload budget was taken); `false` when nothing was done, and the
    /// caller queues it as usual. A block goes this way only if the upload limiter has
    /// budget for it now (the writer paces the others).
    pub fn send_now(&self, message: &Message) -> bool {
        let mut head = BytesMut::new();
        if let Message::Piece { data, .. } = message {
            message.encode_header(&mut head);
            self.write_now(vec![head.freeze(), data.clone()], Some(message))
        } else {
            message.encode(&mut head);
            self.write_now(vec![head.freeze()], None)
        }
    }

    /// [`DirectWriter::send_now`] for several control messages at once, in one write:
    /// all are sent (`true`), or none is (`false`, and the caller queues them in order).
    /// Blocks are refused.
    pub fn send_all_now(&self, messages: &[Message]) -> bool {
        if messages.iter().any(|m| matches!(m, Message::Piece { .. })) {
            return false;
        }
        let mut buf = BytesMut::new();
        for message in messages {
            message.encode(&mut buf);
        }
        self.write_now(vec![buf.freeze()], None)
    }

    /// Writes `parts` (encoded messages; `block` is the block they carry, if any) as
    /// [`DirectWriter::send_now`] says.
    fn write_now(&self, parts: Vec<Bytes>, block: Option<&Message>) -> bool {
        let mut state = self.gate.lock();
        if state.pending > 0 {
            return false;
        }
        let Some(socket) = state.socket.as_ref() else {
            return false;
        };
        let upload = match block {
            Some(Message::Piece { data, .. }) => {
                if let Some(limiter) = &self.limiter
                    && !limiter.try_acquire(data.len())
                {
                    return false;
                }
                data.len() as u64
            }
            _ => 0,
        };
        let total: usize = parts.iter().map(Bytes::len).sum();
        let slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
        let written = match socket.try_write_vectored(&slices) {
            Ok(written) => written,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
            Err(error) => {
                tracing::debug!(%error, "direct write failed; closing the connection");
                self.cancel.cancel();
                return false;
            }
        };
        if written > 0 {
            state.last_direct = Some(Instant::now());
        }
        if written == total {
            self.stats.uploaded.fetch_add(upload, Ordering::Relaxed);
            return true;
        }
        // Nothing is queued (`pending` is 0), so there is room, and what is handed over
        // goes out before anything queued after it: the rest of what was written in part,
        // or a block whose budget is taken (the writer must not take it again).
        let item = match (written, block) {
            (0, None) => return false,
            (0, Some(block)) => Outgoing::Charged(block.clone()),
            _ => {
                let mut skip = written;
                let rest = parts
                    .into_iter()
                    .filter_map(|mut part| {
                        let cut = skip.min(part.len());
                        skip -= cut;
                        part.advance(cut);
                        (!part.is_empty()).then_some(part)
                    })
                    .collect();
                Outgoing::Raw {
                    parts: rest,
                    upload,
                }
            }
        };
        state.pending += 1;
        if self.outgoing.try_send(item).is_err() {
            state.pending -= 1;
            self.cancel.cancel();
        }
        true
    }

    /// Queues `message` for the writer if there is room now.
    pub fn queue(&self, message: Message) -> Result<(), TrySendError<Message>> {
        self.gate.add(1);
        self.outgoing
            .try_send(Outgoing::Message(message))
            .map_err(|e| {
                self.gate.sub(1);
                match e {
                    TrySendError::Full(o) => TrySendError::Full(o.into_message()),
                    TrySendError::Closed(o) => TrySendError::Closed(o.into_message()),
                }
            })
    }
}

impl Outgoing {
    /// The message queued (a charged block or a raw rest only ever comes from `send_now`,
    /// which never gets it back).
    fn into_message(self) -> Message {
        match self {
            Outgoing::Message(message) | Outgoing::Charged(message) => message,
            Outgoing::Raw { .. } => Message::KeepAlive,
        }
    }
}

/// The reading half: decodes messages and forwards them to the session.
struct Reader {
    socket: OwnedReadHalf,
    buf: BytesMut,
    /// The current allocation step, between [`READ_CHUNK`] and [`MAX_READ_CHUNK`].
    chunk: usize,
    key: PeerKey,
    events: mpsc::Sender<(PeerKey, PeerEvent)>,
    stats: Arc<ConnectionStats>,
    limits: WireLimits,
    idle_timeout: Duration,
    cancel: CancellationToken,
}

impl Reader {
    /// Runs until the connection ends. `Ok(())` means we stopped it (cancelled, or the
    /// session no longer listens).
    async fn run(mut self) -> Result<(), PeerError> {
        loop {
            while let Some(message) = Message::decode_from(&mut self.buf, &self.limits)? {
                match &message {
                    Message::KeepAlive => continue,
                    Message::Piece { data, .. } => {
                        self.stats
                            .downloaded
                            .fetch_add(data.len() as u64, Ordering::Relaxed);
                    }
                    _ => {}
                }
                tokio::select! {
                    biased;
                    () = self.cancel.cancelled() => return Ok(()),
                    sent = self.events.send((self.key, PeerEvent::Message(message))) => {
                        if sent.is_err() {
                            return Ok(());
                        }
                    }
                }
            }
            self.make_room()?;
            let room = self.buf.capacity() - self.buf.len();
            let read = tokio::select! {
                biased;
                () = self.cancel.cancelled() => return Ok(()),
                read = timeout(self.idle_timeout, self.socket.read_buf(&mut self.buf)) => read,
            };
            match read {
                Err(_elapsed) => return Err(PeerError::IdleTimeout(self.idle_timeout)),
                Ok(Ok(0)) => return Err(PeerError::ClosedByPeer),
                Ok(Ok(read)) => {
                    // Only a full read of a whole chunk's room says the stream is fast: a
                    // small leftover filled up says nothing.
                    self.chunk = if read >= room && room >= self.chunk {
                        (self.chunk * 2).min(MAX_READ_CHUNK)
                    } else if read < room / 2 {
                        READ_CHUNK
                    } else {
                        self.chunk
                    };
                }
                Ok(Err(e)) => return Err(e.into()),
            }
        }
    }

    /// Makes sure the buffer has room for the rest of the frame being received (its length
    /// is known, and within the limits, once the prefix is in) and for at least
    /// [`MIN_READ_ROOM`] bytes.
    fn make_room(&mut self) -> Result<(), PeerError> {
        let frame = Message::frame_len(&self.buf, &self.limits)?.unwrap_or(0);
        let need = frame.saturating_sub(self.buf.len()).max(MIN_READ_ROOM);
        if self.buf.capacity() - self.buf.len() < need {
            self.buf.reserve(need.max(self.chunk));
        }
        Ok(())
    }
}

/// The writing half: batches queued messages, paces block data, sends keep-alives.
struct Writer {
    socket: Arc<OwnedWriteHalf>,
    gate: Arc<WriteGate>,
    /// Queue items (and keep-alives) in the batch, counted in the gate's `pending`.
    batch_items: usize,
    /// Encoded messages not yet moved to `parts`.
    buf: BytesMut,
    /// The batch so far, in order: runs of encoded messages taken from `buf`, and blocks.
    parts: Vec<Bytes>,
    /// Bytes in `parts`.
    parts_len: usize,
    /// Block payload bytes encoded in `buf` and not yet written.
    unflushed_upload: u64,
    stats: Arc<ConnectionStats>,
    limiter: Option<UploadLimiter>,
    write_timeout: Duration,
    cancel: CancellationToken,
}

impl Writer {
    /// Runs until the connection ends. `Ok(())` means we stopped it (cancelled, or the
    /// handle was dropped). Always cancels the connection when it returns, so the reader
    /// stops too.
    async fn run(
        mut self,
        mut queue: mpsc::Receiver<Outgoing>,
        keep_alive: Duration,
    ) -> Result<(), PeerError> {
        let result = self.write_loop(&mut queue, keep_alive).await;
        // No more direct writes: the last reference to the write half goes with us.
        self.gate.lock().socket = None;
        self.stats.writer_done.store(true, Ordering::Release);
        self.cancel.cancel();
        result
    }

    async fn write_loop(
        &mut self,
        queue: &mut mpsc::Receiver<Outgoing>,
        keep_alive: Duration,
    ) -> Result<(), PeerError> {
        let mut quiet_until = Instant::now() + keep_alive;
        loop {
            let first = tokio::select! {
                biased;
                () = self.cancel.cancelled() => return Ok(()),
                message = queue.recv() => match message {
                    Some(message) => message,
                    None => return Ok(()),
                },
                () = sleep_until(quiet_until) => {
                    let mut gate = self.gate.lock();
                    // Not quiet after all: something is queued (the rest of a direct write,
                    // maybe: a keep-alive now would land in the middle of that message),
                    // or direct writes went out meanwhile.
                    let direct_until = gate.last_direct.map(|at| at + keep_alive);
                    if gate.pending > 0 || direct_until.is_some_and(|until| until > Instant::now()) {
                        quiet_until = direct_until
                            .filter(|&until| until > Instant::now())
                            .unwrap_or_else(|| Instant::now() + keep_alive);
                        continue;
                    }
                    // Counted like a queued item, so no direct write interleaves with it.
                    gate.pending += 1;
                    Outgoing::Message(Message::KeepAlive)
                }
            };
            if !self.push(first).await? {
                return Ok(());
            }
            while self.batched() < MAX_BATCH_BYTES {
                let Ok(message) = queue.try_recv() else {
                    break;
                };
                if !self.push(message).await? {
                    return Ok(());
                }
            }
            if !self.flush().await? {
                return Ok(());
            }
            quiet_until = Instant::now() + keep_alive;
        }
    }

    /// Adds `item` to the batch, first waiting for the upload limiter if it is a block
    /// (and writing what is batched before it, so earlier control messages are not held
    /// back by the wait). `Ok(false)` when cancelled meanwhile.
    async fn push(&mut self, item: Outgoing) -> Result<bool, PeerError> {
        let (message, charged) = match item {
            Outgoing::Message(message) => (message, false),
            Outgoing::Charged(message) => (message, true),
            Outgoing::Raw { parts, upload } => {
                self.batch_items += 1;
                self.take_buf();
                self.unflushed_upload += upload;
                for part in parts {
                    self.parts_len += part.len();
                    self.parts.push(part);
                }
                return Ok(true);
            }
        };
        if let (Message::Piece { data, .. }, Some(limiter)) = (&message, &self.limiter)
            && !charged
            && !limiter.try_acquire(data.len())
        {
            let limiter = limiter.clone();
            if !self.flush().await? {
                return Ok(false);
            }
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => return Ok(false),
                () = limiter.acquire(data.len()) => {}
            }
        }
        // Counted only now: a flush while waiting for the limiter above leaves this one
        // pending, so no direct write goes ahead of it.
        self.batch_items += 1;
        match message {
            Message::Piece { ref data, .. } if data.len() >= VECTORED_BLOCK_MIN => {
                self.unflushed_upload += data.len() as u64;
                message.encode_header(&mut self.buf);
                self.take_buf();
                self.parts_len += data.len();
                if let Message::Piece { data, .. } = message {
                    self.parts.push(data);
                }
            }
            Message::Piece { ref data, .. } => {
                self.unflushed_upload += data.len() as u64;
                message.encode(&mut self.buf);
            }
            _ => message.encode(&mut self.buf),
        }
        Ok(true)
    }

    /// Bytes in the batch.
    fn batched(&self) -> usize {
        self.parts_len + self.buf.len()
    }

    /// Moves what is encoded in `buf` to the end of `parts`.
    fn take_buf(&mut self) {
        if !self.buf.is_empty() {
            self.parts_len += self.buf.len();
            self.parts.push(self.buf.split().freeze());
        }
    }

    /// Writes the batch. `Ok(false)` when cancelled meanwhile.
    async fn flush(&mut self) -> Result<bool, PeerError> {
        self.take_buf();
        if self.parts.is_empty() {
            return Ok(true);
        }
        let written = tokio::select! {
            biased;
            () = self.cancel.cancelled() => return Ok(false),
            written = timeout(
                self.write_timeout,
                write_all_parts(&self.socket, &mut self.parts),
            ) => written,
        };
        match written {
            Err(_elapsed) => return Err(PeerError::WriteTimeout(self.write_timeout)),
            Ok(Err(e)) => return Err(e.into()),
            Ok(Ok(())) => {}
        }
        self.parts.clear();
        self.parts_len = 0;
        self.gate.sub(std::mem::take(&mut self.batch_items));
        self.stats
            .uploaded
            .fetch_add(self.unflushed_upload, Ordering::Relaxed);
        self.unflushed_upload = 0;
        Ok(true)
    }
}

/// Writes every buffer of `parts` in order, with vectored writes; a buffer written in part
/// is advanced, and written ones are left empty.
async fn write_all_parts(socket: &OwnedWriteHalf, parts: &mut [Bytes]) -> std::io::Result<()> {
    let mut first = 0;
    while first < parts.len() {
        let mut slices = [IoSlice::new(&[]); MAX_WRITE_SLICES];
        let mut count = 0;
        for (slot, part) in slices.iter_mut().zip(&parts[first..]) {
            *slot = IoSlice::new(part);
            count += 1;
        }
        // Through `&self` calls, as `DirectWriter::send_now` shares the write half.
        let mut written = loop {
            socket.writable().await?;
            match socket.try_write_vectored(&slices[..count]) {
                Ok(written) => break written,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while written > 0 {
            let Some(part) = parts.get_mut(first) else {
                break;
            };
            let take = written.min(part.len());
            part.advance(take);
            written -= take;
            if part.is_empty() {
                first += 1;
            }
        }
        // Skip empty buffers (none are queued, but a zero-length block could be).
        while parts.get(first).is_some_and(|p| p.is_empty()) {
            first += 1;
        }
    }
    Ok(())
}
