//! BEP 9 metadata exchange (`ut_metadata`): fetching a torrent's info dictionary from peers,
//! 16 KiB at a time, when all we have is a magnet link.
//!
//! A ut_metadata message is an extended message whose payload is a bencoded dictionary,
//! followed, for `data` messages, by the raw piece bytes. The dictionary is therefore *not*
//! the whole payload: we find where it ends with a prefix decode and take the rest as the
//! piece, as a zero-copy slice of the payload.
//!
//! Sizes are checked as tightly as the spec allows, so the engine can trust what it gets:
//! `total_size` is at most [`MAX_METADATA_SIZE`], a piece index lies inside the metadata, and
//! a data message carries exactly the bytes its piece must have (16 KiB, or the remainder for
//! the last piece). The info-hash check on the assembled metadata is the engine's job.

use bip_bencode::BRefAccess;
use bytes::Bytes;

use super::extended::checked_metadata_size;
use super::{Message, PeerWireError};
use crate::bencode::{self, Limits, put_bytes, put_int};

/// The extension name announced in the extended handshake's `m` dictionary.
pub const UT_METADATA: &str = "ut_metadata";

/// The size of every metadata piece but the last (BEP 9).
pub const METADATA_PIECE_LEN: usize = 16 * 1024;

/// The largest metadata (info dictionary) we fetch, in bytes: the same bound as the largest
/// torrent file we parse ([`bencode::Limits::DEFAULT`]), since the info dictionary is part of
/// one. A 1 GB release at 16 KiB pieces has about 1.3 MB of metadata.
pub const MAX_METADATA_SIZE: u32 = Limits::DEFAULT.max_input as u32;

/// The largest dictionary accepted in front of a piece: real ones are under 60 bytes, so
/// this leaves room for keys added by future versions of the extension.
const MAX_DICT_LEN: usize = 1024;

/// Nesting accepted in the dictionary (it is flat; unknown keys may nest a little).
const MAX_DEPTH: usize = 4;

/// The number of metadata pieces for metadata of `total_size` bytes.
pub const fn metadata_piece_count(total_size: u32) -> u32 {
    total_size.div_ceil(METADATA_PIECE_LEN as u32)
}

/// The length of metadata piece `piece` for metadata of `total_size` bytes, or `None` if the
/// metadata has no such piece.
fn piece_len(piece: u32, total_size: u32) -> Option<usize> {
    let start = u64::from(piece) * METADATA_PIECE_LEN as u64;
    let rest = u64::from(total_size)
        .checked_sub(start)
        .filter(|&r| r > 0)?;
    Some(rest.min(METADATA_PIECE_LEN as u64) as usize)
}

/// A BEP 9 message, carried as the payload of [`Message::Extended`] under the id the
/// receiver chose for [`UT_METADATA`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MetadataMessage {
    /// `msg_type` 0: asks for a piece of the metadata.
    Request {
        /// The metadata piece index.
        piece: u32,
    },
    /// `msg_type` 1: a piece of the metadata.
    Data {
        /// The metadata piece index.
        piece: u32,
        /// The whole metadata's size in bytes.
        total_size: u32,
        /// The piece's bytes: [`METADATA_PIECE_LEN`] of them, or the rest for the last piece.
        data: Bytes,
    },
    /// `msg_type` 2: the sender will not send this piece.
    Reject {
        /// The metadata piece index.
        piece: u32,
    },
}

impl MetadataMessage {
    /// The metadata piece the message is about.
    pub const fn piece(&self) -> u32 {
        match self {
            MetadataMessage::Request { piece }
            | MetadataMessage::Data { piece, .. }
            | MetadataMessage::Reject { piece } => *piece,
        }
    }

