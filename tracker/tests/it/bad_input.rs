//! Every kind of bad input from the service's spec: each gets a clear failure reason (tracker
//! endpoints, HTTP 200) or a JSON error with its 4xx status (API), is counted in `/metrics`
//! under its reason, and changes no state.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use swarmcdn_proto::InfoHash;
use swarmcdn_proto::manifest::signing_key_from_seed;
use swarmcdn_proto::tracker::AnnounceEvent;

use crate::common::*;

/// What the tracker holds, to compare before and after a refused request.
#[derive(Debug, PartialEq)]
struct Snapshot {
    peers: (usize, usize),
    swarms: usize,
    registered: usize,
    in_registry: Vec<InfoHash>,
    publishers: usize,
}

fn snapshot(h: &Harness) -> Snapshot {
    let mut in_registry = h.state.registry().registered_info_hashes().unwrap();
    in_registry.sort();
    Snapshot {
        peers: h.peer_count(),
        swarms: h.state.store().stats().unwrap().torrents,
        registered: h.state.registered_count(),
        in_registry,
        publishers: h.state.registry().list_publishers().unwrap().len(),
    }
}

/// A harness with one release and one seeder in its swarm.
async fn setup(config: swarmcdn_tracker::config::Config) -> (Harness, Release) {
    let h = Harness::with_config(config);
    let release = Release::small("share-button", "1.0.0", 1, &h.key);
    h.publish(&release).await;
    h.announce(
        &announce_request(release.info_hash, 1, 6881, 0, AnnounceEvent::Started),
        addr("192.0.2.1:1"),
    )
    .await
    .success();
    (h, release)
}

