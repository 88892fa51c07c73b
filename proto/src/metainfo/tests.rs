//! Parsing, validation and encoding of metainfo.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::bencode::Value;

const K16: i64 = 16 * 1024;

fn s(text: &str) -> Value {
    Value::bytes(text.as_bytes())
}

fn dict(entries: Vec<(&str, Value)>) -> Value {
    entries.into_iter().collect()
}

/// A `pieces` value with the right number of (dummy) hashes for `total` bytes.
fn pieces_for(total: i64, piece_length: i64) -> Value {
    // Capped: tests of oversize content fail before the hashes are counted.
    let count = (total as u64).div_ceil(piece_length as u64).min(200_000);
    Value::Bytes(vec![0xab; 20 * count as usize])
}

fn single_info(length: i64) -> Value {
    dict(vec![
        ("length", Value::Int(length)),
        ("name", s("file.bin")),
        ("piece length", Value::Int(K16)),
        ("pieces", pieces_for(length, K16)),
    ])
}

fn file_entry(length: i64, path: &[&[u8]]) -> Value {
    dict(vec![
        ("length", Value::Int(length)),
        (
            "path",
            Value::List(path.iter().map(|c| Value::bytes(*c)).collect()),
        ),
    ])
}

fn multi_info(files: &[(i64, &[&[u8]])]) -> Value {
    let total = files
        .iter()
        .fold(0i64, |t, (l, _)| t.saturating_add((*l).max(0)));
    dict(vec![
        (
            "files",
            Value::List(files.iter().map(|(l, p)| file_entry(*l, p)).collect()),
        ),
        ("name", s("site")),
        ("piece length", Value::Int(K16)),
        ("pieces", pieces_for(total, K16)),
    ])
}

fn torrent(info: Value) -> Vec<u8> {
    dict(vec![
        ("announce", s("http://tracker.example/announce")),
        ("info", info),
    ])
    .to_bytes()
}

fn parse(info: Value) -> Result<Metainfo, MetainfoError> {
    Metainfo::from_bytes(&torrent(info))
}

fn with(mut value: Value, key: &str, new: Value) -> Value {
    if let Value::Dict(d) = &mut value {
        d.insert(key.as_bytes().to_vec(), new);
    }
    value
}

fn without(mut value: Value, key: &str) -> Value {
    if let Value::Dict(d) = &mut value {
        d.remove(key.as_bytes());
    }
    value
}

fn sample_multi() -> Value {
    multi_info(&[
        (20_000, &[b"index.html"]),
        (0, &[b"empty"]),
        (K16, &[b"js", b"app.js"]),
    ])
}

#[test]
fn parses_a_single_file_torrent() {
    let m = parse(single_info(40_000)).unwrap();
    let info = m.info();
    assert_eq!(
        m.announce.as_deref(),
        Some("http://tracker.example/announce")
    );
    assert_eq!(info.name(), "file.bin");
    assert_eq!(info.piece_length(), 16 * 1024);
    assert_eq!(info.piece_count(), 3);
    assert_eq!(info.total_length(), 40_000);
    assert!(!info.is_multi_file());
    assert!(!info.is_private());
    assert_eq!(info.layout(), &FileLayout::Single { length: 40_000 });
    assert_eq!(info.files().len(), 1);
    assert_eq!(info.files()[0].path.to_string(), "file.bin");
    assert_eq!(info.piece_len(2), Some(40_000 - 2 * 16 * 1024));
}

#[test]
fn parses_a_multi_file_torrent() {
    let m = parse(sample_multi()).unwrap();
    let info = m.info();
    assert!(info.is_multi_file());
    assert_eq!(info.total_length(), 20_000 + 16 * 1024);
    let paths: Vec<String> = info.files().iter().map(|f| f.path.to_string()).collect();
    assert_eq!(paths, ["site/index.html", "site/empty", "site/js/app.js"]);
    let FileLayout::Multi { files } = info.layout() else {
        panic!("multi-file layout expected");
    };
    assert_eq!(files[2].path.to_string(), "js/app.js");
    assert_eq!(files[2].length, 16 * 1024);
}

