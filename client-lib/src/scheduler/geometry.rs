//! Piece and block sizes of one torrent, the only facts about the content the scheduler needs.
//!
//! Kept apart from `Info` so the scheduler can be built and tested without a metainfo, and
//! so every size computation (last piece shorter, last block shorter) lives in one place.

use std::ops::Range;

use swarmcdn_proto::metainfo::Info;

/// The piece layout of a torrent: `piece_length` bytes per piece, the last one shorter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PieceGeometry {
    piece_length: u32,
    total_length: u64,
    piece_count: u32,
}

impl PieceGeometry {
    /// A layout of `total_length` bytes cut into `piece_length`-byte pieces, or `None` if
    /// either is 0 or there would be more than `u32::MAX` pieces.
    pub fn new(piece_length: u32, total_length: u64) -> Option<Self> {
        if piece_length == 0 || total_length == 0 {
            return None;
        }
        let piece_count = u32::try_from(total_length.div_ceil(u64::from(piece_length))).ok()?;
        Some(PieceGeometry {
            piece_length,
            total_length,
            piece_count,
        })
    }

    /// The layout described by a validated metainfo.
    pub fn from_info(info: &Info) -> Self {
        PieceGeometry {
            piece_length: info.piece_length(),
            total_length: info.total_length(),
            piece_count: info.piece_count(),
        }
    }

    /// Bytes per piece (all but the last).
    pub const fn piece_length(&self) -> u32 {
        self.piece_length
    }

    /// Content bytes in total.
    pub const fn total_length(&self) -> u64 {
        self.total_length
    }

    /// How many pieces there are.
    pub const fn piece_count(&self) -> u32 {
        self.piece_count
    }

    /// Where piece `piece` starts in the content (the total length past the end).
    pub fn piece_offset(&self, piece: u32) -> u64 {
        (u64::from(piece) * u64::from(self.piece_length)).min(self.total_length)
    }

    /// Bytes in piece `piece` (0 past the end).
    pub fn piece_len(&self, piece: u32) -> u32 {
        let len = self.piece_offset(piece.saturating_add(1)) - self.piece_offset(piece);
        // At most `piece_length`, a u32.
        u32::try_from(len).unwrap_or(0)
    }

    /// Bytes in the pieces `pieces` together.
    pub fn range_len(&self, pieces: &Range<u32>) -> u64 {
        self.piece_offset(pieces.end)
            .saturating_sub(self.piece_offset(pieces.start))
    }

    /// Blocks of `block_size` bytes in piece `piece`.
    pub(crate) fn block_count(&self, piece: u32, block_size: u32) -> u32 {
        self.piece_len(piece).div_ceil(block_size)
    }

    /// `(begin, length)` of block `block` of piece `piece`.
    pub(crate) fn block(&self, piece: u32, block: u32, block_size: u32) -> (u32, u32) {
        let begin = block.saturating_mul(block_size);
        let length = self.piece_len(piece).saturating_sub(begin).min(block_size);
        (begin, length)
    }

    /// The index of the block `(begin, length)` of piece `piece`, if that is exactly one of
    /// its blocks.
    pub(crate) fn block_index(
        &self,
        piece: u32,
        begin: u32,
        length: u32,
        block_size: u32,
    ) -> Option<u32> {
        if piece >= self.piece_count || !begin.is_multiple_of(block_size) {
            return None;
        }
        let block = begin / block_size;
        (block < self.block_count(piece, block_size)
            && self.block(piece, block, block_size) == (begin, length))
            .then_some(block)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_piece_and_last_block_are_shorter() {
        let geometry = PieceGeometry::new(32 * 1024, 80 * 1024 + 100).unwrap();
        assert_eq!(geometry.piece_count(), 3);
        assert_eq!(geometry.piece_len(0), 32 * 1024);
        assert_eq!(geometry.piece_len(2), 16 * 1024 + 100);
        assert_eq!(geometry.piece_len(3), 0);
        assert_eq!(geometry.block_count(2, 16 * 1024), 2);
        assert_eq!(geometry.block(2, 1, 16 * 1024), (16 * 1024, 100));
        assert_eq!(geometry.range_len(&(1..3)), 48 * 1024 + 100);
        assert_eq!(geometry.range_len(&(0..u32::MAX)), 80 * 1024 + 100);
    }

    #[test]
    fn block_index_accepts_only_exact_blocks() {
        let geometry = PieceGeometry::new(32 * 1024, 40 * 1024).unwrap();
        let bs = 16 * 1024;
        assert_eq!(geometry.block_index(0, bs, bs, bs), Some(1));
        assert_eq!(geometry.block_index(1, 0, 8 * 1024, bs), Some(0));
        assert_eq!(geometry.block_index(1, 0, bs, bs), None, "too long");
        assert_eq!(geometry.block_index(0, 1, bs, bs), None, "misaligned");
        assert_eq!(
            geometry.block_index(0, 2 * bs, bs, bs),
            None,
            "past the piece"
        );
        assert_eq!(geometry.block_index(2, 0, bs, bs), None, "no such piece");
        assert_eq!(geometry.block_index(0, u32::MAX - 16383, bs, bs), None);
    }

    #[test]
    fn degenerate_layouts_are_refused() {
        assert_eq!(PieceGeometry::new(0, 10), None);
        assert_eq!(PieceGeometry::new(10, 0), None);
        assert_eq!(PieceGeometry::new(1, u64::from(u32::MAX) + 1), None);
        assert!(PieceGeometry::new(1, u64::from(u32::MAX)).is_some());
    }
}
