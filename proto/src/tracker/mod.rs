//! The tracker's HTTP wire: announce and scrape (BEP 3, BEP 7, BEP 23, BEP 48), and the
//! release lookup of swarmcdn's own API ([`ReleaseLookup`]).
//!
//! Both directions live here, because the tracker service and the client must agree byte for
//! byte: the tracker parses [`AnnounceRequest::from_query`] and writes responses, the client
//! builds [`AnnounceRequest::to_query`] and reads [`AnnounceResponse::from_bytes`].
//!
//! The tracker side is the hot path (every announce of every site passes through it), so it is
//! written to allocate nothing it does not return:
//! - requests are parsed from the raw query string (`&str`, the part after `?`), with the
//!   binary `info_hash` and `peer_id` percent-decoded straight into `[u8; 20]`, and the short
//!   text values (`key`, `trackerid`) into the fixed-size [`Token`];
//! - responses are written straight into a caller's `Vec<u8>` with
//!   [`crate::bencode::put_int`] and [`crate::bencode::put_bytes`], keys in sorted order by
//!   hand (canonical bencode), and peers taken from any iterator
//!   ([`write_compact_response`], [`write_dict_response`]), so the service can reuse one
//!   buffer and never builds a `Vec` of peers.
//!
//! The client side (decoding responses, building queries) is not hot; it favours plain owned
//! types. Everything decoded from the network is bounded by a named constant:
//! [`MAX_QUERY_LEN`], [`MAX_QUERY_PARAMS`], [`MAX_TOKEN_LEN`], [`MAX_RESPONSE_LEN`],
//! [`MAX_RESPONSE_PEERS`], [`MAX_SCRAPE_QUERY_LEN`], [`MAX_SCRAPE_HASHES`] and
//! [`MAX_SCRAPE_RESPONSE_LEN`].
//!
//! Errors name what was wrong in words a tracker can send back as a bencoded
//! `failure reason` (they never echo the client's bytes).
//!
//! ```
//! use swarmcdn_proto::tracker::{AnnounceEvent, AnnounceRequest, AnnounceResponse, AnnounceSuccess};
//! use swarmcdn_proto::{InfoHash, PeerId};
//!
//! // Client: build the query.
//! let mut request = AnnounceRequest::new(InfoHash::new([0xab; 20]), PeerId::new(*b"-SC0100-abcdefghijkl"), 6881);
//! request.left = 1000;
//! request.event = AnnounceEvent::Started;
//! let query = request.to_query();
//!
//! // Tracker: parse it and answer.
//! let parsed = AnnounceRequest::from_query(&query)?;
//! assert_eq!(parsed, request);
//! let success = AnnounceSuccess {
//!     interval: 1800,
//!     peers: vec!["10.0.0.1:6881".parse()?],
//!     ..AnnounceSuccess::default()
//! };
//! let mut body = Vec::new();
//! AnnounceResponse::Success(success.clone()).encode_compact(&mut body);
//!
//! // Client: read the answer.
//! assert_eq!(AnnounceResponse::from_bytes(&body)?, AnnounceResponse::Success(success));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Deviations from the BEPs (also listed in `docs/PROTOCOL.md`):
//! - `event=paused` (BEP 21) is accepted besides the BEP 3 events; `event=empty` means none.
//! - An `ip` parameter that is not an IP address literal (BEP 3 allows a DNS name) is ignored,
//!   as are dictionary-model peers whose `ip` is not an address literal.
//! - Parameter names are matched literally (no client percent-encodes them).
//! - Numbers are plain ASCII digits; negative `left` or `numwant` is refused.
//! - A scrape with no `info_hash` (a "full scrape") is reported as
//!   [`ScrapeRequestError::FullScrape`] so the tracker must decide about it explicitly.

mod announce;
mod lookup;
mod query;
mod response;
mod scrape;

use std::fmt;

pub use announce::{
    AnnounceError, AnnounceEvent, AnnounceHead, AnnounceParam, AnnounceRequest, AnnounceResponse,
    AnnounceResponseError, AnnounceSuccess, MAX_QUERY_LEN, MAX_QUERY_PARAMS, MAX_RESPONSE_LEN,
    MAX_RESPONSE_PEERS, write_compact_response, write_dict_response,
};
pub use lookup::{LookupError, MAX_LOOKUP_LEN, MAX_LOOKUP_PEERS, ReleaseLookup, write_lookup};
pub use scrape::{
    MAX_SCRAPE_HASHES, MAX_SCRAPE_QUERY_LEN, MAX_SCRAPE_RESPONSE_LEN, ScrapeRequest,
    ScrapeRequestError, ScrapeResponse, ScrapeResponseError, ScrapeStats,
};

