//! Twenty-byte identifiers: the info-hash that names a torrent and the id a peer picks.
//!
//! Both are plain byte arrays on the wire. They are distinct types so that a peer id can never
//! be passed where an info-hash is expected. An info-hash prints as 40 lowercase hex digits
//! (the form trackers, magnet links and our HTTP API use); it also parses from the 32-character
//! base32 form that older magnet links carry.

use std::fmt;
use std::str::FromStr;

use data_encoding::{BASE32, HEXLOWER_PERMISSIVE};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not an [`InfoHash`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdParseError {
    /// The text is neither 40 hex digits nor 32 base32 characters.
    #[error("an info-hash is 40 hex digits or 32 base32 characters, got {0} characters")]
    BadLength(usize),
    /// The text has the right length but characters outside its alphabet.
    #[error("an info-hash has characters outside the hex or base32 alphabet")]
    BadCharacters,
    /// A binary id was not exactly 20 bytes.
    #[error("an id is 20 bytes, got {0}")]
    BadByteLength(usize),
}

macro_rules! twenty_bytes {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub [u8; 20]);

        impl $name {
            /// The id's length on the wire.
            pub const LEN: usize = 20;

            /// Wraps 20 raw bytes.
            pub const fn new(bytes: [u8; 20]) -> Self {
                Self(bytes)
            }

            /// Takes a slice that must be exactly 20 bytes long.
            pub fn from_slice(bytes: &[u8]) -> Result<Self, IdParseError> {
                <[u8; 20]>::try_from(bytes)
                    .map(Self)
                    .map_err(|_| IdParseError::BadByteLength(bytes.len()))
            }

            /// The raw bytes.
            pub const fn as_bytes(&self) -> &[u8; 20] {
                &self.0
            }

            /// Lowercase hex, 40 characters.
            pub fn to_hex(&self) -> String {
                data_encoding::HEXLOWER.encode(&self.0)
            }
        }

        impl AsRef<[u8]> for $name {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }

        impl From<[u8; 20]> for $name {
            fn from(bytes: [u8; 20]) -> Self {
                Self(bytes)
            }
        }
    };
}

twenty_bytes!(
    /// The SHA-1 of a torrent's bencoded `info` dictionary, exactly as it was received.
    InfoHash
);

twenty_bytes!(
    /// The 20 bytes a peer names itself with in the handshake and in announces.
    PeerId
);

impl InfoHash {
    /// Parses 40 hex digits (either case) or 32 base32 characters (RFC 4648, upper or lower
    /// case), the two forms magnet links use.
    pub fn from_text(text: &str) -> Result<Self, IdParseError> {
        let decoded = match text.len() {
            40 => HEXLOWER_PERMISSIVE.decode(text.as_bytes()),
            32 => BASE32.decode(text.to_ascii_uppercase().as_bytes()),
            n => return Err(IdParseError::BadLength(n)),
        };
        let bytes = decoded.map_err(|_| IdParseError::BadCharacters)?;
        Self::from_slice(&bytes)
    }

    /// Base32 (RFC 4648, uppercase), 32 characters.
    pub fn to_base32(&self) -> String {
        BASE32.encode(&self.0)
    }
}

impl fmt::Display for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHash({})", self.to_hex())
    }
}

impl FromStr for InfoHash {
    type Err = IdParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_text(s)
    }
}

impl Serialize for InfoHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for InfoHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::from_text(&text).map_err(serde::de::Error::custom)
    }
}

impl PeerId {
    /// A peer id in the Azureus style, `-SC0100-` followed by 12 bytes the caller chose
    /// (randomly, normally): other clients recognise the client name from the prefix.
    pub fn with_random_suffix(suffix: [u8; 12]) -> Self {
        let mut id = [0u8; 20];
        id[..8].copy_from_slice(b"-SC0100-");
        id[8..].copy_from_slice(&suffix);
        Self(id)
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", self.to_hex())
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Printable prefixes like "-TR3000-" are common; show bytes that are not as hex.
        for &b in &self.0 {
            if b.is_ascii_graphic() {
                write!(f, "{}", b as char)?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_base32_name_the_same_hash() {
        let hash = InfoHash::new(*b"abcdefghijklmnopqrst");
        assert_eq!(InfoHash::from_text(&hash.to_hex()), Ok(hash));
        assert_eq!(InfoHash::from_text(&hash.to_hex().to_uppercase()), Ok(hash));
        assert_eq!(InfoHash::from_text(&hash.to_base32()), Ok(hash));
        assert_eq!(
            InfoHash::from_text(&hash.to_base32().to_lowercase()),
            Ok(hash)
        );
    }

    #[test]
    fn rejects_wrong_lengths_and_alphabets() {
        assert_eq!(InfoHash::from_text("abc"), Err(IdParseError::BadLength(3)));
        assert_eq!(
            InfoHash::from_text(&"g".repeat(40)),
            Err(IdParseError::BadCharacters)
        );
        assert_eq!(
            InfoHash::from_slice(&[0u8; 19]),
            Err(IdParseError::BadByteLength(19))
        );
    }

    #[test]
    fn serde_uses_hex() {
        let hash = InfoHash::new([0xab; 20]);
        let json = serde_json::to_string(&hash).unwrap();
        assert_eq!(json, format!("\"{}\"", "ab".repeat(20)));
        assert_eq!(serde_json::from_str::<InfoHash>(&json).unwrap(), hash);
    }

    #[test]
    fn peer_id_display_escapes_binary() {
        let id = PeerId::with_random_suffix([0; 12]);
        assert!(id.to_string().starts_with("-SC0100-\\x00"));
    }
}
