//! Building whole pieces from the 16 KiB blocks peers send.
//!
//! Peers send a piece as blocks, in any order, interleaved with other pieces. The assembler
//! keeps one buffer per piece being downloaded and hands the piece out once every block is
//! in; the store then hashes it ([`super::Store::commit_piece`]). Nothing here is trusted:
//!
//! - a block must sit on the [`BLOCK_SIZE`] grid and be exactly as long as the block we
//!   request there (16 KiB, or what is left of the piece), because that is all we ever
//!   request. Anything else is an error, never a partial copy, so overlapping blocks cannot
//!   exist: a second copy of a block is reported as [`StorageError::DuplicateBlock`];
//! - at most `max_partial_pieces` buffers exist at once, so a peer (or many) sending the
//!   first block of every piece can make us hold at most that many piece buffers
//!   ([`DEFAULT_MAX_PARTIAL_PIECES`]);
//! - buffers are allocated only after a block is validated.
//!
//! Which blocks were requested from whom is the session's knowledge, not the assembler's:
//! the session drops unrequested blocks before they get here, and remembers who sent what so
//! it can blame the senders when the assembled piece fails its hash.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use swarmcdn_proto::metainfo::Info;

use super::StorageError;

/// The size of the blocks we request from peers (BEP 3 practice); the last block of a piece
/// may be shorter.
pub const BLOCK_SIZE: u32 = 16 * 1024;

/// Default bound on pieces held half-built in memory. With the piece lengths the seeder
/// picks (at most 2000 pieces per release, so 512 KiB pieces for a 1 GB release) this is
/// at most 16 MiB per torrent, and enough to keep tens of peers busy.
pub const DEFAULT_MAX_PARTIAL_PIECES: usize = 32;

/// A piece being assembled.
#[derive(Debug)]
struct Partial {
    /// The piece's bytes up to the furthest block received, zeroed where no block has
    /// arrived yet. It grows as blocks come in (allocated whole up front), so blocks that
    /// arrive in order, the usual case, are copied in without zeroing the piece first.
    buf: BytesMut,
    /// One flag per block: received or not.
    received: Vec<bool>,
    /// Blocks still missing.
    missing: usize,
}

/// Buffers for the pieces being downloaded block by block; see the module docs.
#[derive(Debug)]
pub struct PieceAssembler {
    info: Arc<Info>,
    max_partial_pieces: usize,
    partial: HashMap<u32, Partial>,
}

impl PieceAssembler {
    /// An assembler for the torrent `info` holding at most [`DEFAULT_MAX_PARTIAL_PIECES`]
    /// partial pieces.
    pub fn new(info: Arc<Info>) -> Self {
        Self::with_limit(info, DEFAULT_MAX_PARTIAL_PIECES)
    }

    /// An assembler holding at most `max_partial_pieces` partial pieces (at least 1).
    pub fn with_limit(info: Arc<Info>, max_partial_pieces: usize) -> Self {
        PieceAssembler {
            info,
            max_partial_pieces: max_partial_pieces.max(1),
            partial: HashMap::new(),
        }
    }

    /// The number of blocks piece `piece` is requested in, or `None` if there is no such
    /// piece.
    pub fn block_count(&self, piece: u32) -> Option<u32> {
        Some(self.info.piece_len(piece)?.div_ceil(BLOCK_SIZE))
    }

    /// The length of the block at `begin` in piece `piece`, if `begin` is on the block grid
    /// of that piece.
    pub fn block_len(&self, piece: u32, begin: u32) -> Option<u32> {
        let piece_len = self.info.piece_len(piece)?;
        (begin.is_multiple_of(BLOCK_SIZE) && begin < piece_len)
            .then(|| (piece_len - begin).min(BLOCK_SIZE))
    }