#[test]
fn reads_all_outer_fields() {
    let bytes = dict(vec![
        ("announce", s("http://a/announce")),
        (
            "announce-list",
            Value::List(vec![
                Value::List(vec![s("http://a/announce"), s("http://b/announce")]),
                Value::List(vec![]),
                Value::List(vec![s("udp://c:80")]),
            ]),
        ),
        ("comment", s("hello")),
        ("created by", s("swarmcdn")),
        ("creation date", Value::Int(1_700_000_000)),
        ("info", single_info(100)),
        ("url-list", Value::List(vec![s("http://seed/"), s("")])),
        ("unknown", Value::Int(7)),
    ])
    .to_bytes();
    let m = Metainfo::from_bytes(&bytes).unwrap();
    assert_eq!(
        m.announce_list,
        [
            vec!["http://a/announce".to_string(), "http://b/announce".into()],
            vec!["udp://c:80".into()]
        ]
    );
    assert_eq!(m.url_list, ["http://seed/"]);
    assert_eq!(m.comment.as_deref(), Some("hello"));
    assert_eq!(m.created_by.as_deref(), Some("swarmcdn"));
    assert_eq!(m.creation_date, Some(1_700_000_000));
    assert_eq!(
        m.trackers(),
        ["http://a/announce", "http://b/announce", "udp://c:80"]
    );
    // Re-encoding drops the unknown outer key and the empty tier but keeps the info-hash.
    let again = Metainfo::from_bytes(&m.to_bytes()).unwrap();
    assert_eq!(again, m);
    assert!(!m.to_bytes().windows(7).any(|w| w == b"unknown"));
}

#[test]
fn info_hash_is_over_the_raw_info_bytes() {
    // Keys out of order and an unknown key: a re-encoding would differ, the hash must not.
    let info: &[u8] = b"d4:name8:file.bin6:lengthi100e12:piece lengthi16384e6:pieces20:\
                        aaaaaaaaaaaaaaaaaaaa5:zzzzzi1ee";
    let mut bytes = b"d8:announce4:http4:info".to_vec();
    bytes.extend_from_slice(info);
    bytes.push(b'e');
    let m = Metainfo::from_bytes(&bytes).unwrap();
    let expected: [u8; 20] = Sha1::digest(info).into();
    assert_eq!(m.info_hash(), InfoHash::new(expected));
    assert_eq!(m.info_bytes(), info);
    assert_eq!(m.to_bytes(), bytes);
    let canonical = bencode::decode(info, &bencode::Limits::DEFAULT)
        .unwrap()
        .to_bytes();
    assert_ne!(canonical, info);
}

#[test]
fn url_list_may_be_a_string() {
    let base = dict(vec![("info", single_info(10))]);
    let as_string = with(base.clone(), "url-list", s("http://seed/"));
    let as_list = with(
        base.clone(),
        "url-list",
        Value::List(vec![s("http://seed/")]),
    );
    let a = Metainfo::from_bytes(&as_string.to_bytes()).unwrap();
    let b = Metainfo::from_bytes(&as_list.to_bytes()).unwrap();
    assert_eq!(a.url_list, ["http://seed/"]);
    assert_eq!(a, b);
    let empty = with(base, "url-list", s(""));
    assert!(
        Metainfo::from_bytes(&empty.to_bytes())
            .unwrap()
            .url_list
            .is_empty()
    );
}

#[test]
fn private_flag_is_read() {
    let m = parse(with(single_info(10), "private", Value::Int(1))).unwrap();
    assert!(m.info().is_private());
}

