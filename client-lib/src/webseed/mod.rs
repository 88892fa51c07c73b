//! Web seeds (BEP 19): fetching a torrent's bytes from a plain HTTP server.
//!
//! HTTP is a *priced* source in swarmcdn: the scheduler decides when a run of pieces is
//! worth fetching from the origin (no peer has it, or a peer missed its deadline) and hands
//! this module a contiguous piece range. The price is paid by the origin, so the module's
//! job is to make that run cost as few and as cacheable requests as possible:
//!
//! - one request per file the run touches, never one per piece or per block;
//! - a file the run covers whole is fetched with a plain `GET` and no `Range` header, the
//!   request any HTTP cache or CDN in front of the origin can answer and store (small files
//!   of a release, shorter than a piece, always go this way);
//! - only a file cut by the run's ends gets a single `Range: bytes=a-b` request;
//! - requests for different files run concurrently, at most
//!   [`WebSeedLimits::max_concurrent_requests`] per web seed, and their bodies are joined in
//!   torrent order.
//!
//! The server is not trusted. A `206` must carry the `Content-Range` we asked for; a `200`
//! to a `Range` request (a server that ignores ranges) is accepted only when its body is the
//! whole file, and the wanted part is cut out of it while it streams; every body is read in
//! chunks against the exact length expected and abandoned the moment it overruns, so an
//! endless body costs one chunk of memory, not all of it. The bytes returned always have
//! exactly the requested length; their SHA-1 per piece is checked by the caller.
//!
//! Errors are shaped by what the session decides next (see [`WebSeedError`]): wait and
//! retry ([`WebSeedError::Backoff`], from `503`/`429` and `Retry-After`), stop using this
//! seed for the file ([`WebSeedError::Status`]), distrust the server
//! ([`WebSeedError::WrongLength`], [`WebSeedError::BadContentRange`]) or treat the network
//! as down for now ([`WebSeedError::Transport`]).
//!
//! ```no_run
//! use std::sync::Arc;
//! use swarmcdn_client::webseed::{WebSeed, WebSeedError, WebSeedLimits, http_client};
//! # async fn run(torrent: swarmcdn_proto::metainfo::Metainfo) -> Result<(), Box<dyn std::error::Error>> {
//! let limits = WebSeedLimits::default();
//! let info = Arc::new(torrent.info().clone());
//! let seed = WebSeed::new(&torrent.url_list[0], info, http_client(&limits)?, limits)?;
//! match seed.fetch_pieces(4..8).await {
//!     Ok(bytes) => { /* split into pieces 4..8, SHA-1 check each */ }
//!     Err(WebSeedError::Backoff { retry_after }) => { /* ask again after `retry_after` */ }
//!     Err(other) => return Err(other.into()),
//! }
//! # Ok(()) }
//! ```

mod headers;
mod url;

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use futures::stream::{self, StreamExt};
use reqwest::header::{ACCEPT_ENCODING, CONTENT_RANGE, HeaderMap, RANGE, RETRY_AFTER};
use reqwest::{Response, StatusCode, Url};
use swarmcdn_proto::metainfo::{FileRange, Info};
use tokio::sync::Semaphore;

use headers::{ContentRange, parse_retry_after};

/// The `User-Agent` sent with every web-seed request.
pub const USER_AGENT: &str = concat!("swarmcdn/", env!("CARGO_PKG_VERSION"));
/// Default for [`WebSeedLimits::request_timeout`]: 30 s from connecting to the last byte.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default for [`WebSeedLimits::connect_timeout`]: 10 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for [`WebSeedLimits::max_concurrent_requests`]: 4 requests in flight per seed.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 4;
/// Default for [`WebSeedLimits::max_fetch_length`]: 64 MiB (four of the largest pieces).
pub const DEFAULT_MAX_FETCH_LENGTH: u64 = 64 * 1024 * 1024;
/// Default for [`WebSeedLimits::default_retry_after`]: 30 s.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(30);
/// Default for [`WebSeedLimits::min_retry_after`]: 1 s.
pub const DEFAULT_MIN_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Default for [`WebSeedLimits::max_retry_after`]: 1 hour.
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(60 * 60);
/// The longest `Content-Range` value quoted back in [`WebSeedError::BadContentRange`].
const MAX_QUOTED_HEADER: usize = 128;

