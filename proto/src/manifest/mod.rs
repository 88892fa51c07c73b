//! Signed release manifests: what a publisher vouches for, file by file.
//!
//! A torrent's SHA-1 piece hashes prove that bytes belong to a torrent, not that the torrent
//! came from the publisher, and browsers run what we serve. So every release is described by a
//! small document the publisher signs with Ed25519: the release's name and version, the
//! info-hash of the torrent that carries it, and for every file its path, size, content type,
//! SHA-256 and Subresource Integrity (SRI) value. A site pins the publisher's public key; the
//! tracker checks the signature when a release is published and the client checks it when it
//! fetches one. Once the manifest verifies and the torrent's info-hash matches it, every piece
//! and every file is bound to the publisher's key, whichever peer or web seed sent it.
//!
//! The signature covers a *canonical* encoding, not the JSON the HTTP API carries: JSON has no
//! single spelling (key order, whitespace, escapes, number forms), so signing it would make
//! every implementation reproduce our serializer byte for byte. Bencode with sorted keys has
//! exactly one spelling per value, we already have its encoder, and the same bytes can be
//! stored next to the torrents. A fixed prefix separates these signatures from any other use
//! of the key. Every value is checked on construction and on decoding, so a [`Manifest`] in
//! memory is always one that could have been signed.
//!
//! # The signed bytes (version 1)
//!
//! A manifest is signed over `"swarmcdn-manifest-v1\n"` (the 21 ASCII bytes of
//! [`SIGNING_DOMAIN`], ending in a line feed) followed by the canonical bencode (BEP 3;
//! dictionary keys sorted as raw byte strings, integers without leading zeros) of this
//! dictionary, with exactly these keys:
//!
//! | key | value |
//! |---|---|
//! | `created` | integer: Unix seconds, `0..=2^63-1` |
//! | `files` | list of file dictionaries (below), `1..=`[`MAX_FILES`] entries, in path order |
//! | `info_hash` | 20-byte string: the raw SHA-1 info-hash of the release's torrent |
//! | `name` | string: the release name (rules on [`ReleaseName`]) |
//! | `version` | string: a Semantic Versioning 2.0.0 version in its canonical spelling, at most [`MAX_VERSION_LEN`] bytes |
//!
//! Each file dictionary has exactly these keys:
//!
//! | key | value |
//! |---|---|
//! | `content_type` | string: 1 to [`MAX_CONTENT_TYPE_LEN`] bytes of printable ASCII (`0x20..=0x7e`); its media type is never `application/x-bittorrent` |
//! | `path` | string: UTF-8 components joined by `/`; no empty, `.` or `..` component, no `\` or control character, at most 32 components of at most 255 bytes |
//! | `sha256` | 32-byte string: the raw SHA-256 of the file |
//! | `size` | integer: the file's length in bytes, `0..=2^63-1` |
//! | `sri` | string: `sha384-` and the standard base64 (RFC 4648 section 4, 64 characters) of the file's SHA-384 |
//!
//! Files are in strictly increasing path order, comparing paths component by component, each
//! component as raw UTF-8 bytes (`a/b` sorts before `a-b`). No path appears twice, and no path
//! is a folder of another (`a` and `a/b` cannot both be files).
//!
//! The signature is pure Ed25519 (RFC 8032, no pre-hash, no context) over those bytes. We
//! verify strictly: small-order keys and `R` values and non-canonical `s` values are rejected.
//!
//! # The signed document
//!
//! A [`SignedManifest`] adds the signer's 32-byte public key and the 64-byte signature. It has
//! two encodings, both limited to [`MAX_ENCODED_LEN`] bytes:
//!
//! - JSON, for the HTTP API: `{"manifest": {"name": ..., "version": ..., "info_hash": <40
//!   hex>, "created": ..., "files": [{"path": ..., "size": ..., "content_type": ..., "sha256":
//!   <64 hex>, "sri": ...}]}, "public_key": <64 hex>, "signature": <128 hex>}`. Unknown keys
//!   are rejected; hex is written in lowercase and read in either case.
//! - Bencode, for storage next to torrents: a dictionary with keys `manifest` (the dictionary
//!   above), `public_key` (32-byte string) and `signature` (64-byte string). It must be in
//!   canonical form.
//!
//! # Example
//!
//! ```
//! use swarmcdn_proto::{InfoHash, RelativePath};
//! use swarmcdn_proto::manifest::{
//!     Manifest, ManifestFile, SignedManifest, Version, content_type_for_path,
//!     signing_key_from_seed,
//! };
//!
//! // The seeder passes 32 bytes of OS randomness here.
//! let key = signing_key_from_seed([7; 32]);
//! let body = b"alert('Hello, world.');";
//! let path = RelativePath::parse("button.js")?;
//! let file = ManifestFile::from_bytes(path.clone(), content_type_for_path("button.js"), body)?;
//! let manifest = Manifest::new(
//!     "share-button".parse()?,
//!     Version::new(1, 2, 0),
//!     InfoHash::new([0xab; 20]),
//!     1_700_000_000,
//!     vec![file],
//! )?;
//! let json = manifest.sign(&key).to_json();
//!
//! // A site that pinned the publisher's key:
//! let received = SignedManifest::from_json(json.as_bytes())?;
//! let verified = received.verify(&[key.verifying_key()])?;
//! assert_eq!(verified.name().as_str(), "share-button");
//! verified.file(&path).ok_or("no such file")?.verify_file(body)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod content_type;
mod file;
mod keys;
mod name;
mod sign;
mod wire;

