//! One file of a release: its path, size, content type and digests.
//!
//! Each file carries two digests. SHA-256 names the content (the site router uses it as the ETag);
//! the SHA-384 Subresource Integrity value (`sha384-<base64>`) is what a page puts in `<script
//! integrity="...">` so the *browser* checks the bytes too. A client checks both before it serves a
//! release: bytes that match the SHA-256 but not the SRI value (a manifest written by a faulty
//! tool) would be blocked by every browser, so such a release is refused and the one before it
//! stays in service. SRI allows several algorithms and several values in one attribute; we carry
//! exactly one SHA-384 value, the algorithm the SRI specification recommends, so there is one
//! spelling to check and nothing to negotiate.
//!
//! [`FileHasher`] computes both digests in one pass over chunks, so the seeder can describe a
//! large file without holding it in memory, and the client can check a file as it assembles it.

use data_encoding::{BASE64, HEXLOWER};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha384};

use super::content_type::check_content_type;
use super::wire;
use super::{MAX_INTEGER, ManifestError};
use crate::RelativePath;

/// The prefix of every SRI value we accept and produce.
pub const SRI_PREFIX: &str = "sha384-";

/// The length of the base64 part of an SRI value: 48 digest bytes are 64 characters, no padding.
const SRI_BASE64_LEN: usize = 64;

/// The SRI value (`sha384-` and the standard base64 of the SHA-384 digest) of `bytes`.
///
/// ```
/// use swarmcdn_proto::manifest::sri_sha384;
///
/// assert_eq!(
///     sri_sha384(b"alert('Hello, world.');"),
///     "sha384-H8BRh8j48O9oYatfu5AZzq6A9RINhZO5H16dQZngK7T62em8MUt1FLm52t+eX6xO"
/// );
/// ```
pub fn sri_sha384(bytes: &[u8]) -> String {
    sri_from_digest(&Sha384::digest(bytes).into())
}

fn sri_from_digest(digest: &[u8; 48]) -> String {
    let mut sri = String::with_capacity(SRI_PREFIX.len() + SRI_BASE64_LEN);
    sri.push_str(SRI_PREFIX);
    BASE64.encode_append(digest, &mut sri);
    sri
}

/// Checks an SRI value's form: [`SRI_PREFIX`], then exactly the base64 of a 48-byte digest.
pub(crate) fn check_sri(value: &str) -> Result<(), &'static str> {
    let Some(encoded) = value.strip_prefix(SRI_PREFIX) else {
        return Err("it must start with `sha384-`");
    };
    // 48 bytes encode to 64 characters with no padding, so every valid value has one spelling.
    if encoded.len() != SRI_BASE64_LEN || BASE64.decode(encoded.as_bytes()).is_err() {
        return Err("it must be `sha384-` and 64 characters of standard base64");
    }
    Ok(())
}

/// Computes a file's size, SHA-256 and SHA-384 over chunks fed in order.
///
/// ```
/// use swarmcdn_proto::manifest::{FileHasher, sri_sha384};
///
/// let mut hasher = FileHasher::new();
/// hasher.update(b"alert('Hello, ");
/// hasher.update(b"world.');");
/// let digests = hasher.finish();
/// assert_eq!(digests.size, 23);
/// assert_eq!(digests.sri(), sri_sha384(b"alert('Hello, world.');"));
/// ```
#[derive(Clone, Default)]
pub struct FileHasher {
    size: u64,
    sha256: Sha256,
    sha384: Sha384,
}

impl FileHasher {
    /// A hasher that has seen no bytes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next chunk of the file.
    pub fn update(&mut self, chunk: &[u8]) {
        self.size = self.size.saturating_add(chunk.len() as u64);
        self.sha256.update(chunk);
        self.sha384.update(chunk);
    }

    /// The digests of everything fed so far.
    pub fn finish(self) -> FileDigests {
        FileDigests {
            size: self.size,
            sha256: self.sha256.finalize().into(),
            sha384: self.sha384.finalize().into(),
        }
    }

    /// The digests of a file held whole in memory.
    pub fn digest(bytes: &[u8]) -> FileDigests {
        let mut hasher = Self::new();
        hasher.update(bytes);
        hasher.finish()
    }
}

impl std::fmt::Debug for FileHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileHasher")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// What [`FileHasher`] computes for one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileDigests {
    /// The number of bytes hashed.
    pub size: u64,
    /// The SHA-256 digest.
    pub sha256: [u8; 32],
    /// The SHA-384 digest (the SRI value is built from it).
    pub sha384: [u8; 48],
}

impl FileDigests {
    /// The SRI value, `sha384-<base64>`.
    pub fn sri(&self) -> String {
        sri_from_digest(&self.sha384)
    }
}