/// Bounds on what one web seed may cost us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebSeedLimits {
    /// Total time allowed for one HTTP request, from connecting to the last body byte.
    pub request_timeout: Duration,
    /// Time allowed to open a connection; applied by [`http_client`] (a caller-built
    /// client keeps its own setting, and `request_timeout` bounds connecting in any case).
    pub connect_timeout: Duration,
    /// Requests in flight to this seed at once, over all fetches (0 counts as 1).
    pub max_concurrent_requests: usize,
    /// The most bytes one [`WebSeed::fetch_range`] or [`WebSeed::fetch_pieces`] may ask for
    /// (they are held in memory).
    pub max_fetch_length: u64,
    /// The wait reported when a `503`/`429` has no usable `Retry-After`.
    pub default_retry_after: Duration,
    /// The shortest wait reported, whatever `Retry-After` says (keeps a server answering
    /// `Retry-After: 0` from being hammered).
    pub min_retry_after: Duration,
    /// The longest wait reported, whatever `Retry-After` says.
    pub max_retry_after: Duration,
}

impl WebSeedLimits {
    /// The defaults: see the `DEFAULT_*` constants of this module.
    pub const DEFAULT: WebSeedLimits = WebSeedLimits {
        request_timeout: DEFAULT_REQUEST_TIMEOUT,
        connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
        max_fetch_length: DEFAULT_MAX_FETCH_LENGTH,
        default_retry_after: DEFAULT_RETRY_AFTER,
        min_retry_after: DEFAULT_MIN_RETRY_AFTER,
        max_retry_after: DEFAULT_MAX_RETRY_AFTER,
    };
}

impl Default for WebSeedLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why a web-seed fetch failed, grouped by what the caller should do next.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebSeedError {
    /// The `url-list` entry cannot be used: not http(s), unparsable, or a folder URL with a
    /// query. Drop the seed.
    #[error("web seed URL `{url}` is not usable: {reason}")]
    InvalidUrl {
        /// The URL (or the file URL built from it).
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The server is overloaded or rate-limiting us (`503` or `429`). Do not ask this seed
    /// again before `retry_after` has passed.
    #[error("web seed asks us to retry in {retry_after:?}")]
    Backoff {
        /// How long to wait: the server's `Retry-After`, or
        /// [`WebSeedLimits::default_retry_after`], clamped to the limits.
        retry_after: Duration,
    },
    /// Any other status (`404`, `410`, `416`, `500`, ...): this seed cannot serve the file.
    #[error("web seed answered {status} for {url}")]
    Status {
        /// The file URL requested.
        url: String,
        /// The status received.
        status: StatusCode,
    },
    /// The body was shorter or longer than the request called for (or, for a `200` to a
    /// `Range` request, than the whole file): the server holds a different file.
    #[error("web seed sent {got} bytes for {url}, expected {expected}")]
    WrongLength {
        /// The file URL requested.
        url: String,
        /// The body length the request called for.
        expected: u64,
        /// The length received or announced in `Content-Length`; for an overlong body, the
        /// bytes seen when reading stopped.
        got: u64,
    },
    /// A `206` whose `Content-Range` is missing, malformed or not the range asked for.
    #[error("web seed sent Content-Range {got:?} for {url}, expected `{expected}`")]
    BadContentRange {
        /// The file URL requested.
        url: String,
        /// The range we asked for, as a `Content-Range` value.
        expected: String,
        /// The header received (cut to a short prefix), if any.
        got: Option<String>,
    },
    /// Connecting, sending or reading failed (refused, reset, timed out, TLS). Retry later
    /// or drop the seed.
    #[error("web seed request to {url} failed: {source}")]
    Transport {
        /// The file URL requested.
        url: String,
        /// The underlying error (`source.is_timeout()` tells a timeout).
        #[source]
        source: reqwest::Error,
    },
    /// The byte range is not inside the torrent.
    #[error("bytes {offset}..+{length} are outside the torrent ({total} bytes)")]
    OutOfBounds {
        /// Requested start in the torrent's byte string.
        offset: u64,
        /// Requested length.
        length: u64,
        /// The torrent's size.
        total: u64,
    },
    /// The piece range is empty-ended backwards or names pieces the torrent lacks.
    #[error("pieces {pieces:?} are not a range of the torrent's {piece_count} pieces")]
    NoSuchPieces {
        /// The range requested.
        pieces: Range<u32>,
        /// How many pieces the torrent has.
        piece_count: u32,
    },
    /// The fetch is larger than [`WebSeedLimits::max_fetch_length`].
    #[error("a fetch of {length} bytes is over the limit of {limit}")]
    TooLarge {
        /// Requested length.
        length: u64,
        /// The limit in force.
        limit: u64,
    },
}

/// A `reqwest::Client` set up for web seeds: [`WebSeedLimits::connect_timeout`],
/// [`WebSeedLimits::request_timeout`] and the swarmcdn [`USER_AGENT`]. One client can be
/// shared by every web seed of every torrent (it pools connections per host).
pub fn http_client(limits: &WebSeedLimits) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(limits.connect_timeout)
        .timeout(limits.request_timeout)
        .user_agent(USER_AGENT)
        .build()
}

