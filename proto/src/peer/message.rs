//! Length-prefixed peer messages (BEP 3, with BEP 5's `port`, BEP 6's Fast extension
//! messages and BEP 10's `extended`).
//!
//! Every message after the handshake is `<u32 length><u8 id><payload>`, big-endian; a length
//! of zero is a keep-alive with no id. Decoding is done in two steps: [`Message::frame_len`]
//! reads the length prefix and enforces [`WireLimits::max_message_len`] (so nothing is
//! allocated for an oversized message), then the body is parsed once it is all buffered.
//! Both decoders share the parser; they differ only in where variable-length payloads
//! (`bitfield`, `piece`, `extended`, unknown) come from: a copy for [`Message::decode`], a
//! shared slice of the receive buffer for [`Message::decode_from`].
//!
//! Whether a message is *allowed* (Fast messages only when both sides set the Fast bit, a
//! bitfield only first, a piece only if requested) is connection state, and the engine's job.

use bytes::{BufMut, Bytes, BytesMut};

use super::{PeerWireError, WireLimits};

/// Message ids (BEP 3, BEP 5, BEP 6, BEP 10).
mod id {
    pub(super) const CHOKE: u8 = 0;
    pub(super) const UNCHOKE: u8 = 1;
    pub(super) const INTERESTED: u8 = 2;
    pub(super) const NOT_INTERESTED: u8 = 3;
    pub(super) const HAVE: u8 = 4;
    pub(super) const BITFIELD: u8 = 5;
    pub(super) const REQUEST: u8 = 6;
    pub(super) const PIECE: u8 = 7;
    pub(super) const CANCEL: u8 = 8;
    pub(super) const PORT: u8 = 9;
    pub(super) const SUGGEST: u8 = 13;
    pub(super) const HAVE_ALL: u8 = 14;
    pub(super) const HAVE_NONE: u8 = 15;
    pub(super) const REJECT: u8 = 16;
    pub(super) const ALLOWED_FAST: u8 = 17;
    pub(super) const EXTENDED: u8 = 20;
}

/// The length prefix's size.
const PREFIX_LEN: usize = 4;

/// One peer message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Message {
    /// No id, no payload: keeps an idle connection open.
    KeepAlive,
    /// The sender will not serve our requests. Without BEP 6 the pending ones are dropped
    /// silently; with it, each gets a `reject`.
    Choke,
    /// The sender will serve our requests.
    Unchoke,
    /// The sender wants pieces we have.
    Interested,
    /// The sender wants nothing from us.
    NotInterested,
    /// The sender has completed and verified a piece.
    Have {
        /// The piece index.
        piece: u32,
    },
    /// The pieces the sender has, one bit per piece, high bit of byte 0 first. Checked against
    /// the torrent's piece count with [`super::Bitfield::from_payload`].
    Bitfield(Bytes),
    /// Asks for a block of a piece.
    Request {
        /// The piece index.
        index: u32,
        /// The block's offset inside the piece.
        begin: u32,
        /// The block's length (16 KiB by convention).
        length: u32,
    },
    /// A block of a piece.
    Piece {
        /// The piece index.
        index: u32,
        /// The block's offset inside the piece.
        begin: u32,
        /// The block's bytes.
        data: Bytes,
    },
    /// Withdraws a request.
    Cancel {
        /// The piece index.
        index: u32,
        /// The block's offset inside the piece.
        begin: u32,
        /// The block's length.
        length: u32,
    },
    /// The sender's DHT port (BEP 5).
    Port(u16),
    /// BEP 6: the sender suggests we download this piece.
    Suggest {
        /// The piece index.
        piece: u32,
    },
    /// BEP 6: the sender has every piece (instead of a full bitfield).
    HaveAll,
    /// BEP 6: the sender has no piece (instead of an empty bitfield).
    HaveNone,
    /// BEP 6: the sender will not serve this request.
    Reject {
        /// The piece index.
        index: u32,
        /// The block's offset inside the piece.
        begin: u32,
        /// The block's length.
        length: u32,
    },
    /// BEP 6: we may request this piece even while choked.
    AllowedFast {
        /// The piece index.
        piece: u32,
    },
    /// BEP 10: an extension message. Id 0 is the extended handshake
    /// ([`super::ExtendedHandshake`]); other ids are the ones *the receiver* announced in its
    /// extended handshake's `m` dictionary (e.g. for [`super::MetadataMessage`]).
    Extended {
        /// The extension message id.
        id: u8,
        /// The extension's payload, not yet decoded.
        payload: Bytes,
    },
    /// A message id this module does not know, kept so the engine can ignore it and keep the
    /// peer. Its length was still checked against [`WireLimits::max_message_len`]. Encoding
    /// writes `id` and `payload` as they are, so an `Unknown` built with a known id would
    /// decode as that message (or fail); the decoder only ever produces unknown ids.
    Unknown {
        /// The message id.
        id: u8,
        /// The raw payload after the id byte.
        payload: Bytes,
    },
}

