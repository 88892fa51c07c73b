//! `.torrent` metainfo (BEP 3), with tracker tiers (BEP 12) and web seeds (BEP 19).
//!
//! A torrent is the one document every part of swarmcdn trusts for piece hashes and file
//! names, and it comes from the network (the tracker's registry, a peer's metadata exchange).
//! So parsing *is* validation: a [`Metainfo`] only exists if its piece length is sane, its
//! hash count matches its size, its paths cannot escape the download folder, no two files
//! collide on disk and its sizes are within [`MetainfoLimits`]. Code that holds one (the disk
//! cache, the web seed, the piece scheduler) never re-checks and never panics on its shape.
//!
//! The info-hash is the SHA-1 of the `info` dictionary's bytes *exactly as received*: keys we
//! do not know, or an encoding that is not canonical, still count. We keep those raw bytes and
//! write them back verbatim in [`Metainfo::to_bytes`], so a torrent we parse and re-encode
//! keeps its info-hash. The outer dictionary (trackers, web seeds, comment) is not hashed; it
//! is re-encoded canonically from the typed fields and unknown outer keys are dropped.
//!
//! The fields that decide the info-hash ([`Info`], the raw bytes, the hash) are private with
//! read accessors so they cannot drift apart; the outer fields are public and free to edit.
//!
//! Torrents are made by [`TorrentBuilder`], deterministically: the same files and options give
//! the same bytes, and the same info-hash as `mktorrent` for the same piece length.
//!
//! ```
//! use swarmcdn_proto::metainfo::{Metainfo, TorrentBuilder};
//! use swarmcdn_proto::RelativePath;
//!
//! let torrent = TorrentBuilder::new("share-button-1.0.0")
//!     .add_bytes(RelativePath::parse("button.js")?, b"export const x = 1;\n".to_vec())
//!     .add_bytes(RelativePath::parse("icons/share.svg")?, b"<svg/>".to_vec())
//!     .url_list(vec!["https://origin.example/webseed/".into()])
//!     .build()?;
//! let bytes = torrent.to_bytes();
//! let parsed = Metainfo::from_bytes(&bytes)?;
//! assert_eq!(parsed.info_hash(), torrent.info_hash());
//! assert_eq!(parsed.info().files()[1].path.to_string(), "share-button-1.0.0/icons/share.svg");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod builder;
mod files;

use std::collections::BTreeSet;
use std::fmt;

use bip_bencode::{BDictAccess, BRefAccess, BencodeRef};
use sha1::{Digest, Sha1};

use crate::bencode::{self, BencodeError, put_bytes, put_int};
use crate::id::InfoHash;
use crate::magnet::Magnet;
use crate::path::{PathError, RelativePath};

pub use builder::{BuildError, Source, TARGET_MAX_PIECES, TorrentBuilder, auto_piece_length};
pub use files::{FileRange, FileRanges, TorrentFile};

/// The smallest piece length accepted: one 16 KiB block, the unit peers request.
pub const MIN_PIECE_LENGTH: u32 = 16 * 1024;
/// The largest piece length accepted: 16 MiB (a piece is held in memory while it is checked).
pub const MAX_PIECE_LENGTH: u32 = 16 * 1024 * 1024;
/// Default for [`MetainfoLimits::max_files`].
pub const DEFAULT_MAX_FILES: usize = 10_000;
/// Default for [`MetainfoLimits::max_total_length`]: 2 GiB, the 1 GB cache plus slack.
pub const DEFAULT_MAX_TOTAL_LENGTH: u64 = 2 * 1024 * 1024 * 1024;
/// Default for [`MetainfoLimits::max_trackers`] (all tiers of `announce-list` together).
pub const DEFAULT_MAX_TRACKERS: usize = 64;
/// Default for [`MetainfoLimits::max_web_seeds`] (entries of `url-list`).
pub const DEFAULT_MAX_WEB_SEEDS: usize = 64;

/// Bounds applied when a torrent is parsed (and when one is built).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetainfoLimits {
    /// Bounds on the bencode document itself (input size, nesting).
    pub bencode: bencode::Limits,
    /// The most files a torrent may list.
    pub max_files: usize,
    /// The largest total content size, in bytes.
    pub max_total_length: u64,
    /// The most tracker URLs in `announce-list`, counted over all tiers.
    pub max_trackers: usize,
    /// The most web-seed URLs in `url-list`.
    pub max_web_seeds: usize,
}

