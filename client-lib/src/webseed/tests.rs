//! Web-seed fetches against a small HTTP server on `127.0.0.1:0` that serves files from
//! memory with real `Range` support, or misbehaves on purpose. The server records every
//! request (path, `Range`, `User-Agent`) and is shut down, and its port checked free, at
//! the end of each test.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode as HttpStatus, header};
use axum::response::Response as HttpResponse;
use swarmcdn_proto::RelativePath;
use swarmcdn_proto::metainfo::{Metainfo, TorrentBuilder};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::*;

const K16: usize = 16 * 1024;
/// The single-file torrent: three full pieces and a last one of 1000 bytes.
const SINGLE_LEN: usize = 3 * K16 + 1000;
/// Chunk size of the server's streamed bodies.
const STREAM_CHUNK: usize = 8 * 1024;
static ZEROS: [u8; STREAM_CHUNK] = [0; STREAM_CHUNK];

// ---- the test server ----

/// How the server answers.
#[derive(Debug, Clone)]
enum Behaviour {
    /// Whole files and single byte ranges, as a correct server does.
    Normal,
    /// `200` with the whole file, whatever `Range` says.
    IgnoreRange,
    /// This status, with this `Retry-After` if any, and no body.
    Status(u16, Option<String>),
    /// `200` with the file minus its last byte (`Content-Length` says so).
    Truncated,
    /// The right status and headers, but a streamed body (no `Content-Length`) one byte short.
    ShortStreamed,
    /// `206` with the requested bytes and this `Content-Range` (or none).
    ContentRange(Option<String>),
    /// The right status and `Content-Range`, then zeros forever.
    Endless,
}

/// What the server saw of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    path: String,
    range: Option<String>,
    user_agent: Option<String>,
}

struct Served {
    /// Files by URL path, as it appears in the request (percent-encoded).
    files: HashMap<String, Bytes>,
    behaviour: Behaviour,
    /// Delay before each answer.
    delay: Duration,
    seen: Mutex<Vec<Seen>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Bytes produced by endless bodies.
    streamed: AtomicU64,
}

struct TestServer {
    addr: SocketAddr,
    served: Arc<Served>,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    async fn start(files: &[(&str, &[u8])], behaviour: Behaviour) -> TestServer {
        Self::start_with_delay(files, behaviour, Duration::ZERO).await
    }

    async fn start_with_delay(
        files: &[(&str, &[u8])],
        behaviour: Behaviour,
        delay: Duration,
    ) -> TestServer {
        let served = Arc::new(Served {
            files: files
                .iter()
                .map(|(path, bytes)| (path.to_string(), Bytes::copy_from_slice(bytes)))
                .collect(),
            behaviour,
            delay,
            seen: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            streamed: AtomicU64::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(handle).with_state(served.clone());
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stop.await;
                })
                .await
        });
        TestServer {
            addr,
            served,
            shutdown,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.served.seen.lock().unwrap().clone()
    }

    /// Stops the server, asserts it stopped cleanly and its port is free again.
    async fn stop(self) {
        let _ = self.shutdown.send(());
        let result = tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("server stops within 10 s");
        result
            .expect("server task did not panic")
            .expect("server ran without error");
        assert!(
            std::net::TcpListener::bind(self.addr).is_ok(),
            "port {} still bound",
            self.addr
        );
    }
}

