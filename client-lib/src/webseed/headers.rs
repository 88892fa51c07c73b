//! The two response headers a web seed's answer depends on: `Retry-After` and
//! `Content-Range`.
//!
//! Both come from a server we do not control, so both parsers are total: any string gives
//! a value or `None`, never a panic, and a number too large for `u64` is rejected (or, for
//! `Retry-After`, saturated and then capped by the caller) rather than wrapped.

use std::time::{Duration, SystemTime};

/// How long `Retry-After` asks us to wait, measured from `now`.
///
/// Accepts both forms of RFC 9110: delta-seconds (`120`) and an HTTP date (IMF-fixdate,
/// and the obsolete RFC 850 and asctime forms). A date in the past gives zero. Anything
/// else (empty, negative, fractional, garbled) gives `None`, and the caller falls back to
/// its default.
pub(super) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        // All digits: only overflow can fail, and a huge delay is capped by the caller.
        return Some(
            value
                .parse::<u64>()
                .map_or(Duration::MAX, Duration::from_secs),
        );
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A parsed `Content-Range: bytes first-last/complete` header (RFC 9110, 14.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ContentRange {
    /// Offset of the first byte sent.
    pub(super) first: u64,
    /// Offset of the last byte sent (inclusive).
    pub(super) last: u64,
    /// The full size of the file, or `None` for `*` (unknown to the server).
    pub(super) complete: Option<u64>,
}

impl ContentRange {
    /// Parses a satisfied byte range. Unsatisfied ranges (`bytes */123`), other units,
    /// `last < first`, and a `last` beyond a stated complete length give `None`.
    pub(super) fn parse(value: &str) -> Option<ContentRange> {
        let rest = value.trim().strip_prefix("bytes ")?.trim_start();
        let (range, complete) = rest.split_once('/')?;
        let (first, last) = range.split_once('-')?;
        let first = parse_digits(first)?;
        let last = parse_digits(last)?;
        let complete = match complete {
            "*" => None,
            n => Some(parse_digits(n)?),
        };
        if last < first || complete.is_some_and(|c| last >= c) {
            return None;
        }
        Some(ContentRange {
            first,
            last,
            complete,
        })
    }
}

/// A non-empty run of ASCII digits that fits in a `u64` (no sign, no spaces).
fn parse_digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn retry_after_seconds() {
        let now = at(1_000_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        // Too many digits for a u64: the longest wait, which the caller caps.
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::MAX)
        );
        for bad in ["", "  ", "-5", "+5", "1.5", "5s", "soon", "0x10", "1 2"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn retry_after_dates() {
        // Sun, 06 Nov 1994 08:49:37 GMT is 784111777 seconds after the epoch.
        let date = 784_111_777;
        let now = at(date - 90);
        for form in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(
                parse_retry_after(form, now),
                Some(Duration::from_secs(90)),
                "{form}"
            );
        }
        // In the past: retry now.
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", at(date + 5)),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Sun, 32 Nov 1994 08:49:37 GMT", now),
            None
        );
        assert_eq!(
            parse_retry_after(&httpdate::fmt_http_date(at(date + 3600)), at(date)),
            Some(Duration::from_secs(3600))
        );
    }

    #[test]
    fn content_range_forms() {
        assert_eq!(
            ContentRange::parse("bytes 0-16383/50000"),
            Some(ContentRange {
                first: 0,
                last: 16383,
                complete: Some(50000)
            })
        );
        assert_eq!(
            ContentRange::parse("bytes 10-10/*"),
            Some(ContentRange {
                first: 10,
                last: 10,
                complete: None
            })
        );
        for bad in [
            "",
            "bytes",
            "bytes */500",
            "items 0-1/5",
            "bytes 5-4/10",
            "bytes 0-10/10",
            "bytes 0-9/",
            "bytes -1-9/10",
            "bytes 0-+9/10",
            "bytes 0 - 9/10",
            "bytes 0-99999999999999999999999/*",
            "bytes 0-9/10, 20-29/40",
        ] {
            assert_eq!(ContentRange::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn truncated_content_range_is_rejected_or_still_consistent() {
        let text = "bytes 123-4567/89012";
        for cut in 0..text.len() {
            if let Some(parsed) = ContentRange::parse(&text[..cut]) {
                // Only a shortened total can still parse, and never below the range.
                assert_eq!((parsed.first, parsed.last), (123, 4567), "cut {cut}");
                assert!(parsed.complete.is_some_and(|c| c > 4567), "cut {cut}");
            }
        }
        assert!(ContentRange::parse(text).is_some());
    }

    proptest! {
        #[test]
        fn content_range_written_then_parsed_is_identity(
            first in 0u64..u64::MAX / 2,
            span in 0u64..u64::MAX / 4,
            extra in 1u64..1000,
            known in any::<bool>(),
        ) {
            let last = first + span;
            let complete = known.then_some(last + extra);
            let text = match complete {
                Some(c) => format!("bytes {first}-{last}/{c}"),
                None => format!("bytes {first}-{last}/*"),
            };
            prop_assert_eq!(
                ContentRange::parse(&text),
                Some(ContentRange { first, last, complete })
            );
        }

        #[test]
        fn header_parsers_are_total_and_keep_invariants(
            text in "\\PC{0,64}",
            secs in 0u64..(1 << 40),
        ) {
            if let Some(r) = ContentRange::parse(&text) {
                prop_assert!(r.first <= r.last);
                prop_assert!(r.complete.is_none_or(|c| r.last < c));
            }
            let digits = !text.trim().is_empty() && text.trim().bytes().all(|b| b.is_ascii_digit());
            if digits {
                prop_assert!(parse_retry_after(&text, at(secs)).is_some());
            }
        }
    }
}
