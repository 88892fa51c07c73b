//! Where the torrent's bytes live on disk: files, piece sizes, and byte ranges mapped to files.
//!
//! The pieces of a torrent run across its files as if they were one long byte string, in
//! torrent order. The disk cache writes a checked piece into the files it covers and the web
//! seed turns a piece (or a run of pieces) into HTTP range requests per file; both ask the
//! same question, "which parts of which files hold bytes `a..b` of the torrent", and get the
//! answer from [`Info::file_ranges`]. The file offsets are computed once at parse time, so the
//! answer is a binary search plus a walk, without allocation.

use std::ops::Range;

use super::Info;
use crate::path::RelativePath;

/// One file of a torrent, where it goes on disk and where its bytes sit in the torrent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorrentFile {
    /// The path below the download folder: `name` for a single-file torrent,
    /// `name/<path>` for a multi-file one.
    pub path: RelativePath,
    /// Where the file's first byte is in the torrent's byte string.
    pub offset: u64,
    /// The file's size in bytes (may be 0).
    pub length: u64,
}

/// A run of bytes inside one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileRange {
    /// The file's index in [`Info::files`].
    pub file_index: usize,
    /// Where the run starts inside the file.
    pub file_offset: u64,
    /// Where the run starts in the torrent's byte string.
    pub torrent_offset: u64,
    /// How many bytes (never 0).
    pub length: u64,
}

impl FileRange {
    /// The run as a range of offsets inside its file.
    pub fn file_range(&self) -> Range<u64> {
        self.file_offset..self.file_offset + self.length
    }
}

/// The file runs covering a byte range of the torrent, in order; see [`Info::file_ranges`].
#[derive(Debug, Clone)]
pub struct FileRanges<'a> {
    files: &'a [TorrentFile],
    index: usize,
    pos: u64,
    end: u64,
}

impl Iterator for FileRanges<'_> {
    type Item = FileRange;

    fn next(&mut self) -> Option<FileRange> {
        while self.pos < self.end {
            let file = self.files.get(self.index)?;
            let file_end = file.offset.saturating_add(file.length);
            if file_end <= self.pos {
                // An empty file, or one wholly before `pos`.
                self.index += 1;
                continue;
            }
            let run_end = file_end.min(self.end);
            let range = FileRange {
                file_index: self.index,
                file_offset: self.pos - file.offset,
                torrent_offset: self.pos,
                length: run_end - self.pos,
            };
            self.pos = run_end;
            self.index += 1;
            return Some(range);
        }
        None
    }
}

impl Info {
    /// Every file with its path on disk, its offset in the torrent and its length, in torrent
    /// order.
    pub fn files(&self) -> &[TorrentFile] {
        &self.files
    }

    /// Where piece `index` starts in the torrent's byte string.
    pub fn piece_offset(&self, index: u32) -> Option<u64> {
        (index < self.piece_count()).then(|| u64::from(index) * u64::from(self.piece_length))
    }

    /// The size of piece `index`: the piece length, except for a shorter last piece.
    pub fn piece_len(&self, index: u32) -> Option<u32> {
        let start = self.piece_offset(index)?;
        let len = self
            .total_length
            .saturating_sub(start)
            .min(u64::from(self.piece_length));
        // At most `piece_length`, which is a u32.
        u32::try_from(len).ok()
    }