impl MetainfoLimits {
    /// The defaults: see [`DEFAULT_MAX_FILES`], [`DEFAULT_MAX_TOTAL_LENGTH`],
    /// [`DEFAULT_MAX_TRACKERS`], [`DEFAULT_MAX_WEB_SEEDS`] and [`bencode::Limits::DEFAULT`].
    pub const DEFAULT: MetainfoLimits = MetainfoLimits {
        bencode: bencode::Limits::DEFAULT,
        max_files: DEFAULT_MAX_FILES,
        max_total_length: DEFAULT_MAX_TOTAL_LENGTH,
        max_trackers: DEFAULT_MAX_TRACKERS,
        max_web_seeds: DEFAULT_MAX_WEB_SEEDS,
    };
}

impl Default for MetainfoLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why bytes are not an acceptable torrent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetainfoError {
    /// The bytes are not bencode (or exceed the bencode limits).
    #[error("torrent is not valid bencode: {0}")]
    Bencode(#[from] BencodeError),
    /// The document is bencode but not a dictionary.
    #[error("a torrent is a bencoded dictionary")]
    NotADictionary,
    /// A required key is absent.
    #[error("torrent has no `{key}`")]
    MissingKey {
        /// Where the key was expected, e.g. `info.piece length`.
        key: String,
    },
    /// A key holds the wrong kind of value.
    #[error("torrent `{key}` should be {expected}")]
    WrongType {
        /// The key, e.g. `info.files[2].length`.
        key: String,
        /// What it should hold.
        expected: &'static str,
    },
    /// A text value is not UTF-8 (BEP 3 requires UTF-8 for text).
    #[error("torrent `{key}` is not UTF-8")]
    NotUtf8 {
        /// The key.
        key: String,
    },
    /// The info dictionary has both `length` and `files`.
    #[error("torrent info has both `length` (single file) and `files` (multi-file)")]
    AmbiguousLayout,
    /// The piece length is not a power of two.
    #[error("piece length {0} is not a power of two")]
    PieceLengthNotPowerOfTwo(i64),
    /// The piece length is below [`MIN_PIECE_LENGTH`].
    #[error("piece length {0} is below the minimum of {MIN_PIECE_LENGTH}")]
    PieceLengthTooSmall(i64),
    /// The piece length is above [`MAX_PIECE_LENGTH`].
    #[error("piece length {0} is above the maximum of {MAX_PIECE_LENGTH}")]
    PieceLengthTooLarge(i64),
    /// `pieces` is not a whole number of 20-byte SHA-1 hashes.
    #[error("`pieces` is {0} bytes, not a multiple of 20")]
    PiecesNotMultipleOf20(usize),
    /// The number of piece hashes does not match the content size.
    #[error("torrent has {actual} piece hashes, its size needs {expected}")]
    PieceCountMismatch {
        /// ceil(total length / piece length).
        expected: u64,
        /// How many hashes `pieces` holds.
        actual: u64,
    },
    /// More pieces than a 32-bit piece index can name (the peer wire uses 32 bits).
    #[error("torrent has {0} pieces, more than a 32-bit index can name")]
    TooManyPieces(u64),
    /// A length is negative.
    #[error("torrent `{key}` is negative")]
    NegativeLength {
        /// The key holding the length.
        key: String,
    },
    /// The torrent `name` is not a single valid path component.
    #[error("torrent name is not a valid file or folder name: {0}")]
    InvalidName(#[source] PathError),
    /// A file path is unsafe or malformed (`..`, absolute, empty, separators, not UTF-8).
    #[error("path of file {index} is not acceptable: {source}")]
    InvalidPath {
        /// The file's position in `info.files`.
        index: usize,
        /// What is wrong with it.
        #[source]
        source: PathError,
    },
    /// Two files have the same path.
    #[error("the file `{0}` appears twice")]
    DuplicatePath(String),
    /// A file's path is also the folder of another file (`a` and `a/b`).
    #[error("`{file}` is a file but also the folder of `{other}`")]
    PathConflict {
        /// The path that is both a file and a folder.
        file: String,
        /// A file inside it.
        other: String,
    },
    /// A BEP 47 padding file: we do not support them (see [`Metainfo`]).
    #[error("file {0} is a BEP 47 padding file; padding files are not supported")]
    PaddingFile(usize),
    /// The torrent holds no data (no files, or only empty ones).
    #[error("torrent holds no data")]
    Empty,
    /// More files than [`MetainfoLimits::max_files`].
    #[error("torrent lists {count} files, the limit is {limit}")]
    TooManyFiles {
        /// How many files the torrent lists.
        count: usize,
        /// The limit in force.
        limit: usize,
    },
    /// The total size is above [`MetainfoLimits::max_total_length`].
    #[error("torrent content is larger than the limit of {limit} bytes")]
    TotalTooLarge {
        /// The limit in force.
        limit: u64,
    },
    /// More tracker URLs than [`MetainfoLimits::max_trackers`].
    #[error("torrent lists more than {limit} trackers")]
    TooManyTrackers {
        /// The limit in force.
        limit: usize,
    },
    /// More web seeds than [`MetainfoLimits::max_web_seeds`].
    #[error("torrent lists more than {limit} web seeds")]
    TooManyWebSeeds {
        /// The limit in force.
        limit: usize,
    },
}

/// A validated torrent.
///
/// Not supported, and rejected at parse time: BEP 47 padding files (`attr` containing `p`),
/// pure BitTorrent v2 torrents (no `pieces`), torrents with no data. Hybrid v1/v2 torrents
/// parse as v1 (the v2 keys are kept in the raw info bytes, so the v1 info-hash is right).
#[derive(Clone, PartialEq, Eq)]
pub struct Metainfo {
    /// The main tracker's announce URL (BEP 3).
    pub announce: Option<String>,
    /// Tracker tiers (BEP 12): try the tiers in order, the URLs of a tier in any order.
    /// Empty tiers are dropped when parsing.
    pub announce_list: Vec<Vec<String>>,
    /// Web seeds (BEP 19), in the order given; empty strings are dropped when parsing.
    pub url_list: Vec<String>,
    /// Free text.
    pub comment: Option<String>,
    /// The program that made the torrent.
    pub created_by: Option<String>,
    /// When the torrent was made, in seconds since the Unix epoch.
    pub creation_date: Option<i64>,
    info: Info,
    info_hash: InfoHash,
    info_bytes: Vec<u8>,
}

/// The `info` dictionary: what the info-hash covers.
#[derive(Clone, PartialEq, Eq)]
pub struct Info {
    name: String,
    piece_length: u32,
    pieces: Vec<[u8; 20]>,
    private: bool,
    layout: FileLayout,
    /// Derived from `name` and `layout` at parse time: paths on disk, offsets.
    files: Vec<TorrentFile>,
    total_length: u64,
}

/// How the content is laid out, as the torrent states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileLayout {
    /// One file, saved under the torrent's name.
    Single {
        /// The file's size in bytes.
        length: u64,
    },
    /// Several files in a folder named after the torrent.
    Multi {
        /// The files in torrent order (the order of the data in the pieces).
        files: Vec<FileEntry>,
    },
}

/// One entry of a multi-file torrent's `files` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// The file's size in bytes.
    pub length: u64,
    /// The path inside the torrent's folder (without the folder itself).
    pub path: RelativePath,
}

