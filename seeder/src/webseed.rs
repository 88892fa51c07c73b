//! The web seed (BEP 19): `GET` and `HEAD /webseed/{info-hash}/{path}` over the store.
//!
//! Every torrent `publish` makes carries `url-list = <base>/webseed/<info-hash>/`, and BEP 19
//! clients append the torrent's name and the file's path, so a request names a release by
//! info-hash and a file by its path in the torrent. The URL's info-hash selects a release the
//! catalog serves (anything else is `404`), and the path is only ever *looked up* in that
//! release's file table: each `/`-separated segment is percent-decoded on its own and the
//! list validated as a [`RelativePath`], so `..`, `%2e%2e`, an encoded `/` (`%2f`) or a
//! backslash cannot name anything, and no request path is ever joined onto the file system.
//! The file opened is always one the torrent lists, at the path the store put it.
//!
//! Responses are immutable per URL (the info-hash fixes the bytes), which makes them easy to
//! cache anywhere: `Cache-Control: public, max-age=31536000, immutable` and a strong `ETag`
//! (`"<info-hash>-<file index>"`), with `If-None-Match` answered by `304`. `Range` is
//! supported the way web-seed clients need it (see [`range`]): one range gives `206` with
//! `Content-Range`, several give a `206` `multipart/byteranges` body, none satisfiable gives
//! `416` with `Content-Range: bytes */<length>`. `Content-Type` is the one the signed manifest
//! declares. Nothing is required of the request beyond its path: libtorrent pipelines requests
//! without `User-Agent` and with a `Host` that has no port.
//!
//! Bodies are streamed from disk (the `body` module) and paced by the shared upload cap; when the
//! web seed is over its share, new requests get `503` with `Retry-After` (see
//! [`crate::bandwidth`]). Errors are answered with a short text and `Cache-Control: no-store`,
//! so a cache never keeps a `404` for a release that is about to be published.

mod body;
pub mod range;

use std::ops::Range;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use percent_encoding::percent_decode_str;
use rand::Rng;
use swarmcdn_proto::{InfoHash, RelativePath};

use crate::catalog::ServedFile;
use crate::serve::AppState;
use body::Segment;
use range::{RangeRequest, if_none_match, if_range_holds, parse_range};

/// The `Cache-Control` of every successful response.
pub const CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

/// The path prefix of web-seed URLs.
const PREFIX: &str = "/webseed/";

/// `GET` and `HEAD /webseed/{info_hash}/{*path}`.
pub(crate) async fn serve_file(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let response = respond(&state, &method, &uri, &headers).await;
    state.metrics().response(response.status().as_u16());
    response
}