pub use content_type::{DEFAULT_CONTENT_TYPE, MAX_CONTENT_TYPE_LEN, content_type_for_path};
pub use ed25519_dalek::{SigningKey, VerifyingKey};
pub use file::{FileDigests, FileHasher, ManifestFile, SRI_PREFIX, sri_sha384};
pub use keys::{
    SIGNING_KEY_PREFIX, parse_public_key, parse_signing_key, public_key_to_string,
    signing_key_from_seed, signing_key_to_string,
};
pub use name::{NameError, ReleaseName};
pub use semver::Version;
pub use sign::SignedManifest;

use serde::{Deserialize, Serialize};

use crate::bencode::{self, BencodeError, Value};
use crate::path::PathError;
use crate::{InfoHash, RelativePath};

/// The bytes in front of the canonical bencode in every signed message (see the module docs).
pub const SIGNING_DOMAIN: &[u8] = b"swarmcdn-manifest-v1\n";

/// The most files one manifest may list. A widget release has a handful; a few thousand covers
/// a whole static site.
pub const MAX_FILES: usize = 4096;

/// The largest JSON or bencode signed manifest accepted, in bytes: [`MAX_FILES`] entries of
/// about 250 bytes each come to 1 MiB in JSON, and this leaves room for long paths.
pub const MAX_ENCODED_LEN: usize = 2 * 1024 * 1024;

/// The longest version string accepted, in bytes.
pub const MAX_VERSION_LEN: usize = 128;

/// The largest `created` time and file `size` accepted: bencode integers are signed 64-bit.
pub const MAX_INTEGER: u64 = i64::MAX as u64;

/// Bounds for decoding the bencode form. Nesting is fixed by the format: the signed dictionary,
/// the manifest dictionary, the file list, a file dictionary, and a value in it.
pub const BENCODE_LIMITS: bencode::Limits = bencode::Limits {
    max_input: MAX_ENCODED_LEN,
    max_depth: 5,
    ..bencode::Limits::DEFAULT
};