async fn handle(State(served): State<Arc<Served>>, request: Request) -> HttpResponse {
    // `Request` is not `Sync`: read what we need before the first `await`.
    let seen = {
        let text = |name| {
            request
                .headers()
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        Seen {
            path: request.uri().path().to_owned(),
            range: text(header::RANGE),
            user_agent: text(header::USER_AGENT),
        }
    };
    drop(request);
    served.seen.lock().unwrap().push(seen.clone());
    let now = served.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    served.max_in_flight.fetch_max(now, Ordering::SeqCst);
    if !served.delay.is_zero() {
        tokio::time::sleep(served.delay).await;
    }
    let response = respond(&served, &seen);
    served.in_flight.fetch_sub(1, Ordering::SeqCst);
    response
}

fn reply(status: u16) -> axum::http::response::Builder {
    HttpResponse::builder().status(HttpStatus::from_u16(status).unwrap())
}

/// Parses `bytes=a-b` or `bytes=a-` against a file of `len` bytes.
fn requested_range(value: &str, len: usize) -> Option<Range<usize>> {
    let (a, b) = value.strip_prefix("bytes=")?.split_once('-')?;
    let a: usize = a.parse().ok()?;
    let b: usize = if b.is_empty() {
        len - 1
    } else {
        b.parse().ok()?
    };
    (a <= b && a < len).then(|| a..(b + 1).min(len))
}

fn respond(served: &Arc<Served>, seen: &Seen) -> HttpResponse {
    if let Behaviour::Status(code, retry_after) = &served.behaviour {
        let mut builder = reply(*code);
        if let Some(value) = retry_after {
            builder = builder.header(header::RETRY_AFTER, value);
        }
        return builder.body(Body::empty()).unwrap();
    }
    let Some(file) = served.files.get(&seen.path) else {
        return reply(404).body(Body::empty()).unwrap();
    };
    let len = file.len();
    let wanted = match (&seen.range, &served.behaviour) {
        (_, Behaviour::IgnoreRange) | (None, _) => None,
        (Some(value), _) => match requested_range(value, len) {
            Some(range) => Some(range),
            None => {
                return reply(416)
                    .header(header::CONTENT_RANGE, format!("bytes */{len}"))
                    .body(Body::empty())
                    .unwrap();
            }
        },
    };
    let (status, body_range) = match &wanted {
        Some(range) => (206, range.clone()),
        None => (200, 0..len),
    };
    let content_range = wanted
        .as_ref()
        .map(|r| format!("bytes {}-{}/{len}", r.start, r.end - 1));
    let with_range = |mut builder: axum::http::response::Builder| {
        if let Some(value) = &content_range {
            builder = builder.header(header::CONTENT_RANGE, value);
        }
        builder
    };
    match &served.behaviour {
        Behaviour::Normal | Behaviour::IgnoreRange => with_range(reply(status))
            .body(Body::from(file.slice(body_range)))
            .unwrap(),
        Behaviour::Truncated => reply(200).body(Body::from(file.slice(..len - 1))).unwrap(),
        Behaviour::ShortStreamed => {
            let short = file.slice(body_range.start..body_range.end - 1);
            let body = futures::stream::iter([Ok::<_, Infallible>(short)]);
            with_range(reply(status))
                .body(Body::from_stream(body))
                .unwrap()
        }
        Behaviour::ContentRange(value) => {
            let mut builder = reply(206);
            if let Some(value) = value {
                builder = builder.header(header::CONTENT_RANGE, value);
            }
            builder.body(Body::from(file.slice(body_range))).unwrap()
        }
        Behaviour::Endless => {
            let served = served.clone();
            let body = futures::stream::repeat_with(move || {
                served
                    .streamed
                    .fetch_add(STREAM_CHUNK as u64, Ordering::SeqCst);
                Ok::<_, Infallible>(Bytes::from_static(&ZEROS))
            });
            with_range(reply(status))
                .body(Body::from_stream(body))
                .unwrap()
        }
        Behaviour::Status(..) => unreachable!("answered above"),
    }
}

// ---- torrents and helpers ----

/// Bytes that differ at every offset (so a misplaced slice shows), varied by `salt`.
fn content(salt: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 24) as u8 ^ salt)
        .collect()
}

/// A single-file torrent `data.bin` with 16 KiB pieces.
fn single_torrent(data: &[u8]) -> Metainfo {
    TorrentBuilder::new("unused")
        .add_bytes(RelativePath::parse("data.bin").unwrap(), data.to_vec())
        .piece_length(K16 as u32)
        .build()
        .unwrap()
}

fn limits() -> WebSeedLimits {
    WebSeedLimits {
        request_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
        ..WebSeedLimits::DEFAULT
    }
}

fn web_seed(base: &str, torrent: &Metainfo, limits: WebSeedLimits) -> WebSeed {
    let client = http_client(&limits).unwrap();
    WebSeed::new(base, Arc::new(torrent.info().clone()), client, limits).unwrap()
}

fn ranges(seen: &[Seen]) -> Vec<Option<&str>> {
    seen.iter().map(|s| s.range.as_deref()).collect()
}

// ---- correct servers ----