impl Metainfo {
    /// Parses and validates a torrent with the default [`MetainfoLimits`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Metainfo, MetainfoError> {
        Self::from_bytes_with(bytes, &MetainfoLimits::DEFAULT)
    }

    /// Parses and validates a torrent within `limits`.
    pub fn from_bytes_with(
        bytes: &[u8],
        limits: &MetainfoLimits,
    ) -> Result<Metainfo, MetainfoError> {
        let root = bencode::decode_ref(bytes, &limits.bencode)?;
        let dict = root.dict().ok_or(MetainfoError::NotADictionary)?;

        let info_ref = dict.lookup(b"info").ok_or_else(|| missing("info"))?;
        let info = parse_info(info_ref, limits)?;
        let info_bytes = info_ref.buffer().to_vec();
        let info_hash = InfoHash::new(Sha1::digest(&info_bytes).into());

        let announce = opt_string(dict, "announce", "announce")?;
        let announce_list = parse_announce_list(dict, limits)?;
        let url_list = parse_url_list(dict, limits)?;
        let comment = opt_string(dict, "comment", "comment")?;
        let created_by = opt_string(dict, "created by", "created by")?;
        let creation_date = match dict.lookup(b"creation date") {
            None => None,
            Some(v) => Some(
                v.int()
                    .ok_or_else(|| wrong("creation date", "an integer"))?,
            ),
        };

        Ok(Metainfo {
            announce,
            announce_list,
            url_list,
            comment,
            created_by,
            creation_date,
            info,
            info_hash,
            info_bytes,
        })
    }

    /// The canonical bencode of the torrent. The `info` value is written as the raw bytes it
    /// was parsed from (or built as), so the info-hash never changes; the outer dictionary is
    /// written from the typed fields, keys sorted, absent and empty fields left out.
    pub fn to_bytes(&self) -> Vec<u8> {
        encode_torrent(
            &Outer {
                announce: self.announce.as_deref(),
                announce_list: &self.announce_list,
                url_list: &self.url_list,
                comment: self.comment.as_deref(),
                created_by: self.created_by.as_deref(),
                creation_date: self.creation_date,
            },
            &self.info_bytes,
        )
    }

    /// The validated `info` dictionary.
    pub fn info(&self) -> &Info {
        &self.info
    }

    /// SHA-1 of [`Metainfo::info_bytes`].
    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }

    /// The bencoded `info` dictionary exactly as received (what BEP 9 metadata exchange sends).
    pub fn info_bytes(&self) -> &[u8] {
        &self.info_bytes
    }

    /// Every tracker URL: `announce` first, then the `announce-list` tiers in order, each URL
    /// once.
    pub fn trackers(&self) -> Vec<String> {
        let mut seen = BTreeSet::new();
        self.announce
            .iter()
            .chain(self.announce_list.iter().flatten())
            .filter(|url| seen.insert(url.as_str()))
            .cloned()
            .collect()
    }

    /// A magnet link naming this torrent, its trackers and its web seeds.
    pub fn magnet(&self) -> Magnet {
        Magnet {
            info_hash: self.info_hash,
            display_name: Some(self.info.name.clone()),
            trackers: self.trackers(),
            web_seeds: self.url_list.clone(),
            exact_sources: Vec::new(),
        }
    }
}