impl Message {
    /// The message id, or `None` for a keep-alive.
    pub const fn id(&self) -> Option<u8> {
        Some(match self {
            Message::KeepAlive => return None,
            Message::Choke => id::CHOKE,
            Message::Unchoke => id::UNCHOKE,
            Message::Interested => id::INTERESTED,
            Message::NotInterested => id::NOT_INTERESTED,
            Message::Have { .. } => id::HAVE,
            Message::Bitfield(_) => id::BITFIELD,
            Message::Request { .. } => id::REQUEST,
            Message::Piece { .. } => id::PIECE,
            Message::Cancel { .. } => id::CANCEL,
            Message::Port(_) => id::PORT,
            Message::Suggest { .. } => id::SUGGEST,
            Message::HaveAll => id::HAVE_ALL,
            Message::HaveNone => id::HAVE_NONE,
            Message::Reject { .. } => id::REJECT,
            Message::AllowedFast { .. } => id::ALLOWED_FAST,
            Message::Extended { .. } => id::EXTENDED,
            Message::Unknown { id, .. } => *id,
        })
    }

    /// The payload's length (after the id byte).
    fn payload_len(&self) -> usize {
        match self {
            Message::KeepAlive
            | Message::Choke
            | Message::Unchoke
            | Message::Interested
            | Message::NotInterested
            | Message::HaveAll
            | Message::HaveNone => 0,
            Message::Have { .. } | Message::Suggest { .. } | Message::AllowedFast { .. } => 4,
            Message::Port(_) => 2,
            Message::Request { .. } | Message::Cancel { .. } | Message::Reject { .. } => 12,
            Message::Bitfield(bits) => bits.len(),
            Message::Piece { data, .. } => 8 + data.len(),
            Message::Extended { payload, .. } => 1 + payload.len(),
            Message::Unknown { payload, .. } => payload.len(),
        }
    }

    /// The value of the length prefix: the id byte plus the payload, 0 for a keep-alive.
    fn body_len(&self) -> usize {
        match self {
            Message::KeepAlive => 0,
            _ => 1 + self.payload_len(),
        }
    }

    /// The number of bytes [`Message::encode`] writes, length prefix included.
    pub fn encoded_len(&self) -> usize {
        PREFIX_LEN + self.body_len()
    }

    /// Appends the encoding to `out` (a `Vec<u8>` or a `BytesMut`).
    ///
    /// Payloads must be under 4 GiB, which every message we build is by a wide margin.
    pub fn encode(&self, out: &mut impl BufMut) {
        out.put_u32(self.body_len() as u32);
        let Some(id) = self.id() else {
            return;
        };
        out.put_u8(id);
        match self {
            Message::KeepAlive
            | Message::Choke
            | Message::Unchoke
            | Message::Interested
            | Message::NotInterested
            | Message::HaveAll
            | Message::HaveNone => {}
            Message::Have { piece }
            | Message::Suggest { piece }
            | Message::AllowedFast { piece } => out.put_u32(*piece),
            Message::Port(port) => out.put_u16(*port),
            Message::Request {
                index,
                begin,
                length,
            }
            | Message::Cancel {
                index,
                begin,
                length,
            }
            | Message::Reject {
                index,
                begin,
                length,
            } => {
                out.put_u32(*index);
                out.put_u32(*begin);
                out.put_u32(*length);
            }
            Message::Piece { index, begin, data } => {
                out.put_u32(*index);
                out.put_u32(*begin);
                out.put_slice(data);
            }
            Message::Extended { id, payload } => {
                out.put_u8(*id);
                out.put_slice(payload);
            }
            Message::Bitfield(payload) | Message::Unknown { payload, .. } => {
                out.put_slice(payload);
            }
        }
    }