#[tokio::test]
async fn single_file_pieces_take_one_request_per_fetch() {
    let data = content(1, SINGLE_LEN);
    let torrent = single_torrent(&data);
    assert_eq!(torrent.info().piece_count(), 4);
    let server = TestServer::start(&[("/seed/data.bin", &data)], Behaviour::Normal).await;
    let seed = web_seed(&server.url("/seed/"), &torrent, limits());
    assert_eq!(seed.url_for_file(0).unwrap(), server.url("/seed/data.bin"));

    let one = seed.fetch_pieces(1..2).await.unwrap();
    assert_eq!(one, data[K16..2 * K16]);
    let several = seed.fetch_pieces(0..3).await.unwrap();
    assert_eq!(several, data[..3 * K16]);
    let last = seed.fetch_pieces(3..4).await.unwrap();
    assert_eq!(last.len(), 1000);
    assert_eq!(last, data[3 * K16..]);
    let all = seed.fetch_pieces(0..4).await.unwrap();
    assert_eq!(all, data[..]);
    let middle = seed.fetch_range(100, 5).await.unwrap();
    assert_eq!(middle, data[100..105]);

    let seen = server.seen();
    assert_eq!(
        ranges(&seen),
        [
            Some("bytes=16384-32767"),
            Some("bytes=0-49151"),
            Some("bytes=49152-50151"),
            // The whole file: a plain, cacheable GET.
            None,
            Some("bytes=100-104"),
        ]
    );
    for s in &seen {
        assert_eq!(s.path, "/seed/data.bin");
        assert_eq!(s.user_agent.as_deref(), Some(USER_AGENT));
    }
    drop(seed);
    server.stop().await;
}

#[tokio::test]
async fn a_url_without_slash_names_the_single_file_itself() {
    let data = content(2, SINGLE_LEN);
    let torrent = single_torrent(&data);
    let server = TestServer::start(&[("/dl/renamed.bin", &data)], Behaviour::Normal).await;
    let seed = web_seed(&server.url("/dl/renamed.bin"), &torrent, limits());
    assert_eq!(seed.fetch_pieces(2..4).await.unwrap(), data[2 * K16..]);
    assert_eq!(server.seen()[0].path, "/dl/renamed.bin");
    drop(seed);
    server.stop().await;
}

#[tokio::test]
async fn multi_file_run_fetches_a_small_file_whole_and_cuts_the_others() {
    // Torrent order (sorted paths): a.bin 0..20000, `b file #1.txt` 20000..23000,
    // c/d é.bin 23000..63000. Piece 1 (16384..32768) touches all three.
    let a = content(3, 20_000);
    let b = content(4, 3_000);
    let c = content(5, 40_000);
    let torrent = TorrentBuilder::new("site")
        .add_bytes(RelativePath::parse("c/d é.bin").unwrap(), c.clone())
        .add_bytes(RelativePath::parse("a.bin").unwrap(), a.clone())
        .add_bytes(RelativePath::parse("b file #1.txt").unwrap(), b.clone())
        .piece_length(K16 as u32)
        .build()
        .unwrap();
    let joined = [a.as_slice(), &b, &c].concat();
    // Paths written out by hand, percent-encoded as the server receives them.
    let server = TestServer::start(
        &[
            ("/seed/site/a.bin", &a),
            ("/seed/site/b%20file%20%231.txt", &b),
            ("/seed/site/c/d%20%C3%A9.bin", &c),
        ],
        Behaviour::Normal,
    )
    .await;
    let seed = web_seed(&server.url("/seed"), &torrent, limits());

    let piece = seed.fetch_pieces(1..2).await.unwrap();
    assert_eq!(piece, joined[K16..2 * K16]);
    let mut seen = server.seen();
    seen.sort_by(|x, y| x.path.cmp(&y.path));
    let shown: Vec<(&str, Option<&str>)> = seen
        .iter()
        .map(|s| (s.path.as_str(), s.range.as_deref()))
        .collect();
    assert_eq!(
        shown,
        [
            ("/seed/site/a.bin", Some("bytes=16384-19999")),
            // Covered whole: no Range header at all.
            ("/seed/site/b%20file%20%231.txt", None),
            ("/seed/site/c/d%20%C3%A9.bin", Some("bytes=0-9767")),
        ]
    );

    // The whole torrent: three plain GETs, bytes in torrent order.
    let all = seed
        .fetch_pieces(0..torrent.info().piece_count())
        .await
        .unwrap();
    assert_eq!(all, joined);
    assert!(server.seen()[3..].iter().all(|s| s.range.is_none()));
    assert_eq!(server.seen().len(), 6);
    drop(seed);
    server.stop().await;
}

