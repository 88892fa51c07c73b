//! The 68-byte handshake that opens every peer connection (BEP 3).
//!
//! Layout: `\x13` `BitTorrent protocol` (the protocol string and its length), 8 reserved
//! bytes whose bits advertise extensions, the 20-byte info-hash, the 20-byte peer id. It is
//! not length-prefixed, so it gets its own decoder rather than a [`super::Message`] variant.
//!
//! The decoder compares the protocol prefix byte by byte as bytes arrive, so anything else
//! (notably an MSE-encrypted handshake, which starts with random bytes) is refused on its
//! first byte and the remote end can fall back to plaintext without waiting for a timeout.

use bytes::BufMut;

use super::PeerWireError;
use crate::id::{InfoHash, PeerId};

/// The first 20 bytes of every plaintext handshake: the length byte 19 and the protocol name.
pub const PROTOCOL_PREFIX: &[u8; 20] = b"\x13BitTorrent protocol";

/// The 8 reserved handshake bytes, where each side advertises the extensions it speaks.
/// An extension is used only when both sides set its bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Reserved(pub [u8; 8]);

impl Reserved {
    /// No extensions.
    pub const NONE: Reserved = Reserved([0; 8]);

    /// BEP 10 extension protocol: `reserved[5] & 0x10`.
    const EXTENSION_PROTOCOL: (usize, u8) = (5, 0x10);
    /// BEP 6 Fast extension: `reserved[7] & 0x04`.
    const FAST: (usize, u8) = (7, 0x04);
    /// BEP 5 DHT (the peer sends `port` messages): `reserved[7] & 0x01`.
    const DHT: (usize, u8) = (7, 0x01);

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 8] {
        &self.0
    }

    const fn has(&self, (byte, mask): (usize, u8)) -> bool {
        self.0[byte] & mask != 0
    }

    const fn with(mut self, (byte, mask): (usize, u8)) -> Self {
        self.0[byte] |= mask;
        self
    }

    /// Whether the BEP 10 extension protocol bit is set.
    pub const fn supports_extension_protocol(&self) -> bool {
        self.has(Self::EXTENSION_PROTOCOL)
    }

    /// Whether the BEP 6 Fast extension bit is set.
    pub const fn supports_fast(&self) -> bool {
        self.has(Self::FAST)
    }

    /// Whether the BEP 5 DHT bit is set.
    pub const fn supports_dht(&self) -> bool {
        self.has(Self::DHT)
    }

    /// These bits with the BEP 10 extension protocol bit set.
    #[must_use]
    pub const fn with_extension_protocol(self) -> Self {
        self.with(Self::EXTENSION_PROTOCOL)
    }

    /// These bits with the BEP 6 Fast extension bit set.
    #[must_use]
    pub const fn with_fast(self) -> Self {
        self.with(Self::FAST)
    }

    /// These bits with the BEP 5 DHT bit set.
    #[must_use]
    pub const fn with_dht(self) -> Self {
        self.with(Self::DHT)
    }
}

/// A peer handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Handshake {
    /// The extension bits the sender advertises.
    pub reserved: Reserved,
    /// The torrent the sender wants to talk about.
    pub info_hash: InfoHash,
    /// The sender's peer id.
    pub peer_id: PeerId,
}

impl Handshake {
    /// A handshake's length on the wire.
    pub const LEN: usize = 68;

    /// Offsets of the fields after the protocol prefix.
    const RESERVED_AT: usize = 20;
    const INFO_HASH_AT: usize = 28;
    const PEER_ID_AT: usize = 48;

    /// Decodes a handshake from the start of `buf`.
    ///
    /// Returns `Ok(None)` until all 68 bytes are buffered, then the handshake and the number
    /// of bytes it used (always [`Handshake::LEN`]). Fails as soon as a buffered byte differs
    /// from [`PROTOCOL_PREFIX`], even with a single byte buffered.
    pub fn decode(buf: &[u8]) -> Result<Option<(Handshake, usize)>, PeerWireError> {
        check_prefix(buf)?;
        let Some(bytes) = buf.get(..Self::LEN) else {
            return Ok(None);
        };
        let reserved = array_at::<8>(bytes, Self::RESERVED_AT);
        let info_hash = array_at::<20>(bytes, Self::INFO_HASH_AT);
        let peer_id = array_at::<20>(bytes, Self::PEER_ID_AT);
        Ok(Some((
            Handshake {
                reserved: Reserved(reserved),
                info_hash: InfoHash(info_hash),
                peer_id: PeerId(peer_id),
            },
            Self::LEN,
        )))
    }

