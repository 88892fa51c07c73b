//! The web seed over a real socket: whole files, ranges, conditional requests, HEAD, paths
//! that try to leave the store, the upload cap's 503, metrics.

use std::net::SocketAddr;

use reqwest::StatusCode;
use swarmcdn_seeder::config::Config;
use swarmcdn_seeder::publish::Published;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{RunningSeeder, TrackerDouble, Workspace};

/// A published widget, served.
async fn served(
    config: impl FnOnce(Config) -> Config,
) -> (TrackerDouble, Workspace, Published, RunningSeeder) {
    let tracker = TrackerDouble::start().await;
    let ws = Workspace::new();
    let published = ws.publish_widget(&tracker.url, "1.0.0").await;
    let seeder = RunningSeeder::start(config(ws.config())).await;
    (tracker, ws, published, seeder)
}

fn file_url(seeder: &RunningSeeder, published: &Published, path: &str) -> String {
    format!(
        "{}/webseed/{}/share-button-1.0.0/{path}",
        seeder.url, published.info_hash
    )
}

/// Sends `request` with `headers` added; the response must come (any status).
async fn send(mut request: reqwest::RequestBuilder, headers: &[(&str, &str)]) -> reqwest::Response {
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

fn big() -> Vec<u8> {
    (0..300_000u32).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn whole_files_with_their_headers() {
    let (tracker, _ws, published, seeder) = served(|c| c).await;
    let client = reqwest::Client::new();
    for (path, expected, content_type) in [
        (
            "button.js",
            b"export function share() { return 1; }\n".to_vec(),
            "text/javascript; charset=utf-8",
        ),
        (
            "icons/share.svg",
            b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>".to_vec(),
            "image/svg+xml",
        ),
        ("data/big.bin", big(), "application/octet-stream"),
    ] {
        let response = client
            .get(file_url(&seeder, &published, path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], content_type);
        assert_eq!(
            headers["content-length"],
            expected.len().to_string().as_str()
        );
        assert_eq!(
            headers["cache-control"],
            "public, max-age=31536000, immutable"
        );
        assert_eq!(headers["accept-ranges"], "bytes");
        let etag = headers["etag"].to_str().unwrap();
        assert!(
            etag.starts_with(&format!("\"{}-", published.info_hash)),
            "{etag}"
        );
        assert_eq!(response.bytes().await.unwrap().to_vec(), expected, "{path}");
    }
    seeder.stop().await;
    tracker.stop().await;
}

#[tokio::test]
async fn a_single_range_gets_206() {
    let (tracker, _ws, published, seeder) = served(|c| c).await;
    let client = reqwest::Client::new();
    let url = file_url(&seeder, &published, "data/big.bin");
    let data = big();
    for (range, start, end) in [
        ("bytes=0-99", 0, 100),
        ("bytes=100000-", 100_000, 300_000),
        ("bytes=-10", 299_990, 300_000),
        ("bytes=16384-278527", 16_384, 278_528),
    ] {
        let response = send(client.get(&url), &[("range", range)]).await;
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            response.headers()["content-range"],
            format!("bytes {start}-{}/300000", end - 1).as_str()
        );
        assert_eq!(
            response.headers()["content-type"],
            "application/octet-stream"
        );
        assert_eq!(response.bytes().await.unwrap(), data[start..end], "{range}");
    }
    seeder.stop().await;
    tracker.stop().await;
}

#[tokio::test]
async fn several_ranges_get_a_multipart_206() {
    let (tracker, _ws, published, seeder) = served(|c| c).await;
    let client = reqwest::Client::new();
    let data = big();
    let response = send(
        client.get(file_url(&seeder, &published, "data/big.bin")),
        &[("range", "bytes=0-9, 200000-299999,-5")],
    )
    .await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    let boundary = content_type
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap_or_else(|| panic!("{content_type}"))
        .to_owned();
    let length: usize = response.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = response.bytes().await.unwrap();
    assert_eq!(body.len(), length);
    let parts = parse_multipart(&body, &boundary);
    assert_eq!(parts.len(), 3);
    for ((headers, bytes), (start, end)) in
        parts
            .iter()
            .zip([(0, 10), (200_000, 300_000), (299_995, 300_000)])
    {
        assert!(
            headers.contains("Content-Type: application/octet-stream"),
            "{headers}"
        );
        assert!(
            headers.contains(&format!("Content-Range: bytes {start}-{}/300000", end - 1)),
            "{headers}"
        );
        assert_eq!(bytes, &data[start..end]);
    }
    seeder.stop().await;
    tracker.stop().await;
}

/// Splits a `multipart/byteranges` body into (part headers, part bytes).
fn parse_multipart(body: &[u8], boundary: &str) -> Vec<(String, Vec<u8>)> {
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut rest = body;
    // Skip to the first delimiter.
    let start = find(rest, delimiter.as_bytes()).expect("no delimiter");
    rest = &rest[start + delimiter.len()..];
    loop {
        if rest.starts_with(b"--") {
            break;
        }
        rest = rest.strip_prefix(b"\r\n").expect("delimiter without CRLF");
        let head_end = find(rest, b"\r\n\r\n").expect("part without headers");
        let headers = String::from_utf8(rest[..head_end].to_vec()).unwrap();
        rest = &rest[head_end + 4..];
        let next = find(rest, format!("\r\n{delimiter}").as_bytes()).expect("unterminated part");
        parts.push((headers, rest[..next].to_vec()));
        rest = &rest[next + 2 + delimiter.len()..];
    }
    assert_eq!(rest, b"--\r\n");
    parts
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test]
async fn unsatisfiable_ranges_get_416() {
    let (tracker, _ws, published, seeder) = served(|c| c).await;
    let client = reqwest::Client::new();
    let response = send(
        client.get(file_url(&seeder, &published, "button.js")),
        &[("range", "bytes=5000-6000")],
    )
    .await;
    assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(response.headers()["content-range"], "bytes */38");
    seeder.stop().await;
    tracker.stop().await;
}

#[tokio::test]
async fn head_and_conditional_requests() {
    let (tracker, _ws, published, seeder) = served(|c| c).await;
    let client = reqwest::Client::new();
    let url = file_url(&seeder, &published, "data/big.bin");
    let head = client.head(&url).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["content-length"], "300000");
    let etag = head.headers()["etag"].clone();
    assert!(head.bytes().await.unwrap().is_empty());

    let head_range = send(client.head(&url), &[("range", "bytes=10-19")]).await;
    assert_eq!(head_range.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(head_range.headers()["content-length"], "10");

    let etag_text = etag.to_str().unwrap();
    let not_modified = send(client.get(&url), &[("if-none-match", etag_text)]).await;
    assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(not_modified.headers()["etag"], etag);
    assert!(not_modified.bytes().await.unwrap().is_empty());

    let other = send(client.get(&url), &[("if-none-match", "\"other\"")]).await;
    assert_eq!(other.status(), StatusCode::OK);

    // If-Range with another tag: the whole file, not the range.
    let stale = [("range", "bytes=0-9"), ("if-range", "\"other\"")];
    let stale = send(client.get(&url), &stale).await;
    assert_eq!(stale.status(), StatusCode::OK);
    let fresh = [("range", "bytes=0-9"), ("if-range", etag_text)];
    let fresh = send(client.get(&url), &fresh).await;
    assert_eq!(fresh.status(), StatusCode::PARTIAL_CONTENT);
    seeder.stop().await;
    tracker.stop().await;
}

#[tokio::test]
async fn unknown_releases_and_files_get_404() {
    let (tracker, _ws, published, seeder) = served(|c| c).await;
    let client = reqwest::Client::new();
    for url in [
        format!(
            "{}/webseed/{}/share-button-1.0.0/button.js",
            seeder.url,
            "ab".repeat(20)
        ),
        format!(
            "{}/webseed/not-a-hash/share-button-1.0.0/button.js",
            seeder.url
        ),
        file_url(&seeder, &published, "nope.js"),
        file_url(&seeder, &published, "icons"),
        format!("{}/webseed/{}/button.js", seeder.url, published.info_hash),
        format!("{}/elsewhere", seeder.url),
    ] {
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{url}");
    }
    seeder.stop().await;
    tracker.stop().await;
}

/// Sends `request` as is and reads the whole answer: (status, head, body).
async fn raw(address: SocketAddr, request: &str) -> (u16, String, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let split = find(&answer, b"\r\n\r\n").expect("no header end");
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head, answer[split + 4..].to_vec())
}