    /// Decodes the payload of an extended message sent under our ut_metadata id. The
    /// `data` of a data message is a slice of `payload`, not a copy.
    ///
    /// An unknown `msg_type` gives [`PeerWireError::UnknownMetadataMessageType`], which BEP 9
    /// says to ignore.
    pub fn decode(payload: &Bytes) -> Result<Self, PeerWireError> {
        let limits = Limits {
            max_input: MAX_DICT_LEN + METADATA_PIECE_LEN,
            max_depth: MAX_DEPTH,
            ..Limits::DEFAULT
        };
        let (root, dict_end) = bencode::decode_prefix_ref(payload, &limits)?;
        let dict = root.dict().ok_or(invalid("not a dictionary"))?;
        let int = |key: &[u8]| dict.lookup(key).and_then(BRefAccess::int);

        let msg_type = int(b"msg_type").ok_or(invalid("`msg_type` is missing"))?;
        if !(0..=2).contains(&msg_type) {
            return Err(PeerWireError::UnknownMetadataMessageType(msg_type));
        }
        let piece = int(b"piece")
            .and_then(|p| u32::try_from(p).ok())
            .filter(|&p| p < metadata_piece_count(MAX_METADATA_SIZE))
            .ok_or(invalid("`piece` is missing or past the largest metadata"))?;
        let rest = payload.len().saturating_sub(dict_end);

        match msg_type {
            1 => {
                let total_size = int(b"total_size").ok_or(invalid("`total_size` is missing"))?;
                let total_size = checked_metadata_size(total_size)?;
                let expected = piece_len(piece, total_size)
                    .ok_or(invalid("`piece` is past the end of the metadata"))?;
                if rest != expected {
                    return Err(PeerWireError::MetadataPieceLength {
                        piece,
                        expected,
                        got: rest,
                    });
                }
                Ok(MetadataMessage::Data {
                    piece,
                    total_size,
                    data: payload.slice(dict_end..),
                })
            }
            _ if rest != 0 => Err(invalid("bytes follow a request or reject")),
            0 => Ok(MetadataMessage::Request { piece }),
            _ => Ok(MetadataMessage::Reject { piece }),
        }
    }

    /// Appends the payload (dictionary, then the piece bytes for data) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (msg_type, total_size, data) = match self {
            MetadataMessage::Request { .. } => (0, None, None),
            MetadataMessage::Data {
                total_size, data, ..
            } => (1, Some(*total_size), Some(data)),
            MetadataMessage::Reject { .. } => (2, None, None),
        };
        // Keys in canonical (sorted) order: msg_type, piece, total_size.
        out.push(b'd');
        put_bytes(out, b"msg_type");
        put_int(out, msg_type);
        put_bytes(out, b"piece");
        put_int(out, i64::from(self.piece()));
        if let Some(total_size) = total_size {
            put_bytes(out, b"total_size");
            put_int(out, i64::from(total_size));
        }
        out.push(b'e');
        if let Some(data) = data {
            out.extend_from_slice(data);
        }
    }

    /// The extended message carrying this one, under `extension_id`: the id the *receiver*
    /// gave [`UT_METADATA`] in its extended handshake.
    pub fn to_message(&self, extension_id: u8) -> Message {
        super::extended_message(extension_id, |out| self.encode(out))
    }
}

