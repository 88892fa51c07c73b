//! Query-string machinery shared by the announce and scrape requests.
//!
//! The tracker parses a query on every announce, so nothing here allocates: pairs are slices
//! of the input, and percent-decoding writes into a buffer the caller owns (a `[u8; 20]` for
//! an id, a fixed array for short text). Decoding follows the form encoding clients actually
//! produce: `%XX` (either case) is one byte, `+` is a space, and any other printable ASCII
//! byte stands for itself. Anything else (a bare `%`, a control character, a byte outside
//! ASCII) is refused rather than guessed at.
//!
//! Encoding is the strict direction: only the RFC 3986 unreserved characters
//! (`A-Z a-z 0-9 - . _ ~`) are written literally, every other byte becomes `%XX`.

/// The value held a bare or malformed `%` escape, or a byte that may not appear in a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadEncoding;

/// Splits a raw query (the part after `?`, a leading `?` is tolerated) into `(name, value)`
/// pairs. Empty segments (`a=1&&b=2`, a trailing `&`) are skipped; a segment without `=` has
/// an empty value. Names are compared as they come: no client escapes a parameter name.
pub(crate) fn pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    let query = query.strip_prefix('?').unwrap_or(query);
    query
        .split('&')
        .filter(|segment| !segment.is_empty())
        .map(|segment| segment.split_once('=').unwrap_or((segment, "")))
}

/// Percent-decodes `value` into `buf` and returns the decoded length.
///
/// The length counts every decoded byte, also those that did not fit in `buf`, so a caller
/// can tell "19 bytes" from "21 bytes" from "too long" without a second pass.
pub(crate) fn decode_into(value: &str, buf: &mut [u8]) -> Result<usize, BadEncoding> {
    let mut bytes = value.bytes();
    let mut len = 0usize;
    while let Some(b) = bytes.next() {
        let decoded = match b {
            b'%' => {
                let hi = bytes.next().and_then(hex_digit).ok_or(BadEncoding)?;
                let lo = bytes.next().and_then(hex_digit).ok_or(BadEncoding)?;
                (hi << 4) | lo
            }
            b'+' => b' ',
            b if b.is_ascii_graphic() => b,
            _ => return Err(BadEncoding),
        };
        if let Some(slot) = buf.get_mut(len) {
            *slot = decoded;
        }
        len += 1;
    }
    Ok(len)
}

/// Why a value is not a 20-byte id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdDecodeError {
    /// See [`BadEncoding`].
    BadEncoding,
    /// The value decoded to this many bytes, not 20.
    Length(usize),
}

/// Percent-decodes a binary id (`info_hash`, `peer_id`) straight into 20 bytes.
pub(crate) fn decode_id(value: &str) -> Result<[u8; 20], IdDecodeError> {
    let mut id = [0u8; 20];
    let len = decode_into(value, &mut id).map_err(|BadEncoding| IdDecodeError::BadEncoding)?;
    if len == id.len() {
        Ok(id)
    } else {
        Err(IdDecodeError::Length(len))
    }
}

/// Parses a plain decimal number: ASCII digits only (no sign, no escapes, not empty), no
/// overflow. Leading zeros are accepted.
pub(crate) fn parse_u64(value: &str) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.bytes().try_fold(0u64, |acc, b| {
        let digit = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        acc.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Appends `bytes` percent-encoded: unreserved characters literally, the rest as `%XX`.
pub(crate) fn push_encoded(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
}

/// Appends `&name=` (or `name=` at the start of the query).
pub(crate) fn push_name(out: &mut String, name: &str) {
    if !out.is_empty() {
        out.push('&');
    }
    out.push_str(name);
    out.push('=');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode(value: &str) -> Result<Vec<u8>, BadEncoding> {
        let mut buf = [0u8; 64];
        let len = decode_into(value, &mut buf)?;
        Ok(buf[..len.min(64)].to_vec())
    }

    #[test]
    fn decodes_escapes_literals_and_plus() {
        assert_eq!(decode("%41%6a%6A-._~!*()"), Ok(b"Ajj-._~!*()".to_vec()));
        assert_eq!(decode("a+b"), Ok(b"a b".to_vec()));
        assert_eq!(decode("%00%ff"), Ok(vec![0, 0xff]));
        assert_eq!(decode(""), Ok(vec![]));
    }

    #[test]
    fn refuses_bad_escapes_and_characters() {
        for bad in ["%", "%4", "%4g", "%g4", "a b", "caf\u{e9}", "\t", "%%41"] {
            assert_eq!(decode(bad), Err(BadEncoding), "{bad:?}");
        }
    }

    #[test]
    fn length_counts_bytes_that_did_not_fit() {
        let mut small = [0u8; 2];
        assert_eq!(decode_into("abcd", &mut small), Ok(4));
        assert_eq!(&small, b"ab");
        assert_eq!(decode_id("abc"), Err(IdDecodeError::Length(3)));
        assert_eq!(decode_id(&"a".repeat(21)), Err(IdDecodeError::Length(21)));
        assert_eq!(decode_id(&"%41".repeat(20)), Ok([b'A'; 20]));
    }

    #[test]
    fn numbers_are_plain_digits() {
        assert_eq!(parse_u64("0"), Some(0));
        assert_eq!(parse_u64("007"), Some(7));
        assert_eq!(parse_u64("18446744073709551615"), Some(u64::MAX));
        for bad in ["", "-1", "+1", "1e3", "18446744073709551616", "%31", " 1"] {
            assert_eq!(parse_u64(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn pairs_skip_empty_segments() {
        let got: Vec<_> = pairs("?a=1&&b&c=x=y&").collect();
        assert_eq!(got, vec![("a", "1"), ("b", ""), ("c", "x=y")]);
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_identity(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut text = String::new();
            push_encoded(&mut text, &bytes);
            prop_assert!(text.bytes().all(|b| b.is_ascii_graphic() && b != b'&' && b != b'='));
            prop_assert_eq!(decode(&text), Ok(bytes));
        }
    }
}