    /// Decodes the reserved bits and the info-hash as soon as the first 48 bytes are
    /// buffered, before the peer id arrives. A listener can pick the torrent (or refuse the
    /// connection) and send its own handshake without waiting for the rest.
    pub fn peek_info_hash(buf: &[u8]) -> Result<Option<(Reserved, InfoHash)>, PeerWireError> {
        check_prefix(buf)?;
        let Some(bytes) = buf.get(..Self::PEER_ID_AT) else {
            return Ok(None);
        };
        Ok(Some((
            Reserved(array_at::<8>(bytes, Self::RESERVED_AT)),
            InfoHash(array_at::<20>(bytes, Self::INFO_HASH_AT)),
        )))
    }

    /// Appends the 68-byte encoding to `out`.
    pub fn encode(&self, out: &mut impl BufMut) {
        out.put_slice(PROTOCOL_PREFIX);
        out.put_slice(&self.reserved.0);
        out.put_slice(self.info_hash.as_bytes());
        out.put_slice(self.peer_id.as_bytes());
    }
}

/// Fails at the first buffered byte that differs from the protocol prefix.
fn check_prefix(buf: &[u8]) -> Result<(), PeerWireError> {
    match buf
        .iter()
        .zip(PROTOCOL_PREFIX)
        .position(|(got, want)| got != want)
    {
        Some(offset) => Err(PeerWireError::NotBitTorrent { offset }),
        None => Ok(()),
    }
}

