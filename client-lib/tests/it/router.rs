//! The HTTP front sites mount: files of latest and pinned releases with their headers,
//! conditional requests, the SRI index, refusals (traversal, unknown names, torrents) and the
//! bounded first-request fetch.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use reqwest::StatusCode;
use swarmcdn_client::Client;
use swarmcdn_client::router::{
    CACHE_CONTROL_LATEST, CACHE_CONTROL_PINNED, RouterConfig, router_with,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::common::*;

/// `client.router()` mounted at `/widgets` on 127.0.0.1:0 (also used by `updates`).
pub(crate) struct Site {
    addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Site {
    pub(crate) async fn start(routes: Router) -> Site {
        let app = Router::new().nest("/widgets", routes);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let shutdown = stop.clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await
                .unwrap();
        });
        Site { addr, stop, task }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}/widgets/{path}", self.addr)
    }

    pub(crate) async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .unwrap()
            .unwrap();
        assert_port_free(self.addr);
    }

    /// Sends `path` as is (no client-side normalisation) and returns the status code.
    async fn raw_status(&self, path: &str) -> u16 {
        let mut stream = TcpStream::connect(self.addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
            .await
            .unwrap()
            .unwrap();
        let text = String::from_utf8_lossy(&response);
        text.split(' ').nth(1).unwrap().parse().unwrap()
    }
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

fn assert_browser_headers(response: &reqwest::Response) {
    assert_eq!(header(response, "x-content-type-options"), "nosniff");
    assert_eq!(
        header(response, "cross-origin-resource-policy"),
        "cross-origin"
    );
    assert_eq!(header(response, "access-control-allow-origin"), "*");
}

async fn client_for(tracker: &TestTracker) -> Client {
    test_client().tracker(tracker.url()).build().await.unwrap()
}

#[tokio::test]
async fn files_are_served_with_their_headers_latest_and_pinned() {
    let tracker = TestTracker::start(300).await;
    let web = TestWebSeed::start().await;
    let build = |version: &str, seed: u64| {
        TestRelease::build(
            "routed",
            version,
            vec![
                ("widget.js", random_bytes(seed, 20_000)),
                ("css/style.css", random_bytes(seed + 10, 3_000)),
                ("bundle.torrent", random_bytes(seed + 20, 500)),
            ],
            16 * 1024,
            Some(tracker.announce_url()),
            vec![web.url()],
            &publisher_key(),
        )
    };
    let old = build("1.0.0", 1);
    let new = build("1.1.0", 2);
    for release in [&old, &new] {
        tracker.publish(release).await;
        web.serve(release);
    }
    let client = client_for(&tracker).await;
    let site = Site::start(client.router()).await;
    let http = reqwest::Client::new();

    // Latest: fetched on this first request, then served with short, revalidated caching.
    let response = http.get(site.url("routed/widget.js")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_browser_headers(&response);
    let entry = new.manifest.unverified_manifest().files()[2].clone();
    assert_eq!(entry.path().to_string(), "widget.js");
    assert_eq!(header(&response, "content-type"), entry.content_type());
    let etag = format!("\"{}\"", entry.sha256_hex());
    assert_eq!(header(&response, "etag"), etag);
    assert_eq!(header(&response, "cache-control"), CACHE_CONTROL_LATEST);
    assert_eq!(header(&response, "x-swarmcdn-integrity"), entry.sri());
    assert_eq!(response.bytes().await.unwrap(), random_bytes(2, 20_000));

    // Nested path.
    let response = http
        .get(site.url("routed/css/style.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-type"), "text/css; charset=utf-8");
    assert_eq!(response.bytes().await.unwrap(), random_bytes(12, 3_000));

    // If-None-Match: 304 with the validators, no body.
    let response = http
        .get(site.url("routed/widget.js"))
        .header("if-none-match", format!("\"nope\", {etag}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(&response, "etag"), etag);
    assert_eq!(header(&response, "cache-control"), CACHE_CONTROL_LATEST);
    assert!(response.bytes().await.unwrap().is_empty());
    let response = http
        .get(site.url("routed/widget.js"))
        .header("if-none-match", "\"other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // Pinned: the old version, immutable.
    let response = http
        .get(site.url("routed@1.0.0/widget.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_browser_headers(&response);
    assert_eq!(header(&response, "cache-control"), CACHE_CONTROL_PINNED);
    let old_entry = old.manifest.unverified_manifest().files()[2].clone();
    assert_eq!(
        header(&response, "etag"),
        format!("\"{}\"", old_entry.sha256_hex())
    );
    assert_eq!(response.bytes().await.unwrap(), random_bytes(1, 20_000));

    // HEAD: headers, no body.
    let response = http
        .head(site.url("routed@1.1.0/widget.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "etag"), etag);
    assert_eq!(header(&response, "cache-control"), CACHE_CONTROL_PINNED);
    assert!(response.bytes().await.unwrap().is_empty());

    // The SRI index equals the manifest, and leaves the torrent-named file out.
    let response = http.get(site.url("routed")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_browser_headers(&response);
    assert_eq!(header(&response, "content-type"), "application/json");
    let index: serde_json::Value = response.json().await.unwrap();
    assert_eq!(index["version"], "1.1.0");
    let files = index["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    for listed in files {
        let path = listed["path"].as_str().unwrap();
        let entry = new
            .manifest
            .unverified_manifest()
            .files()
            .iter()
            .find(|f| f.path().to_string() == path)
            .unwrap();
        assert_eq!(listed["integrity"], entry.sri());
        assert_eq!(listed["sha256"], entry.sha256_hex());
    }
    let pinned: serde_json::Value = http
        .get(site.url("routed@1.0.0"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pinned["version"], "1.0.0");

    // A torrent-named file is never served, let alone as a torrent.
    for path in ["routed/bundle.torrent", "routed@1.0.0/bundle.torrent"] {
        let response = http.get(site.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        let content_type = header(&response, "content-type");
        assert!(!content_type.contains("bittorrent"), "{content_type}");
    }

    // Unknown release, version, file; malformed version.
    for path in [
        "nothing-here/widget.js",
        "routed@9.9.9/widget.js",
        "routed/missing.js",
        "routed@notaversion/widget.js",
        "Not%20A%20Name/widget.js",
        "nothing-here",
    ] {
        let response = http.get(site.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        assert_browser_headers(&response);
    }

    // Traversal, plain (sent raw, unnormalised) and encoded.
    for path in [
        "/widgets/routed/../routed/widget.js",
        "/widgets/routed/css/../widget.js",
        "/widgets/routed/%2e%2e/etc/passwd",
        "/widgets/routed/css%2F..%2Fwidget.js",
        "/widgets/routed/./widget.js",
        "/widgets/routed//widget.js",
        "/widgets/routed/%2Fetc%2Fpasswd",
    ] {
        let status = site.raw_status(path).await;
        assert!(status == 404 || status == 400, "{path}: {status}");
    }

    site.stop().await;
    shutdown_clean(client).await;
    web.stop().await;
}

#[tokio::test]
async fn a_release_that_cannot_be_fetched_in_time_gets_503_with_retry_after() {
    let tracker = TestTracker::start(300).await;
    // Known to the tracker, but no peer has it and its web seed is dead.
    let release = TestRelease::build(
        "stuck",
        "1.0.0",
        vec![("widget.js", random_bytes(5, 40_000))],
        16 * 1024,
        Some(tracker.announce_url()),
        vec![dead_url()],
        &publisher_key(),
    );
    tracker.publish(&release).await;
    let client = client_for(&tracker).await;
    let config = RouterConfig {
        fetch_timeout: Duration::from_millis(500),
        retry_after: Duration::from_secs(7),
    };
    let site = Site::start(router_with(client.clone(), config.clone())).await;
    let http = reqwest::Client::new();
    for path in ["stuck/widget.js", "stuck@1.0.0/widget.js", "stuck"] {
        let response = http.get(site.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(header(&response, "retry-after"), "7");
        assert_eq!(header(&response, "cache-control"), "no-store");
        assert_browser_headers(&response);
    }
    site.stop().await;
    shutdown_clean(client).await;

    // A tracker that is down, nothing cached: 503 too.
    let down = test_client().tracker(dead_url()).build().await.unwrap();
    let site = Site::start(router_with(down.clone(), config)).await;
    let response = http.get(site.url("stuck/widget.js")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&response, "retry-after"), "7");
    site.stop().await;
    shutdown_clean(down).await;
}