impl fmt::Debug for Metainfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metainfo")
            .field("info_hash", &self.info_hash)
            .field("announce", &self.announce)
            .field("announce_list", &self.announce_list)
            .field("url_list", &self.url_list)
            .field("comment", &self.comment)
            .field("created_by", &self.created_by)
            .field("creation_date", &self.creation_date)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl Info {
    /// The torrent's name: the file name (single-file) or the folder name (multi-file).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bytes per piece (the last piece may be shorter); a power of two.
    pub fn piece_length(&self) -> u32 {
        self.piece_length
    }

    /// The SHA-1 of every piece, in order.
    pub fn pieces(&self) -> &[[u8; 20]] {
        &self.pieces
    }

    /// The SHA-1 of piece `index`, if there is such a piece.
    pub fn piece_hash(&self, index: u32) -> Option<&[u8; 20]> {
        self.pieces.get(index as usize)
    }

    /// Whether the torrent is private (BEP 27: no DHT, no peer exchange).
    pub fn is_private(&self) -> bool {
        self.private
    }

    /// The layout exactly as the torrent states it.
    pub fn layout(&self) -> &FileLayout {
        &self.layout
    }

    /// Whether this is a multi-file torrent (content in a folder named [`Info::name`]).
    pub fn is_multi_file(&self) -> bool {
        matches!(self.layout, FileLayout::Multi { .. })
    }

    /// The content size in bytes: the sum of the file lengths (never 0).
    pub fn total_length(&self) -> u64 {
        self.total_length
    }

    /// How many pieces there are: ceil(total length / piece length).
    pub fn piece_count(&self) -> u32 {
        // Checked at parse time to fit.
        u32::try_from(self.pieces.len()).unwrap_or(u32::MAX)
    }
}