/// One file of a release, as the manifest describes it.
///
/// Every value is valid by construction: the path cannot escape its folder, the size fits a
/// bencode integer, the content type is short printable ASCII and never the torrent type, and
/// the SRI value has the form `sha384-<64 base64 characters>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "wire::FileJson")]
pub struct ManifestFile {
    pub(super) path: RelativePath,
    pub(super) size: u64,
    pub(super) content_type: String,
    #[serde(serialize_with = "wire::serialize_hex")]
    pub(super) sha256: [u8; 32],
    pub(super) sri: String,
}

impl ManifestFile {
    /// Checks and assembles the fields of one file entry.
    pub fn new(
        path: RelativePath,
        size: u64,
        content_type: &str,
        sha256: [u8; 32],
        sri: &str,
    ) -> Result<Self, ManifestError> {
        if size > MAX_INTEGER {
            return Err(ManifestError::OutOfRange {
                field: "size",
                value: size,
                limit: MAX_INTEGER,
            });
        }
        if let Err(reason) = check_content_type(content_type) {
            return Err(ManifestError::BadContentType { path, reason });
        }
        if let Err(reason) = check_sri(sri) {
            return Err(ManifestError::BadSri { path, reason });
        }
        Ok(Self {
            path,
            size,
            content_type: content_type.to_owned(),
            sha256,
            sri: sri.to_owned(),
        })
    }

    /// Describes a file from digests computed by a [`FileHasher`].
    pub fn from_digests(
        path: RelativePath,
        content_type: &str,
        digests: &FileDigests,
    ) -> Result<Self, ManifestError> {
        Self::new(
            path,
            digests.size,
            content_type,
            digests.sha256,
            &digests.sri(),
        )
    }

