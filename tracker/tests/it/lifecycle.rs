//! A real server on 127.0.0.1:0: restart on the same database, clean shutdown, and the
//! bounds that live below HTTP (connections, idle time) or around handlers (request time).

use std::time::{Duration, Instant};

use swarmcdn_proto::tracker::{AnnounceEvent, AnnounceResponse};
use swarmcdn_tracker::config::Config;
use swarmcdn_tracker::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

/// Announces peer `n` (port 6880 + n; a seeder when `n` is odd) over a real connection.
async fn announce_over_http(
    client: &reqwest::Client,
    server: &Running,
    release: &Release,
    n: u8,
) -> AnnounceResponse {
    let left = u64::from(n.is_multiple_of(2));
    let port = 6880 + u16::from(n);
    let query =
        announce_request(release.info_hash, n, port, left, AnnounceEvent::Started).to_query();
    let body = client
        .get(server.url(&format!("/announce?{query}")))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    AnnounceResponse::from_bytes(&body).unwrap()
}

#[tokio::test]
async fn registrations_survive_a_restart_and_shutdown_is_clean() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("registry.sqlite3");
    let key = swarmcdn_proto::manifest::signing_key_from_seed(KEY_SEED);
    let token = Registry::open(&database)
        .unwrap()
        .add_publisher(PUBLISHER, key.verifying_key().as_bytes())
        .unwrap();
    let config = Config {
        database: database.clone(),
        ..Config::default()
    };
    let release = Release::small("share-button", "1.0.0", 1, &key);
    let client = reqwest::Client::new();

    let first = Running::run(config.clone()).await;
    let reply = client
        .post(first.url("/api/v1/releases"))
        .bearer_auth(token.as_str())
        .body(release.body())
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 201, "{}", reply.text().await.unwrap());
    // The peer's address is the real connection's.
    let answer = announce_over_http(&client, &first, &release, 1).await;
    assert!(
        matches!(answer, AnnounceResponse::Success(ref s) if s.complete == 1),
        "{answer:?}"
    );
    let second_peer = announce_over_http(&client, &first, &release, 2).await;
    match second_peer {
        AnnounceResponse::Success(s) => {
            assert_eq!(s.peers, vec!["127.0.0.1:6881".parse().unwrap()])
        }
        other => panic!("{other:?}"),
    }
    // The client keeps its connection alive; shutdown must close it and still finish fast.
    let port = first.addr;
    let took = first.stop().await;
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");

    // A new server on the same database and port knows the release.
    let listener = tokio::net::TcpListener::bind(port).await.unwrap();
    let second = Running::run_on(config, listener);
    let client = reqwest::Client::new();
    let answer = announce_over_http(&client, &second, &release, 3).await;
    match answer {
        // Swarms rebuild from announces: the old peers are gone, the registration is not.
        AnnounceResponse::Success(s) => {
            assert_eq!((s.complete, s.incomplete, s.peers.len()), (1, 0, 0))
        }
        other => panic!("{other:?}"),
    }
    let latest = client
        .get(second.url("/api/v1/assets/share-button"))
        .send()
        .await
        .unwrap();
    assert_eq!(latest.status(), 200);
    let torrent = client
        .get(second.url(&format!("/api/v1/torrents/{}", release.info_hash)))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(torrent.as_ref(), release.metainfo.as_slice());
    second.stop().await;
}

#[tokio::test]
async fn run_refuses_an_invalid_config_and_an_unusable_database() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = test_config();
    config.numwant_max = 0;
    let error = swarmcdn_tracker::run(config, listener, std::future::pending())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("numwant_default"), "{error}");

    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = Config {
        database: dir.path().join("no/such/folder/db.sqlite3"),
        ..Config::default()
    };
    let error = swarmcdn_tracker::run(config, listener, std::future::pending())
        .await
        .unwrap_err();
    assert!(
        matches!(error, swarmcdn_tracker::ServeError::Registry(_)),
        "{error}"
    );
}

/// Writes `request` on a new connection.
async fn send_raw(server: &Running, request: &str) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// Reads until `needle` appears or the connection ends; `None` on timeout.
async fn read_until(stream: &mut TcpStream, needle: &str, within: Duration) -> Option<String> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let read = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .ok()?;
        match read {
            Ok(0) | Err(_) => return Some(String::from_utf8_lossy(&seen).into_owned()),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
        let text = String::from_utf8_lossy(&seen);
        if text.contains(needle) {
            return Some(text.into_owned());
        }
    }
}

const HEALTH: &str = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";

#[tokio::test]
async fn connections_beyond_max_connections_wait_for_a_free_slot() {
    let mut config = test_config();
    config.limits.max_connections = 1;
    let h = Harness::with_config(config);
    let server = Running::serve(h.state.clone()).await;

    let mut first = send_raw(&server, HEALTH).await;
    let answer = read_until(&mut first, "ok\n", Duration::from_secs(5))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // `first` stays open (keep-alive) and holds the only slot: the second waits.
    let mut second = send_raw(&server, HEALTH).await;
    assert_eq!(
        read_until(&mut second, "ok\n", Duration::from_millis(700)).await,
        None,
        "a second connection was served while the only slot was taken"
    );
    drop(first);
    let answer = read_until(&mut second, "ok\n", Duration::from_secs(5)).await;
    assert!(answer.is_some_and(|a| a.starts_with("HTTP/1.1 200")));
    drop(second);
    server.stop().await;
}

