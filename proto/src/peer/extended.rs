//! The BEP 10 extended handshake: the bencoded dictionary sent as extended message 0, in
//! which each side names the extensions it speaks and the message id it wants for each.
//!
//! Only the keys we use are decoded; unknown keys are ignored, as BEP 10 asks. The keys fall
//! in two groups, treated differently on purpose:
//!
//! - `m` and `metadata_size` drive what we do next (which id to send ut_metadata requests
//!   under, how much metadata to fetch), so a malformed one is an error.
//! - `p`, `v`, `reqq` and `yourip` are advisory; a malformed or oversized one reads as
//!   absent, so a peer with an odd client string is not dropped for it.
//!
//! Everything is bounded: the payload by [`MAX_EXTENDED_HANDSHAKE_LEN`], `m` by
//! [`MAX_EXTENSIONS`] and [`MAX_EXTENSION_NAME_LEN`], `v` by [`MAX_CLIENT_NAME_LEN`],
//! `metadata_size` by [`MAX_METADATA_SIZE`].

use std::collections::BTreeMap;
use std::net::IpAddr;

use bip_bencode::BRefAccess;

use super::{MAX_METADATA_SIZE, Message, PeerWireError};
use crate::bencode::{self, Limits, put_bytes, put_int};

/// The extended message id of the extended handshake itself.
pub const EXTENDED_HANDSHAKE_ID: u8 = 0;

/// The most entries accepted in the `m` dictionary. Clients in the wild name fewer than 20.
pub const MAX_EXTENSIONS: usize = 64;

/// The longest extension name accepted in `m`, in bytes (names are short ASCII like
/// `ut_metadata`).
pub const MAX_EXTENSION_NAME_LEN: usize = 64;

/// The longest client name (`v`) kept, in bytes; a longer one reads as absent.
pub const MAX_CLIENT_NAME_LEN: usize = 128;

/// The largest extended handshake payload accepted, in bytes. Real ones are a few hundred
/// bytes.
pub const MAX_EXTENDED_HANDSHAKE_LEN: usize = 64 * 1024;

/// Nesting accepted in an extended handshake: the dictionary and `m` need 2; unknown keys
/// may nest a little deeper.
const MAX_DEPTH: usize = 8;

/// A BEP 10 extended handshake.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtendedHandshake {
    /// Extension name to the extended message id the sender wants to *receive* it under.
    /// Id 0 means the sender disables that extension.
    pub m: BTreeMap<String, u8>,
    /// The sender's listen port.
    pub p: Option<u16>,
    /// The sender's client name and version.
    pub v: Option<String>,
    /// How many outstanding requests the sender queues before dropping more.
    pub reqq: Option<u32>,
    /// The size of the torrent's info dictionary in bytes (BEP 9), if the sender has it.
    pub metadata_size: Option<u32>,
    /// Our address as the sender sees it: 4 bytes (IPv4) or 16 bytes (IPv6).
    pub yourip: Option<Vec<u8>>,
}

impl ExtendedHandshake {
    /// The id the sender wants `name` messages sent under, if it speaks that extension (an
    /// id of 0 means it does not).
    pub fn extension_id(&self, name: &str) -> Option<u8> {
        self.m.get(name).copied().filter(|&id| id != 0)
    }

