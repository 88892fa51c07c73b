use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use swarmcdn_proto::RelativePath;
use swarmcdn_proto::bencode::BencodeError;
use swarmcdn_proto::metainfo::{Metainfo, MetainfoError, TorrentBuilder};
use swarmcdn_proto::peer::{
    ExtendedHandshake, MAX_METADATA_SIZE, METADATA_PIECE_LEN, Message, MetadataMessage,
    UT_METADATA, WireLimits, metadata_piece_count,
};

use super::*;
use crate::peer::PeerKey;

/// A torrent of 3000 tiny files: its info dictionary is about 100 KB, seven metadata
/// pieces with a short last one.
static TORRENT: LazyLock<Metainfo> = LazyLock::new(|| torrent_with_files(3000));

fn torrent_with_files(count: usize) -> Metainfo {
    let mut builder = TorrentBuilder::new("site");
    for i in 0..count {
        let path = RelativePath::parse(&format!("assets/file-{i:05}.js")).unwrap();
        builder = builder.add_bytes(path, vec![(i % 251) as u8; 1 + i % 7]);
    }
    builder.build().unwrap()
}

fn info() -> Bytes {
    Bytes::copy_from_slice(TORRENT.info_bytes())
}

fn size() -> u32 {
    TORRENT.info_bytes().len() as u32
}

fn pieces() -> u32 {
    metadata_piece_count(size())
}

fn fetcher() -> MetadataFetcher {
    MetadataFetcher::new(TORRENT.info_hash(), FetchOptions::default())
}

fn honest() -> MetadataServer {
    MetadataServer::new(info()).unwrap()
}

/// Serves bytes of the right length with one byte flipped in every piece.
fn liar() -> MetadataServer {
    let mut bytes = TORRENT.info_bytes().to_vec();
    for start in (0..bytes.len()).step_by(METADATA_PIECE_LEN) {
        bytes[start] ^= 0xff;
    }
    MetadataServer::new(Bytes::from(bytes)).unwrap()
}

/// Peers answering requests at once, each from its own server.
struct Swarm {
    servers: BTreeMap<PeerKey, MetadataServer>,
}

impl Swarm {
    fn new(servers: impl IntoIterator<Item = (u64, MetadataServer)>) -> Self {
        Self {
            servers: servers
                .into_iter()
                .map(|(key, server)| (PeerKey(key), server))
                .collect(),
        }
    }

    /// Registers every peer with the fetcher, in key order, under extended id 3.
    fn register(&self, fetcher: &mut MetadataFetcher) {
        for (key, server) in &self.servers {
            fetcher
                .peer_supports(*key, 3, server.metadata_size())
                .unwrap();
        }
    }

