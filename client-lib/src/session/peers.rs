//! The session's side of one peer connection: what it knows of the peer, and the small task
//! that feeds the connection's send queue.
//!
//! Why a task per peer between the session and the connection: the session's event loop
//! must never wait on one peer, but a connection's send queue can be full for a long time
//! (the upload cap paces block data in its writer, and a slow reader fills it). So the loop
//! only ever hands messages over without waiting ([`PeerLink::send`]), into a generous
//! control queue, and queues upload requests as plain `(piece, begin, length)` triples in an
//! [`UploadQueue`]. The peer's task drains both into the connection, control messages first
//! (a `have`, `request` or `choke` never waits behind our uploads), reading each block from
//! the store only when it is about to be sent (so a disk read never blocks the loop, and a
//! `cancel` can still remove a block that has not been read yet). A peer that lets the
//! control queue fill up ([`CONTROL_QUEUE_LEN`] messages) is not reading: the session drops
//! it.
//!
//! Control messages skip the task (and the connection's queue) when neither holds
//! anything for the peer: what one turn of the session's loop has for a peer is written
//! to the socket from the session's task at its end, in one write
//! ([`crate::peer::DirectWriter::send_all_now`]), which saves two task hand-offs per
//! message on the rounds a small release is fetched in. One write per turn, not per
//! message, so a turn's requests and haves do not leave as a storm of tiny segments, each
//! waking the other side. The task counts what it holds (queued
//! control messages, and the upload it is reading) so that such a write never overtakes a
//! message handed over before it; and it writes a block it read the same way when it
//! holds nothing else (the connection's writer then only takes what the socket or the
//! upload cap holds back).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use swarmcdn_proto::PeerId;
use swarmcdn_proto::peer::{Bitfield, Message};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::peer::{ConnectionStats, DirectWriter, Direction, PeerHandle};
use crate::storage::{StorageError, Store, StoreKind};

/// Messages the session may have handed to one peer's task and not yet sent. Generous
/// (a full pipeline of requests plus haves for a large torrent); a peer that lets it fill
/// up is not reading its socket and is dropped.
pub const CONTROL_QUEUE_LEN: usize = 1024;

/// Block requests from one peer queued for upload. Further requests are rejected (BEP 6)
/// or ignored; BEP 3 clients keep far fewer outstanding (we announce this as `reqq`).
pub const MAX_QUEUED_UPLOADS: usize = 256;

/// Blocks read from the store in one go when a peer's next request is served: that request
/// and the ones queued behind it, up to this many and up to [`READ_AHEAD_BYTES`] in all
/// (64 blocks of 16 KiB: 1 MiB, the longest run the store reads at once). Each read is a
/// trip to the blocking pool, which costs a thread wake-up: a fast downloader keeps hundreds
/// of requests queued, and reading a quarter of them per trip keeps those trips rare.
pub(super) const READ_AHEAD_BLOCKS: usize = 64;
/// The most bytes read ahead for one peer: a peer asking for large blocks (up to
/// [`crate::storage::MAX_READ_BLOCK_LEN`]) must not make each connection hold 8 MiB.
pub(super) const READ_AHEAD_BYTES: u64 = 1024 * 1024;

/// The feed task writes a block itself (rather than through the connection's writer)
/// only while at most this many requests wait behind it: a few blocks of a small release
/// save a task hand-off, a long run goes out in the writer's batches (one write for many
/// blocks). On the 256 MiB bulk benchmark, direct writes of every block and this bound
/// measured the same within the noise (600 to 770 MB/s either way).
const DIRECT_BLOCKS_BEHIND_MAX: usize = 4;

/// A block a peer asked us for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BlockRequest {
    pub(super) piece: u32,
    pub(super) begin: u32,
    pub(super) length: u32,
}

/// Upload requests of one peer, shared by the session (push, cancel, clear) and the peer's
/// task (pop). Bounded by [`MAX_QUEUED_UPLOADS`].
#[derive(Debug, Default)]
pub(super) struct UploadQueue {
    queue: Mutex<VecDeque<BlockRequest>>,
    notify: Notify,
}

impl UploadQueue {
    fn lock(&self) -> MutexGuard<'_, VecDeque<BlockRequest>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a request; `false` (nothing queued) when the queue is full or the request is
    /// already queued.
    pub(super) fn push(&self, request: BlockRequest) -> bool {
        {
            let mut queue = self.lock();
            if queue.len() >= MAX_QUEUED_UPLOADS || queue.contains(&request) {
                return false;
            }
            queue.push_back(request);
        }
        self.notify.notify_one();
        true
    }

    /// Removes a queued request (a `cancel`); whether it was queued.
    pub(super) fn cancel(&self, request: &BlockRequest) -> bool {
        let mut queue = self.lock();
        let before = queue.len();
        queue.retain(|r| r != request);
        queue.len() != before
    }