    /// Describes a file held whole in memory.
    ///
    /// ```
    /// use swarmcdn_proto::RelativePath;
    /// use swarmcdn_proto::manifest::{ManifestFile, content_type_for_path};
    ///
    /// let path = RelativePath::parse("button.js")?;
    /// let body = b"alert('Hello, world.');";
    /// let file = ManifestFile::from_bytes(path, content_type_for_path("button.js"), body)?;
    /// assert_eq!(file.size(), 23);
    /// assert!(file.verify_file(body).is_ok());
    /// assert!(file.verify_file(b"alert('Hello, world!');").is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_bytes(
        path: RelativePath,
        content_type: &str,
        bytes: &[u8],
    ) -> Result<Self, ManifestError> {
        Self::from_digests(path, content_type, &FileHasher::digest(bytes))
    }

    /// The file's path inside the release.
    pub fn path(&self) -> &RelativePath {
        &self.path
    }

    /// The file's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The content type the file is served with.
    pub fn content_type(&self) -> &str {
        &self.content_type
    }

    /// The SHA-256 digest of the file.
    pub fn sha256(&self) -> &[u8; 32] {
        &self.sha256
    }

    /// The SHA-256 digest as 64 lowercase hex digits (a ready-made strong ETag value).
    pub fn sha256_hex(&self) -> String {
        HEXLOWER.encode(&self.sha256)
    }

    /// The Subresource Integrity value, `sha384-<base64>`.
    pub fn sri(&self) -> &str {
        &self.sri
    }

    /// Checks `bytes` against the size, SHA-256 and SRI value. The size is compared first, so
    /// bytes of the wrong length are rejected without hashing.
    pub fn verify_file(&self, bytes: &[u8]) -> Result<(), ManifestError> {
        let size = bytes.len() as u64;
        if size != self.size {
            return Err(self.size_mismatch(size));
        }
        self.verify_digests(&FileHasher::digest(bytes))
    }

    /// Checks digests computed over chunks by a [`FileHasher`].
    pub fn verify_digests(&self, digests: &FileDigests) -> Result<(), ManifestError> {
        if digests.size != self.size {
            return Err(self.size_mismatch(digests.size));
        }
        if digests.sha256 != self.sha256 {
            return Err(ManifestError::DigestMismatch {
                path: self.path.clone(),
                algorithm: "SHA-256",
            });
        }
        if digests.sri() != self.sri {
            return Err(ManifestError::DigestMismatch {
                path: self.path.clone(),
                algorithm: "SHA-384 (SRI)",
            });
        }
        Ok(())
    }

    fn size_mismatch(&self, actual: u64) -> ManifestError {
        ManifestError::SizeMismatch {
            path: self.path.clone(),
            expected: self.size,
            actual,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `alert('Hello, world.');` (23 bytes, no newline). The expected values were computed
    /// independently of this code, once, with OpenSSL:
    ///
    /// ```text
    /// printf "%s" "alert('Hello, world.');" | openssl dgst -sha384 -binary | openssl base64 -A
    /// printf "%s" "alert('Hello, world.');" | openssl dgst -sha256
    /// ```
    const HELLO: &[u8] = b"alert('Hello, world.');";
    const HELLO_SRI: &str =
        "sha384-H8BRh8j48O9oYatfu5AZzq6A9RINhZO5H16dQZngK7T62em8MUt1FLm52t+eX6xO";
    const HELLO_SHA256: &str = "ab39cb72c44ec7818008fd9d9b4502282cc21be1e267582eaba6590e86ff4e78";
    /// `printf "" | openssl dgst -sha384 -binary | openssl base64 -A`
    const EMPTY_SRI: &str =
        "sha384-OLBgp1GsljhM2TJ+sbHjaiH9txEUvgdDTAzHv2P24donTt6/529l+9Ua0vFImLlb";

    fn path(text: &str) -> RelativePath {
        RelativePath::parse(text).unwrap()
    }

    #[test]
    fn sri_matches_openssl() {
        assert_eq!(sri_sha384(HELLO), HELLO_SRI);
        assert_eq!(sri_sha384(b""), EMPTY_SRI);
        let file = ManifestFile::from_bytes(path("hello.js"), "text/javascript", HELLO).unwrap();
        assert_eq!(file.sri(), HELLO_SRI);
        assert_eq!(file.sha256_hex(), HELLO_SHA256);
        assert_eq!(file.size(), 23);
        assert_eq!(check_sri(HELLO_SRI), Ok(()));
    }

    #[test]
    fn verify_file_reports_what_differs() {
        let file = ManifestFile::from_bytes(path("hello.js"), "text/javascript", HELLO).unwrap();
        assert_eq!(file.verify_file(HELLO), Ok(()));
        assert_eq!(
            file.verify_file(b"short"),
            Err(ManifestError::SizeMismatch {
                path: path("hello.js"),
                expected: 23,
                actual: 5
            })
        );
        assert!(matches!(
            file.verify_file(b"alert('Hello, world!');"),
            Err(ManifestError::DigestMismatch {
                algorithm: "SHA-256",
                ..
            })
        ));
        // A manifest entry whose SRI disagrees with its SHA-256 is caught too.
        let mut odd = file.clone();
        odd.sri = EMPTY_SRI.to_owned();
        assert!(matches!(
            odd.verify_file(HELLO),
            Err(ManifestError::DigestMismatch {
                algorithm: "SHA-384 (SRI)",
                ..
            })
        ));
    }

    #[test]
    fn rejects_bad_sri_values() {
        let digest = [0u8; 32];
        for (bad, why) in [
            (
                "sha256-H8BRh8j48O9oYatfu5AZzq6A9RINhZO5H16dQZngK7T62em8MUt1FLm52t+eX6xO",
                "prefix",
            ),
            (
                "SHA384-H8BRh8j48O9oYatfu5AZzq6A9RINhZO5H16dQZngK7T62em8MUt1FLm52t+eX6xO",
                "case",
            ),
            (
                "H8BRh8j48O9oYatfu5AZzq6A9RINhZO5H16dQZngK7T62em8MUt1FLm52t+eX6xO",
                "no prefix",
            ),
            ("sha384-", "empty"),
            (
                "sha384-H8BRh8j48O9oYatfu5AZzq6A9RINhZO5H16dQZngK7T62em8MUt1FLm52t+eX6x",
                "short",
            ),
            (
                "sha384-H8BRh8j48O9oYatfu5AZzq6A9RINhZO5H16dQZngK7T62em8MUt1FLm52t-eX6xO",
                "url-safe",
            ),
            (
                "sha384-H8BRh8j48O9oYatfu5AZzq6A9RINhZO5H16dQZngK7T62em8MUt1FLm52t+eX6xO sha384-x",
                "two values",
            ),
        ] {
            let err = ManifestFile::new(path("a.js"), 1, "text/javascript", digest, bad);
            assert!(
                matches!(err, Err(ManifestError::BadSri { .. })),
                "{why}: {err:?}"
            );
        }
    }

    #[test]
    fn rejects_bad_content_types_and_sizes() {
        let err = ManifestFile::from_bytes(path("x.torrent"), "application/x-bittorrent", b"d");
        assert!(matches!(err, Err(ManifestError::BadContentType { .. })));
        let err = ManifestFile::new(path("a"), MAX_INTEGER + 1, "text/plain", [0; 32], HELLO_SRI);
        assert!(matches!(
            err,
            Err(ManifestError::OutOfRange { field: "size", .. })
        ));
        assert!(
            ManifestFile::new(path("a"), MAX_INTEGER, "text/plain", [0; 32], HELLO_SRI).is_ok()
        );
    }

    proptest! {
        #[test]
        fn chunked_hashing_equals_whole_hashing(
            bytes in proptest::collection::vec(any::<u8>(), 0..2048),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            points.sort_unstable();
            let mut hasher = FileHasher::new();
            let mut start = 0;
            for point in points.into_iter().chain([bytes.len()]) {
                hasher.update(&bytes[start..point]);
                start = point;
            }
            let chunked = hasher.finish();
            prop_assert_eq!(chunked, FileHasher::digest(&bytes));
            prop_assert_eq!(chunked.sri(), sri_sha384(&bytes));
            prop_assert_eq!(check_sri(&chunked.sri()), Ok(()));
            let file = ManifestFile::from_digests(path("f.bin"), "application/octet-stream", &chunked)
                .unwrap();
            prop_assert_eq!(file.verify_file(&bytes), Ok(()));
        }
    }
}
