//! The memory backend: verified pieces kept as [`Bytes`], one per piece.
//!
//! Small releases (a widget's few files) are served far more often than they are fetched,
//! so reads are what must be cheap: a block or a file that lies inside one piece is a
//! reference-counted slice of that piece, with no copy and no blocking call. A read across
//! pieces copies once into a fresh buffer. Nothing is written to disk; after a restart a
//! small release is fetched again, which for its size costs little.

use std::sync::RwLock;

use bytes::{Bytes, BytesMut};
use swarmcdn_proto::metainfo::Info;

use super::{StorageError, read_lock, write_lock};

/// The pieces of one release in memory; `None` until a piece is verified and stored.
#[derive(Debug)]
pub(super) struct MemoryPieces {
    pieces: RwLock<Vec<Option<Bytes>>>,
}

impl MemoryPieces {
    /// No pieces yet, for a torrent of `piece_count` pieces.
    pub(super) fn new(piece_count: u32) -> Self {
        MemoryPieces {
            pieces: RwLock::new(vec![None; piece_count as usize]),
        }
    }

    /// Stores verified piece `index`.
    pub(super) fn put(&self, index: u32, data: Bytes) {
        if let Some(slot) = write_lock(&self.pieces).get_mut(index as usize) {
            *slot = Some(data);
        }
    }

    /// The `len` bytes at `offset` of the torrent. The caller has checked that every piece
    /// they touch is verified; a piece that is absent anyway is reported, not panicked on.
    pub(super) fn read(&self, info: &Info, offset: u64, len: u64) -> Result<Bytes, StorageError> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let piece_length = u64::from(info.piece_length());
        let pieces = read_lock(&self.pieces);
        let end = offset + len;
        let first = offset / piece_length;
        let last = (end - 1) / piece_length;
        let piece = |index: u64| -> Result<&Bytes, StorageError> {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            pieces
                .get(index as usize)
                .and_then(Option::as_ref)
                .ok_or(StorageError::NotVerified { piece: index })
        };
        let slice = |bytes: &Bytes, from: u64, to: u64| -> Result<Bytes, StorageError> {
            let (from, to) = (from as usize, to as usize);
            if from <= to && to <= bytes.len() {
                Ok(bytes.slice(from..to))
            } else {
                Err(StorageError::OutOfRange {
                    piece: u32::try_from(first).unwrap_or(u32::MAX),
                    begin: 0,
                    len,
                })
            }
        };
        if first == last {
            let start = first * piece_length;
            return slice(piece(first)?, offset - start, end - start);
        }
        let mut out = BytesMut::with_capacity(len as usize);
        for index in first..=last {
            let start = index * piece_length;
            let from = offset.max(start) - start;
            let to = end.min(start + piece_length) - start;
            out.extend_from_slice(&slice(piece(index)?, from, to)?);
        }
        Ok(out.freeze())
    }
}
