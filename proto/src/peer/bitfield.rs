//! Which pieces a peer has: a bit per piece, checked against the torrent's piece count.
//!
//! A `bitfield` message carries no piece count, so on its own it cannot be validated; the
//! engine knows the count from the metainfo and passes it to [`Bitfield::from_payload`].
//! BEP 3 says a peer sending the wrong length or setting the spare bits at the end must be
//! dropped, and an unchecked bitfield would let a peer claim pieces that don't exist.

use bytes::Bytes;

use super::{Message, PeerWireError};

/// A set of piece indices in `0..piece_count`, stored as on the wire: high bit of byte 0 is
/// piece 0, and the spare bits of the last byte are always zero.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Bitfield {
    bits: Vec<u8>,
    piece_count: u32,
}

impl Bitfield {
    /// The byte length of a bitfield for `piece_count` pieces: `ceil(piece_count / 8)`.
    pub const fn byte_len(piece_count: u32) -> usize {
        piece_count.div_ceil(8) as usize
    }

    /// No piece set.
    pub fn new(piece_count: u32) -> Self {
        Bitfield {
            bits: vec![0; Self::byte_len(piece_count)],
            piece_count,
        }
    }

    /// Every piece set.
    pub fn full(piece_count: u32) -> Self {
        let mut bits = vec![0xff; Self::byte_len(piece_count)];
        if let Some(last) = bits.last_mut() {
            *last &= !spare_mask(piece_count);
        }
        Bitfield { bits, piece_count }
    }

    /// Validates a received `bitfield` payload for a torrent of `piece_count` pieces: it must
    /// be exactly [`Bitfield::byte_len`] bytes with the spare trailing bits clear.
    pub fn from_payload(payload: &[u8], piece_count: u32) -> Result<Self, PeerWireError> {
        let expected = Self::byte_len(piece_count);
        if payload.len() != expected {
            return Err(PeerWireError::BitfieldLength {
                expected,
                got: payload.len(),
            });
        }
        if payload
            .last()
            .is_some_and(|last| last & spare_mask(piece_count) != 0)
        {
            return Err(PeerWireError::BitfieldSpareBits);
        }
        Ok(Bitfield {
            bits: payload.to_vec(),
            piece_count,
        })
    }

    /// The number of pieces in the torrent.
    pub const fn piece_count(&self) -> u32 {
        self.piece_count
    }

    /// Whether piece `index` is set (`false` for an index past the end).
    pub fn has(&self, index: u32) -> bool {
        index < self.piece_count
            && self
                .bits
                .get(index as usize / 8)
                .is_some_and(|byte| byte & bit(index) != 0)
    }

    /// Sets piece `index`; fails if the torrent has no such piece (a `have` for it is a
    /// protocol violation).
    pub fn set(&mut self, index: u32) -> Result<(), PeerWireError> {
        let piece_count = self.piece_count;
        match self.bits.get_mut(index as usize / 8) {
            Some(byte) if index < piece_count => {
                *byte |= bit(index);
                Ok(())
            }
            _ => Err(PeerWireError::PieceOutOfRange { index, piece_count }),
        }
    }

    /// Clears piece `index` (nothing happens for an index past the end).
    pub fn clear(&mut self, index: u32) {
        if let Some(byte) = self.bits.get_mut(index as usize / 8) {
            *byte &= !bit(index);
        }
    }

    /// The number of pieces set.
    pub fn count(&self) -> u32 {
        // Spare bits are always zero, so counting every bit is exact.
        self.bits.iter().map(|b| b.count_ones()).sum()
    }

    /// Whether every piece is set.
    pub fn is_complete(&self) -> bool {
        self.count() == self.piece_count
    }

    /// The indices of the pieces set, in increasing order.
    pub fn pieces(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.piece_count).filter(|&i| self.has(i))
    }

    /// The bytes as sent on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bits
    }

    /// A `bitfield` message announcing these pieces.
    pub fn to_message(&self) -> Message {
        Message::Bitfield(Bytes::copy_from_slice(&self.bits))
    }
}

/// The bit for piece `index` within its byte.
const fn bit(index: u32) -> u8 {
    0x80 >> (index % 8)
}

