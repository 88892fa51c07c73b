//! The service's one error type, and how each kind of error becomes a response.
//!
//! Two audiences read our errors, and each expects its own shape:
//!
//! * **BitTorrent clients** (`/announce`, `/scrape`) expect HTTP 200 with a bencoded
//!   dictionary holding `failure reason`. BEP 3 defines a tracker response as a bencoded
//!   dictionary whose `failure reason`, when present, explains why the query failed; it says
//!   nothing about HTTP status codes, and common clients show the reason only from a 200
//!   answer (a 4xx is reported as "tracker gave HTTP response code 400", with the body
//!   thrown away). So a refused announce is a successful HTTP exchange.
//! * **Publishers and sites** (`/api/v1/...`) get the HTTP status that says what to do (401:
//!   fix the token, 409: bump the version, ...) and a JSON body `{"error": "..."}`.
//!
//! Internal failures (SQLite broken, a task panicked) are neither: they become an opaque 500,
//! and the cause is logged once, here, so details of our side never reach a client.
//!
//! Every error carries a short machine name ([`Error::reason`], such as `bad_id_length`), which
//! the response carries as an extension so the metrics layer counts errors by reason without
//! each handler having to remember to.

use std::borrow::Cow;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use swarmcdn_proto::tracker::{AnnounceError, AnnounceResponse, ScrapeRequestError};

use crate::registry::RegistryError;
use crate::swarm::StoreError;

/// The machine name of an error, attached to its response for the metrics layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ErrorReason(pub(crate) &'static str);

/// Everything a handler can fail with. See the module docs for how each variant is answered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tracker request (announce, scrape) refused: HTTP 200 with a bencoded
    /// `failure reason`.
    #[error("{message}")]
    Tracker {
        /// Machine name of the problem (a metrics label).
        reason: &'static str,
        /// Words for the client; never echoes its input bytes.
        message: Cow<'static, str>,
    },
    /// An API request refused: the given 4xx status and `{"error": message}`.
    #[error("{message}")]
    Api {
        /// The HTTP status.
        status: StatusCode,
        /// Machine name of the problem (a metrics label).
        reason: &'static str,
        /// Words for the client.
        message: Cow<'static, str>,
    },
    /// A failure on our side: logged, answered with an opaque 500.
    #[error("internal error: {0}")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    /// A tracker refusal.
    pub(crate) fn tracker(reason: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Error::Tracker {
            reason,
            message: message.into(),
        }
    }

    /// An API refusal.
    pub(crate) fn api(
        status: StatusCode,
        reason: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Error::Api {
            status,
            reason,
            message: message.into(),
        }
    }

    /// An internal failure.
    pub(crate) fn internal(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Error::Internal(error.into())
    }

    /// The error's machine name, as counted in `tracker_errors_total{reason=...}`.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Tracker { reason, .. } | Error::Api { reason, .. } => reason,
            Error::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let reason = ErrorReason(self.reason());
        let mut response = match self {
            Error::Tracker { message, .. } => {
                let mut body = Vec::with_capacity(message.len() + 24);
                AnnounceResponse::encode_failure(&message, &mut body);
                (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"))],
                    body,
                )
                    .into_response()
            }
            Error::Api {
                status, message, ..
            } => (status, json_error(&message)).into_response(),
            Error::Internal(source) => {
                // The one place internal errors are logged; the client learns nothing.
                tracing::error!(error = %ErrorChain(&*source), "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json_error("internal error"),
                )
                    .into_response()
            }
        };
        response.extensions_mut().insert(reason);
        response
    }
}

/// `{"error": message}` with a JSON content type.
pub(crate) fn json_error(message: &str) -> ([(header::HeaderName, HeaderValue); 1], String) {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        serde_json::json!({ "error": message }).to_string(),
    )
}

/// An error and its sources on one line, for the log.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            write!(f, ": {error}")?;
            source = error.source();
        }
        Ok(())
    }
}

impl From<AnnounceError> for Error {
    fn from(error: AnnounceError) -> Self {
        let reason = match &error {
            AnnounceError::QueryTooLong { .. } => "query_too_long",
            AnnounceError::TooManyParameters { .. } => "too_many_parameters",
            AnnounceError::Missing(_) => "missing_parameter",
            AnnounceError::Duplicate(_) => "duplicate_parameter",
            AnnounceError::BadEncoding(_) => "bad_encoding",
            AnnounceError::BadIdLength { .. } => "bad_id_length",
            AnnounceError::InvalidPort => "invalid_port",
            AnnounceError::InvalidNumber(_) => "invalid_number",
            AnnounceError::UnknownEvent => "unknown_event",
            AnnounceError::ValueTooLong { .. } => "value_too_long",
            _ => "bad_request",
        };
        // The proto crate's messages name the parameter, never echo its value.
        Error::tracker(reason, error.to_string())
    }
}

