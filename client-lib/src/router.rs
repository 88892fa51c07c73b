//! An HTTP front for the client: a site mounts [`router`] (e.g. at `/widgets`) and browsers
//! load swarm assets from its own origin.
//!
//! Routes (relative to the mount point):
//! - `GET|HEAD /{name}/{*path}`: a file of the release of `name` the client serves as latest
//!   ([`Client::latest`]);
//! - `GET|HEAD /{name}@{version}/{*path}`: a file of that exact version;
//! - `GET|HEAD /{name}` and `/{name}@{version}`: a JSON index of the release, with each file's
//!   `integrity` (the manifest's SRI value) so a page can write `<script integrity=...>`.
//!
//! Why it is shaped this way:
//! - Bytes only ever come from a [`Release`], which the client hands out only once every file
//!   has been checked against the signed manifest; a release not yet cached is fetched on the
//!   first request, which waits at most [`RouterConfig::fetch_timeout`] and then gets `503`
//!   with `Retry-After` (the download carries on inside the client). Nothing partial is served.
//! - The `ETag` is the file's SHA-256 from the signed manifest, so it changes exactly when the
//!   content does; `If-None-Match` gives `304` without reading the file.
//! - A latest route costs no tracker round trip: it reads the client's "latest" pointer, which
//!   the client's update poll moves forward only once a newer version is fully downloaded and
//!   verified. Each request resolves that pointer once and answers from that one [`Release`],
//!   so a response (file or index, whose `version` says which) never mixes two versions. A
//!   pinned route naming the version served as latest is answered from the same pointer.
//! - The latest release moves, so it is cached briefly and revalidated; a pinned version never
//!   changes, so it is `immutable`.
//! - Scripts loaded from another origin with `integrity` need CORS, hence
//!   `Access-Control-Allow-Origin: *` and `Cross-Origin-Resource-Policy: cross-origin`;
//!   `X-Content-Type-Options: nosniff` makes the manifest's type the only one a browser uses.
//! - A `.torrent` is internal to the swarm: a path ending in `.torrent` (any case), or a file
//!   whose manifest type is `application/x-bittorrent`, is refused with `404`, so a browser
//!   never receives a torrent.
//! - Path parameters arrive percent-decoded; every path goes through
//!   [`RelativePath::parse`], which refuses `..`, `.`, empty and absolute components, so
//!   traversal (plain or encoded) ends in `404`.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use swarmcdn_proto::RelativePath;
use swarmcdn_proto::manifest::{ManifestFile, Version};

use crate::{Client, GetError, Release};

/// Default [`RouterConfig::fetch_timeout`].
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`RouterConfig::retry_after`].
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);
/// `Cache-Control` of the latest release: short, then revalidate (the `ETag` makes that cheap).
pub const CACHE_CONTROL_LATEST: &str = "public, max-age=60, must-revalidate";
/// `Cache-Control` of a pinned version: its content never changes.
pub const CACHE_CONTROL_PINNED: &str = "public, max-age=31536000, immutable";
/// The header carrying a file's SRI value (`sha384-...`) on file responses.
pub const INTEGRITY_HEADER: &str = "x-swarmcdn-integrity";
/// The media type a browser must never receive.
const TORRENT_MEDIA_TYPE: &str = "application/x-bittorrent";
/// The longest `{name}@{version}` segment looked at; longer ones are `404` at once.
pub const MAX_RELEASE_SEGMENT: usize = 256;

/// How the router behaves.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// How long a request waits for a release that is not cached yet before it gets `503`.
    pub fetch_timeout: Duration,
    /// The `Retry-After` sent with `503` (rounded up to whole seconds).
    pub retry_after: Duration,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            fetch_timeout: DEFAULT_FETCH_TIMEOUT,
            retry_after: DEFAULT_RETRY_AFTER,
        }
    }
}

#[derive(Debug, Clone)]
struct AppState {
    client: Client,
    config: RouterConfig,
}

/// The router with [`RouterConfig::default`].
pub fn router(client: Client) -> Router {
    router_with(client, RouterConfig::default())
}

/// The router serving `client`'s releases (see the module docs for the routes).
pub fn router_with(client: Client, config: RouterConfig) -> Router {
    Router::new()
        .route("/{release}", get(index))
        .route("/{release}/", get(index))
        .route("/{release}/{*path}", get(file))
        .with_state(AppState { client, config })
}

impl Client {
    /// The HTTP router serving this client's releases: see [`crate::router`].
    pub fn router(&self) -> Router {
        router(self.clone())
    }
}

/// Which release a request names.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ReleaseRef {
    name: String,
    version: Option<Version>,
}

/// Splits `name` or `name@version`; `None` for a malformed segment.
fn parse_release(segment: &str) -> Option<ReleaseRef> {
    if segment.is_empty() || segment.len() > MAX_RELEASE_SEGMENT {
        return None;
    }
    match segment.split_once('@') {
        None => Some(ReleaseRef {
            name: segment.to_owned(),
            version: None,
        }),
        Some((name, version)) => Some(ReleaseRef {
            name: name.to_owned(),
            version: Some(Version::parse(version).ok()?),
        }),
    }
}

/// Whether a path or type would hand a browser a torrent.
fn is_torrent(path: &str, content_type: &str) -> bool {
    path.to_ascii_lowercase().ends_with(".torrent")
        || content_type
            .trim()
            .to_ascii_lowercase()
            .starts_with(TORRENT_MEDIA_TYPE)
}

/// Whether `If-None-Match` matches `etag` (weak comparison, `*` included).
fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim())
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

fn plain(status: StatusCode, message: &'static str) -> Response {
    let mut response = (status, message).into_response();
    common_headers(response.headers_mut());
    response
}