/// The longest [`Token`] (a `key` or a tracker id), in bytes. Clients send 8 to 10
/// characters; trackers pick their own ids, rarely more than 20.
pub const MAX_TOKEN_LEN: usize = 64;

/// A short opaque byte string held inline (no heap): the announce `key` and the tracker id.
///
/// Holds at most [`MAX_TOKEN_LEN`] bytes. The bytes need not be UTF-8.
#[derive(Clone, Copy)]
pub struct Token {
    len: u8,
    bytes: [u8; MAX_TOKEN_LEN],
}

/// Why a value is not a [`Token`]: it is longer than [`MAX_TOKEN_LEN`] bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a token is at most {MAX_TOKEN_LEN} bytes, got {0}")]
pub struct TokenTooLong(pub usize);

/// Why a query value is not a [`Token`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenDecodeError {
    BadEncoding,
    TooLong,
}

impl Token {
    /// Copies `bytes`, which must be at most [`MAX_TOKEN_LEN`] long.
    pub fn new(bytes: &[u8]) -> Result<Self, TokenTooLong> {
        let mut token = Token {
            len: 0,
            bytes: [0; MAX_TOKEN_LEN],
        };
        let slot = token
            .bytes
            .get_mut(..bytes.len())
            .ok_or(TokenTooLong(bytes.len()))?;
        slot.copy_from_slice(bytes);
        token.len = u8::try_from(bytes.len()).map_err(|_| TokenTooLong(bytes.len()))?;
        Ok(token)
    }

    /// Percent-decodes a query value into a token.
    pub(crate) fn from_query_value(value: &str) -> Result<Self, TokenDecodeError> {
        let mut token = Token {
            len: 0,
            bytes: [0; MAX_TOKEN_LEN],
        };
        let len = query::decode_into(value, &mut token.bytes)
            .map_err(|_| TokenDecodeError::BadEncoding)?;
        if len > MAX_TOKEN_LEN {
            return Err(TokenDecodeError::TooLong);
        }
        token.len = u8::try_from(len).map_err(|_| TokenDecodeError::TooLong)?;
        Ok(token)
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }

    /// The bytes as text, when they are UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(self.as_bytes()).ok()
    }
}

impl PartialEq for Token {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Token {}

impl std::hash::Hash for Token {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token(\"{}\")", self.as_bytes().escape_ascii())
    }
}

impl TryFrom<&str> for Token {
    type Error = TokenTooLong;

    fn try_from(text: &str) -> Result<Self, Self::Error> {
        Token::new(text.as_bytes())
    }
}

/// The scrape URL for an announce URL, by the convention BEP 48 describes: the last path
/// segment must start with `announce`, and that word becomes `scrape`
/// (`http://t.example/x/announce.php?k=1` gives `http://t.example/x/scrape.php?k=1`).
/// `None` when the URL does not follow the convention (then the tracker has no scrape).
pub fn scrape_url(announce_url: &str) -> Option<String> {
    let end = announce_url.find(['?', '#']).unwrap_or(announce_url.len());
    let (base, rest) = announce_url.split_at(end);
    let authority = base.find("://")? + 3;
    // The path starts at the first `/` after the authority; without one there is no path.
    base.get(authority..)?.find('/')?;
    let last_slash = base.rfind('/')?;
    let segment = base.get(last_slash + 1..)?;
    let tail = segment.strip_prefix("announce")?;
    let head = base.get(..=last_slash)?;
    Some(format!("{head}scrape{tail}{rest}"))
}

/// Appends a query (from [`AnnounceRequest::to_query`] or [`ScrapeRequest::to_query`]) to a
/// tracker URL, which may already carry a query of its own (a private tracker's passkey).
pub fn url_with_query(url: &str, query: &str) -> String {
    let (base, fragment) = url.split_at(url.find('#').unwrap_or(url.len()));
    let mut out = String::with_capacity(url.len() + query.len() + 1);
    out.push_str(base);
    if !query.is_empty() {
        if !base.contains('?') {
            out.push('?');
        } else if !base.ends_with(['?', '&']) {
            out.push('&');
        }
        out.push_str(query);
    }
    out.push_str(fragment);
    out
}

/// Writes `d14:failure reason<reason>e`: the one shape of every tracker error (BEP 3).
pub(crate) fn write_failure(reason: &str, out: &mut Vec<u8>) {
    out.push(b'd');
    crate::bencode::put_bytes(out, b"failure reason");
    crate::bencode::put_bytes(out, reason.as_bytes());
    out.push(b'e');
}

