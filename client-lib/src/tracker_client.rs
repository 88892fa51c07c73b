//! Talking to the tracker over HTTP: the release API (release lookups, signed manifests,
//! metainfo) and announces.
//!
//! Everything that comes back is untrusted until checked: bodies are read with a hard cap
//! (a hostile or broken server cannot make us buffer more than the format allows), manifests
//! and announce responses are parsed by `swarmcdn-proto`, and the caller still verifies the
//! manifest's signature against a pinned key and the metainfo's info-hash against the
//! manifest. The errors are shaped by what the caller decides: `Unreachable` means "use what
//! is cached, or fall back to the web seed", `NotFound` means "no such release: give up"
//! (for a lookup: "no such release, or a tracker without lookups", which
//! [`TrackerClient::release`] tells apart), the rest mean "this tracker misbehaves".

use bytes::{Bytes, BytesMut};
use swarmcdn_proto::InfoHash;
use swarmcdn_proto::manifest::{self, ReleaseName, SignedManifest, Version};
use swarmcdn_proto::tracker::{
    self, AnnounceRequest, AnnounceResponse, AnnounceSuccess, ReleaseLookup, url_with_query,
};

/// The largest `.torrent` accepted from the tracker (the bencode decoder's own limit).
pub const MAX_METAINFO_BODY: usize = swarmcdn_proto::bencode::Limits::DEFAULT.max_input;
/// The largest signed manifest accepted.
pub const MAX_MANIFEST_BODY: usize = manifest::MAX_ENCODED_LEN;
/// The largest release lookup accepted.
pub const MAX_LOOKUP_BODY: usize = tracker::MAX_LOOKUP_LEN;
/// The largest announce response accepted.
pub const MAX_ANNOUNCE_BODY: usize = tracker::MAX_RESPONSE_LEN;

/// What went wrong talking to a tracker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrackerError {
    /// The tracker could not be reached (connection refused, reset, timed out).
    #[error("tracker unreachable at {url}: {source}")]
    Unreachable {
        /// The URL asked.
        url: String,
        /// What the HTTP client saw.
        #[source]
        source: reqwest::Error,
    },
    /// The tracker does not know that release or torrent.
    #[error("not found at the tracker: {url}")]
    NotFound {
        /// The URL asked.
        url: String,
    },
    /// The tracker answered with an unexpected HTTP status.
    #[error("tracker answered {status} for {url}")]
    Status {
        /// The URL asked.
        url: String,
        /// The status it answered with.
        status: reqwest::StatusCode,
    },
    /// The body was larger than the format allows.
    #[error("tracker response from {url} is over the {limit}-byte limit")]
    TooLarge {
        /// The URL asked.
        url: String,
        /// The limit in force.
        limit: usize,
    },
    /// The tracker refused the announce (`failure reason`).
    #[error("tracker refused the announce: {reason}")]
    Refused {
        /// The tracker's words.
        reason: String,
    },
    /// The body did not parse as what was asked for.
    #[error("malformed tracker response from {url}: {reason}")]
    Malformed {
        /// The URL asked.
        url: String,
        /// What was wrong with it.
        reason: String,
    },
}

impl TrackerError {
    /// True when the tracker could not be reached at all, so cached data may stand in.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, TrackerError::Unreachable { .. })
    }
}

/// A client of one tracker's release API, and of any announce URL.
#[derive(Debug, Clone)]
pub struct TrackerClient {
    http: reqwest::Client,
    base: String,
}

impl TrackerClient {
    /// A client for the tracker at `base_url` (e.g. `http://127.0.0.1:6969`), sharing the
    /// caller's HTTP client (its timeouts apply).
    pub fn new(base_url: &str, http: reqwest::Client) -> Self {
        Self {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
        }
    }

    /// The tracker's base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The tracker's announce URL.
    pub fn announce_url(&self) -> String {
        format!("{}/announce", self.base)
    }

    /// The signed manifest of a release: the latest when `version` is `None`. The signature
    /// is *not* checked here.
    pub async fn manifest(
        &self,
        name: &ReleaseName,
        version: Option<&Version>,
    ) -> Result<SignedManifest, TrackerError> {
        self.get_release_doc("assets", name, version, MAX_MANIFEST_BODY, |body| {
            SignedManifest::from_json(body)
        })
        .await
    }

