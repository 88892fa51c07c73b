//! HTTP `Range` requests (RFC 9110 section 14) and the conditional headers that go with them.
//!
//! Web seeds live on ranges: Transmission asks for one range per piece and gives up on a
//! `200`, libtorrent asks for up to 16 MiB at a time and closes the connection on a `200`,
//! aria2 asks for a whole file as one range. So the parser is exact about what it accepts and
//! forgiving in the RFC's way about what it does not: a `Range` header it cannot parse, in a
//! unit other than `bytes`, longer than [`MAX_RANGE_HEADER_LEN`] or with more than
//! [`MAX_RANGES`] ranges is ignored (the whole file is sent), which the RFC allows; a header
//! that parses but whose ranges all start past the end is unsatisfiable (`416`). Many small
//! ranges of one large file are a known way to make a server do much work for little request
//! (and overlapping ranges a way to amplify), hence the bound on their number.

use std::ops::Range;

/// The longest `Range` header value considered; longer ones are ignored.
pub const MAX_RANGE_HEADER_LEN: usize = 1024;

/// The most ranges honoured in one request; more are ignored (the whole file is sent).
pub const MAX_RANGES: usize = 16;

/// What to send for a `Range` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeRequest {
    /// The whole file (`200`): no `Range`, or one that is ignored.
    Full,
    /// These byte ranges of the file, each non-empty and inside it, in the order asked (`206`).
    Partial(Vec<Range<u64>>),
    /// Nothing satisfiable (`416`).
    Unsatisfiable,
}

/// Interprets the value of a `Range` header for a file of `len` bytes.
pub fn parse_range(value: &str, len: u64) -> RangeRequest {
    if value.len() > MAX_RANGE_HEADER_LEN {
        return RangeRequest::Full;
    }
    let Some((unit, specs)) = value.split_once('=') else {
        return RangeRequest::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return RangeRequest::Full;
    }
    let mut ranges = Vec::new();
    let mut count = 0;
    for spec in specs.split(',') {
        let spec = spec.trim();
        if spec.is_empty() {
            // The RFC's list syntax allows empty elements.
            continue;
        }
        count += 1;
        if count > MAX_RANGES {
            return RangeRequest::Full;
        }
        let Some(spec) = parse_spec(spec) else {
            return RangeRequest::Full;
        };
        if let Some(range) = resolve(spec, len) {
            ranges.push(range);
        }
    }
    if count == 0 {
        return RangeRequest::Full;
    }
    if ranges.is_empty() {
        RangeRequest::Unsatisfiable
    } else {
        RangeRequest::Partial(ranges)
    }
}

/// One range as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spec {
    /// `first-last` (inclusive) or `first-`.
    From { first: u64, last: Option<u64> },
    /// `-n`: the last `n` bytes.
    Suffix(u64),
}

fn parse_spec(spec: &str) -> Option<Spec> {
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        return Some(Spec::Suffix(digits(last)?));
    }
    let first = digits(first)?;
    let last = if last.is_empty() {
        None
    } else {
        let last = digits(last)?;
        if last < first {
            return None;
        }
        Some(last)
    };
    Some(Spec::From { first, last })
}

/// A non-empty string of ASCII digits that fits in a `u64`.
fn digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The byte range `spec` selects in a file of `len` bytes, or `None` if it selects nothing.
fn resolve(spec: Spec, len: u64) -> Option<Range<u64>> {
    match spec {
        Spec::From { first, last } => {
            if first >= len {
                return None;
            }
            let end = last.map_or(len, |last| last.saturating_add(1).min(len));
            Some(first..end)
        }
        Spec::Suffix(n) => {
            if n == 0 || len == 0 {
                return None;
            }
            Some(len.saturating_sub(n)..len)
        }
    }
}

/// Whether an `If-None-Match` value matches the entity tag `etag` (weak comparison, as the
/// RFC asks for this header: `W/` prefixes are ignored on both sides).
pub fn if_none_match(value: &str, etag: &str) -> bool {
    let ours = etag.trim_start_matches("W/");
    value
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == ours)
}

