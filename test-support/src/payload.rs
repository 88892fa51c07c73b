//! Test payloads on disk and waits on files.
//!
//! Real clients work on files, so interop tests write what is to be seeded into the layout
//! the harness expects (`DATA_DIR/<torrent name>`), and learn that a client is ready from a
//! file it writes. Payloads are random so that a client cannot pass by producing zeros, and
//! are compared by SHA-256, which is what the harness's `EXPECT_SHA256` checks too.

use std::path::Path;
use std::time::{Duration, Instant};

use rand::Rng as _;
use sha2::{Digest as _, Sha256};

use crate::ClientProcess;

/// Poll interval of [`wait_for_file`].
const POLL: Duration = Duration::from_millis(100);

/// `len` random bytes (from the thread RNG: a fresh payload every run).
pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// Writes each `(relative path, bytes)` under `root`, creating `root` and any parent
/// folders. Panics on an I/O error (this is test code).
pub fn write_files<P, B>(root: &Path, files: impl IntoIterator<Item = (P, B)>)
where
    P: AsRef<Path>,
    B: AsRef<[u8]>,
{
    std::fs::create_dir_all(root)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", root.display()));
    for (path, bytes) in files {
        let path = root.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, bytes)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
}

/// The SHA-256 of `bytes` in lowercase hex (the form of the harness's `EXPECT_SHA256`).
pub fn sha256_hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(&Sha256::digest(bytes))
}

/// Waits until `path` exists as a file, polling without blocking a runtime worker. Returns
/// `false` when `timeout` passes first, or as soon as `process` (the one expected to write
/// the file) has exited.
pub async fn wait_for_file(path: &Path, timeout: Duration, process: &mut ClientProcess) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if path.is_file() {
            return true;
        }
        if !process.is_running() || Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_files_makes_parent_folders_and_sha256_is_hex() {
        let root = std::env::temp_dir().join(format!("swarmcdn-ts-files-{}", std::process::id()));
        let bytes = random_bytes(1000);
        assert_eq!(bytes.len(), 1000);
        write_files(&root, [("a/b/c.bin", &bytes[..]), ("top.txt", b"hi")]);
        assert_eq!(std::fs::read(root.join("a/b/c.bin")).unwrap(), bytes);
        assert_eq!(std::fs::read(root.join("top.txt")).unwrap(), b"hi");
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