    /// `yourip` as an address.
    pub fn yourip_addr(&self) -> Option<IpAddr> {
        let bytes = self.yourip.as_deref()?;
        if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
            return Some(IpAddr::from(v4));
        }
        <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from)
    }

    /// Decodes the payload of an extended message with id [`EXTENDED_HANDSHAKE_ID`].
    pub fn decode(payload: &[u8]) -> Result<Self, PeerWireError> {
        let limits = Limits {
            max_input: MAX_EXTENDED_HANDSHAKE_LEN,
            max_depth: MAX_DEPTH,
            ..Limits::DEFAULT
        };
        let root = bencode::decode_ref(payload, &limits)?;
        let dict = root.dict().ok_or(invalid("not a dictionary"))?;
        let mut out = ExtendedHandshake::default();

        if let Some(m) = dict.lookup(b"m") {
            let m = m.dict().ok_or(invalid("`m` is not a dictionary"))?;
            let entries = m.to_list();
            if entries.len() > MAX_EXTENSIONS {
                return Err(PeerWireError::TooManyExtensions {
                    count: entries.len(),
                    limit: MAX_EXTENSIONS,
                });
            }
            for (name, id) in entries {
                if name.len() > MAX_EXTENSION_NAME_LEN {
                    return Err(invalid("an extension name is too long"));
                }
                let name = std::str::from_utf8(name)
                    .map_err(|_| invalid("an extension name is not UTF-8"))?;
                let id = id
                    .int()
                    .and_then(|id| u8::try_from(id).ok())
                    .ok_or(invalid("an extension id is not an integer in 0..=255"))?;
                out.m.insert(name.to_owned(), id);
            }
        }

        if let Some(size) = dict.lookup(b"metadata_size") {
            let size = size
                .int()
                .ok_or(invalid("`metadata_size` is not an integer"))?;
            out.metadata_size = Some(checked_metadata_size(size)?);
        }

        let int = |key: &[u8]| dict.lookup(key).and_then(BRefAccess::int);
        let bytes = |key: &[u8]| dict.lookup(key).and_then(BRefAccess::bytes);
        out.p = int(b"p").and_then(|p| u16::try_from(p).ok());
        out.reqq = int(b"reqq").and_then(|r| u32::try_from(r).ok());
        out.v = bytes(b"v")
            .filter(|v| v.len() <= MAX_CLIENT_NAME_LEN)
            .map(|v| String::from_utf8_lossy(v).into_owned());
        out.yourip = bytes(b"yourip")
            .filter(|ip| ip.len() == 4 || ip.len() == 16)
            .map(<[u8]>::to_vec);
        Ok(out)
    }

    /// Appends the bencoded dictionary (the extended message's payload) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        // Keys in canonical (sorted) order: m, metadata_size, p, reqq, v, yourip.
        out.push(b'd');
        put_bytes(out, b"m");
        out.push(b'd');
        for (name, id) in &self.m {
            put_bytes(out, name.as_bytes());
            put_int(out, i64::from(*id));
        }
        out.push(b'e');
        if let Some(size) = self.metadata_size {
            put_bytes(out, b"metadata_size");
            put_int(out, i64::from(size));
        }
        if let Some(p) = self.p {
            put_bytes(out, b"p");
            put_int(out, i64::from(p));
        }
        if let Some(reqq) = self.reqq {
            put_bytes(out, b"reqq");
            put_int(out, i64::from(reqq));
        }
        if let Some(v) = &self.v {
            put_bytes(out, b"v");
            put_bytes(out, v.as_bytes());
        }
        if let Some(ip) = &self.yourip {
            put_bytes(out, b"yourip");
            put_bytes(out, ip);
        }
        out.push(b'e');
    }

    /// The extended message (id [`EXTENDED_HANDSHAKE_ID`]) carrying this handshake.
    pub fn to_message(&self) -> Message {
        super::extended_message(EXTENDED_HANDSHAKE_ID, |out| self.encode(out))
    }
}

fn invalid(reason: &'static str) -> PeerWireError {
    PeerWireError::InvalidExtendedHandshake { reason }
}

