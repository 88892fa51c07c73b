//! Serving our metadata to peers that arrived with a magnet link.

use bytes::Bytes;
use swarmcdn_proto::metainfo::Metainfo;
use swarmcdn_proto::peer::{
    ExtendedHandshake, MAX_METADATA_SIZE, METADATA_PIECE_LEN, MetadataMessage, UT_METADATA,
    metadata_piece_count,
};

use super::OUR_UT_METADATA_ID;

/// Why bytes cannot be served as metadata.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataSizeError {
    /// There are no bytes (an info dictionary is at least `de`).
    #[error("metadata is empty")]
    Empty,
    /// The bytes are over [`MAX_METADATA_SIZE`], so no peer of ours would fetch them.
    #[error("metadata is {size} bytes, the limit is {limit}")]
    TooLarge {
        /// The size offered.
        size: usize,
        /// The limit in force.
        limit: u32,
    },
}

/// Answers BEP 9 requests for an info dictionary we hold.
///
/// Stateless per request: the session decides how many requests a peer may have answered
/// (its upload limiter already meters the bytes); this type only maps a request to its
/// answer. Data pieces are zero-copy slices of the info bytes.
#[derive(Debug, Clone)]
pub struct MetadataServer {
    info: Bytes,
    size: u32,
}

impl MetadataServer {
    /// Serves `info_bytes`, the bencoded info dictionary exactly as hashed.
    pub fn new(info_bytes: Bytes) -> Result<Self, MetadataSizeError> {
        if info_bytes.is_empty() {
            return Err(MetadataSizeError::Empty);
        }
        let size = u32::try_from(info_bytes.len())
            .ok()
            .filter(|&s| s <= MAX_METADATA_SIZE)
            .ok_or(MetadataSizeError::TooLarge {
                size: info_bytes.len(),
                limit: MAX_METADATA_SIZE,
            })?;
        Ok(Self {
            info: info_bytes,
            size,
        })
    }

    /// Serves the info dictionary of `metainfo`.
    pub fn from_metainfo(metainfo: &Metainfo) -> Result<Self, MetadataSizeError> {
        Self::new(Bytes::copy_from_slice(metainfo.info_bytes()))
    }

    /// The metadata's size in bytes: our handshake's `metadata_size`.
    pub fn metadata_size(&self) -> u32 {
        self.size
    }

    /// How many 16 KiB pieces the metadata has.
    pub fn piece_count(&self) -> u32 {
        metadata_piece_count(self.size)
    }

    /// Puts our `ut_metadata` entry (id [`OUR_UT_METADATA_ID`]) and `metadata_size` in
    /// `handshake`.
    pub fn advertise(&self, handshake: &mut ExtendedHandshake) {
        handshake
            .m
            .insert(UT_METADATA.to_owned(), OUR_UT_METADATA_ID);
        handshake.metadata_size = Some(self.size);
    }

    /// The answer to `message`: `Data` for a request of an existing piece, `Reject` for a
    /// request past the end, nothing for a data or reject message (those answer requests
    /// we never make while serving).
    pub fn answer(&self, message: &MetadataMessage) -> Option<MetadataMessage> {
        let MetadataMessage::Request { piece } = *message else {
            return None;
        };
        Some(match self.piece(piece) {
            Some(data) => MetadataMessage::Data {
                piece,
                total_size: self.size,
                data,
            },
            None => MetadataMessage::Reject { piece },
        })
    }

    /// The bytes of piece `piece`, if the metadata has it.
    pub fn piece(&self, piece: u32) -> Option<Bytes> {
        let start = usize::try_from(piece)
            .ok()?
            .checked_mul(METADATA_PIECE_LEN)?;
        if start >= self.info.len() {
            return None;
        }
        let end = start
            .saturating_add(METADATA_PIECE_LEN)
            .min(self.info.len());
        Some(self.info.slice(start..end))
    }
}
