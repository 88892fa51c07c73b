//! Release lookups: a release's signed manifest, its metainfo and a sample of its swarm in
//! one tracker answer (`GET /api/v1/lookup/{name}[/{version}]`).
//!
//! Why: a site fetching a small asset for the first time needs all three before the first
//! peer-wire byte, and asking for them one after the other costs three HTTP round trips
//! (manifest, then the torrent it names, then an announce for peers), which is most of the
//! time a 20 KiB release takes on a fast network. The tracker has all three in memory, so it
//! hands them out together. The site still checks everything itself: the manifest's
//! signature against its pinned keys, the metainfo's info-hash against the manifest, every
//! piece against the metainfo. The peers are a hint (the site announces as usual, beside
//! the first dials).
//!
//! The body is a bencoded dictionary, keys in canonical order, unknown keys ignored:
//!
//! | key | value |
//! |---|---|
//! | `manifest` | the signed manifest's JSON, exactly as the publisher sent it |
//! | `peers` | compact IPv4 peers (BEP 23), 6 bytes each; may be empty |
//! | `peers6` | compact IPv6 peers (BEP 7), 18 bytes each; omitted when there are none |
//! | `torrent` | the metainfo (`.torrent`) bytes |
//!
//! Decoding checks the shapes (the manifest is well-formed JSON of a signed manifest, the
//! peers are whole entries and at most [`MAX_LOOKUP_PEERS`]); it does not verify the
//! signature or compare hashes, which is the caller's job. The torrent is handed out as its
//! bytes: the caller parses it once the manifest is trusted, and so can report a bad one
//! against the info-hash the manifest names.

use std::net::{SocketAddrV4, SocketAddrV6};

use bip_bencode::BRefAccess;

use super::announce::{compact_v4, compact_v6};
use crate::bencode::{self, BencodeError, Limits, put_bytes};
use crate::manifest::{self, ManifestError, SignedManifest};

/// The most peers a lookup may list (IPv4 and IPv6 together); a tracker sends far fewer.
pub const MAX_LOOKUP_PEERS: usize = 200;

/// The largest lookup body decoded, in bytes: the largest torrent the bencode decoder takes,
/// the largest manifest, the peers and some room for framing.
pub const MAX_LOOKUP_LEN: usize =
    Limits::DEFAULT.max_input + manifest::MAX_ENCODED_LEN + MAX_LOOKUP_PEERS * 18 + 1024;

/// Nesting accepted: the dictionary is flat; unknown keys may nest a little.
const MAX_DEPTH: usize = 4;

/// A decoded release lookup: shapes checked, nothing verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseLookup {
    /// The signed manifest (signature not yet checked).
    pub manifest: SignedManifest,
    /// The metainfo's bytes, as published (not parsed, not compared with the manifest).
    pub torrent: Vec<u8>,
    /// IPv4 peers of the release's swarm.
    pub peers: Vec<SocketAddrV4>,
    /// IPv6 peers of the release's swarm.
    pub peers6: Vec<SocketAddrV6>,
}