#[tokio::test]
async fn requests_for_different_files_run_concurrently_within_the_limit() {
    let files: Vec<(String, Vec<u8>)> = (0..6u8)
        .map(|i| (format!("f{i}.bin"), content(i, 1_000)))
        .collect();
    let mut builder = TorrentBuilder::new("many").piece_length(K16 as u32);
    for (name, bytes) in &files {
        builder = builder.add_bytes(RelativePath::parse(name).unwrap(), bytes.clone());
    }
    let torrent = builder.build().unwrap();
    let paths: Vec<String> = files.iter().map(|(n, _)| format!("/many/{n}")).collect();
    let served: Vec<(&str, &[u8])> = paths
        .iter()
        .zip(&files)
        .map(|(p, (_, bytes))| (p.as_str(), bytes.as_slice()))
        .collect();
    let server =
        TestServer::start_with_delay(&served, Behaviour::Normal, Duration::from_millis(300)).await;
    let seed = web_seed(
        &server.url("/"),
        &torrent,
        WebSeedLimits {
            max_concurrent_requests: 2,
            ..limits()
        },
    );
    let all = seed.fetch_pieces(0..1).await.unwrap();
    let expected: Vec<u8> = files.iter().flat_map(|(_, b)| b.clone()).collect();
    assert_eq!(all, expected);
    assert_eq!(server.seen().len(), 6);
    assert_eq!(server.served.max_in_flight.load(Ordering::SeqCst), 2);
    drop(seed);
    server.stop().await;
}

// ---- backoff ----

#[tokio::test]
async fn overload_answers_become_backoff_with_the_servers_delay() {
    let data = content(6, SINGLE_LEN);
    let torrent = single_torrent(&data);
    let in_two_minutes = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
    let cases: [(u16, Option<&str>, Range<u64>); 7] = [
        (503, Some("7"), 7..8),
        (503, Some(in_two_minutes.as_str()), 115..121),
        (503, None, 30..31),
        (503, Some("soon"), 30..31),
        (429, Some("12"), 12..13),
        // Capped at an hour, and never below a second.
        (429, Some("9999999"), 3600..3601),
        (503, Some("0"), 1..2),
    ];
    for (status, retry_after, expected_secs) in cases {
        let server = TestServer::start(
            &[("/data.bin", &data)],
            Behaviour::Status(status, retry_after.map(str::to_owned)),
        )
        .await;
        let seed = web_seed(&server.url("/"), &torrent, limits());
        let err = seed.fetch_pieces(0..1).await.unwrap_err();
        match err {
            WebSeedError::Backoff { retry_after: wait } => assert!(
                expected_secs.contains(&wait.as_secs()),
                "{status} {retry_after:?}: {wait:?}"
            ),
            other => panic!("{status} {retry_after:?}: {other:?}"),
        }
        drop(seed);
        server.stop().await;
    }
}

// ---- servers that get it wrong ----

#[tokio::test]
async fn a_server_ignoring_range_still_works_by_slicing_the_whole_file() {
    let data = content(7, SINGLE_LEN);
    let torrent = single_torrent(&data);
    let server = TestServer::start(&[("/data.bin", &data)], Behaviour::IgnoreRange).await;
    let seed = web_seed(&server.url("/"), &torrent, limits());
    assert_eq!(seed.fetch_pieces(1..3).await.unwrap(), data[K16..3 * K16]);
    assert_eq!(seed.fetch_pieces(3..4).await.unwrap(), data[3 * K16..]);
    assert_eq!(seed.fetch_pieces(0..1).await.unwrap(), data[..K16]);
    // We did ask for ranges; the server answered 200 with everything.
    assert!(server.seen().iter().all(|s| s.range.is_some()));
    drop(seed);
    server.stop().await;
}