#[tokio::test]
async fn a_request_slower_than_the_request_timeout_gets_408() {
    let mut config = test_config();
    config.limits.request_timeout_secs = 1;
    let h = Harness::with_config(config);
    let server = Running::serve(h.state.clone()).await;
    let started = Instant::now();
    // Headers arrive, then the body stalls after a few bytes.
    let request = format!(
        "POST /api/v1/releases HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"meta",
        h.token
    );
    let mut stream = send_raw(&server, &request).await;
    let answer = read_until(&mut stream, "\r\n\r\n", Duration::from_secs(5))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    drop(stream);
    assert_eq!(
        errors(&h.metrics().await, "publish", "request_timeout"),
        1.0
    );
    assert_eq!(h.state.registered_count(), 0);
    server.stop().await;
}

#[tokio::test]
async fn idle_and_slow_header_connections_are_closed() {
    let mut config = test_config();
    config.limits.idle_timeout_secs = 1;
    let h = Harness::with_config(config);
    let server = Running::serve(h.state.clone()).await;
    let started = Instant::now();
    // Half a request line, then nothing; and a connection that never sends a byte.
    let mut slow = send_raw(&server, "GET /healthz HTTP/1.1\r\nHo").await;
    let mut silent = send_raw(&server, "").await;
    for stream in [&mut slow, &mut silent] {
        let ended = read_until(stream, "never appears", Duration::from_secs(5)).await;
        assert!(ended.is_some(), "an idle connection was kept open for 5 s");
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    // A connection that keeps talking is not cut off.
    let mut busy = send_raw(&server, HEALTH).await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        busy.write_all(HEALTH.as_bytes()).await.unwrap();
    }
    let answers = read_until(&mut busy, "never appears", Duration::from_secs(3))
        .await
        .unwrap();
    assert_eq!(answers.matches("HTTP/1.1 200").count(), 4, "{answers}");
    server.stop().await;
}

#[tokio::test]
async fn the_purge_task_drops_silent_peers_while_serving() {
    let mut config = test_config();
    config.announce_interval_secs = 1;
    config.min_announce_interval_secs = 1;
    config.peer_timeout_intervals = 1;
    config.purge_interval_secs = 1;
    let h = Harness::with_config(config);
    let release = Release::small("share-button", "1.0.0", 1, &h.key);
    h.publish(&release).await;
    let server = Running::serve(h.state.clone()).await;
    for n in 1..=3u8 {
        h.announce(
            &announce_request(release.info_hash, n, 6881, 0, AnnounceEvent::Started),
            addr(&format!("192.0.2.{n}:1")),
        )
        .await
        .success();
    }
    assert_eq!(h.peer_count(), (3, 3));
    // Peers time out after 1 s; the sweep runs every second. Poll rather than guess.
    let deadline = Instant::now() + Duration::from_secs(6);
    while h.peer_count() != (0, 0) {
        assert!(
            Instant::now() < deadline,
            "peers not purged: {:?}",
            h.peer_count()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The registration outlives the swarm.
    assert!(h.state.is_registered(&release.info_hash));
    server.stop().await;
}

#[tokio::test]
async fn keep_alive_off_closes_the_connection_after_each_response() {
    // An announce (the fast path; refused here, so no release is needed) and a route.
    let requests = [
        "GET /announce?info_hash=x HTTP/1.1\r\nHost: t\r\n\r\n",
        HEALTH,
    ];
    for keep_alive in [false, true] {
        let mut config = test_config();
        config.keep_alive = keep_alive;
        let h = Harness::with_config(config);
        let server = Running::serve(h.state.clone()).await;
        for request in requests {
            let mut stream = send_raw(&server, request).await;
            let first = read_until(&mut stream, "\r\n\r\n", Duration::from_secs(5))
                .await
                .unwrap();
            assert!(first.starts_with("HTTP/1.1 200"), "{first}");
            // Whatever else arrives before the connection ends; `None`: still open after 1 s.
            let rest = read_until(&mut stream, "\u{0}", Duration::from_secs(1)).await;
            if keep_alive {
                assert!(rest.is_none(), "closed: {first}{rest:?}");
                assert!(!first.contains("connection: close"), "{first}");
                // The same connection serves another request.
                stream.write_all(HEALTH.as_bytes()).await.unwrap();
                let again = read_until(&mut stream, "ok\n", Duration::from_secs(5)).await;
                assert!(again.unwrap().starts_with("HTTP/1.1 200"));
            } else {
                assert!(rest.is_some(), "still open after: {first}");
                assert!(first.contains("connection: close"), "{first}");
            }
        }
        server.stop().await;
    }
}