    /// Polls and answers until the fetch completes or mismatches, or nothing is asked.
    fn run(&self, fetcher: &mut MetadataFetcher, now: Instant) -> Option<FetchEvent> {
        for _ in 0..10_000 {
            let requests = fetcher.poll(now);
            if requests.is_empty() {
                return None;
            }
            for (peer, request) in requests {
                let answer = self.servers[&peer].answer(&request).unwrap();
                match fetcher.on_message(peer, answer, now) {
                    FetchEvent::Continue => {}
                    end @ (FetchEvent::Complete(_) | FetchEvent::HashMismatch { .. }) => {
                        return Some(end);
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        panic!("fetch did not end");
    }
}

#[test]
fn the_test_torrent_spans_several_pieces() {
    assert!(size() > 3 * METADATA_PIECE_LEN as u32, "{}", size());
    assert_ne!(size() % METADATA_PIECE_LEN as u32, 0);
}

#[test]
fn fetches_from_one_peer_two_requests_at_a_time() {
    let now = Instant::now();
    let mut fetcher = fetcher();
    let server = honest();
    fetcher.peer_supports(PeerKey(1), 3, size()).unwrap();
    assert_eq!(fetcher.peer_extension_id(PeerKey(1)), Some(3));

    let first = fetcher.poll(now);
    assert_eq!(
        first,
        [
            (PeerKey(1), MetadataMessage::Request { piece: 0 }),
            (PeerKey(1), MetadataMessage::Request { piece: 1 }),
        ]
    );
    // Nothing more until an answer frees a slot.
    assert!(fetcher.poll(now).is_empty());
    assert_eq!(fetcher.in_flight(PeerKey(1)), 2);

    let mut pending = first;
    let mut result = None;
    while let Some((peer, request)) = pending.pop() {
        match fetcher.on_message(peer, server.answer(&request).unwrap(), now) {
            FetchEvent::Continue => pending.extend(fetcher.poll(now)),
            FetchEvent::Complete(bytes) => result = Some(bytes),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(result, Some(info()));
    assert!(fetcher.is_complete());
    assert!(fetcher.poll(now).is_empty());
    assert_eq!(fetcher.next_deadline(), None);
    // Everything after completion is ignored.
    assert_eq!(
        fetcher.on_message(PeerKey(1), server.answer(&request(0)).unwrap(), now),
        FetchEvent::Ignored(Ignored::Finished)
    );

    let metainfo = metainfo_from_info_bytes(&result.unwrap(), &[], &[]).unwrap();
    assert_eq!(metainfo.info_hash(), TORRENT.info_hash());
    assert_eq!(metainfo.info(), TORRENT.info());
}

fn request(piece: u32) -> MetadataMessage {
    MetadataMessage::Request { piece }
}

#[test]
fn requests_are_spread_over_peers() {
    let now = Instant::now();
    let mut fetcher = fetcher();
    let swarm = Swarm::new([(1, honest()), (2, honest()), (3, honest())]);
    swarm.register(&mut fetcher);

    let requests = fetcher.poll(now);
    assert_eq!(requests.len(), 6);
    let mut per_peer = BTreeMap::<PeerKey, Vec<u32>>::new();
    for (peer, request) in &requests {
        per_peer.entry(*peer).or_default().push(request.piece());
    }
    assert!(per_peer.values().all(|p| p.len() == 2), "{per_peer:?}");
    let mut asked: Vec<u32> = per_peer.values().flatten().copied().collect();
    asked.sort_unstable();
    assert_eq!(asked, (0..6).collect::<Vec<_>>(), "each piece asked once");

    for (peer, request) in requests {
        let answer = swarm.servers[&peer].answer(&request).unwrap();
        assert_eq!(fetcher.on_message(peer, answer, now), FetchEvent::Continue);
    }
    assert_eq!(fetcher.progress(), Some((6, pieces() as usize)));
    assert_eq!(
        swarm.run(&mut fetcher, now),
        Some(FetchEvent::Complete(info()))
    );
}

#[test]
fn a_lying_peer_causes_a_restart_and_is_reported() {
    let now = Instant::now();
    let mut fetcher = fetcher();
    let swarm = Swarm::new([(1, liar()), (2, honest())]);
    swarm.register(&mut fetcher);

    let Some(FetchEvent::HashMismatch { suspects }) = swarm.run(&mut fetcher, now) else {
        panic!("the liar's pieces should spoil the hash");
    };
    // Both contributed; the protocol cannot tell which one lied.
    assert_eq!(suspects, [PeerKey(1), PeerKey(2)]);
    assert_eq!(fetcher.restarts(), 1);
    assert_eq!(fetcher.progress(), Some((0, pieces() as usize)));
    assert!(
        fetcher.poll(now).is_empty(),
        "the suspects are not asked again"
    );
    assert_eq!(
        fetcher.peer_supports(PeerKey(2), 3, size()),
        Err(UnusablePeer::Suspect),
        "a late handshake from a suspect is refused"
    );
    assert_eq!(
        fetcher.on_message(PeerKey(1), liar().answer(&request(0)).unwrap(), now),
        FetchEvent::Ignored(Ignored::UnknownPeer)
    );

    // An honest peer arrives and the fetch completes from it alone.
    let swarm = Swarm::new([(3, honest())]);
    swarm.register(&mut fetcher);
    assert_eq!(
        swarm.run(&mut fetcher, now),
        Some(FetchEvent::Complete(info()))
    );
}

#[test]
fn a_lone_liar_is_the_only_suspect() {
    let now = Instant::now();
    let mut fetcher = fetcher();
    let swarm = Swarm::new([(1, liar())]);
    swarm.register(&mut fetcher);
    assert_eq!(
        swarm.run(&mut fetcher, now),
        Some(FetchEvent::HashMismatch {
            suspects: vec![PeerKey(1)]
        })
    );
    let swarm = Swarm::new([(2, honest())]);
    swarm.register(&mut fetcher);
    assert_eq!(
        swarm.run(&mut fetcher, now),
        Some(FetchEvent::Complete(info()))
    );
}

#[test]
fn a_rejected_piece_is_asked_of_another_peer() {
    let now = Instant::now();
    // Requests outlive the backoff here, so only the reject is at play.
    let options = FetchOptions {
        request_timeout: Duration::from_secs(60),
        ..FetchOptions::default()
    };
    let mut fetcher = MetadataFetcher::new(TORRENT.info_hash(), options);
    let swarm = Swarm::new([(1, honest()), (2, honest())]);
    swarm.register(&mut fetcher);

    let requests = fetcher.poll(now);
    let (_, to_one) = requests.iter().find(|(p, _)| *p == PeerKey(1)).unwrap();
    let piece = to_one.piece();
    assert_eq!(
        fetcher.on_message(PeerKey(1), MetadataMessage::Reject { piece }, now),
        FetchEvent::Continue
    );
    // A reject for something we did not ask is ignored.
    assert_eq!(
        fetcher.on_message(PeerKey(1), MetadataMessage::Reject { piece }, now),
        FetchEvent::Ignored(Ignored::Unrequested)
    );
    // Peer 2 is full; once it answers, the rejected piece goes to it, not to peer 1 (backed
    // off).
    for (peer, request) in requests.iter().filter(|(p, _)| *p == PeerKey(2)) {
        let answer = swarm.servers[peer].answer(request).unwrap();
        fetcher.on_message(*peer, answer, now);
    }
    let next = fetcher.poll(now);
    assert!(next.iter().all(|(p, _)| *p == PeerKey(2)), "{next:?}");
    assert!(next.contains(&(PeerKey(2), MetadataMessage::Request { piece })));

    // After the backoff peer 1 is asked again.
    let later = now + DEFAULT_REJECT_BACKOFF;
    assert_eq!(fetcher.next_deadline(), Some(later));
    assert!(fetcher.poll(later).iter().any(|(p, _)| *p == PeerKey(1)));
}

#[test]
fn a_timed_out_request_is_asked_again_elsewhere() {
    let t0 = Instant::now();
    let options = FetchOptions {
        requests_per_peer: 1,
        ..FetchOptions::default()
    };
    let mut fetcher = MetadataFetcher::new(TORRENT.info_hash(), options);
    let server = honest();
    fetcher.peer_supports(PeerKey(1), 3, size()).unwrap();
    fetcher.peer_supports(PeerKey(2), 3, size()).unwrap();

    let first = fetcher.poll(t0);
    assert_eq!(
        first,
        [(PeerKey(1), request(0)), (PeerKey(2), request(1))],
        "one each"
    );
    // Peer 2 answers; peer 1 stays silent.
    let answer = server.answer(&request(1)).unwrap();
    assert_eq!(
        fetcher.on_message(PeerKey(2), answer, t0),
        FetchEvent::Continue
    );
    assert_eq!(fetcher.poll(t0), [(PeerKey(2), request(2))]);
    assert_eq!(fetcher.next_deadline(), Some(t0 + DEFAULT_REQUEST_TIMEOUT));

    // Just before the deadline nothing moves.
    let almost = t0 + DEFAULT_REQUEST_TIMEOUT - Duration::from_millis(1);
    assert!(fetcher.poll(almost).is_empty());
    assert_eq!(fetcher.in_flight(PeerKey(1)), 1);

    // At the deadline both requests expire (peer 2's was asked at t0 too) and both peers
    // back off. Then piece 0 goes to peer 2, which was not asked for it yet.
    let deadline = t0 + DEFAULT_REQUEST_TIMEOUT;
    let again = fetcher.poll(deadline);
    assert_eq!(fetcher.in_flight(PeerKey(1)), 0);
    assert_eq!(again, [], "both peers are backed off after a timeout");
    let after_backoff = deadline + DEFAULT_REJECT_BACKOFF;
    let again = fetcher.poll(after_backoff);
    assert_eq!(again, [(PeerKey(2), request(0)), (PeerKey(1), request(2))]);

    // The late answer of peer 1 for piece 0 is still welcome; peer 2's then is a duplicate.
    let late = server.answer(&request(0)).unwrap();
    assert_eq!(
        fetcher.on_message(PeerKey(1), late.clone(), after_backoff),
        FetchEvent::Continue
    );
    assert_eq!(
        fetcher.on_message(PeerKey(2), late, after_backoff),
        FetchEvent::Ignored(Ignored::Duplicate)
    );
    assert_eq!(fetcher.in_flight(PeerKey(2)), 0);
    assert_eq!(fetcher.progress(), Some((2, pieces() as usize)));
}

#[test]
fn unasked_and_malformed_data_is_ignored() {
    let now = Instant::now();
    let mut fetcher = fetcher();
    let server = honest();
    let data = |piece| server.answer(&request(piece)).unwrap();

    // Before anything is asked: unknown peer, then no round.
    assert_eq!(
        fetcher.on_message(PeerKey(9), data(0), now),
        FetchEvent::Ignored(Ignored::UnknownPeer)
    );
    fetcher.peer_supports(PeerKey(1), 3, size()).unwrap();
    assert_eq!(
        fetcher.on_message(PeerKey(1), data(0), now),
        FetchEvent::Ignored(Ignored::Unrequested)
    );
    assert_eq!(fetcher.poll(now).len(), 2);

    // Asked for 0 and 1; piece 2 was not asked.
    assert_eq!(
        fetcher.on_message(PeerKey(1), data(2), now),
        FetchEvent::Ignored(Ignored::Unrequested)
    );
    // Another total size.
    let wrong_size = MetadataMessage::Data {
        piece: 0,
        total_size: size() + 1,
        data: Bytes::from(vec![0; METADATA_PIECE_LEN]),
    };
    assert_eq!(
        fetcher.on_message(PeerKey(1), wrong_size, now),
        FetchEvent::Ignored(Ignored::WrongSize {
            total_size: size() + 1
        })
    );
    // Short, oversized and past-the-end data.
    for (piece, len) in [(0, 100), (0, METADATA_PIECE_LEN + 1)] {
        let wrong = MetadataMessage::Data {
            piece,
            total_size: size(),
            data: Bytes::from(vec![0; len]),
        };
        assert_eq!(
            fetcher.on_message(PeerKey(1), wrong, now),
            FetchEvent::Ignored(Ignored::WrongLength {
                expected: METADATA_PIECE_LEN,
                got: len
            })
        );
    }
    let past = MetadataMessage::Data {
        piece: pieces(),
        total_size: size(),
        data: Bytes::from_static(b"x"),
    };
    assert_eq!(
        fetcher.on_message(PeerKey(1), past, now),
        FetchEvent::Ignored(Ignored::NoSuchPiece)
    );
    // None of that was stored, and the real data still is.
    assert_eq!(fetcher.progress(), Some((0, pieces() as usize)));
    assert_eq!(
        fetcher.on_message(PeerKey(1), data(0), now),
        FetchEvent::Continue
    );
    assert_eq!(
        fetcher.on_message(PeerKey(1), data(0), now),
        FetchEvent::Ignored(Ignored::Duplicate)
    );
    // A peer asking us while we lack the metadata gets a reject (BEP 9).
    assert_eq!(
        fetcher.on_message(PeerKey(1), request(4), now),
        FetchEvent::Reply(MetadataMessage::Reject { piece: 4 })
    );
}

#[test]
fn unusable_advertisements_are_refused() {
    let mut fetcher = fetcher();
    assert_eq!(
        fetcher.peer_supports(PeerKey(1), 3, MAX_METADATA_SIZE + 1),
        Err(UnusablePeer::TooLarge {
            size: MAX_METADATA_SIZE + 1,
            limit: MAX_METADATA_SIZE
        })
    );
    assert_eq!(
        fetcher.peer_supports(PeerKey(1), 3, 0),
        Err(UnusablePeer::Empty)
    );
    assert_eq!(
        fetcher.peer_supports(PeerKey(1), 0, size()),
        Err(UnusablePeer::NotSupported)
    );
    let mut handshake = ExtendedHandshake::default();
    handshake.m.insert(UT_METADATA.to_owned(), 4);
    assert_eq!(
        fetcher.on_extended_handshake(PeerKey(1), &handshake),
        Err(UnusablePeer::NoMetadataSize)
    );
    assert!(fetcher.poll(Instant::now()).is_empty());
    assert_eq!(fetcher.target_size(), None);
    // The largest size is accepted.
    assert_eq!(
        fetcher.peer_supports(PeerKey(2), 3, MAX_METADATA_SIZE),
        Ok(())
    );
}

#[test]
fn a_handshake_disabling_the_extension_forgets_the_peer() {
    let now = Instant::now();
    let mut fetcher = fetcher();
    let mut handshake = ExtendedHandshake::default();
    handshake.m.insert(UT_METADATA.to_owned(), 5);
    handshake.metadata_size = Some(size());
    fetcher
        .on_extended_handshake(PeerKey(1), &handshake)
        .unwrap();
    assert_eq!(fetcher.peer_extension_id(PeerKey(1)), Some(5));
    assert_eq!(fetcher.poll(now).len(), 2);

    handshake.m.insert(UT_METADATA.to_owned(), 0);
    assert_eq!(
        fetcher.on_extended_handshake(PeerKey(1), &handshake),
        Err(UnusablePeer::NotSupported)
    );
    assert_eq!(fetcher.peer_extension_id(PeerKey(1)), None);
    assert_eq!(fetcher.in_flight(PeerKey(1)), 0);

    // Disconnection likewise: the pieces in flight go to the next peer.
    fetcher.peer_supports(PeerKey(2), 3, size()).unwrap();
    let requests = fetcher.poll(now);
    fetcher.peer_disconnected(PeerKey(2));
    fetcher.peer_supports(PeerKey(3), 3, size()).unwrap();
    assert_eq!(
        fetcher
            .poll(now)
            .iter()
            .map(|(p, r)| (p.0, r.piece()))
            .collect::<Vec<_>>(),
        requests
            .iter()
            .map(|(_, r)| (3, r.piece()))
            .collect::<Vec<_>>()
    );
}

#[test]
fn the_size_most_peers_claim_is_fetched() {
    let now = Instant::now();
    let mut fetcher = fetcher();
    fetcher.peer_supports(PeerKey(1), 3, size() + 10).unwrap();
    assert_eq!(fetcher.poll(now).len(), 2);
    assert_eq!(fetcher.target_size(), Some(size() + 10));
    // Two peers claiming the real size outvote the first while nothing is stored.
    fetcher.peer_supports(PeerKey(2), 3, size()).unwrap();
    fetcher.peer_supports(PeerKey(3), 3, size()).unwrap();
    let requests = fetcher.poll(now);
    assert_eq!(fetcher.target_size(), Some(size()));
    assert_eq!(fetcher.in_flight(PeerKey(1)), 0, "its requests are dropped");
    assert!(requests.iter().all(|(p, _)| *p != PeerKey(1)));
    // Its data for the old size is no longer wanted.
    let stale = MetadataMessage::Data {
        piece: 0,
        total_size: size() + 10,
        data: Bytes::from(vec![0; METADATA_PIECE_LEN]),
    };
    assert_eq!(
        fetcher.on_message(PeerKey(1), stale, now),
        FetchEvent::Ignored(Ignored::WrongSize {
            total_size: size() + 10
        })
    );
}

#[test]
fn a_wrong_size_claimed_first_loses_after_the_hash_check() {
    let now = Instant::now();
    let mut fetcher = fetcher();
    let mut wrong = TORRENT.info_bytes().to_vec();
    wrong.extend_from_slice(b"padding");
    // The liar came first; a tie goes to the first claim.
    let swarm = Swarm::new([
        (1, MetadataServer::new(Bytes::from(wrong)).unwrap()),
        (2, honest()),
    ]);
    swarm.register(&mut fetcher);
    assert_eq!(
        swarm.run(&mut fetcher, now),
        Some(FetchEvent::HashMismatch {
            suspects: vec![PeerKey(1)]
        })
    );
    assert_eq!(
        swarm.run(&mut fetcher, now),
        Some(FetchEvent::Complete(info()))
    );
}

#[test]
fn a_silent_peer_of_the_first_size_gives_way_to_another_size() {
    let mut now = Instant::now();
    let mut fetcher = fetcher();
    // Peer 1 claims a wrong size first and never answers; peer 2 has the real one.
    fetcher.peer_supports(PeerKey(1), 3, size() + 1).unwrap();
    fetcher.peer_supports(PeerKey(2), 3, size()).unwrap();
    let swarm = Swarm::new([(2, honest())]);
    let mut wakeups = 0;
    let requests = loop {
        let requests = fetcher.poll(now);
        if fetcher.target_size() == Some(size()) {
            break requests;
        }
        assert!(requests.iter().all(|(p, _)| *p == PeerKey(1)));
        now = fetcher.next_deadline().unwrap();
        wakeups += 1;
        assert!(wakeups < 100, "stuck on the silent peer");
    };
    // Five failures (the default limit) took three batches of two requests.
    assert_eq!(wakeups, 5);
    assert_eq!(requests.len(), 2);
    for (peer, request) in requests {
        assert_eq!(peer, PeerKey(2));
        let answer = swarm.servers[&peer].answer(&request).unwrap();
        assert_eq!(fetcher.on_message(peer, answer, now), FetchEvent::Continue);
    }
    assert_eq!(
        swarm.run(&mut fetcher, now),
        Some(FetchEvent::Complete(info()))
    );
}

#[test]
fn a_lone_failing_peer_is_forgiven() {
    let mut now = Instant::now();
    let mut fetcher = fetcher();
    fetcher.peer_supports(PeerKey(1), 3, size()).unwrap();
    for _ in 0..3 * DEFAULT_MAX_PEER_FAILURES {
        let requests = fetcher.poll(now);
        assert!(!requests.is_empty(), "the only peer is asked again");
        for (peer, request) in requests {
            let reject = MetadataMessage::Reject {
                piece: request.piece(),
            };
            assert_eq!(fetcher.on_message(peer, reject, now), FetchEvent::Continue);
        }
        now = fetcher.next_deadline().unwrap();
    }
}

#[test]
fn options_are_clamped() {
    let options = FetchOptions {
        requests_per_peer: 1000,
        ..FetchOptions::default()
    };
    let mut fetcher = MetadataFetcher::new(TORRENT.info_hash(), options);
    fetcher
        .peer_supports(PeerKey(1), 3, MAX_METADATA_SIZE)
        .unwrap();
    assert_eq!(fetcher.poll(Instant::now()).len(), MAX_REQUESTS_PER_PEER);

    let options = FetchOptions {
        requests_per_peer: 0,
        ..FetchOptions::default()
    };
    let mut fetcher = MetadataFetcher::new(TORRENT.info_hash(), options);
    fetcher.peer_supports(PeerKey(1), 3, size()).unwrap();
    assert_eq!(fetcher.poll(Instant::now()).len(), 1);
}

#[test]
fn the_server_answers_and_rejects_past_the_end() {
    let server = honest();
    assert_eq!(server.metadata_size(), size());
    assert_eq!(server.piece_count(), pieces());
    let mut whole = Vec::new();
    for piece in 0..pieces() {
        let Some(MetadataMessage::Data {
            piece: p,
            total_size,
            data,
        }) = server.answer(&request(piece))
        else {
            panic!("piece {piece} should be served");
        };
        assert_eq!((p, total_size), (piece, size()));
        whole.extend_from_slice(&data);
    }
    assert_eq!(whole, TORRENT.info_bytes());
    for piece in [pieces(), pieces() + 1, u32::MAX] {
        assert_eq!(
            server.answer(&request(piece)),
            Some(MetadataMessage::Reject { piece })
        );
    }
    // Data and rejects are not requests.
    assert_eq!(server.answer(&MetadataMessage::Reject { piece: 0 }), None);
    let data = server.answer(&request(0)).unwrap();
    assert_eq!(server.answer(&data), None);

    let mut handshake = ExtendedHandshake::default();
    server.advertise(&mut handshake);
    assert_eq!(
        handshake.extension_id(UT_METADATA),
        Some(OUR_UT_METADATA_ID)
    );
    assert_eq!(handshake.metadata_size, Some(size()));
    advertise_fetching(&mut handshake);
    assert_eq!(
        handshake.extension_id(UT_METADATA),
        Some(OUR_UT_METADATA_ID)
    );
    assert_eq!(handshake.metadata_size, None);
}

#[test]
fn the_server_refuses_empty_or_oversized_metadata() {
    assert_eq!(
        MetadataServer::new(Bytes::new()).unwrap_err(),
        MetadataSizeError::Empty
    );
    let too_big = Bytes::from(vec![0; MAX_METADATA_SIZE as usize + 1]);
    assert!(matches!(
        MetadataServer::new(too_big),
        Err(MetadataSizeError::TooLarge { .. })
    ));
    // A piece exactly the size of one metadata piece has no second piece.
    let one = MetadataServer::new(Bytes::from(vec![1; METADATA_PIECE_LEN])).unwrap();
    assert_eq!(one.piece_count(), 1);
    assert_eq!(one.piece(1), None);
    assert_eq!(one.piece(0).map(|p| p.len()), Some(METADATA_PIECE_LEN));
}

/// Sends `message` over the wire as a peer would and decodes it on the other side.
fn over_the_wire(message: Message) -> (u8, Bytes) {
    let mut buf = BytesMut::new();
    message.encode(&mut buf);
    match Message::decode_from(&mut buf, &WireLimits::default()) {
        Ok(Some(Message::Extended { id, payload })) => (id, payload),
        other => panic!("not an extended message: {other:?}"),
    }
}

#[test]
fn fetcher_and_server_talk_through_the_wire_format() {
    let now = Instant::now();
    let server = honest();
    let mut fetcher = fetcher();

    // Handshakes: the seed advertises metadata; the fetching side only the extension.
    let mut seed_hs = ExtendedHandshake::default();
    server.advertise(&mut seed_hs);
    let (hs_id, hs_payload) = over_the_wire(seed_hs.to_message());
    assert_eq!(hs_id, 0);
    let seed = PeerKey(1);
    fetcher
        .on_extended_handshake(seed, &ExtendedHandshake::decode(&hs_payload).unwrap())
        .unwrap();
    let mut our_hs = ExtendedHandshake::default();
    advertise_fetching(&mut our_hs);
    let (_, our_payload) = over_the_wire(our_hs.to_message());
    let our_id_as_seen_by_seed = ExtendedHandshake::decode(&our_payload)
        .unwrap()
        .extension_id(UT_METADATA)
        .unwrap();

    let mut pending = fetcher.poll(now);
    let mut result = None;
    while let Some((peer, request)) = pending.pop() {
        // Our request, under the seed's id.
        let id = fetcher.peer_extension_id(peer).unwrap();
        let (id, payload) = over_the_wire(request.to_message(id));
        assert_eq!(
            id, OUR_UT_METADATA_ID,
            "the seed asked for its messages under 1"
        );
        let answer = server
            .answer(&MetadataMessage::decode(&payload).unwrap())
            .unwrap();
        // The seed's answer, under our id.
        let (id, payload) = over_the_wire(answer.to_message(our_id_as_seen_by_seed));
        assert_eq!(id, OUR_UT_METADATA_ID);
        let answer = MetadataMessage::decode(&payload).unwrap();
        match fetcher.on_message(peer, answer, now) {
            FetchEvent::Continue => pending.extend(fetcher.poll(now)),
            FetchEvent::Complete(bytes) => result = Some(bytes),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(result, Some(info()));
}

#[test]
fn metainfo_takes_trackers_and_web_seeds_from_the_magnet() {
    let trackers = vec![
        "http://a.example/announce".to_owned(),
        String::new(),
        "http://b.example/announce".to_owned(),
        "http://a.example/announce".to_owned(),
    ];
    let seeds = vec!["https://origin.example/".to_owned()];
    let metainfo = metainfo_from_info_bytes(TORRENT.info_bytes(), &trackers, &seeds).unwrap();
    assert_eq!(metainfo.info_hash(), TORRENT.info_hash());
    assert_eq!(
        metainfo.announce.as_deref(),
        Some("http://a.example/announce")
    );
    assert_eq!(
        metainfo.announce_list,
        [
            vec!["http://a.example/announce".to_owned()],
            vec!["http://b.example/announce".to_owned()]
        ]
    );
    assert_eq!(metainfo.url_list, seeds);
    assert_eq!(
        metainfo.magnet().trackers,
        ["http://a.example/announce", "http://b.example/announce"]
    );
    // It is a torrent like any other.
    let reparsed = Metainfo::from_bytes(&metainfo.to_bytes()).unwrap();
    assert_eq!(reparsed, metainfo);

    // One tracker: no announce-list.
    let single = metainfo_from_info_bytes(TORRENT.info_bytes(), &trackers[..1], &[]).unwrap();
    assert!(single.announce_list.is_empty());
    assert_eq!(single.trackers(), ["http://a.example/announce"]);
}

#[test]
fn metainfo_keeps_at_most_the_default_tracker_and_seed_counts() {
    let many: Vec<String> = (0..150).map(|i| format!("http://t{i}.example/")).collect();
    let metainfo = metainfo_from_info_bytes(TORRENT.info_bytes(), &many, &many).unwrap();
    assert_eq!(metainfo.trackers().len(), DEFAULT_MAX_TRACKERS);
    assert_eq!(metainfo.trackers()[0], many[0]);
    assert_eq!(metainfo.url_list.len(), DEFAULT_MAX_WEB_SEEDS);
    assert_eq!(
        Metainfo::from_bytes(&metainfo.to_bytes()).unwrap(),
        metainfo
    );
}

#[test]
fn metainfo_refuses_anything_but_one_valid_info_dictionary() {
    let mut trailing = TORRENT.info_bytes().to_vec();
    trailing.extend_from_slice(b"8:url-list3:abc");
    assert_eq!(
        metainfo_from_info_bytes(&trailing, &[], &[]),
        Err(MetainfoError::Bencode(BencodeError::TrailingBytes))
    );
    for bad in [&b""[..], b"de", b"i1e", b"d4:name1:xe", b"garbage"] {
        assert!(metainfo_from_info_bytes(bad, &[], &[]).is_err(), "{bad:?}");
    }
    let too_big = vec![b'x'; MAX_METADATA_SIZE as usize + 1];
    assert!(matches!(
        metainfo_from_info_bytes(&too_big, &[], &[]),
        Err(MetainfoError::Bencode(BencodeError::TooLarge { .. }))
    ));
}

/// xorshift64*, enough to shuffle deliveries from a proptest seed.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Answers arrive in any order, some twice, some rejected, some lost (then timed out);
    /// the fetch still ends with exactly the info dictionary.
    #[test]
    fn any_delivery_order_completes_with_the_right_bytes(
        seed in 1u64..,
        peer_count in 1u64..5,
        requests_per_peer in 1usize..4,
    ) {
        let mut rng = seed;
        let options = FetchOptions { requests_per_peer, ..FetchOptions::default() };
        let mut fetcher = MetadataFetcher::new(TORRENT.info_hash(), options);
        let server = honest();
        for key in 0..peer_count {
            fetcher.peer_supports(PeerKey(key), 3, size()).unwrap();
        }
        let mut now = Instant::now();
        let mut pool: Vec<(PeerKey, MetadataMessage)> = Vec::new();
        let mut result = None;
        for _ in 0..5_000 {
            pool.extend(fetcher.poll(now).into_iter().map(|(peer, request)| {
                (peer, server.answer(&request).unwrap())
            }));
            if let Some(deadline) = fetcher.next_deadline() {
                prop_assert!(deadline > now, "a deadline in the past would spin the session");
            }
            if pool.is_empty() {
                // Everything was lost or backed off: let time pass.
                now = fetcher.next_deadline().unwrap();
                continue;
            }
            let pick = (next(&mut rng) % pool.len() as u64) as usize;
            let roll = next(&mut rng) % 10;
            let (peer, answer) = if roll == 0 {
                pool[pick].clone() // delivered now and again later
            } else {
                pool.swap_remove(pick)
            };
            let answer = match (roll, &answer) {
                (1, _) => continue, // lost
                (2, message) => MetadataMessage::Reject { piece: message.piece() },
                _ => answer,
            };
            match fetcher.on_message(peer, answer, now) {
                FetchEvent::Complete(bytes) => {
                    result = Some(bytes);
                    break;
                }
                FetchEvent::Continue | FetchEvent::Ignored(_) => {}
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
        prop_assert_eq!(result, Some(info()));
    }
}

/// One thing the session may do to a fetcher.
#[derive(Debug, Clone)]
enum Op {
    Supports { peer: u64, id: u8, size: u32 },
    Disconnect { peer: u64 },
    Poll { advance_ms: u64 },
    Message { peer: u64, message: MetadataMessage },
}

/// A one-piece metadata size, so random operations reach the hash check.
const TINY: u32 = 20;

fn arb_op() -> impl Strategy<Value = Op> {
    let peer = 0u64..4;
    let size = prop_oneof![
        Just(size()),
        Just(size() + 1),
        Just(TINY),
        0u32..100_000,
        Just(MAX_METADATA_SIZE),
        Just(MAX_METADATA_SIZE + 1),
        Just(u32::MAX),
    ];
    let piece = prop_oneof![0u32..10, Just(u32::MAX)];
    let message = prop_oneof![
        // Whole one-piece metadata of the wrong bytes: reaches the hash check.
        Just(MetadataMessage::Data {
            piece: 0,
            total_size: TINY,
            data: Bytes::from(vec![7; TINY as usize]),
        }),
        piece
            .clone()
            .prop_map(|piece| MetadataMessage::Request { piece }),
        piece
            .clone()
            .prop_map(|piece| MetadataMessage::Reject { piece }),
        (piece, size.clone(), 0usize..=METADATA_PIECE_LEN + 1).prop_map(
            |(piece, total_size, len)| MetadataMessage::Data {
                piece,
                total_size,
                data: Bytes::from(vec![7; len]),
            }
        ),
    ];
    prop_oneof![
        (peer.clone(), any::<u8>(), size).prop_map(|(peer, id, size)| Op::Supports {
            peer,
            id,
            size
        }),
        peer.clone().prop_map(|peer| Op::Disconnect { peer }),
        (0u64..30_000).prop_map(|advance_ms| Op::Poll { advance_ms }),
        (peer, message).prop_map(|(peer, message)| Op::Message { peer, message }),
    ]
}

proptest! {
    /// Whatever the session and the peers do, the fetcher neither panics nor exceeds its
    /// bounds, and it completes only with bytes that hash to the info-hash.
    #[test]
    fn arbitrary_operations_never_panic_or_complete_wrongly(
        ops in proptest::collection::vec(arb_op(), 0..60),
    ) {
        let options = FetchOptions::default();
        let mut fetcher = MetadataFetcher::new(TORRENT.info_hash(), options);
        let mut now = Instant::now();
        for op in ops {
            match op {
                Op::Supports { peer, id, size } => {
                    let _ = fetcher.peer_supports(PeerKey(peer), id, size);
                }
                Op::Disconnect { peer } => fetcher.peer_disconnected(PeerKey(peer)),
                Op::Poll { advance_ms } => {
                    now += Duration::from_millis(advance_ms);
                    for (peer, request) in fetcher.poll(now) {
                        let is_request = matches!(request, MetadataMessage::Request { .. });
                        prop_assert!(is_request);
                        prop_assert!(fetcher.in_flight(peer) <= options.requests_per_peer);
                    }
                }
                Op::Message { peer, message } => {
                    if let FetchEvent::Complete(bytes) =
                        fetcher.on_message(PeerKey(peer), message, now)
                    {
                        prop_assert_eq!(bytes, info());
                    }
                }
            }
            if let Some((stored, needed)) = fetcher.progress() {
                prop_assert!(stored < needed);
                prop_assert!(needed <= metadata_piece_count(MAX_METADATA_SIZE) as usize);
            }
        }
    }
}
