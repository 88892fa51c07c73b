//! The peer wire: the handshake and the length-prefixed messages peers exchange over TCP
//! (BEP 3), with the Fast extension (BEP 6), the extension protocol (BEP 10), metadata
//! exchange (BEP 9) and swarmcdn's own manifest exchange ([`ManifestMessage`]).
//!
//! Why it looks the way it does:
//!
//! - **Sans-IO and streaming.** Every decoder takes the bytes received so far and returns
//!   `Ok(None)` until a whole handshake or message is buffered, then the value and how many
//!   bytes it used. The client engine owns the socket and the buffer; this module never reads.
//! - **Bounded before anything is allocated.** A message's 4-byte length prefix is checked
//!   against [`WireLimits::max_message_len`] as soon as those 4 bytes arrive, so a peer that
//!   announces a 4 GiB message is refused before we reserve a byte for it.
//! - **Zero-copy for block data.** [`Message::decode_from`] splits the frame off a
//!   [`bytes::BytesMut`] and hands out `Piece` data as a [`bytes::Bytes`] slice of it: the
//!   16 KiB blocks that make up nearly all traffic are never copied between the socket and
//!   the piece buffer.
//! - **Unknown message ids are not errors.** They decode to [`Message::Unknown`] (their
//!   length is still bounded) so the engine can ignore them and keep a peer that speaks an
//!   extension we don't, as BEP 10's design expects. Malformed *known* messages are errors.
//! - **Plaintext only, and say so fast.** [`Handshake::decode`] fails on the first byte that
//!   differs from `\x13BitTorrent protocol`: a peer that opened with an encrypted (MSE)
//!   handshake learns at once that we closed, and clients such as aria2 then retry in
//!   plaintext instead of waiting for a timeout.
//! - **Extension payloads are typed separately.** [`Message::Extended`] carries the raw
//!   payload; [`ExtendedHandshake`] and [`MetadataMessage`] decode it when the engine knows
//!   which extension the id names (ids are chosen per connection by the receiver, BEP 10).
//!
//! ```
//! use swarmcdn_proto::peer::{Message, WireLimits};
//!
//! let mut wire = Vec::new();
//! Message::Interested.encode(&mut wire);
//! Message::Request { index: 1, begin: 16384, length: 16384 }.encode(&mut wire);
//!
//! let limits = WireLimits::default();
//! let (first, used) = Message::decode(&wire, &limits)?.expect("a whole message");
//! assert_eq!(first, Message::Interested);
//! let (second, _) = Message::decode(&wire[used..], &limits)?.expect("a whole message");
//! assert_eq!(second, Message::Request { index: 1, begin: 16384, length: 16384 });
//! // Half a message is not an error: it means "read more".
//! assert_eq!(Message::decode(&wire[used..used + 3], &limits)?, None);
//! # Ok::<(), swarmcdn_proto::peer::PeerWireError>(())
//! ```

mod bitfield;
mod extended;
mod handshake;
mod manifest_ext;
mod message;
mod metadata;

pub use bitfield::Bitfield;
pub use extended::{
    EXTENDED_HANDSHAKE_ID, ExtendedHandshake, MAX_CLIENT_NAME_LEN, MAX_EXTENDED_HANDSHAKE_LEN,
    MAX_EXTENSION_NAME_LEN, MAX_EXTENSIONS,
};
pub use handshake::{Handshake, PROTOCOL_PREFIX, Reserved};
pub use manifest_ext::{
    DIRECTORY_DOMAIN, MAX_MANIFEST_MESSAGE_LEN, ManifestMessage, SWARMCDN_MANIFEST,
    directory_info_hash,
};
pub use message::Message;
pub use metadata::{
    MAX_METADATA_SIZE, METADATA_PIECE_LEN, MetadataMessage, UT_METADATA, metadata_piece_count,
};

use crate::bencode::BencodeError;

/// The extended message (BEP 10) under `id` whose payload `encode` writes.
fn extended_message(id: u8, encode: impl FnOnce(&mut Vec<u8>)) -> Message {
    let mut payload = Vec::new();
    encode(&mut payload);
    Message::Extended {
        id,
        payload: bytes::Bytes::from(payload),
    }
}

/// Bounds on what a peer may send us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireLimits {
    /// The largest message accepted, counted as its length prefix counts it (the id byte and
    /// the payload, not the 4 prefix bytes).
    pub max_message_len: u32,
}