/// A valid announce query for `ih` by a new peer, as raw `name=value` pairs to alter.
fn valid_pairs(ih: &InfoHash) -> Vec<(String, String)> {
    let query = announce_request(*ih, 42, 6881, 100, AnnounceEvent::Started).to_query();
    query
        .split('&')
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap();
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

fn query(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn with(ih: &InfoHash, name: &str, value: &str) -> String {
    let mut pairs = valid_pairs(ih);
    match pairs.iter_mut().find(|(n, _)| n == name) {
        Some(pair) => pair.1 = value.to_owned(),
        None => pairs.push((name.to_owned(), value.to_owned())),
    }
    query(&pairs)
}

fn without(ih: &InfoHash, name: &str) -> String {
    let mut pairs = valid_pairs(ih);
    pairs.retain(|(n, _)| n != name);
    query(&pairs)
}

/// Sends `GET path?query`, expects a failure reason containing `words`, counted under
/// `reason`, with nothing changed.
async fn expect_refusal(h: &Harness, endpoint: &str, query: &str, words: &str, reason: &str) {
    let before = snapshot(h);
    let counted_before = errors(&h.metrics().await, endpoint, reason);
    let reply = h.get(&format!("/{endpoint}?{query}")).await;
    let failure = reply.failure();
    assert!(
        failure.contains(words),
        "{endpoint}?{}: {failure:?} lacks {words:?}",
        &query[..query.len().min(120)]
    );
    let counted = errors(&h.metrics().await, endpoint, reason);
    assert_eq!(
        counted,
        counted_before + 1.0,
        "{reason} not counted for {words}"
    );
    assert_eq!(snapshot(h), before, "state changed by {words}");
}

#[tokio::test]
async fn malformed_announces_are_refused_counted_and_change_nothing() {
    let (h, release) = setup(test_config()).await;
    let ih = &release.info_hash;
    let cases: Vec<(String, &str, &str)> = vec![
        (
            without(ih, "peer_id"),
            "has no `peer_id`",
            "missing_parameter",
        ),
        (without(ih, "port"), "has no `port`", "missing_parameter"),
        (String::new(), "has no `info_hash`", "missing_parameter"),
        (
            with(ih, "info_hash", &"%aa".repeat(19)),
            "`info_hash` must be 20 bytes, got 19",
            "bad_id_length",
        ),
        (
            with(ih, "info_hash", &"%aa".repeat(21)),
            "`info_hash` must be 20 bytes, got 21",
            "bad_id_length",
        ),
        (
            with(ih, "peer_id", "short"),
            "`peer_id` must be 20 bytes, got 5",
            "bad_id_length",
        ),
        (
            with(ih, "port", "0"),
            "`port` must be a number from 1 to 65535",
            "invalid_port",
        ),
        (
            with(ih, "port", "65536"),
            "`port` must be a number from 1 to 65535",
            "invalid_port",
        ),
        (
            with(ih, "port", "http"),
            "`port` must be a number from 1 to 65535",
            "invalid_port",
        ),
        (
            with(ih, "left", "-1"),
            "`left` is not a valid number",
            "invalid_number",
        ),
        (
            with(ih, "numwant", "99999999999999999999999"),
            "`numwant` is not a valid number",
            "invalid_number",
        ),
        (
            with(ih, "event", "exploded"),
            "unknown `event`",
            "unknown_event",
        ),
        (
            with(ih, "peer_id", "%zz%zz"),
            "`peer_id` is not correctly percent-encoded",
            "bad_encoding",
        ),
        (
            format!("{}&info_hash={}", query(&valid_pairs(ih)), "%aa".repeat(20)),
            "`info_hash` appears more than once",
            "duplicate_parameter",
        ),
        (
            with(ih, "key", &"k".repeat(65)),
            "`key` is longer than 64 bytes",
            "value_too_long",
        ),
        // Longer than the wire parser's bound (2048), within the service's (8192).
        (
            with(ih, "pad", &"x".repeat(3000)),
            "the announce query is",
            "query_too_long",
        ),
        // Longer than the service's configured bound.
        (
            with(ih, "pad", &"x".repeat(9000)),
            "the limit is 8192",
            "query_too_long",
        ),
        (
            with(ih, "info_hash", &"%bb".repeat(20)),
            "unregistered torrent",
            "unregistered_torrent",
        ),
    ];
    for (query, words, reason) in cases {
        expect_refusal(&h, "announce", &query, words, reason).await;
    }
    // An unregistered info-hash leaves no swarm behind (checked by the snapshot above), and
    // the registered one still works.
    let ok = h
        .get_from(
            &format!("/announce?{}", query(&valid_pairs(ih))),
            addr("192.0.2.42:1"),
        )
        .await;
    assert_eq!(ok.success().complete, 1);
}

#[tokio::test]
async fn a_huge_numwant_within_range_is_capped_not_refused() {
    let mut config = test_config();
    config.numwant_default = 4;
    config.numwant_max = 8;
    let (h, release) = setup(config).await;
    // 20 seeders besides the one `setup` added: far more than the cap.
    for n in 100..120u8 {
        h.announce(
            &announce_request(release.info_hash, n, 6881, 0, AnnounceEvent::Started),
            addr(&format!("192.0.2.{n}:1")),
        )
        .await
        .success();
    }
    let before = snapshot(&h);
    let query = with(&release.info_hash, "numwant", "4000000000");
    let reply = h
        .get_from(&format!("/announce?{query}"), addr("192.0.2.42:1"))
        .await;
    let answer = reply.success();
    assert_eq!(answer.peers.len(), 8, "numwant is capped at numwant_max");
    assert_eq!((answer.complete, answer.incomplete), (21, 1));
    // Only the new leecher was added.
    assert_eq!(h.peer_count(), (before.peers.0 + 1, before.peers.1));
}

#[tokio::test]
async fn malformed_scrapes_are_refused_counted_and_change_nothing() {
    let mut config = test_config();
    config.max_scrape_hashes = 4;
    let (h, _release) = setup(config).await;
    let hash = |n: u8| format!("info_hash={}", "%aa".repeat(19) + &format!("%{n:02x}"));
    let five: Vec<String> = (0..5).map(hash).collect();
    let sixty_five: Vec<String> = (0..65).map(hash).collect();
    let cases = [
        (
            String::new(),
            "full scrapes are not supported",
            "full_scrape",
        ),
        (
            five.join("&"),
            "at most 4 info-hashes",
            "too_many_info_hashes",
        ),
        (
            sixty_five.join("&"),
            "at most 64 info-hashes",
            "too_many_info_hashes",
        ),
        (
            "info_hash=abc".to_owned(),
            "must be 20 bytes, got 3",
            "bad_id_length",
        ),
        (
            "info_hash=%zz".to_owned(),
            "not correctly percent-encoded",
            "bad_encoding",
        ),
        (
            format!("info_hash={}", "x".repeat(9000)),
            "the limit is 8192",
            "query_too_long",
        ),
    ];
    for (query, words, reason) in cases {
        expect_refusal(&h, "scrape", &query, words, reason).await;
    }
    // A scrape of unknown torrents only: a failure reason, counted, nothing changed (checked
    // by `expect_refusal`), with or without a duplicate.
    let unknown = format!("info_hash={}", "%bb".repeat(20));
    expect_refusal(
        &h,
        "scrape",
        &unknown,
        "unregistered torrent",
        "unregistered_torrent",
    )
    .await;
    expect_refusal(
        &h,
        "scrape",
        &format!("{unknown}&info_hash={}", "%cc".repeat(20)),
        "unregistered torrent",
        "unregistered_torrent",
    )
    .await;
}

#[tokio::test]
async fn a_scrape_naming_unknown_torrents_answers_the_known_ones_and_counts_the_fault() {
    let (h, release) = setup(test_config()).await;
    let before = snapshot(&h);
    let counted_before = errors(&h.metrics().await, "scrape", "unregistered_torrent");
    let query = format!(
        "info_hash={}&{}",
        "%bb".repeat(20),
        swarmcdn_proto::tracker::ScrapeRequest {
            info_hashes: vec![release.info_hash]
        }
        .to_query()
    );
    let reply = h.get(&format!("/scrape?{query}")).await;
    match swarmcdn_proto::tracker::ScrapeResponse::from_bytes(&reply.body).unwrap() {
        swarmcdn_proto::tracker::ScrapeResponse::Files(files) => {
            // The unknown torrent is left out, not reported as an empty swarm.
            assert_eq!(files.keys().collect::<Vec<_>>(), vec![&release.info_hash]);
            assert_eq!(files[&release.info_hash].complete, 1);
        }
        other => panic!("{other:?}"),
    }
    let metrics = h.metrics().await;
    assert_eq!(
        errors(&metrics, "scrape", "unregistered_torrent"),
        counted_before + 1.0
    );
    assert_eq!(metric(&metrics, "tracker_scrapes_total"), 1.0);
    assert_eq!(snapshot(&h), before, "a scrape changed state");
}

/// Posts `body` with `token`, expects `status` and a JSON error containing `words`, counted
/// under `reason`, with nothing changed.
async fn expect_api_refusal(
    h: &Harness,
    body: impl Into<Body>,
    token: Option<&str>,
    status: StatusCode,
    words: &str,
    reason: &str,
) {
    let before = snapshot(h);
    let counted_before = errors(&h.metrics().await, "publish", reason);
    let reply = h.post_release(body, token).await;
    assert_eq!(reply.status, status, "{words}: {}", reply.text());
    let error = reply.error();
    assert!(error.contains(words), "{error:?} lacks {words:?}");
    let counted = errors(&h.metrics().await, "publish", reason);
    assert_eq!(counted, counted_before + 1.0, "{reason} not counted");
    assert_eq!(snapshot(h), before, "state changed by {words}");
}

#[tokio::test]
async fn bad_publish_requests_are_refused_counted_and_change_nothing() {
    let mut config = test_config();
    config.limits.max_publish_body_bytes = 200_000;
    let (h, v1) = setup(config).await;
    let token = h.token.clone();
    let good = Release::small("share-button", "1.1.0", 2, &h.key);
    let ok = Some(token.as_str());

    // Token.
    expect_api_refusal(
        &h,
        good.body(),
        None,
        StatusCode::UNAUTHORIZED,
        "missing `Authorization",
        "unauthorized",
    )
    .await;
    expect_api_refusal(
        &h,
        good.body(),
        Some(&"0".repeat(64)),
        StatusCode::UNAUTHORIZED,
        "not valid",
        "unauthorized",
    )
    .await;

    // Body shape and size.
    expect_api_refusal(
        &h,
        "{not json",
        ok,
        StatusCode::BAD_REQUEST,
        "the body must be",
        "bad_json",
    )
    .await;
    expect_api_refusal(
        &h,
        r#"{"metainfo": "AAAA"}"#,
        ok,
        StatusCode::BAD_REQUEST,
        "missing field `manifest`",
        "bad_json",
    )
    .await;
    let huge = publish_body(&vec![b'x'; 300_000], &good.manifest.to_json());
    expect_api_refusal(
        &h,
        huge,
        ok,
        StatusCode::PAYLOAD_TOO_LARGE,
        "larger than 200000 bytes",
        "body_too_large",
    )
    .await;
    let bad_b64 = good
        .body()
        .replacen("\"metainfo\":\"", "\"metainfo\":\"!!", 1);
    expect_api_refusal(
        &h,
        bad_b64,
        ok,
        StatusCode::BAD_REQUEST,
        "not standard base64",
        "bad_base64",
    )
    .await;

    // A metainfo that is not bencode at all, and bencode that is not a torrent.
    let not_bencode = publish_body(b"this is not bencode", &good.manifest.to_json());
    expect_api_refusal(
        &h,
        not_bencode,
        ok,
        StatusCode::BAD_REQUEST,
        "not a valid torrent",
        "bad_metainfo",
    )
    .await;
    let not_torrent = publish_body(b"d3:fooi1ee", &good.manifest.to_json());
    expect_api_refusal(
        &h,
        not_torrent,
        ok,
        StatusCode::BAD_REQUEST,
        "not a valid torrent",
        "bad_metainfo",
    )
    .await;

    // Manifests: malformed, signed by another key, signature not matching, wrong info-hash.
    let malformed = publish_body(
        &good.metainfo,
        r#"{"manifest": {}, "public_key": "00", "signature": "00"}"#,
    );
    expect_api_refusal(
        &h,
        malformed,
        ok,
        StatusCode::BAD_REQUEST,
        "not a valid signed manifest",
        "bad_manifest",
    )
    .await;
    let other_key = signing_key_from_seed(OTHER_SEED);
    let foreign = Release::small("share-button", "1.1.0", 2, &other_key);
    expect_api_refusal(
        &h,
        foreign.body(),
        ok,
        StatusCode::UNPROCESSABLE_ENTITY,
        "not by the key registered for publisher",
        "bad_signature",
    )
    .await;
    let mut tampered: serde_json::Value = serde_json::from_str(&good.manifest.to_json()).unwrap();
    tampered["manifest"]["created"] = serde_json::json!(1_700_000_001);
    let tampered = publish_body(&good.metainfo, &tampered.to_string());
    expect_api_refusal(
        &h,
        tampered,
        ok,
        StatusCode::UNPROCESSABLE_ENTITY,
        "signature",
        "bad_signature",
    )
    .await;
    let mismatched = Release::with_info_hash(
        "share-button",
        "1.1.0",
        b"x",
        &h.key,
        good.metainfo.clone(),
        InfoHash([0xcd; 20]),
    );
    expect_api_refusal(
        &h,
        mismatched.body(),
        ok,
        StatusCode::UNPROCESSABLE_ENTITY,
        "the manifest names torrent cdcd",
        "info_hash_mismatch",
    )
    .await;

    // Duplicates: same version again, and the same torrent under another version.
    let again = Release::small("share-button", "1.0.0", 3, &h.key);
    expect_api_refusal(
        &h,
        again.body(),
        ok,
        StatusCode::CONFLICT,
        "already exists",
        "duplicate_release",
    )
    .await;
    let same_torrent = Release::with_info_hash(
        "share-button",
        "1.2.0",
        b"x",
        &h.key,
        v1.metainfo.clone(),
        v1.info_hash,
    );
    expect_api_refusal(
        &h,
        same_torrent.body(),
        ok,
        StatusCode::CONFLICT,
        "already registered",
        "duplicate_torrent",
    )
    .await;

    // Another publisher's name.
    let other_token = h
        .state
        .registry()
        .add_publisher("globex", other_key.verifying_key().as_bytes())
        .unwrap()
        .into_string();
    let squat = Release::small("share-button", "9.0.0", 4, &other_key);
    expect_api_refusal(
        &h,
        squat.body(),
        Some(&other_token),
        StatusCode::FORBIDDEN,
        "belongs to another publisher",
        "name_taken",
    )
    .await;

    // Nothing above registered anything: the refused torrent is not served or tracked.
    let reply = h.get(&format!("/api/v1/torrents/{}", good.info_hash)).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let refused = h
        .announce(
            &announce_request(good.info_hash, 5, 6881, 0, AnnounceEvent::Started),
            addr("192.0.2.5:1"),
        )
        .await;
    assert_eq!(refused.failure(), "unregistered torrent");
    // And the good one is accepted after all that.
    h.publish(&good).await;
}

#[tokio::test]
async fn bad_api_reads_and_deletes_get_their_status() {
    let (h, release) = setup(test_config()).await;
    let before = snapshot(&h);
    let cases = [
        (
            "/api/v1/assets/Not_A_Name",
            StatusCode::BAD_REQUEST,
            "bad release name",
            "asset",
            "bad_name",
        ),
        (
            "/api/v1/assets/nothing-here",
            StatusCode::NOT_FOUND,
            "no release",
            "asset",
            "not_found",
        ),
        (
            "/api/v1/assets/share-button/2.0.0",
            StatusCode::NOT_FOUND,
            "no such release",
            "asset",
            "not_found",
        ),
        (
            "/api/v1/torrents/xyz",
            StatusCode::BAD_REQUEST,
            "40 hex digits",
            "torrent",
            "bad_info_hash",
        ),
        (
            "/api/v1/torrents/cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd",
            StatusCode::NOT_FOUND,
            "no registered torrent",
            "torrent",
            "not_found",
        ),
        (
            "/no/such/endpoint",
            StatusCode::NOT_FOUND,
            "no such endpoint",
            "other",
            "not_found",
        ),
    ];
    for (uri, status, words, endpoint, reason) in cases {
        let counted_before = errors(&h.metrics().await, endpoint, reason);
        let reply = h.get(uri).await;
        assert_eq!(reply.status, status, "{uri}");
        assert!(reply.error().contains(words), "{uri}: {}", reply.text());
        assert_eq!(
            errors(&h.metrics().await, endpoint, reason),
            counted_before + 1.0,
            "{uri}"
        );
    }

    // Deleting: wrong token, unknown release, someone else's release.
    let reply = h
        .delete_release("share-button", "1.0.0", &"0".repeat(64))
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let reply = h.delete_release("share-button", "3.0.0", &h.token).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let other = h
        .state
        .registry()
        .add_publisher(
            "globex",
            signing_key_from_seed(OTHER_SEED).verifying_key().as_bytes(),
        )
        .unwrap();
    let reply = h
        .delete_release("share-button", "1.0.0", other.as_str())
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text());
    let metrics = h.metrics().await;
    assert_eq!(errors(&metrics, "unpublish", "unauthorized"), 1.0);
    assert_eq!(errors(&metrics, "unpublish", "not_found"), 1.0);
    assert_eq!(errors(&metrics, "unpublish", "not_owner"), 1.0);
    let mut after = snapshot(&h);
    after.publishers -= 1;
    assert_eq!(after, before);
    assert!(h.state.is_registered(&release.info_hash));

    // A body on an endpoint that takes none is not read; the method must match.
    let reply = h
        .send(Request::put("/announce").body(Body::from("x")).unwrap())
        .await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        errors(&h.metrics().await, "announce", "method_not_allowed"),
        1.0
    );
}