/// Copies `N` bytes starting at `at`; bytes past the end of `bytes` read as zero (callers
/// only ask for ranges inside a buffer whose length they have checked).
fn array_at<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = bytes.get(at..at + N) {
        out.copy_from_slice(src);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Handshake {
        Handshake {
            reserved: Reserved::NONE.with_extension_protocol().with_fast(),
            info_hash: InfoHash([0xaa; 20]),
            peer_id: PeerId(*b"-SC0001-abcdefghijkl"),
        }
    }

    #[test]
    fn encodes_the_bep3_layout() {
        let mut out = Vec::new();
        sample().encode(&mut out);
        assert_eq!(out.len(), Handshake::LEN);
        assert_eq!(&out[..20], b"\x13BitTorrent protocol");
        assert_eq!(&out[20..28], &[0, 0, 0, 0, 0, 0x10, 0, 0x04]);
        assert_eq!(&out[28..48], &[0xaa; 20]);
        assert_eq!(&out[48..], b"-SC0001-abcdefghijkl");
    }

    #[test]
    fn reserved_bits_are_where_the_beps_put_them() {
        let r = Reserved::NONE.with_extension_protocol();
        assert_eq!(r.0, [0, 0, 0, 0, 0, 0x10, 0, 0]);
        assert!(r.supports_extension_protocol() && !r.supports_fast() && !r.supports_dht());
        let r = Reserved::NONE.with_fast();
        assert_eq!(r.0, [0, 0, 0, 0, 0, 0, 0, 0x04]);
        assert!(r.supports_fast() && !r.supports_extension_protocol());
        let r = Reserved::NONE.with_dht();
        assert_eq!(r.0, [0, 0, 0, 0, 0, 0, 0, 0x01]);
        assert!(r.supports_dht() && !r.supports_fast());
        // Bits we don't know about don't read as ones we do.
        let other = Reserved([0xff, 0xff, 0xff, 0xff, 0xff, 0xef, 0xff, 0xfa]);
        assert!(!other.supports_extension_protocol() && !other.supports_fast());
        assert!(!other.supports_dht());
    }

    #[test]
    fn wrong_first_byte_fails_with_one_byte_buffered() {
        // An MSE handshake starts with a random Diffie-Hellman key: anything but 19.
        assert_eq!(
            Handshake::decode(&[0x8f]),
            Err(PeerWireError::NotBitTorrent { offset: 0 })
        );
        assert_eq!(
            Handshake::peek_info_hash(&[0x00]),
            Err(PeerWireError::NotBitTorrent { offset: 0 })
        );
        // The right first byte alone is "need more".
        assert_eq!(Handshake::decode(&[19]), Ok(None));
    }

    #[test]
    fn wrong_protocol_name_fails_at_the_first_differing_byte() {
        assert_eq!(
            Handshake::decode(b"\x13BitTorrent"),
            Ok(None),
            "a correct partial prefix is not an error"
        );
        assert_eq!(
            Handshake::decode(b"\x13BitTorrenX"),
            Err(PeerWireError::NotBitTorrent { offset: 10 })
        );
        let mut wire = Vec::new();
        sample().encode(&mut wire);
        wire[19] = b'L';
        assert_eq!(
            Handshake::decode(&wire),
            Err(PeerWireError::NotBitTorrent { offset: 19 })
        );
    }

    #[test]
    fn peek_reads_the_info_hash_before_the_peer_id_arrives() {
        let mut wire = Vec::new();
        sample().encode(&mut wire);
        assert_eq!(Handshake::peek_info_hash(&wire[..47]), Ok(None));
        assert_eq!(
            Handshake::peek_info_hash(&wire[..48]),
            Ok(Some((sample().reserved, sample().info_hash)))
        );
        assert_eq!(Handshake::decode(&wire[..48]), Ok(None));
    }

    #[test]
    fn decode_leaves_following_bytes_alone() {
        let mut wire = Vec::new();
        sample().encode(&mut wire);
        wire.extend_from_slice(&[0, 0, 0, 0]); // a keep-alive right behind it
        assert_eq!(
            Handshake::decode(&wire),
            Ok(Some((sample(), Handshake::LEN)))
        );
    }

    fn arb_handshake() -> impl Strategy<Value = Handshake> {
        (any::<[u8; 8]>(), any::<[u8; 20]>(), any::<[u8; 20]>()).prop_map(|(r, ih, pid)| {
            Handshake {
                reserved: Reserved(r),
                info_hash: InfoHash(ih),
                peer_id: PeerId(pid),
            }
        })
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_identity(h in arb_handshake()) {
            let mut wire = Vec::new();
            h.encode(&mut wire);
            prop_assert_eq!(Handshake::decode(&wire), Ok(Some((h, Handshake::LEN))));
        }

        #[test]
        fn every_truncation_needs_more_bytes(h in arb_handshake()) {
            let mut wire = Vec::new();
            h.encode(&mut wire);
            for cut in 0..wire.len() {
                prop_assert_eq!(Handshake::decode(&wire[..cut]), Ok(None));
                prop_assert!(Handshake::peek_info_hash(&wire[..cut]).is_ok());
            }
        }

        #[test]
        fn arbitrary_bytes_are_judged_consistently(
            keep in 0usize..=20,
            tail in proptest::collection::vec(any::<u8>(), 0..60),
        ) {
            // A valid prefix of random length followed by random bytes, so that both the
            // "mismatch somewhere in the prefix" and the "whole handshake" cases come up.
            let bytes = [&PROTOCOL_PREFIX[..keep], &tail[..]].concat();
            match Handshake::decode(&bytes) {
                Ok(Some((h, used))) => {
                    prop_assert_eq!(used, Handshake::LEN);
                    prop_assert_eq!(&bytes[..20], &PROTOCOL_PREFIX[..]);
                    prop_assert_eq!(&bytes[48..68], h.peer_id.as_bytes());
                }
                Ok(None) => prop_assert!(bytes.len() < Handshake::LEN),
                Err(PeerWireError::NotBitTorrent { offset }) => {
                    prop_assert!(offset >= keep && offset < bytes.len().min(20));
                    prop_assert_ne!(bytes[offset], PROTOCOL_PREFIX[offset]);
                }
                Err(other) => prop_assert!(false, "unexpected error {other:?}"),
            }
            let peeked = Handshake::peek_info_hash(&bytes);
            prop_assert_eq!(peeked.is_err(), Handshake::decode(&bytes).is_err());
        }
    }
}