async fn respond(state: &AppState, method: &Method, uri: &Uri, headers: &HeaderMap) -> Response {
    // The path as the client sent it, not as the router decoded it: an encoded `/` must stay
    // inside its segment (and be refused there), and a segment that does not decode to UTF-8
    // is simply not found.
    let Some((info_hash, path)) = uri
        .path()
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.split_once('/'))
    else {
        return not_found();
    };
    let Ok(info_hash) = InfoHash::from_text(info_hash) else {
        return not_found();
    };
    let Some(path) = decode_path(path) else {
        return not_found();
    };
    let catalog = state.catalog();
    let Some(release) = catalog.get(&info_hash) else {
        return not_found();
    };
    let Some(file) = release.file(&path) else {
        return not_found();
    };

    if let Some(value) = header_str(headers, header::IF_NONE_MATCH)
        && file
            .etag
            .to_str()
            .is_ok_and(|etag| if_none_match(value, etag))
    {
        return (
            StatusCode::NOT_MODIFIED,
            [
                (header::ETAG, file.etag.clone()),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static(CACHE_CONTROL),
                ),
            ],
        )
            .into_response();
    }

    let mut request = RangeRequest::Full;
    if let Some(value) = header_str(headers, header::RANGE) {
        let if_range_ok = header_str(headers, header::IF_RANGE)
            .is_none_or(|v| file.etag.to_str().is_ok_and(|etag| if_range_holds(v, etag)));
        if if_range_ok {
            request = parse_range(value, file.length);
        }
    }
    let (status, segments, mut response_headers) = match request {
        RangeRequest::Unsatisfiable => {
            return (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [
                    (
                        header::CONTENT_RANGE,
                        header_value(format!("bytes */{}", file.length)),
                    ),
                    (header::ACCEPT_RANGES, HeaderValue::from_static("bytes")),
                    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                ],
            )
                .into_response();
        }
        RangeRequest::Full => (
            StatusCode::OK,
            vec![Segment::File {
                offset: 0,
                len: file.length,
            }],
            vec![(header::CONTENT_TYPE, file.content_type.clone())],
        ),
        RangeRequest::Partial(ranges) if ranges.len() == 1 => {
            let range = ranges[0].clone();
            (
                StatusCode::PARTIAL_CONTENT,
                vec![Segment::File {
                    offset: range.start,
                    len: range.end - range.start,
                }],
                vec![
                    (header::CONTENT_TYPE, file.content_type.clone()),
                    (header::CONTENT_RANGE, content_range(&range, file.length)),
                ],
            )
        }
        RangeRequest::Partial(ranges) => {
            let boundary = format!("swarmcdn-{:016x}", rand::rng().next_u64());
            let segments = multipart_segments(&ranges, file, &boundary);
            (
                StatusCode::PARTIAL_CONTENT,
                segments,
                vec![(
                    header::CONTENT_TYPE,
                    header_value(format!("multipart/byteranges; boundary={boundary}")),
                )],
            )
        }
    };
    let len = body::body_len(&segments);
    response_headers.extend([
        (header::CONTENT_LENGTH, HeaderValue::from(len)),
        (header::ETAG, file.etag.clone()),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static(CACHE_CONTROL),
        ),
        (header::ACCEPT_RANGES, HeaderValue::from_static("bytes")),
    ]);

    if *method == Method::HEAD || len == 0 {
        return with_headers(status, response_headers, Body::empty());
    }

    // Wait for a free slot (see `Config::max_concurrent_requests`); held until the body is
    // sent.
    let Ok(slot) = state.response_slots().acquire_owned().await else {
        return internal_error();
    };
    let bandwidth = state.bandwidth();
    let mut permit = match bandwidth.admit_webseed(len) {
        Ok(permit) => permit,
        Err(retry) => {
            state.metrics().throttled();
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [
                    (header::RETRY_AFTER, HeaderValue::from(retry.0)),
                    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                ],
                "the web seed is over its share of the upload cap; fetch from peers or retry later\n",
            )
                .into_response();
        }
    };

    let disk_path = file.disk_path.clone();
    let opened = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
        let file = std::fs::File::open(&disk_path)?;
        if len <= body::SMALL_BODY {
            Ok((None, Some(body::read_all(file, &segments)?)))
        } else {
            Ok((Some((file, segments)), None))
        }
    })
    .await;
    let body = match opened {
        Ok(Ok((_, Some(bytes)))) => {
            permit.send(len).await;
            release.counters.webseed.inc_by(len);
            drop(slot);
            Body::from(bytes)
        }
        Ok(Ok((Some((handle, segments)), None))) => body::stream(
            handle,
            segments,
            bandwidth.chunk_size(),
            permit,
            release.counters.webseed.clone(),
            slot,
        ),
        Ok(Ok((None, None))) => return internal_error(),
        Ok(Err(error)) => {
            tracing::error!(%info_hash, path = %path, %error, "cannot read a stored file");
            return internal_error();
        }
        Err(error) => {
            tracing::error!(%error, "file reader task failed");
            return internal_error();
        }
    };
    with_headers(status, response_headers, body)
}

/// Percent-decodes each segment of a raw path on its own and validates the result, so an
/// encoded separator stays inside its component (and is refused there).
fn decode_path(raw: &str) -> Option<RelativePath> {
    let mut components = Vec::new();
    for segment in raw.split('/') {
        components.push(percent_decode_str(segment).decode_utf8().ok()?.into_owned());
    }
    RelativePath::from_components(components).ok()
}

/// The segments of a `multipart/byteranges` body: for each range, a delimiter and part
/// headers, then the bytes; then the closing delimiter.
fn multipart_segments(ranges: &[Range<u64>], file: &ServedFile, boundary: &str) -> Vec<Segment> {
    let content_type = file
        .content_type
        .to_str()
        .unwrap_or("application/octet-stream");
    let mut segments = Vec::with_capacity(ranges.len() * 2 + 1);
    for (i, range) in ranges.iter().enumerate() {
        let lead = if i == 0 { "" } else { "\r\n" };
        let head = format!(
            "{lead}--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: bytes {}-{}/{}\r\n\r\n",
            range.start,
            range.end - 1,
            file.length
        );
        segments.push(Segment::Static(Bytes::from(head)));
        segments.push(Segment::File {
            offset: range.start,
            len: range.end - range.start,
        });
    }
    segments.push(Segment::Static(Bytes::from(format!(
        "\r\n--{boundary}--\r\n"
    ))));
    segments
}

fn content_range(range: &Range<u64>, len: u64) -> HeaderValue {
    header_value(format!("bytes {}-{}/{len}", range.start, range.end - 1))
}

fn header_value(text: String) -> HeaderValue {
    // Only digits, ASCII words and our own boundary go in here.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn with_headers(
    status: StatusCode,
    headers: Vec<(header::HeaderName, HeaderValue)>,
    body: Body,
) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().extend(headers);
    response
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        "not found\n",
    )
        .into_response()
}

fn internal_error() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        "internal error\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_decoded_per_segment_and_validated() {
        assert_eq!(
            decode_path("name-1.0.0/icons/a%20b.svg")
                .unwrap()
                .to_string(),
            "name-1.0.0/icons/a b.svg"
        );
        for raw in [
            "..",
            "a/../b",
            "a/%2e%2e/b",
            "a/%2E%2E",
            "a%2fb",
            "a%2Fb",
            "..%5cetc",
            "a\\b",
            "a//b",
            "a/",
            "/a",
            "a/%00",
            "a/%ff",
            ".",
        ] {
            assert!(decode_path(raw).is_none(), "{raw}");
        }
    }
}