/// One BEP 19 web seed of one torrent: turns byte or piece ranges into HTTP requests.
///
/// Cloning is cheap and clones share the concurrency budget
/// ([`WebSeedLimits::max_concurrent_requests`]).
#[derive(Clone)]
pub struct WebSeed {
    base_url: String,
    info: Arc<Info>,
    /// The URL of each file, in [`Info::files`] order.
    file_urls: Arc<[Url]>,
    client: reqwest::Client,
    limits: WebSeedLimits,
    permits: Arc<Semaphore>,
}

impl fmt::Debug for WebSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSeed")
            .field("base_url", &self.base_url)
            .field("files", &self.file_urls.len())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// What one HTTP request is for: a run of bytes inside one file.
struct FileRequest<'a> {
    url: &'a Url,
    /// The file's full size.
    file_length: u64,
    /// The bytes wanted, as offsets in the file.
    wanted: Range<u64>,
}

impl FileRequest<'_> {
    fn whole_file(&self) -> bool {
        self.wanted.start == 0 && self.wanted.end == self.file_length
    }

    fn url_string(&self) -> String {
        self.url.to_string()
    }
}

impl WebSeed {
    /// A web seed for the torrent `info` at `base_url` (a `url-list` entry).
    ///
    /// Builds every file's URL now (see [`WebSeed::url_for_file`]), so an unusable entry
    /// fails here with [`WebSeedError::InvalidUrl`]: only `http` and `https` are accepted,
    /// and a folder URL (one names and paths are appended to) cannot have a query.
    /// [`http_client`] makes a suitable `client`.
    pub fn new(
        base_url: &str,
        info: Arc<Info>,
        client: reqwest::Client,
        limits: WebSeedLimits,
    ) -> Result<Self, WebSeedError> {
        let file_urls = url::file_urls(base_url, &info)?;
        Ok(WebSeed {
            base_url: base_url.to_owned(),
            info,
            file_urls: file_urls.into(),
            client,
            permits: Arc::new(Semaphore::new(limits.max_concurrent_requests.max(1))),
            limits,
        })
    }

    /// The `url-list` entry this seed was made from.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The limits in force.
    pub fn limits(&self) -> &WebSeedLimits {
        &self.limits
    }

    /// The URL of file `file_index` (in [`Info::files`] order) by the BEP 19 rules, or
    /// `None` if the torrent has no such file.
    ///
    /// A base URL ending in `/` gets the file's path appended, component by component and
    /// percent-encoded (the torrent name for a single-file torrent, `name/dir/file` for a
    /// multi-file one). Without a trailing `/`, a single-file torrent's URL is the base URL
    /// itself and a multi-file torrent's is `base/name/dir/file`.
    pub fn url_for_file(&self, file_index: usize) -> Option<String> {
        self.file_urls.get(file_index).map(Url::to_string)
    }

    /// The bytes of pieces `pieces`, concatenated, exactly
    /// `sum(piece_len(i) for i in pieces)` long. An empty range gives empty bytes without a
    /// request. Pieces are not hash-checked here.
    pub async fn fetch_pieces(&self, pieces: Range<u32>) -> Result<Bytes, WebSeedError> {
        let piece_count = self.info.piece_count();
        let no_such = || WebSeedError::NoSuchPieces {
            pieces: pieces.clone(),
            piece_count,
        };
        if pieces.start > pieces.end || pieces.end > piece_count {
            return Err(no_such());
        }
        if pieces.is_empty() {
            return Ok(Bytes::new());
        }
        let start = self.info.piece_offset(pieces.start).ok_or_else(no_such)?;
        let last = pieces.end - 1;
        let end = self
            .info
            .piece_offset(last)
            .zip(self.info.piece_len(last))
            .map(|(offset, len)| offset + u64::from(len))
            .ok_or_else(no_such)?;
        self.fetch_range(start, end - start).await
    }

