//! Response bodies read from a stored file: streamed, paced by the upload cap, counted.
//!
//! A body is a list of [`Segment`]s: runs of the file, and (for `multipart/byteranges`) the
//! part headers between them. Small bodies, which is most of a widget's files, are read in one
//! trip to the blocking thread pool and sent as one buffer. Larger ones are read by one
//! blocking task per response, sequentially, in chunks of up to
//! [`MAX_CHUNK`](crate::bandwidth::MAX_CHUNK) (512 KiB), into a channel of
//! [`READ_AHEAD`] chunk: the disk read of the next chunk overlaps the socket write of this
//! one, memory per response stays bounded (three chunks at most: one being written, one
//! queued, one being read), and a client that goes away stops the reader at its next chunk.
//! Every chunk costs thread wake-ups, so chunks are large: 512 KiB chunks with a queue of one
//! cost about a third less CPU per byte than 256 KiB chunks with a queue of two (see
//! `docs/BENCHMARKS.md`). Each chunk is read straight into a fresh buffer that becomes the
//! `Bytes` handed to the socket (one copy from the kernel, no zeroing, no second copy).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

use axum::body::Body;
use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::OwnedSemaphorePermit;

use crate::bandwidth::WebSeedPermit;

/// Bodies up to this size are read in one go and sent as one buffer.
pub(crate) const SMALL_BODY: u64 = 64 * 1024;

/// Chunks queued between the reading thread and the socket, per response.
const READ_AHEAD: usize = 1;

/// A piece of a response body.
#[derive(Debug, Clone)]
pub(crate) enum Segment {
    /// Bytes in memory (multipart part headers).
    Static(Bytes),
    /// `len` bytes of the file from `offset`.
    File {
        /// Where the run starts.
        offset: u64,
        /// How many bytes.
        len: u64,
    },
}

impl Segment {
    fn len(&self) -> u64 {
        match self {
            Segment::Static(bytes) => bytes.len() as u64,
            Segment::File { len, .. } => *len,
        }
    }
}

/// The total length of `segments`.
pub(crate) fn body_len(segments: &[Segment]) -> u64 {
    segments.iter().map(Segment::len).sum()
}

/// Reads all of `segments` from `file` into one buffer.
pub(crate) fn read_all(mut file: File, segments: &[Segment]) -> io::Result<Vec<u8>> {
    let total = usize::try_from(body_len(segments)).map_err(io::Error::other)?;
    let mut out = Vec::with_capacity(total);
    for segment in segments {
        match segment {
            Segment::Static(bytes) => out.extend_from_slice(bytes),
            Segment::File { offset, len } => {
                file.seek(SeekFrom::Start(*offset))?;
                read_exact_into(&mut file, *len, &mut out)?;
            }
        }
    }
    Ok(out)
}

/// Appends exactly `len` bytes read from `file` to `out`.
fn read_exact_into(file: &mut File, len: u64, out: &mut Vec<u8>) -> io::Result<()> {
    let before = out.len();
    file.take(len).read_to_end(out)?;
    if (out.len() - before) as u64 != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the stored file is shorter than its torrent says",
        ));
    }
    Ok(())
}

/// A streamed body: `segments` of `file`, read in chunks of `chunk` bytes, each chunk paced
/// through `permit` and counted in `counter` before it is sent; `slot` is released when the
/// body ends.
pub(crate) fn stream(
    file: File,
    segments: Vec<Segment>,
    chunk: usize,
    permit: WebSeedPermit,
    counter: Counter,
    slot: OwnedSemaphorePermit,
) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(READ_AHEAD);
    tokio::task::spawn_blocking(move || produce(file, &segments, chunk.max(1), &tx));
    // The slot is held (and the permit's backlog kept) until the stream ends or is dropped.
    let state = (rx, permit, counter, slot);
    let chunks = futures::stream::unfold(state, |(mut rx, mut permit, counter, slot)| async move {
        let item = rx.recv().await?;
        if let Ok(bytes) = &item {
            let len = bytes.len() as u64;
            permit.send(len).await;
            counter.inc_by(len);
        }
        Some((item, (rx, permit, counter, slot)))
    });
    Body::from_stream(chunks)
}

/// The reading side of [`stream`]: stops at the first error (after sending it) or when the
/// receiver is gone.
fn produce(
    mut file: File,
    segments: &[Segment],
    chunk: usize,
    tx: &tokio::sync::mpsc::Sender<io::Result<Bytes>>,
) {
    for segment in segments {
        match segment {
            Segment::Static(bytes) => {
                if tx.blocking_send(Ok(bytes.clone())).is_err() {
                    return;
                }
            }
            Segment::File { offset, len } => {
                if let Err(error) = file.seek(SeekFrom::Start(*offset)) {
                    let _ = tx.blocking_send(Err(error));
                    return;
                }
                let mut left = *len;
                while left > 0 {
                    let take = left.min(chunk as u64);
                    // `take` is at most `chunk`, a usize.
                    let mut buffer = Vec::with_capacity(take as usize);
                    if let Err(error) = read_exact_into(&mut file, take, &mut buffer) {
                        let _ = tx.blocking_send(Err(error));
                        return;
                    }
                    left -= take;
                    if tx.blocking_send(Ok(Bytes::from(buffer))).is_err() {
                        return;
                    }
                }
            }
        }
    }
}
