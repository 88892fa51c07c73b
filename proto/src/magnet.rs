//! Magnet links (BEP 9): an info-hash plus hints on where to find peers and data.
//!
//! A magnet link is a URI query string a person may paste from anywhere, so parsing is
//! lenient where that costs nothing and strict where it matters: unknown parameters are
//! ignored, repeated and indexed forms (`tr=…&tr=…`, `tr.1=…`) are both accepted, the
//! info-hash may be hex or base32; but the link's length and parameter count are bounded
//! ([`MAX_MAGNET_LEN`], [`MAX_MAGNET_PARAMS`]), decoded values must be UTF-8, and two
//! different BitTorrent v1 hashes in one link are an error rather than a guess.
//!
//! Formatting percent-encodes every value byte outside the URI's unreserved set, except `:`
//! and `/`, which are legal in a query and keep tracker URLs readable.
//!
//! ```
//! use swarmcdn_proto::magnet::Magnet;
//!
//! let link = "magnet:?xt=urn:btih:c12fe1c06bba254a9dc9f519b335aa7c1367a88a\
//!             &dn=share%20button&tr=http%3A%2F%2Ftracker.example%2Fannounce";
//! let magnet = Magnet::parse(link)?;
//! assert_eq!(magnet.display_name.as_deref(), Some("share button"));
//! assert_eq!(magnet.trackers, ["http://tracker.example/announce"]);
//! assert_eq!(Magnet::parse(&magnet.to_uri())?, magnet);
//! # Ok::<(), swarmcdn_proto::magnet::MagnetError>(())
//! ```

use std::fmt;
use std::str::FromStr;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::id::{IdParseError, InfoHash};

/// The longest magnet link accepted, in bytes.
pub const MAX_MAGNET_LEN: usize = 16 * 1024;
/// The most `&`-separated parameters accepted in one link.
pub const MAX_MAGNET_PARAMS: usize = 200;

/// Bytes written as themselves in a value: RFC 3986 unreserved characters, plus `:` and `/`.
const VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b':')
    .remove(b'/');

const SCHEME: &str = "magnet:?";
const BTIH: &str = "urn:btih:";

/// Why a string is not an acceptable magnet link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MagnetError {
    /// The link is longer than [`MAX_MAGNET_LEN`].
    #[error("magnet link is {0} bytes, the limit is {MAX_MAGNET_LEN}")]
    TooLong(usize),
    /// The link has more than [`MAX_MAGNET_PARAMS`] parameters.
    #[error("magnet link has more than {MAX_MAGNET_PARAMS} parameters")]
    TooManyParams,
    /// The link does not start with `magnet:?`.
    #[error("not a magnet link (it should start with `magnet:?`)")]
    NotAMagnet,
    /// No `xt=urn:btih:` parameter.
    #[error("magnet link has no BitTorrent info-hash (`xt=urn:btih:`)")]
    MissingInfoHash,
    /// The `urn:btih:` value is not 40 hex or 32 base32 characters.
    #[error("magnet link info-hash is malformed: {0}")]
    BadInfoHash(#[source] IdParseError),
    /// Two `urn:btih:` parameters name different torrents.
    #[error("magnet link names two different info-hashes")]
    ConflictingInfoHashes,
    /// A value decodes to bytes that are not UTF-8.
    #[error("magnet link parameter `{0}` is not UTF-8 once decoded")]
    NotUtf8(String),
}

/// A parsed magnet link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Magnet {
    /// `xt=urn:btih:…`: the torrent.
    pub info_hash: InfoHash,
    /// `dn`: a name to show until the metadata arrives.
    pub display_name: Option<String>,
    /// `tr`: tracker URLs, in the order given.
    pub trackers: Vec<String>,
    /// `ws`: web seeds (BEP 19), in the order given.
    pub web_seeds: Vec<String>,
    /// `xs`: URLs where the `.torrent` itself can be fetched, in the order given.
    pub exact_sources: Vec<String>,
}

impl Magnet {
    /// A link with only an info-hash.
    pub fn new(info_hash: InfoHash) -> Self {
        Self {
            info_hash,
            display_name: None,
            trackers: Vec::new(),
            web_seeds: Vec::new(),
            exact_sources: Vec::new(),
        }
    }