impl fmt::Debug for Info {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Info")
            .field("name", &self.name)
            .field("piece_length", &self.piece_length)
            .field("piece_count", &self.pieces.len())
            .field("private", &self.private)
            .field("total_length", &self.total_length)
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

// ---- parsing ----

type Dict<'d, 'a> = &'d dyn BDictAccess<&'a [u8], BencodeRef<'a>>;

fn missing(key: impl Into<String>) -> MetainfoError {
    MetainfoError::MissingKey { key: key.into() }
}

fn wrong(key: impl Into<String>, expected: &'static str) -> MetainfoError {
    MetainfoError::WrongType {
        key: key.into(),
        expected,
    }
}

/// A UTF-8 string value; `name` is the key's full name for error messages.
fn as_string(value: &BencodeRef<'_>, name: &str) -> Result<String, MetainfoError> {
    let bytes = value.bytes().ok_or_else(|| wrong(name, "a string"))?;
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| MetainfoError::NotUtf8 { key: name.into() })
}

fn opt_string(dict: Dict<'_, '_>, key: &str, name: &str) -> Result<Option<String>, MetainfoError> {
    dict.lookup(key.as_bytes())
        .map(|v| as_string(v, name))
        .transpose()
}

fn parse_announce_list(
    dict: Dict<'_, '_>,
    limits: &MetainfoLimits,
) -> Result<Vec<Vec<String>>, MetainfoError> {
    const KEY: &str = "announce-list";
    let Some(value) = dict.lookup(KEY.as_bytes()) else {
        return Ok(Vec::new());
    };
    let tiers = value.list().ok_or_else(|| wrong(KEY, "a list of lists"))?;
    let mut count = 0usize;
    let mut out = Vec::new();
    for (t, tier) in tiers.into_iter().enumerate() {
        let urls = tier
            .list()
            .ok_or_else(|| wrong(format!("{KEY}[{t}]"), "a list of strings"))?;
        let mut parsed = Vec::new();
        for (u, url) in urls.into_iter().enumerate() {
            count += 1;
            if count > limits.max_trackers {
                return Err(MetainfoError::TooManyTrackers {
                    limit: limits.max_trackers,
                });
            }
            parsed.push(as_string(url, &format!("{KEY}[{t}][{u}]"))?);
        }
        if !parsed.is_empty() {
            out.push(parsed);
        }
    }
    Ok(out)
}

fn parse_url_list(
    dict: Dict<'_, '_>,
    limits: &MetainfoLimits,
) -> Result<Vec<String>, MetainfoError> {
    const KEY: &str = "url-list";
    let Some(value) = dict.lookup(KEY.as_bytes()) else {
        return Ok(Vec::new());
    };
    // BEP 19: a single URL may be given as a string instead of a one-element list.
    let mut out = Vec::new();
    if value.bytes().is_some() {
        out.push(as_string(value, KEY)?);
    } else {
        let list = value
            .list()
            .ok_or_else(|| wrong(KEY, "a string or a list of strings"))?;
        for (i, url) in list.into_iter().enumerate() {
            if i >= limits.max_web_seeds {
                return Err(MetainfoError::TooManyWebSeeds {
                    limit: limits.max_web_seeds,
                });
            }
            out.push(as_string(url, &format!("{KEY}[{i}]"))?);
        }
    }
    out.retain(|url| !url.is_empty());
    Ok(out)
}

fn non_negative(value: i64, key: impl FnOnce() -> String) -> Result<u64, MetainfoError> {
    u64::try_from(value).map_err(|_| MetainfoError::NegativeLength { key: key() })
}

fn check_piece_length(length: i64) -> Result<u32, MetainfoError> {
    if length < i64::from(MIN_PIECE_LENGTH) {
        return Err(MetainfoError::PieceLengthTooSmall(length));
    }
    if length > i64::from(MAX_PIECE_LENGTH) {
        return Err(MetainfoError::PieceLengthTooLarge(length));
    }
    let length32 = u32::try_from(length).map_err(|_| MetainfoError::PieceLengthTooLarge(length))?;
    if !length32.is_power_of_two() {
        return Err(MetainfoError::PieceLengthNotPowerOfTwo(length));
    }
    Ok(length32)
}