#[test]
fn magnet_names_torrent_trackers_and_seeds() {
    let bytes = dict(vec![
        ("announce", s("http://a/")),
        (
            "announce-list",
            Value::List(vec![Value::List(vec![s("http://a/"), s("http://b/")])]),
        ),
        ("info", single_info(10)),
        ("url-list", s("http://seed/")),
    ])
    .to_bytes();
    let m = Metainfo::from_bytes(&bytes).unwrap();
    let magnet = m.magnet();
    assert_eq!(magnet.info_hash, m.info_hash());
    assert_eq!(magnet.display_name.as_deref(), Some("file.bin"));
    assert_eq!(magnet.trackers, ["http://a/", "http://b/"]);
    assert_eq!(magnet.web_seeds, ["http://seed/"]);
    assert_eq!(Magnet::parse(&magnet.to_uri()), Ok(magnet));
}

// ---- rejections, one per rule ----

fn invalid_path(result: Result<Metainfo, MetainfoError>) -> PathError {
    match result {
        Err(MetainfoError::InvalidPath { source, .. }) => source,
        other => panic!("expected InvalidPath, got {other:?}"),
    }
}

#[test]
fn rejects_path_traversal() {
    let err = invalid_path(parse(multi_info(&[(10, &[b"a", b"..", b"b"])])));
    assert_eq!(err, PathError::DotComponent("..".into()));
    let err = invalid_path(parse(multi_info(&[(10, &[b".."])])));
    assert_eq!(err, PathError::DotComponent("..".into()));
    let err = invalid_path(parse(multi_info(&[(10, &[b"."])])));
    assert_eq!(err, PathError::DotComponent(".".into()));
}

#[test]
fn rejects_absolute_and_empty_paths() {
    assert_eq!(
        invalid_path(parse(multi_info(&[(10, &[b"", b"etc", b"passwd"])]))),
        PathError::EmptyComponent
    );
    assert!(matches!(
        invalid_path(parse(multi_info(&[(10, &[b"/etc/passwd"])]))),
        PathError::BadCharacter(_)
    ));
    assert!(matches!(
        invalid_path(parse(multi_info(&[(10, &[b"a\\b"])]))),
        PathError::BadCharacter(_)
    ));
    assert_eq!(
        invalid_path(parse(multi_info(&[(10, &[])]))),
        PathError::Empty
    );
}

#[test]
fn rejects_non_utf8_paths() {
    assert_eq!(
        invalid_path(parse(multi_info(&[(10, &[b"ok", b"\xff\xfe"])]))),
        PathError::NotUtf8
    );
    assert_eq!(
        parse(with(single_info(10), "name", Value::bytes(&b"\xff"[..]))),
        Err(MetainfoError::InvalidName(PathError::NotUtf8))
    );
}

#[test]
fn rejects_paths_too_deep_once_the_folder_is_added() {
    let deep: Vec<&[u8]> = vec![b"d"; crate::path::MAX_COMPONENTS];
    let err = invalid_path(parse(multi_info(&[(10, &deep)])));
    assert_eq!(err, PathError::TooDeep(crate::path::MAX_COMPONENTS + 1));
}