/// Whether an `If-Range` value lets the `Range` header apply: only our own strong entity
/// tag does (a date, a weak tag or another tag means "send the whole file").
pub fn if_range_holds(value: &str, etag: &str) -> bool {
    value.trim() == etag
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn partial(ranges: &[Range<u64>]) -> RangeRequest {
        RangeRequest::Partial(ranges.to_vec())
    }

    fn one(range: Range<u64>) -> RangeRequest {
        RangeRequest::Partial(vec![range])
    }

    #[test]
    fn single_ranges() {
        assert_eq!(parse_range("bytes=0-99", 1000), one(0..100));
        assert_eq!(parse_range("bytes=100-", 1000), one(100..1000));
        assert_eq!(parse_range("bytes=-100", 1000), one(900..1000));
        assert_eq!(parse_range("bytes=-5000", 1000), one(0..1000));
        assert_eq!(parse_range("bytes=990-5000", 1000), one(990..1000));
        assert_eq!(parse_range("bytes=999-999", 1000), one(999..1000));
        assert_eq!(parse_range("Bytes = 1-2", 1000), one(1..3));
    }

    #[test]
    fn multiple_ranges_keep_their_order() {
        assert_eq!(
            parse_range("bytes=500-599, 0-9,-1", 1000),
            partial(&[500..600, 0..10, 999..1000])
        );
        // Unsatisfiable members are dropped when others can be served.
        assert_eq!(parse_range("bytes=0-1,5000-6000", 1000), one(0..2));
    }

    #[test]
    fn unsatisfiable_ranges() {
        assert_eq!(
            parse_range("bytes=1000-", 1000),
            RangeRequest::Unsatisfiable
        );
        assert_eq!(
            parse_range("bytes=1000-2000", 1000),
            RangeRequest::Unsatisfiable
        );
        assert_eq!(parse_range("bytes=-0", 1000), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range("bytes=-1", 0), RangeRequest::Unsatisfiable);
    }

    #[test]
    fn malformed_headers_are_ignored() {
        for value in [
            "",
            "bytes",
            "bytes=",
            "bytes=,",
            "items=0-1",
            "bytes=a-b",
            "bytes=5-1",
            "bytes=-",
            "bytes=1-2-3",
            "bytes=+1-2",
            "bytes=0x10-20",
            "bytes=99999999999999999999-",
            "bytes=0-1,junk",
        ] {
            assert_eq!(parse_range(value, 1000), RangeRequest::Full, "{value:?}");
        }
    }

    #[test]
    fn too_many_or_too_long_ranges_are_ignored() {
        let many = format!(
            "bytes={}",
            (0..=MAX_RANGES)
                .map(|i| format!("{i}-{i}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(parse_range(&many, 1000), RangeRequest::Full);
        let just_enough = format!(
            "bytes={}",
            (0..MAX_RANGES)
                .map(|i| format!("{i}-{i}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert!(
            matches!(parse_range(&just_enough, 1000), RangeRequest::Partial(r) if r.len() == MAX_RANGES)
        );
        let long = format!("bytes=0-1{}", " ".repeat(MAX_RANGE_HEADER_LEN));
        assert_eq!(parse_range(&long, 1000), RangeRequest::Full);
    }

    #[test]
    fn conditional_headers() {
        let etag = "\"abc-0\"";
        assert!(if_none_match("\"abc-0\"", etag));
        assert!(if_none_match("W/\"abc-0\"", etag));
        assert!(if_none_match("\"x\", \"abc-0\"", etag));
        assert!(if_none_match("*", etag));
        assert!(!if_none_match("\"abc-1\"", etag));
        assert!(if_range_holds("\"abc-0\"", etag));
        assert!(!if_range_holds("W/\"abc-0\"", etag));
        assert!(!if_range_holds("Sat, 01 Jan 2000 00:00:00 GMT", etag));
    }

    proptest! {
        #[test]
        fn never_panics_and_stays_inside_the_file(value in ".{0,64}", len in 0u64..10_000) {
            if let RangeRequest::Partial(ranges) = parse_range(&value, len) {
                prop_assert!(!ranges.is_empty());
                for r in ranges {
                    prop_assert!(r.start < r.end && r.end <= len);
                }
            }
        }

        #[test]
        fn written_ranges_parse_back(
            len in 1u64..1_000_000,
            raw in prop::collection::vec((0u64..1_000_000, 0u64..1_000_000), 1..MAX_RANGES),
        ) {
            let ranges: Vec<Range<u64>> = raw
                .into_iter()
                .map(|(a, b)| (a.min(b) % len)..(a.max(b) % len + 1))
                .filter(|r| r.start < r.end)
                .collect();
            prop_assume!(!ranges.is_empty());
            let text = ranges
                .iter()
                .map(|r| format!("{}-{}", r.start, r.end - 1))
                .collect::<Vec<_>>()
                .join(", ");
            prop_assert_eq!(parse_range(&format!("bytes={text}"), len), RangeRequest::Partial(ranges));
        }
    }
}