fn parse_info(value: &BencodeRef<'_>, limits: &MetainfoLimits) -> Result<Info, MetainfoError> {
    let dict = value.dict().ok_or_else(|| wrong("info", "a dictionary"))?;

    let name_bytes = dict
        .lookup(b"name")
        .ok_or_else(|| missing("info.name"))?
        .bytes()
        .ok_or_else(|| wrong("info.name", "a string"))?;
    let name_path =
        RelativePath::from_byte_components([name_bytes]).map_err(MetainfoError::InvalidName)?;
    let name = name_path.file_name().to_owned();

    let piece_length = dict
        .lookup(b"piece length")
        .ok_or_else(|| missing("info.piece length"))?
        .int()
        .ok_or_else(|| wrong("info.piece length", "an integer"))?;
    let piece_length = check_piece_length(piece_length)?;

    let pieces_raw = dict
        .lookup(b"pieces")
        .ok_or_else(|| missing("info.pieces"))?
        .bytes()
        .ok_or_else(|| wrong("info.pieces", "a string"))?;
    let (chunks, rest) = pieces_raw.as_chunks::<20>();
    if !rest.is_empty() {
        return Err(MetainfoError::PiecesNotMultipleOf20(pieces_raw.len()));
    }

    let private = match dict.lookup(b"private") {
        None => false,
        Some(v) => v.int().ok_or_else(|| wrong("info.private", "an integer"))? != 0,
    };

    let layout = match (dict.lookup(b"length"), dict.lookup(b"files")) {
        (Some(_), Some(_)) => return Err(MetainfoError::AmbiguousLayout),
        (None, None) => return Err(missing("info.length or info.files")),
        (Some(length), None) => {
            let length = length
                .int()
                .ok_or_else(|| wrong("info.length", "an integer"))?;
            FileLayout::Single {
                length: non_negative(length, || "info.length".into())?,
            }
        }
        (None, Some(files)) => parse_files(files, limits)?,
    };

    // Paths on disk, offsets and the total, with the bounds checked as we add up.
    let mut files = Vec::new();
    let mut total: u64 = 0;
    let too_large = MetainfoError::TotalTooLarge {
        limit: limits.max_total_length,
    };
    match &layout {
        FileLayout::Single { length } => {
            files.push(TorrentFile {
                path: name_path,
                offset: 0,
                length: *length,
            });
            total = *length;
        }
        FileLayout::Multi { files: entries } => {
            for (index, entry) in entries.iter().enumerate() {
                let path = entry
                    .path
                    .prefixed(&name)
                    .map_err(|source| MetainfoError::InvalidPath { index, source })?;
                files.push(TorrentFile {
                    path,
                    offset: total,
                    length: entry.length,
                });
                total = total.checked_add(entry.length).ok_or(too_large.clone())?;
            }
            check_unique_paths(entries.iter().map(|e| &e.path))?;
        }
    }
    if total > limits.max_total_length {
        return Err(too_large);
    }
    if total == 0 {
        return Err(MetainfoError::Empty);
    }

    let expected = total.div_ceil(u64::from(piece_length));
    let actual = chunks.len() as u64;
    if expected != actual {
        return Err(MetainfoError::PieceCountMismatch { expected, actual });
    }
    if u32::try_from(actual).is_err() {
        return Err(MetainfoError::TooManyPieces(actual));
    }

    Ok(Info {
        name,
        piece_length,
        pieces: chunks.to_vec(),
        private,
        layout,
        files,
        total_length: total,
    })
}