    /// How many requests are queued.
    fn len(&self) -> usize {
        self.lock().len()
    }

    /// Removes every queued request and returns them (the peer was choked).
    pub(super) fn clear(&self) -> Vec<BlockRequest> {
        self.lock().drain(..).collect()
    }

    /// Takes the first request, counting it in `held` under the queue's lock: a `clear`
    /// (a choke) either still finds it, or comes after it is counted, so the session sends
    /// its `choke` behind the block rather than ahead of it.
    fn pop(&self, held: &AtomicUsize) -> Option<BlockRequest> {
        let mut queue = self.lock();
        let request = queue.pop_front()?;
        held.fetch_add(1, Ordering::AcqRel);
        Some(request)
    }

    /// Copies of the first queued requests, left in the queue: at most `count` of them,
    /// and only while their lengths add up to at most `bytes`.
    fn peek(&self, count: usize, bytes: u64) -> Vec<BlockRequest> {
        let mut total = 0u64;
        self.lock()
            .iter()
            .take(count)
            .take_while(|r| {
                total += u64::from(r.length);
                total <= bytes
            })
            .copied()
            .collect()
    }

    /// Waits for the next request. Cancel-safe: a request is taken only by a poll that
    /// returns it.
    async fn next(&self, held: &AtomicUsize) -> BlockRequest {
        loop {
            if let Some(request) = self.pop(held) {
                return request;
            }
            // `notify_one` stores a permit when nobody waits, so a push between `pop` and
            // here is not missed.
            self.notify.notified().await;
        }
    }
}

/// The session's handle on one peer's task and connection. Dropping it does not stop
/// anything: [`PeerLink::close`] does.
#[derive(Debug)]
pub(super) struct PeerLink {
    control: mpsc::Sender<Message>,
    /// Writes control messages at once when nothing is held for the peer.
    writer: DirectWriter,
    /// Messages of this turn of the session's loop, not sent yet.
    corked: Vec<Message>,
    /// Control messages handed to the task and the upload it is reading, not yet handed
    /// to the connection.
    held: Arc<AtomicUsize>,
    uploads: Arc<UploadQueue>,
    stats: Arc<ConnectionStats>,
    cancel: CancellationToken,
}

/// The message could not be handed over: the peer is gone or not reading.
#[derive(Debug)]
pub(super) struct SendFailed;

impl PeerLink {
    /// Starts the task that feeds `handle`'s connection, on `tasks`, stopping with `parent`.
    pub(super) fn spawn(
        handle: PeerHandle,
        store: Arc<Store>,
        tasks: &TaskTracker,
        parent: &CancellationToken,
    ) -> PeerLink {
        let (control, control_rx) = mpsc::channel(CONTROL_QUEUE_LEN);
        let uploads = Arc::new(UploadQueue::default());
        let stats = Arc::clone(handle.stats());
        let cancel = parent.child_token();
        let writer = handle.direct_writer();
        let held = Arc::new(AtomicUsize::new(0));
        let span =
            tracing::debug_span!("peer_feed", peer = %handle.peer_addr(), key = handle.key().0);
        tasks.spawn(
            feed(
                handle,
                control_rx,
                Arc::clone(&uploads),
                store,
                Arc::clone(&held),
                cancel.clone(),
            )
            .instrument(span),
        );
        PeerLink {
            control,
            writer,
            corked: Vec::new(),
            held,
            uploads,
            stats,
            cancel,
        }
    }

    /// Keeps `message` for [`PeerLink::flush`], which the session calls once per turn of
    /// its loop: what one turn has for a peer (haves, requests, a choke) leaves in one write.
    pub(super) fn send(&mut self, message: Message) {
        self.corked.push(message);
    }

    /// Sends what [`PeerLink::send`] kept, without waiting: written at once in one go if
    /// nothing is held for the peer (see the module docs), else handed to the peer's task.
    pub(super) fn flush(&mut self) -> Result<(), SendFailed> {
        if self.corked.is_empty() {
            return Ok(());
        }
        let messages = std::mem::take(&mut self.corked);
        if self.held.load(Ordering::Acquire) == 0 && self.writer.send_all_now(&messages) {
            return Ok(());
        }
        for message in messages {
            self.held.fetch_add(1, Ordering::AcqRel);
            if self.control.try_send(message).is_err() {
                self.held.fetch_sub(1, Ordering::AcqRel);
                return Err(SendFailed);
            }
        }
        Ok(())
    }

    /// The peer's upload queue.
    pub(super) fn uploads(&self) -> &UploadQueue {
        &self.uploads
    }

    /// Block bytes written to the peer so far.
    pub(super) fn uploaded(&self) -> u64 {
        self.stats.uploaded()
    }