    /// The file runs holding `length` bytes from `offset` in the torrent's byte string, or
    /// `None` if the range reaches past the end. Empty files are skipped; an empty range
    /// yields nothing.
    pub fn file_ranges(&self, offset: u64, length: u64) -> Option<FileRanges<'_>> {
        let end = offset.checked_add(length)?;
        if end > self.total_length {
            return None;
        }
        // The first file that ends after `offset`.
        let index = self
            .files
            .partition_point(|f| f.offset.saturating_add(f.length) <= offset);
        Some(FileRanges {
            files: &self.files,
            index,
            pos: offset,
            end,
        })
    }

    /// The file runs holding piece `index`, in order: writing them one after the other
    /// rebuilds the piece. `None` if there is no such piece.
    pub fn piece_file_ranges(&self, index: u32) -> Option<FileRanges<'_>> {
        let offset = self.piece_offset(index)?;
        let len = self.piece_len(index)?;
        self.file_ranges(offset, u64::from(len))
    }

    /// The pieces that hold bytes of file `file_index` (empty for an empty file), or `None`
    /// if there is no such file.
    pub fn file_pieces(&self, file_index: usize) -> Option<Range<u32>> {
        let file = self.files.get(file_index)?;
        let piece_length = u64::from(self.piece_length);
        let first = file.offset / piece_length;
        let end = if file.length == 0 {
            first
        } else {
            (file.offset + file.length).div_ceil(piece_length)
        };
        Some(u32::try_from(first).ok()?..u32::try_from(end).ok()?)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Metainfo, TorrentBuilder};
    use super::*;

    const K16: u64 = 16 * 1024;

    /// Files of 10 000, 0, 2*16 KiB and 5 bytes, with 16 KiB pieces.
    fn sample() -> Metainfo {
        TorrentBuilder::new("site")
            .add_bytes(RelativePath::parse("a").unwrap(), vec![1; 10_000])
            .add_bytes(RelativePath::parse("b/empty").unwrap(), Vec::new())
            .add_bytes(RelativePath::parse("c").unwrap(), vec![2; 2 * K16 as usize])
            .add_bytes(RelativePath::parse("d").unwrap(), vec![3; 5])
            .piece_length(16 * 1024)
            .build()
            .unwrap()
    }

    #[test]
    fn files_carry_disk_paths_and_offsets() {
        let m = sample();
        let files = m.info().files();
        let shown: Vec<(String, u64, u64)> = files
            .iter()
            .map(|f| (f.path.to_string(), f.offset, f.length))
            .collect();
        assert_eq!(
            shown,
            [
                ("site/a".to_string(), 0, 10_000),
                ("site/b/empty".to_string(), 10_000, 0),
                ("site/c".to_string(), 10_000, 2 * K16),
                ("site/d".to_string(), 10_000 + 2 * K16, 5),
            ]
        );
        assert_eq!(m.info().total_length(), 10_005 + 2 * K16);
    }

    #[test]
    fn piece_sizes_and_offsets() {
        let info = sample().info().clone();
        assert_eq!(info.piece_count(), 3);
        assert_eq!(info.piece_len(0), Some(16 * 1024));
        assert_eq!(info.piece_len(1), Some(16 * 1024));
        assert_eq!(info.piece_len(2), Some(10_005));
        assert_eq!(info.piece_len(3), None);
        assert_eq!(info.piece_offset(2), Some(2 * K16));
        assert_eq!(info.piece_offset(3), None);
        assert!(info.piece_hash(2).is_some());
        assert!(info.piece_hash(3).is_none());
    }

    #[test]
    fn a_piece_spanning_files_maps_to_each_run() {
        let info = sample().info().clone();
        let runs: Vec<FileRange> = info.piece_file_ranges(0).unwrap().collect();
        assert_eq!(
            runs,
            [
                FileRange {
                    file_index: 0,
                    file_offset: 0,
                    torrent_offset: 0,
                    length: 10_000
                },
                // The empty file `b/empty` is skipped.
                FileRange {
                    file_index: 2,
                    file_offset: 0,
                    torrent_offset: 10_000,
                    length: K16 - 10_000
                },
            ]
        );
        let last: Vec<FileRange> = info.piece_file_ranges(2).unwrap().collect();
        assert_eq!(
            last,
            [
                FileRange {
                    file_index: 2,
                    file_offset: 2 * K16 - 10_000,
                    torrent_offset: 2 * K16,
                    length: 10_000
                },
                FileRange {
                    file_index: 3,
                    file_offset: 0,
                    torrent_offset: 2 * K16 + 10_000,
                    length: 5
                },
            ]
        );
        assert_eq!(last[0].file_range(), 2 * K16 - 10_000..2 * K16);
        assert!(info.piece_file_ranges(3).is_none());
    }

    #[test]
    fn runs_of_every_piece_tile_the_torrent() {
        let info = sample().info().clone();
        let mut next = 0;
        for piece in 0..info.piece_count() {
            let mut in_piece = 0;
            for run in info.piece_file_ranges(piece).unwrap() {
                assert_eq!(run.torrent_offset, next);
                let file = &info.files()[run.file_index];
                assert_eq!(file.offset + run.file_offset, run.torrent_offset);
                assert!(run.file_offset + run.length <= file.length);
                next += run.length;
                in_piece += run.length;
            }
            assert_eq!(in_piece, u64::from(info.piece_len(piece).unwrap()));
        }
        assert_eq!(next, info.total_length());
    }

    #[test]
    fn byte_ranges_are_bounded_by_the_total() {
        let info = sample().info().clone();
        let total = info.total_length();
        assert!(
            info.file_ranges(total, 0)
                .is_some_and(|mut r| r.next().is_none())
        );
        assert!(info.file_ranges(total - 1, 2).is_none());
        assert!(info.file_ranges(u64::MAX, 2).is_none());
        let runs: Vec<FileRange> = info.file_ranges(9_999, 2).unwrap().collect();
        assert_eq!(runs.len(), 2);
        assert_eq!((runs[0].file_index, runs[1].file_index), (0, 2));
    }

    #[test]
    fn pieces_of_each_file() {
        let info = sample().info().clone();
        assert_eq!(info.file_pieces(0), Some(0..1));
        assert_eq!(info.file_pieces(1), Some(0..0));
        assert_eq!(info.file_pieces(2), Some(0..3));
        assert_eq!(info.file_pieces(3), Some(2..3));
        assert_eq!(info.file_pieces(4), None);
    }
}