fn invalid(reason: &'static str) -> PeerWireError {
    PeerWireError::InvalidMetadataMessage { reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bencode::BencodeError;
    use proptest::prelude::*;

    fn decode(bytes: &[u8]) -> Result<MetadataMessage, PeerWireError> {
        MetadataMessage::decode(&Bytes::copy_from_slice(bytes))
    }

    #[test]
    fn decodes_the_bep9_examples() {
        assert_eq!(
            decode(b"d8:msg_typei0e5:piecei0ee"),
            Ok(MetadataMessage::Request { piece: 0 })
        );
        assert_eq!(
            decode(b"d8:msg_typei2e5:piecei0ee"),
            Ok(MetadataMessage::Reject { piece: 0 })
        );
        let mut data = b"d8:msg_typei1e5:piecei0e10:total_sizei34256ee".to_vec();
        data.extend_from_slice(&[b'x'; METADATA_PIECE_LEN]);
        assert_eq!(
            decode(&data),
            Ok(MetadataMessage::Data {
                piece: 0,
                total_size: 34256,
                data: Bytes::from(vec![b'x'; METADATA_PIECE_LEN]),
            })
        );
        // The last of the three pieces holds the remainder.
        let mut last = b"d8:msg_typei1e5:piecei2e10:total_sizei34256ee".to_vec();
        last.extend_from_slice(&[b'y'; 34256 - 2 * METADATA_PIECE_LEN]);
        assert!(matches!(
            decode(&last),
            Ok(MetadataMessage::Data { piece: 2, data, .. }) if data.len() == 1488
        ));
    }

    #[test]
    fn encodes_canonically() {
        let mut out = Vec::new();
        MetadataMessage::Data {
            piece: 1,
            total_size: 16390,
            data: Bytes::from_static(b"sixby"),
        }
        .encode(&mut out);
        assert_eq!(out, b"d8:msg_typei1e5:piecei1e10:total_sizei16390eesixby");
        assert_eq!(
            MetadataMessage::Request { piece: 3 }.to_message(2),
            Message::Extended {
                id: 2,
                payload: Bytes::from_static(b"d8:msg_typei0e5:piecei3ee"),
            }
        );
    }

    #[test]
    fn data_is_a_slice_of_the_payload() {
        let payload =
            Bytes::from([&b"d8:msg_typei1e5:piecei0e10:total_sizei4ee"[..], b"abcd"].concat());
        let Ok(MetadataMessage::Data { data, .. }) = MetadataMessage::decode(&payload) else {
            panic!("not a data message");
        };
        assert_eq!(data.as_ptr(), payload[payload.len() - 4..].as_ptr());
    }

    #[test]
    fn data_longer_than_a_piece_is_refused() {
        let mut data = b"d8:msg_typei1e5:piecei0e10:total_sizei40000ee".to_vec();
        data.extend_from_slice(&[0; METADATA_PIECE_LEN + 1]);
        assert_eq!(
            decode(&data),
            Err(PeerWireError::MetadataPieceLength {
                piece: 0,
                expected: METADATA_PIECE_LEN,
                got: METADATA_PIECE_LEN + 1,
            })
        );
        // Short data for a piece that is not the last is refused too.
        let short = b"d8:msg_typei1e5:piecei0e10:total_sizei40000eeabc";
        assert!(matches!(
            decode(short),
            Err(PeerWireError::MetadataPieceLength { got: 3, .. })
        ));
    }

    #[test]
    fn sizes_and_indices_are_bounded() {
        let too_big = format!(
            "d8:msg_typei1e5:piecei0e10:total_sizei{}ee",
            u64::from(MAX_METADATA_SIZE) + 1
        );
        assert!(matches!(
            decode(too_big.as_bytes()),
            Err(PeerWireError::MetadataTooLarge { .. })
        ));
        // Piece 1 of 16 bytes of metadata does not exist.
        assert!(matches!(
            decode(b"d8:msg_typei1e5:piecei1e10:total_sizei16eeabcd"),
            Err(PeerWireError::InvalidMetadataMessage { .. })
        ));
        let max_pieces = metadata_piece_count(MAX_METADATA_SIZE);
        assert_eq!(max_pieces, 1024);
        let last = format!("d8:msg_typei0e5:piecei{}ee", max_pieces - 1);
        assert!(decode(last.as_bytes()).is_ok());
        let past = format!("d8:msg_typei0e5:piecei{max_pieces}ee");
        assert!(matches!(
            decode(past.as_bytes()),
            Err(PeerWireError::InvalidMetadataMessage { .. })
        ));
        assert!(decode(b"d8:msg_typei0e5:piecei-1ee").is_err());
        // The whole payload is bounded.
        let mut huge = b"d8:msg_typei1e5:piecei0e10:total_sizei40000ee".to_vec();
        huge.resize(MAX_DICT_LEN + METADATA_PIECE_LEN + 1, 0);
        assert!(matches!(
            decode(&huge),
            Err(PeerWireError::Bencode(BencodeError::TooLarge { .. }))
        ));
    }

    #[test]
    fn malformed_messages_are_refused() {
        for bad in [
            &b""[..],
            b"le",
            b"d5:piecei0ee",                           // no msg_type
            b"d8:msg_typei0ee",                        // no piece
            b"d8:msg_type1:05:piecei0ee",              // msg_type not an integer
            b"d8:msg_typei1e5:piecei0eeabc",           // data without total_size
            b"d8:msg_typei0e5:piecei0eeextra",         // bytes after a request
            b"d8:msg_typei2e5:piecei0e1:xllllleeeeee", // too deep
        ] {
            assert!(decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn unknown_msg_types_are_reported_for_ignoring() {
        assert_eq!(
            decode(b"d8:msg_typei3e5:piecei0ee"),
            Err(PeerWireError::UnknownMetadataMessageType(3))
        );
        // Even when the rest would not be valid for a known type.
        assert_eq!(
            decode(b"d8:msg_typei-7eetrailing"),
            Err(PeerWireError::UnknownMetadataMessageType(-7))
        );
    }

    fn arb_metadata_message() -> impl Strategy<Value = MetadataMessage> {
        let max_piece = metadata_piece_count(MAX_METADATA_SIZE);
        prop_oneof![
            (0..max_piece).prop_map(|piece| MetadataMessage::Request { piece }),
            (0..max_piece).prop_map(|piece| MetadataMessage::Reject { piece }),
            (1..=3 * METADATA_PIECE_LEN as u32 + 100)
                .prop_flat_map(|total| (Just(total), 0..metadata_piece_count(total), any::<u8>()))
                .prop_map(|(total_size, piece, fill)| {
                    let len = piece_len(piece, total_size).unwrap_or(0);
                    MetadataMessage::Data {
                        piece,
                        total_size,
                        data: Bytes::from(vec![fill; len]),
                    }
                }),
            // Large metadata, so the upper bound is exercised too.
            (0..max_piece).prop_map(|piece| MetadataMessage::Data {
                piece,
                total_size: MAX_METADATA_SIZE,
                data: Bytes::from(vec![7; METADATA_PIECE_LEN]),
            }),
        ]
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_identity(message in arb_metadata_message()) {
            let mut payload = Vec::new();
            message.encode(&mut payload);
            prop_assert_eq!(decode(&payload), Ok(message.clone()));
            // And through the message layer, zero-copy.
            let mut buf = bytes::BytesMut::new();
            message.to_message(3).encode(&mut buf);
            let decoded = Message::decode_from(&mut buf, &super::super::WireLimits::default());
            let Ok(Some(Message::Extended { id: 3, payload })) = decoded else {
                return Err(TestCaseError::fail("not an extended message"));
            };
            prop_assert_eq!(MetadataMessage::decode(&payload), Ok(message));
        }

        #[test]
        fn arbitrary_dictionaries_never_panic(
            msg_type in -1i64..4,
            piece in -1i64..1100,
            total in proptest::option::of(-1i64..100_000),
            tail in 0usize..20_000,
        ) {
            let mut payload = Vec::new();
            payload.push(b'd');
            put_bytes(&mut payload, b"msg_type");
            put_int(&mut payload, msg_type);
            put_bytes(&mut payload, b"piece");
            put_int(&mut payload, piece);
            if let Some(total) = total {
                put_bytes(&mut payload, b"total_size");
                put_int(&mut payload, total);
            }
            payload.push(b'e');
            payload.resize(payload.len() + tail, 0);
            // Whatever decodes re-encodes to exactly the same payload.
            if let Ok(message) = decode(&payload) {
                let mut again = Vec::new();
                message.encode(&mut again);
                prop_assert_eq!(again, payload);
            }
        }
    }

    proptest! {
        // Fewer cases: payloads are up to 16 KiB, cut at every offset, and truncations inside
        // the dictionary are bencode errors, for each of which the bencode library captures
        // a backtrace when RUST_BACKTRACE is set.
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn every_truncation_is_an_error(message in arb_metadata_message()) {
            let mut payload = Vec::new();
            message.encode(&mut payload);
            let payload = Bytes::from(payload);
            for cut in 0..payload.len() {
                prop_assert!(MetadataMessage::decode(&payload.slice(..cut)).is_err(), "cut {}", cut);
            }
        }
    }
}
