//! `swarmcdn_manifest`: a swarmcdn extension of the peer wire (BEP 10) through which a peer
//! hands out the newest signed manifest it holds for a release name.
//!
//! Why it exists: a client that starts while every tracker is down has no way to learn
//! which torrent is the latest release of a name, and a BitTorrent handshake must name a
//! torrent. So every release name also gets a *directory* torrent id,
//! [`directory_info_hash`]: the SHA-1 of [`DIRECTORY_DOMAIN`] followed by the name. It is
//! no real torrent (no metainfo hashes to it); it only lets a handshake say "I want to talk
//! about the name `N`". A client holding a verified manifest of `N` accepts handshakes for
//! that id and, after the extended handshake, answers [`ManifestMessage::Request`] with
//! [`ManifestMessage::Manifest`] (or [`ManifestMessage::Reject`] when it has none).
//!
//! The peer is never trusted: the manifest is only worth its Ed25519 signature, which the
//! receiver checks against its own pinned keys exactly as for a manifest from a tracker.
//! This module only bounds and validates the shape ([`SignedManifest::from_bencode`] runs
//! on the embedded bytes, so a decoded message holds a well-formed, not yet verified,
//! manifest).
//!
//! The payload is a bencoded dictionary (BEP 9 style, unknown keys ignored):
//!
//! | `msg_type` | meaning | other keys |
//! |---|---|---|
//! | 0 | request | `version` (optional): the exact version wanted, canonical spelling |
//! | 1 | manifest | `manifest`: the signed manifest's canonical bencode, as a byte string |
//! | 2 | reject | none: the sender has no manifest (of that version) to give |
//!
//! The whole payload is at most [`MAX_MANIFEST_MESSAGE_LEN`] bytes, which fits a peer
//! message under [`WireLimits::DEFAULT`](super::WireLimits::DEFAULT); a manifest too large
//! for it is not offered (the sender rejects instead).

use bip_bencode::BRefAccess;
use sha1::{Digest, Sha1};

use super::{Message, PeerWireError};
use crate::bencode::{self, Limits, put_bytes, put_int};
use crate::id::InfoHash;
use crate::manifest::{MAX_VERSION_LEN, ReleaseName, SignedManifest, Version};

/// The extension name announced in the extended handshake's `m` dictionary.
pub const SWARMCDN_MANIFEST: &str = "swarmcdn_manifest";

/// What is hashed in front of a release name to make its directory id (the trailing newline
/// keeps it apart from any name, which cannot contain one).
pub const DIRECTORY_DOMAIN: &[u8] = b"swarmcdn-directory-v1\n";

/// The largest `swarmcdn_manifest` payload sent or accepted, in bytes: 240 KiB, under the
/// 256 KiB message bound with room for the frame. A manifest of a few thousand short paths
/// fits; a larger one cannot be handed out this way (the tracker remains the way to get it).
pub const MAX_MANIFEST_MESSAGE_LEN: usize = 240 * 1024;

/// Nesting accepted: the dictionary is flat (the manifest travels as a byte string), unknown
/// keys may nest a little.
const MAX_DEPTH: usize = 4;

/// The directory id of `name`: the info-hash a handshake names to ask about the release
/// name rather than about one torrent (see the module docs).
pub fn directory_info_hash(name: &ReleaseName) -> InfoHash {
    let mut hasher = Sha1::new();
    hasher.update(DIRECTORY_DOMAIN);
    hasher.update(name.as_str().as_bytes());
    InfoHash::new(hasher.finalize().into())
}

/// A `swarmcdn_manifest` message, carried as the payload of [`Message::Extended`] under the
/// id the receiver chose for [`SWARMCDN_MANIFEST`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestMessage {
    /// `msg_type` 0: asks for the newest manifest of the handshake's name, or for `version`.
    Request {
        /// The exact version wanted; `None` for the newest the peer has.
        version: Option<Version>,
    },
    /// `msg_type` 1: a signed manifest (well-formed, signature not yet checked).
    Manifest(Box<SignedManifest>),
    /// `msg_type` 2: the sender has no manifest to give for this request.
    Reject,
}

impl ManifestMessage {
    /// Decodes the payload of an extended message sent under our `swarmcdn_manifest` id.
    /// Never panics; every size is bounded before anything is allocated for it.
    pub fn decode(payload: &[u8]) -> Result<Self, PeerWireError> {
        let limits = Limits {
            max_input: MAX_MANIFEST_MESSAGE_LEN,
            max_depth: MAX_DEPTH,
            ..Limits::DEFAULT
        };
        let root = bencode::decode_ref(payload, &limits)?;
        let dict = root.dict().ok_or(invalid("not a dictionary"))?;
        let msg_type = dict
            .lookup(b"msg_type")
            .and_then(BRefAccess::int)
            .ok_or(invalid("`msg_type` is missing"))?;
        match msg_type {
            0 => {
                let version = match dict.lookup(b"version") {
                    None => None,
                    Some(v) => Some(parse_version(
                        v.bytes().ok_or(invalid("`version` is not a byte string"))?,
                    )?),
                };
                Ok(ManifestMessage::Request { version })
            }
            1 => {
                let bytes = dict
                    .lookup(b"manifest")
                    .and_then(BRefAccess::bytes)
                    .ok_or(invalid("`manifest` is missing or not a byte string"))?;
                let signed = SignedManifest::from_bencode(bytes)
                    .map_err(|_| invalid("`manifest` is not a well-formed signed manifest"))?;
                Ok(ManifestMessage::Manifest(Box::new(signed)))
            }
            2 => Ok(ManifestMessage::Reject),
            _ => Err(invalid("unknown `msg_type`")),
        }
    }