    /// A release's signed manifest, its metainfo and a sample of its swarm in one request
    /// (the latest release when `version` is `None`). Only shapes are checked here: the
    /// caller verifies the signature and compares the info-hashes.
    pub async fn lookup(
        &self,
        name: &ReleaseName,
        version: Option<&Version>,
    ) -> Result<ReleaseLookup, TrackerError> {
        self.get_release_doc(
            "lookup",
            name,
            version,
            MAX_LOOKUP_BODY,
            ReleaseLookup::from_bytes,
        )
        .await
    }

    /// `GET /api/v1/{kind}/{name}[/{version}]`, at most `limit` bytes, parsed by `parse`.
    async fn get_release_doc<T, E: std::fmt::Display>(
        &self,
        kind: &str,
        name: &ReleaseName,
        version: Option<&Version>,
        limit: usize,
        parse: impl FnOnce(&[u8]) -> Result<T, E>,
    ) -> Result<T, TrackerError> {
        let url = match version {
            Some(v) => format!("{}/api/v1/{kind}/{name}/{v}", self.base),
            None => format!("{}/api/v1/{kind}/{name}", self.base),
        };
        let body = self.get(&url, limit).await?;
        parse(&body).map_err(|e| TrackerError::Malformed {
            url,
            reason: e.to_string(),
        })
    }

    /// What [`TrackerClient::lookup`] gives, from a tracker that may predate lookups: when
    /// the lookup is not found, the manifest and then the torrent it names are asked for
    /// separately (with no peers). `NotFound` only when the manifest is not found either.
    pub async fn release(
        &self,
        name: &ReleaseName,
        version: Option<&Version>,
    ) -> Result<ReleaseLookup, TrackerError> {
        match self.lookup(name, version).await {
            Err(TrackerError::NotFound { .. }) => {}
            found => return found,
        }
        let manifest = self.manifest(name, version).await?;
        let info_hash = manifest.unverified_manifest().info_hash();
        let torrent = self.metainfo(info_hash).await?.to_vec();
        Ok(ReleaseLookup {
            manifest,
            torrent,
            peers: Vec::new(),
            peers6: Vec::new(),
        })
    }

    /// The raw metainfo of a registered torrent. The caller parses it and checks its
    /// info-hash.
    pub async fn metainfo(&self, info_hash: InfoHash) -> Result<Bytes, TrackerError> {
        let url = format!("{}/api/v1/torrents/{info_hash}", self.base);
        self.get(&url, MAX_METAINFO_BODY).await
    }

    /// Announces to `announce_url` (any tracker, not only this one).
    pub async fn announce(
        &self,
        announce_url: &str,
        request: &AnnounceRequest,
    ) -> Result<AnnounceSuccess, TrackerError> {
        let url = url_with_query(announce_url, &request.to_query());
        let body = self.get(&url, MAX_ANNOUNCE_BODY).await?;
        match AnnounceResponse::from_bytes(&body) {
            Ok(AnnounceResponse::Success(ok)) => Ok(ok),
            Ok(AnnounceResponse::Failure { reason }) => Err(TrackerError::Refused { reason }),
            Err(e) => Err(TrackerError::Malformed {
                url: announce_url.to_owned(),
                reason: e.to_string(),
            }),
        }
    }

    async fn get(&self, url: &str, limit: usize) -> Result<Bytes, TrackerError> {
        let unreachable = |source| TrackerError::Unreachable {
            url: url.to_owned(),
            source,
        };
        let response = self.http.get(url).send().await.map_err(unreachable)?;
        match response.status() {
            s if s.is_success() => {}
            reqwest::StatusCode::NOT_FOUND | reqwest::StatusCode::GONE => {
                return Err(TrackerError::NotFound {
                    url: url.to_owned(),
                });
            }
            status => {
                return Err(TrackerError::Status {
                    url: url.to_owned(),
                    status,
                });
            }
        }
        read_capped(response, limit).await.map_err(|e| match e {
            CappedError::TooLarge => TrackerError::TooLarge {
                url: url.to_owned(),
                limit,
            },
            CappedError::Transport(source) => unreachable(source),
        })
    }
}

/// Why [`read_capped`] stopped.
#[derive(Debug)]
pub(crate) enum CappedError {
    /// More than the limit arrived (or was announced by `Content-Length`).
    TooLarge,
    /// The connection failed mid-body.
    Transport(reqwest::Error),
}

