//! Bencode (BEP 3): a bounded decoder and a canonical encoder.
//!
//! Decoding goes through the `bip_bencode` crate, which parses without copying and keeps the
//! raw bytes of every value (the info-hash is the SHA-1 of the `info` dictionary *as received*,
//! so those raw bytes matter). We put our own bounds around it: a maximum input size and a
//! maximum nesting depth, both named in [`Limits`], so a hostile peer or tracker cannot make us
//! allocate or recurse without limit.
//!
//! Encoding is ours: [`Value::encode`] writes canonical bencode (dictionary keys sorted as raw
//! byte strings, integers without padding), which is what signatures and info-hashes need.
//! The free functions [`put_int`] and [`put_bytes`] let hot paths (the tracker's announce
//! response) write bencode straight into a buffer without building a [`Value`].

use std::collections::BTreeMap;

use bip_bencode::{BDecodeOpt, BRefAccess, BencodeRef, BencodeRefKind};

/// Bounds applied to every decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest input accepted, in bytes.
    pub max_input: usize,
    /// The deepest nesting of lists and dictionaries accepted (the top-level value is depth 1).
    pub max_depth: usize,
    /// The most values (integers, strings, lists, dictionaries, dictionary keys included)
    /// accepted in one input. The decoder builds a tree node per value, so without this bound
    /// a 16 MiB input of two-byte values (`le`) would cost hundreds of megabytes of memory.
    pub max_values: usize,
}

impl Limits {
    /// 16 MiB of input (a torrent for a 1 GB release at 16 KiB pieces is about 1.3 MB),
    /// 32 levels of nesting (metainfo needs 5), 262,144 values (a torrent of 10,000 files
    /// needs about 60,000; the tree then costs at most about 25 MB).
    pub const DEFAULT: Limits = Limits {
        max_input: 16 * 1024 * 1024,
        max_depth: 32,
        max_values: 256 * 1024,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why bytes are not acceptable bencode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BencodeError {
    /// The input is larger than [`Limits::max_input`].
    #[error("bencode input is {len} bytes, the limit is {limit}")]
    TooLarge {
        /// The input's length.
        len: usize,
        /// The limit in force.
        limit: usize,
    },
    /// The input holds more values than [`Limits::max_values`].
    #[error("bencode input holds more than {limit} values")]
    TooManyValues {
        /// The limit in force.
        limit: usize,
    },
    /// Lists and dictionaries are nested deeper than [`Limits::max_depth`].
    #[error("bencode is nested deeper than {limit} levels")]
    TooDeep {
        /// The limit in force.
        limit: usize,
    },
    /// The input ends before the value does.
    #[error("bencode input ends early (at byte {pos})")]
    Truncated {
        /// Where more bytes were needed.
        pos: usize,
    },
    /// The input is not bencode.
    #[error("invalid bencode: {0}")]
    Invalid(String),
    /// A value was complete but bytes followed it.
    #[error("bencode value is followed by trailing bytes")]
    TrailingBytes,
}

/// A decoded bencode value, owning its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Value {
    /// `i42e`
    Int(i64),
    /// `4:spam` (byte strings need not be UTF-8)
    Bytes(Vec<u8>),
    /// `l...e`
    List(Vec<Value>),
    /// `d...e`, keys unique; the map keeps them sorted, so encoding is canonical.
    Dict(BTreeMap<Vec<u8>, Value>),
}

impl Value {
    /// A byte-string value from anything byte-like.
    pub fn bytes(b: impl Into<Vec<u8>>) -> Self {
        Value::Bytes(b.into())
    }

    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The byte string, if this is one.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The byte string as UTF-8, if this is a byte string holding UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The list, if this is one.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// The dictionary, if this is one.
    pub fn as_dict(&self) -> Option<&BTreeMap<Vec<u8>, Value>> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// Looks `key` up, if this is a dictionary.
    pub fn get(&self, key: &[u8]) -> Option<&Value> {
        self.as_dict().and_then(|d| d.get(key))
    }

    /// Appends the canonical encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(i) => put_int(out, *i),
            Value::Bytes(b) => put_bytes(out, b),
            Value::List(items) => {
                out.push(b'l');
                for item in items {
                    item.encode(out);
                }
                out.push(b'e');
            }
            Value::Dict(entries) => {
                out.push(b'd');
                for (k, v) in entries {
                    put_bytes(out, k);
                    v.encode(out);
                }
                out.push(b'e');
            }
        }
    }

    /// The canonical encoding in a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// The nesting depth: 1 for a scalar, one more for each list or dictionary level.
    pub fn depth(&self) -> usize {
        match self {
            Value::Int(_) | Value::Bytes(_) => 1,
            Value::List(items) => 1 + items.iter().map(Value::depth).max().unwrap_or(0),
            Value::Dict(entries) => 1 + entries.values().map(Value::depth).max().unwrap_or(0),
        }
    }
}