    /// Appends the payload to `out`. For a manifest whose payload would exceed
    /// [`MAX_MANIFEST_MESSAGE_LEN`] use [`ManifestMessage::offer`] first, which turns it into
    /// a reject.
    pub fn encode(&self, out: &mut Vec<u8>) {
        // Keys in canonical (sorted) order: manifest, msg_type, version.
        out.push(b'd');
        match self {
            ManifestMessage::Request { version } => {
                put_bytes(out, b"msg_type");
                put_int(out, 0);
                if let Some(version) = version {
                    put_bytes(out, b"version");
                    put_bytes(out, version.to_string().as_bytes());
                }
            }
            ManifestMessage::Manifest(signed) => {
                put_bytes(out, b"manifest");
                put_bytes(out, &signed.to_bencode());
                put_bytes(out, b"msg_type");
                put_int(out, 1);
            }
            ManifestMessage::Reject => {
                put_bytes(out, b"msg_type");
                put_int(out, 2);
            }
        }
        out.push(b'e');
    }

    /// The answer carrying `signed`: a [`ManifestMessage::Manifest`] if its payload fits in
    /// [`MAX_MANIFEST_MESSAGE_LEN`], else a [`ManifestMessage::Reject`].
    pub fn offer(signed: SignedManifest) -> Self {
        let message = ManifestMessage::Manifest(Box::new(signed));
        if message.encoded_len() <= MAX_MANIFEST_MESSAGE_LEN {
            message
        } else {
            ManifestMessage::Reject
        }
    }

    /// The length of the encoded payload.
    pub fn encoded_len(&self) -> usize {
        let mut out = Vec::new();
        self.encode(&mut out);
        out.len()
    }

    /// The extended message carrying this one, under `extension_id`: the id the *receiver*
    /// gave [`SWARMCDN_MANIFEST`] in its extended handshake.
    pub fn to_message(&self, extension_id: u8) -> Message {
        super::extended_message(extension_id, |out| self.encode(out))
    }
}

/// A version in its canonical spelling, bounded.
fn parse_version(bytes: &[u8]) -> Result<Version, PeerWireError> {
    if bytes.len() > MAX_VERSION_LEN {
        return Err(invalid("`version` is too long"));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| invalid("`version` is not UTF-8"))?;
    Version::parse(text)
        .ok()
        .filter(|v| v.to_string() == text)
        .ok_or(invalid("`version` is not a canonical semantic version"))
}

