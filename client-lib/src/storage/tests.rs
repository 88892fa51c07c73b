//! Tests of the store (both backends), crash safety and the cache.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use swarmcdn_proto::RelativePath;
use tempfile::TempDir;

use super::test_support::{PIECE, Release, pattern};
use super::*;

const K16: usize = 16 * 1024;

/// Files of 10 000, 0, 40 000 and 5 bytes: the first piece spans `a`, the empty file and
/// `c`; `c` spans three pieces; the last piece spans `c` and `d`.
fn spanning() -> Release {
    Release::multi(&[
        ("a.js", 10_000),
        ("b/empty.txt", 0),
        ("c/big.bin", 40_000),
        ("d.css", 5),
    ])
}

/// A store of each kind for `release`; the temp dir lives as long as the disk store is used.
fn stores(release: &Release) -> Vec<(Store, Option<TempDir>)> {
    let dir = TempDir::new().unwrap();
    let disk = Store::disk(dir.path(), &release.metainfo).unwrap();
    vec![(Store::memory(&release.metainfo), None), (disk, Some(dir))]
}

fn commit_all(store: &Store, release: &Release) {
    for i in 0..release.piece_count() {
        store.commit_piece(i, release.piece(i)).unwrap();
    }
}

/// A folder holding a complete disk store of `release`, closed again.
fn complete_on_disk(release: &Release) -> TempDir {
    let dir = TempDir::new().unwrap();
    let store = Store::disk(dir.path(), &release.metainfo).unwrap();
    commit_all(&store, release);
    dir
}

/// Cuts `file` down to `len` bytes, as a crash or a stray edit would.
fn truncate(file: &Path, len: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(file)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn hex(release: &Release) -> String {
    release.metainfo.info_hash().to_hex()
}

fn complete_path(dir: &Path, release: &Release) -> PathBuf {
    dir.join(hex(release))
}

fn partial_path(dir: &Path, release: &Release) -> PathBuf {
    dir.join(format!("{}.partial", hex(release)))
}

#[test]
fn good_pieces_make_a_complete_store() {
    let release = spanning();
    for (store, _dir) in stores(&release) {
        assert_eq!(store.have_count(), 0);
        assert!(!store.is_complete());
        for i in (0..release.piece_count()).rev() {
            store.commit_piece(i, release.piece(i)).unwrap();
            assert!(store.has_piece(i));
        }
        assert!(store.is_complete(), "{:?}", store.kind());
        assert!(store.have().is_complete());
        assert_eq!(store.have_count(), release.piece_count());
        for i in 0..release.piece_count() {
            let len = release.piece(i).len() as u32;
            assert_eq!(store.read_block(i, 0, len).unwrap(), release.piece(i));
        }
        // Committing a held piece again is harmless.
        store.commit_piece(0, release.piece(0)).unwrap();
        assert!(store.is_complete());
    }
}

#[test]
fn a_corrupt_piece_is_refused_and_nothing_is_stored() {
    let release = spanning();
    for (store, dir) in stores(&release) {
        let mut bad = release.piece(1).to_vec();
        bad[100] ^= 1;
        let err = store.commit_piece(1, Bytes::from(bad)).unwrap_err();
        assert!(
            matches!(err, StorageError::HashMismatch { piece: 1 }),
            "{err}"
        );
        assert!(err.blames_source());
        assert!(!store.has_piece(1));
        assert_eq!(store.have_count(), 0);
        assert!(matches!(
            store.read_block(1, 0, 16),
            Err(StorageError::NotVerified { piece: 1 })
        ));
        // On disk, nothing was written either: the file region is still zeros.
        if let Some(dir) = &dir {
            let file = partial_path(dir.path(), &release).join("site/c/big.bin");
            let on_disk = fs::read(file).unwrap();
            assert!(on_disk.iter().all(|&b| b == 0));
        }
        // A good copy afterwards is accepted.
        store.commit_piece(1, release.piece(1)).unwrap();
        assert!(store.has_piece(1));
    }
}

#[test]
fn pieces_of_the_wrong_length_or_index_are_refused() {
    let release = spanning();
    for (store, _dir) in stores(&release) {
        let piece = release.piece(0);
        let short = piece.slice(..piece.len() - 1);
        assert!(matches!(
            store.commit_piece(0, short),
            Err(StorageError::WrongPieceLength { piece: 0, expected, got })
                if expected as usize == K16 && got == K16 - 1
        ));
        let mut long = piece.to_vec();
        long.push(0);
        assert!(matches!(
            store.commit_piece(0, Bytes::from(long)),
            Err(StorageError::WrongPieceLength { .. })
        ));
        assert!(matches!(
            store.commit_piece(0, Bytes::new()),
            Err(StorageError::WrongPieceLength { .. })
        ));
        // The short last piece must be exactly its own length.
        let last = release.piece_count() - 1;
        assert!(matches!(
            store.commit_piece(last, piece.clone()),
            Err(StorageError::WrongPieceLength { .. })
        ));
        assert!(matches!(
            store.commit_piece(release.piece_count(), piece.clone()),
            Err(StorageError::OutOfRange { .. })
        ));
        assert_eq!(store.have_count(), 0);
    }
}

#[test]
fn read_block_checks_every_bound() {
    let release = spanning();
    for (store, _dir) in stores(&release) {
        commit_all(&store, &release);
        let last = release.piece_count() - 1;
        let last_len = release.piece(last).len() as u32;
        let k16 = K16 as u32;
        let cases: [(u32, u32, u32); 10] = [
            (release.piece_count(), 0, 16),
            (u32::MAX, 0, 16),
            (0, 0, 0),
            (0, 0, u32::MAX),
            (0, 0, MAX_READ_BLOCK_LEN + 1),
            (0, 1, k16),
            (0, k16, 1),
            (0, u32::MAX, 16),
            (last, last_len - 1, 2),
            (last, 0, k16),
        ];
        for (piece, begin, len) in cases {
            let err = store.read_block(piece, begin, len).unwrap_err();
            assert!(
                matches!(
                    err,
                    StorageError::OutOfRange { .. } | StorageError::BadBlockLength { .. }
                ),
                "{piece} {begin} {len}: {err}"
            );
        }
        // Inside bounds, blocks are the right bytes.
        assert_eq!(
            store.read_block(0, 100, 1000).unwrap(),
            release.piece(0).slice(100..1100)
        );
        assert_eq!(
            store.read_block(last, last_len - 1, 1).unwrap(),
            release.piece(last).slice(last_len as usize - 1..)
        );
    }
}

#[test]
fn files_are_readable_only_once_their_pieces_are_verified() {
    let release = spanning();
    for (store, _dir) in stores(&release) {
        let d = store
            .file_index(&RelativePath::parse("site/d.css").unwrap())
            .unwrap();
        let a = store
            .file_index(&RelativePath::parse("site/a.js").unwrap())
            .unwrap();
        let c = store
            .file_index(&RelativePath::parse("site/c/big.bin").unwrap())
            .unwrap();
        // `d` lies in the last piece (3), `a` in piece 0, `c` in pieces 0..=3.
        assert!(matches!(
            store.read_file(d),
            Err(StorageError::NotVerified { piece: 3 })
        ));
        store.commit_piece(3, release.piece(3)).unwrap();
        assert_eq!(store.read_file(d).unwrap(), release.file(d));
        assert!(matches!(
            store.read_file(c),
            Err(StorageError::NotVerified { piece: 0 })
        ));
        store.commit_piece(0, release.piece(0)).unwrap();
        assert_eq!(store.read_file(a).unwrap(), release.file(a));
        assert!(matches!(
            store.read_file(c),
            Err(StorageError::NotVerified { piece: 1 })
        ));
        // A range inside verified pieces is already readable.
        assert_eq!(
            store.read_file_range(c, 0, 100).unwrap(),
            &release.file(c)[..100]
        );
        store.commit_piece(1, release.piece(1)).unwrap();
        store.commit_piece(2, release.piece(2)).unwrap();
        assert_eq!(store.read_file(c).unwrap(), release.file(c));
        assert!(matches!(
            store.read_file(99),
            Err(StorageError::NoSuchFile(_))
        ));
        assert!(matches!(
            store.read_path(&RelativePath::parse("site/nope").unwrap()),
            Err(StorageError::NoSuchFile(_))
        ));
        assert!(matches!(
            store.read_file_range(d, 3, 3),
            Err(StorageError::BeyondFile { .. })
        ));
        assert!(matches!(
            store.read_file_range(d, u64::MAX, 2),
            Err(StorageError::BeyondFile { .. })
        ));
    }
}

#[test]
fn multi_file_torrents_with_spanning_and_empty_files_read_back_whole() {
    let release = spanning();
    for (store, _dir) in stores(&release) {
        commit_all(&store, &release);
        for (i, file) in release.metainfo.info().files().iter().enumerate() {
            assert_eq!(store.read_path(&file.path).unwrap(), release.file(i));
        }
        let empty = RelativePath::parse("site/b/empty.txt").unwrap();
        assert_eq!(store.read_path(&empty).unwrap(), Bytes::new());
        // A block across the boundary of `a` and `c` inside piece 0.
        assert_eq!(
            store.read_block(0, 9_990, 20).unwrap(),
            &release.content[9_990..10_010]
        );
    }
}

#[test]
fn disk_layout_is_the_torrent_layout_under_the_info_hash() {
    let release = spanning();
    let dir = TempDir::new().unwrap();
    let store = Store::disk(dir.path(), &release.metainfo).unwrap();
    let partial = partial_path(dir.path(), &release);
    assert_eq!(store.path(), Some(partial.clone()));
    // While downloading, no folder looks complete.
    assert!(!complete_path(dir.path(), &release).exists());
    // Every file exists at full length from the start, inside the release's folder.
    for file in release.metainfo.info().files() {
        let path = file.path.to_path_under(&partial);
        assert!(path.starts_with(&partial));
        assert_eq!(fs::metadata(&path).unwrap().len(), file.length);
    }
    commit_all(&store, &release);
    let complete = complete_path(dir.path(), &release);
    assert_eq!(store.path(), Some(complete.clone()));
    assert!(!partial.exists());
    let mut found = Vec::new();
    list_files(&complete, &complete, &mut found);
    found.sort();
    assert_eq!(
        found,
        [
            "site/a.js",
            "site/b/empty.txt",
            "site/c/big.bin",
            "site/d.css"
        ]
    );
    assert_eq!(
        fs::read(complete.join("site/c/big.bin")).unwrap(),
        release.file(2)
    );
    // Paths that could leave the folder cannot even be built, so no torrent holds one.
    for escape in ["../x", "/etc/passwd", "a/../../x", "a/./b"] {
        assert!(RelativePath::parse(escape).is_err(), "{escape}");
    }
    // Only the release folder exists in the cache folder: nothing was written beside it.
    let top: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(top, [hex(&release)]);
}

fn list_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            list_files(root, &path, out);
        } else {
            let rel = path.strip_prefix(root).unwrap();
            let parts: Vec<_> = rel.iter().map(|c| c.to_str().unwrap()).collect();
            out.push(parts.join("/"));
        }
    }
}

