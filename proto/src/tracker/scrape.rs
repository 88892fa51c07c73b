//! Scrape (BEP 48): swarm counts for a few torrents at once, without joining them.
//!
//! A scrape names its torrents by repeating `info_hash`; a scrape that names none asks for
//! every torrent the tracker knows (a "full scrape"). That is a policy question for the
//! tracker (ours refuses it: the registry is not public), so the parser does not quietly
//! return an empty list: it returns [`ScrapeRequestError::FullScrape`], which the tracker
//! must handle explicitly. Both directions are bounded by [`MAX_SCRAPE_HASHES`].
//!
//! Responses are small (a few dozen entries), so they are built as an owned map: the
//! `BTreeMap` keeps the info-hashes sorted, which is exactly canonical bencode order.

use std::collections::BTreeMap;

use bip_bencode::BRefAccess;

use super::query::{self, IdDecodeError};
use super::response::{self, Framed, RefDict, get_u32};
use crate::bencode::{BencodeError, put_bytes, put_int};
use crate::id::InfoHash;

/// The most info-hashes one scrape may name, and the most entries a scrape response may
/// hold. A client scrapes the releases it holds, a few at a time.
pub const MAX_SCRAPE_HASHES: usize = 64;

/// The longest scrape query accepted, in bytes: room for [`MAX_SCRAPE_HASHES`] fully
/// escaped `info_hash` parameters (71 bytes each) and a few others.
pub const MAX_SCRAPE_QUERY_LEN: usize = 8192;

/// The largest scrape response body the client decodes, in bytes. [`MAX_SCRAPE_HASHES`]
/// entries take about 5 KB; the rest is room for optional fields such as `name`.
pub const MAX_SCRAPE_RESPONSE_LEN: usize = 64 * 1024;

/// A scrape: the torrents to report on. Repeated hashes are kept as sent (the response has
/// one entry per distinct hash).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScrapeRequest {
    /// The torrents, at most [`MAX_SCRAPE_HASHES`]. Empty means a full scrape.
    pub info_hashes: Vec<InfoHash>,
}

/// Why a scrape query was refused. The messages are fit for a `failure reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScrapeRequestError {
    /// The query is longer than [`MAX_SCRAPE_QUERY_LEN`].
    #[error("the scrape query is {len} bytes, the limit is {limit}")]
    QueryTooLong {
        /// The query's length.
        len: usize,
        /// [`MAX_SCRAPE_QUERY_LEN`].
        limit: usize,
    },
    /// More than [`MAX_SCRAPE_HASHES`] `info_hash` parameters.
    #[error("a scrape may name at most {limit} info-hashes")]
    TooManyInfoHashes {
        /// [`MAX_SCRAPE_HASHES`].
        limit: usize,
    },
    /// An `info_hash` holds a malformed `%` escape or a character not allowed in a query.
    #[error("`info_hash` is not correctly percent-encoded")]
    BadEncoding,
    /// An `info_hash` does not decode to exactly 20 bytes.
    #[error("`info_hash` must be 20 bytes, got {len}")]
    BadIdLength {
        /// How many bytes it decoded to.
        len: usize,
    },
    /// No `info_hash` at all: a request for every torrent the tracker knows.
    #[error("full scrapes are not supported: name the torrents with `info_hash`")]
    FullScrape,
}

impl ScrapeRequest {
    /// Parses the raw query string of a scrape (the part after `?`). Parameters other than
    /// `info_hash` are ignored.
    pub fn from_query(query: &str) -> Result<Self, ScrapeRequestError> {
        type E = ScrapeRequestError;
        if query.len() > MAX_SCRAPE_QUERY_LEN {
            return Err(E::QueryTooLong {
                len: query.len(),
                limit: MAX_SCRAPE_QUERY_LEN,
            });
        }
        let mut info_hashes = Vec::new();
        for (name, value) in query::pairs(query) {
            if name != "info_hash" {
                continue;
            }
            if info_hashes.len() == MAX_SCRAPE_HASHES {
                return Err(E::TooManyInfoHashes {
                    limit: MAX_SCRAPE_HASHES,
                });
            }
            let id = query::decode_id(value).map_err(|e| match e {
                IdDecodeError::BadEncoding => E::BadEncoding,
                IdDecodeError::Length(len) => E::BadIdLength { len },
            })?;
            info_hashes.push(InfoHash::new(id));
        }
        if info_hashes.is_empty() {
            return Err(E::FullScrape);
        }
        Ok(ScrapeRequest { info_hashes })
    }