    /// [`Message::encode`] without the block of a `piece` message: its length prefix (which
    /// counts the block), id, index and begin, so the block can be written from its own
    /// buffer (vectored I/O) rather than copied after the header. Any other message is
    /// encoded whole.
    pub fn encode_header(&self, out: &mut impl BufMut) {
        match (self, self.id()) {
            (Message::Piece { index, begin, .. }, Some(id)) => {
                out.put_u32(self.body_len() as u32);
                out.put_u8(id);
                out.put_u32(*index);
                out.put_u32(*begin);
            }
            _ => self.encode(out),
        }
    }

    /// The encoding in a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode(&mut out);
        out
    }

    /// The total length (prefix included) of the message at the start of `buf`, as soon as
    /// its 4-byte length prefix is buffered; `Ok(None)` before that. Fails if the prefix is
    /// over `limits.max_message_len`, so a caller can use the answer to reserve buffer space.
    pub fn frame_len(buf: &[u8], limits: &WireLimits) -> Result<Option<usize>, PeerWireError> {
        let Some(prefix) = buf.get(..PREFIX_LEN) else {
            return Ok(None);
        };
        let mut len = [0u8; PREFIX_LEN];
        len.copy_from_slice(prefix);
        let len = u32::from_be_bytes(len);
        if len > limits.max_message_len {
            return Err(PeerWireError::MessageTooLong {
                len,
                limit: limits.max_message_len,
            });
        }
        Ok(Some(PREFIX_LEN + len as usize))
    }

    /// Decodes the message at the start of `buf`.
    ///
    /// Returns `Ok(None)` until the whole message is buffered, then the message and the
    /// number of bytes it used. Variable-length payloads are copied out of `buf`; use
    /// [`Message::decode_from`] to avoid that copy.
    pub fn decode(
        buf: &[u8],
        limits: &WireLimits,
    ) -> Result<Option<(Message, usize)>, PeerWireError> {
        let Some(total) = Self::frame_len(buf, limits)? else {
            return Ok(None);
        };
        let Some(body) = buf.get(PREFIX_LEN..total) else {
            return Ok(None);
        };
        let message = parse(body, |from| {
            Bytes::copy_from_slice(body.get(from..).unwrap_or_default())
        })?;
        Ok(Some((message, total)))
    }

    /// Decodes the message at the start of `buf` and removes its bytes from `buf`.
    ///
    /// Returns `Ok(None)` (leaving `buf` untouched) until the whole message is buffered.
    /// Variable-length payloads (`piece` data above all) are slices of `buf`'s memory, not
    /// copies. On an error the offending bytes may have been removed; the connection should
    /// be closed anyway.
    pub fn decode_from(
        buf: &mut BytesMut,
        limits: &WireLimits,
    ) -> Result<Option<Message>, PeerWireError> {
        let Some(total) = Self::frame_len(buf, limits)? else {
            return Ok(None);
        };
        if buf.len() < total {
            return Ok(None);
        }
        let mut frame = buf.split_to(total).freeze();
        let body = frame.split_off(PREFIX_LEN);
        parse(&body, |from| {
            if from <= body.len() {
                body.slice(from..)
            } else {
                Bytes::new()
            }
        })
        .map(Some)
    }
}