#[test]
fn a_single_file_torrent_is_one_file_in_the_release_folder() {
    let release = Release::single(3 * K16 + 7);
    let dir = TempDir::new().unwrap();
    let store = Store::disk(dir.path(), &release.metainfo).unwrap();
    commit_all(&store, &release);
    let file = complete_path(dir.path(), &release).join("blob.bin");
    assert_eq!(fs::read(file).unwrap(), release.content);
    assert_eq!(store.read_file(0).unwrap(), release.content);
}

#[test]
fn a_partial_folder_is_resumed_keeping_only_pieces_that_hash_right() {
    let release = Release::single(6 * K16 + 100);
    let dir = TempDir::new().unwrap();
    {
        let store = Store::disk(dir.path(), &release.metainfo).unwrap();
        for i in [0, 2, 3, 6] {
            store.commit_piece(i, release.piece(i)).unwrap();
        }
    } // "crash": the store is dropped mid-download.
    let file = partial_path(dir.path(), &release).join("blob.bin");
    // Damage piece 2 behind the store's back, and write good bytes for piece 4 that were
    // never committed (a write that landed just before a crash): both are re-hashed.
    let mut bytes = fs::read(&file).unwrap();
    bytes[2 * K16 + 5] ^= 0xff;
    bytes[4 * K16..5 * K16].copy_from_slice(&release.piece(4));
    fs::write(&file, bytes).unwrap();

    let store = Store::open_existing(dir.path(), &release.metainfo)
        .unwrap()
        .expect("the partial folder is found");
    let have: Vec<u32> = store.have().pieces().collect();
    assert_eq!(have, [0, 3, 4, 6]);
    assert!(!store.is_complete());
    assert!(!complete_path(dir.path(), &release).exists());
    assert!(matches!(
        store.read_block(2, 0, 16),
        Err(StorageError::NotVerified { piece: 2 })
    ));
    // Finishing the download completes it.
    for i in [1, 2, 5] {
        store.commit_piece(i, release.piece(i)).unwrap();
    }
    assert!(store.is_complete());
    assert_eq!(
        fs::read(complete_path(dir.path(), &release).join("blob.bin")).unwrap(),
        release.content
    );
}

#[test]
fn a_partial_folder_with_a_missing_file_is_resumed_without_panic() {
    let release = spanning();
    let dir = TempDir::new().unwrap();
    {
        let store = Store::disk(dir.path(), &release.metainfo).unwrap();
        commit_all(&store, &release);
        // Make it partial again by hand: as if the crash came before the rename.
        fs::rename(
            complete_path(dir.path(), &release),
            partial_path(dir.path(), &release),
        )
        .unwrap();
    }
    fs::remove_file(partial_path(dir.path(), &release).join("site/a.js")).unwrap();
    let store = Store::open_existing(dir.path(), &release.metainfo)
        .unwrap()
        .unwrap();
    // `a.js` is only in piece 0.
    assert_eq!(store.have().pieces().collect::<Vec<_>>(), [1, 2, 3]);
    assert!(!store.is_complete());
    // The missing file was recreated at its length so the download can continue.
    let a = partial_path(dir.path(), &release).join("site/a.js");
    assert_eq!(fs::metadata(a).unwrap().len(), 10_000);
    store.commit_piece(0, release.piece(0)).unwrap();
    assert!(store.is_complete());
}

