//! The tracker's publish API, as the publisher's tools call it.
//!
//! | call | request | answers |
//! |---|---|---|
//! | [`TrackerApi::publish`] | `POST /api/v1/releases`, bearer token, `{"metainfo": <base64>, "manifest": <signed manifest>}` | 201 `{"name","version","info_hash","manifest_url","torrent_url"}` |
//! | [`TrackerApi::unpublish`] | `DELETE /api/v1/releases/{name}/{version}`, bearer token | 204, 404 |
//! | [`TrackerApi::latest`] | `GET /api/v1/assets/{name}` | 200 signed manifest, 404 |
//! | [`TrackerApi::release_exists`] | `GET /api/v1/assets/{name}/{version}` | 200, 404 |
//!
//! Refusals come as `{"error": "..."}` with a status that says what the publisher must fix,
//! and [`TrackerError`] keeps that distinction: a bad token, a name owned by someone else, a
//! version that exists, a manifest the tracker will not accept. Each variant's message
//! carries the tracker's own words and what to do next. Every answer body is read up to
//! [`MAX_RESPONSE_BYTES`]; the tracker is trusted more than a peer, but not unboundedly.

use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;
use swarmcdn_proto::InfoHash;
use swarmcdn_proto::manifest::{ReleaseName, SignedManifest, Version};

/// The largest answer body read from the tracker: a signed manifest is at most
/// [`MAX_ENCODED_LEN`](swarmcdn_proto::manifest::MAX_ENCODED_LEN) (2 MiB), plus room.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// The longest error message from the tracker that is shown, in characters.
const MAX_ERROR_MESSAGE: usize = 500;

/// Why a call to the tracker failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrackerError {
    /// The tracker could not be reached, or did not answer in time.
    #[error(
        "cannot reach the tracker at {url}: {reason}. Is it running, and is --tracker (or \
         SWARMCDN_TRACKER) right?"
    )]
    Unreachable {
        /// The URL called.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// 401: the token is not one the tracker knows.
    #[error(
        "the tracker refused the token ({message}). Check --token or SWARMCDN_TOKEN; the \
         tracker's operator issues tokens with `swarmcdn-tracker publisher add` or `rotate`"
    )]
    Unauthorized {
        /// The tracker's message.
        message: String,
    },
    /// 403: the release name belongs to another publisher (or the release does).
    #[error(
        "the tracker refused: {message}. The name belongs to another publisher; choose \
         another --name"
    )]
    Forbidden {
        /// The tracker's message.
        message: String,
    },
    /// 409: the version (or the very same torrent) is already registered.
    #[error(
        "the tracker already has this release ({message}). Versions are immutable: publish \
         under another --version, or leave --version out to take the next patch version"
    )]
    Conflict {
        /// The tracker's message.
        message: String,
    },
    /// 413: the request is larger than the tracker accepts.
    #[error(
        "the tracker refused the release as too large ({message}); publish fewer or smaller \
         files, or ask the operator to raise the tracker's publish limit"
    )]
    TooLarge {
        /// The tracker's message.
        message: String,
    },
    /// 400 or 422: the torrent or manifest was refused.
    #[error(
        "the tracker refused the release ({status}): {message}. If it names the signature, \
         the key in --key is not the one registered for your token: register its public key \
         with `swarmcdn-tracker publisher add NAME --public-key HEX`"
    )]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The tracker's message.
        message: String,
    },
    /// Any other status.
    #[error("the tracker answered {status}: {message}")]
    Unexpected {
        /// The HTTP status.
        status: u16,
        /// The tracker's message (or the start of its body).
        message: String,
    },
    /// The tracker's answer could not be understood.
    #[error("the tracker's answer to {url} is not what was expected: {reason}")]
    BadResponse {
        /// The URL called.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The token cannot be sent in an HTTP header.
    #[error("the token holds characters an HTTP header cannot carry; check --token")]
    BadToken,
}

/// What the tracker says about a release it registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// The release name.
    pub name: String,
    /// The version.
    pub version: String,
    /// The torrent's info-hash.
    pub info_hash: InfoHash,
    /// Where sites fetch the signed manifest (absolute URL).
    pub manifest_url: String,
    /// Where sites fetch the torrent (absolute URL).
    pub torrent_url: String,
}

#[derive(Deserialize)]
struct RegisteredJson {
    name: String,
    version: String,
    info_hash: InfoHash,
    manifest_url: String,
    torrent_url: String,
}

#[derive(Deserialize)]
struct ErrorJson {
    error: String,
}