/// Parses a message body (everything after the length prefix). `tail(n)` yields the body's
/// bytes from offset `n` on, as the caller prefers to provide them (copied or shared).
fn parse(body: &[u8], tail: impl FnOnce(usize) -> Bytes) -> Result<Message, PeerWireError> {
    let Some((&id, payload)) = body.split_first() else {
        return Ok(Message::KeepAlive);
    };
    let bad = || PeerWireError::BadPayloadLength {
        id,
        len: payload.len(),
    };
    // Offsets into `body`: the id byte, then the payload.
    const PAYLOAD_AT: usize = 1;
    let message = match id {
        id::CHOKE
        | id::UNCHOKE
        | id::INTERESTED
        | id::NOT_INTERESTED
        | id::HAVE_ALL
        | id::HAVE_NONE => {
            let [] = words(payload).ok_or_else(bad)?;
            match id {
                id::CHOKE => Message::Choke,
                id::UNCHOKE => Message::Unchoke,
                id::INTERESTED => Message::Interested,
                id::NOT_INTERESTED => Message::NotInterested,
                id::HAVE_ALL => Message::HaveAll,
                _ => Message::HaveNone,
            }
        }
        id::HAVE | id::SUGGEST | id::ALLOWED_FAST => {
            let [piece] = words(payload).ok_or_else(bad)?;
            match id {
                id::HAVE => Message::Have { piece },
                id::SUGGEST => Message::Suggest { piece },
                _ => Message::AllowedFast { piece },
            }
        }
        id::REQUEST | id::CANCEL | id::REJECT => {
            let [index, begin, length] = words(payload).ok_or_else(bad)?;
            match id {
                id::REQUEST => Message::Request {
                    index,
                    begin,
                    length,
                },
                id::CANCEL => Message::Cancel {
                    index,
                    begin,
                    length,
                },
                _ => Message::Reject {
                    index,
                    begin,
                    length,
                },
            }
        }
        id::PORT => {
            let port = <[u8; 2]>::try_from(payload).map_err(|_| bad())?;
            Message::Port(u16::from_be_bytes(port))
        }
        id::PIECE => {
            let (head, _) = payload.split_at_checked(8).ok_or_else(bad)?;
            let [index, begin] = words(head).ok_or_else(bad)?;
            Message::Piece {
                index,
                begin,
                data: tail(PAYLOAD_AT + 8),
            }
        }
        id::BITFIELD => Message::Bitfield(tail(PAYLOAD_AT)),
        id::EXTENDED => {
            let (&ext_id, _) = payload.split_first().ok_or_else(bad)?;
            Message::Extended {
                id: ext_id,
                payload: tail(PAYLOAD_AT + 1),
            }
        }
        _ => Message::Unknown {
            id,
            payload: tail(PAYLOAD_AT),
        },
    };
    Ok(message)
}