/// A metadata size from the network, checked against [`MAX_METADATA_SIZE`].
pub(super) fn checked_metadata_size(size: i64) -> Result<u32, PeerWireError> {
    u32::try_from(size)
        .ok()
        .filter(|&s| s <= MAX_METADATA_SIZE)
        .ok_or(PeerWireError::MetadataTooLarge {
            size,
            limit: MAX_METADATA_SIZE,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bencode::{BencodeError, Value};
    use bytes::Bytes;
    use proptest::prelude::*;

    fn decode(bytes: &[u8]) -> Result<ExtendedHandshake, PeerWireError> {
        ExtendedHandshake::decode(bytes)
    }

    #[test]
    fn decodes_the_bep9_example() {
        let hs = decode(b"d1:md11:ut_metadatai3ee13:metadata_sizei31235ee").unwrap();
        assert_eq!(hs.extension_id("ut_metadata"), Some(3));
        assert_eq!(hs.metadata_size, Some(31235));
        assert_eq!(hs.p, None);
    }

    #[test]
    fn encodes_canonically() {
        let hs = ExtendedHandshake {
            m: [("ut_metadata".to_owned(), 2), ("lt_donthave".to_owned(), 7)].into(),
            p: Some(6881),
            v: Some("swarmcdn 0.1".to_owned()),
            reqq: Some(250),
            metadata_size: Some(1234),
            yourip: Some(vec![127, 0, 0, 1]),
        };
        let mut out = Vec::new();
        hs.encode(&mut out);
        assert_eq!(
            out,
            &b"d1:md11:lt_donthavei7e11:ut_metadatai2ee13:metadata_sizei1234e\
               1:pi6881e4:reqqi250e1:v12:swarmcdn 0.16:yourip4:\x7f\x00\x00\x01e"[..]
        );
        // What we write is what the generic bencode decoder sees as canonical.
        assert_eq!(
            bencode::decode(&out, &Limits::default())
                .unwrap()
                .to_bytes(),
            out
        );
        assert_eq!(hs.yourip_addr(), Some(IpAddr::from([127, 0, 0, 1])));
        assert_eq!(
            hs.to_message(),
            Message::Extended {
                id: 0,
                payload: Bytes::from(out)
            }
        );
    }

    #[test]
    fn unknown_keys_are_ignored() {
        let hs = decode(b"d12:complete_agoi-1e1:md6:ut_pexi1ee4:xtrald1:ali1eeeee").unwrap();
        assert_eq!(hs.extension_id("ut_pex"), Some(1));
        assert_eq!(decode(b"de"), Ok(ExtendedHandshake::default()));
    }

    #[test]
    fn disabled_extensions_have_no_id() {
        let hs = decode(b"d1:md11:ut_metadatai0eee").unwrap();
        assert_eq!(hs.m.get("ut_metadata"), Some(&0));
        assert_eq!(hs.extension_id("ut_metadata"), None);
    }

    #[test]
    fn malformed_advisory_fields_read_as_absent() {
        let long_v = format!("1:v{}:{}", MAX_CLIENT_NAME_LEN + 1, "x".repeat(129));
        let payload = format!("d1:pi70000e4:reqqi-1e{long_v}6:yourip5:abcdee");
        let hs = decode(payload.as_bytes()).unwrap();
        assert_eq!(hs, ExtendedHandshake::default());
        let hs = decode(b"d1:p4:port1:vi3ee").unwrap();
        assert_eq!((hs.p, hs.v), (None, None));
        // Non-UTF-8 client names are kept, lossily.
        let hs = decode(b"d1:v3:a\xffbe").unwrap();
        assert_eq!(hs.v.as_deref(), Some("a\u{fffd}b"));
    }

    #[test]
    fn malformed_m_is_an_error() {
        for (bad, why) in [
            (&b"le"[..], "not a dictionary"),
            (b"d1:mi1ee", "`m` is not a dictionary"),
            (
                b"d1:md3:fooi256eee",
                "an extension id is not an integer in 0..=255",
            ),
            (
                b"d1:md3:fooi-1eee",
                "an extension id is not an integer in 0..=255",
            ),
            (
                b"d1:md3:foo1:xee",
                "an extension id is not an integer in 0..=255",
            ),
            (b"d1:md2:\xff\xfei1eee", "an extension name is not UTF-8"),
        ] {
            assert_eq!(
                decode(bad),
                Err(PeerWireError::InvalidExtendedHandshake { reason: why })
            );
        }
    }

    #[test]
    fn bounds_are_enforced() {
        // Too many extensions.
        let mut payload = b"d1:md".to_vec();
        for i in 0..=MAX_EXTENSIONS {
            let name = format!("x{i:03}");
            put_bytes(&mut payload, name.as_bytes());
            put_int(&mut payload, 1);
        }
        payload.extend_from_slice(b"ee");
        assert_eq!(
            decode(&payload),
            Err(PeerWireError::TooManyExtensions {
                count: MAX_EXTENSIONS + 1,
                limit: MAX_EXTENSIONS
            })
        );
        // An extension name one byte too long.
        let mut payload = b"d1:md".to_vec();
        put_bytes(&mut payload, &[b'a'; MAX_EXTENSION_NAME_LEN + 1]);
        payload.extend_from_slice(b"i1eee");
        assert!(matches!(
            decode(&payload),
            Err(PeerWireError::InvalidExtendedHandshake { .. })
        ));
        // metadata_size over the limit, or negative.
        let too_big = format!("d13:metadata_sizei{}ee", u64::from(MAX_METADATA_SIZE) + 1);
        assert!(matches!(
            decode(too_big.as_bytes()),
            Err(PeerWireError::MetadataTooLarge { .. })
        ));
        assert!(matches!(
            decode(b"d13:metadata_sizei-1ee"),
            Err(PeerWireError::MetadataTooLarge { size: -1, .. })
        ));
        // The payload itself, and its nesting.
        let mut huge = b"d1:x".to_vec();
        put_bytes(&mut huge, &vec![b'a'; MAX_EXTENDED_HANDSHAKE_LEN]);
        huge.push(b'e');
        assert!(matches!(
            decode(&huge),
            Err(PeerWireError::Bencode(BencodeError::TooLarge { .. }))
        ));
        let deep = [&b"d1:x"[..], &[b'l'; 10], &[b'e'; 10], b"e"].concat();
        assert!(matches!(
            decode(&deep),
            Err(PeerWireError::Bencode(BencodeError::TooDeep { .. }))
        ));
    }

    fn arb_extended_handshake() -> impl Strategy<Value = ExtendedHandshake> {
        (
            proptest::collection::btree_map("[a-z_]{1,20}", any::<u8>(), 0..10),
            any::<Option<u16>>(),
            proptest::option::of("\\PC{0,30}"),
            any::<Option<u32>>(),
            proptest::option::of(0..=MAX_METADATA_SIZE),
            proptest::option::of(prop_oneof![
                any::<[u8; 4]>().prop_map(|ip| ip.to_vec()),
                any::<[u8; 16]>().prop_map(|ip| ip.to_vec()),
            ]),
        )
            .prop_map(|(m, p, v, reqq, metadata_size, yourip)| ExtendedHandshake {
                m,
                p,
                v,
                reqq,
                metadata_size,
                yourip,
            })
    }

    /// Dictionaries using the handshake's keys (and others) with values of any shape.
    fn arb_handshake_like() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            (-2i64..70_000).prop_map(Value::Int),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(Value::Bytes),
        ];
        let value = prop_oneof![
            3 => leaf.clone(),
            1 => proptest::collection::btree_map(
                proptest::collection::vec(any::<u8>(), 1..6),
                leaf,
                0..4,
            )
            .prop_map(Value::Dict),
        ];
        let key = prop_oneof![
            Just(b"m".to_vec()),
            Just(b"p".to_vec()),
            Just(b"v".to_vec()),
            Just(b"reqq".to_vec()),
            Just(b"metadata_size".to_vec()),
            Just(b"yourip".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..4),
        ];
        proptest::collection::btree_map(key, value, 0..7).prop_map(Value::Dict)
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_identity(hs in arb_extended_handshake()) {
            let mut payload = Vec::new();
            hs.encode(&mut payload);
            prop_assert_eq!(decode(&payload), Ok(hs.clone()));
            // And through the message layer.
            let wire = hs.to_message().to_bytes();
            let decoded = Message::decode(&wire, &super::super::WireLimits::default());
            let Ok(Some((Message::Extended { id: 0, payload }, _))) = decoded else {
                return Err(TestCaseError::fail("not an extended handshake message"));
            };
            prop_assert_eq!(decode(&payload), Ok(hs));
        }

        #[test]
        fn arbitrary_dictionaries_are_judged_without_panicking(dict in arb_handshake_like()) {
            // Whatever decodes re-encodes to something that decodes the same, and an `m`
            // that is not a dictionary of small integers is always refused.
            let bytes = dict.to_bytes();
            let m_ok = match dict.get(b"m") {
                None => true,
                Some(Value::Dict(m)) => m.iter().all(|(name, id)| {
                    std::str::from_utf8(name).is_ok()
                        && id.as_int().is_some_and(|id| (0..=255).contains(&id))
                }),
                Some(_) => false,
            };
            match decode(&bytes) {
                Ok(hs) => {
                    prop_assert!(m_ok);
                    let mut again = Vec::new();
                    hs.encode(&mut again);
                    prop_assert_eq!(decode(&again), Ok(hs));
                }
                Err(_) => prop_assert!(!m_ok || dict.get(b"metadata_size").is_some()),
            }
        }
    }

    proptest! {
        // Fewer cases: each truncation is a bencode error, and the bencode library captures
        // a backtrace per error when RUST_BACKTRACE is set, which makes this test slow.
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn every_truncation_is_an_error(hs in arb_extended_handshake()) {
            let mut payload = Vec::new();
            hs.encode(&mut payload);
            for cut in 0..payload.len() {
                prop_assert!(decode(&payload[..cut]).is_err(), "cut at {}", cut);
            }
        }
    }
}