    /// The query string a client sends: one percent-encoded `info_hash` per torrent (empty
    /// for a full scrape). Join it to the scrape URL with [`super::url_with_query`].
    pub fn to_query(&self) -> String {
        let mut out = String::with_capacity(self.info_hashes.len() * 71);
        for hash in &self.info_hashes {
            query::push_name(&mut out, "info_hash");
            query::push_encoded(&mut out, hash.as_bytes());
        }
        out
    }
}

/// The counts for one torrent in a scrape response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ScrapeStats {
    /// Seeds in the swarm (`complete`).
    pub complete: u32,
    /// How many times the tracker has seen a download complete (`downloaded`).
    pub downloaded: u32,
    /// Peers still downloading (`incomplete`).
    pub incomplete: u32,
}

/// A tracker's answer to a scrape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScrapeResponse {
    /// The counts, per torrent (`files`). Torrents the tracker does not know are absent.
    Files(BTreeMap<InfoHash, ScrapeStats>),
    /// The tracker refused the scrape (`failure reason`).
    Failure {
        /// The tracker's words.
        reason: String,
    },
}

/// Why a scrape response body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScrapeResponseError {
    /// The body is larger than [`MAX_SCRAPE_RESPONSE_LEN`].
    #[error("the scrape response is {len} bytes, the limit is {limit}")]
    TooLarge {
        /// The body's length.
        len: usize,
        /// [`MAX_SCRAPE_RESPONSE_LEN`].
        limit: usize,
    },
    /// The body is not bencode.
    #[error("the scrape response is not bencode: {0}")]
    Bencode(#[from] BencodeError),
    /// The body is bencode but not a dictionary.
    #[error("the scrape response is not a dictionary")]
    NotADictionary,
    /// There is neither `files` nor `failure reason`.
    #[error("the scrape response has no `files`")]
    MissingFiles,
    /// A key holds the wrong type, or a count is negative or above 2^32-1.
    #[error("the scrape response's `{0}` is invalid")]
    InvalidField(&'static str),
    /// A `files` key is not a 20-byte info-hash.
    #[error("the scrape response names an info-hash of {len} bytes")]
    BadInfoHashLength {
        /// The key's length.
        len: usize,
    },
    /// More than [`MAX_SCRAPE_HASHES`] entries in `files`.
    #[error("the scrape response has {count} entries, the limit is {limit}")]
    TooManyFiles {
        /// How many entries the body has.
        count: usize,
        /// [`MAX_SCRAPE_HASHES`].
        limit: usize,
    },
}

impl ScrapeResponse {
    /// Appends the response: `d5:filesd<hash>d8:complete..10:downloaded..10:incomplete..eee`,
    /// or the failure dictionary.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            ScrapeResponse::Files(files) => {
                out.push(b'd');
                put_bytes(out, b"files");
                out.push(b'd');
                for (hash, stats) in files {
                    put_bytes(out, hash.as_bytes());
                    out.push(b'd');
                    put_bytes(out, b"complete");
                    put_int(out, i64::from(stats.complete));
                    put_bytes(out, b"downloaded");
                    put_int(out, i64::from(stats.downloaded));
                    put_bytes(out, b"incomplete");
                    put_int(out, i64::from(stats.incomplete));
                    out.push(b'e');
                }
                out.push(b'e');
                out.push(b'e');
            }
            ScrapeResponse::Failure { reason } => super::write_failure(reason, out),
        }
    }

    /// Decodes a tracker's scrape response body (the client direction). Counts missing from
    /// an entry are 0; unknown keys (`flags`, `name`) are ignored.
    pub fn from_bytes(body: &[u8]) -> Result<ScrapeResponse, ScrapeResponseError> {
        Ok(
            match response::read_response(body, MAX_SCRAPE_RESPONSE_LEN, read_files)? {
                Framed::Failure(reason) => ScrapeResponse::Failure { reason },
                Framed::Body(files) => ScrapeResponse::Files(files),
            },
        )
    }
}

/// Reads a success response's `files` (see [`ScrapeResponse::from_bytes`]).
fn read_files(
    dict: &RefDict<'_, '_>,
) -> Result<BTreeMap<InfoHash, ScrapeStats>, ScrapeResponseError> {
    type E = ScrapeResponseError;
    let files = dict
        .lookup(b"files")
        .ok_or(E::MissingFiles)?
        .dict()
        .ok_or(E::InvalidField("files"))?
        .to_list();
    if files.len() > MAX_SCRAPE_HASHES {
        return Err(E::TooManyFiles {
            count: files.len(),
            limit: MAX_SCRAPE_HASHES,
        });
    }
    let mut out = BTreeMap::new();
    for (key, entry) in files {
        let hash =
            InfoHash::from_slice(key).map_err(|_| E::BadInfoHashLength { len: key.len() })?;
        let entry = entry.dict().ok_or(E::InvalidField("files"))?;
        let count = |name: &'static str| get_u32(entry, name).map(Option::unwrap_or_default);
        let stats = ScrapeStats {
            complete: count("complete")?,
            downloaded: count("downloaded")?,
            incomplete: count("incomplete")?,
        };
        out.insert(hash, stats);
    }
    Ok(out)
}