#[tokio::test]
async fn paths_that_leave_the_release_get_404_and_read_nothing_outside() {
    let (tracker, ws, published, seeder) = served(|c| c).await;
    // Files outside the store that a traversal would reach.
    let secret = "TOP-SECRET-CONTENT";
    std::fs::write(ws.temp.path().join("secret.txt"), secret).unwrap();
    std::fs::write(ws.store.join("secret.txt"), secret).unwrap();
    let ih = published.info_hash;
    for path in [
        format!("/webseed/{ih}/../../etc/passwd"),
        format!("/webseed/{ih}/../secret.txt"),
        format!("/webseed/{ih}/../../secret.txt"),
        format!("/webseed/{ih}/share-button-1.0.0/../../../secret.txt"),
        format!("/webseed/{ih}/%2e%2e/%2e%2e/secret.txt"),
        format!("/webseed/{ih}/%2E%2E/secret.txt"),
        format!("/webseed/{ih}/share-button-1.0.0%2fbutton.js"),
        format!("/webseed/{ih}/..%2f..%2fsecret.txt"),
        format!("/webseed/{ih}/..%5c..%5csecret.txt"),
        format!("/webseed/{ih}/share-button-1.0.0/..%5c..%5c..%5csecret.txt"),
        format!("/webseed/{ih}/%2fetc%2fpasswd"),
        format!("/webseed/{ih}//etc/passwd"),
        format!("/webseed/{ih}/share-button-1.0.0/./button.js"),
        format!("/webseed/..%2f{ih}/share-button-1.0.0/button.js"),
        "/webseed/../../etc/passwd/x".to_owned(),
        format!("/webseed/{ih}/share-button-1.0.0/%ff.js"),
        format!("/webseed/{ih}/share-button-1.0.0/button.js%00"),
    ] {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        let (status, _, body) = raw(seeder.address, &request).await;
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 404, "{path}: {body}");
        assert!(
            !body.contains(secret) && !body.contains("root:"),
            "{path}: {body}"
        );
    }
    seeder.stop().await;
    tracker.stop().await;
}