/// Writes `peers` (BEP 23 compact, always) and `peers6` (BEP 7 compact, only when there are
/// IPv6 peers), keys and values, as the announce response and the release lookup carry them.
pub(crate) fn write_compact_peers<P4, P6>(out: &mut Vec<u8>, peers: P4, peers6: P6)
where
    P4: IntoIterator<Item = std::net::SocketAddrV4>,
    P6: IntoIterator<Item = std::net::SocketAddrV6>,
{
    crate::bencode::put_bytes(out, b"peers");
    let start = out.len();
    for peer in peers {
        out.extend_from_slice(&peer.ip().octets());
        out.extend_from_slice(&peer.port().to_be_bytes());
    }
    prefix_length_since(out, start);
    let key_start = out.len();
    crate::bencode::put_bytes(out, b"peers6");
    let start = out.len();
    for peer in peers6 {
        out.extend_from_slice(&peer.ip().octets());
        out.extend_from_slice(&peer.port().to_be_bytes());
    }
    if out.len() == start {
        out.truncate(key_start);
    } else {
        prefix_length_since(out, start);
    }
}

/// Writes the bytes appended to `out` since `start` as one bencode byte string, by inserting
/// the `<len>:` prefix in front of them. Lets the writers stream peers from an iterator whose
/// length is not known up front (the tracker filters as it goes).
pub(crate) fn prefix_length_since(out: &mut Vec<u8>, start: usize) {
    let len = out.len().saturating_sub(start);
    let mut text = StackText::new();
    // Writing a usize into 64 bytes cannot fail.
    let _ = fmt::Write::write_fmt(&mut text, format_args!("{len}:"));
    out.splice(start..start, text.as_bytes().iter().copied());
}

/// A tiny inline buffer that `write!` can format into (an IP address, a length), so the
/// response writers need no heap for text.
pub(crate) struct StackText {
    buf: [u8; 64],
    len: usize,
}

impl StackText {
    pub(crate) const fn new() -> Self {
        StackText {
            buf: [0; 64],
            len: 0,
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

impl fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        let slot = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrape_url_follows_the_convention() {
        let cases = [
            ("http://t.example/announce", Some("http://t.example/scrape")),
            (
                "http://t.example/x/announce",
                Some("http://t.example/x/scrape"),
            ),
            (
                "http://t.example/announce.php",
                Some("http://t.example/scrape.php"),
            ),
            (
                "https://t.example:8443/announce?x=2%0644",
                Some("https://t.example:8443/scrape?x=2%0644"),
            ),
            (
                "http://t.example/announce?x=2/4",
                Some("http://t.example/scrape?x=2/4"),
            ),
            ("http://t.example/a", None),
            ("http://t.example/x%064announce", None),
            ("http://t.example/announce/extra", None),
            ("http://announce", None),
            ("announce", None),
            ("", None),
        ];
        for (announce, scrape) in cases {
            assert_eq!(scrape_url(announce).as_deref(), scrape, "{announce}");
        }
    }

    #[test]
    fn url_with_query_picks_the_separator() {
        assert_eq!(
            url_with_query("http://t/announce", "a=1"),
            "http://t/announce?a=1"
        );
        assert_eq!(
            url_with_query("http://t/announce?pk=x", "a=1"),
            "http://t/announce?pk=x&a=1"
        );
        assert_eq!(
            url_with_query("http://t/announce?", "a=1"),
            "http://t/announce?a=1"
        );
        assert_eq!(
            url_with_query("http://t/announce#f", "a=1"),
            "http://t/announce?a=1#f"
        );
        assert_eq!(url_with_query("http://t/announce", ""), "http://t/announce");
    }

    #[test]
    fn token_is_bounded_and_compares_by_content() {
        let max = [b'k'; MAX_TOKEN_LEN];
        assert_eq!(Token::new(&max).unwrap().as_bytes(), &max[..]);
        assert_eq!(
            Token::new(&[0; MAX_TOKEN_LEN + 1]),
            Err(TokenTooLong(MAX_TOKEN_LEN + 1))
        );
        assert_eq!(Token::try_from("abc").unwrap().as_str(), Some("abc"));
        assert_ne!(
            Token::try_from("abc").unwrap(),
            Token::try_from("abd").unwrap()
        );
        assert_eq!(
            Token::from_query_value(&"a".repeat(MAX_TOKEN_LEN + 1)),
            Err(TokenDecodeError::TooLong)
        );
        assert_eq!(
            Token::from_query_value("%zz"),
            Err(TokenDecodeError::BadEncoding)
        );
        assert_eq!(
            format!("{:?}", Token::new(b"a\x01").unwrap()),
            "Token(\"a\\x01\")"
        );
    }

    #[test]
    fn length_prefix_is_inserted_in_place() {
        let mut out = b"5:peers".to_vec();
        let start = out.len();
        out.extend_from_slice(b"abcdef");
        prefix_length_since(&mut out, start);
        assert_eq!(out, b"5:peers6:abcdef");
    }
}