    /// Adds a block of piece `piece` starting at byte `begin` of the piece. Returns the whole
    /// piece (not yet verified: hand it to [`super::Store::commit_piece`]) when this was its
    /// last missing block, `None` while blocks are missing.
    ///
    /// Errors, with nothing changed: [`StorageError::OutOfRange`] for a piece or offset
    /// outside the torrent, [`StorageError::Misaligned`] for a block off the grid or of the
    /// wrong length, [`StorageError::DuplicateBlock`] for a block already received,
    /// [`StorageError::TooManyPartialPieces`] when a new piece would exceed the bound.
    pub fn add_block(
        &mut self,
        piece: u32,
        begin: u32,
        data: &[u8],
    ) -> Result<Option<Bytes>, StorageError> {
        let out_of_range = || StorageError::OutOfRange {
            piece,
            begin,
            len: data.len() as u64,
        };
        let piece_len = self.info.piece_len(piece).ok_or_else(out_of_range)?;
        let end = u64::from(begin) + data.len() as u64;
        if end > u64::from(piece_len) {
            return Err(out_of_range());
        }
        let expected = self.block_len(piece, begin);
        if expected.is_none_or(|len| len as usize != data.len()) {
            return Err(StorageError::Misaligned {
                piece,
                begin,
                len: data.len(),
            });
        }
        let block = (begin / BLOCK_SIZE) as usize;

        if !self.partial.contains_key(&piece) && self.partial.len() >= self.max_partial_pieces {
            return Err(StorageError::TooManyPartialPieces {
                limit: self.max_partial_pieces,
            });
        }
        let partial = self.partial.entry(piece).or_insert_with(|| {
            let blocks = piece_len.div_ceil(BLOCK_SIZE) as usize;
            Partial {
                buf: BytesMut::with_capacity(piece_len as usize),
                received: vec![false; blocks],
                missing: blocks,
            }
        });
        match partial.received.get_mut(block) {
            Some(true) => return Err(StorageError::DuplicateBlock { piece, begin }),
            Some(flag) => *flag = true,
            // The block index was derived from a `begin` checked against the piece length.
            None => return Err(out_of_range()),
        }
        let start = begin as usize;
        if start >= partial.buf.len() {
            // Past the furthest block so far: zero the gap (blocks still to come), append.
            partial.buf.resize(start, 0);
            partial.buf.extend_from_slice(data);
        } else if let Some(dest) = partial.buf.get_mut(start..start + data.len()) {
            // A gap left earlier: blocks lie on the grid, so it holds this block whole.
            dest.copy_from_slice(data);
        }
        partial.missing -= 1;
        if partial.missing > 0 {
            return Ok(None);
        }
        Ok(self.partial.remove(&piece).map(|done| done.buf.freeze()))
    }

    /// Whether the block at `begin` of `piece` has been received (for a piece in progress).
    pub fn has_block(&self, piece: u32, begin: u32) -> bool {
        begin.is_multiple_of(BLOCK_SIZE)
            && self.partial.get(&piece).is_some_and(|p| {
                p.received
                    .get((begin / BLOCK_SIZE) as usize)
                    .copied()
                    .unwrap_or(false)
            })
    }

    /// Whether piece `piece` is being assembled.
    pub fn is_partial(&self, piece: u32) -> bool {
        self.partial.contains_key(&piece)
    }

    /// Drops the blocks received for `piece` (its peers went away, or it came whole from
    /// another source). Returns whether there was anything to drop.
    pub fn discard(&mut self, piece: u32) -> bool {
        self.partial.remove(&piece).is_some()
    }

    /// The number of pieces being assembled.
    pub fn partial_count(&self) -> usize {
        self.partial.len()
    }