response::from_frame_error!(ScrapeResponseError);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_repeated_info_hashes() {
        let q = "info_hash=aaaaaaaaaaaaaaaaaaaa&passkey=x&info_hash=%00%01%02%03%04%05%06%07%08%09\
                 %0a%0b%0c%0d%0e%0f%10%11%12%13";
        let r = ScrapeRequest::from_query(q).unwrap();
        assert_eq!(
            r.info_hashes,
            vec![
                InfoHash::new([b'a'; 20]),
                InfoHash::new(std::array::from_fn(|i| i as u8))
            ]
        );
    }

    #[test]
    fn to_query_fixture() {
        let r = ScrapeRequest {
            info_hashes: vec![InfoHash::new([b'a'; 20]), InfoHash::new([0xff; 20])],
        };
        assert_eq!(
            r.to_query(),
            format!(
                "info_hash={}&info_hash={}",
                "a".repeat(20),
                "%FF".repeat(20)
            )
        );
        assert_eq!(ScrapeRequest::default().to_query(), "");
    }

    #[test]
    fn full_scrape_is_reported_distinctly() {
        for q in ["", "passkey=abc", "?"] {
            assert_eq!(
                ScrapeRequest::from_query(q),
                Err(ScrapeRequestError::FullScrape)
            );
        }
    }

    #[test]
    fn rejects_too_many_hashes() {
        let one = format!("info_hash={}", "%AB".repeat(20));
        let at_limit = vec![one.as_str(); MAX_SCRAPE_HASHES].join("&");
        assert!(at_limit.len() <= MAX_SCRAPE_QUERY_LEN);
        assert_eq!(
            ScrapeRequest::from_query(&at_limit)
                .unwrap()
                .info_hashes
                .len(),
            MAX_SCRAPE_HASHES
        );
        let over = format!("{at_limit}&{one}");
        assert_eq!(
            ScrapeRequest::from_query(&over),
            Err(ScrapeRequestError::TooManyInfoHashes {
                limit: MAX_SCRAPE_HASHES
            })
        );
    }

    #[test]
    fn rejects_long_queries_bad_encoding_and_lengths() {
        let long = format!(
            "info_hash={}&x={}",
            "a".repeat(20),
            "y".repeat(MAX_SCRAPE_QUERY_LEN)
        );
        assert!(matches!(
            ScrapeRequest::from_query(&long),
            Err(ScrapeRequestError::QueryTooLong { .. })
        ));
        assert_eq!(
            ScrapeRequest::from_query("info_hash=%xx"),
            Err(ScrapeRequestError::BadEncoding)
        );
        assert_eq!(
            ScrapeRequest::from_query("info_hash=abc"),
            Err(ScrapeRequestError::BadIdLength { len: 3 })
        );
    }

    #[test]
    fn response_fixture() {
        let mut files = BTreeMap::new();
        files.insert(
            InfoHash::new([b'a'; 20]),
            ScrapeStats {
                complete: 5,
                downloaded: 50,
                incomplete: 10,
            },
        );
        let response = ScrapeResponse::Files(files);
        let mut out = Vec::new();
        response.encode(&mut out);
        let expected = b"d5:filesd20:aaaaaaaaaaaaaaaaaaaad8:completei5e10:downloadedi50e\
            10:incompletei10eeee";
        assert_eq!(out, expected);
        assert_eq!(ScrapeResponse::from_bytes(&out), Ok(response));
    }

    #[test]
    fn decodes_optional_fields_leniently() {
        let body = b"d5:filesd20:aaaaaaaaaaaaaaaaaaaad8:completei1e4:name3:abcee\
            5:flagsd20:min_request_intervali900eee";
        let Ok(ScrapeResponse::Files(files)) = ScrapeResponse::from_bytes(body) else {
            panic!("not decoded");
        };
        assert_eq!(
            files.get(&InfoHash::new([b'a'; 20])),
            Some(&ScrapeStats {
                complete: 1,
                downloaded: 0,
                incomplete: 0
            })
        );
    }

    #[test]
    fn failure_fixture() {
        let response = ScrapeResponse::Failure {
            reason: "full scrapes are not supported".into(),
        };
        let mut out = Vec::new();
        response.encode(&mut out);
        assert_eq!(out, b"d14:failure reason30:full scrapes are not supportede");
        assert_eq!(ScrapeResponse::from_bytes(&out), Ok(response));
    }

    #[test]
    fn rejects_malformed_responses() {
        type E = ScrapeResponseError;
        let cases: &[(&[u8], E)] = &[
            (b"i1e", E::NotADictionary),
            (b"de", E::MissingFiles),
            (b"d5:fileslee", E::InvalidField("files")),
            (b"d5:filesd3:abcdeee", E::BadInfoHashLength { len: 3 }),
            (
                b"d5:filesd20:aaaaaaaaaaaaaaaaaaaai1eee",
                E::InvalidField("files"),
            ),
            (
                b"d5:filesd20:aaaaaaaaaaaaaaaaaaaad8:completei-1eeee",
                E::InvalidField("complete"),
            ),
            (
                b"d5:filesd20:aaaaaaaaaaaaaaaaaaaad10:incomplete1:1eee",
                E::InvalidField("incomplete"),
            ),
            (b"d14:failure reasonlee", E::InvalidField("failure reason")),
        ];
        for (body, expected) in cases {
            assert_eq!(
                ScrapeResponse::from_bytes(body).as_ref(),
                Err(expected),
                "{}",
                body.escape_ascii()
            );
        }
    }

    #[test]
    fn response_bounds_are_enforced() {
        let stats = ScrapeStats::default();
        let files: BTreeMap<_, _> = (0..=MAX_SCRAPE_HASHES)
            .map(|i| (InfoHash::new([i as u8; 20]), stats))
            .collect();
        let mut out = Vec::new();
        ScrapeResponse::Files(files).encode(&mut out);
        assert_eq!(
            ScrapeResponse::from_bytes(&out),
            Err(ScrapeResponseError::TooManyFiles {
                count: MAX_SCRAPE_HASHES + 1,
                limit: MAX_SCRAPE_HASHES
            })
        );
        let mut big = b"d5:filesde7:padding".to_vec();
        put_bytes(&mut big, &vec![b'x'; MAX_SCRAPE_RESPONSE_LEN]);
        big.push(b'e');
        assert!(matches!(
            ScrapeResponse::from_bytes(&big),
            Err(ScrapeResponseError::TooLarge { .. })
        ));
    }

    #[test]
    fn every_truncation_of_a_valid_response_is_an_error() {
        let files: BTreeMap<_, _> = (0..3u8)
            .map(|i| {
                let stats = ScrapeStats {
                    complete: u32::from(i),
                    downloaded: 1000,
                    incomplete: u32::MAX,
                };
                (InfoHash::new([i; 20]), stats)
            })
            .collect();
        let mut out = Vec::new();
        ScrapeResponse::Files(files).encode(&mut out);
        assert!(ScrapeResponse::from_bytes(&out).is_ok());
        for cut in 0..out.len() {
            assert!(
                ScrapeResponse::from_bytes(&out[..cut]).is_err(),
                "prefix of {cut} bytes decoded"
            );
        }
    }

    fn arb_stats() -> impl Strategy<Value = ScrapeStats> {
        any::<(u32, u32, u32)>().prop_map(|(complete, downloaded, incomplete)| ScrapeStats {
            complete,
            downloaded,
            incomplete,
        })
    }

    proptest! {
        #[test]
        fn request_query_round_trip(
            hashes in proptest::collection::vec(any::<[u8; 20]>(), 1..=MAX_SCRAPE_HASHES)
        ) {
            let r = ScrapeRequest { info_hashes: hashes.into_iter().map(InfoHash::new).collect() };
            let query = r.to_query();
            prop_assert!(query.len() <= MAX_SCRAPE_QUERY_LEN);
            prop_assert_eq!(ScrapeRequest::from_query(&query), Ok(r));
        }

        #[test]
        fn response_round_trip(
            files in proptest::collection::btree_map(
                any::<[u8; 20]>().prop_map(InfoHash::new),
                arb_stats(),
                0..=MAX_SCRAPE_HASHES,
            )
        ) {
            let response = ScrapeResponse::Files(files);
            let mut out = Vec::new();
            response.encode(&mut out);
            prop_assert!(out.len() <= MAX_SCRAPE_RESPONSE_LEN);
            prop_assert_eq!(ScrapeResponse::from_bytes(&out), Ok(response));
        }

        #[test]
        fn failure_round_trip(reason in ".{0,100}") {
            let response = ScrapeResponse::Failure { reason };
            let mut out = Vec::new();
            response.encode(&mut out);
            prop_assert_eq!(ScrapeResponse::from_bytes(&out), Ok(response));
        }

        #[test]
        fn from_query_never_panics(query in ".{0,300}") {
            let _ = ScrapeRequest::from_query(&query);
        }

        #[test]
        fn from_bytes_never_panics(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = ScrapeResponse::from_bytes(&body);
        }
    }
}