#[test]
fn a_fully_verified_partial_folder_is_completed_on_open() {
    let release = Release::single(2 * K16);
    let dir = complete_on_disk(&release);
    fs::rename(
        complete_path(dir.path(), &release),
        partial_path(dir.path(), &release),
    )
    .unwrap();
    let store = Store::open_existing(dir.path(), &release.metainfo)
        .unwrap()
        .unwrap();
    assert!(store.is_complete());
    assert!(complete_path(dir.path(), &release).is_dir());
    assert!(!partial_path(dir.path(), &release).exists());
}

#[test]
fn a_complete_folder_is_verified_and_seeded_again() {
    let release = spanning();
    let dir = complete_on_disk(&release);
    // A stray partial folder next to a complete one is a leftover and goes.
    fs::create_dir(partial_path(dir.path(), &release)).unwrap();
    let store = Store::open_existing(dir.path(), &release.metainfo)
        .unwrap()
        .unwrap();
    assert!(store.is_complete());
    assert!(!partial_path(dir.path(), &release).exists());
    assert_eq!(store.read_file(2).unwrap(), release.file(2));
}

#[test]
fn a_flipped_byte_in_a_complete_folder_makes_that_piece_missing() {
    let release = spanning();
    let dir = complete_on_disk(&release);
    let file = complete_path(dir.path(), &release).join("site/c/big.bin");
    let mut bytes = fs::read(&file).unwrap();
    // Byte 20 000 of `c` is byte 30 000 of the torrent: piece 1.
    bytes[20_000] ^= 0x01;
    fs::write(&file, bytes).unwrap();

    let store = Store::open_existing(dir.path(), &release.metainfo)
        .unwrap()
        .unwrap();
    assert_eq!(store.have().pieces().collect::<Vec<_>>(), [0, 2, 3]);
    assert!(!store.is_complete());
    // It became a partial download again: nothing looks complete on disk.
    assert!(!complete_path(dir.path(), &release).exists());
    assert_eq!(store.path(), Some(partial_path(dir.path(), &release)));
    assert!(matches!(
        store.read_file(2),
        Err(StorageError::NotVerified { piece: 1 })
    ));
    store.commit_piece(1, release.piece(1)).unwrap();
    assert!(store.is_complete());
    assert_eq!(store.read_file(2).unwrap(), release.file(2));
}

#[test]
fn seed_only_opening_refuses_a_damaged_folder_and_changes_nothing() {
    let release = spanning();
    let dir = TempDir::new().unwrap();
    // Nothing there, or only a partial download: not in the store.
    assert!(matches!(
        Store::open_seed_only(dir.path(), &release.metainfo),
        Err(StorageError::NotInStore(_))
    ));
    {
        let store = Store::disk(dir.path(), &release.metainfo).unwrap();
        store.commit_piece(0, release.piece(0)).unwrap();
    }
    assert!(matches!(
        Store::open_seed_only(dir.path(), &release.metainfo),
        Err(StorageError::NotInStore(_))
    ));
    {
        let store = Store::disk(dir.path(), &release.metainfo).unwrap();
        commit_all(&store, &release);
    }
    // Intact: opened complete and readable.
    let store = Store::open_seed_only(dir.path(), &release.metainfo).unwrap();
    assert!(store.is_complete());
    assert_eq!(store.read_file(2).unwrap(), release.file(2));
    drop(store);

    // Piece 1 damaged: refused, named, and the folder left exactly as it was.
    let file = complete_path(dir.path(), &release).join("site/c/big.bin");
    let mut bytes = fs::read(&file).unwrap();
    bytes[20_000] ^= 0x01;
    bytes.extend_from_slice(b"trailing bytes a repair would trim");
    fs::write(&file, &bytes).unwrap();
    let err = Store::open_seed_only(dir.path(), &release.metainfo).unwrap_err();
    assert!(
        matches!(&err, StorageError::Damaged { bad_pieces, .. } if bad_pieces == &[1]),
        "{err}"
    );
    assert!(
        err.to_string().contains("1 bad piece(s), pieces 1"),
        "{err}"
    );
    assert_eq!(fs::read(&file).unwrap(), bytes);
    assert!(!partial_path(dir.path(), &release).exists());
}

#[test]
fn a_damaged_error_lists_a_bounded_number_of_pieces() {
    let err = StorageError::Damaged {
        info_hash: spanning().metainfo.info_hash(),
        bad_pieces: (0..1000).collect(),
    };
    let text = err.to_string();
    assert!(text.contains("1000 bad piece(s), pieces 0, 1, 2"), "{text}");
    assert!(text.ends_with(", …"), "{text}");
    assert!(text.len() < 200, "{text}");
}

#[test]
fn a_truncated_file_in_a_complete_folder_makes_its_pieces_missing() {
    let release = spanning();
    let dir = complete_on_disk(&release);
    let file = complete_path(dir.path(), &release).join("site/c/big.bin");
    // Keep 5 000 bytes of `c`: piece 0 (up to torrent byte 16 384 = `c` byte 6 384) breaks.
    truncate(&file, 5_000);
    let store = Store::open_existing(dir.path(), &release.metainfo)
        .unwrap()
        .unwrap();
    assert_eq!(store.have_count(), 0);
    assert!(!store.is_complete());
    let partial_file = partial_path(dir.path(), &release).join("site/c/big.bin");
    assert_eq!(fs::metadata(partial_file).unwrap().len(), 40_000);
    commit_all(&store, &release);
    assert!(store.is_complete());
}

#[test]
fn a_file_truncated_under_a_running_store_is_reported_not_panicked_on() {
    let release = Release::single(2 * K16);
    let dir = TempDir::new().unwrap();
    let store = Store::disk(dir.path(), &release.metainfo).unwrap();
    commit_all(&store, &release);
    let file = complete_path(dir.path(), &release).join("blob.bin");
    truncate(&file, 10);
    assert!(matches!(
        store.read_block(1, 0, 16),
        Err(StorageError::Corrupt { .. })
    ));
    fs::remove_file(&file).unwrap();
    assert!(matches!(
        store.read_file(0),
        Err(StorageError::Corrupt { .. })
    ));
}

#[test]
fn nothing_on_disk_opens_as_none_and_a_file_in_the_way_is_corrupt() {
    let release = Release::single(K16);
    let dir = TempDir::new().unwrap();
    assert!(
        Store::open_existing(dir.path(), &release.metainfo)
            .unwrap()
            .is_none()
    );
    fs::write(complete_path(dir.path(), &release), b"not a folder").unwrap();
    assert!(matches!(
        Store::open_existing(dir.path(), &release.metainfo),
        Err(StorageError::Corrupt { .. })
    ));
}

#[test]
fn a_large_download_is_synced_as_it_goes_and_completes() {
    // 40 MiB in 1 MiB pieces: an early writeback after every 16 MiB, then the final sync.
    let release = Release::single_with_piece_length(40 * 1024 * 1024, 1024 * 1024);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::disk(dir.path(), &release.metainfo).unwrap();
    for i in 0..release.piece_count() {
        store.commit_piece(i, release.piece(i)).unwrap();
        if i == 14 {
            assert_eq!(store.writebacks(), 0, "not before 16 MiB");
        }
    }
    assert_eq!(store.writebacks(), 2);
    assert!(store.is_complete());
    assert_eq!(store.read_file(0).unwrap(), release.file(0));
    assert!(complete_path(dir.path(), &release).is_dir());
}

