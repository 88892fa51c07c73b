//! Announce through the router: peer lists in every form, events, addresses, numwant.

use std::net::{SocketAddrV4, SocketAddrV6};

use swarmcdn_proto::PeerId;
use swarmcdn_proto::tracker::{AnnounceEvent, ScrapeRequest, ScrapeResponse};

use crate::common::*;

/// A harness with one published release; returns it with the release's info-hash.
async fn with_release(harness: Harness) -> (Harness, swarmcdn_proto::InfoHash) {
    let release = Release::small("share-button", "1.0.0", 1, &harness.key);
    harness.publish(&release).await;
    (harness, release.info_hash)
}

#[tokio::test]
async fn compact_peers_by_default_and_never_the_announcer() {
    let (h, ih) = with_release(Harness::new()).await;
    let seeder = announce_request(ih, 1, 6881, 0, AnnounceEvent::Started);
    let first = h.announce(&seeder, addr("192.0.2.1:50001")).await;
    let first = first.success();
    assert!(first.peers.is_empty(), "a lone peer is handed nobody");
    assert_eq!((first.complete, first.incomplete), (1, 0));
    assert_eq!(first.interval, h.state.config().announce_interval_secs);
    assert_eq!(
        first.min_interval,
        Some(h.state.config().min_announce_interval_secs)
    );

    let leecher = announce_request(ih, 2, 6882, 1000, AnnounceEvent::Started);
    let reply = h.announce(&leecher, addr("192.0.2.2:50002")).await;
    // BEP 23: peers is one byte string of 6-byte entries.
    assert!(reply.text().contains("5:peers6:"), "{}", reply.text());
    let answer = reply.success();
    // The port comes from the announce, the IP from the connection.
    assert_eq!(
        answer.peers,
        vec![SocketAddrV4::new([192, 0, 2, 1].into(), 6881)]
    );
    assert_eq!((answer.complete, answer.incomplete), (1, 1));
    assert!(answer.peers6.is_empty());

    // Announcing again, each gets the other and never itself.
    for _ in 0..5 {
        let again = h.announce(&seeder, addr("192.0.2.1:50001")).await.success();
        assert_eq!(
            again.peers,
            vec![SocketAddrV4::new([192, 0, 2, 2].into(), 6882)]
        );
    }
}

#[tokio::test]
async fn compact_zero_gets_dictionary_peers() {
    let (h, ih) = with_release(Harness::new()).await;
    h.announce(
        &announce_request(ih, 1, 6881, 0, AnnounceEvent::Started),
        addr("192.0.2.1:1"),
    )
    .await;
    h.announce(
        &announce_request(ih, 3, 7000, 0, AnnounceEvent::Started),
        addr("[2001:db8::3]:1"),
    )
    .await;
    let mut leecher = announce_request(ih, 2, 6882, 10, AnnounceEvent::Started);
    leecher.compact = false;
    let reply = h.announce(&leecher, addr("192.0.2.2:1")).await;
    // The exact BEP 3 shape: a list of dictionaries with `ip` (text), `peer id` (the 20 bytes
    // the peer announced with) and `port`, keys sorted; IPv4 peers first, then IPv6 ones.
    let config = h.state.config();
    let head = format!(
        "d8:completei2e10:incompletei1e8:intervali{}e12:min intervali{}e5:peersl",
        config.announce_interval_secs, config.min_announce_interval_secs
    );
    let dict = |ip: &str, id: u8, port: u16| {
        let mut entry = format!("d2:ip{}:{ip}7:peer id20:", ip.len()).into_bytes();
        entry.extend_from_slice(&[id; 20]);
        entry.extend_from_slice(format!("4:porti{port}ee").as_bytes());
        entry
    };
    let mut expected = head.clone().into_bytes();
    expected.extend(dict("192.0.2.1", 1, 6881));
    expected.extend(dict("2001:db8::3", 3, 7000));
    expected.extend_from_slice(b"ee");
    assert_eq!(reply.body, expected, "{}", reply.text());
    let answer = reply.success();
    assert_eq!(
        answer.peers,
        vec![SocketAddrV4::new([192, 0, 2, 1].into(), 6881)]
    );
    assert_eq!(
        answer.peers6,
        vec![SocketAddrV6::new(
            "2001:db8::3".parse().unwrap(),
            7000,
            0,
            0
        )]
    );
    assert_eq!(
        answer.peer_ids,
        vec![PeerId::new([1; 20]), PeerId::new([3; 20])]
    );

    // `no_peer_id` leaves the ids out and nothing else.
    leecher.no_peer_id = true;
    let reply = h.announce(&leecher, addr("192.0.2.2:1")).await;
    let expected = format!("{head}d2:ip9:192.0.2.14:porti6881eed2:ip11:2001:db8::34:porti7000eeee");
    assert_eq!(reply.text(), expected);
    assert!(reply.success().peer_ids.is_empty());
}