    /// The connection's counters (they outlive the link).
    pub(super) fn stats(&self) -> &Arc<ConnectionStats> {
        &self.stats
    }

    /// Closes the connection (its task ends, dropping the connection's handle).
    pub(super) fn close(&self) {
        self.cancel.cancel();
    }
}

/// Moves control messages and uploads into the connection until it closes or the link is
/// closed. Dropping `handle` at the end closes the connection.
async fn feed(
    handle: PeerHandle,
    mut control: mpsc::Receiver<Message>,
    uploads: Arc<UploadQueue>,
    store: Arc<Store>,
    held: Arc<AtomicUsize>,
    cancel: CancellationToken,
) {
    enum Next {
        Control(Message),
        Upload(BlockRequest),
    }
    let mut read_ahead = ReadAhead::default();
    loop {
        let next = tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            message = control.recv() => match message {
                Some(message) => Next::Control(message),
                None => break,
            },
            // Counted in `held` as it is popped, until handed over (a control message was
            // counted by the session when it queued it).
            request = uploads.next(&held) => Next::Upload(request),
        };
        let message = match next {
            Next::Control(message) => message,
            Next::Upload(r) => match read_ahead.take(&r, &uploads, &store).await {
                Ok(data) => Message::Piece {
                    index: r.piece,
                    begin: r.begin,
                    data,
                },
                Err(error) => {
                    tracing::debug!(%error, piece = r.piece, "cannot serve a requested block");
                    held.fetch_sub(1, Ordering::AcqRel);
                    continue;
                }
            },
        };
        // Alone (nothing else held for the peer): written from here if the connection's
        // writer holds nothing either. Not a block with a long queue of requests behind it:
        // those go out in the writer's batches (one write for many blocks).
        let short_queue =
            !matches!(message, Message::Piece { .. }) || uploads.len() <= DIRECT_BLOCKS_BEHIND_MAX;
        if short_queue && held.load(Ordering::Acquire) == 1 && handle.send_now(&message) {
            held.fetch_sub(1, Ordering::AcqRel);
            continue;
        }
        let sent = tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            sent = handle.send(message) => sent,
        };
        // In the connection's queue now (which counts it), or the connection is gone.
        held.fetch_sub(1, Ordering::AcqRel);
        if sent.is_err() {
            break;
        }
    }
    handle.close();
}

/// Blocks read before their request reached the front of the queue (see
/// [`READ_AHEAD_BLOCKS`]). The queue stays the only source of truth: a block is sent only
/// when its request is popped, so a `cancel` or a choke (which clear requests from the
/// queue) still stops it; what was read for a request that is gone is dropped.
#[derive(Default)]
struct ReadAhead {
    blocks: VecDeque<(BlockRequest, Result<Bytes, StorageError>)>,
}

impl ReadAhead {
    /// The data for `request` (just popped): read earlier, or read now together with the
    /// requests queued behind it.
    async fn take(
        &mut self,
        request: &BlockRequest,
        queue: &UploadQueue,
        store: &Arc<Store>,
    ) -> Result<Bytes, StorageError> {
        if store.kind() == StoreKind::Memory {
            // Nothing to gain: a memory read is a cheap slice.
            return store.read_block(request.piece, request.begin, request.length);
        }
        // Requests are served in queue order, so what lies before `request` was removed
        // from the queue meanwhile.
        while let Some((read, data)) = self.blocks.pop_front() {
            if read == *request {
                return data;
            }
        }
        let mut wanted = vec![*request];
        let room = READ_AHEAD_BYTES.saturating_sub(u64::from(request.length));
        wanted.extend(queue.peek(READ_AHEAD_BLOCKS - 1, room));
        let triples = wanted
            .iter()
            .map(|r| (r.piece, r.begin, r.length))
            .collect();
        let mut results = store.read_blocks_async(triples).await.into_iter();
        let first = results.next().unwrap_or(Err(StorageError::Cancelled));
        self.blocks = wanted.into_iter().skip(1).zip(results).collect();
        first
    }
}

/// What the session knows about one connected peer.
#[derive(Debug)]
pub(super) struct PeerState {
    pub(super) link: PeerLink,
    /// The address we reach it at (dialled) or it came from (incoming).
    pub(super) addr: SocketAddr,
    /// Its listen address, when known (dialled, or told in its extended handshake).
    pub(super) listen_addr: Option<SocketAddr>,
    pub(super) peer_id: PeerId,
    pub(super) direction: Direction,
    /// Both sides set the BEP 6 bit.
    pub(super) fast: bool,
    /// The pieces it claims (bitfield, haves).
    pub(super) has: Bitfield,
    /// It wants our pieces.
    pub(super) interested: bool,
    /// Counts towards discovery settling until its first message arrives.
    pub(super) settling: bool,
    /// Since when it has had our requests without sending a block (see snubbing).
    pub(super) waiting_since: Option<tokio::time::Instant>,
    /// Upload bytes already reported to the choker.
    pub(super) reported_upload: u64,
    /// The id it wants `ut_metadata` messages under (from its extended handshake).
    pub(super) ut_metadata: Option<u8>,
}