#[tokio::test]
async fn pipelined_requests_without_user_agent_or_port_in_host() {
    let (tracker, _ws, published, seeder) = served(|c| c).await;
    let path = format!(
        "/webseed/{}/share-button-1.0.0/button.css",
        published.info_hash
    );
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nRange: bytes=0-5\r\n\r\n\
         GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    );
    let (status, head, body) = raw(seeder.address, &request).await;
    assert_eq!(status, 206, "{head}");
    let text = String::from_utf8_lossy(&body);
    // The first body (6 bytes), then the second response, whole.
    assert!(text.starts_with("button"), "{text}");
    assert!(text.contains("HTTP/1.1 200 OK"), "{text}");
    assert!(text.ends_with("button { color: red; }\n"), "{text}");
    seeder.stop().await;
    tracker.stop().await;
}

#[tokio::test]
async fn over_its_share_the_web_seed_answers_503_with_retry_after() {
    // 64 KiB/s, half for the web seed, 1 s of backlog (64 KiB while the peers are idle):
    // one 300 000-byte response keeps the web seed over its share for seconds.
    let (tracker, _ws, published, seeder) = served(|c| Config {
        upload_limit_bytes_per_sec: 64 * 1024,
        webseed_share_percent: 50,
        webseed_backlog_secs: 1,
        ..c
    })
    .await;
    let client = reqwest::Client::new();
    let url = file_url(&seeder, &published, "data/big.bin");
    let mut first = client.get(&url).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert!(first.chunk().await.unwrap().is_some());

    let second = client.get(&url).send().await.unwrap();
    assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
    let retry: u32 = second.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(second.headers()["cache-control"], "no-store");
    // HEAD costs no bandwidth and is still answered.
    assert_eq!(
        client.head(&url).send().await.unwrap().status(),
        StatusCode::OK
    );

    let metrics = seeder.metrics().await;
    assert!(
        metrics.contains("swarmcdn_seeder_webseed_throttled_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("swarmcdn_seeder_webseed_requests_total{status=\"503\"} 1"),
        "{metrics}"
    );

    // Once the first response is gone, requests are admitted again.
    drop(first);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let response = client
            .get(file_url(&seeder, &published, "button.js"))
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::OK {
            break;
        }
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            tokio::time::Instant::now() < deadline,
            "still refused after the first response ended"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    seeder.stop().await;
    tracker.stop().await;
}

#[tokio::test]
async fn metrics_count_bytes_per_release_and_health_answers() {
    let (tracker, _ws, published, seeder) = served(|c| c).await;
    let client = reqwest::Client::new();
    let body = client
        .get(file_url(&seeder, &published, "data/big.bin"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(body.len(), 300_000);
    let small = client
        .get(file_url(&seeder, &published, "button.css"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let metrics = seeder.metrics().await;
    let line = format!(
        "swarmcdn_seeder_webseed_bytes_total{{info_hash=\"{}\",name=\"share-button\",version=\"1.0.0\"}} {}",
        published.info_hash,
        300_000 + small.len()
    );
    assert!(metrics.contains(&line), "{metrics}");
    assert!(
        metrics.contains("swarmcdn_seeder_peer_bytes_total{"),
        "{metrics}"
    );
    assert!(
        metrics.contains("swarmcdn_seeder_webseed_requests_total{status=\"200\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("swarmcdn_seeder_releases 1"), "{metrics}");
    let health = client
        .get(format!("{}/healthz", seeder.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert!(health.text().await.unwrap().contains("1 release"));
    seeder.stop().await;
    tracker.stop().await;
}

#[tokio::test]
async fn bodies_beyond_the_concurrency_bound_wait_their_turn() {
    // One body at a time, paced at 64 KiB/s: the first response holds the only slot.
    let (tracker, _ws, published, seeder) = served(|c| Config {
        max_concurrent_requests: 1,
        upload_limit_bytes_per_sec: 64 * 1024,
        webseed_share_percent: 100,
        webseed_backlog_secs: 60,
        ..c
    })
    .await;
    let client = reqwest::Client::new();
    let mut first = client
        .get(file_url(&seeder, &published, "data/big.bin"))
        .send()
        .await
        .unwrap();
    assert!(first.chunk().await.unwrap().is_some());
    let second = client
        .get(file_url(&seeder, &published, "button.js"))
        .send();
    tokio::pin!(second);
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(300), &mut second)
            .await
            .is_err(),
        "the second body was sent while the first held the only slot"
    );
    drop(first);
    let second = tokio::time::timeout(std::time::Duration::from_secs(10), second)
        .await
        .expect("the slot was not released")
        .unwrap();
    assert_eq!(second.status(), StatusCode::OK);
    seeder.stop().await;
    tracker.stop().await;
}