    /// The `length` bytes at `torrent_offset` of the torrent's byte string (its files
    /// concatenated in torrent order), exactly `length` long.
    ///
    /// One request per file touched: a file covered whole is fetched without a `Range`
    /// header, any other with one `Range` request; up to
    /// [`WebSeedLimits::max_concurrent_requests`] run at once. The first failure (in torrent
    /// order) is returned and the other requests are cancelled.
    pub async fn fetch_range(
        &self,
        torrent_offset: u64,
        length: u64,
    ) -> Result<Bytes, WebSeedError> {
        if length > self.limits.max_fetch_length {
            return Err(WebSeedError::TooLarge {
                length,
                limit: self.limits.max_fetch_length,
            });
        }
        let runs: Vec<FileRange> = self
            .info
            .file_ranges(torrent_offset, length)
            .ok_or(WebSeedError::OutOfBounds {
                offset: torrent_offset,
                length,
                total: self.info.total_length(),
            })?
            .collect();
        let requests = runs
            .iter()
            .map(|run| self.request_for(run))
            .collect::<Result<Vec<_>, _>>()?;
        let bytes = match requests.as_slice() {
            [] => Bytes::new(),
            // One file: its body as received, without a copy.
            [only] => self.fetch_file(only).await?,
            many => {
                let concurrency = self.limits.max_concurrent_requests.max(1);
                // The futures are collected first (none runs before `buffered` polls it):
                // a closure inside the stream's type would make this future unprovably
                // `Send` for every lifetime, and so impossible to spawn.
                let fetches: Vec<_> = many.iter().map(|r| self.fetch_file(r)).collect();
                let mut bodies = stream::iter(fetches).buffered(concurrency);
                let mut joined = BytesMut::with_capacity(usize::try_from(length).unwrap_or(0));
                while let Some(body) = bodies.next().await {
                    joined.extend_from_slice(&body?);
                }
                joined.freeze()
            }
        };
        // Each body was checked against its own length; check the sum as well, so that
        // the promise of an exact length never rests on the file mapping alone.
        if bytes.len() as u64 != length {
            return Err(WebSeedError::WrongLength {
                url: self.base_url.clone(),
                expected: length,
                got: bytes.len() as u64,
            });
        }
        Ok(bytes)
    }

    /// Pairs a file run with its file's URL and size.
    fn request_for(&self, run: &FileRange) -> Result<FileRequest<'_>, WebSeedError> {
        let out_of_bounds = || WebSeedError::OutOfBounds {
            offset: run.torrent_offset,
            length: run.length,
            total: self.info.total_length(),
        };
        let file = self
            .info
            .files()
            .get(run.file_index)
            .ok_or_else(out_of_bounds)?;
        let url = self
            .file_urls
            .get(run.file_index)
            .ok_or_else(out_of_bounds)?;
        Ok(FileRequest {
            url,
            file_length: file.length,
            wanted: run.file_range(),
        })
    }

    /// One HTTP request for one run of one file; returns exactly the run's bytes.
    async fn fetch_file(&self, request: &FileRequest<'_>) -> Result<Bytes, WebSeedError> {
        // The semaphore is never closed, so `acquire` cannot fail; without a permit the
        // request would merely not be counted.
        let _permit = self.permits.acquire().await.ok();
        let mut builder = self
            .client
            .get(request.url.clone())
            .timeout(self.limits.request_timeout)
            .header(reqwest::header::USER_AGENT, USER_AGENT)
            // A compressed body would have neither the length nor the offsets we check.
            .header(ACCEPT_ENCODING, "identity");
        if !request.whole_file() {
            let Range { start, end } = request.wanted;
            builder = builder.header(RANGE, format!("bytes={start}-{}", end - 1));
        }
        let response = builder
            .send()
            .await
            .map_err(|source| WebSeedError::Transport {
                url: request.url_string(),
                source,
            })?;

        match response.status() {
            StatusCode::OK => {
                // A whole-file answer: to a plain GET as asked, or from a server that
                // ignores `Range`. Either way the body must be the whole file.
                read_body(
                    response,
                    request,
                    request.wanted.clone(),
                    request.file_length,
                )
                .await
            }
            StatusCode::PARTIAL_CONTENT => {
                check_content_range(response.headers(), request)?;
                let len = request.wanted.end - request.wanted.start;
                read_body(response, request, 0..len, len).await
            }
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
                Err(WebSeedError::Backoff {
                    retry_after: backoff(response.headers(), SystemTime::now(), &self.limits),
                })
            }
            status => Err(WebSeedError::Status {
                url: request.url_string(),
                status,
            }),
        }
    }
}

