//! Run with: `RUSTC_BOOTSTRAP=1 cargo fuzz run metainfo` (from `fuzz/`).
//!
//! Any `.torrent` bytes: parsing never panics; a torrent that parses re-encodes to bytes that
//! parse to the same torrent with the same info-hash, and its piece/file mapping is consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmcdn_proto::metainfo::Metainfo;

fuzz_target!(|data: &[u8]| {
    let Ok(torrent) = Metainfo::from_bytes(data) else {
        return;
    };
    let again = Metainfo::from_bytes(&torrent.to_bytes()).expect("re-encoded torrent parses");
    assert_eq!(again.info_hash(), torrent.info_hash());
    assert_eq!(again.info(), torrent.info());
    let info = torrent.info();
    let mut covered = 0u64;
    for piece in 0..info.piece_count() {
        let len = info.piece_len(piece).expect("piece in range") as u64;
        let ranges: u64 = info
            .piece_file_ranges(piece)
            .expect("piece in range")
            .map(|r| r.length)
            .sum();
        assert_eq!(ranges, len);
        covered += len;
    }
    assert_eq!(covered, info.total_length());
    let _ = torrent.magnet().to_uri();
});
