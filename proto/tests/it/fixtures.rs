//! Torrents made by other tools (mktorrent, transmission-create), parsed and compared.
//!
//! The fixture folder `tests/fixtures/` holds a small content tree, torrents made from it by
//! `mktorrent` and `transmission-create`, torrents made by our builder, and a README that
//! records the commands and the info-hash `transmission-show` printed for each torrent.
//! These tests need no external tool, except the last one, which runs `transmission-show`
//! on a torrent we write and fails (never skips) when it is not installed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha1::{Digest, Sha1};
use swarmcdn_proto::metainfo::{Metainfo, TorrentBuilder};
use swarmcdn_proto::{InfoHash, RelativePath};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn content() -> PathBuf {
    fixtures().join("content")
}

fn load(name: &str) -> Metainfo {
    let bytes = std::fs::read(fixtures().join(name)).unwrap();
    Metainfo::from_bytes(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The `| file.torrent | info-hash |` rows of the README's table.
fn recorded_hashes() -> BTreeMap<String, InfoHash> {
    let readme = std::fs::read_to_string(fixtures().join("README.md")).unwrap();
    readme
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line
                .split('|')
                .map(|c| c.trim().trim_matches('`'))
                .collect();
            let [_, file, hash, ..] = cells.as_slice() else {
                return None;
            };
            if !file.ends_with(".torrent") {
                return None;
            }
            let hash = InfoHash::from_text(hash).unwrap_or_else(|e| panic!("{file}: {e}"));
            Some((file.to_string(), hash))
        })
        .collect()
}

/// The multi-file content's files, in torrent order, with their sizes.
const MULTI_FILES: [(&str, u64); 3] = [
    ("multi/data/deep/tail.bin", 50_001),
    ("multi/data/exact.bin", 65_536),
    ("multi/readme.txt", 3_000),
];

fn multi_builder(piece_length: u32) -> TorrentBuilder {
    TorrentBuilder::new("multi")
        .add_dir(&content().join("multi"))
        .unwrap()
        .piece_length(piece_length)
}

fn single_builder(piece_length: u32) -> TorrentBuilder {
    TorrentBuilder::new("single")
        .add_file(
            RelativePath::parse("single.bin").unwrap(),
            content().join("single.bin"),
        )
        .piece_length(piece_length)
}

/// The torrents our builder writes into the fixture folder (see the README).
fn ours() -> Vec<(&'static str, Metainfo)> {
    vec![
        (
            "ours-single.torrent",
            single_builder(32 * 1024)
                .announce("http://tracker.example/announce")
                .build()
                .unwrap(),
        ),
        (
            "ours-multi.torrent",
            multi_builder(32 * 1024)
                .announce("http://tracker.example/announce")
                .url_list(vec!["http://seed.example/files/".into()])
                .build()
                .unwrap(),
        ),
    ]
}

#[test]
fn every_fixture_is_recorded_and_parses_to_the_recorded_hash() {
    let recorded = recorded_hashes();
    let mut seen = 0;
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if !name.ends_with(".torrent") {
            continue;
        }
        let hash = recorded
            .get(&name)
            .unwrap_or_else(|| panic!("{name} has no recorded hash in README.md"));
        let m = load(&name);
        assert_eq!(m.info_hash(), *hash, "{name}");
        // Re-encoding keeps the info-hash (the info bytes are written back verbatim).
        let again = Metainfo::from_bytes(&m.to_bytes()).unwrap();
        assert_eq!(again.info_hash(), *hash, "{name} re-encoded");
        seen += 1;
    }
    assert_eq!(
        seen,
        recorded.len(),
        "README records a torrent that is missing"
    );
    assert!(seen >= 8);
}

#[test]
fn file_lists_and_sizes_match_the_content() {
    for name in ["mk-single.torrent", "tr-single.torrent"] {
        let m = load(name);
        let info = m.info();
        assert!(!info.is_multi_file());
        assert_eq!(info.name(), "single.bin");
        assert_eq!(info.total_length(), 103_634);
        assert_eq!(info.piece_length(), 32 * 1024);
        assert_eq!(info.piece_count(), 4);
        assert_eq!(info.piece_len(3), Some(103_634 - 3 * 32 * 1024));
        assert_eq!(info.files()[0].path.to_string(), "single.bin");
    }
    for (name, piece_length, count) in [
        ("mk-multi.torrent", 32 * 1024, 4),
        ("mk-multi-webseed.torrent", 64 * 1024, 2),
        ("tr-multi.torrent", 16 * 1024, 8),
    ] {
        let m = load(name);
        let info = m.info();
        assert!(info.is_multi_file(), "{name}");
        assert_eq!(info.name(), "multi");
        assert_eq!(info.piece_length(), piece_length, "{name}");
        assert_eq!(info.piece_count(), count, "{name}");
        let files: Vec<(String, u64)> = info
            .files()
            .iter()
            .map(|f| (f.path.to_string(), f.length))
            .collect();
        let expected: Vec<(String, u64)> = MULTI_FILES
            .iter()
            .map(|(p, l)| (p.to_string(), *l))
            .collect();
        assert_eq!(files, expected, "{name}");
    }
    let exact = load("mk-exact.torrent");
    assert_eq!(exact.info().total_length(), 65_536);
    assert_eq!(
        exact.info().piece_count(),
        2,
        "no extra hash for an exact multiple"
    );
}