/// A client for one tracker's API.
#[derive(Debug, Clone)]
pub struct TrackerApi {
    base: String,
    client: reqwest::Client,
}

impl TrackerApi {
    /// A client for the tracker at `base` (e.g. `http://127.0.0.1:6969`); every request gives
    /// up after `timeout`.
    pub fn new(base: &str, timeout: Duration) -> Result<Self, TrackerError> {
        let base = base.trim_end_matches('/').to_owned();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("swarmcdn-seeder/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| TrackerError::Unreachable {
                url: base.clone(),
                reason: format!("cannot set up an HTTP client: {e}"),
            })?;
        Ok(Self { base, client })
    }

    /// The tracker's base URL (no trailing `/`).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The announce URL to write into torrents.
    pub fn announce_url(&self) -> String {
        format!("{}/announce", self.base)
    }

    /// A URL the tracker returned: paths are taken relative to the tracker.
    fn absolute(&self, url: &str) -> String {
        if url.starts_with('/') {
            format!("{}{url}", self.base)
        } else {
            url.to_owned()
        }
    }

    /// The latest release of `name` the tracker has, or `None` if it has none.
    pub async fn latest(&self, name: &ReleaseName) -> Result<Option<SignedManifest>, TrackerError> {
        let url = format!("{}/api/v1/assets/{name}", self.base);
        let (status, body) = self.send(self.client.get(&url), &url).await?;
        match status {
            StatusCode::OK => {
                SignedManifest::from_json(&body)
                    .map(Some)
                    .map_err(|e| TrackerError::BadResponse {
                        url,
                        reason: format!("not a signed manifest: {e}"),
                    })
            }
            StatusCode::NOT_FOUND => Ok(None),
            other => Err(refusal(other, &body)),
        }
    }

    /// Whether the tracker has `name` at `version`.
    pub async fn release_exists(
        &self,
        name: &ReleaseName,
        version: &Version,
    ) -> Result<bool, TrackerError> {
        let url = format!("{}/api/v1/assets/{name}/{version}", self.base);
        let (status, body) = self.send(self.client.get(&url), &url).await?;
        match status {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            other => Err(refusal(other, &body)),
        }
    }

    /// Registers a release: its torrent's bytes and its signed manifest.
    pub async fn publish(
        &self,
        token: &str,
        metainfo: &[u8],
        manifest: &SignedManifest,
    ) -> Result<Registered, TrackerError> {
        let url = format!("{}/api/v1/releases", self.base);
        let body = serde_json::json!({
            "metainfo": data_encoding::BASE64.encode(metainfo),
            "manifest": manifest,
        });
        let request = self
            .client
            .post(&url)
            .header(reqwest::header::AUTHORIZATION, bearer(token)?)
            .json(&body);
        let (status, body) = self.send(request, &url).await?;
        if status != StatusCode::CREATED && status != StatusCode::OK {
            return Err(refusal(status, &body));
        }
        let json: RegisteredJson =
            serde_json::from_slice(&body).map_err(|e| TrackerError::BadResponse {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        Ok(Registered {
            name: json.name,
            version: json.version,
            info_hash: json.info_hash,
            manifest_url: self.absolute(&json.manifest_url),
            torrent_url: self.absolute(&json.torrent_url),
        })
    }

    /// Withdraws a release. Returns `false` if the tracker did not have it.
    pub async fn unpublish(
        &self,
        token: &str,
        name: &ReleaseName,
        version: &Version,
    ) -> Result<bool, TrackerError> {
        let url = format!("{}/api/v1/releases/{name}/{version}", self.base);
        let request = self
            .client
            .delete(&url)
            .header(reqwest::header::AUTHORIZATION, bearer(token)?);
        let (status, body) = self.send(request, &url).await?;
        match status {
            StatusCode::NO_CONTENT | StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            other => Err(refusal(other, &body)),
        }
    }

    /// Sends a request and reads the answer, at most [`MAX_RESPONSE_BYTES`] of it.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<(StatusCode, Vec<u8>), TrackerError> {
        let unreachable = |e: reqwest::Error| TrackerError::Unreachable {
            url: url.to_owned(),
            reason: describe(&e),
        };
        let mut response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(TrackerError::BadResponse {
                    url: url.to_owned(),
                    reason: format!("the answer is larger than {MAX_RESPONSE_BYTES} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body))
    }
}

fn bearer(token: &str) -> Result<reqwest::header::HeaderValue, TrackerError> {
    let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
        .map_err(|_| TrackerError::BadToken)?;
    value.set_sensitive(true);
    Ok(value)
}

/// The error for a refusal with `status`, carrying the tracker's message.
fn refusal(status: StatusCode, body: &[u8]) -> TrackerError {
    let message = serde_json::from_slice::<ErrorJson>(body)
        .map(|e| e.error)
        .unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned());
    let mut message: String = message.chars().take(MAX_ERROR_MESSAGE).collect();
    if message.trim().is_empty() {
        message = status
            .canonical_reason()
            .unwrap_or("no explanation")
            .to_owned();
    }
    match status {
        StatusCode::UNAUTHORIZED => TrackerError::Unauthorized { message },
        StatusCode::FORBIDDEN => TrackerError::Forbidden { message },
        StatusCode::CONFLICT => TrackerError::Conflict { message },
        StatusCode::PAYLOAD_TOO_LARGE => TrackerError::TooLarge { message },
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => TrackerError::Rejected {
            status: status.as_u16(),
            message,
        },
        other => TrackerError::Unexpected {
            status: other.as_u16(),
            message,
        },
    }
}

/// What went wrong with a request, briefly: reqwest's own message repeats the URL and hides
/// the cause ("connection refused") at the end of a chain.
fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "no answer in time".to_owned();
    }
    if error.is_connect() {
        let mut root: &dyn std::error::Error = error;
        while let Some(cause) = root.source() {
            root = cause;
        }
        return format!("cannot connect ({root})");
    }
    error_chain(error)
}