    /// Parses a magnet link. The scheme is matched without regard to case; parameter names
    /// may carry an index suffix (`tr.1`); in `dn`, `+` stands for a space (the HTML form
    /// convention many clients use), elsewhere it is literal.
    pub fn parse(uri: &str) -> Result<Magnet, MagnetError> {
        if uri.len() > MAX_MAGNET_LEN {
            return Err(MagnetError::TooLong(uri.len()));
        }
        let query = uri
            .get(..SCHEME.len())
            .filter(|scheme| scheme.eq_ignore_ascii_case(SCHEME))
            .and_then(|_| uri.get(SCHEME.len()..))
            .ok_or(MagnetError::NotAMagnet)?;

        let mut info_hash = None;
        let mut magnet = Magnet::new(InfoHash::default());
        for (n, param) in query.split('&').enumerate() {
            if n >= MAX_MAGNET_PARAMS {
                return Err(MagnetError::TooManyParams);
            }
            let Some((key, raw)) = param.split_once('=') else {
                continue; // empty or valueless parameters carry nothing
            };
            let key = base_key(key);
            let decode = |value: &str| {
                percent_decode_str(value)
                    .decode_utf8()
                    .map(|v| v.into_owned())
                    .map_err(|_| MagnetError::NotUtf8(key.to_owned()))
            };
            match key {
                "xt" => {
                    let value = decode(raw)?;
                    let Some(hash) = strip_prefix_ignore_case(&value, BTIH) else {
                        continue; // another URN scheme (e.g. v2 `urn:btmh:`)
                    };
                    let hash = InfoHash::from_text(hash).map_err(MagnetError::BadInfoHash)?;
                    if info_hash.is_some_and(|seen| seen != hash) {
                        return Err(MagnetError::ConflictingInfoHashes);
                    }
                    info_hash = Some(hash);
                }
                "dn" => {
                    let value = decode(&raw.replace('+', " "))?;
                    magnet.display_name.get_or_insert(value);
                }
                "tr" => magnet.trackers.push(decode(raw)?),
                "ws" => magnet.web_seeds.push(decode(raw)?),
                "xs" => magnet.exact_sources.push(decode(raw)?),
                _ => {}
            }
        }
        magnet.info_hash = info_hash.ok_or(MagnetError::MissingInfoHash)?;
        Ok(magnet)
    }

    /// Formats the link: `xt` first, then `dn`, `tr`, `ws`, `xs`, values percent-encoded.
    pub fn to_uri(&self) -> String {
        self.to_string()
    }
}

/// `tr.1` → `tr`: BEP 9 allows numbered repeats of a parameter.
fn base_key(key: &str) -> &str {
    match key.split_once('.') {
        Some((base, index)) if !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()) => {
            base
        }
        _ => key,
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| text.get(prefix.len()..))
        .flatten()
}

impl fmt::Display for Magnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}xt={BTIH}{}", self.info_hash.to_hex())?;
        if let Some(name) = &self.display_name {
            write!(f, "&dn={}", utf8_percent_encode(name, VALUE))?;
        }
        for (key, values) in [
            ("tr", &self.trackers),
            ("ws", &self.web_seeds),
            ("xs", &self.exact_sources),
        ] {
            for value in values {
                write!(f, "&{key}={}", utf8_percent_encode(value, VALUE))?;
            }
        }
        Ok(())
    }
}

impl FromStr for Magnet {
    type Err = MagnetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEX: &str = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";

    fn hash() -> InfoHash {
        InfoHash::from_text(HEX).unwrap()
    }

    #[test]
    fn parses_every_known_parameter() {
        let m = Magnet::parse(&format!(
            "magnet:?xt=urn:btih:{HEX}&dn=a+b%2Bc&tr=http%3A%2F%2Ft1%2Fa&tr=udp://t2:80\
             &ws=https%3A%2F%2Fseed.example%2Ff%2F&xs=https://x.example/t.torrent&foo=bar"
        ))
        .unwrap();
        assert_eq!(m.info_hash, hash());
        assert_eq!(m.display_name.as_deref(), Some("a b+c"));
        assert_eq!(m.trackers, ["http://t1/a", "udp://t2:80"]);
        assert_eq!(m.web_seeds, ["https://seed.example/f/"]);
        assert_eq!(m.exact_sources, ["https://x.example/t.torrent"]);
    }