impl PeerState {
    /// Whether it claims every piece.
    pub(super) fn is_seed(&self) -> bool {
        self.has.is_complete()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(piece: u32) -> BlockRequest {
        BlockRequest {
            piece,
            begin: 0,
            length: 16384,
        }
    }

    #[tokio::test]
    async fn upload_queue_is_bounded_dedups_and_cancels() {
        let q = UploadQueue::default();
        assert!(q.push(req(1)));
        assert!(!q.push(req(1)), "the same request twice is queued once");
        assert!(q.push(req(2)));
        assert!(q.cancel(&req(1)));
        assert!(!q.cancel(&req(1)));
        let held = AtomicUsize::new(0);
        assert_eq!(q.next(&held).await, req(2));
        assert_eq!(held.load(Ordering::Acquire), 1, "counted as it is taken");
        for i in 0..MAX_QUEUED_UPLOADS as u32 {
            assert!(q.push(req(100 + i)));
        }
        assert!(!q.push(req(99)), "full");
        assert_eq!(q.clear().len(), MAX_QUEUED_UPLOADS);
        assert!(q.pop(&held).is_none());
        assert_eq!(
            held.load(Ordering::Acquire),
            1,
            "nothing taken, nothing counted"
        );
    }

    #[tokio::test]
    async fn read_ahead_serves_queued_blocks_and_skips_cancelled_ones() {
        use crate::storage::test_support::Release;

        let release = Release::single_with_piece_length(64 * 1024, 32 * 1024);
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::disk(dir.path(), &release.metainfo).unwrap());
        for i in 0..release.piece_count() {
            store.commit_piece(i, release.piece(i)).unwrap();
        }
        let block = |piece: u32, begin: u32| BlockRequest {
            piece,
            begin,
            length: 16 * 1024,
        };
        let data = |r: BlockRequest| {
            release
                .piece(r.piece)
                .slice(r.begin as usize..(r.begin + r.length) as usize)
        };
        let queue = UploadQueue::default();
        for r in [block(0, 0), block(0, 16384), block(1, 0), block(1, 16384)] {
            assert!(queue.push(r));
        }
        let mut ahead = ReadAhead::default();
        let first = queue.pop(&AtomicUsize::new(0)).unwrap();
        assert_eq!(
            ahead.take(&first, &queue, &store).await.unwrap(),
            data(first)
        );
        assert_eq!(ahead.blocks.len(), 3, "the queued blocks were read along");
        // A cancelled block is never served; the next one comes from what was read.
        assert!(queue.cancel(&block(0, 16384)));
        let next = queue.pop(&AtomicUsize::new(0)).unwrap();
        assert_eq!(next, block(1, 0));
        assert_eq!(ahead.take(&next, &queue, &store).await.unwrap(), data(next));
        assert_eq!(ahead.blocks.len(), 1);
        // A request queued after the read-ahead is read when its turn comes.
        let last = queue.pop(&AtomicUsize::new(0)).unwrap();
        assert_eq!(ahead.take(&last, &queue, &store).await.unwrap(), data(last));
        assert!(queue.push(block(0, 0)));
        let again = queue.pop(&AtomicUsize::new(0)).unwrap();
        assert_eq!(
            ahead.take(&again, &queue, &store).await.unwrap(),
            data(again)
        );
    }

    #[test]
    fn read_ahead_is_bounded_in_bytes_too() {
        let q = UploadQueue::default();
        for piece in 0..20 {
            assert!(q.push(BlockRequest {
                piece,
                begin: 0,
                length: 128 * 1024,
            }));
        }
        // 64 blocks allowed, but 1 MiB of 128 KiB blocks is 8 of them.
        assert_eq!(q.peek(READ_AHEAD_BLOCKS, READ_AHEAD_BYTES).len(), 8);
        assert_eq!(q.peek(3, READ_AHEAD_BYTES).len(), 3);
        assert!(q.peek(READ_AHEAD_BLOCKS, 1000).is_empty());
    }

    #[tokio::test]
    async fn next_wakes_on_a_later_push() {
        let q = Arc::new(UploadQueue::default());
        let waiter = tokio::spawn({
            let q = Arc::clone(&q);
            async move { q.next(&AtomicUsize::new(0)).await }
        });
        tokio::task::yield_now().await;
        assert!(q.push(req(7)));
        assert_eq!(waiter.await.unwrap(), req(7));
    }
}