/// Reads exactly `N` big-endian `u32`s; `None` if `payload` is not exactly `4 * N` bytes.
fn words<const N: usize>(payload: &[u8]) -> Option<[u32; N]> {
    if payload.len() != 4 * N {
        return None;
    }
    let mut out = [0u32; N];
    for (word, chunk) in out.iter_mut().zip(payload.chunks_exact(4)) {
        *word = u32::from_be_bytes(<[u8; 4]>::try_from(chunk).ok()?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limits() -> WireLimits {
        WireLimits::default()
    }

    fn decode_one(bytes: &[u8]) -> Result<Option<(Message, usize)>, PeerWireError> {
        Message::decode(bytes, &limits())
    }

    #[test]
    fn a_piece_header_followed_by_its_block_is_the_whole_encoding() {
        let piece = Message::Piece {
            index: 2,
            begin: 16384,
            data: Bytes::from_static(b"abc"),
        };
        let mut out = Vec::new();
        piece.encode_header(&mut out);
        assert_eq!(out.len(), piece.encoded_len() - 3);
        out.extend_from_slice(b"abc");
        assert_eq!(out, piece.to_bytes());
        let have = Message::Have { piece: 5 };
        let mut out = Vec::new();
        have.encode_header(&mut out);
        assert_eq!(out, have.to_bytes());
    }

    #[test]
    fn known_byte_fixtures() {
        let fixtures: Vec<(Message, &[u8])> = vec![
            (Message::KeepAlive, &[0, 0, 0, 0]),
            (Message::Choke, &[0, 0, 0, 1, 0]),
            (Message::Unchoke, &[0, 0, 0, 1, 1]),
            (Message::Interested, &[0, 0, 0, 1, 2]),
            (Message::NotInterested, &[0, 0, 0, 1, 3]),
            (Message::Have { piece: 5 }, &[0, 0, 0, 5, 4, 0, 0, 0, 5]),
            (
                Message::Bitfield(Bytes::from_static(&[0b1010_0000])),
                &[0, 0, 0, 2, 5, 0xa0],
            ),
            (
                Message::Request {
                    index: 1,
                    begin: 16384,
                    length: 16384,
                },
                &[
                    0x00, 0x00, 0x00, 0x0d, 0x06, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x40, 0x00,
                    0x00, 0x00, 0x40, 0x00,
                ],
            ),
            (
                Message::Piece {
                    index: 2,
                    begin: 0,
                    data: Bytes::from_static(b"abc"),
                },
                &[0, 0, 0, 12, 7, 0, 0, 0, 2, 0, 0, 0, 0, b'a', b'b', b'c'],
            ),
            (
                Message::Cancel {
                    index: 0,
                    begin: 0x4000,
                    length: 0x4000,
                },
                &[0, 0, 0, 13, 8, 0, 0, 0, 0, 0, 0, 0x40, 0, 0, 0, 0x40, 0],
            ),
            (Message::Port(6881), &[0, 0, 0, 3, 9, 0x1a, 0xe1]),
            (
                Message::Suggest { piece: 7 },
                &[0, 0, 0, 5, 0x0d, 0, 0, 0, 7],
            ),
            (Message::HaveAll, &[0, 0, 0, 1, 0x0e]),
            (Message::HaveNone, &[0, 0, 0, 1, 0x0f]),
            (
                Message::Reject {
                    index: 3,
                    begin: 0,
                    length: 0x4000,
                },
                &[0, 0, 0, 13, 0x10, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0x40, 0],
            ),
            (
                Message::AllowedFast { piece: 0x0102_0304 },
                &[0, 0, 0, 5, 0x11, 1, 2, 3, 4],
            ),
            (
                Message::Extended {
                    id: 0,
                    payload: Bytes::from_static(b"de"),
                },
                &[0, 0, 0, 4, 0x14, 0, b'd', b'e'],
            ),
        ];
        for (message, wire) in fixtures {
            assert_eq!(message.to_bytes(), wire, "encoding {message:?}");
            assert_eq!(message.encoded_len(), wire.len(), "length of {message:?}");
            assert_eq!(
                decode_one(wire),
                Ok(Some((message.clone(), wire.len()))),
                "decoding {message:?}"
            );
        }
    }

    #[test]
    fn oversize_length_prefix_fails_on_the_prefix_alone() {
        // Only the 4 prefix bytes are buffered: the verdict cannot depend on the payload,
        // and nothing the size of the announced message has been allocated.
        let prefix = u32::MAX.to_be_bytes();
        assert_eq!(
            decode_one(&prefix),
            Err(PeerWireError::MessageTooLong {
                len: u32::MAX,
                limit: WireLimits::DEFAULT.max_message_len,
            })
        );
        let mut buf = BytesMut::with_capacity(16);
        buf.extend_from_slice(&prefix);
        let capacity = buf.capacity();
        assert!(matches!(
            Message::decode_from(&mut buf, &limits()),
            Err(PeerWireError::MessageTooLong { .. })
        ));
        assert_eq!(buf.capacity(), capacity);
        assert_eq!(&buf[..], &prefix, "nothing consumed");
    }

    #[test]
    fn the_length_limit_is_inclusive() {
        let small = WireLimits { max_message_len: 9 };
        let bitfield = Message::Bitfield(Bytes::from_static(&[0xff; 8])); // body: 9 bytes
        let wire = bitfield.to_bytes();
        assert_eq!(
            Message::decode(&wire, &small),
            Ok(Some((bitfield, wire.len())))
        );
        let over = Message::Bitfield(Bytes::from_static(&[0xff; 9])).to_bytes();
        assert_eq!(
            Message::decode(&over, &small),
            Err(PeerWireError::MessageTooLong { len: 10, limit: 9 })
        );
        assert_eq!(Message::frame_len(&over[..3], &small), Ok(None));
        assert_eq!(Message::frame_len(&wire[..4], &small), Ok(Some(13)));
    }

    #[test]
    fn wrong_payload_lengths_for_fixed_size_messages_are_errors() {
        // (id, the valid payload length: exact, or a minimum for piece and extended)
        let fixed: [(u8, usize); 15] = [
            (id::CHOKE, 0),
            (id::UNCHOKE, 0),
            (id::INTERESTED, 0),
            (id::NOT_INTERESTED, 0),
            (id::HAVE_ALL, 0),
            (id::HAVE_NONE, 0),
            (id::HAVE, 4),
            (id::SUGGEST, 4),
            (id::ALLOWED_FAST, 4),
            (id::REQUEST, 12),
            (id::CANCEL, 12),
            (id::REJECT, 12),
            (id::PORT, 2),
            // Minimum lengths: a piece needs its 8-byte header, extended its id byte.
            (id::PIECE, 8),
            (id::EXTENDED, 1),
        ];
        for (id, valid) in fixed {
            for len in 0..=14usize {
                let mut wire = ((1 + len) as u32).to_be_bytes().to_vec();
                wire.push(id);
                wire.resize(wire.len() + len, 0);
                let got = decode_one(&wire);
                let ok = if id == id::PIECE || id == id::EXTENDED {
                    len >= valid
                } else {
                    len == valid
                };
                if ok {
                    assert!(matches!(got, Ok(Some(_))), "id {id} len {len}: {got:?}");
                } else {
                    assert_eq!(
                        got,
                        Err(PeerWireError::BadPayloadLength { id, len }),
                        "id {id} len {len}"
                    );
                }
            }
        }
    }

    #[test]
    fn unknown_ids_are_kept_not_refused() {
        let wire = [0, 0, 0, 3, 21, 0xab, 0xcd];
        assert_eq!(
            decode_one(&wire),
            Ok(Some((
                Message::Unknown {
                    id: 21,
                    payload: Bytes::from_static(&[0xab, 0xcd]),
                },
                7
            )))
        );
    }

    #[test]
    fn decode_from_shares_piece_data_with_the_receive_buffer() {
        let piece = Message::Piece {
            index: 9,
            begin: 16384,
            data: Bytes::from(vec![0x5a; 16384]),
        };
        let mut buf = BytesMut::new();
        piece.encode(&mut buf);
        Message::Have { piece: 1 }.encode(&mut buf);
        let data_at = buf[13..].as_ptr();
        let decoded = Message::decode_from(&mut buf, &limits()).unwrap().unwrap();
        assert_eq!(decoded, piece);
        let Message::Piece { data, .. } = decoded else {
            unreachable!("checked equal above")
        };
        assert_eq!(data.as_ptr(), data_at, "piece data was copied");
        // The next message is what is left.
        assert_eq!(
            Message::decode_from(&mut buf, &limits()),
            Ok(Some(Message::Have { piece: 1 }))
        );
        assert!(buf.is_empty());
        assert_eq!(Message::decode_from(&mut buf, &limits()), Ok(None));
    }

    #[test]
    fn decode_from_leaves_a_partial_message_in_place() {
        let wire = Message::Request {
            index: 1,
            begin: 2,
            length: 3,
        }
        .to_bytes();
        let mut buf = BytesMut::from(&wire[..10]);
        assert_eq!(Message::decode_from(&mut buf, &limits()), Ok(None));
        assert_eq!(&buf[..], &wire[..10]);
    }

    fn bytes_up_to(n: usize) -> impl Strategy<Value = Bytes> {
        proptest::collection::vec(any::<u8>(), 0..n).prop_map(Bytes::from)
    }

    const KNOWN_IDS: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 14, 15, 16, 17, 20];

    /// Every variant, with payloads small enough to keep the tests fast.
    fn arb_message() -> impl Strategy<Value = Message> {
        let triple = (any::<u32>(), any::<u32>(), any::<u32>());
        prop_oneof![
            Just(Message::KeepAlive),
            Just(Message::Choke),
            Just(Message::Unchoke),
            Just(Message::Interested),
            Just(Message::NotInterested),
            any::<u32>().prop_map(|piece| Message::Have { piece }),
            bytes_up_to(64).prop_map(Message::Bitfield),
            triple.prop_map(|(index, begin, length)| Message::Request {
                index,
                begin,
                length
            }),
            (any::<u32>(), any::<u32>(), bytes_up_to(300))
                .prop_map(|(index, begin, data)| Message::Piece { index, begin, data }),
            triple.prop_map(|(index, begin, length)| Message::Cancel {
                index,
                begin,
                length
            }),
            any::<u16>().prop_map(Message::Port),
            any::<u32>().prop_map(|piece| Message::Suggest { piece }),
            Just(Message::HaveAll),
            Just(Message::HaveNone),
            triple.prop_map(|(index, begin, length)| Message::Reject {
                index,
                begin,
                length
            }),
            any::<u32>().prop_map(|piece| Message::AllowedFast { piece }),
            (any::<u8>(), bytes_up_to(64))
                .prop_map(|(id, payload)| Message::Extended { id, payload }),
            (
                any::<u8>().prop_filter("unknown ids only", |id| !KNOWN_IDS.contains(id)),
                bytes_up_to(64)
            )
                .prop_map(|(id, payload)| Message::Unknown { id, payload }),
        ]
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_identity(message in arb_message()) {
            let wire = message.to_bytes();
            prop_assert_eq!(wire.len(), message.encoded_len());
            prop_assert_eq!(decode_one(&wire), Ok(Some((message.clone(), wire.len()))));

            let mut buf = BytesMut::new();
            message.encode(&mut buf);
            prop_assert_eq!(&buf[..], &wire[..]);
            prop_assert_eq!(Message::decode_from(&mut buf, &limits()), Ok(Some(message)));
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn a_stream_of_messages_decodes_one_by_one(
            messages in proptest::collection::vec(arb_message(), 0..12),
        ) {
            let mut wire = Vec::new();
            for m in &messages {
                m.encode(&mut wire);
            }
            // From a slice, advancing by what each decode used.
            let mut rest = &wire[..];
            let mut from_slice = Vec::new();
            while let Some((m, used)) = decode_one(rest)? {
                from_slice.push(m);
                rest = &rest[used..];
            }
            prop_assert!(rest.is_empty());
            prop_assert_eq!(&from_slice, &messages);

            // From a BytesMut fed in small chunks, as a socket would.
            let mut buf = BytesMut::new();
            let mut from_buf = Vec::new();
            for chunk in wire.chunks(7) {
                buf.extend_from_slice(chunk);
                while let Some(m) = Message::decode_from(&mut buf, &limits())? {
                    from_buf.push(m);
                }
            }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(from_buf, messages);
        }

        #[test]
        fn every_truncation_needs_more_bytes(message in arb_message()) {
            let wire = message.to_bytes();
            for cut in 0..wire.len() {
                prop_assert_eq!(decode_one(&wire[..cut]), Ok(None), "cut at {}", cut);
                let mut buf = BytesMut::from(&wire[..cut]);
                prop_assert_eq!(Message::decode_from(&mut buf, &limits()), Ok(None));
                prop_assert_eq!(buf.len(), cut);
            }
        }

        #[test]
        fn arbitrary_frames_decode_to_what_re_encodes_to_them(
            id in any::<u8>(),
            payload in proptest::collection::vec(any::<u8>(), 0..20),
            extra in proptest::collection::vec(any::<u8>(), 0..4),
        ) {
            // A well-framed body with a random id and payload, then some stray bytes.
            let mut wire = ((1 + payload.len()) as u32).to_be_bytes().to_vec();
            wire.push(id);
            wire.extend_from_slice(&payload);
            let framed = wire.len();
            wire.extend_from_slice(&extra);
            match decode_one(&wire) {
                Ok(Some((message, used))) => {
                    prop_assert_eq!(used, framed);
                    prop_assert_eq!(message.to_bytes(), &wire[..framed]);
                }
                Ok(None) => prop_assert!(false, "a whole frame was buffered"),
                Err(e) => {
                    let bad_len = matches!(e, PeerWireError::BadPayloadLength { .. });
                    prop_assert!(bad_len, "unexpected error {:?}", e);
                    prop_assert!(KNOWN_IDS.contains(&id));
                }
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let small = WireLimits { max_message_len: 32 };
            let from_slice = Message::decode(&bytes, &small);
            let mut buf = BytesMut::from(&bytes[..]);
            let from_buf = Message::decode_from(&mut buf, &small);
            // Both decoders reach the same verdict on the same bytes.
            prop_assert_eq!(from_slice.map(|o| o.map(|(m, _)| m)), from_buf);
        }
    }
}