#[tokio::test]
async fn a_body_of_the_wrong_size_is_wrong_length() {
    let data = content(8, SINGLE_LEN);
    let torrent = single_torrent(&data);
    let len = SINGLE_LEN as u64;

    // 200 with a Content-Length one short, to a range and to a whole-file request.
    let server = TestServer::start(&[("/data.bin", &data)], Behaviour::Truncated).await;
    let seed = web_seed(&server.url("/"), &torrent, limits());
    for pieces in [1..2, 0..4] {
        match seed.fetch_pieces(pieces.clone()).await.unwrap_err() {
            WebSeedError::WrongLength { expected, got, .. } => {
                assert_eq!((expected, got), (len, len - 1), "{pieces:?}");
            }
            other => panic!("{pieces:?}: {other:?}"),
        }
    }
    drop(seed);
    server.stop().await;

    // Streamed without Content-Length, one byte short: found at the end of the body.
    let server = TestServer::start(&[("/data.bin", &data)], Behaviour::ShortStreamed).await;
    let seed = web_seed(&server.url("/"), &torrent, limits());
    for (pieces, expected) in [(1..2, K16 as u64), (0..4, len)] {
        match seed.fetch_pieces(pieces.clone()).await.unwrap_err() {
            WebSeedError::WrongLength {
                expected: e, got, ..
            } => assert_eq!((e, got), (expected, expected - 1), "{pieces:?}"),
            other => panic!("{pieces:?}: {other:?}"),
        }
    }
    drop(seed);
    server.stop().await;
}

#[tokio::test]
async fn a_partial_answer_must_carry_the_range_asked_for() {
    let data = content(9, SINGLE_LEN);
    let torrent = single_torrent(&data);
    let total = SINGLE_LEN;
    let cases: [(Option<String>, bool); 6] = [
        (Some(format!("bytes 16384-32767/{total}")), true),
        // The server may not know the total.
        (Some("bytes 16384-32767/*".into()), true),
        (Some(format!("bytes 16385-32768/{total}")), false),
        // Same range of a file of another size: a different file.
        (Some("bytes 16384-32767/99999".into()), false),
        (Some("garbage".into()), false),
        (None, false),
    ];
    for (header, ok) in cases {
        let server = TestServer::start(
            &[("/data.bin", &data)],
            Behaviour::ContentRange(header.clone()),
        )
        .await;
        let seed = web_seed(&server.url("/"), &torrent, limits());
        let result = seed.fetch_pieces(1..2).await;
        if ok {
            assert_eq!(result.unwrap(), data[K16..2 * K16], "{header:?}");
        } else {
            match result.unwrap_err() {
                WebSeedError::BadContentRange { expected, got, .. } => {
                    assert_eq!(expected, format!("bytes 16384-32767/{total}"));
                    assert_eq!(got, header);
                }
                other => panic!("{header:?}: {other:?}"),
            }
        }
        drop(seed);
        server.stop().await;
    }
}

#[tokio::test]
async fn an_endless_body_is_cut_off_not_buffered() {
    let data = content(10, SINGLE_LEN);
    let torrent = single_torrent(&data);
    let server = TestServer::start(&[("/data.bin", &data)], Behaviour::Endless).await;
    let seed = web_seed(&server.url("/"), &torrent, limits());
    // A 206 to a range request, and a 200 to a whole-file request.
    for (pieces, expected) in [(1..2, K16 as u64), (0..4, SINGLE_LEN as u64)] {
        let result = tokio::time::timeout(Duration::from_secs(10), seed.fetch_pieces(pieces))
            .await
            .expect("an endless body does not hang the fetch");
        match result.unwrap_err() {
            WebSeedError::WrongLength {
                expected: e, got, ..
            } => {
                assert_eq!(e, expected);
                // Stopped at the first chunk past the end: at most one read buffer over.
                assert!(got > expected && got <= expected + 1024 * 1024, "got {got}");
            }
            other => panic!("{other:?}"),
        }
    }
    drop(seed);
    server.stop().await;
}

#[tokio::test]
async fn missing_files_and_unsatisfiable_ranges_are_status_errors() {
    let data = content(11, SINGLE_LEN);
    let torrent = single_torrent(&data);
    // The server holds a shorter, older file under the right name, and not the other one.
    let server = TestServer::start(&[("/a/data.bin", &data[..K16])], Behaviour::Normal).await;

    let seed = web_seed(&server.url("/a/"), &torrent, limits());
    match seed.fetch_pieces(2..3).await.unwrap_err() {
        WebSeedError::Status { url, status } => {
            assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
            assert_eq!(url, server.url("/a/data.bin"));
        }
        other => panic!("{other:?}"),
    }
    // Its whole file is the wrong length.
    assert!(matches!(
        seed.fetch_pieces(0..4).await.unwrap_err(),
        WebSeedError::WrongLength { .. }
    ));

    let seed = web_seed(&server.url("/b/"), &torrent, limits());
    match seed.fetch_pieces(0..1).await.unwrap_err() {
        WebSeedError::Status { url, status } => {
            assert_eq!(status, StatusCode::NOT_FOUND);
            assert_eq!(url, server.url("/b/data.bin"));
        }
        other => panic!("{other:?}"),
    }
    drop(seed);
    server.stop().await;
}