    /// The bound on [`PieceAssembler::partial_count`].
    pub fn max_partial_pieces(&self) -> usize {
        self.max_partial_pieces
    }
}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;

    use proptest::prelude::*;

    use super::*;
    use crate::storage::test_support::Release;

    const K16: usize = 16 * 1024;

    /// 64 KiB pieces (4 blocks each); the last piece is 1.5 blocks.
    fn release() -> Release {
        static RELEASE: LazyLock<Release> = LazyLock::new(|| {
            Release::single_with_piece_length(3 * 64 * 1024 + K16 + K16 / 2, 64 * 1024)
        });
        RELEASE.clone()
    }

    #[test]
    fn blocks_out_of_order_complete_a_piece() {
        let r = release();
        let mut asm = PieceAssembler::new(r.info());
        let piece = r.piece(1);
        for begin in [3, 0, 2] {
            let at = begin * K16;
            let got = asm
                .add_block(1, at as u32, &piece[at..at + K16])
                .expect("valid block");
            assert!(got.is_none(), "piece finished early");
        }
        assert!(asm.is_partial(1));
        assert!(asm.has_block(1, 0));
        assert!(!asm.has_block(1, K16 as u32));
        let done = asm
            .add_block(1, K16 as u32, &piece[K16..2 * K16])
            .unwrap()
            .expect("piece complete");
        assert_eq!(done, piece);
        assert!(!asm.is_partial(1));
        assert_eq!(asm.partial_count(), 0);
    }

    #[test]
    fn the_short_last_piece_has_a_short_last_block() {
        let r = release();
        let mut asm = PieceAssembler::new(r.info());
        let last = r.info().piece_count() - 1;
        let piece = r.piece(last);
        assert_eq!(asm.block_count(last), Some(2));
        assert_eq!(asm.block_len(last, K16 as u32), Some((K16 / 2) as u32));
        assert!(
            asm.add_block(last, K16 as u32, &piece[K16..])
                .unwrap()
                .is_none()
        );
        let done = asm.add_block(last, 0, &piece[..K16]).unwrap();
        assert_eq!(done, Some(piece));
    }

    #[test]
    fn duplicate_blocks_are_rejected_and_change_nothing() {
        let r = release();
        let mut asm = PieceAssembler::new(r.info());
        let piece = r.piece(0);
        asm.add_block(0, 0, &piece[..K16]).unwrap();
        let err = asm.add_block(0, 0, &[0xAA; K16]).unwrap_err();
        assert!(matches!(
            err,
            StorageError::DuplicateBlock { piece: 0, begin: 0 }
        ));
        assert!(!err.blames_source());
        // The first copy is kept: the piece still assembles to the right bytes.
        for b in 1..4 {
            let at = b * K16;
            if let Some(done) = asm.add_block(0, at as u32, &piece[at..at + K16]).unwrap() {
                assert_eq!(done, piece);
            }
        }
        assert_eq!(asm.partial_count(), 0);
    }

    #[test]
    fn overlapping_misaligned_and_wrong_length_blocks_are_rejected() {
        let r = release();
        let mut asm = PieceAssembler::new(r.info());
        // Overlaps the first and second block.
        let err = asm.add_block(0, (K16 / 2) as u32, &[0; K16]).unwrap_err();
        assert!(matches!(err, StorageError::Misaligned { .. }));
        assert!(err.blames_source());
        // Short and long blocks on the grid.
        assert!(matches!(
            asm.add_block(0, 0, &[0; K16 - 1]),
            Err(StorageError::Misaligned { .. })
        ));
        assert!(matches!(
            asm.add_block(0, 0, &[0; 2 * K16]),
            Err(StorageError::Misaligned { .. })
        ));
        assert!(matches!(
            asm.add_block(0, 0, &[]),
            Err(StorageError::Misaligned { .. })
        ));
        // Nothing was allocated for these.
        assert_eq!(asm.partial_count(), 0);
    }

    #[test]
    fn out_of_range_blocks_are_rejected() {
        let r = release();
        let mut asm = PieceAssembler::new(r.info());
        let count = r.info().piece_count();
        for (piece, begin, len) in [
            (count, 0, K16),
            (u32::MAX, 0, K16),
            (0, 64 * 1024, K16),
            (0, 48 * 1024, 2 * K16),
            (0, u32::MAX, 1),
            (count - 1, K16 as u32, K16),
        ] {
            let err = asm.add_block(piece, begin, &vec![0; len]).unwrap_err();
            assert!(
                matches!(err, StorageError::OutOfRange { .. }),
                "{piece} {begin} {len}: {err}"
            );
        }
        assert_eq!(asm.partial_count(), 0);
    }

    #[test]
    fn partial_pieces_are_bounded() {
        let r = release();
        let mut asm = PieceAssembler::with_limit(r.info(), 2);
        asm.add_block(0, 0, &r.piece(0)[..K16]).unwrap();
        asm.add_block(1, 0, &r.piece(1)[..K16]).unwrap();
        let err = asm.add_block(2, 0, &r.piece(2)[..K16]).unwrap_err();
        assert!(matches!(
            err,
            StorageError::TooManyPartialPieces { limit: 2 }
        ));
        // Pieces already in progress still take blocks.
        asm.add_block(1, K16 as u32, &r.piece(1)[K16..2 * K16])
            .unwrap();
        assert!(asm.discard(0));
        assert!(!asm.discard(0));
        assert!(asm.add_block(2, 0, &r.piece(2)[..K16]).is_ok());
        assert_eq!(asm.partial_count(), asm.max_partial_pieces());
    }

    proptest! {
        #[test]
        fn any_block_order_assembles_the_piece_once(order in Just((0..4usize).collect::<Vec<_>>()).prop_shuffle()) {
            let r = release();
            let mut asm = PieceAssembler::new(r.info());
            let piece = r.piece(2);
            let mut done = Vec::new();
            for b in order {
                let at = b * K16;
                if let Some(p) = asm.add_block(2, at as u32, &piece[at..at + K16]).unwrap() {
                    done.push(p);
                }
            }
            prop_assert_eq!(done, vec![piece]);
        }

        #[test]
        fn arbitrary_blocks_never_panic(piece in 0u32..6, begin in any::<u32>(), len in 0usize..3 * K16) {
            let r = release();
            let mut asm = PieceAssembler::with_limit(r.info(), 1);
            let result = asm.add_block(piece, begin, &vec![7; len]);
            let valid = asm.block_len(piece, begin) == Some(len as u32);
            prop_assert_eq!(result.is_ok(), valid);
        }
    }
}