fn parse_files(
    value: &BencodeRef<'_>,
    limits: &MetainfoLimits,
) -> Result<FileLayout, MetainfoError> {
    let list = value
        .list()
        .ok_or_else(|| wrong("info.files", "a list of dictionaries"))?;
    if list.len() > limits.max_files {
        return Err(MetainfoError::TooManyFiles {
            count: list.len(),
            limit: limits.max_files,
        });
    }
    if list.len() == 0 {
        return Err(MetainfoError::Empty);
    }
    let mut files = Vec::with_capacity(list.len());
    for (index, file) in list.into_iter().enumerate() {
        let key = |k: &str| format!("info.files[{index}].{k}");
        let dict = file
            .dict()
            .ok_or_else(|| wrong(format!("info.files[{index}]"), "a dictionary"))?;
        // BEP 47: `attr` holds flag letters; `p` marks a padding file.
        if let Some(attr) = dict.lookup(b"attr") {
            let attr = attr.bytes().ok_or_else(|| wrong(key("attr"), "a string"))?;
            if attr.contains(&b'p') {
                return Err(MetainfoError::PaddingFile(index));
            }
        }
        let length = dict
            .lookup(b"length")
            .ok_or_else(|| missing(key("length")))?
            .int()
            .ok_or_else(|| wrong(key("length"), "an integer"))?;
        let length = non_negative(length, || key("length"))?;
        let components = dict
            .lookup(b"path")
            .ok_or_else(|| missing(key("path")))?
            .list()
            .ok_or_else(|| wrong(key("path"), "a list of strings"))?;
        let mut parts = Vec::with_capacity(components.len());
        for c in components {
            parts.push(
                c.bytes()
                    .ok_or_else(|| wrong(key("path"), "a list of strings"))?,
            );
        }
        let path = RelativePath::from_byte_components(parts)
            .map_err(|source| MetainfoError::InvalidPath { index, source })?;
        files.push(FileEntry { length, path });
    }
    Ok(FileLayout::Multi { files })
}

/// Rejects two files with the same path, and a file whose path is the folder of another.
///
/// Sorting the component lists puts a path right before the paths it is a folder of (every
/// path between `a` and `a/b` in this order starts with `a`), so comparing neighbours finds
/// every clash.
pub(crate) fn check_unique_paths<'p>(
    paths: impl Iterator<Item = &'p RelativePath>,
) -> Result<(), MetainfoError> {
    let mut sorted: Vec<&[String]> = paths.map(RelativePath::components).collect();
    sorted.sort_unstable();
    for pair in sorted.windows(2) {
        let [a, b] = pair else { continue };
        if a == b {
            return Err(MetainfoError::DuplicatePath(a.join("/")));
        }
        if b.starts_with(a) {
            return Err(MetainfoError::PathConflict {
                file: a.join("/"),
                other: b.join("/"),
            });
        }
    }
    Ok(())
}

// ---- encoding ----

/// The outer (not hashed) fields of a torrent, borrowed for encoding.
pub(crate) struct Outer<'a> {
    pub(crate) announce: Option<&'a str>,
    pub(crate) announce_list: &'a [Vec<String>],
    pub(crate) url_list: &'a [String],
    pub(crate) comment: Option<&'a str>,
    pub(crate) created_by: Option<&'a str>,
    pub(crate) creation_date: Option<i64>,
}

/// Writes the torrent dictionary with its keys in canonical (byte) order.
pub(crate) fn encode_torrent(outer: &Outer<'_>, info_bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(info_bytes.len() + 256);
    out.push(b'd');
    if let Some(announce) = outer.announce {
        put_bytes(&mut out, b"announce");
        put_bytes(&mut out, announce.as_bytes());
    }
    let tiers: Vec<&Vec<String>> = outer
        .announce_list
        .iter()
        .filter(|t| !t.is_empty())
        .collect();
    if !tiers.is_empty() {
        put_bytes(&mut out, b"announce-list");
        out.push(b'l');
        for tier in tiers {
            out.push(b'l');
            for url in tier {
                put_bytes(&mut out, url.as_bytes());
            }
            out.push(b'e');
        }
        out.push(b'e');
    }
    if let Some(comment) = outer.comment {
        put_bytes(&mut out, b"comment");
        put_bytes(&mut out, comment.as_bytes());
    }
    if let Some(created_by) = outer.created_by {
        put_bytes(&mut out, b"created by");
        put_bytes(&mut out, created_by.as_bytes());
    }
    if let Some(date) = outer.creation_date {
        put_bytes(&mut out, b"creation date");
        put_int(&mut out, date);
    }
    put_bytes(&mut out, b"info");
    out.extend_from_slice(info_bytes);
    let urls: Vec<&String> = outer.url_list.iter().filter(|u| !u.is_empty()).collect();
    if !urls.is_empty() {
        put_bytes(&mut out, b"url-list");
        out.push(b'l');
        for url in urls {
            put_bytes(&mut out, url.as_bytes());
        }
        out.push(b'e');
    }
    out.push(b'e');
    out
}

#[cfg(test)]
mod tests;