/// The wait a `503`/`429` asks for, within the limits.
fn backoff(headers: &HeaderMap, now: SystemTime, limits: &WebSeedLimits) -> Duration {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, now))
        .unwrap_or(limits.default_retry_after)
        .clamp(
            limits.min_retry_after,
            limits.max_retry_after.max(limits.min_retry_after),
        )
}

/// Checks that a `206` carries exactly the range asked for, of a file of the right size.
fn check_content_range(headers: &HeaderMap, request: &FileRequest<'_>) -> Result<(), WebSeedError> {
    let Range { start, end } = request.wanted;
    let expected = ContentRange {
        first: start,
        last: end - 1,
        complete: Some(request.file_length),
    };
    let raw = headers.get(CONTENT_RANGE).map(|v| v.as_bytes());
    let parsed = raw
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(ContentRange::parse);
    let matches = parsed.is_some_and(|got| {
        got.first == expected.first
            && got.last == expected.last
            // `*`: the server does not know the total; the range is still the one asked for.
            && got.complete.is_none_or(|c| Some(c) == expected.complete)
    });
    if matches {
        return Ok(());
    }
    Err(WebSeedError::BadContentRange {
        url: request.url_string(),
        expected: format!("bytes {start}-{}/{}", end - 1, request.file_length),
        got: raw.map(|v| {
            let shown = v.get(..MAX_QUOTED_HEADER).unwrap_or(v);
            String::from_utf8_lossy(shown).into_owned()
        }),
    })
}

/// Streams a body that must be exactly `total` bytes long, keeping only the bytes at
/// offsets `keep` (a sub-range of `0..total`).
///
/// Memory is bounded by `keep`: an overlong body is abandoned at the first chunk that
/// passes `total`. When the body's length is framed by `Content-Length` (checked to equal
/// `total` up front) reading stops as soon as `keep` is complete, so a server that ignores
/// `Range` costs us the file up to the wanted bytes, not the rest of it.
async fn read_body(
    mut response: Response,
    request: &FileRequest<'_>,
    keep: Range<u64>,
    total: u64,
) -> Result<Bytes, WebSeedError> {
    let wrong = |got: u64| WebSeedError::WrongLength {
        url: request.url_string(),
        expected: total,
        got,
    };
    let declared = response.content_length();
    if let Some(declared) = declared
        && declared != total
    {
        return Err(wrong(declared));
    }
    let capacity = usize::try_from(keep.end - keep.start).unwrap_or(0);
    let mut out = BytesMut::with_capacity(capacity);
    let mut pos: u64 = 0;
    loop {
        let chunk = response
            .chunk()
            .await
            .map_err(|source| WebSeedError::Transport {
                url: request.url_string(),
                source,
            })?;
        let Some(chunk) = chunk else { break };
        let chunk_start = pos;
        pos = pos.saturating_add(chunk.len() as u64);
        if pos > total {
            return Err(wrong(pos));
        }
        let from = keep.start.max(chunk_start);
        let to = keep.end.min(pos);
        if from < to {
            let slice = usize::try_from(from - chunk_start)
                .ok()
                .zip(usize::try_from(to - chunk_start).ok())
                .and_then(|(a, b)| chunk.get(a..b));
            // Always `Some`: `chunk_start <= from < to <= pos` bound it to the chunk.
            out.extend_from_slice(slice.unwrap_or_default());
        }
        if pos >= keep.end && pos < total && declared == Some(total) {
            // Framing guarantees the rest is the file's remainder, which we do not need.
            return Ok(out.freeze());
        }
    }
    if pos != total {
        return Err(wrong(pos));
    }
    Ok(out.freeze())
}

#[cfg(test)]
mod tests;