// ---- network failures ----

#[tokio::test]
async fn a_dead_port_is_a_transport_error() {
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let torrent = single_torrent(&content(12, SINGLE_LEN));
    let seed = web_seed(&format!("http://{dead}/"), &torrent, limits());
    match seed.fetch_pieces(0..1).await.unwrap_err() {
        WebSeedError::Transport { url, source } => {
            assert_eq!(url, format!("http://{dead}/data.bin"));
            assert!(source.is_connect(), "{source:?}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_slow_server_hits_the_request_timeout() {
    let data = content(13, SINGLE_LEN);
    let torrent = single_torrent(&data);
    let server = TestServer::start_with_delay(
        &[("/data.bin", &data)],
        Behaviour::Normal,
        Duration::from_millis(1500),
    )
    .await;
    let seed = web_seed(
        &server.url("/"),
        &torrent,
        WebSeedLimits {
            request_timeout: Duration::from_millis(200),
            ..limits()
        },
    );
    match seed.fetch_pieces(0..1).await.unwrap_err() {
        WebSeedError::Transport { source, .. } => assert!(source.is_timeout(), "{source:?}"),
        other => panic!("{other:?}"),
    }
    drop(seed);
    server.stop().await;
}

// ---- arguments ----

#[tokio::test]
async fn bad_ranges_are_refused_without_a_request() {
    let torrent = single_torrent(&content(14, SINGLE_LEN));
    // Nothing listens here; any request would fail with a transport error.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let seed = web_seed(
        &format!("http://{dead}/"),
        &torrent,
        WebSeedLimits {
            max_fetch_length: 2 * K16 as u64,
            ..limits()
        },
    );
    assert!(seed.fetch_pieces(2..2).await.unwrap().is_empty());
    assert!(seed.fetch_range(10, 0).await.unwrap().is_empty());
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = 3..1;
    for pieces in [3..5, 4..5, backwards] {
        assert!(
            matches!(
                seed.fetch_pieces(pieces.clone()).await,
                Err(WebSeedError::NoSuchPieces { piece_count: 4, .. })
            ),
            "{pieces:?}"
        );
    }
    let total = SINGLE_LEN as u64;
    assert!(matches!(
        seed.fetch_range(total - 1, 2).await,
        Err(WebSeedError::OutOfBounds { .. })
    ));
    assert!(matches!(
        seed.fetch_range(u64::MAX, 1).await,
        Err(WebSeedError::OutOfBounds { .. })
    ));
    assert!(matches!(
        seed.fetch_pieces(0..3).await,
        Err(WebSeedError::TooLarge { length, limit }) if length == 3 * K16 as u64 && limit == 2 * K16 as u64
    ));
}

#[test]
fn construction_rejects_non_http_urls_and_names_files() {
    let torrent = single_torrent(&content(15, 100));
    let info = Arc::new(torrent.info().clone());
    let client = reqwest::Client::new();
    for base in ["ftp://o.example/", "udp://o.example:80/", "o.example/seed/"] {
        assert!(matches!(
            WebSeed::new(base, info.clone(), client.clone(), WebSeedLimits::DEFAULT),
            Err(WebSeedError::InvalidUrl { .. })
        ));
    }
    let seed = WebSeed::new(
        "https://o.example/seed/",
        info,
        client,
        WebSeedLimits::DEFAULT,
    )
    .unwrap();
    assert_eq!(seed.base_url(), "https://o.example/seed/");
    assert_eq!(
        seed.url_for_file(0).as_deref(),
        Some("https://o.example/seed/data.bin")
    );
    assert_eq!(seed.url_for_file(1), None);
}

/// Regression: a fetch touching several files must be spawnable (`Send` and `'static` once
/// the seed is moved in); a closure inside the joined stream once made it not provably so.
#[test]
fn multi_file_fetch_is_spawnable() {
    fn spawnable<F: std::future::Future + Send + 'static>(_: F) {}
    fn check(seed: WebSeed) {
        spawnable(async move { seed.fetch_range(0, 10).await });
    }
    let _ = check;
}