#[test]
fn outer_fields_are_read() {
    let m = load("mk-multi.torrent");
    assert_eq!(
        m.announce.as_deref(),
        Some("http://tracker.example/announce")
    );
    assert_eq!(
        m.announce_list,
        [
            vec!["http://tracker.example/announce".to_string()],
            vec!["http://backup.example/announce".to_string()]
        ]
    );
    assert_eq!(m.comment.as_deref(), Some("swarmcdn fixture"));
    assert_eq!(m.created_by.as_deref(), Some("mktorrent 1.1"));
    // mktorrent writes a single web seed as a plain string (BEP 19 allows both forms).
    let seeded = load("mk-multi-webseed.torrent");
    assert_eq!(seeded.url_list, ["http://seed.example/files/"]);
    let tr = load("tr-single.torrent");
    assert_eq!(
        tr.created_by.as_deref(),
        Some("Transmission/3.00 (bb6b5a062e)")
    );
    assert!(tr.creation_date.is_some());
}

#[test]
fn canonical_fixtures_re_encode_byte_for_byte() {
    for name in ["mk-single.torrent", "mk-multi.torrent", "mk-exact.torrent"] {
        let bytes = std::fs::read(fixtures().join(name)).unwrap();
        assert_eq!(load(name).to_bytes(), bytes, "{name}");
    }
}

#[test]
fn piece_hashes_verify_against_the_content_through_the_file_mapping() {
    for name in [
        "mk-single.torrent",
        "mk-multi.torrent",
        "mk-multi-webseed.torrent",
        "tr-single.torrent",
        "tr-multi.torrent",
        "mk-exact.torrent",
    ] {
        let m = load(name);
        let info = m.info();
        // mk-exact was made from a file inside `multi/`.
        let root = if name == "mk-exact.torrent" {
            content().join("multi/data")
        } else {
            content()
        };
        let data: Vec<Vec<u8>> = info
            .files()
            .iter()
            .map(|f| std::fs::read(f.path.to_path_under(&root)).unwrap())
            .collect();
        for piece in 0..info.piece_count() {
            let mut hasher = Sha1::new();
            for run in info.piece_file_ranges(piece).unwrap() {
                let range = run.file_range();
                hasher.update(&data[run.file_index][range.start as usize..range.end as usize]);
            }
            let hash: [u8; 20] = hasher.finalize().into();
            assert_eq!(Some(&hash), info.piece_hash(piece), "{name} piece {piece}");
        }
    }
}

#[test]
fn our_builder_matches_mktorrent_info_hashes() {
    let pairs = [
        ("mk-single.torrent", single_builder(32 * 1024)),
        ("mk-multi.torrent", multi_builder(32 * 1024)),
        ("mk-multi-webseed.torrent", multi_builder(64 * 1024)),
        (
            "mk-exact.torrent",
            TorrentBuilder::new("x")
                .add_file(
                    RelativePath::parse("exact.bin").unwrap(),
                    content().join("multi/data/exact.bin"),
                )
                .piece_length(32 * 1024),
        ),
    ];
    for (name, builder) in pairs {
        let theirs = load(name);
        let ours = builder.build().unwrap();
        assert_eq!(ours.info_bytes(), theirs.info_bytes(), "{name}");
        assert_eq!(ours.info_hash(), theirs.info_hash(), "{name}");
    }
}

#[test]
fn transmission_torrents_differ_only_by_their_private_flag() {
    // transmission-create writes `private: 0`; we (and mktorrent) leave the key out, which
    // changes the info-hash but not the content description.
    let theirs = load("tr-multi.torrent");
    let ours = multi_builder(16 * 1024).build().unwrap();
    assert_ne!(ours.info_hash(), theirs.info_hash());
    assert_eq!(ours.info(), theirs.info());
    let mut with_flag = ours.info_bytes()[..ours.info_bytes().len() - 1].to_vec();
    with_flag.extend_from_slice(b"7:privatei0ee");
    assert_eq!(with_flag, theirs.info_bytes());
}

#[test]
fn our_builder_output_matches_the_committed_fixtures() {
    // Set SWARMCDN_UPDATE_FIXTURES=1 to rewrite them (then record their hashes in README.md).
    let update = std::env::var_os("SWARMCDN_UPDATE_FIXTURES").is_some();
    for (name, built) in ours() {
        let path = fixtures().join(name);
        if update {
            std::fs::write(&path, built.to_bytes()).unwrap();
        }
        let committed = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{name}: {e} (run with SWARMCDN_UPDATE_FIXTURES=1)"));
        assert_eq!(committed, built.to_bytes(), "{name} changed");
    }
}

#[test]
fn transmission_show_accepts_our_torrents() {
    let dir = tempfile::tempdir().unwrap();
    for (name, built) in ours() {
        let path = dir.path().join(name);
        std::fs::write(&path, built.to_bytes()).unwrap();
        let output = match Command::new("transmission-show").arg(&path).output() {
            Ok(output) => output,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "transmission-show is not installed: install the `transmission-cli` package \
                 (CI installs it); this test checks our torrents against it"
            ),
            Err(e) => panic!("cannot run transmission-show: {e}"),
        };
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "transmission-show rejected {name}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let hex = built.info_hash().to_hex();
        assert!(
            stdout
                .lines()
                .any(|l| l.trim_start().starts_with("Hash") && l.contains(&hex)),
            "transmission-show did not print {hex} for {name}:\n{stdout}"
        );
        assert!(stdout.contains(&format!("Piece Count: {}", built.info().piece_count())));
        for file in built.info().files() {
            assert!(stdout.contains(&file.path.to_string()), "{name}: {file:?}");
        }
    }
}