/// Reads a response body, refusing to hold more than `limit` bytes: a `Content-Length` over
/// the limit is refused before reading, and a body that runs past it is cut off.
pub(crate) async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Bytes, CappedError> {
    if response
        .content_length()
        .is_some_and(|len| len > limit as u64)
    {
        return Err(CappedError::TooLarge);
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(CappedError::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(CappedError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use axum::routing::get;
    use swarmcdn_proto::manifest::{Manifest, ManifestFile, signing_key_from_seed};
    use swarmcdn_proto::tracker::write_compact_response;
    use swarmcdn_proto::{PeerId, RelativePath};

    /// A test server on 127.0.0.1:0; aborted when the guard drops.
    struct Server {
        base: String,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    async fn serve(router: Router) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Server { base, task }
    }

    fn signed() -> SignedManifest {
        let file = ManifestFile::from_bytes(
            RelativePath::parse("button.html").unwrap(),
            "text/html; charset=utf-8",
            b"<button>share</button>",
        )
        .unwrap();
        Manifest::new(
            "share-button".parse().unwrap(),
            "1.2.3".parse().unwrap(),
            InfoHash([9; 20]),
            1_700_000_000,
            vec![file],
        )
        .unwrap()
        .sign(&signing_key_from_seed([3; 32]))
    }

    fn client(base: &str) -> TrackerClient {
        TrackerClient::new(base, reqwest::Client::new())
    }

    #[tokio::test]
    async fn fetches_latest_and_pinned_manifests() {
        let json = signed().to_json();
        let pinned = json.clone();
        let server = serve(
            Router::new()
                .route(
                    "/api/v1/assets/share-button",
                    get(move || async move { json }),
                )
                .route(
                    "/api/v1/assets/share-button/1.2.3",
                    get(move || async move { pinned }),
                ),
        )
        .await;
        let tracker = client(&format!("{}/", server.base));
        let name: ReleaseName = "share-button".parse().unwrap();
        assert_eq!(tracker.manifest(&name, None).await.unwrap(), signed());
        let version: Version = "1.2.3".parse().unwrap();
        assert_eq!(
            tracker.manifest(&name, Some(&version)).await.unwrap(),
            signed()
        );
        let other: Version = "9.9.9".parse().unwrap();
        assert!(matches!(
            tracker.manifest(&name, Some(&other)).await,
            Err(TrackerError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn a_tracker_without_lookups_is_asked_for_manifest_and_torrent_separately() {
        let json = signed().to_json();
        let info_hash = signed().unverified_manifest().info_hash();
        let server = serve(
            Router::new()
                .route(
                    "/api/v1/assets/share-button",
                    get(move || async move { json }),
                )
                .route(
                    &format!("/api/v1/torrents/{info_hash}"),
                    get(|| async { "d4:infodee" }),
                ),
        )
        .await;
        let tracker = client(&server.base);
        let name: ReleaseName = "share-button".parse().unwrap();
        let release = tracker.release(&name, None).await.unwrap();
        assert_eq!(release.manifest, signed());
        assert_eq!(release.torrent, b"d4:infodee");
        assert!(release.peers.is_empty() && release.peers6.is_empty());
        // Not found anywhere: NotFound, from the manifest endpoint.
        let missing = tracker.release(&"other".parse().unwrap(), None).await;
        assert!(
            matches!(&missing, Err(TrackerError::NotFound { url }) if url.contains("/assets/")),
            "{missing:?}"
        );
    }

    #[tokio::test]
    async fn fetches_lookups_and_refuses_malformed_ones() {
        let mut torrent =
            b"d4:infod6:lengthi3e4:name5:a.txt12:piece lengthi16384e6:pieces20:".to_vec();
        torrent.extend_from_slice(&[7; 20]);
        torrent.extend_from_slice(b"ee");
        let mut body = Vec::new();
        let peer: std::net::SocketAddrV4 = "10.1.2.3:6881".parse().unwrap();
        tracker::write_lookup(
            &mut body,
            signed().to_json().as_bytes(),
            &torrent,
            [peer],
            [],
        );
        let server = serve(
            Router::new()
                .route(
                    "/api/v1/lookup/share-button/1.2.3",
                    get(move || async move { body }),
                )
                .route(
                    "/api/v1/lookup/share-button",
                    get(|| async { "d8:manifest2:{}e" }),
                ),
        )
        .await;
        let tracker = client(&server.base);
        let name: ReleaseName = "share-button".parse().unwrap();
        let version: Version = "1.2.3".parse().unwrap();
        let lookup = tracker.lookup(&name, Some(&version)).await.unwrap();
        assert_eq!(lookup.manifest, signed());
        assert_eq!(lookup.torrent, torrent);
        assert_eq!(lookup.peers, [peer]);
        let garbled = tracker.lookup(&name, None).await;
        assert!(
            matches!(garbled, Err(TrackerError::Malformed { .. })),
            "{garbled:?}"
        );
        let missing = tracker.lookup(&"other".parse().unwrap(), None).await;
        assert!(
            matches!(missing, Err(TrackerError::NotFound { .. })),
            "{missing:?}"
        );
    }

    #[tokio::test]
    async fn malformed_and_oversized_bodies_are_refused() {
        let server = serve(
            Router::new()
                .route("/api/v1/assets/garbage", get(|| async { "{not json" }))
                .route(
                    "/api/v1/assets/huge",
                    get(|| async { "x".repeat(MAX_MANIFEST_BODY + 1) }),
                )
                .route(
                    "/api/v1/assets/broken",
                    get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
                ),
        )
        .await;
        let tracker = client(&server.base);
        let garbage = tracker.manifest(&"garbage".parse().unwrap(), None).await;
        assert!(
            matches!(garbage, Err(TrackerError::Malformed { .. })),
            "{garbage:?}"
        );
        let huge = tracker.manifest(&"huge".parse().unwrap(), None).await;
        assert!(
            matches!(huge, Err(TrackerError::TooLarge { .. })),
            "{huge:?}"
        );
        let broken = tracker.manifest(&"broken".parse().unwrap(), None).await;
        assert!(
            matches!(broken, Err(TrackerError::Status { status, .. }) if status == 500),
            "{broken:?}"
        );
    }

    #[tokio::test]
    async fn a_body_without_length_is_cut_off_at_the_limit() {
        use futures::StreamExt as _;
        // A streamed body (no Content-Length) that never stops must not be buffered whole.
        let server = serve(Router::new().route(
            "/api/v1/torrents/{hash}",
            get(|| async {
                let chunks = futures::stream::repeat_with(|| {
                    Ok::<_, std::io::Error>(Bytes::from_static(&[b'x'; 64 * 1024]))
                })
                .take(MAX_METAINFO_BODY / (64 * 1024) + 2);
                Body::from_stream(chunks).into_response()
            }),
        ))
        .await;
        let result = client(&server.base).metainfo(InfoHash([1; 20])).await;
        assert!(
            matches!(result, Err(TrackerError::TooLarge { .. })),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn announce_success_and_refusal() {
        let server = serve(
            Router::new()
                .route(
                    "/announce",
                    get(|| async {
                        let mut out = Vec::new();
                        let head = swarmcdn_proto::tracker::AnnounceHead {
                            interval: 300,
                            min_interval: Some(60),
                            complete: 1,
                            incomplete: 0,
                            warning: None,
                            tracker_id: None,
                        };
                        write_compact_response(
                            &mut out,
                            &head,
                            ["127.0.0.1:6881".parse().unwrap()],
                            [],
                        );
                        out
                    }),
                )
                .route(
                    "/refuse/announce",
                    get(|| async {
                        let mut out = Vec::new();
                        AnnounceResponse::encode_failure("unregistered torrent", &mut out);
                        out
                    }),
                ),
        )
        .await;
        let tracker = client(&server.base);
        let request = AnnounceRequest::new(InfoHash([1; 20]), PeerId([2; 20]), 6881);
        let ok = tracker
            .announce(&tracker.announce_url(), &request)
            .await
            .unwrap();
        assert_eq!(ok.interval, 300);
        assert_eq!(ok.peers, vec!["127.0.0.1:6881".parse().unwrap()]);
        let refused = tracker
            .announce(&format!("{}/refuse/announce", server.base), &request)
            .await;
        assert!(
            matches!(&refused, Err(TrackerError::Refused { reason }) if reason == "unregistered torrent"),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn a_dead_tracker_is_unreachable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let result = client(&base).metainfo(InfoHash([1; 20])).await;
        assert!(
            result.as_ref().is_err_and(TrackerError::is_unreachable),
            "{result:?}"
        );
    }
}
