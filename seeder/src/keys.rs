//! The publisher's signing key on disk: made once by `keygen`, read by every `publish`.
//!
//! The key is the publisher's identity: whoever holds it can sign releases that every site
//! pinning the public key will run. So the file is created with mode `0600` in one step
//! (`create_new`, never a chmod after the fact, never over an existing file: overwriting
//! would silently orphan every site that pinned the old key), and a key file that group or
//! others may read is refused when loaded, the way `ssh` refuses an open private key. The key
//! comes from the operating system's generator, never from a seeded or user-space PRNG.
//!
//! The text format (`swarmcdn-signing-key-v1:<hex seed>`) is `swarmcdn-proto`'s; it is
//! labelled so that a secret key pasted where a public key belongs is rejected.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::TryRng;
use swarmcdn_proto::manifest::{
    ManifestError, SigningKey, VerifyingKey, parse_signing_key, public_key_to_string,
    signing_key_from_seed, signing_key_to_string,
};

/// The mode a new key file gets: read and write for its owner only.
pub const KEY_FILE_MODE: u32 = 0o600;

/// The largest key file read. A key file is about 90 bytes; a larger file is not a key.
pub const MAX_KEY_FILE_LEN: u64 = 4096;

/// Why a key could not be made or loaded. Each message names the file and says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// `keygen` was pointed at a file that exists.
    #[error(
        "{} already exists; keygen never overwrites a key (sites that pinned it would stop \
         trusting your releases). Choose another --out, or delete the file first if you really \
         mean to replace the key",
        path.display()
    )]
    Exists {
        /// The key file.
        path: PathBuf,
    },
    /// The key file is missing.
    #[error(
        "no key file at {}; create one with `swarmcdn-seeder keygen --out {}` and register its \
         public key at the tracker",
        path.display(), path.display()
    )]
    Missing {
        /// The key file.
        path: PathBuf,
    },
    /// The key file may be read or written by group or others.
    #[error(
        "the key file {} has permissions {mode:04o}, so other users can read your signing key; \
         run `chmod 600 {}`, and if others may have read it, make a new key",
        path.display(), path.display()
    )]
    OpenPermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is not a signing key.
    #[error(
        "{} is not a swarmcdn signing key ({source}); `swarmcdn-seeder keygen` writes one",
        path.display()
    )]
    Malformed {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: ManifestError,
    },
    /// The operating system's random generator failed.
    #[error("cannot get randomness from the operating system: {0}")]
    Random(String),
    /// Reading or writing the file failed.
    #[error("cannot {action} the key file {}: {source}", path.display())]
    Io {
        /// `read` or `write`.
        action: &'static str,
        /// The key file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// Makes a new signing key from the operating system's random generator and writes it to
/// `path` with mode `0600`. Fails if `path` exists. Returns the key.
pub fn keygen(path: &Path) -> Result<SigningKey, KeyError> {
    let mut seed = [0u8; 32];
    rand::rngs::SysRng
        .try_fill_bytes(&mut seed)
        .map_err(|e| KeyError::Random(e.to_string()))?;
    let key = signing_key_from_seed(seed);
    write_key(path, &key)?;
    Ok(key)
}

/// Writes `key` to a new file at `path` with mode `0600`; refuses an existing file.
pub fn write_key(path: &Path, key: &SigningKey) -> Result<(), KeyError> {
    let io_err = |source| KeyError::Io {
        action: "write",
        path: path.to_owned(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(KEY_FILE_MODE)
        .open(path)
        .map_err(|source| {
            if source.kind() == io::ErrorKind::AlreadyExists {
                KeyError::Exists {
                    path: path.to_owned(),
                }
            } else {
                io_err(source)
            }
        })?;
    // A umask can only remove bits, so the mode is at most 0600 already; set it anyway in
    // case the file system applies something else.
    file.set_permissions(std::fs::Permissions::from_mode(KEY_FILE_MODE))
        .map_err(io_err)?;
    file.write_all(signing_key_to_string(key).as_bytes())
        .map_err(io_err)?;
    file.sync_all().map_err(io_err)?;
    Ok(())
}

/// Reads the signing key at `path`, refusing a file that group or others may access.
pub fn load_key(path: &Path) -> Result<SigningKey, KeyError> {
    let io_err = |source| KeyError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            KeyError::Missing {
                path: path.to_owned(),
            }
        } else {
            io_err(source)
        }
    })?;
    let mode = file.metadata().map_err(io_err)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::OpenPermissions {
            path: path.to_owned(),
            mode,
        });
    }
    let mut text = String::new();
    file.take(MAX_KEY_FILE_LEN)
        .read_to_string(&mut text)
        .map_err(|source| {
            if source.kind() == io::ErrorKind::InvalidData {
                KeyError::Malformed {
                    path: path.to_owned(),
                    source: ManifestError::BadSigningKey("the file is not text"),
                }
            } else {
                io_err(source)
            }
        })?;
    parse_signing_key(&text).map_err(|source| KeyError::Malformed {
        path: path.to_owned(),
        source,
    })
}

/// The public key in the form the tracker and sites take (64 hex digits).
pub fn public_key_hex(key: &VerifyingKey) -> String {
    public_key_to_string(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_writes_an_owner_only_key_that_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let key = keygen(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_key(&path).unwrap().to_bytes(), key.to_bytes());
        assert_eq!(public_key_hex(&key.verifying_key()).len(), 64);
    }

    #[test]
    fn two_keys_differ() {
        let dir = tempfile::tempdir().unwrap();
        let a = keygen(&dir.path().join("a")).unwrap();
        let b = keygen(&dir.path().join("b")).unwrap();
        assert_ne!(a.to_bytes(), b.to_bytes());
    }

    #[test]
    fn keygen_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, "precious").unwrap();
        assert!(matches!(keygen(&path), Err(KeyError::Exists { .. })));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
    }

    #[test]
    fn open_permissions_are_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        keygen(&path).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let error = load_key(&path).unwrap_err();
            assert!(
                matches!(error, KeyError::OpenPermissions { .. }),
                "{mode:o}"
            );
            assert!(error.to_string().contains("chmod 600"), "{error}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(load_key(&path).is_ok());
    }

    #[test]
    fn a_missing_key_points_at_keygen() {
        let dir = tempfile::tempdir().unwrap();
        let error = load_key(&dir.path().join("none")).unwrap_err();
        assert!(error.to_string().contains("keygen"), "{error}");
    }

    #[test]
    fn a_file_that_is_not_a_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        for content in [&b"hello"[..], &[0xff, 0xfe, 0x00][..]] {
            let _ = std::fs::remove_file(&path);
            std::fs::write(&path, content).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            assert!(matches!(load_key(&path), Err(KeyError::Malformed { .. })));
        }
    }
}
