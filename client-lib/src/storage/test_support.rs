//! Test releases built in memory with the real torrent builder.

use std::sync::Arc;

use bytes::Bytes;
use swarmcdn_proto::RelativePath;
use swarmcdn_proto::metainfo::{Info, Metainfo, TorrentBuilder};

/// The piece length of test torrents unless told otherwise.
pub(crate) const PIECE: u32 = 16 * 1024;

/// A torrent and its content.
#[derive(Debug, Clone)]
pub(crate) struct Release {
    pub(crate) metainfo: Metainfo,
    /// Every byte of the torrent, in torrent order.
    pub(crate) content: Vec<u8>,
}

/// Deterministic bytes that differ between seeds and positions (so no two pieces match).
pub(crate) fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

impl Release {
    /// A single-file torrent `blob.bin` of `len` bytes with 16 KiB pieces.
    pub(crate) fn single(len: usize) -> Release {
        Self::single_with_piece_length(len, PIECE)
    }

    /// A single-file torrent `blob.bin` of `len` bytes with `piece_length`-byte pieces.
    pub(crate) fn single_with_piece_length(len: usize, piece_length: u32) -> Release {
        let path = RelativePath::parse("blob.bin").unwrap();
        let metainfo = TorrentBuilder::new("blob.bin")
            .add_bytes(path, pattern(1, len))
            .piece_length(piece_length)
            .build()
            .unwrap();
        Self::from_metainfo(metainfo, &[pattern(1, len)])
    }

    /// A multi-file torrent in folder `site` with the given files (path, length), in the
    /// order given (which must be sorted, as the builder sorts), 16 KiB pieces.
    pub(crate) fn multi(files: &[(&str, usize)]) -> Release {
        let mut builder = TorrentBuilder::new("site").piece_length(PIECE);
        let mut bodies = Vec::new();
        for (i, (path, len)) in files.iter().enumerate() {
            let body = pattern(i as u64 + 10, *len);
            builder = builder.add_bytes(RelativePath::parse(path).unwrap(), body.clone());
            bodies.push(body);
        }
        let release = Self::from_metainfo(builder.build().unwrap(), &bodies);
        for (file, (path, _)) in release.metainfo.info().files().iter().zip(files) {
            assert_eq!(
                file.path.to_string(),
                format!("site/{path}"),
                "give files sorted"
            );
        }
        release
    }

    fn from_metainfo(metainfo: Metainfo, bodies: &[Vec<u8>]) -> Release {
        assert_eq!(metainfo.info().files().len(), bodies.len());
        let content = bodies.concat();
        assert_eq!(content.len() as u64, metainfo.info().total_length());
        Release { metainfo, content }
    }

    /// The torrent's info, shared.
    pub(crate) fn info(&self) -> Arc<Info> {
        Arc::new(self.metainfo.info().clone())
    }

    /// The bytes of piece `index`.
    pub(crate) fn piece(&self, index: u32) -> Bytes {
        let info = self.metainfo.info();
        let start = info.piece_offset(index).unwrap() as usize;
        let len = info.piece_len(index).unwrap() as usize;
        Bytes::copy_from_slice(&self.content[start..start + len])
    }

    /// The bytes of file `index`.
    pub(crate) fn file(&self, index: usize) -> &[u8] {
        let f = &self.metainfo.info().files()[index];
        &self.content[f.offset as usize..(f.offset + f.length) as usize]
    }

    /// The number of pieces.
    pub(crate) fn piece_count(&self) -> u32 {
        self.metainfo.info().piece_count()
    }
}
