//! What can go wrong when pieces are stored, read back or cached.
//!
//! The variants are shaped by what the caller does next: a source that sent a bad piece or
//! a malformed block is dropped ([`StorageError::blames_source`]), a request for a piece we
//! lack is refused, an I/O failure is logged and the release re-fetched or given up.

use std::io;
use std::path::PathBuf;

use swarmcdn_proto::InfoHash;

/// Why a piece store or the cache refused an operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The piece's SHA-1 is not the one in the torrent. Nothing was stored; the source that
    /// sent it (a peer, or every peer that contributed a block, or a web seed) is lying or
    /// broken.
    #[error("piece {piece} does not match its SHA-1 hash")]
    HashMismatch {
        /// The piece index.
        piece: u32,
    },
    /// A whole piece handed in has the wrong number of bytes. Nothing was stored.
    #[error("piece {piece} is {got} bytes, the torrent says {expected}")]
    WrongPieceLength {
        /// The piece index.
        piece: u32,
        /// The piece's length according to the torrent.
        expected: u32,
        /// The length handed in.
        got: usize,
    },
    /// A piece index, or a block range inside a piece, lies outside the torrent.
    #[error("block {begin}+{len} of piece {piece} is outside the torrent")]
    OutOfRange {
        /// The piece index asked for.
        piece: u32,
        /// The block's offset inside the piece.
        begin: u32,
        /// The block's length.
        len: u64,
    },
    /// A block length is 0 or above the read limit ([`super::MAX_READ_BLOCK_LEN`]).
    #[error("block length {len} is not in 1..={max}")]
    BadBlockLength {
        /// The length asked for.
        len: u32,
        /// The largest length served.
        max: u32,
    },
    /// A received block is not on the [`super::BLOCK_SIZE`] grid, or not the length a
    /// block at that offset has: it is not what was requested.
    #[error("block {begin}+{len} of piece {piece} is not a block we request")]
    Misaligned {
        /// The piece index.
        piece: u32,
        /// The block's offset inside the piece.
        begin: u32,
        /// The block's length.
        len: usize,
    },
    /// A block that was already received arrived again (two peers asked for the same block
    /// near the end of a download, or a peer repeating itself). The block is ignored.
    #[error("block at {begin} of piece {piece} was already received")]
    DuplicateBlock {
        /// The piece index.
        piece: u32,
        /// The block's offset inside the piece.
        begin: u32,
    },
    /// Starting another partial piece would exceed the assembler's bound on pieces held in
    /// memory half-built.
    #[error("already assembling {limit} pieces, the limit")]
    TooManyPartialPieces {
        /// The limit in force.
        limit: usize,
    },
    /// The piece has not been verified yet, so none of its bytes may be read.
    #[error("piece {piece} is not verified")]
    NotVerified {
        /// The piece index.
        piece: u32,
    },
    /// A byte range asked of a file reaches past its end.
    #[error("bytes {offset}+{len} are past the end of file #{file} ({file_len} bytes)")]
    BeyondFile {
        /// The file's index in the torrent.
        file: usize,
        /// The range's start inside the file.
        offset: u64,
        /// The range's length.
        len: u64,
        /// The file's length.
        file_len: u64,
    },
    /// There is no such file in the torrent.
    #[error("the torrent has no file {0}")]
    NoSuchFile(String),
    /// A file system operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The release is larger than the budget it would have to fit in.
    #[error("release of {size} bytes is larger than the {limit}-byte budget")]
    TooLarge {
        /// The release's size.
        size: u64,
        /// The budget.
        limit: u64,
    },
    /// The release would fit the budget, but the releases in use or pinned leave no room.
    #[error("cache is full: {needed} bytes needed, {available} can be freed or are free")]
    CacheFull {
        /// The release's size.
        needed: u64,
        /// What is free plus what eviction could free.
        available: u64,
    },
    /// The release is in use (a handle is held) and cannot be removed.
    #[error("release {0} is in use")]
    InUse(InfoHash),
    /// Something in the cache folder is not what we wrote there (a file where a release
    /// folder should be, a stored torrent with another info-hash, a verified piece that can
    /// no longer be read in full).
    #[error("{path}: {detail}")]
    Corrupt {
        /// The file or folder involved.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A seed-only cache ([`CacheMode::SeedOnly`](super::CacheMode::SeedOnly)) has no
    /// complete folder for this release, and may not download one.
    #[error("release {0} is not complete in the seed-only cache")]
    NotInStore(InfoHash),
    /// A seed-only cache's folder for this release has pieces that do not hash right; the
    /// folder was left untouched and the release is not seeded.
    #[error("release {info_hash} is damaged: {} bad piece(s), {}", bad_pieces.len(), piece_list(bad_pieces))]
    Damaged {
        /// The release.
        info_hash: InfoHash,
        /// The pieces that are missing or do not hash right.
        bad_pieces: Vec<u32>,
    },
    /// A blocking task was cancelled because the runtime is shutting down.
    #[error("storage task cancelled (runtime shutting down)")]
    Cancelled,
}

/// The first few of `pieces`, for a message.
fn piece_list(pieces: &[u32]) -> String {
    const SHOWN: usize = 16;
    let mut out = pieces
        .iter()
        .take(SHOWN)
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if pieces.len() > SHOWN {
        out.push_str(", …");
    }
    format!("pieces {out}")
}

impl StorageError {
    /// Whether the error proves the source of the data wrong: a bad hash, a wrong length, a
    /// block that was never requested. The session drops (and may ban) that source. A
    /// duplicate block does not count: it happens to honest peers.
    pub fn blames_source(&self) -> bool {
        matches!(
            self,
            StorageError::HashMismatch { .. }
                | StorageError::WrongPieceLength { .. }
                | StorageError::OutOfRange { .. }
                | StorageError::Misaligned { .. }
        )
    }

    /// An [`StorageError::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        StorageError::Io {
            path: path.into(),
            source,
        }
    }
}