/// Builds a [`Value::Dict`] from `(key, value)` pairs; later duplicates replace earlier ones.
impl<K: Into<Vec<u8>>> FromIterator<(K, Value)> for Value {
    fn from_iter<T: IntoIterator<Item = (K, Value)>>(iter: T) -> Self {
        Value::Dict(iter.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

/// Writes `i<n>e`.
pub fn put_int(out: &mut Vec<u8>, n: i64) {
    out.push(b'i');
    out.extend_from_slice(itoa_i64(n, &mut [0u8; 20]));
    out.push(b'e');
}

/// Writes `<len>:<bytes>`.
pub fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(itoa_u64(bytes.len() as u64, &mut [0u8; 20]));
    out.push(b':');
    out.extend_from_slice(bytes);
}

/// Formats without allocating: the tracker writes several integers per announce response.
fn itoa_u64(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

fn itoa_i64(n: i64, buf: &mut [u8; 20]) -> &[u8] {
    if n >= 0 {
        return itoa_u64(n as u64, buf);
    }
    // i64::MIN has 19 digits plus the sign: 20 bytes exactly.
    let digits = itoa_u64(n.unsigned_abs(), buf).len();
    let start = buf.len() - digits - 1;
    buf[start] = b'-';
    &buf[start..]
}

/// Decodes one complete value; the whole input must be that value.
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Value, BencodeError> {
    let parsed = decode_ref(bytes, limits)?;
    Ok(to_value(&parsed))
}

/// Decodes without copying: the returned tree borrows `bytes`, and
/// [`BencodeRef::buffer`] gives the raw bytes of any value in it (the info-hash needs them).
pub(crate) fn decode_ref<'a>(
    bytes: &'a [u8],
    limits: &Limits,
) -> Result<BencodeRef<'a>, BencodeError> {
    if bytes.len() > limits.max_input {
        return Err(BencodeError::TooLarge {
            len: bytes.len(),
            limit: limits.max_input,
        });
    }
    check_value_count(bytes, limits.max_values)?;
    // bip_bencode counts depth from 0 and fails when `depth >= max_recursion`, so a limit of
    // N admits N levels.
    let opts = BDecodeOpt::new(limits.max_depth, false, true);
    BencodeRef::decode(bytes, opts).map_err(|e| map_error(&e, bytes.len(), limits))
}

/// Decodes the one value at the start of `bytes` and returns it with the number of bytes it
/// spans; whatever follows is left alone. BEP 9 metadata pieces need this: the raw piece bytes
/// follow the bencoded dictionary in the same message. `limits.max_input` applies to the whole
/// of `bytes`.
pub(crate) fn decode_prefix_ref<'a>(
    bytes: &'a [u8],
    limits: &Limits,
) -> Result<(BencodeRef<'a>, usize), BencodeError> {
    if bytes.len() > limits.max_input {
        return Err(BencodeError::TooLarge {
            len: bytes.len(),
            limit: limits.max_input,
        });
    }
    check_value_count(bytes, limits.max_values)?;
    let opts = BDecodeOpt::new(limits.max_depth, false, false);
    let value = BencodeRef::decode(bytes, opts).map_err(|e| map_error(&e, bytes.len(), limits))?;
    // The top-level value starts at offset 0, so its raw span's length is where it ends.
    let end = value.buffer().len();
    Ok((value, end))
}

/// Counts the values in `bytes` before `bip_bencode` builds a tree node for each, and refuses
/// more than `limit`. This is a skim, not a parser: it follows the structure just far enough
/// to count (`i...e`, `<len>:<bytes>`, `l`, `d`, `e`) and stops quietly at anything it does
/// not understand, leaving the real error to the decoder. It allocates nothing.
fn check_value_count(bytes: &[u8], limit: usize) -> Result<(), BencodeError> {
    let mut pos = 0usize;
    let mut count = 0usize;
    let mut depth = 0usize;
    while let Some(&byte) = bytes.get(pos) {
        match byte {
            b'e' => {
                // The end of a list or dictionary; at depth 0 it is malformed input.
                let Some(outer) = depth.checked_sub(1) else {
                    return Ok(());
                };
                depth = outer;
                pos += 1;
            }
            b'l' | b'd' => {
                depth += 1;
                pos += 1;
                count += 1;
            }
            b'i' => match bytes[pos..].iter().position(|&b| b == b'e') {
                Some(end) => {
                    pos += end + 1;
                    count += 1;
                }
                None => return Ok(()),
            },
            b'0'..=b'9' => {
                let Some(colon) = bytes[pos..].iter().position(|&b| b == b':') else {
                    return Ok(());
                };
                let Some(len) = std::str::from_utf8(&bytes[pos..pos + colon])
                    .ok()
                    .and_then(|d| d.parse::<usize>().ok())
                else {
                    return Ok(());
                };
                pos = pos.saturating_add(colon + 1).saturating_add(len);
                count += 1;
            }
            _ => return Ok(()),
        }
        if count > limit {
            return Err(BencodeError::TooManyValues { limit });
        }
        if depth == 0 {
            // The top-level value is complete; what follows is not bencode we decode (BEP 9
            // piece data after the dictionary) or is trailing garbage the decoder reports.
            return Ok(());
        }
    }
    Ok(())
}