/// Why a lookup body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LookupError {
    /// The body is not bencode, or larger than [`MAX_LOOKUP_LEN`].
    #[error("the release lookup is not acceptable bencode: {0}")]
    Bencode(#[from] BencodeError),
    /// The body is bencode but not a dictionary.
    #[error("the release lookup is not a dictionary")]
    NotADictionary,
    /// A required key is absent (`manifest`, `torrent`).
    #[error("the release lookup has no `{0}`")]
    Missing(&'static str),
    /// A key holds something other than a byte string.
    #[error("the release lookup's `{0}` is not a byte string")]
    NotBytes(&'static str),
    /// `manifest` is not a well-formed signed manifest.
    #[error("the release lookup's manifest is malformed: {0}")]
    Manifest(#[source] ManifestError),
    /// A compact peer string is not a whole number of entries.
    #[error("the release lookup's `{field}` is {len} bytes, not a whole number of peers")]
    BadCompactLength {
        /// `peers` or `peers6`.
        field: &'static str,
        /// The string's length.
        len: usize,
    },
    /// More than [`MAX_LOOKUP_PEERS`] peers.
    #[error("the release lookup lists {count} peers, the limit is {limit}")]
    TooManyPeers {
        /// How many peers the body lists.
        count: usize,
        /// [`MAX_LOOKUP_PEERS`].
        limit: usize,
    },
}

impl ReleaseLookup {
    /// Decodes a lookup body (the client direction). Never panics; every size is bounded
    /// before anything is allocated for it.
    pub fn from_bytes(body: &[u8]) -> Result<ReleaseLookup, LookupError> {
        let limits = Limits {
            max_input: MAX_LOOKUP_LEN,
            max_depth: MAX_DEPTH,
            ..Limits::DEFAULT
        };
        let root = bencode::decode_ref(body, &limits)?;
        let dict = root.dict().ok_or(LookupError::NotADictionary)?;
        let bytes_of = |key: &'static str| {
            dict.lookup(key.as_bytes())
                .ok_or(LookupError::Missing(key))?
                .bytes()
                .ok_or(LookupError::NotBytes(key))
        };
        let compact = |key: &'static str, size: usize| -> Result<&[u8], LookupError> {
            let Some(value) = dict.lookup(key.as_bytes()) else {
                return Ok(&[]);
            };
            let bytes = value.bytes().ok_or(LookupError::NotBytes(key))?;
            if bytes.len() % size != 0 {
                return Err(LookupError::BadCompactLength {
                    field: key,
                    len: bytes.len(),
                });
            }
            Ok(bytes)
        };
        let (v4, v6) = (compact("peers", 6)?, compact("peers6", 18)?);
        let count = v4.len() / 6 + v6.len() / 18;
        if count > MAX_LOOKUP_PEERS {
            return Err(LookupError::TooManyPeers {
                count,
                limit: MAX_LOOKUP_PEERS,
            });
        }
        let manifest =
            SignedManifest::from_json(bytes_of("manifest")?).map_err(LookupError::Manifest)?;
        let torrent = bytes_of("torrent")?.to_vec();
        Ok(ReleaseLookup {
            manifest,
            torrent,
            peers: v4.chunks_exact(6).filter_map(compact_v4).collect(),
            peers6: v6.chunks_exact(18).filter_map(compact_v6).collect(),
        })
    }
}

/// Appends a lookup body to `out` (the tracker direction): `manifest_json` and `torrent`
/// as stored, peers taken from iterators as they come. `peers6` is written only when there
/// are IPv6 peers. The caller keeps to [`MAX_LOOKUP_PEERS`].
pub fn write_lookup<P4, P6>(
    out: &mut Vec<u8>,
    manifest_json: &[u8],
    torrent: &[u8],
    peers: P4,
    peers6: P6,
) where
    P4: IntoIterator<Item = SocketAddrV4>,
    P6: IntoIterator<Item = SocketAddrV6>,
{
    out.push(b'd');
    put_bytes(out, b"manifest");
    put_bytes(out, manifest_json);
    super::write_compact_peers(out, peers, peers6);
    put_bytes(out, b"torrent");
    put_bytes(out, torrent);
    out.push(b'e');
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;

    use super::*;
    use crate::manifest::signing_key_from_seed;

    /// A signed manifest's JSON and a small single-file torrent (not the one it names: the
    /// lookup does not compare them).
    fn signed_manifest_and_torrent() -> (Vec<u8>, Vec<u8>) {
        let json = crate::manifest::tests::sample()
            .sign(&signing_key_from_seed([9; 32]))
            .to_json()
            .into_bytes();
        let mut torrent =
            b"d4:infod6:lengthi3e4:name5:a.txt12:piece lengthi16384e6:pieces20:".to_vec();
        torrent.extend_from_slice(&[0x5a; 20]);
        torrent.extend_from_slice(b"ee");
        (json, torrent)
    }

    fn body(peers: &[SocketAddrV4], peers6: &[SocketAddrV6]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let (json, torrent) = signed_manifest_and_torrent();
        let mut out = Vec::new();
        write_lookup(
            &mut out,
            &json,
            &torrent,
            peers.iter().copied(),
            peers6.iter().copied(),
        );
        (out, json, torrent)
    }

    #[test]
    fn round_trip_with_both_families() {
        let v4 = [SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 6881)];
        let v6 = [SocketAddrV6::new(Ipv6Addr::LOCALHOST, 51413, 0, 0)];
        let (out, json, torrent) = body(&v4, &v6);
        let lookup = ReleaseLookup::from_bytes(&out).unwrap();
        assert_eq!(lookup.manifest, SignedManifest::from_json(&json).unwrap());
        assert_eq!(lookup.torrent, torrent);
        assert_eq!(lookup.peers, v4);
        assert_eq!(lookup.peers6, v6);
        // Canonical: decoding and re-encoding as a plain value gives the same bytes.
        let value = bencode::decode(&out, &Limits::DEFAULT).unwrap();
        assert_eq!(value.to_bytes(), out);
    }

    #[test]
    fn no_peers_writes_an_empty_peers_string_and_no_peers6() {
        let (out, _, _) = body(&[], &[]);
        assert!(out.windows(8).any(|w| w == b"5:peers0"));
        assert!(!out.windows(6).any(|w| w == b"peers6"));
        let lookup = ReleaseLookup::from_bytes(&out).unwrap();
        assert!(lookup.peers.is_empty() && lookup.peers6.is_empty());
    }

    #[test]
    fn bad_bodies_are_refused_with_the_reason() {
        let (json, torrent) = signed_manifest_and_torrent();
        let dict = |entries: &[(&[u8], &[u8])]| {
            let mut out = vec![b'd'];
            for (k, v) in entries {
                put_bytes(&mut out, k);
                put_bytes(&mut out, v);
            }
            out.push(b'e');
            out
        };
        let missing_torrent = dict(&[(b"manifest", &json)]);
        assert_eq!(
            ReleaseLookup::from_bytes(&missing_torrent),
            Err(LookupError::Missing("torrent"))
        );
        let missing_manifest = dict(&[(b"torrent", &torrent)]);
        assert_eq!(
            ReleaseLookup::from_bytes(&missing_manifest),
            Err(LookupError::Missing("manifest"))
        );
        let odd_peers = dict(&[
            (b"manifest", &json),
            (b"peers", b"12345"),
            (b"torrent", &torrent),
        ]);
        assert!(matches!(
            ReleaseLookup::from_bytes(&odd_peers),
            Err(LookupError::BadCompactLength {
                field: "peers",
                len: 5
            })
        ));
        let many = vec![7u8; 6 * (MAX_LOOKUP_PEERS + 1)];
        let too_many = dict(&[
            (b"manifest", &json),
            (b"peers", &many),
            (b"torrent", &torrent),
        ]);
        assert!(matches!(
            ReleaseLookup::from_bytes(&too_many),
            Err(LookupError::TooManyPeers { .. })
        ));
        let bad_manifest = dict(&[(b"manifest", b"{}"), (b"torrent", &torrent)]);
        assert!(matches!(
            ReleaseLookup::from_bytes(&bad_manifest),
            Err(LookupError::Manifest(_))
        ));
        let odd_peers6 = dict(&[
            (b"manifest", &json),
            (b"peers6", &[1; 19]),
            (b"torrent", &torrent),
        ]);
        assert!(matches!(
            ReleaseLookup::from_bytes(&odd_peers6),
            Err(LookupError::BadCompactLength {
                field: "peers6",
                len: 19
            })
        ));
        // Over the limit only together: 150 IPv4 and 51 IPv6 peers.
        let (v4, v6) = (vec![7u8; 6 * 150], vec![7u8; 18 * 51]);
        let both = dict(&[
            (b"manifest", &json),
            (b"peers", &v4),
            (b"peers6", &v6),
            (b"torrent", &torrent),
        ]);
        assert!(matches!(
            ReleaseLookup::from_bytes(&both),
            Err(LookupError::TooManyPeers { count: 201, .. })
        ));
        // A key of the wrong type.
        let mut peers_list = b"d8:manifest".to_vec();
        put_bytes(&mut peers_list, &json);
        peers_list.extend_from_slice(b"5:peersle7:torrent");
        put_bytes(&mut peers_list, &torrent);
        peers_list.push(b'e');
        assert_eq!(
            ReleaseLookup::from_bytes(&peers_list),
            Err(LookupError::NotBytes("peers"))
        );
        // Larger than any lookup may be: refused before decoding.
        let mut huge = b"d8:manifest".to_vec();
        put_bytes(&mut huge, &vec![b' '; MAX_LOOKUP_LEN]);
        huge.push(b'e');
        assert!(matches!(
            ReleaseLookup::from_bytes(&huge),
            Err(LookupError::Bencode(BencodeError::TooLarge { .. }))
        ));
        assert_eq!(
            ReleaseLookup::from_bytes(b"le"),
            Err(LookupError::NotADictionary)
        );
        assert!(matches!(
            ReleaseLookup::from_bytes(b"d8:manifest"),
            Err(LookupError::Bencode(_))
        ));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let v4 = [SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 2), 1)];
        let (out, _, _) = body(&v4, &[]);
        for end in 0..out.len() {
            assert!(
                ReleaseLookup::from_bytes(&out[..end]).is_err(),
                "cut at {end}"
            );
        }
    }

    proptest! {
        #[test]
        fn peers_round_trip(
            v4 in prop::collection::vec(any::<([u8; 4], u16)>(), 0..20),
            v6 in prop::collection::vec(any::<([u8; 16], u16)>(), 0..20),
        ) {
            let v4: Vec<_> = v4.into_iter().map(|(ip, p)| SocketAddrV4::new(ip.into(), p)).collect();
            let v6: Vec<_> = v6
                .into_iter()
                .map(|(ip, p)| SocketAddrV6::new(ip.into(), p, 0, 0))
                .collect();
            let (out, _, _) = body(&v4, &v6);
            let lookup = ReleaseLookup::from_bytes(&out).unwrap();
            prop_assert_eq!(lookup.peers, v4);
            prop_assert_eq!(lookup.peers6, v6);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = ReleaseLookup::from_bytes(&bytes);
        }
    }
}