    #[test]
    fn accepts_base32_indexed_keys_and_any_case_scheme() {
        let b32 = hash().to_base32();
        let m = Magnet::parse(&format!(
            "MAGNET:?tr.1=http://a&XT=ignored&xt=URN:BTIH:{b32}&tr.2=http://b&tr.x=ignored"
        ))
        .unwrap();
        assert_eq!(m.info_hash, hash());
        assert_eq!(m.trackers, ["http://a", "http://b"]);
        assert_eq!(m.display_name, None);
    }

    #[test]
    fn v2_hashes_are_skipped_and_matching_repeats_allowed() {
        let m = Magnet::parse(&format!(
            "magnet:?xt=urn:btmh:1220abcd&xt=urn:btih:{HEX}&xt=urn:btih:{}",
            hash().to_base32()
        ))
        .unwrap();
        assert_eq!(m.info_hash, hash());
    }

    #[test]
    fn rejects_bad_links() {
        assert_eq!(
            Magnet::parse("http://example.com/?xt=urn:btih:00"),
            Err(MagnetError::NotAMagnet)
        );
        assert_eq!(Magnet::parse("magnet"), Err(MagnetError::NotAMagnet));
        assert_eq!(
            Magnet::parse("magnet:?dn=x&tr=y"),
            Err(MagnetError::MissingInfoHash)
        );
        assert!(matches!(
            Magnet::parse("magnet:?xt=urn:btih:1234"),
            Err(MagnetError::BadInfoHash(_))
        ));
        let other = "0".repeat(40);
        assert_eq!(
            Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}&xt=urn:btih:{other}")),
            Err(MagnetError::ConflictingInfoHashes)
        );
        assert_eq!(
            Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}&dn=%FF")),
            Err(MagnetError::NotUtf8("dn".into()))
        );
    }

    #[test]
    fn length_and_parameter_count_are_bounded() {
        let base = format!("magnet:?xt=urn:btih:{HEX}");
        let long = format!("{base}&dn={}", "a".repeat(MAX_MAGNET_LEN));
        assert_eq!(Magnet::parse(&long), Err(MagnetError::TooLong(long.len())));

        let at_limit = format!("{base}{}", "&x=1".repeat(MAX_MAGNET_PARAMS - 1));
        assert!(Magnet::parse(&at_limit).is_ok());
        let over = format!("{base}{}", "&x=1".repeat(MAX_MAGNET_PARAMS));
        assert_eq!(Magnet::parse(&over), Err(MagnetError::TooManyParams));
    }

    #[test]
    fn formats_with_percent_encoding() {
        let mut m = Magnet::new(hash());
        m.display_name = Some("share button & co".into());
        m.trackers = vec!["http://t.example/announce?k=a b".into()];
        assert_eq!(
            m.to_uri(),
            format!(
                "magnet:?xt=urn:btih:{HEX}&dn=share%20button%20%26%20co\
                 &tr=http://t.example/announce%3Fk%3Da%20b"
            )
        );
        assert_eq!(m.to_uri().parse::<Magnet>(), Ok(m));
    }

    #[test]
    fn truncated_links_never_panic() {
        let full =
            format!("magnet:?xt=urn:btih:{HEX}&dn=%C3%A9t%C3%A9&tr=http%3A%2F%2Ft&ws=http://w/");
        for cut in 0..=full.len() {
            if let Some(prefix) = full.get(..cut) {
                let _ = Magnet::parse(prefix);
            }
        }
        assert!(Magnet::parse(&full).is_ok());
        // Cut inside the hash: an error, not a shorter hash.
        assert!(Magnet::parse(&full[..40]).is_err());
    }

    fn text() -> impl Strategy<Value = String> {
        proptest::collection::vec(any::<char>(), 0..24).prop_map(|c| c.into_iter().collect())
    }

    fn urls() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec(text(), 0..4)
    }

    proptest! {
        #[test]
        fn format_then_parse_is_identity(
            bytes in any::<[u8; 20]>(),
            display_name in proptest::option::of(text()),
            trackers in urls(),
            web_seeds in urls(),
            exact_sources in urls(),
        ) {
            let m = Magnet {
                info_hash: InfoHash::new(bytes),
                display_name,
                trackers,
                web_seeds,
                exact_sources,
            };
            prop_assert_eq!(Magnet::parse(&m.to_uri()), Ok(m));
        }

        #[test]
        fn parse_never_panics(s in "magnet:\\?.{0,80}") {
            let _ = Magnet::parse(&s);
        }
    }
}
