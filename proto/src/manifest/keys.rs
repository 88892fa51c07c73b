//! Text forms of the publisher's keys.
//!
//! A public key is written as 64 hex digits: short enough to paste into a site's config, and
//! the same form the JSON manifest uses. A signing key is the 32-byte Ed25519 seed in hex
//! *behind a label*, `swarmcdn-signing-key-v1:<64 hex>`: both keys are 32 bytes, and without
//! the label a secret key pasted where a public key belongs would be accepted silently (and
//! then published). [`parse_public_key`] rejects text that carries the label.
//!
//! The crate does no file IO and draws no randomness: the seeder reads and writes key files and
//! passes 32 bytes from the operating system's generator to [`signing_key_from_seed`].

use data_encoding::HEXLOWER;
use ed25519_dalek::{SigningKey, VerifyingKey};

use super::{ManifestError, wire};

/// The label in front of a signing key's hex seed.
pub const SIGNING_KEY_PREFIX: &str = "swarmcdn-signing-key-v1:";

/// The signing key for a 32-byte seed. Pass fresh OS randomness to make a new key.
pub fn signing_key_from_seed(seed: [u8; 32]) -> SigningKey {
    SigningKey::from_bytes(&seed)
}

/// The text form of a signing key: [`SIGNING_KEY_PREFIX`], 64 lowercase hex digits of the seed
/// and a line feed. It is a secret: store it with restrictive permissions.
pub fn signing_key_to_string(key: &SigningKey) -> String {
    format!("{SIGNING_KEY_PREFIX}{}\n", HEXLOWER.encode(key.as_bytes()))
}

/// Parses the text form of a signing key. Whitespace around it is ignored; hex may be in
/// either case. Error messages never include the text, which may be a secret.
///
/// ```
/// use swarmcdn_proto::manifest::{parse_signing_key, signing_key_from_seed, signing_key_to_string};
///
/// let key = signing_key_from_seed([1; 32]);
/// let text = signing_key_to_string(&key);
/// assert!(text.starts_with("swarmcdn-signing-key-v1:0101"));
/// assert_eq!(parse_signing_key(&text)?.to_bytes(), key.to_bytes());
/// # Ok::<(), swarmcdn_proto::manifest::ManifestError>(())
/// ```
pub fn parse_signing_key(text: &str) -> Result<SigningKey, ManifestError> {
    let Some(hex) = text.trim().strip_prefix(SIGNING_KEY_PREFIX) else {
        return Err(ManifestError::BadSigningKey(
            "it must start with `swarmcdn-signing-key-v1:`",
        ));
    };
    let seed = wire::decode_hex::<32>(hex).ok_or(ManifestError::BadSigningKey(
        "the label must be followed by exactly 64 hex digits",
    ))?;
    Ok(signing_key_from_seed(seed))
}

/// The text form of a public key: 64 lowercase hex digits.
pub fn public_key_to_string(key: &VerifyingKey) -> String {
    HEXLOWER.encode(key.as_bytes())
}

/// Parses a public key from 64 hex digits (either case; whitespace around them is ignored).
/// Rejects points off the curve, weak (small-order) keys, which verify signatures they did not
/// make, and signing keys pasted by mistake.
///
/// ```
/// use swarmcdn_proto::manifest::{parse_public_key, public_key_to_string, signing_key_from_seed};
///
/// let public = signing_key_from_seed([1; 32]).verifying_key();
/// assert_eq!(parse_public_key(&public_key_to_string(&public))?, public);
/// assert!(parse_public_key("not a key").is_err());
/// # Ok::<(), swarmcdn_proto::manifest::ManifestError>(())
/// ```
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, ManifestError> {
    let text = text.trim();
    if text.starts_with(SIGNING_KEY_PREFIX) {
        return Err(ManifestError::MalformedKey(
            "this is a signing (secret) key, not a public key",
        ));
    }
    let bytes = wire::decode_hex::<32>(text)
        .ok_or(ManifestError::MalformedKey("a public key is 64 hex digits"))?;
    verifying_key_from_bytes(&bytes)
}

/// Decodes a public key, rejecting points off the curve and weak keys.
pub(crate) fn verifying_key_from_bytes(bytes: &[u8; 32]) -> Result<VerifyingKey, ManifestError> {
    let key = VerifyingKey::from_bytes(bytes)
        .map_err(|_| ManifestError::MalformedKey("the bytes are not a point on the curve"))?;
    if key.is_weak() {
        return Err(ManifestError::MalformedKey(
            "the key is a weak (small-order) key",
        ));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_key_text_round_trips() {
        let key = signing_key_from_seed([0x5a; 32]);
        let text = signing_key_to_string(&key);
        assert_eq!(text, format!("{SIGNING_KEY_PREFIX}{}\n", "5a".repeat(32)));
        assert_eq!(parse_signing_key(&text).unwrap().to_bytes(), key.to_bytes());
        let upper = format!("  {SIGNING_KEY_PREFIX}{}  \r\n", "5A".repeat(32));
        assert_eq!(
            parse_signing_key(&upper).unwrap().to_bytes(),
            key.to_bytes()
        );
    }

    #[test]
    fn malformed_signing_keys_are_rejected_without_echoing_them() {
        let secret = "5a".repeat(32);
        for bad in [
            secret.clone(),
            format!("{SIGNING_KEY_PREFIX}{}", &secret[..62]),
            format!("{SIGNING_KEY_PREFIX}{secret}00"),
            format!("{SIGNING_KEY_PREFIX}{}zz", &secret[..62]),
            String::new(),
        ] {
            let err = parse_signing_key(&bad).unwrap_err();
            assert!(matches!(err, ManifestError::BadSigningKey(_)));
            assert!(!err.to_string().contains(&secret[..16]), "{err}");
        }
    }

    #[test]
    fn public_keys_parse_from_hex_only() {
        let public = signing_key_from_seed([3; 32]).verifying_key();
        let hex = public_key_to_string(&public);
        assert_eq!(hex.len(), 64);
        assert_eq!(parse_public_key(&hex).unwrap(), public);
        assert_eq!(parse_public_key(&hex.to_uppercase()).unwrap(), public);
        assert_eq!(parse_public_key(&format!(" {hex}\n")).unwrap(), public);
        for bad in [
            "",
            &hex[..63],
            &format!("{hex}0"),
            &format!("{}g", &hex[..63]),
        ] {
            assert!(
                matches!(parse_public_key(bad), Err(ManifestError::MalformedKey(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_signing_key_is_not_accepted_as_a_public_key() {
        let text = signing_key_to_string(&signing_key_from_seed([3; 32]));
        assert!(matches!(
            parse_public_key(&text),
            Err(ManifestError::MalformedKey(_))
        ));
    }

    #[test]
    fn weak_and_off_curve_keys_are_rejected() {
        // The identity point (y = 1) has small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            verifying_key_from_bytes(&identity),
            Err(ManifestError::MalformedKey(
                "the key is a weak (small-order) key"
            ))
        );
        // y = 2 has no x on the curve (2 is not among the curve's valid y coordinates).
        let mut off_curve = [0u8; 32];
        off_curve[0] = 2;
        assert!(matches!(
            verifying_key_from_bytes(&off_curve),
            Err(ManifestError::MalformedKey(_))
        ));
    }
}