#[test]
fn parallel_verification_agrees_with_one_thread() {
    // 40 pieces, so several batches per thread.
    let release = Release::single(40 * K16 - 3);
    let dir = TempDir::new().unwrap();
    {
        let store = Store::disk(dir.path(), &release.metainfo).unwrap();
        for i in (0..release.piece_count()).filter(|i| i % 3 != 0) {
            store.commit_piece(i, release.piece(i)).unwrap();
        }
    }
    let one = Store::open_existing_with_threads(dir.path(), &release.metainfo, 1)
        .unwrap()
        .unwrap()
        .have();
    let four = Store::open_existing_with_threads(dir.path(), &release.metainfo, 4)
        .unwrap()
        .unwrap()
        .have();
    assert_eq!(one, four);
    let expected: Vec<u32> = (0..40).filter(|i| i % 3 != 0).collect();
    assert_eq!(four.pieces().collect::<Vec<_>>(), expected);
}

#[test]
fn concurrent_commits_and_reads_complete_the_release_once() {
    let release = Release::single(12 * K16 + 1);
    for (store, _dir) in stores(&release) {
        let count = release.piece_count();
        std::thread::scope(|scope| {
            for t in 0..4u32 {
                let (store, release) = (&store, &release);
                scope.spawn(move || {
                    for k in 0..count {
                        // Each thread walks the pieces from a different start.
                        let i = (k + t * 3) % count;
                        store.commit_piece(i, release.piece(i)).unwrap();
                        // Whatever is marked as had reads back right, even mid-download.
                        if store.has_piece(i) {
                            let len = release.piece(i).len().min(64);
                            assert_eq!(
                                store.read_block(i, 0, len as u32).unwrap(),
                                release.piece(i).slice(..len)
                            );
                        }
                    }
                });
            }
        });
        assert!(store.is_complete());
        assert_eq!(store.read_file(0).unwrap(), release.content);
    }
}

#[test]
fn stores_and_the_cache_can_be_shared_between_threads() {
    fn shared<T: Send + Sync>() {}
    fn sent<T: Send>() {}
    shared::<Store>();
    shared::<Cache>();
    sent::<PieceAssembler>();
    sent::<StorageError>();
}