/// An error and its causes on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_what_the_publisher_must_fix() {
        let body = br#"{"error":"nope"}"#;
        assert!(matches!(
            refusal(StatusCode::UNAUTHORIZED, body),
            TrackerError::Unauthorized { message } if message == "nope"
        ));
        assert!(matches!(
            refusal(StatusCode::FORBIDDEN, body),
            TrackerError::Forbidden { .. }
        ));
        assert!(matches!(
            refusal(StatusCode::CONFLICT, body),
            TrackerError::Conflict { .. }
        ));
        assert!(matches!(
            refusal(StatusCode::PAYLOAD_TOO_LARGE, body),
            TrackerError::TooLarge { .. }
        ));
        assert!(matches!(
            refusal(StatusCode::UNPROCESSABLE_ENTITY, body),
            TrackerError::Rejected { status: 422, .. }
        ));
        assert!(matches!(
            refusal(StatusCode::BAD_GATEWAY, b""),
            TrackerError::Unexpected { status: 502, message } if message == "Bad Gateway"
        ));
    }

    #[test]
    fn long_error_messages_are_cut() {
        let body = format!(r#"{{"error":"{}"}}"#, "x".repeat(10_000));
        let TrackerError::Unexpected { message, .. } =
            refusal(StatusCode::INTERNAL_SERVER_ERROR, body.as_bytes())
        else {
            panic!("wrong variant");
        };
        assert_eq!(message.len(), MAX_ERROR_MESSAGE);
    }

    #[test]
    fn relative_urls_are_resolved_against_the_tracker() {
        let api = TrackerApi::new("http://t.example:6969/", Duration::from_secs(1)).unwrap();
        assert_eq!(api.base(), "http://t.example:6969");
        assert_eq!(api.announce_url(), "http://t.example:6969/announce");
        assert_eq!(
            api.absolute("/api/v1/assets/a/1.0.0"),
            "http://t.example:6969/api/v1/assets/a/1.0.0"
        );
        assert_eq!(
            api.absolute("https://cdn.example/x"),
            "https://cdn.example/x"
        );
    }

    #[tokio::test]
    async fn answers_are_read_up_to_the_bound() {
        use axum::routing::get;
        let app = axum::Router::new()
            .route(
                "/api/v1/assets/big",
                get(|| async { vec![b' '; MAX_RESPONSE_BYTES + 1] }),
            )
            .route(
                "/api/v1/assets/fits/1.0.0",
                get(|| async { vec![b' '; MAX_RESPONSE_BYTES] }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        let api = TrackerApi::new(&format!("http://{address}"), Duration::from_secs(10)).unwrap();
        let error = api.latest(&"big".parse().unwrap()).await.unwrap_err();
        assert!(matches!(error, TrackerError::BadResponse { .. }), "{error}");
        assert!(
            api.release_exists(&"fits".parse().unwrap(), &Version::new(1, 0, 0))
                .await
                .unwrap()
        );
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }

    #[test]
    fn tokens_that_cannot_be_headers_are_refused() {
        assert!(matches!(bearer("a\nb"), Err(TrackerError::BadToken)));
        assert!(bearer("abc").unwrap().is_sensitive());
    }
}