fn map_error(e: &bip_bencode::BencodeParseError, len: usize, limits: &Limits) -> BencodeError {
    use bip_bencode::BencodeParseErrorKind as K;
    match e.kind() {
        // bip_bencode reports "bytes left over" as BytesEmpty at the end of the value.
        K::BytesEmpty { pos } if *pos < len => BencodeError::TrailingBytes,
        K::BytesEmpty { pos }
        | K::InvalidLengthOverflow { pos }
        | K::InvalidIntNoDelimiter { pos } => BencodeError::Truncated { pos: *pos },
        K::InvalidRecursionExceeded { .. } => BencodeError::TooDeep {
            limit: limits.max_depth,
        },
        other => BencodeError::Invalid(other.to_string()),
    }
}

fn to_value(b: &BencodeRef<'_>) -> Value {
    match b.kind() {
        BencodeRefKind::Int(i) => Value::Int(i),
        BencodeRefKind::Bytes(bytes) => Value::Bytes(bytes.to_vec()),
        BencodeRefKind::List(list) => Value::List(list.into_iter().map(to_value).collect()),
        BencodeRefKind::Dict(dict) => Value::Dict(
            dict.to_list()
                .into_iter()
                .map(|(k, v)| (k.to_vec(), to_value(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(bytes: &[u8]) -> Result<Value, BencodeError> {
        decode(bytes, &Limits::default())
    }

    #[test]
    fn decodes_each_kind() {
        assert_eq!(d(b"i-42e"), Ok(Value::Int(-42)));
        assert_eq!(d(b"4:spam"), Ok(Value::bytes("spam")));
        assert_eq!(d(b"0:"), Ok(Value::bytes("")));
        assert_eq!(
            d(b"li1e1:ae"),
            Ok(Value::List(vec![Value::Int(1), Value::bytes("a")]))
        );
        let dict = d(b"d1:ai1e1:b0:e").unwrap();
        assert_eq!(dict.get(b"a"), Some(&Value::Int(1)));
        assert_eq!(dict.get(b"b").and_then(Value::as_str), Some(""));
    }

    #[test]
    fn encodes_extremes() {
        assert_eq!(Value::Int(i64::MIN).to_bytes(), b"i-9223372036854775808e");
        assert_eq!(Value::Int(i64::MAX).to_bytes(), b"i9223372036854775807e");
        assert_eq!(Value::Int(0).to_bytes(), b"i0e");
        assert_eq!(d(b"i-9223372036854775808e"), Ok(Value::Int(i64::MIN)));
    }

    #[test]
    fn encoder_sorts_keys_canonically() {
        let v: Value = [
            ("b", Value::Int(2)),
            ("a", Value::Int(1)),
            ("ab", Value::Int(3)),
        ]
        .into_iter()
        .collect();
        assert_eq!(v.to_bytes(), b"d1:ai1e2:abi3e1:bi2ee");
    }

    #[test]
    fn rejects_malformed_input() {
        for bad in [
            &b""[..],
            b"i",
            b"i12",
            b"i-0e",
            b"i03e",
            b"ie",
            b"5:abc",
            b"l",
            b"d1:a",
            b"d1:ai1e1:ai2ee", // duplicate key
            b"di1ei2ee",       // non-string key
            b"x",
            b"-1:",
        ] {
            assert!(
                d(bad).is_err(),
                "{:?} should not decode",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn reports_truncation_and_trailing_bytes() {
        assert!(matches!(d(b"4:spa"), Err(BencodeError::Truncated { .. })));
        assert!(matches!(d(b"li1e"), Err(BencodeError::Truncated { .. })));
        assert!(matches!(d(b"i1ei2e"), Err(BencodeError::TrailingBytes)));
    }

    #[test]
    fn depth_limit_is_enforced() {
        let limits = Limits {
            max_depth: 3,
            ..Limits::default()
        };
        assert_eq!(decode(b"llleee", &limits).unwrap().depth(), 3);
        assert_eq!(
            decode(b"lllleeee", &limits),
            Err(BencodeError::TooDeep { limit: 3 })
        );
        // A deeply nested hostile input fails cleanly with the default limit.
        let deep = [vec![b'l'; 100_000], vec![b'e'; 100_000]].concat();
        assert_eq!(d(&deep), Err(BencodeError::TooDeep { limit: 32 }));
    }

    #[test]
    fn value_count_limit_is_enforced() {
        let limits = Limits {
            max_values: 4,
            ..Limits::default()
        };
        // A list of three integers is four values.
        assert!(decode(b"li1ei2ei3ee", &limits).is_ok());
        assert_eq!(
            decode(b"li1ei2ei3ei4ee", &limits),
            Err(BencodeError::TooManyValues { limit: 4 })
        );
        // Dictionary keys count: d + 2 keys + 2 values = 5.
        assert_eq!(
            decode(b"d1:ai1e1:bi2ee", &limits),
            Err(BencodeError::TooManyValues { limit: 4 })
        );
        // The hostile shape that motivated the bound: millions of empty lists.
        let flood = [b"l".as_slice(), &b"le".repeat(1_000_000), b"e"].concat();
        assert_eq!(
            d(&flood),
            Err(BencodeError::TooManyValues {
                limit: Limits::DEFAULT.max_values
            })
        );
        // Malformed input is left to the decoder's own errors.
        assert!(matches!(d(b"l5:abe"), Err(BencodeError::Truncated { .. })));
    }

    #[test]
    fn size_limit_is_enforced() {
        let limits = Limits {
            max_input: 8,
            ..Limits::default()
        };
        assert_eq!(
            decode(b"9:123456789", &limits),
            Err(BencodeError::TooLarge { len: 11, limit: 8 })
        );
    }

    #[test]
    fn raw_spans_are_kept() {
        let input = b"d4:infod1:xi1ee1:zi2ee";
        let parsed = decode_ref(input, &Limits::default()).unwrap();
        let info = parsed.dict().unwrap().lookup(b"info").unwrap();
        assert_eq!(info.buffer(), b"d1:xi1ee");
    }

    #[test]
    fn every_truncation_of_a_valid_value_is_an_error() {
        let full = b"d4:listli1e3:abce4:nested1:ai-7ee";
        assert!(d(full).is_err()); // a dict value missing: nested has key without value
        let full = b"d4:listli1e3:abce6:nestedd1:ai-7eee";
        assert!(d(full).is_ok());
        for cut in 0..full.len() {
            assert!(d(&full[..cut]).is_err(), "prefix of {cut} bytes decoded");
        }
    }

    #[test]
    fn prefix_decode_reports_where_the_value_ends() {
        let input = b"d1:ai1ee\x00raw tail";
        let (value, end) = decode_prefix_ref(input, &Limits::default()).unwrap();
        assert_eq!(end, 8);
        assert_eq!(value.buffer(), b"d1:ai1ee");
        // A value that is the whole input ends at the input's end.
        assert_eq!(decode_prefix_ref(b"i7e", &Limits::default()).unwrap().1, 3);
        // A cut value is still an error, and the limits still apply.
        assert!(matches!(
            decode_prefix_ref(b"d1:ai1e", &Limits::default()),
            Err(BencodeError::Truncated { .. })
        ));
        let shallow = Limits {
            max_depth: 1,
            ..Limits::default()
        };
        assert_eq!(
            decode_prefix_ref(b"lleetail", &shallow).map(|(_, end)| end),
            Err(BencodeError::TooDeep { limit: 1 })
        );
    }

    pub(crate) fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(Value::Int),
            proptest::collection::vec(any::<u8>(), 0..24).prop_map(Value::Bytes),
        ];
        leaf.prop_recursive(6, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::List),
                proptest::collection::btree_map(
                    proptest::collection::vec(any::<u8>(), 0..12),
                    inner,
                    0..8
                )
                .prop_map(Value::Dict),
            ]
        })
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_identity(v in arb_value()) {
            let bytes = v.to_bytes();
            prop_assert_eq!(d(&bytes), Ok(v));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = d(&bytes);
        }

        #[test]
        fn canonical_input_re_encodes_to_itself(v in arb_value()) {
            let bytes = v.to_bytes();
            let again = d(&bytes).unwrap().to_bytes();
            prop_assert_eq!(again, bytes);
        }
    }
}