#[test]
fn assembled_pieces_commit_and_read_back() {
    let release = spanning();
    for (store, _dir) in stores(&release) {
        let mut asm = PieceAssembler::new(Arc::clone(store.info()));
        for i in 0..release.piece_count() {
            let piece = release.piece(i);
            let mut done = None;
            for (b, chunk) in piece.chunks(BLOCK_SIZE as usize).enumerate().rev() {
                done = asm
                    .add_block(i, b as u32 * BLOCK_SIZE, chunk)
                    .unwrap()
                    .or(done);
            }
            store
                .commit_piece(i, done.expect("piece assembled"))
                .unwrap();
        }
        assert!(store.is_complete());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_commits_deliver_every_verdict_and_the_workers_stop() {
    let release = Release::single_with_piece_length(40 * 64 * 1024, 64 * 1024);
    for (store, _dir) in stores(&release) {
        let store = Arc::new(store);
        let tasks = tokio_util::task::TaskTracker::new();
        let stop = tokio_util::sync::CancellationToken::new();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for i in 0..release.piece_count() {
            // Piece 7 is corrupt: its verdict says so and nothing is stored.
            let data = if i == 7 {
                Bytes::from(vec![0; 64 * 1024])
            } else {
                release.piece(i)
            };
            let tx = tx.clone();
            store.commit_piece_queued(i, data, stop.clone(), &tasks, move |result| {
                let _ = tx.send((i, result));
            });
        }
        drop(tx);
        let mut verdicts = Vec::new();
        while let Some(verdict) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("every verdict arrives")
        {
            verdicts.push(verdict);
        }
        verdicts.sort_by_key(|(i, _)| *i);
        assert_eq!(verdicts.len(), release.piece_count() as usize);
        for (i, result) in verdicts {
            match i {
                7 => assert!(matches!(
                    result,
                    Err(StorageError::HashMismatch { piece: 7 })
                )),
                _ => result.unwrap(),
            }
        }
        assert_eq!(store.have_count(), release.piece_count() - 1);
        assert!(!store.has_piece(7));
        // The workers give their places back once the queue is empty.
        tokio::time::timeout(Duration::from_secs(30), async {
            while lock(&store.queue).workers > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the workers stop");
        // They ran on the tracker: waiting for it waits for them.
        tasks.close();
        tokio::time::timeout(Duration::from_secs(30), tasks.wait())
            .await
            .expect("the tracker sees the workers end");
        assert!(lock(&store.queue).jobs.is_empty());
    }
}

#[tokio::test]
async fn queued_commits_of_a_stopped_session_are_not_made() {
    let release = Release::single_with_piece_length(8 * 64 * 1024, 64 * 1024);
    for (store, _dir) in stores(&release) {
        let store = Arc::new(store);
        let tasks = tokio_util::task::TaskTracker::new();
        let stop = tokio_util::sync::CancellationToken::new();
        stop.cancel();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for i in 0..release.piece_count() {
            let tx = tx.clone();
            store.commit_piece_queued(i, release.piece(i), stop.clone(), &tasks, move |r| {
                let _ = tx.send(r);
            });
        }
        drop(tx);
        let mut verdicts = 0;
        while let Some(verdict) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("every verdict arrives")
        {
            assert!(
                matches!(verdict, Err(StorageError::Cancelled)),
                "{verdict:?}"
            );
            verdicts += 1;
        }
        assert_eq!(verdicts, release.piece_count());
        assert_eq!(store.have_count(), 0, "nothing was committed");
        tasks.close();
        tokio::time::timeout(Duration::from_secs(30), tasks.wait())
            .await
            .expect("the workers end");
    }
}

#[tokio::test]
async fn async_wrappers_match_the_sync_calls() {
    let release = spanning();
    for (store, _dir) in stores(&release) {
        let store = Arc::new(store);
        for i in 0..release.piece_count() {
            store.commit_piece_async(i, release.piece(i)).await.unwrap();
        }
        assert!(store.is_complete());
        assert_eq!(
            store.read_block_async(1, 10, 100).await.unwrap(),
            release.piece(1).slice(10..110)
        );
        assert_eq!(store.read_file_async(2).await.unwrap(), release.file(2));
        let batch = store
            .read_blocks_async(vec![(1, 10, 100), (9, 0, 1), (0, 0, 16)])
            .await;
        assert_eq!(batch.len(), 3);
        assert_eq!(batch[0].as_ref().unwrap(), &release.piece(1).slice(10..110));
        assert!(matches!(batch[1], Err(StorageError::OutOfRange { .. })));
        assert_eq!(batch[2].as_ref().unwrap(), &release.piece(0).slice(0..16));
        assert!(matches!(
            store.read_block_async(9, 0, 1).await,
            Err(StorageError::OutOfRange { .. })
        ));
        let mut bad = release.piece(0).to_vec();
        bad[0] ^= 1;
        assert!(matches!(
            store.commit_piece_async(0, Bytes::from(bad)).await,
            Err(StorageError::HashMismatch { piece: 0 })
        ));
    }
}

#[test]
fn read_blocks_gives_each_block_what_read_block_gives() {
    // 16 KiB pieces over files of 10 000, 0, 40 000 and 5 bytes: runs cross pieces and files.
    let release = spanning();
    let k16 = K16 as u32;
    let last = release.piece_count() - 1;
    let blocks = [
        // A run over pieces 0 and 1 (and three files), ending at a block of a piece that is
        // not verified (2), then a block off the end, then a run broken by a bad length.
        (0, 0, 1000),
        (0, 1000, k16 - 1000),
        (1, 0, k16),
        (2, 0, 16),
        (release.piece_count(), 0, 16),
        (0, 0, 100),
        (0, 100, 0),
        (0, 100, 100),
        // Out of order, then the last piece in two halves.
        (1, 200, 10),
        (last, 0, 2),
        (last, 2, release.piece(last).len() as u32 - 2),
    ];
    for (store, _dir) in stores(&release) {
        for i in (0..release.piece_count()).filter(|&i| i != 2) {
            store.commit_piece(i, release.piece(i)).unwrap();
        }
        let batch = store.read_blocks(&blocks);
        assert_eq!(batch.len(), blocks.len());
        for (&(piece, begin, len), got) in blocks.iter().zip(&batch) {
            match (store.read_block(piece, begin, len), got) {
                (Ok(want), Ok(got)) => assert_eq!(&want, got, "{piece} {begin} {len}"),
                (Err(want), Err(got)) => {
                    assert_eq!(want.to_string(), got.to_string(), "{piece} {begin} {len}")
                }
                (want, got) => panic!("{piece} {begin} {len}: {want:?} against {got:?}"),
            }
        }
    }
}

#[test]
fn read_blocks_reports_a_short_file_per_block() {
    // A run over both pieces of a file cut short under the store: the run cannot be read
    // whole, so the blocks are read one by one; the first is intact and still served.
    let release = Release::single(2 * K16);
    let dir = TempDir::new().unwrap();
    let store = Store::disk(dir.path(), &release.metainfo).unwrap();
    commit_all(&store, &release);
    truncate(
        &complete_path(dir.path(), &release).join("blob.bin"),
        K16 as u64 + 10,
    );
    let k16 = K16 as u32;
    let batch = store.read_blocks(&[(0, 0, k16), (1, 0, k16)]);
    assert_eq!(batch[0].as_ref().unwrap(), &release.piece(0));
    assert!(matches!(batch[1], Err(StorageError::Corrupt { .. })));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn read_block_never_panics(piece in 0u32..6, begin in any::<u32>(), len in any::<u32>(), have in any::<u8>()) {
        let release = spanning();
        let store = Store::memory(&release.metainfo);
        for i in (0..release.piece_count()).filter(|i| have & (1 << i) != 0) {
            store.commit_piece(i, release.piece(i)).unwrap();
        }
        let result = store.read_block(piece, begin, len);
        let inside = release
            .metainfo
            .info()
            .piece_len(piece)
            .is_some_and(|pl| u64::from(begin) + u64::from(len) <= u64::from(pl));
        let ok = inside && (1..=MAX_READ_BLOCK_LEN).contains(&len) && store.has_piece(piece);
        prop_assert_eq!(result.is_ok(), ok);
        if let Ok(bytes) = result {
            prop_assert_eq!(bytes.len(), len as usize);
        }
    }
}

// ---- cache ----

fn config(dir: &Path, disk_budget: u64, memory_budget: u64) -> CacheConfig {
    CacheConfig {
        disk_budget,
        memory_budget,
        ..CacheConfig::new(dir)
    }
}

/// A release of `pieces` 16 KiB pieces; `seed` makes it distinct.
fn sized(pieces: usize, seed: u64) -> Release {
    Release::multi(&[
        ("data.bin", pieces * PIECE as usize - 1),
        ("seed.txt", 1 + seed as usize),
    ])
}

#[test]
fn the_cache_places_releases_by_size_and_choice() {
    let dir = TempDir::new().unwrap();
    let cache = Cache::open(CacheConfig {
        memory_threshold: 2 * PIECE as u64,
        ..CacheConfig::new(dir.path())
    })
    .unwrap();
    let small = sized(1, 1);
    let large = sized(3, 2);
    let chosen = sized(1, 3);
    let s = cache
        .open_or_create(&small.metainfo, Placement::Auto)
        .unwrap();
    let l = cache
        .open_or_create(&large.metainfo, Placement::Auto)
        .unwrap();
    let c = cache
        .open_or_create(&chosen.metainfo, Placement::Disk)
        .unwrap();
    assert_eq!(s.kind(), StoreKind::Memory);
    assert_eq!(l.kind(), StoreKind::Disk);
    assert_eq!(c.kind(), StoreKind::Disk);
    // The same release twice is the same store.
    let again = cache
        .open_or_create(&large.metainfo, Placement::Memory)
        .unwrap();
    assert!(Arc::ptr_eq(&l, &again));
    let usage = cache.usage();
    assert_eq!(usage.memory, small.metainfo.info().total_length());
    assert_eq!(
        usage.disk,
        large.metainfo.info().total_length() + chosen.metainfo.info().total_length()
    );
    assert_eq!(usage.releases, 3);
    // Disk releases get their torrent stored beside them.
    assert_eq!(
        cache.load_metainfo(&large.metainfo.info_hash()).unwrap(),
        Some(large.metainfo.clone())
    );
    assert_eq!(
        cache.load_metainfo(&small.metainfo.info_hash()).unwrap(),
        None
    );
}

#[test]
fn a_release_larger_than_the_budget_is_refused() {
    let dir = TempDir::new().unwrap();
    let cache = Cache::open(config(dir.path(), 2 * PIECE as u64, PIECE as u64)).unwrap();
    let big = sized(3, 0);
    assert!(matches!(
        cache.open_or_create(&big.metainfo, Placement::Disk),
        Err(StorageError::TooLarge { .. })
    ));
    assert!(matches!(
        cache.open_or_create(&big.metainfo, Placement::Memory),
        Err(StorageError::TooLarge { .. })
    ));
    assert_eq!(cache.usage().releases, 0);
}

#[test]
fn eviction_takes_the_least_recently_used_and_keeps_the_budget() {
    let dir = TempDir::new().unwrap();
    // Room for three 2-piece releases (each a little over 2 pieces).
    let budget = 7 * PIECE as u64;
    let cache = Cache::open(config(dir.path(), budget, 0)).unwrap();
    let releases: Vec<Release> = (0..4).map(|seed| sized(2, seed)).collect();
    for r in &releases[..3] {
        let store = cache.open_or_create(&r.metainfo, Placement::Disk).unwrap();
        commit_all(&store, r);
        assert!(store.is_complete());
    } // Handles dropped: nothing is in use.
    // Use 0 and 2; 1 is now the least recently used.
    assert!(cache.touch(&releases[0].metainfo.info_hash()));
    assert!(cache.get(&releases[2].metainfo.info_hash()).is_some());
    let _fourth = cache
        .open_or_create(&releases[3].metainfo, Placement::Disk)
        .unwrap();
    let hashes: Vec<_> = releases.iter().map(|r| r.metainfo.info_hash()).collect();
    assert!(cache.get(&hashes[1]).is_none());
    assert!(!dir.path().join(hashes[1].to_hex()).exists());
    assert!(
        !dir.path()
            .join(format!("{}.torrent", hashes[1].to_hex()))
            .exists()
    );
    for kept in [0, 2] {
        assert!(cache.get(&hashes[kept]).is_some());
        assert!(dir.path().join(hashes[kept].to_hex()).is_dir());
    }
    assert!(cache.usage().disk <= budget);
}

#[test]
fn eviction_skips_releases_in_use_or_pinned() {
    let dir = TempDir::new().unwrap();
    let budget = 5 * PIECE as u64;
    let cache = Cache::open(config(dir.path(), 0, budget)).unwrap();
    let a = sized(2, 1);
    let b = sized(2, 2);
    let c = sized(2, 3);
    let held = cache
        .open_or_create(&a.metainfo, Placement::Memory)
        .unwrap();
    drop(
        cache
            .open_or_create(&b.metainfo, Placement::Memory)
            .unwrap(),
    );
    assert!(cache.pin(&b.metainfo.info_hash()));
    // `a` is in use and `b` pinned: no room for `c`.
    let err = cache
        .open_or_create(&c.metainfo, Placement::Memory)
        .unwrap_err();
    assert!(matches!(err, StorageError::CacheFull { .. }), "{err}");
    assert!(cache.get(&a.metainfo.info_hash()).is_some());
    assert!(cache.get(&b.metainfo.info_hash()).is_some());
    // Placed automatically, it falls back to disk... which has no budget here.
    assert!(cache.open_or_create(&c.metainfo, Placement::Auto).is_err());
    // Once `b` is unpinned it can go, though it was used more recently than `a`.
    assert!(cache.unpin(&b.metainfo.info_hash()));
    cache
        .open_or_create(&c.metainfo, Placement::Memory)
        .unwrap();
    assert!(cache.get(&b.metainfo.info_hash()).is_none());
    assert!(cache.get(&a.metainfo.info_hash()).is_some());
    drop(held);
    assert!(cache.usage().memory <= budget);
}

#[test]
fn plan_room_names_held_releases_but_never_leased_or_pinned_ones() {
    let dir = TempDir::new().unwrap();
    let budget = 5 * PIECE as u64;
    let cache = Cache::open(config(dir.path(), 0, budget)).unwrap();
    let (a, b, c) = (sized(2, 1), sized(2, 2), sized(2, 3));
    // Both held (as by seeding sessions); `a` used first.
    let held_a = cache
        .open_or_create(&a.metainfo, Placement::Memory)
        .unwrap();
    let held_b = cache
        .open_or_create(&b.metainfo, Placement::Memory)
        .unwrap();
    assert!(
        cache
            .open_or_create(&c.metainfo, Placement::Memory)
            .is_err()
    );
    // The least recently used held release must let go for `c` to fit.
    assert_eq!(
        cache.plan_room(&c.metainfo, Placement::Memory).unwrap(),
        vec![a.metainfo.info_hash()]
    );
    // A reader's lease protects `a`; then `b` is named instead.
    let lease = held_a.lease();
    assert_eq!(held_a.lease_count(), 1);
    assert_eq!(
        cache.plan_room(&c.metainfo, Placement::Memory).unwrap(),
        vec![b.metainfo.info_hash()]
    );
    // With `b` pinned too, nothing can make room.
    assert!(cache.pin(&b.metainfo.info_hash()));
    assert!(matches!(
        cache.plan_room(&c.metainfo, Placement::Memory),
        Err(StorageError::CacheFull { .. })
    ));
    assert!(cache.unpin(&b.metainfo.info_hash()));
    // Once the holder of `b` lets go, the retried open evicts it; `a` stays.
    drop(held_b);
    assert_eq!(
        cache.plan_room(&c.metainfo, Placement::Memory).unwrap(),
        Vec::new(),
        "room without stopping anyone"
    );
    cache
        .open_or_create(&c.metainfo, Placement::Memory)
        .unwrap();
    assert!(cache.get(&b.metainfo.info_hash()).is_none());
    assert!(cache.get(&a.metainfo.info_hash()).is_some());
    // Clones are leases of their own.
    let second = lease.clone();
    drop(lease);
    assert_eq!(held_a.lease_count(), 1);
    drop(second);
    assert_eq!(held_a.lease_count(), 0);
}

#[test]
fn forget_leaves_the_files_and_frees_the_budget() {
    let dir = TempDir::new().unwrap();
    let cache = Cache::open(CacheConfig::new(dir.path())).unwrap();
    let a = sized(2, 1);
    let store = cache.open_or_create(&a.metainfo, Placement::Disk).unwrap();
    commit_all(&store, &a);
    drop(store);
    let ih = a.metainfo.info_hash();
    assert!(cache.forget(&ih));
    assert!(!cache.forget(&ih));
    assert_eq!(cache.usage().releases, 0);
    assert!(dir.path().join(ih.to_hex()).is_dir());
}

/// A release forgotten while someone reads it is never deleted from under them: neither by
/// a later `remove` nor by eviction of a second store opened on the same folder (it is the
/// same store, adopted again).
#[test]
fn a_forgotten_release_still_held_is_neither_removed_nor_evicted() {
    let dir = TempDir::new().unwrap();
    let budget = 3 * PIECE as u64;
    let cache = Cache::open(config(dir.path(), budget, 0)).unwrap();
    let (a, b) = (sized(2, 1), sized(2, 2));
    let ih = a.metainfo.info_hash();
    let held = cache.open_or_create(&a.metainfo, Placement::Disk).unwrap();
    commit_all(&held, &a);
    let reader = held.lease();
    assert!(cache.forget(&ih));
    assert_eq!(cache.usage().releases, 0, "forgotten: outside the budget");
    assert!(cache.leased(&ih).is_some());
    assert!(matches!(cache.remove(&ih), Err(StorageError::InUse(h)) if h == ih));
    assert!(complete_path(dir.path(), &a).is_dir());

    // Opened again: the same store, counted again, and not evictable while leased.
    let again = cache.open_or_create(&a.metainfo, Placement::Disk).unwrap();
    assert!(Arc::ptr_eq(&again, &held));
    assert_eq!(cache.usage().releases, 1);
    drop(again);
    assert!(matches!(
        cache.open_or_create(&b.metainfo, Placement::Disk),
        Err(StorageError::CacheFull { .. })
    ));
    assert!(cache.evict_to_budget().unwrap().is_empty());
    assert_eq!(&held.read_file(0).unwrap()[..], a.file(0));

    // Once nobody holds it, it can go.
    drop(reader);
    drop(held);
    assert!(cache.leased(&ih).is_none());
    assert!(cache.remove(&ih).unwrap());
    assert!(!complete_path(dir.path(), &a).exists());
}

#[test]
fn evict_to_budget_after_a_restart_with_a_smaller_budget() {
    let dir = TempDir::new().unwrap();
    let a = sized(2, 1);
    let b = sized(2, 2);
    {
        let cache = Cache::open(CacheConfig::new(dir.path())).unwrap();
        for r in [&a, &b] {
            let store = cache.open_or_create(&r.metainfo, Placement::Disk).unwrap();
            commit_all(&store, r);
        }
        // Nothing to evict within the budget.
        assert!(cache.evict_to_budget().unwrap().is_empty());
    }
    let budget = 3 * PIECE as u64;
    let cache = Cache::open(config(dir.path(), budget, 0)).unwrap();
    assert!(cache.usage().disk > budget);
    // `b` is used after the restart (not yet opened), so `a` goes.
    assert!(cache.touch(&b.metainfo.info_hash()));
    let evicted = cache.evict_to_budget().unwrap();
    assert_eq!(evicted, [a.metainfo.info_hash()]);
    assert!(cache.usage().disk <= budget);
    assert!(!dir.path().join(a.metainfo.info_hash().to_hex()).exists());
    assert!(dir.path().join(b.metainfo.info_hash().to_hex()).is_dir());
    let hb = cache.open_or_create(&b.metainfo, Placement::Disk).unwrap();
    assert!(hb.is_complete());
}

#[test]
fn scan_and_restore_after_a_restart() {
    let dir = TempDir::new().unwrap();
    let done = sized(2, 1);
    let partial = sized(3, 2);
    {
        let cache = Cache::open(CacheConfig::new(dir.path())).unwrap();
        let store = cache
            .open_or_create(&done.metainfo, Placement::Disk)
            .unwrap();
        commit_all(&store, &done);
        let store = cache
            .open_or_create(&partial.metainfo, Placement::Disk)
            .unwrap();
        store.commit_piece(1, partial.piece(1)).unwrap();
    }
    // Unrelated files in the cache folder are ignored.
    fs::write(dir.path().join("README"), b"hi").unwrap();
    fs::write(
        dir.path().join(format!("{}.torrent.tmp", "ab".repeat(20))),
        b"x",
    )
    .unwrap();

    let cache = Cache::open(CacheConfig::new(dir.path())).unwrap();
    assert!(
        !dir.path()
            .join(format!("{}.torrent.tmp", "ab".repeat(20)))
            .exists()
    );
    let mut expected = vec![
        CachedRelease {
            info_hash: done.metainfo.info_hash(),
            complete: true,
            has_metainfo: true,
        },
        CachedRelease {
            info_hash: partial.metainfo.info_hash(),
            complete: false,
            has_metainfo: true,
        },
    ];
    expected.sort_by_key(|r| r.info_hash);
    assert_eq!(cache.scan().unwrap(), expected);
    // Found releases count against the budget before they are opened.
    let total = done.metainfo.info().total_length() + partial.metainfo.info().total_length();
    assert_eq!(cache.usage().disk, total);
    assert!(cache.get(&done.metainfo.info_hash()).is_none());

    let stores = cache.restore().unwrap();
    assert_eq!(stores.len(), 2);
    let d = cache.get(&done.metainfo.info_hash()).unwrap();
    assert!(d.is_complete());
    let p = cache.get(&partial.metainfo.info_hash()).unwrap();
    assert_eq!(p.have().pieces().collect::<Vec<_>>(), [1]);
    assert_eq!(cache.usage().disk, total);
}

#[test]
fn remove_deletes_a_release_unless_it_is_in_use() {
    let dir = TempDir::new().unwrap();
    let cache = Cache::open(CacheConfig::new(dir.path())).unwrap();
    let r = sized(1, 1);
    let ih = r.metainfo.info_hash();
    let store = cache.open_or_create(&r.metainfo, Placement::Disk).unwrap();
    commit_all(&store, &r);
    assert!(matches!(cache.remove(&ih), Err(StorageError::InUse(h)) if h == ih));
    drop(store);
    assert!(cache.remove(&ih).unwrap());
    assert!(!cache.remove(&ih).unwrap());
    assert!(cache.scan().unwrap().is_empty());
    assert_eq!(cache.usage().releases, 0);
}

#[test]
fn a_stored_torrent_with_another_info_hash_is_corrupt() {
    let dir = TempDir::new().unwrap();
    let cache = Cache::open(CacheConfig::new(dir.path())).unwrap();
    let a = sized(1, 1);
    let b = sized(1, 2);
    let path = dir
        .path()
        .join(format!("{}.torrent", a.metainfo.info_hash().to_hex()));
    fs::write(&path, b.metainfo.to_bytes()).unwrap();
    assert!(matches!(
        cache.load_metainfo(&a.metainfo.info_hash()),
        Err(StorageError::Corrupt { .. })
    ));
    fs::write(&path, pattern(5, 100)).unwrap();
    assert!(matches!(
        cache.load_metainfo(&a.metainfo.info_hash()),
        Err(StorageError::Corrupt { .. })
    ));
    // `restore` skips it rather than failing.
    assert!(cache.restore().unwrap().is_empty());
}

/// Disk reads served on the calling task from the page cache (Linux only).
#[cfg(target_os = "linux")]
mod nowait {
    use std::io::IoSliceMut;

    use rustix::io::ReadWriteFlags;

    use super::*;

    fn disk(store: &Store) -> &DiskPieces {
        match &store.backend {
            Backend::Disk(disk) => disk,
            Backend::Memory(_) => panic!("not a disk store"),
        }
    }

    /// Whether the file system under `dir` serves `RWF_NOWAIT` reads of a file just written
    /// (a few refuse them); the tests that expect reads served inline need it.
    fn nowait_supported(dir: &Path) -> bool {
        let path = dir.join("nowait-probe");
        fs::write(&path, [7; 64]).unwrap();
        let file = fs::File::open(&path).unwrap();
        let mut buf = [0; 64];
        let read = rustix::io::preadv2(
            &file,
            &mut [IoSliceMut::new(&mut buf)],
            0,
            ReadWriteFlags::NOWAIT,
        );
        fs::remove_file(&path).unwrap();
        let supported = read.is_ok_and(|n| n == 64);
        if !supported {
            eprintln!("SKIPPED (inline part): this file system refuses RWF_NOWAIT reads");
        }
        supported
    }

    /// The blocks of a batch, every one of which must have been read.
    fn unwrap_all(batch: Vec<Result<Bytes, StorageError>>) -> Vec<Bytes> {
        batch.into_iter().map(Result::unwrap).collect()
    }

    /// A complete disk store of [`spanning`] whose files were each read once (so their
    /// handles are kept and their bytes in the page cache).
    fn primed() -> (Arc<Store>, Release, TempDir) {
        let release = spanning();
        let dir = TempDir::new().unwrap();
        let store = Arc::new(Store::disk(dir.path(), &release.metainfo).unwrap());
        commit_all(&store, &release);
        for index in 0..release.metainfo.info().files().len() {
            store.read_file(index).unwrap();
        }
        (store, release, dir)
    }

    /// Single blocks, a run over two pieces, a block over two files (piece 0 holds the end
    /// of `a.js`, the empty file and the start of `c/big.bin`), a run over the last piece.
    fn block_lists(release: &Release) -> Vec<Vec<(u32, u32, u32)>> {
        let k16 = K16 as u32;
        let last = release.piece_count() - 1;
        let last_len = release.piece(last).len() as u32;
        vec![
            vec![(1, 10, 100)],
            vec![(0, 0, k16), (1, 0, k16)],
            vec![(0, 9_000, 2_000)],
            vec![
                (2, 0, 16),
                (0, 0, 100),
                (last, 0, 2),
                (last, 2, last_len - 2),
            ],
        ]
    }

    #[tokio::test]
    async fn inline_reads_give_what_the_blocking_pool_gives() {
        let (store, release, dir) = primed();
        let inline = nowait_supported(dir.path());
        for blocks in block_lists(&release) {
            let want = unwrap_all(store.read_blocks(&blocks));
            if inline {
                let got = unwrap_all(store.read_blocks_nowait(&blocks).expect("served inline"));
                assert_eq!(got, want, "{blocks:?}");
            }
            let before = disk(&store).nowait_reads();
            let got = unwrap_all(store.read_blocks_async(blocks.clone()).await);
            assert_eq!(got, want, "{blocks:?}");
            assert_eq!(disk(&store).nowait_reads() > before, inline, "{blocks:?}");
        }
        for index in 0..release.metainfo.info().files().len() {
            let before = disk(&store).nowait_reads();
            assert_eq!(
                store.read_file_async(index).await.unwrap(),
                release.file(index)
            );
            // The empty file needs no read at all.
            let read_inline = inline && !release.file(index).is_empty();
            assert_eq!(disk(&store).nowait_reads() > before, read_inline, "{index}");
        }
        let before = disk(&store).nowait_reads();
        assert_eq!(
            store.read_block_async(1, 10, 100).await.unwrap(),
            release.piece(1).slice(10..110)
        );
        assert_eq!(disk(&store).nowait_reads() > before, inline);
    }

    #[tokio::test]
    async fn a_read_that_would_block_falls_back_to_the_blocking_pool() {
        let (store, release, _dir) = primed();
        disk(&store).refuse_nowait(true);
        for blocks in block_lists(&release) {
            let want = unwrap_all(store.read_blocks(&blocks));
            assert!(store.read_blocks_nowait(&blocks).is_none());
            let got = unwrap_all(store.read_blocks_async(blocks.clone()).await);
            assert_eq!(got, want, "{blocks:?}");
        }
        assert_eq!(store.read_file_async(2).await.unwrap(), release.file(2));
        assert_eq!(
            store.read_block_async(1, 10, 100).await.unwrap(),
            release.piece(1).slice(10..110)
        );
        assert_eq!(disk(&store).nowait_reads(), 0);
    }

    #[tokio::test]
    async fn an_unverified_piece_is_never_read_inline() {
        let release = Release::single(2 * K16);
        let dir = TempDir::new().unwrap();
        let inline = nowait_supported(dir.path());
        let store = Arc::new(Store::disk(dir.path(), &release.metainfo).unwrap());
        store.commit_piece(0, release.piece(0)).unwrap();
        // Piece 1's bytes are in the file (and the page cache), but it was never verified.
        let file = partial_path(dir.path(), &release).join("blob.bin");
        fs::write(&file, &release.content).unwrap();
        store.read_block(0, 0, 16).unwrap();
        let k16 = K16 as u32;
        assert_eq!(store.read_blocks_nowait(&[(0, 0, k16)]).is_some(), inline);
        assert!(store.read_blocks_nowait(&[(1, 0, k16)]).is_none());
        assert!(
            store
                .read_blocks_nowait(&[(0, 0, k16), (1, 0, k16)])
                .is_none()
        );
        assert!(store.read_file_nowait(0).is_none());
        let before = disk(&store).nowait_reads();
        let batch = store.read_blocks_async(vec![(0, 0, k16), (1, 0, 16)]).await;
        assert_eq!(batch[0].as_ref().unwrap(), &release.piece(0));
        assert!(matches!(
            batch[1],
            Err(StorageError::NotVerified { piece: 1 })
        ));
        assert!(matches!(
            store.read_block_async(1, 0, 16).await,
            Err(StorageError::NotVerified { piece: 1 })
        ));
        assert!(matches!(
            store.read_file_async(0).await,
            Err(StorageError::NotVerified { piece: 1 })
        ));
        assert_eq!(disk(&store).nowait_reads(), before);
    }

    #[tokio::test]
    async fn reads_larger_than_the_bound_go_to_the_blocking_pool() {
        let pieces = (INLINE_READ_MAX as usize / K16) + 2;
        let release = Release::single(pieces * K16);
        let dir = TempDir::new().unwrap();
        let store = Arc::new(Store::disk(dir.path(), &release.metainfo).unwrap());
        commit_all(&store, &release);
        store.read_file(0).unwrap();
        let k16 = K16 as u32;
        let all: Vec<(u32, u32, u32)> = (0..pieces as u32).map(|p| (p, 0, k16)).collect();
        assert!(store.read_blocks_nowait(&all).is_none());
        assert!(store.read_file_nowait(0).is_none());
        let got = store.read_blocks_async(all).await;
        for (piece, block) in got.into_iter().enumerate() {
            assert_eq!(block.unwrap(), release.piece(piece as u32));
        }
        assert_eq!(store.read_file_async(0).await.unwrap(), release.content);
        assert_eq!(disk(&store).nowait_reads(), 0);
    }

    #[tokio::test]
    async fn kept_handles_are_dropped_when_the_folder_moves() {
        let release = Release::single(2 * K16);
        let dir = TempDir::new().unwrap();
        let store = Arc::new(Store::disk(dir.path(), &release.metainfo).unwrap());
        store.commit_piece(0, release.piece(0)).unwrap();
        // A handle on the file in the `.partial` folder is kept.
        assert_eq!(
            store.read_block_async(0, 0, 16).await.unwrap(),
            release.piece(0).slice(..16)
        );
        assert_eq!(disk(&store).kept_handles(), 1);
        // The last piece completes the store: the folder is renamed and the handle dropped.
        store.commit_piece(1, release.piece(1)).unwrap();
        assert!(store.is_complete());
        // The complete folder's file is replaced by another (a new inode): reads give what
        // is there now, as the blocking path always did, not the old file's bytes.
        let file = complete_path(dir.path(), &release).join("blob.bin");
        let mut replaced = release.content.clone();
        replaced[..16].copy_from_slice(&[0xAA; 16]);
        let temp = dir.path().join("replacement");
        fs::write(&temp, &replaced).unwrap();
        fs::rename(&temp, &file).unwrap();
        for _ in 0..2 {
            // The first read opens the new file on the pool, the second may be inline.
            assert_eq!(
                store.read_block_async(0, 0, 16).await.unwrap(),
                &replaced[..16]
            );
            assert_eq!(store.read_block(0, 0, 16).unwrap(), &replaced[..16]);
        }
        assert_eq!(disk(&store).kept_handles(), 1);
    }

    #[test]
    fn kept_handles_are_bounded_per_store() {
        let names: Vec<String> = (0..50).map(|i| format!("f{i:02}.js")).collect();
        let files: Vec<(&str, usize)> = names.iter().map(|n| (n.as_str(), 100)).collect();
        let release = Release::multi(&files);
        let dir = TempDir::new().unwrap();
        let store = Store::disk(dir.path(), &release.metainfo).unwrap();
        commit_all(&store, &release);
        for index in 0..files.len() {
            assert_eq!(store.read_file(index).unwrap(), release.file(index));
            assert!(disk(&store).kept_handles() <= 32);
        }
        assert!(disk(&store).kept_handles() > 0);
    }
}