#[test]
fn rejects_bad_names() {
    for bad in ["", ".", "..", "a/b", "/abs", "x\0y"] {
        assert!(
            matches!(
                parse(with(single_info(10), "name", s(bad))),
                Err(MetainfoError::InvalidName(_))
            ),
            "{bad:?}"
        );
        assert!(
            matches!(
                parse(with(sample_multi(), "name", s(bad))),
                Err(MetainfoError::InvalidName(_))
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn rejects_duplicate_paths() {
    assert_eq!(
        parse(multi_info(&[
            (10, &[b"a", b"b"]),
            (5, &[b"c"]),
            (10, &[b"a", b"b"])
        ])),
        Err(MetainfoError::DuplicatePath("a/b".into()))
    );
}

#[test]
fn rejects_a_file_that_is_also_a_folder() {
    // `a`, `a-b`, `a/b`: the clash is not between neighbours in string order.
    assert_eq!(
        parse(multi_info(&[
            (10, &[b"a"]),
            (5, &[b"a-b"]),
            (10, &[b"a", b"b"])
        ])),
        Err(MetainfoError::PathConflict {
            file: "a".into(),
            other: "a/b".into()
        })
    );
    assert!(matches!(
        parse(multi_info(&[(10, &[b"x", b"y", b"z"]), (5, &[b"x", b"y"])])),
        Err(MetainfoError::PathConflict { .. })
    ));
}

#[test]
fn rejects_wrong_piece_count() {
    let info = with(single_info(40_000), "pieces", pieces_for(20_000, K16));
    assert_eq!(
        parse(info),
        Err(MetainfoError::PieceCountMismatch {
            expected: 3,
            actual: 2
        })
    );
    // One hash too many for an exact multiple of the piece length.
    let info = with(single_info(2 * K16), "pieces", Value::Bytes(vec![0; 60]));
    assert_eq!(
        parse(info),
        Err(MetainfoError::PieceCountMismatch {
            expected: 2,
            actual: 3
        })
    );
}

#[test]
fn rejects_pieces_not_a_multiple_of_20() {
    let info = with(single_info(100), "pieces", Value::Bytes(vec![0; 21]));
    assert_eq!(parse(info), Err(MetainfoError::PiecesNotMultipleOf20(21)));
}

#[test]
fn rejects_bad_piece_lengths() {
    let with_length = |l: i64| parse(with(single_info(100), "piece length", Value::Int(l)));
    assert_eq!(
        with_length(3 * K16),
        Err(MetainfoError::PieceLengthNotPowerOfTwo(3 * K16))
    );
    assert_eq!(
        with_length(8192),
        Err(MetainfoError::PieceLengthTooSmall(8192))
    );
    assert_eq!(with_length(0), Err(MetainfoError::PieceLengthTooSmall(0)));
    assert_eq!(
        with_length(-K16),
        Err(MetainfoError::PieceLengthTooSmall(-K16))
    );
    let big = 32 * 1024 * 1024;
    assert_eq!(
        with_length(big),
        Err(MetainfoError::PieceLengthTooLarge(big))
    );
    assert_eq!(
        with_length(i64::MAX),
        Err(MetainfoError::PieceLengthTooLarge(i64::MAX))
    );
    // Both ends of the range are accepted.
    assert!(with_length(K16).is_ok());
    let max = parse(dict(vec![
        ("length", Value::Int(100)),
        ("name", s("f")),
        ("piece length", Value::Int(16 * 1024 * 1024)),
        ("pieces", Value::Bytes(vec![0; 20])),
    ]));
    assert!(max.is_ok());
}

#[test]
fn rejects_negative_lengths() {
    assert_eq!(
        parse(single_info(-1)),
        Err(MetainfoError::NegativeLength {
            key: "info.length".into()
        })
    );
    assert_eq!(
        parse(multi_info(&[(10, &[b"a"]), (-5, &[b"b"])])),
        Err(MetainfoError::NegativeLength {
            key: "info.files[1].length".into()
        })
    );
}

#[test]
fn file_count_is_bounded() {
    let limits = MetainfoLimits {
        max_files: 3,
        ..MetainfoLimits::DEFAULT
    };
    let names: Vec<[u8; 1]> = (b'a'..=b'd').map(|c| [c]).collect();
    let entries: Vec<Vec<&[u8]>> = names.iter().map(|n| vec![&n[..]]).collect();
    let four: Vec<(i64, &[&[u8]])> = entries.iter().map(|p| (10, p.as_slice())).collect();
    assert_eq!(
        Metainfo::from_bytes_with(&torrent(multi_info(&four)), &limits),
        Err(MetainfoError::TooManyFiles { count: 4, limit: 3 })
    );
    assert!(Metainfo::from_bytes_with(&torrent(multi_info(&four[..3])), &limits).is_ok());
    assert_eq!(MetainfoLimits::default().max_files, DEFAULT_MAX_FILES);
}

#[test]
fn total_size_is_bounded() {
    let limits = MetainfoLimits {
        max_total_length: 100_000,
        ..MetainfoLimits::DEFAULT
    };
    assert_eq!(
        Metainfo::from_bytes_with(&torrent(single_info(100_001)), &limits),
        Err(MetainfoError::TotalTooLarge { limit: 100_000 })
    );
    assert!(Metainfo::from_bytes_with(&torrent(single_info(100_000)), &limits).is_ok());
    // Lengths that overflow a u64 when added up.
    let huge = multi_info(&[(i64::MAX, &[b"a"]), (i64::MAX, &[b"b"]), (10, &[b"c"])]);
    assert!(matches!(
        parse(huge),
        Err(MetainfoError::TotalTooLarge { .. })
    ));
    // The default limit: 2 GiB.
    assert_eq!(
        parse(single_info(2 * 1024 * 1024 * 1024 + 1)),
        Err(MetainfoError::TotalTooLarge {
            limit: DEFAULT_MAX_TOTAL_LENGTH
        })
    );
}

#[test]
fn tracker_and_web_seed_counts_are_bounded() {
    let limits = MetainfoLimits {
        max_trackers: 2,
        max_web_seeds: 2,
        ..MetainfoLimits::DEFAULT
    };
    let tiers = |n: usize| {
        Value::List(
            (0..n)
                .map(|i| Value::List(vec![s(&format!("http://t{i}/"))]))
                .collect(),
        )
    };
    let urls = |n: usize| Value::List((0..n).map(|i| s(&format!("http://w{i}/"))).collect());
    let base = dict(vec![("info", single_info(10))]);
    let check = |key: &str, value: Value| {
        Metainfo::from_bytes_with(&with(base.clone(), key, value).to_bytes(), &limits)
    };
    assert!(check("announce-list", tiers(2)).is_ok());
    assert_eq!(
        check("announce-list", tiers(3)),
        Err(MetainfoError::TooManyTrackers { limit: 2 })
    );
    assert!(check("url-list", urls(2)).is_ok());
    assert_eq!(
        check("url-list", urls(3)),
        Err(MetainfoError::TooManyWebSeeds { limit: 2 })
    );
}

#[test]
fn rejects_missing_keys() {
    let missing = |key: &str| Err(MetainfoError::MissingKey { key: key.into() });
    assert_eq!(
        Metainfo::from_bytes(&dict(vec![("announce", s("x"))]).to_bytes()),
        missing("info")
    );
    assert_eq!(
        parse(without(single_info(10), "name")),
        missing("info.name")
    );
    assert_eq!(
        parse(without(single_info(10), "piece length")),
        missing("info.piece length")
    );
    assert_eq!(
        parse(without(single_info(10), "pieces")),
        missing("info.pieces")
    );
    assert_eq!(
        parse(without(single_info(10), "length")),
        missing("info.length or info.files")
    );
    let no_length = with(
        sample_multi(),
        "files",
        Value::List(vec![dict(vec![("path", Value::List(vec![s("a")]))])]),
    );
    assert_eq!(parse(no_length), missing("info.files[0].length"));
    let no_path = with(
        sample_multi(),
        "files",
        Value::List(vec![dict(vec![("length", Value::Int(1))])]),
    );
    assert_eq!(parse(no_path), missing("info.files[0].path"));
}

fn assert_wrong(key: &str, r: Result<Metainfo, MetainfoError>) {
    assert!(
        matches!(&r, Err(MetainfoError::WrongType { key: k, .. }) if k == key),
        "{key}: {r:?}"
    )
}

#[test]
fn rejects_wrong_types() {
    assert_eq!(
        Metainfo::from_bytes(b"li1ee"),
        Err(MetainfoError::NotADictionary)
    );
    assert_wrong(
        "info",
        Metainfo::from_bytes(&dict(vec![("info", s("x"))]).to_bytes()),
    );
    assert_wrong(
        "info.name",
        parse(with(single_info(10), "name", Value::Int(1))),
    );
    assert_wrong(
        "info.piece length",
        parse(with(single_info(10), "piece length", s("16384"))),
    );
    assert_wrong(
        "info.pieces",
        parse(with(single_info(10), "pieces", Value::List(vec![]))),
    );
    assert_wrong(
        "info.length",
        parse(with(single_info(10), "length", s("10"))),
    );
    assert_wrong(
        "info.private",
        parse(with(single_info(10), "private", s("1"))),
    );
    assert_wrong(
        "info.files",
        parse(with(sample_multi(), "files", Value::Int(1))),
    );
    assert_wrong(
        "info.files[0]",
        parse(with(
            sample_multi(),
            "files",
            Value::List(vec![Value::Int(1)]),
        )),
    );
    assert_wrong(
        "info.files[0].path",
        parse(with(
            sample_multi(),
            "files",
            Value::List(vec![dict(vec![
                ("length", Value::Int(1)),
                ("path", s("a/b")),
            ])]),
        )),
    );
    assert_wrong(
        "info.files[0].path",
        parse(with(
            sample_multi(),
            "files",
            Value::List(vec![dict(vec![
                ("length", Value::Int(1)),
                ("path", Value::List(vec![Value::Int(3)])),
            ])]),
        )),
    );
    let outer = |key: &str, value: Value| {
        Metainfo::from_bytes(&dict(vec![("info", single_info(10)), (key, value)]).to_bytes())
    };
    assert_wrong("announce", outer("announce", Value::Int(1)));
    assert_wrong("announce-list", outer("announce-list", s("http://a/")));
    assert_wrong(
        "announce-list[0]",
        outer("announce-list", Value::List(vec![s("http://a/")])),
    );
    assert_wrong("url-list", outer("url-list", Value::Int(1)));
    assert_wrong(
        "url-list[0]",
        outer("url-list", Value::List(vec![Value::Int(1)])),
    );
    assert_wrong("comment", outer("comment", Value::List(vec![])));
    assert_wrong("creation date", outer("creation date", s("today")));
    assert_eq!(
        outer("announce", Value::bytes(&b"\xff"[..])),
        Err(MetainfoError::NotUtf8 {
            key: "announce".into()
        })
    );
}

#[test]
fn rejects_both_layouts_at_once() {
    let both = with(sample_multi(), "length", Value::Int(10));
    assert_eq!(parse(both), Err(MetainfoError::AmbiguousLayout));
}

#[test]
fn rejects_torrents_without_data() {
    assert_eq!(parse(multi_info(&[])), Err(MetainfoError::Empty));
    assert_eq!(
        parse(multi_info(&[(0, &[b"a"]), (0, &[b"b"])])),
        Err(MetainfoError::Empty)
    );
    assert_eq!(parse(single_info(0)), Err(MetainfoError::Empty));
}

#[test]
fn rejects_padding_files() {
    let mut entry = BTreeMap::new();
    entry.insert(b"attr".to_vec(), s("p"));
    entry.insert(b"length".to_vec(), Value::Int(10));
    entry.insert(b"path".to_vec(), Value::List(vec![s(".pad"), s("10")]));
    let info = with(
        multi_info(&[(10, &[b"a"]), (10, &[b"b"])]),
        "files",
        Value::List(vec![file_entry(10, &[b"a"]), Value::Dict(entry)]),
    );
    assert_eq!(parse(info), Err(MetainfoError::PaddingFile(1)));
}

#[test]
fn rejects_oversize_input_through_bencode_limits() {
    let limits = MetainfoLimits {
        bencode: bencode::Limits {
            max_input: 64,
            ..bencode::Limits::DEFAULT
        },
        ..MetainfoLimits::DEFAULT
    };
    assert!(matches!(
        Metainfo::from_bytes_with(&torrent(sample_multi()), &limits),
        Err(MetainfoError::Bencode(BencodeError::TooLarge { .. }))
    ));
}

#[test]
fn every_truncation_is_an_error() {
    let full = torrent(sample_multi());
    assert!(Metainfo::from_bytes(&full).is_ok());
    for cut in 0..full.len() {
        assert!(
            Metainfo::from_bytes(&full[..cut]).is_err(),
            "a prefix of {cut} bytes parsed"
        );
    }
}

#[test]
fn errors_read_clearly() {
    let err = parse(multi_info(&[(10, &[b"a", b".."])])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "path of file 0 is not acceptable: the path component `..` is not allowed"
    );
    let err = parse(with(single_info(10), "piece length", Value::Int(3 * K16))).unwrap_err();
    assert_eq!(err.to_string(), "piece length 49152 is not a power of two");
}

// ---- properties ----

fn arb_path() -> impl Strategy<Value = RelativePath> {
    proptest::collection::vec("[a-c]{1,2}|é", 1..4)
        .prop_map(|parts| RelativePath::from_components(parts).unwrap())
}

/// File contents up to 40 000 bytes (crossing 16 KiB piece boundaries), generated from a
/// length and a seed: drawing 40 000 separate bytes would make each case slow.
fn arb_content() -> impl Strategy<Value = Vec<u8>> {
    (0usize..40_000, any::<u64>()).prop_map(|(len, seed)| {
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    })
}

fn arb_files() -> impl Strategy<Value = Vec<(RelativePath, Vec<u8>)>> {
    proptest::collection::vec((arb_path(), arb_content()), 1..5).prop_filter(
        "paths must not clash",
        |files| {
            check_unique_paths(files.iter().map(|(p, _)| p)).is_ok()
                && files.iter().any(|(_, b)| !b.is_empty())
        },
    )
}

fn arb_url() -> impl Strategy<Value = String> {
    "[a-z]{1,8}://[a-z0-9./?&=%]{0,16}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn build_encode_parse_is_identity(
        files in arb_files(),
        folder in any::<bool>(),
        private in any::<bool>(),
        announce in proptest::option::of(arb_url()),
        tiers in proptest::collection::vec(proptest::collection::vec(arb_url(), 1..3), 0..3),
        seeds in proptest::collection::vec(arb_url(), 0..3),
        comment in proptest::option::of(".{0,20}"),
        date in proptest::option::of(any::<i64>()),
    ) {
        let mut builder = TorrentBuilder::new("bundle")
            .folder(folder)
            .private(private)
            .announce_list(tiers)
            .url_list(seeds);
        if let Some(a) = announce {
            builder = builder.announce(a);
        }
        if let Some(c) = comment {
            builder = builder.comment(c);
        }
        if let Some(d) = date {
            builder = builder.creation_date(d);
        }
        for (path, bytes) in files {
            builder = builder.add_bytes(path, bytes);
        }
        let built = builder.build().unwrap();
        let bytes = built.to_bytes();
        let parsed = Metainfo::from_bytes(&bytes).unwrap();
        prop_assert_eq!(&parsed, &built);
        prop_assert_eq!(parsed.to_bytes(), bytes);
        prop_assert_eq!(parsed.info().is_private(), private);
    }

    #[test]
    fn url_list_string_and_single_element_list_agree(url in arb_url()) {
        let base = dict(vec![("info", single_info(10))]);
        let a = Metainfo::from_bytes(&with(base.clone(), "url-list", s(&url)).to_bytes());
        let b = Metainfo::from_bytes(
            &with(base, "url-list", Value::List(vec![s(&url)])).to_bytes(),
        );
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(a.unwrap().url_list, vec![url]);
    }

    #[test]
    fn corrupted_torrents_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)
    ) {
        let mut bytes = torrent(sample_multi());
        for (at, byte) in flips {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        if let Ok(m) = Metainfo::from_bytes(&bytes) {
            prop_assert_eq!(Metainfo::from_bytes(&m.to_bytes()), Ok(m));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        // Random bytes are never a torrent with matching piece hashes.
        prop_assert!(Metainfo::from_bytes(&bytes).is_err());
    }
}