#[tokio::test]
async fn ipv6_peers_go_to_peers6() {
    let (h, ih) = with_release(Harness::new()).await;
    h.announce(
        &announce_request(ih, 1, 6881, 0, AnnounceEvent::Started),
        addr("[2001:db8::1]:40000"),
    )
    .await;
    // An IPv4 client seen on a dual-stack socket is an IPv4 peer.
    h.announce(
        &announce_request(ih, 2, 6882, 0, AnnounceEvent::Started),
        addr("[::ffff:192.0.2.2]:40000"),
    )
    .await;
    let reply = h
        .announce(
            &announce_request(ih, 3, 6883, 10, AnnounceEvent::Started),
            addr("192.0.2.3:40000"),
        )
        .await;
    assert!(reply.text().contains("6:peers618:"), "{}", reply.text());
    let answer = reply.success();
    assert_eq!(
        answer.peers6,
        vec![SocketAddrV6::new(
            "2001:db8::1".parse().unwrap(),
            6881,
            0,
            0
        )]
    );
    assert_eq!(
        answer.peers,
        vec![SocketAddrV4::new([192, 0, 2, 2].into(), 6882)]
    );
}

async fn scrape(h: &Harness, ih: swarmcdn_proto::InfoHash) -> swarmcdn_proto::tracker::ScrapeStats {
    let query = ScrapeRequest {
        info_hashes: vec![ih],
    }
    .to_query();
    let reply = h.get(&format!("/scrape?{query}")).await;
    match ScrapeResponse::from_bytes(&reply.body).unwrap() {
        ScrapeResponse::Files(files) => files[&ih],
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn started_completed_stopped() {
    let (h, ih) = with_release(Harness::new()).await;
    let a = addr("192.0.2.1:1");
    let b = addr("192.0.2.2:1");
    h.announce(&announce_request(ih, 1, 6881, 0, AnnounceEvent::Started), a)
        .await
        .success();
    h.announce(
        &announce_request(ih, 2, 6882, 500, AnnounceEvent::Started),
        b,
    )
    .await
    .success();
    let stats = scrape(&h, ih).await;
    assert_eq!(
        (stats.complete, stats.incomplete, stats.downloaded),
        (1, 1, 0)
    );

    // The leecher finishes: one download, two seeders.
    let done = h
        .announce(
            &announce_request(ih, 2, 6882, 0, AnnounceEvent::Completed),
            b,
        )
        .await
        .success();
    assert_eq!((done.complete, done.incomplete), (2, 0));
    let stats = scrape(&h, ih).await;
    assert_eq!(
        (stats.complete, stats.incomplete, stats.downloaded),
        (2, 0, 1)
    );

    // The first seeder leaves: gone from counts and from peer lists.
    let gone = h
        .announce(&announce_request(ih, 1, 6881, 0, AnnounceEvent::Stopped), a)
        .await
        .success();
    assert!(gone.peers.is_empty(), "a stopping peer gets no peers");
    let stats = scrape(&h, ih).await;
    assert_eq!(
        (stats.complete, stats.incomplete, stats.downloaded),
        (1, 0, 1)
    );
    let newcomer = h
        .announce(
            &announce_request(ih, 3, 6883, 10, AnnounceEvent::Started),
            addr("192.0.2.3:1"),
        )
        .await
        .success();
    assert_eq!(
        newcomer.peers,
        vec![SocketAddrV4::new([192, 0, 2, 2].into(), 6882)]
    );

    let metrics = h.metrics().await;
    assert_eq!(
        metric(&metrics, "tracker_announces_total{event=\"started\"}"),
        3.0
    );
    assert_eq!(
        metric(&metrics, "tracker_announces_total{event=\"completed\"}"),
        1.0
    );
    assert_eq!(
        metric(&metrics, "tracker_announces_total{event=\"stopped\"}"),
        1.0
    );
    assert_eq!(metric(&metrics, "tracker_scrapes_total"), 3.0);
    assert_eq!(metric(&metrics, "tracker_peers"), 2.0);
    assert_eq!(metric(&metrics, "tracker_seeders"), 1.0);
    assert_eq!(metric(&metrics, "tracker_registered_torrents"), 1.0);
}

#[tokio::test]
async fn x_forwarded_for_is_believed_only_from_a_trusted_proxy() {
    let mut config = test_config();
    config.trusted_proxies = vec!["10.0.0.1".parse().unwrap()];
    let (h, ih) = with_release(Harness::with_config(config)).await;

    let via_proxy = axum::http::Request::get(format!(
        "/announce?{}",
        announce_request(ih, 1, 6881, 0, AnnounceEvent::Started).to_query()
    ))
    .header("x-forwarded-for", "198.18.0.1, 203.0.113.5")
    .body(axum::body::Body::empty())
    .unwrap();
    h.send_from(via_proxy, addr("10.0.0.1:443")).await.success();

    let untrusted = axum::http::Request::get(format!(
        "/announce?{}",
        announce_request(ih, 2, 6882, 0, AnnounceEvent::Started).to_query()
    ))
    .header("x-forwarded-for", "203.0.113.77")
    .body(axum::body::Body::empty())
    .unwrap();
    h.send_from(untrusted, addr("198.51.100.9:5000"))
        .await
        .success();

    let mut probe = announce_request(ih, 3, 6883, 10, AnnounceEvent::Started);
    probe.numwant = Some(50);
    let mut peers = h
        .announce(&probe, addr("192.0.2.3:1"))
        .await
        .success()
        .peers;
    peers.sort();
    assert_eq!(
        peers,
        vec![
            SocketAddrV4::new([198, 51, 100, 9].into(), 6882),
            SocketAddrV4::new([203, 0, 113, 5].into(), 6881),
        ]
    );
}

#[tokio::test]
async fn the_ip_parameter_is_ignored() {
    let (h, ih) = with_release(Harness::new()).await;
    let mut spoof = announce_request(ih, 1, 6881, 0, AnnounceEvent::Started);
    spoof.ip = Some("203.0.113.200".parse().unwrap());
    h.announce(&spoof, addr("192.0.2.9:1")).await.success();
    let peers = h
        .announce(
            &announce_request(ih, 2, 6882, 10, AnnounceEvent::Started),
            addr("192.0.2.2:1"),
        )
        .await
        .success()
        .peers;
    assert_eq!(peers, vec![SocketAddrV4::new([192, 0, 2, 9].into(), 6881)]);
}

#[tokio::test]
async fn numwant_is_capped_by_config() {
    let mut config = test_config();
    config.numwant_default = 3;
    config.numwant_max = 5;
    let (h, ih) = with_release(Harness::with_config(config)).await;
    for n in 1..=20u8 {
        h.announce(
            &announce_request(ih, n, 6881, 0, AnnounceEvent::Started),
            addr(&format!("192.0.2.{n}:1")),
        )
        .await
        .success();
    }
    let mut leecher = announce_request(ih, 100, 6881, 10, AnnounceEvent::Started);
    let from = addr("192.0.2.100:1");
    assert_eq!(h.announce(&leecher, from).await.success().peers.len(), 3);
    for (asked, got) in [(2, 2), (5, 5), (1000, 5), (u32::MAX, 5), (0, 0)] {
        leecher.numwant = Some(asked);
        assert_eq!(
            h.announce(&leecher, from).await.success().peers.len(),
            got,
            "numwant={asked}"
        );
    }
}