fn unavailable(config: &RouterConfig) -> Response {
    let mut response = plain(
        StatusCode::SERVICE_UNAVAILABLE,
        "release not available yet, retry later\n",
    );
    let secs = config.retry_after.as_secs() + u64::from(config.retry_after.subsec_nanos() > 0);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Headers every response carries.
fn common_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("cross-origin"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
}

/// Gets the release, bounded by the configured timeout; the error is the response to send.
async fn fetch(state: &AppState, release: &ReleaseRef) -> Result<Release, Response> {
    let getting = async {
        match &release.version {
            None => state.client.latest(&release.name).await,
            Some(version) => match state.client.latest_at(&release.name, version) {
                Some(current) => Ok(current),
                None => state.client.get_version(&release.name, version).await,
            },
        }
    };
    match tokio::time::timeout(state.config.fetch_timeout, getting).await {
        Err(_elapsed) => Err(unavailable(&state.config)),
        Ok(Ok(release)) => Ok(release),
        Ok(Err(error)) => Err(match error {
            GetError::InvalidName(_) | GetError::NotFound { .. } => {
                plain(StatusCode::NOT_FOUND, "no such release\n")
            }
            GetError::TrackerUnreachable { .. }
            | GetError::NoTracker(_)
            | GetError::Download(_)
            | GetError::Storage(_)
            | GetError::Shutdown => {
                tracing::debug!(%error, "release unavailable");
                unavailable(&state.config)
            }
            other => {
                tracing::warn!(error = %other, "release refused");
                plain(StatusCode::BAD_GATEWAY, "release failed verification\n")
            }
        }),
    }
}

fn cache_control(release: &ReleaseRef) -> HeaderValue {
    HeaderValue::from_static(if release.version.is_some() {
        CACHE_CONTROL_PINNED
    } else {
        CACHE_CONTROL_LATEST
    })
}

async fn file(
    State(state): State<AppState>,
    Path((segment, path)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let Some(wanted) = parse_release(&segment) else {
        return plain(StatusCode::NOT_FOUND, "no such release\n");
    };
    if RelativePath::parse(&path).is_err() || is_torrent(&path, "") {
        return plain(StatusCode::NOT_FOUND, "no such file\n");
    }
    let release = match fetch(&state, &wanted).await {
        Ok(release) => release,
        Err(response) => return response,
    };
    let Some(entry) = release.file(&path).cloned() else {
        return plain(StatusCode::NOT_FOUND, "no such file\n");
    };
    if is_torrent(&path, entry.content_type()) {
        return plain(StatusCode::NOT_FOUND, "no such file\n");
    }
    let etag = format!("\"{}\"", entry.sha256_hex());
    let mut response = if none_match(&headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        match release.bytes(&path).await {
            Ok(bytes) => {
                let mut response = Response::new(Body::from(bytes));
                set_entity_headers(response.headers_mut(), &entry);
                response
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read a verified file");
                return plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the file\n");
            }
        }
    };
    let out = response.headers_mut();
    common_headers(out);
    if let Ok(value) = HeaderValue::from_str(&etag) {
        out.insert(header::ETAG, value);
    }
    out.insert(header::CACHE_CONTROL, cache_control(&wanted));
    if let Ok(value) = HeaderValue::from_str(entry.sri()) {
        out.insert(HeaderName::from_static(INTEGRITY_HEADER), value);
    }
    response
}

fn set_entity_headers(out: &mut HeaderMap, entry: &ManifestFile) {
    let content_type = HeaderValue::from_str(entry.content_type())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    out.insert(header::CONTENT_TYPE, content_type);
}

async fn index(State(state): State<AppState>, Path(segment): Path<String>) -> Response {
    let Some(wanted) = parse_release(&segment) else {
        return plain(StatusCode::NOT_FOUND, "no such release\n");
    };
    let release = match fetch(&state, &wanted).await {
        Ok(release) => release,
        Err(response) => return response,
    };
    let files: Vec<serde_json::Value> = release
        .files()
        .iter()
        .filter(|f| !is_torrent(&f.path().to_string(), f.content_type()))
        .map(|f| {
            serde_json::json!({
                "path": f.path().to_string(),
                "size": f.size(),
                "content_type": f.content_type(),
                "sha256": f.sha256_hex(),
                "integrity": f.sri(),
            })
        })
        .collect();
    let body = serde_json::json!({
        "name": release.name(),
        "version": release.version().to_string(),
        "info_hash": release.info_hash().to_string(),
        "files": files,
    });
    let mut response = Response::new(Body::from(body.to_string()));
    let out = response.headers_mut();
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    common_headers(out);
    out.insert(header::CACHE_CONTROL, cache_control(&wanted));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_segments_parse() {
        assert_eq!(
            parse_release("w"),
            Some(ReleaseRef {
                name: "w".into(),
                version: None
            })
        );
        assert_eq!(
            parse_release("w@1.2.3"),
            Some(ReleaseRef {
                name: "w".into(),
                version: Some(Version::new(1, 2, 3))
            })
        );
        assert_eq!(parse_release("w@x"), None);
        assert_eq!(parse_release(""), None);
        assert_eq!(parse_release(&"a".repeat(MAX_RELEASE_SEGMENT + 1)), None);
    }

    #[test]
    fn torrents_are_recognised() {
        assert!(is_torrent("a/B.TORRENT", "text/plain"));
        assert!(is_torrent("a.js", "application/x-bittorrent; x=y"));
        assert!(!is_torrent("a.js", "text/javascript"));
    }

    #[test]
    fn if_none_match_compares_weakly() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"x\", W/\"abc\""),
        );
        assert!(none_match(&headers, "\"abc\""));
        assert!(!none_match(&headers, "\"abd\""));
        assert!(!none_match(&HeaderMap::new(), "\"abc\""));
    }
}