fn invalid(reason: &'static str) -> PeerWireError {
    PeerWireError::InvalidManifestMessage { reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bencode::BencodeError;
    use crate::manifest::signing_key_from_seed;
    use crate::manifest::tests::{arb_manifest, arb_version};
    use proptest::prelude::*;

    fn encoded(message: &ManifestMessage) -> Vec<u8> {
        let mut out = Vec::new();
        message.encode(&mut out);
        out
    }

    fn sample() -> SignedManifest {
        let file = crate::manifest::ManifestFile::from_bytes(
            crate::RelativePath::parse("index.html").unwrap(),
            "text/html",
            b"<h1>hi</h1>",
        )
        .unwrap();
        crate::manifest::Manifest::new(
            "site".parse().unwrap(),
            Version::new(1, 2, 3),
            InfoHash::new([4; 20]),
            1_700_000_000,
            vec![file],
        )
        .unwrap()
        .sign(&signing_key_from_seed([1; 32]))
    }

    #[test]
    fn directory_ids_are_per_name_and_fixed() {
        let a = directory_info_hash(&"site".parse().unwrap());
        let b = directory_info_hash(&"site2".parse().unwrap());
        assert_ne!(a, b);
        // SHA-1 of "swarmcdn-directory-v1\nsite", computed with `printf ... | sha1sum`.
        assert_eq!(a.to_hex(), "251b092681cb81d3541072196c0f71380568d9ea");
    }

    #[test]
    fn encodes_canonically() {
        assert_eq!(
            encoded(&ManifestMessage::Request { version: None }),
            b"d8:msg_typei0ee"
        );
        assert_eq!(
            encoded(&ManifestMessage::Request {
                version: Some(Version::new(1, 2, 0))
            }),
            b"d8:msg_typei0e7:version5:1.2.0e"
        );
        assert_eq!(encoded(&ManifestMessage::Reject), b"d8:msg_typei2ee");
        let signed = sample();
        let bytes = encoded(&ManifestMessage::Manifest(Box::new(signed.clone())));
        let inner = signed.to_bencode();
        let mut expected = format!("d8:manifest{}:", inner.len()).into_bytes();
        expected.extend_from_slice(&inner);
        expected.extend_from_slice(b"8:msg_typei1ee");
        assert_eq!(bytes, expected);
        // Canonical: bencode's own encoder agrees byte for byte.
        let value = bencode::decode(&bytes, &Limits::DEFAULT).unwrap();
        assert_eq!(value.to_bytes(), bytes);
    }

    #[test]
    fn unknown_keys_are_ignored_and_bad_fields_refused() {
        assert_eq!(
            ManifestMessage::decode(b"d8:msg_typei2e5:extrali1eee"),
            Ok(ManifestMessage::Reject)
        );
        for bad in [
            &b"le"[..],
            b"d5:piecei0ee",
            b"d8:msg_typei7ee",
            b"d8:msg_type1:0e",
            b"d8:msg_typei0e7:versioni1ee",
            b"d8:msg_typei0e7:version3:1.2e",
            b"d8:msg_typei0e7:version6:01.2.3e",
            b"d8:msg_typei1ee",
            b"d8:manifesti3e8:msg_typei1ee",
            b"d8:manifest4:junk8:msg_typei1ee",
        ] {
            assert!(
                matches!(
                    ManifestMessage::decode(bad),
                    Err(PeerWireError::InvalidManifestMessage { .. })
                ),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!("d8:msg_typei0e7:version{}:", MAX_VERSION_LEN + 1);
        let mut long = long.into_bytes();
        long.extend(std::iter::repeat_n(b'1', MAX_VERSION_LEN + 1));
        long.push(b'e');
        assert!(ManifestMessage::decode(&long).is_err());
    }

    #[test]
    fn a_tampered_manifest_still_decodes_but_fails_verification() {
        // The wire only checks the shape: the signature is the receiver's job.
        let signed = sample();
        let mut bytes = encoded(&ManifestMessage::Manifest(Box::new(signed)));
        // Flip a byte inside the signature (the last 64 bytes before the inner `e`).
        let inner_end = bytes.len() - b"e8:msg_typei1ee".len();
        bytes[inner_end - 1] ^= 1;
        let Ok(ManifestMessage::Manifest(tampered)) = ManifestMessage::decode(&bytes) else {
            panic!("a flipped signature byte keeps the shape");
        };
        let trusted = [signing_key_from_seed([1; 32]).verifying_key()];
        assert!(tampered.verify(&trusted).is_err());
    }

    #[test]
    fn the_payload_is_bounded() {
        let mut huge = b"d8:msg_typei2e5:extra".to_vec();
        let filler = MAX_MANIFEST_MESSAGE_LEN;
        huge.extend_from_slice(format!("{filler}:").as_bytes());
        huge.resize(huge.len() + filler, b'x');
        huge.push(b'e');
        assert!(matches!(
            ManifestMessage::decode(&huge),
            Err(PeerWireError::Bencode(BencodeError::TooLarge { .. }))
        ));
    }

    #[test]
    fn a_manifest_too_large_for_one_message_is_offered_as_a_reject() {
        let files = (0..3000)
            .map(|i| {
                crate::manifest::ManifestFile::from_bytes(
                    crate::RelativePath::parse(&format!("assets/some/longer/folder/file-{i}.js"))
                        .unwrap(),
                    "text/javascript",
                    &[],
                )
                .unwrap()
            })
            .collect();
        let big = crate::manifest::Manifest::new(
            "big".parse().unwrap(),
            Version::new(1, 0, 0),
            InfoHash::new([1; 20]),
            1,
            files,
        )
        .unwrap()
        .sign(&signing_key_from_seed([1; 32]));
        assert!(big.to_bencode().len() > MAX_MANIFEST_MESSAGE_LEN);
        assert_eq!(ManifestMessage::offer(big), ManifestMessage::Reject);
        assert!(matches!(
            ManifestMessage::offer(sample()),
            ManifestMessage::Manifest(_)
        ));
    }

    fn arb_message() -> impl Strategy<Value = ManifestMessage> {
        prop_oneof![
            proptest::option::of(arb_version())
                .prop_map(|version| ManifestMessage::Request { version }),
            (arb_manifest(), any::<[u8; 32]>()).prop_map(|(m, seed)| {
                ManifestMessage::Manifest(Box::new(m.sign(&signing_key_from_seed(seed))))
            }),
            Just(ManifestMessage::Reject),
        ]
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_identity(message in arb_message()) {
            let bytes = encoded(&message);
            prop_assert_eq!(ManifestMessage::decode(&bytes), Ok(message.clone()));
            let Message::Extended { id, payload } = message.to_message(9) else {
                panic!("an extended message");
            };
            prop_assert_eq!(id, 9);
            prop_assert_eq!(&payload[..], &bytes[..]);
        }

        #[test]
        fn every_truncation_is_an_error(message in arb_message(), cut in any::<prop::sample::Index>()) {
            let bytes = encoded(&message);
            let cut = cut.index(bytes.len());
            prop_assert!(ManifestMessage::decode(&bytes[..cut]).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = ManifestMessage::decode(&bytes);
        }
    }
}