impl From<ScrapeRequestError> for Error {
    fn from(error: ScrapeRequestError) -> Self {
        let reason = match &error {
            ScrapeRequestError::QueryTooLong { .. } => "query_too_long",
            ScrapeRequestError::TooManyInfoHashes { .. } => "too_many_info_hashes",
            ScrapeRequestError::BadEncoding => "bad_encoding",
            ScrapeRequestError::BadIdLength { .. } => "bad_id_length",
            ScrapeRequestError::FullScrape => "full_scrape",
            _ => "bad_request",
        };
        Error::tracker(reason, error.to_string())
    }
}

impl From<StoreError> for Error {
    fn from(error: StoreError) -> Self {
        Error::internal(error)
    }
}

impl From<RegistryError> for Error {
    fn from(error: RegistryError) -> Self {
        let (status, reason) = match &error {
            RegistryError::DuplicateRelease { .. } => (StatusCode::CONFLICT, "duplicate_release"),
            RegistryError::DuplicateInfoHash(_) => (StatusCode::CONFLICT, "duplicate_torrent"),
            RegistryError::DuplicatePublisher(_) => (StatusCode::CONFLICT, "duplicate_publisher"),
            RegistryError::NameTaken(_) => (StatusCode::FORBIDDEN, "name_taken"),
            // The publisher was removed between authentication and the write.
            RegistryError::PublisherNotFound(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            RegistryError::ReleaseNotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            RegistryError::InvalidName { .. } => (StatusCode::BAD_REQUEST, "bad_name"),
            RegistryError::InvalidVersion { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "bad_version")
            }
            _ => return Error::internal(error),
        };
        Error::api(status, reason, error.to_string())
    }
}

impl From<tokio::task::JoinError> for Error {
    fn from(error: tokio::task::JoinError) -> Self {
        Error::internal(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmcdn_proto::tracker::AnnounceParam;

    async fn body(response: Response) -> Vec<u8> {
        axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap()
            .to_vec()
    }

    #[tokio::test]
    async fn tracker_errors_are_200_with_a_failure_reason() {
        let error = Error::from(AnnounceError::Missing(AnnounceParam::PeerId));
        assert_eq!(error.reason(), "missing_parameter");
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.extensions().get::<ErrorReason>(),
            Some(&ErrorReason("missing_parameter"))
        );
        assert_eq!(
            body(response).await,
            b"d14:failure reason35:the announce query has no `peer_id`e"
        );
    }

    #[tokio::test]
    async fn api_errors_are_json_with_their_status() {
        let response =
            Error::api(StatusCode::CONFLICT, "duplicate_release", "taken").into_response();
        assert_eq!(response.status(), StatusCode::CONFLICT);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            HeaderValue::from_static("application/json")
        );
        assert_eq!(body(response).await, br#"{"error":"taken"}"#);
    }

    #[tokio::test]
    async fn internal_errors_say_nothing_about_the_cause() {
        let response = Error::internal("disk on fire at /var/db").into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            response.extensions().get::<ErrorReason>(),
            Some(&ErrorReason("internal"))
        );
        let body = body(response).await;
        assert_eq!(body, br#"{"error":"internal error"}"#);
    }

    #[test]
    fn registry_errors_map_to_statuses() {
        let cases = [
            (
                RegistryError::NameTaken("w".into()),
                StatusCode::FORBIDDEN,
                "name_taken",
            ),
            (
                RegistryError::DuplicateRelease {
                    name: "w".into(),
                    version: "1.0.0".into(),
                },
                StatusCode::CONFLICT,
                "duplicate_release",
            ),
            (
                RegistryError::ReleaseNotFound {
                    name: "w".into(),
                    version: "1.0.0".into(),
                },
                StatusCode::NOT_FOUND,
                "not_found",
            ),
        ];
        for (error, status, reason) in cases {
            match Error::from(error) {
                Error::Api {
                    status: s,
                    reason: r,
                    ..
                } => assert_eq!((s, r), (status, reason)),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            Error::from(RegistryError::Corrupt("x".into())),
            Error::Internal(_)
        ));
    }
}