/// Why a manifest was rejected, or a file does not match it.
///
/// What a caller does about it: [`UntrustedKey`](Self::UntrustedKey) means the release is not
/// from a publisher we trust (give up, and say so loudly: a configuration or an attack);
/// [`BadSignature`](Self::BadSignature) and the decoding variants mean the document was damaged
/// or forged (fetch it again, from another source if there is one);
/// [`SizeMismatch`](Self::SizeMismatch) and [`DigestMismatch`](Self::DigestMismatch) mean a
/// file's bytes are not the published ones (discard them and fetch the file again).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The encoded document is larger than [`MAX_ENCODED_LEN`].
    #[error("the manifest is {len} bytes, the limit is {limit}")]
    TooLarge {
        /// The document's length.
        len: usize,
        /// The limit in force.
        limit: usize,
    },
    /// The JSON is malformed, has a value of the wrong type, or a missing or unknown key.
    #[error("malformed manifest JSON: {0}")]
    Json(String),
    /// The bencode form is not valid bencode.
    #[error("malformed manifest bencode: {0}")]
    Bencode(#[from] BencodeError),
    /// The bencode form is valid bencode but not a manifest: a missing or unknown key, a value
    /// of the wrong type, or a non-canonical encoding.
    #[error("malformed manifest: {0}")]
    Malformed(String),
    /// The release name breaks a rule.
    #[error("bad release name: {0}")]
    BadName(#[from] NameError),
    /// The version is not a canonical Semantic Versioning version, or is too long.
    #[error("bad version: {0}")]
    BadVersion(String),
    /// The info-hash is not 40 hex digits.
    #[error("bad info-hash: it must be 40 hex digits")]
    BadInfoHash,
    /// An integer is above [`MAX_INTEGER`].
    #[error("`{field}` is {value}, the limit is {limit}")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The value given.
        value: u64,
        /// The largest value allowed.
        limit: u64,
    },
    /// The manifest lists no files.
    #[error("the manifest lists no files")]
    NoFiles,
    /// The manifest lists more than [`MAX_FILES`] files.
    #[error("the manifest lists {count} files, the limit is {limit}")]
    TooManyFiles {
        /// How many files were listed.
        count: usize,
        /// The limit in force.
        limit: usize,
    },
    /// A file's path is not a safe relative path.
    #[error("bad file path {path:?}: {source}")]
    BadPath {
        /// The path as given.
        path: String,
        /// The rule it breaks.
        source: PathError,
    },
    /// The files are not in path order.
    #[error("the files are not in path order: {path} comes after {previous}")]
    FilesNotSorted {
        /// The earlier entry.
        previous: RelativePath,
        /// The entry that should have come before it.
        path: RelativePath,
    },
    /// Two entries have the same path.
    #[error("the file {0} is listed twice")]
    DuplicateFile(RelativePath),
    /// A path is listed as a file and is also a folder of another file.
    #[error("{file} is listed as a file and is also a folder holding {inner}")]
    PathConflict {
        /// The entry used as a folder.
        file: RelativePath,
        /// The entry inside it.
        inner: RelativePath,
    },
    /// A file's content type breaks a rule.
    #[error("bad content type for {path}: {reason}")]
    BadContentType {
        /// The file.
        path: RelativePath,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// A file's SHA-256 is not 64 hex digits.
    #[error("bad SHA-256 for {path}: it must be 64 hex digits")]
    BadSha256 {
        /// The file.
        path: RelativePath,
    },
    /// A file's SRI value is not `sha384-` and 64 base64 characters.
    #[error("bad SRI value for {path}: {reason}")]
    BadSri {
        /// The file.
        path: RelativePath,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// A public key is not 64 hex digits, not a point on the curve, or a weak key.
    #[error("malformed public key: {0}")]
    MalformedKey(&'static str),
    /// The signature is not 128 hex digits.
    #[error("malformed signature: it must be 128 hex digits")]
    MalformedSignature,
    /// The manifest is signed by a key that is not among the trusted keys.
    #[error("the manifest is signed by {key}, which is not a trusted key")]
    UntrustedKey {
        /// The signer's public key, in hex.
        key: String,
    },
    /// The signature does not verify: the manifest was altered, or signed by another key.
    #[error("the manifest's signature does not verify")]
    BadSignature,
    /// A file has a different size from the one its manifest states.
    #[error("{path} is {actual} bytes, the manifest says {expected}")]
    SizeMismatch {
        /// The file.
        path: RelativePath,
        /// The size in the manifest.
        expected: u64,
        /// The size of the bytes checked.
        actual: u64,
    },
    /// A file's digest differs from the one its manifest states.
    #[error("the {algorithm} digest of {path} does not match the manifest")]
    DigestMismatch {
        /// The file.
        path: RelativePath,
        /// Which digest differs.
        algorithm: &'static str,
    },
    /// A signing key's text form is malformed.
    #[error("malformed signing key: {0}")]
    BadSigningKey(&'static str),
}

/// One release of a published asset, as its publisher describes it.
///
/// Valid by construction: the files are sorted, unique, between 1 and [`MAX_FILES`], and no
/// path is a folder of another. Build one with [`Manifest::new`], sign it with
/// [`Manifest::sign`]; received manifests come from [`SignedManifest::verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "wire::ManifestJson")]
pub struct Manifest {
    name: ReleaseName,
    version: Version,
    info_hash: InfoHash,
    created: u64,
    files: Vec<ManifestFile>,
}

impl Manifest {
    /// Assembles a manifest, sorting `files` by path. Fails on an empty or oversized file
    /// list, a path listed twice or used as a folder, an overlong version or a `created`
    /// above [`MAX_INTEGER`].
    pub fn new(
        name: ReleaseName,
        version: Version,
        info_hash: InfoHash,
        created: u64,
        mut files: Vec<ManifestFile>,
    ) -> Result<Self, ManifestError> {
        check_version(&version)?;
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Self::from_sorted(name, version, info_hash, created, files)
    }

    /// Checks everything but the version; the files must already be in order.
    fn from_sorted(
        name: ReleaseName,
        version: Version,
        info_hash: InfoHash,
        created: u64,
        files: Vec<ManifestFile>,
    ) -> Result<Self, ManifestError> {
        if created > MAX_INTEGER {
            return Err(ManifestError::OutOfRange {
                field: "created",
                value: created,
                limit: MAX_INTEGER,
            });
        }
        check_files(&files)?;
        Ok(Self {
            name,
            version,
            info_hash,
            created,
            files,
        })
    }

    /// The release's name.
    pub fn name(&self) -> &ReleaseName {
        &self.name
    }

    /// The release's version.
    pub fn version(&self) -> &Version {
        &self.version
    }

    /// The info-hash of the torrent that carries the release.
    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }

    /// When the publisher made the release, in Unix seconds.
    pub fn created(&self) -> u64 {
        self.created
    }

    /// The files, sorted by path.
    pub fn files(&self) -> &[ManifestFile] {
        &self.files
    }

    /// The entry for `path`, if the release has that file.
    pub fn file(&self, path: &RelativePath) -> Option<&ManifestFile> {
        self.files
            .binary_search_by(|f| f.path.cmp(path))
            .ok()
            .and_then(|i| self.files.get(i))
    }

    /// The sum of the file sizes (saturating: the sizes come from the network).
    pub fn total_size(&self) -> u64 {
        self.files
            .iter()
            .fold(0u64, |sum, f| sum.saturating_add(f.size))
    }

    /// The canonical bencode of the manifest (without the [`SIGNING_DOMAIN`] prefix).
    pub fn canonical_bencode(&self) -> Vec<u8> {
        self.to_value().to_bytes()
    }

    /// The exact bytes the signature covers: [`SIGNING_DOMAIN`], then
    /// [`canonical_bencode`](Self::canonical_bencode).
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut out = SIGNING_DOMAIN.to_vec();
        self.to_value().encode(&mut out);
        out
    }

    pub(crate) fn to_value(&self) -> Value {
        // Both integers are at most MAX_INTEGER (checked on construction), so they fit.
        let int = |n: u64| Value::Int(i64::try_from(n).unwrap_or(i64::MAX));
        let files = self
            .files
            .iter()
            .map(|f| {
                [
                    ("content_type", Value::bytes(f.content_type.as_bytes())),
                    ("path", Value::bytes(f.path.to_string())),
                    ("sha256", Value::bytes(f.sha256)),
                    ("size", int(f.size)),
                    ("sri", Value::bytes(f.sri.as_bytes())),
                ]
                .into_iter()
                .collect()
            })
            .collect();
        [
            ("created", int(self.created)),
            ("files", Value::List(files)),
            ("info_hash", Value::bytes(self.info_hash.0)),
            ("name", Value::bytes(self.name.as_str())),
            ("version", Value::bytes(self.version.to_string())),
        ]
        .into_iter()
        .collect()
    }

    pub(crate) fn from_value(value: &Value) -> Result<Self, ManifestError> {
        let dict = wire::Dict::new(
            value,
            "manifest",
            &["created", "files", "info_hash", "name", "version"],
        )?;
        let name = ReleaseName::new(dict.str("name")?)?;
        let version = parse_version(dict.str("version")?)?;
        let info_hash = InfoHash::new(dict.array("info_hash")?);
        let created = dict.uint("created")?;
        let entries = dict.list("files")?;
        if entries.len() > MAX_FILES {
            return Err(too_many_files(entries.len()));
        }
        let files = entries
            .iter()
            .map(file_from_value)
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_sorted(name, version, info_hash, created, files)
    }
}

fn file_from_value(value: &Value) -> Result<ManifestFile, ManifestError> {
    let dict = wire::Dict::new(
        value,
        "file entry",
        &["content_type", "path", "sha256", "size", "sri"],
    )?;
    ManifestFile::new(
        parse_path(dict.str("path")?)?,
        dict.uint("size")?,
        dict.str("content_type")?,
        dict.array("sha256")?,
        dict.str("sri")?,
    )
}

impl TryFrom<wire::FileJson> for ManifestFile {
    type Error = ManifestError;

    fn try_from(raw: wire::FileJson) -> Result<Self, Self::Error> {
        let path = parse_path(&raw.path)?;
        let Some(sha256) = wire::decode_hex(&raw.sha256) else {
            return Err(ManifestError::BadSha256 { path });
        };
        ManifestFile::new(path, raw.size, &raw.content_type, sha256, &raw.sri)
    }
}

impl TryFrom<wire::ManifestJson> for Manifest {
    type Error = ManifestError;

    fn try_from(raw: wire::ManifestJson) -> Result<Self, Self::Error> {
        let name = ReleaseName::try_from(raw.name)?;
        let version = parse_version(&raw.version)?;
        let info_hash = parse_info_hash(&raw.info_hash)?;
        if raw.files.count > MAX_FILES {
            return Err(too_many_files(raw.files.count));
        }
        let files = raw
            .files
            .entries
            .into_iter()
            .map(ManifestFile::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_sorted(name, version, info_hash, raw.created, files)
    }
}

fn too_many_files(count: usize) -> ManifestError {
    ManifestError::TooManyFiles {
        count,
        limit: MAX_FILES,
    }
}

fn parse_path(text: &str) -> Result<RelativePath, ManifestError> {
    RelativePath::parse(text).map_err(|source| ManifestError::BadPath {
        path: text.to_owned(),
        source,
    })
}

/// Forty hex digits only: base32 is for magnet links, not for our documents.
fn parse_info_hash(text: &str) -> Result<InfoHash, ManifestError> {
    wire::decode_hex(text)
        .map(InfoHash::new)
        .ok_or(ManifestError::BadInfoHash)
}

fn parse_version(text: &str) -> Result<Version, ManifestError> {
    if text.len() > MAX_VERSION_LEN {
        return Err(version_too_long(text.len()));
    }
    let version = Version::parse(text).map_err(|e| ManifestError::BadVersion(e.to_string()))?;
    // The signature covers the re-encoded spelling, so only the canonical one is accepted.
    if version.to_string() != text {
        return Err(ManifestError::BadVersion(
            "the version is not in its canonical spelling".into(),
        ));
    }
    Ok(version)
}

fn check_version(version: &Version) -> Result<(), ManifestError> {
    let len = version.to_string().len();
    if len > MAX_VERSION_LEN {
        return Err(version_too_long(len));
    }
    Ok(())
}

fn version_too_long(len: usize) -> ManifestError {
    ManifestError::BadVersion(format!(
        "the version is {len} bytes, the limit is {MAX_VERSION_LEN}"
    ))
}

/// Checks the file list's invariants. Because paths compare component by component, a path
/// that is a folder of another sorts directly before it or before another path inside it, so
/// comparing neighbours finds every conflict.
fn check_files(files: &[ManifestFile]) -> Result<(), ManifestError> {
    if files.is_empty() {
        return Err(ManifestError::NoFiles);
    }
    if files.len() > MAX_FILES {
        return Err(too_many_files(files.len()));
    }
    for pair in files.windows(2) {
        let [previous, next] = pair else { continue };
        let (previous, next) = (&previous.path, &next.path);
        match previous.cmp(next) {
            std::cmp::Ordering::Equal => return Err(ManifestError::DuplicateFile(next.clone())),
            std::cmp::Ordering::Greater => {
                return Err(ManifestError::FilesNotSorted {
                    previous: previous.clone(),
                    path: next.clone(),
                });
            }
            std::cmp::Ordering::Less => {}
        }
        if next.components().starts_with(previous.components()) {
            return Err(ManifestError::PathConflict {
                file: previous.clone(),
                inner: next.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn path(text: &str) -> RelativePath {
        RelativePath::parse(text).unwrap()
    }

    pub(crate) fn file(text: &str, body: &[u8]) -> ManifestFile {
        ManifestFile::from_bytes(path(text), content_type_for_path(text), body).unwrap()
    }

    /// A small fixed manifest; its canonical bytes are pinned in `canonical_layout_is_stable`.
    pub(crate) fn sample() -> Manifest {
        Manifest::new(
            ReleaseName::new("share-button").unwrap(),
            Version::parse("1.2.0-beta.1").unwrap(),
            InfoHash::new([0xab; 20]),
            1_700_000_000,
            vec![
                file("icons/share.svg", b"<svg/>"),
                file("button.js", b"alert('Hello, world.');"),
            ],
        )
        .unwrap()
    }

    #[test]
    fn new_sorts_files_and_looks_them_up() {
        let m = sample();
        let paths: Vec<String> = m.files().iter().map(|f| f.path().to_string()).collect();
        assert_eq!(paths, ["button.js", "icons/share.svg"]);
        assert_eq!(m.file(&path("icons/share.svg")).unwrap().size(), 6);
        assert_eq!(m.file(&path("icons/other.svg")), None);
        assert_eq!(m.total_size(), 29);
        assert_eq!(m.name().as_str(), "share-button");
        assert_eq!(m.version().to_string(), "1.2.0-beta.1");
        assert_eq!(m.info_hash(), InfoHash::new([0xab; 20]));
        assert_eq!(m.created(), 1_700_000_000);
    }

    #[test]
    fn paths_sort_component_by_component() {
        let m = Manifest::new(
            sample().name.clone(),
            Version::new(1, 0, 0),
            InfoHash::default(),
            0,
            vec![file("a-b", b""), file("a/b", b""), file("a.js", b"")],
        )
        .unwrap();
        let paths: Vec<String> = m.files().iter().map(|f| f.path().to_string()).collect();
        assert_eq!(paths, ["a/b", "a-b", "a.js"]);
    }

    fn manifest_with(files: Vec<ManifestFile>) -> Result<Manifest, ManifestError> {
        Manifest::new(
            ReleaseName::new("x").unwrap(),
            Version::new(1, 0, 0),
            InfoHash::default(),
            0,
            files,
        )
    }

    #[test]
    fn rejects_bad_file_lists() {
        assert_eq!(manifest_with(vec![]), Err(ManifestError::NoFiles));
        assert_eq!(
            manifest_with(vec![file("a.js", b"1"), file("a.js", b"2")]),
            Err(ManifestError::DuplicateFile(path("a.js")))
        );
        assert_eq!(
            manifest_with(vec![file("a/b/c", b""), file("a/b", b""), file("a/a", b"")]),
            Err(ManifestError::PathConflict {
                file: path("a/b"),
                inner: path("a/b/c")
            })
        );
        let many = (0..=MAX_FILES)
            .map(|i| file(&format!("f{i}"), b""))
            .collect();
        assert_eq!(
            manifest_with(many),
            Err(ManifestError::TooManyFiles {
                count: MAX_FILES + 1,
                limit: MAX_FILES
            })
        );
        let unsorted = vec![file("b", b""), file("a", b"")];
        assert_eq!(
            Manifest::from_sorted(
                ReleaseName::new("x").unwrap(),
                Version::new(1, 0, 0),
                InfoHash::default(),
                0,
                unsorted
            ),
            Err(ManifestError::FilesNotSorted {
                previous: path("b"),
                path: path("a")
            })
        );
    }

    #[test]
    fn rejects_out_of_range_created_and_long_versions() {
        let err = Manifest::new(
            ReleaseName::new("x").unwrap(),
            Version::new(1, 0, 0),
            InfoHash::default(),
            MAX_INTEGER + 1,
            vec![file("a", b"")],
        );
        assert!(matches!(
            err,
            Err(ManifestError::OutOfRange {
                field: "created",
                ..
            })
        ));
        let long = Version::parse(&format!("1.0.0-{}", "a".repeat(MAX_VERSION_LEN))).unwrap();
        let err = Manifest::new(
            ReleaseName::new("x").unwrap(),
            long,
            InfoHash::default(),
            0,
            vec![file("a", b"")],
        );
        assert!(matches!(err, Err(ManifestError::BadVersion(_))));
        assert!(matches!(
            parse_version("01.0.0"),
            Err(ManifestError::BadVersion(_))
        ));
        assert!(matches!(
            parse_version("v1.0.0"),
            Err(ManifestError::BadVersion(_))
        ));
        assert!(parse_version("1.0.0-rc.1+build.007").is_ok());
    }

    /// Guards the signed wire format: if this changes, every published signature breaks.
    #[test]
    fn canonical_layout_is_stable() {
        let m = sample();
        let bytes = m.signing_bytes();
        let (domain, rest) = bytes.split_at(SIGNING_DOMAIN.len());
        assert_eq!(domain, b"swarmcdn-manifest-v1\n");
        assert_eq!(rest, m.canonical_bencode());
        let button = m.file(&path("button.js")).unwrap();
        let svg = m.file(&path("icons/share.svg")).unwrap();
        let mut expected = Vec::new();
        expected.extend_from_slice(b"d7:createdi1700000000e5:filesl");
        expected.extend_from_slice(b"d12:content_type30:text/javascript; charset=utf-8");
        expected.extend_from_slice(b"4:path9:button.js6:sha25632:");
        expected.extend_from_slice(button.sha256());
        expected.extend_from_slice(b"4:sizei23e3:sri71:");
        expected.extend_from_slice(button.sri().as_bytes());
        expected.extend_from_slice(b"ed12:content_type13:image/svg+xml");
        expected.extend_from_slice(b"4:path15:icons/share.svg6:sha25632:");
        expected.extend_from_slice(svg.sha256());
        expected.extend_from_slice(b"4:sizei6e3:sri71:");
        expected.extend_from_slice(svg.sri().as_bytes());
        expected.extend_from_slice(b"ee9:info_hash20:");
        expected.extend_from_slice(&[0xab; 20]);
        expected.extend_from_slice(b"4:name12:share-button7:version12:1.2.0-beta.1e");
        assert_eq!(rest, expected);
        // The SHA-256 of the whole signed message, so a change anywhere is caught.
        assert_eq!(
            data_encoding::HEXLOWER.encode(&<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
            SAMPLE_SIGNING_BYTES_SHA256
        );
    }

    /// Computed once, independently of this code, by a short Python script that builds the
    /// same message by hand with `hashlib` and `base64` and prints its SHA-256.
    pub(crate) const SAMPLE_SIGNING_BYTES_SHA256: &str =
        "33a6151e88c7b92ef8d24d88cedaf74aefd26d7c86365fc0c2b1d8331f8d68fc";

    fn arb_component() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => "[a-zA-Z0-9 ._~-]{1,10}",
            1 => "\\PC{1,6}",
        ]
    }

    pub(crate) fn arb_path() -> impl Strategy<Value = RelativePath> {
        proptest::collection::vec(arb_component(), 1..4)
            .prop_filter_map("valid path", |c| RelativePath::from_components(c).ok())
    }

    fn arb_content_type() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => prop::sample::select(vec!["text/html; charset=utf-8", "image/png", "application/octet-stream"])
                .prop_map(str::to_owned),
            1 => "[ -~]{1,60}",
        ]
        .prop_filter("valid content type", |c| {
            content_type::check_content_type(c).is_ok()
        })
    }

    pub(crate) fn arb_file() -> impl Strategy<Value = ManifestFile> {
        (
            arb_path(),
            prop_oneof![0..=MAX_INTEGER, 0..100_000u64],
            arb_content_type(),
            any::<[u8; 32]>(),
            proptest::collection::vec(any::<u8>(), 48),
        )
            .prop_map(|(path, size, content_type, sha256, sha384)| {
                let sha384 = <[u8; 48]>::try_from(sha384).unwrap();
                let sri = FileDigests {
                    size,
                    sha256,
                    sha384,
                }
                .sri();
                ManifestFile::new(path, size, &content_type, sha256, &sri).unwrap()
            })
    }

    fn arb_identifiers() -> impl Strategy<Value = Option<String>> {
        proptest::option::of("[0-9A-Za-z-]{1,8}(\\.[0-9A-Za-z-]{1,8}){0,2}")
    }

    pub(crate) fn arb_version() -> impl Strategy<Value = Version> {
        (
            any::<u64>(),
            0..100u64,
            any::<u64>(),
            arb_identifiers(),
            arb_identifiers(),
        )
            .prop_filter_map("valid semver", |(major, minor, patch, pre, build)| {
                let mut text = format!("{major}.{minor}.{patch}");
                if let Some(pre) = pre {
                    text = format!("{text}-{pre}");
                }
                if let Some(build) = build {
                    text = format!("{text}+{build}");
                }
                Version::parse(&text).ok()
            })
    }

    pub(crate) fn arb_manifest() -> impl Strategy<Value = Manifest> {
        (
            name::tests::arb_name(),
            arb_version(),
            any::<[u8; 20]>(),
            prop_oneof![0..=MAX_INTEGER, 1_600_000_000..1_900_000_000u64],
            proptest::collection::vec(arb_file(), 1..6),
        )
            .prop_filter_map(
                "unique paths",
                |(name, version, info_hash, created, files)| {
                    Manifest::new(name, version, InfoHash::new(info_hash), created, files).ok()
                },
            )
    }

    proptest! {
        #[test]
        fn canonical_bencode_decodes_to_the_same_manifest(m in arb_manifest()) {
            let bytes = m.canonical_bencode();
            let value = bencode::decode(&bytes, &BENCODE_LIMITS).unwrap();
            prop_assert_eq!(Manifest::from_value(&value), Ok(m));
        }

        #[test]
        fn serde_json_of_a_manifest_round_trips(m in arb_manifest()) {
            let json = serde_json::to_string(&m).unwrap();
            prop_assert_eq!(serde_json::from_str::<Manifest>(&json).unwrap(), m);
        }

        #[test]
        fn versions_round_trip_through_text(v in arb_version()) {
            prop_assert_eq!(parse_version(&v.to_string()), Ok(v));
        }
    }
}
