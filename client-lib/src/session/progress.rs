//! What a torrent session reports to the outside: a [`Progress`] snapshot on a
//! `tokio::sync::watch` channel, and why a download ended without completing.
//!
//! A watch channel rather than an event stream: callers want "where is it now" (a progress
//! bar, a readiness check, a test waiting for completion), a slow reader must never slow the
//! session down, and the last value stays readable after the session has finished, so the
//! final counters are always there.

use std::fmt;
use std::sync::Arc;

use crate::storage::StorageError;

/// Where a torrent session stands. Counters only grow; `complete` never goes back to false.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Progress {
    /// The release's size in bytes.
    pub total_bytes: u64,
    /// Bytes of verified pieces held.
    pub have_bytes: u64,
    /// The number of pieces.
    pub total_pieces: u32,
    /// Verified pieces held.
    pub have_pieces: u32,
    /// Verified bytes whose copy came from peers (pieces held at start count nowhere).
    pub bytes_from_peers: u64,
    /// Verified bytes whose copy came from web seeds.
    pub bytes_from_http: u64,
    /// Block bytes sent to peers (written to their sockets).
    pub uploaded_bytes: u64,
    /// Peers connected now.
    pub peers_connected: usize,
    /// Peers banned for sending data that failed its hash (never reconnected).
    pub peers_banned: usize,
    /// Web seeds dropped (bad bytes, or a permanent error).
    pub web_seeds_removed: usize,
    /// Pieces that failed their SHA-1 check, from any source.
    pub hash_failures: u32,
    /// Announces a tracker answered with success.
    pub announces: u32,
    /// Every piece is verified (and, for a disk store, the release folder is final).
    pub complete: bool,
    /// Set when the session ended before completing; it no longer changes then.
    pub failure: Option<DownloadError>,
}

impl Progress {
    /// `have_bytes / total_bytes`, from 0.0 to 1.0.
    pub fn fraction(&self) -> f64 {
        if self.total_bytes == 0 {
            return 1.0;
        }
        self.have_bytes as f64 / self.total_bytes as f64
    }
}

/// Why a download ended without completing.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DownloadError {
    /// The piece store failed (disk full, I/O error): the release cannot be stored here.
    #[error("storage failed: {0}")]
    Storage(Arc<StorageError>),
    /// The session was stopped (client shutdown, release removed) before it completed.
    #[error("the download was stopped before it completed")]
    Stopped,
}

impl PartialEq for DownloadError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (DownloadError::Storage(a), DownloadError::Storage(b)) => Arc::ptr_eq(a, b),
            (DownloadError::Stopped, DownloadError::Stopped) => true,
            _ => false,
        }
    }
}

impl Eq for DownloadError {}

/// A one-line summary for logs.
impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} pieces, {} B from peers, {} B over HTTP, {} B uploaded, {} peers",
            self.have_pieces,
            self.total_pieces,
            self.bytes_from_peers,
            self.bytes_from_http,
            self.uploaded_bytes,
            self.peers_connected
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fraction_of_empty_and_partial() {
        let p = Progress {
            total_bytes: 200,
            have_bytes: 50,
            ..Progress::default()
        };
        assert!((p.fraction() - 0.25).abs() < 1e-9);
        assert!((Progress::default().fraction() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn storage_failures_compare_by_identity() {
        let e = Arc::new(StorageError::NoSuchFile("x".into()));
        let a = DownloadError::Storage(Arc::clone(&e));
        assert_eq!(a, DownloadError::Storage(e));
        assert_ne!(
            a,
            DownloadError::Storage(Arc::new(StorageError::NoSuchFile("x".into())))
        );
        assert_eq!(DownloadError::Stopped, DownloadError::Stopped);
    }
}