/// The bits of the last byte that lie past the last piece.
const fn spare_mask(piece_count: u32) -> u8 {
    match piece_count % 8 {
        0 => 0,
        used => 0xff >> used,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn piece_zero_is_the_high_bit() {
        let mut b = Bitfield::new(10);
        b.set(0).unwrap();
        b.set(9).unwrap();
        assert_eq!(b.as_bytes(), &[0b1000_0000, 0b0100_0000]);
        assert!(b.has(0) && b.has(9) && !b.has(1) && !b.has(10));
        assert_eq!(b.count(), 2);
        assert_eq!(b.pieces().collect::<Vec<_>>(), vec![0, 9]);
        b.clear(0);
        assert!(!b.has(0));
    }

    #[test]
    fn spare_bits_set_are_refused() {
        // 10 pieces: the last byte may only use its top two bits.
        assert!(Bitfield::from_payload(&[0xff, 0b1100_0000], 10).is_ok());
        assert_eq!(
            Bitfield::from_payload(&[0xff, 0b1110_0000], 10),
            Err(PeerWireError::BitfieldSpareBits)
        );
        assert_eq!(
            Bitfield::from_payload(&[0x00, 0b0000_0001], 10),
            Err(PeerWireError::BitfieldSpareBits)
        );
        // A multiple of 8 has no spare bits.
        assert!(Bitfield::from_payload(&[0xff], 8).is_ok());
    }

    #[test]
    fn wrong_lengths_are_refused() {
        assert_eq!(
            Bitfield::from_payload(&[0xff], 10),
            Err(PeerWireError::BitfieldLength {
                expected: 2,
                got: 1
            })
        );
        assert_eq!(
            Bitfield::from_payload(&[0, 0, 0], 10),
            Err(PeerWireError::BitfieldLength {
                expected: 2,
                got: 3
            })
        );
        assert_eq!(Bitfield::from_payload(&[], 0), Ok(Bitfield::new(0)));
        assert!(Bitfield::from_payload(&[0], 0).is_err());
    }

    #[test]
    fn out_of_range_pieces_are_refused() {
        let mut b = Bitfield::new(10);
        assert_eq!(
            b.set(10),
            Err(PeerWireError::PieceOutOfRange {
                index: 10,
                piece_count: 10
            })
        );
        // Index 15 is inside the last byte but past the last piece.
        assert!(b.set(15).is_err());
        assert!(b.set(u32::MAX).is_err());
        assert_eq!(b, Bitfield::new(10));
    }

    #[test]
    fn full_is_complete_and_keeps_spare_bits_clear() {
        let b = Bitfield::full(10);
        assert_eq!(b.as_bytes(), &[0xff, 0b1100_0000]);
        assert!(b.is_complete());
        assert_eq!(b.count(), 10);
        assert_eq!(Bitfield::full(16).as_bytes(), &[0xff, 0xff]);
        assert!(Bitfield::full(0).is_complete());
        assert!(!Bitfield::new(3).is_complete());
    }

    fn arb_bitfield() -> impl Strategy<Value = Bitfield> {
        (0u32..200).prop_flat_map(|n| {
            proptest::collection::btree_set(0..n.max(1), 0..=n as usize).prop_map(move |set| {
                let mut b = Bitfield::new(n);
                for i in set {
                    let _ = b.set(i);
                }
                b
            })
        })
    }

    proptest! {
        #[test]
        fn message_round_trip_is_identity(b in arb_bitfield()) {
            let wire = b.to_message().to_bytes();
            let decoded = Message::decode(&wire, &super::super::WireLimits::default());
            let Ok(Some((Message::Bitfield(payload), _))) = decoded else {
                return Err(TestCaseError::fail("not a bitfield message"));
            };
            prop_assert_eq!(Bitfield::from_payload(&payload, b.piece_count()), Ok(b));
        }

        #[test]
        fn from_payload_never_panics_and_only_accepts_exact_fits(
            payload in proptest::collection::vec(any::<u8>(), 0..8),
            n in 0u32..70,
        ) {
            match Bitfield::from_payload(&payload, n) {
                Ok(b) => {
                    prop_assert_eq!(payload.len(), Bitfield::byte_len(n));
                    prop_assert!(b.count() <= n);
                    prop_assert_eq!(b.as_bytes(), &payload[..]);
                }
                Err(_) => prop_assert!(
                    payload.len() != Bitfield::byte_len(n)
                        || payload.last().is_some_and(|l| l & spare_mask(n) != 0)
                ),
            }
        }
    }
}