impl WireLimits {
    /// 256 KiB. The largest messages a well-behaved peer sends are:
    ///
    /// - `piece`: a 16 KiB block plus 9 bytes (BEP 3 clients request 16 KiB; some accept
    ///   requests up to 128 KiB, which still fits);
    /// - `bitfield`: one bit per piece, so 256 KiB covers two million pieces (32 GiB at
    ///   16 KiB pieces; a 1 GB release at 16 KiB pieces needs about 8 KiB);
    /// - a ut_metadata piece: 16 KiB plus a short dictionary.
    ///
    /// The bound is also the most a peer can make us buffer per connection, so it is kept
    /// well below "anything goes" (a few hundred connections cost at most tens of MiB).
    pub const DEFAULT: WireLimits = WireLimits {
        max_message_len: 256 * 1024,
    };
}

impl Default for WireLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why bytes from a peer are not an acceptable handshake or message.
///
/// Every variant means the peer broke the protocol and the connection should be closed,
/// except [`PeerWireError::UnknownMetadataMessageType`], which BEP 9 says to ignore.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerWireError {
    /// The handshake does not start with `\x13BitTorrent protocol` (an encrypted handshake or
    /// another protocol). Reported at the first byte that differs.
    #[error("not a plaintext BitTorrent handshake (byte {offset} differs)")]
    NotBitTorrent {
        /// The offset of the first differing byte.
        offset: usize,
    },
    /// A message's length prefix is over [`WireLimits::max_message_len`].
    #[error("peer message of {len} bytes is over the limit of {limit}")]
    MessageTooLong {
        /// The announced length.
        len: u32,
        /// The limit in force.
        limit: u32,
    },
    /// A message of a known id has a payload of the wrong length.
    #[error("peer message id {id} has a payload of {len} bytes, which is not valid for it")]
    BadPayloadLength {
        /// The message id.
        id: u8,
        /// The payload length received (after the id byte).
        len: usize,
    },
    /// A bitfield's byte length does not match the torrent's piece count.
    #[error("bitfield is {got} bytes, {expected} expected for this piece count")]
    BitfieldLength {
        /// `ceil(piece_count / 8)`.
        expected: usize,
        /// The length received.
        got: usize,
    },
    /// A bitfield has bits set past the last piece.
    #[error("bitfield has spare bits set past the last piece")]
    BitfieldSpareBits,
    /// A piece index is not below the torrent's piece count.
    #[error("piece {index} is out of range (the torrent has {piece_count} pieces)")]
    PieceOutOfRange {
        /// The index received.
        index: u32,
        /// The torrent's piece count.
        piece_count: u32,
    },
    /// An extension payload is not valid bencode (or is too deep).
    #[error("extension message: {0}")]
    Bencode(#[from] BencodeError),
    /// A BEP 10 extended handshake is bencode but not a valid handshake.
    #[error("invalid extended handshake: {reason}")]
    InvalidExtendedHandshake {
        /// What is wrong.
        reason: &'static str,
    },
    /// A BEP 10 extended handshake names more extensions than [`MAX_EXTENSIONS`].
    #[error("extended handshake names {count} extensions, the limit is {limit}")]
    TooManyExtensions {
        /// The number named.
        count: usize,
        /// The limit in force.
        limit: usize,
    },
    /// A BEP 9 ut_metadata message is malformed.
    #[error("invalid ut_metadata message: {reason}")]
    InvalidMetadataMessage {
        /// What is wrong.
        reason: &'static str,
    },
    /// A BEP 9 ut_metadata message has a `msg_type` we don't know. BEP 9 says to ignore
    /// such messages rather than drop the peer.
    #[error("unknown ut_metadata msg_type {0}")]
    UnknownMetadataMessageType(i64),
    /// A `swarmcdn_manifest` message (a swarmcdn extension) is malformed.
    #[error("invalid swarmcdn_manifest message: {reason}")]
    InvalidManifestMessage {
        /// What is wrong.
        reason: &'static str,
    },
    /// A metadata size (handshake `metadata_size` or ut_metadata `total_size`) is negative or
    /// over [`MAX_METADATA_SIZE`].
    #[error("metadata size {size} is outside 0..={limit}")]
    MetadataTooLarge {
        /// The size announced.
        size: i64,
        /// The limit in force.
        limit: u32,
    },
    /// A ut_metadata data message carries the wrong number of bytes for its piece (every
    /// piece is [`METADATA_PIECE_LEN`] bytes except the last, which holds the rest).
    #[error("metadata piece {piece} carries {got} bytes, {expected} expected")]
    MetadataPieceLength {
        /// The metadata piece index.
        piece: u32,
        /// The length that piece must have.
        expected: usize,
        /// The length received.
        got: usize,
    },
}
