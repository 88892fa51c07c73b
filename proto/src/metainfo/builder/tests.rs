//! The torrent builder: layout, ordering, piece hashes, sources, limits.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::*;
use crate::bencode;
use crate::metainfo::FileLayout;

const K16: usize = 16 * 1024;

/// A temp folder (removed on drop) that test files are written into.
struct TempDir(tempfile::TempDir);

impl TempDir {
    fn new() -> Self {
        Self(tempfile::tempdir().unwrap())
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    fn write(&self, relative: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

fn path(text: &str) -> RelativePath {
    RelativePath::parse(text).unwrap()
}

/// Deterministic filler bytes.
fn filler(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
        .collect()
}

fn sha1(bytes: &[u8]) -> [u8; 20] {
    Sha1::digest(bytes).into()
}

fn info_keys(m: &Metainfo) -> BTreeSet<String> {
    let info = bencode::decode(m.info_bytes(), &bencode::Limits::DEFAULT).unwrap();
    info.as_dict()
        .unwrap()
        .keys()
        .map(|k| String::from_utf8(k.clone()).unwrap())
        .collect()
}

#[test]
fn exact_multiple_of_the_piece_length_has_no_extra_hash() {
    let data = filler(4 * K16, 1);
    let m = TorrentBuilder::new("x")
        .add_bytes(path("four.bin"), data.clone())
        .piece_length(K16 as u32)
        .build()
        .unwrap();
    assert_eq!(m.info().piece_count(), 4);
    let expected: Vec<[u8; 20]> = data.chunks(K16).map(sha1).collect();
    assert_eq!(m.info().pieces(), expected.as_slice());
    assert_eq!(m.info().piece_len(3), Some(K16 as u32));
}

#[test]
fn piece_hashes_run_across_file_boundaries() {
    let a = filler(10_000, 1);
    let b = filler(30_000, 2);
    let m = TorrentBuilder::new("x")
        .add_bytes(path("a"), a.clone())
        .add_bytes(path("b"), b.clone())
        .piece_length(K16 as u32)
        .build()
        .unwrap();
    let all = [a, b].concat();
    let expected: Vec<[u8; 20]> = all.chunks(K16).map(sha1).collect();
    assert_eq!(m.info().pieces(), expected.as_slice());
    assert_eq!(m.info().piece_count(), 3);
}

#[test]
fn one_file_makes_a_single_file_torrent() {
    let m = TorrentBuilder::new("ignored")
        .add_bytes(path("only.js"), b"x".to_vec())
        .build()
        .unwrap();
    assert_eq!(m.info().name(), "only.js");
    assert_eq!(m.info().layout(), &FileLayout::Single { length: 1 });
    assert_eq!(m.info().files()[0].path.to_string(), "only.js");
    assert_eq!(
        info_keys(&m),
        ["length", "name", "piece length", "pieces"]
            .map(String::from)
            .into()
    );
}

#[test]
fn folder_mode_and_nested_paths_make_multi_file_torrents() {
    let m = TorrentBuilder::new("bundle")
        .add_bytes(path("only.js"), b"x".to_vec())
        .folder(true)
        .build()
        .unwrap();
    assert!(m.info().is_multi_file());
    assert_eq!(m.info().files()[0].path.to_string(), "bundle/only.js");
    assert_eq!(
        info_keys(&m),
        ["files", "name", "piece length", "pieces"]
            .map(String::from)
            .into()
    );

    let nested = TorrentBuilder::new("bundle")
        .add_bytes(path("js/only.js"), b"x".to_vec())
        .build()
        .unwrap();
    assert_eq!(
        nested.info().files()[0].path.to_string(),
        "bundle/js/only.js"
    );
}

#[test]
fn output_is_deterministic_and_minimal_by_default() {
    let build = || {
        TorrentBuilder::new("b")
            .add_bytes(path("a"), b"1".to_vec())
            .add_bytes(path("b"), b"2".to_vec())
            .build()
            .unwrap()
    };
    let m = build();
    assert_eq!(m.to_bytes(), build().to_bytes());
    assert_eq!(m.announce, None);
    assert_eq!(m.created_by, None);
    assert_eq!(m.creation_date, None);
    assert!(m.to_bytes().starts_with(b"d4:infod"));
}

#[test]
fn private_flag_is_written_only_when_set() {
    let m = TorrentBuilder::new("b")
        .add_bytes(path("a"), b"1".to_vec())
        .private(true)
        .build()
        .unwrap();
    assert!(m.info().is_private());
    assert!(info_keys(&m).contains("private"));
    let public = TorrentBuilder::new("b")
        .add_bytes(path("a"), b"1".to_vec())
        .build()
        .unwrap();
    assert_ne!(public.info_hash(), m.info_hash());
}

#[test]
fn files_are_sorted_by_joined_path_whatever_the_input_order() {
    let files = [("z.txt", 1u8), ("a/c", 2), ("a-b", 3), ("a/b/d", 4)];
    let build = |order: &[usize]| {
        let mut b = TorrentBuilder::new("site");
        for &i in order {
            let (p, seed) = files[i];
            b = b.add_bytes(path(p), filler(5_000, seed));
        }
        b.build().unwrap()
    };
    let one = build(&[0, 1, 2, 3]);
    let two = build(&[3, 2, 1, 0]);
    assert_eq!(one.to_bytes(), two.to_bytes());
    let order: Vec<String> = one
        .info()
        .files()
        .iter()
        .map(|f| f.path.to_string())
        .collect();
    // Byte order of the joined path: `-` (0x2d) sorts before `/` (0x2f), as mktorrent does.
    assert_eq!(order, ["site/a-b", "site/a/b/d", "site/a/c", "site/z.txt"]);
}

#[test]
fn files_on_disk_hash_like_bytes_in_memory() {
    let dir = TempDir::new();
    let a = filler(3 * K16 + 17, 7);
    let b = filler(K16 - 1, 8);
    let c = filler(5, 9);
    let pa = dir.write("a.bin", &a);
    let pb = dir.write("sub/b.bin", &b);
    let pc = dir.write("c.bin", &c);
    let on_disk = TorrentBuilder::new("t")
        .add_file(path("a.bin"), pa)
        .add_file(path("sub/b.bin"), pb)
        .add_file(path("c.bin"), pc)
        .piece_length(K16 as u32)
        .build()
        .unwrap();
    let in_memory = TorrentBuilder::new("t")
        .add_bytes(path("a.bin"), a)
        .add_bytes(path("sub/b.bin"), b)
        .add_bytes(path("c.bin"), c)
        .piece_length(K16 as u32)
        .build()
        .unwrap();
    assert_eq!(on_disk, in_memory);

    let walked = TorrentBuilder::new("t")
        .add_dir(dir.path())
        .unwrap()
        .piece_length(K16 as u32)
        .build()
        .unwrap();
    assert_eq!(walked, in_memory);
}

#[test]
fn many_threads_hash_like_one() {
    let dir = TempDir::new();
    // 100 pieces across files of awkward sizes, half on disk, half in memory.
    let mut builder_files = Vec::new();
    for (i, len) in [K16 * 40 + 3, 1, K16 * 30 - 7, 0, K16 * 29 + 10]
        .iter()
        .enumerate()
    {
        let data = filler(*len, i as u8);
        let name = format!("f{i}");
        if i % 2 == 0 {
            builder_files.push((path(&name), Source::File(dir.write(&name, &data))));
        } else {
            builder_files.push((path(&name), Source::Bytes(data)));
        }
    }
    let build = |threads: usize| {
        let mut b = TorrentBuilder::new("t")
            .piece_length(K16 as u32)
            .threads(NonZeroUsize::new(threads).unwrap());
        for (p, s) in &builder_files {
            b = b.add(p.clone(), s.clone());
        }
        b.build().unwrap()
    };
    let one = build(1);
    assert_eq!(one.info().piece_count(), 100);
    for threads in [2, 3, 7, 64] {
        assert_eq!(build(threads), one, "{threads} threads");
    }
}

/// The pieces of `bytes` hashed one by one, the reference the builder must match.
fn reference_pieces(bytes: &[u8], piece_length: usize) -> Vec<[u8; 20]> {
    bytes.chunks(piece_length).map(sha1).collect()
}

#[test]
fn jobs_of_many_pieces_or_of_one_piece_hash_like_the_reference() {
    let dir = TempDir::new();
    // About 5.3 MiB in three files on disk and one in memory, with sizes that put file
    // boundaries inside pieces and inside jobs.
    let sizes = [
        2 * 1024 * 1024 + 123,
        7,
        1024 * 1024 - 5,
        2 * 1024 * 1024 + 99,
    ];
    let mut all = Vec::new();
    let mut sources = Vec::new();
    for (i, len) in sizes.iter().enumerate() {
        let data = filler(*len, 40 + i as u8);
        all.extend_from_slice(&data);
        let name = format!("f{i}");
        let source = if i == 1 {
            Source::Bytes(data)
        } else {
            Source::File(dir.write(&name, &data))
        };
        sources.push((path(&name), source));
    }
    // 16 KiB: 64 pieces a job. 256 KiB: 4 a job. 2 MiB: one piece, larger than a job.
    for piece_length in [K16, 256 * 1024, 2 * 1024 * 1024] {
        let expected = reference_pieces(&all, piece_length);
        for threads in [1, 2, 5] {
            let mut builder = TorrentBuilder::new("t")
                .piece_length(piece_length as u32)
                .threads(NonZeroUsize::new(threads).unwrap());
            for (p, s) in &sources {
                builder = builder.add(p.clone(), s.clone());
            }
            let built = builder.build().unwrap();
            assert_eq!(
                built.info().pieces(),
                expected.as_slice(),
                "piece length {piece_length}, {threads} threads"
            );
        }
    }
}

#[test]
fn job_plans_cover_the_content_once() {
    for (piece_length, total) in [
        (K16 as u32, 1u64),
        (K16 as u32, 5 * 1024 * 1024 + 3),
        (1024 * 1024, 1024 * 1024 * 1024),
        (4 * 1024 * 1024, 9 * 1024 * 1024 + 1),
    ] {
        let plan = JobPlan::new(piece_length, total);
        let mut next = 0;
        let mut pieces = 0;
        for job in 0..plan.jobs {
            let range = plan.range(job);
            assert_eq!(range.start, next, "jobs are contiguous");
            assert!(range.end > range.start);
            assert!(range_len(&range) <= plan.job_bytes);
            assert_eq!(plan.first_piece(job), pieces);
            pieces += range_len(&range).div_ceil(piece_length as usize);
            next = range.end;
        }
        assert_eq!(next, total, "the jobs end at the end");
        assert_eq!(pieces as u64, total.div_ceil(u64::from(piece_length)));
    }
}

#[test]
fn a_file_shorter_than_planned_fails_every_thread_count_without_hanging() {
    let dir = TempDir::new();
    let data = filler(3 * 1024 * 1024, 9);
    let file = Source::File(dir.write("f", &data));
    // Planned as longer than it is, as if the file shrank after it was measured.
    let planned = [Planned {
        source: &file,
        offset: 0,
        length: 4 * 1024 * 1024,
    }];
    for threads in [1, 2, 4] {
        let result = hash_pieces(&planned, K16 as u32, 4 * 1024 * 1024, threads);
        assert!(
            matches!(result, Err(BuildError::FileChanged { .. })),
            "{threads} threads: {result:?}"
        );
    }
}

#[test]
fn automatic_piece_length_follows_total_size() {
    assert_eq!(auto_piece_length(1), MIN_PIECE_LENGTH);
    assert_eq!(auto_piece_length(2000 * 16 * 1024), MIN_PIECE_LENGTH);
    assert_eq!(auto_piece_length(2000 * 16 * 1024 + 1), 32 * 1024);
    assert_eq!(auto_piece_length(1 << 30), 1 << 20);
    assert_eq!(auto_piece_length(u64::MAX), MAX_PIECE_LENGTH);
    for total in [40_000_000u64, 100_000_000, 999_999_999, 1 << 30, 2 << 30] {
        let pieces = total.div_ceil(u64::from(auto_piece_length(total)));
        assert!(
            (1000..=TARGET_MAX_PIECES).contains(&pieces),
            "{total}: {pieces}"
        );
    }
}

#[test]
fn empty_input_is_an_error() {
    assert!(matches!(
        TorrentBuilder::new("x").build(),
        Err(BuildError::NoFiles)
    ));
    assert!(matches!(
        TorrentBuilder::new("x")
            .add_bytes(path("a"), Vec::new())
            .add_bytes(path("b"), Vec::new())
            .build(),
        Err(BuildError::Invalid(MetainfoError::Empty))
    ));
}

#[test]
fn limits_are_applied() {
    let small = MetainfoLimits {
        max_total_length: 100,
        max_files: 2,
        max_web_seeds: 1,
        ..MetainfoLimits::DEFAULT
    };
    assert!(matches!(
        TorrentBuilder::new("x")
            .add_bytes(path("a"), vec![0; 101])
            .limits(small)
            .build(),
        Err(BuildError::TotalTooLarge {
            total: 101,
            limit: 100
        })
    ));
    assert!(matches!(
        TorrentBuilder::new("x")
            .add_bytes(path("a"), vec![0; 1])
            .add_bytes(path("b"), vec![0; 1])
            .add_bytes(path("c"), vec![0; 1])
            .limits(small)
            .build(),
        Err(BuildError::TooManyFiles { count: 3, limit: 2 })
    ));
    assert!(matches!(
        TorrentBuilder::new("x")
            .add_bytes(path("a"), vec![0; 1])
            .url_list(vec!["http://a/".into(), "http://b/".into()])
            .limits(small)
            .build(),
        Err(BuildError::Invalid(MetainfoError::TooManyWebSeeds {
            limit: 1
        }))
    ));
}

#[test]
fn bad_piece_lengths_are_refused() {
    let with_length = |l: u32| {
        TorrentBuilder::new("x")
            .add_bytes(path("a"), vec![0; 10])
            .piece_length(l)
            .build()
    };
    assert!(matches!(
        with_length(3 * K16 as u32),
        Err(BuildError::Invalid(
            MetainfoError::PieceLengthNotPowerOfTwo(_)
        ))
    ));
    assert!(matches!(
        with_length(8192),
        Err(BuildError::Invalid(MetainfoError::PieceLengthTooSmall(_)))
    ));
    assert!(matches!(
        with_length(1 << 25),
        Err(BuildError::Invalid(MetainfoError::PieceLengthTooLarge(_)))
    ));
}

#[test]
fn clashing_paths_and_bad_names_fail_before_any_read() {
    let missing = Path::new("/nonexistent/swarmcdn/file");
    let dup = TorrentBuilder::new("x")
        .add_file(path("a/b"), missing)
        .add_file(path("a/b"), missing)
        .build();
    assert!(matches!(
        dup,
        Err(BuildError::Invalid(MetainfoError::DuplicatePath(_)))
    ));
    let clash = TorrentBuilder::new("x")
        .add_file(path("a"), missing)
        .add_file(path("a/b"), missing)
        .build();
    assert!(matches!(
        clash,
        Err(BuildError::Invalid(MetainfoError::PathConflict { .. }))
    ));
    let bad_name = TorrentBuilder::new("..")
        .add_file(path("a"), missing)
        .add_file(path("b"), missing)
        .build();
    assert!(matches!(
        bad_name,
        Err(BuildError::Invalid(MetainfoError::InvalidName(_)))
    ));
}

#[test]
fn read_errors_name_the_file() {
    let missing = Path::new("/nonexistent/swarmcdn/file.bin");
    let err = TorrentBuilder::new("x")
        .add_file(path("a"), missing)
        .build()
        .unwrap_err();
    assert!(matches!(&err, BuildError::Io { path, .. } if path == missing));
    assert!(err.to_string().contains("/nonexistent/swarmcdn/file.bin"));

    let dir = TempDir::new();
    let err = TorrentBuilder::new("x")
        .add_file(path("a"), dir.path())
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::NotAFile { .. }));
}

#[cfg(unix)]
#[test]
fn folder_walk_refuses_non_utf8_names() {
    use std::os::unix::ffi::OsStrExt;
    let dir = TempDir::new();
    dir.write("ok.txt", b"ok");
    let bad = dir.path().join(std::ffi::OsStr::from_bytes(b"bad\xff.txt"));
    std::fs::write(&bad, b"x").unwrap();
    let err = TorrentBuilder::new("x").add_dir(dir.path()).unwrap_err();
    assert!(
        matches!(&err, BuildError::BadDiskName { path, source: PathError::NotUtf8 } if *path == bad),
        "{err:?}"
    );
}

#[test]
fn folder_walk_of_an_empty_folder_is_an_error() {
    let dir = TempDir::new();
    assert!(matches!(
        TorrentBuilder::new("x").add_dir(dir.path()),
        Err(BuildError::NoFiles)
    ));
}
