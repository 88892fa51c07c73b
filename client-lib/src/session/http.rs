//! Web-seed fetches: the glue between the scheduler's `HttpFetch` actions and
//! [`WebSeed::fetch_pieces`](crate::webseed::WebSeed::fetch_pieces).
//!
//! A fetch runs as its own task: one ranged request per file the run of pieces touches,
//! then each piece is committed on its own (hashed, and written for a disk store), so one
//! bad piece does not cost the good ones next to it. Pieces we already hold (a peer was
//! faster) are not hashed again: the first verified copy won.
//!
//! What each failure does to the seed is decided by what it says about the server
//! ([`seed_verdict`]):
//!
//! | failure | the seed |
//! |---|---|
//! | a piece fails its hash, wrong body length, bad `Content-Range` | removed: it serves other bytes than the torrent |
//! | `503`/`429` ([`WebSeedError::Backoff`]) | not asked again before its `Retry-After` |
//! | `5xx`, transport error (refused, reset, timeout) | backed off, 1 s doubling to 5 min, then retried: origins come back |
//! | any other status (`404`, `403`, `410`, ...), unusable URL, request too large | removed: it cannot serve this torrent |
//!
//! Either way the scheduler is told the fetch finished, so its pieces are eligible again
//! (from peers, or another seed).

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

use super::{TaskResult, Torrent};
use crate::scheduler::{Source, WebSeedKey};
use crate::storage::StorageError;
use crate::webseed::WebSeedError;

/// The first backoff after a transient web-seed failure; it doubles with each failure in a
/// row.
pub const WEB_SEED_RETRY_MIN: Duration = Duration::from_secs(1);
/// The longest backoff after transient web-seed failures.
pub const WEB_SEED_RETRY_MAX: Duration = Duration::from_secs(300);

/// Each piece of a fetch with its commit result.
type PieceVerdicts = Vec<(u32, Result<(), StorageError>)>;

/// How a fetch ended.
#[derive(Debug)]
pub(super) struct HttpOutcome {
    seed: WebSeedKey,
    pieces: Range<u32>,
    /// Each piece's commit result (`Ok` also for pieces already held), or the request's
    /// failure.
    result: Result<PieceVerdicts, WebSeedError>,
}

/// What a fetch failure means for the seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SeedVerdict {
    /// Never use it again for this torrent.
    Remove,
    /// Not before this long.
    BackOff(Duration),
    /// A transient failure: back off exponentially.
    Transient,
}

/// See the module docs' table.
pub(crate) fn seed_verdict(error: &WebSeedError) -> SeedVerdict {
    match error {
        WebSeedError::Backoff { retry_after } => SeedVerdict::BackOff(*retry_after),
        WebSeedError::Status { status, .. } if status.is_server_error() => SeedVerdict::Transient,
        WebSeedError::Transport { .. } => SeedVerdict::Transient,
        _ => SeedVerdict::Remove,
    }
}

/// Fetches `range` from `web_seed` and commits each piece the store lacks.
async fn fetch_and_commit(
    web_seed: crate::webseed::WebSeed,
    store: Arc<crate::storage::Store>,
    info: Arc<swarmcdn_proto::metainfo::Info>,
    range: Range<u32>,
) -> Result<PieceVerdicts, WebSeedError> {
    let bytes = web_seed.fetch_pieces(range.clone()).await?;
    let mut verdicts = Vec::with_capacity(range.len());
    let mut offset = 0usize;
    for piece in range {
        let len = info.piece_len(piece).unwrap_or(0) as usize;
        let end = offset + len;
        let result = if end > bytes.len() {
            // Never happens (fetch_pieces returns exactly the range), but a short body must
            // not panic here.
            Err(StorageError::WrongPieceLength {
                piece,
                expected: len as u32,
                got: bytes.len().saturating_sub(offset),
            })
        } else if store.has_piece(piece) {
            Ok(())
        } else {
            store
                .commit_piece_async(piece, bytes.slice(offset..end))
                .await
        };
        offset = end;
        verdicts.push((piece, result));
    }
    Ok(verdicts)
}

impl Torrent {
    /// Starts the fetch the scheduler asked for.
    pub(super) fn start_fetch(&mut self, seed: WebSeedKey, pieces: Range<u32>) {
        let Some(slot) = self.seeds.get(seed.0 as usize).filter(|s| !s.removed) else {
            self.scheduler.http_fetch_finished(seed, pieces);
            return;
        };
        let web_seed = slot.seed.clone();
        let store = Arc::clone(&self.store);
        let info = Arc::clone(&self.info);
        let results = self.results_tx.clone();
        let stop = self.stop.clone();
        let span = tracing::debug_span!("web_seed_fetch", url = %web_seed.base_url(), ?pieces);
        let range = pieces.clone();
        self.shared.tasks.spawn(
            async move {
                let fetch = fetch_and_commit(web_seed, store, info, range.clone());
                let result = tokio::select! {
                    biased;
                    () = stop.cancelled() => return,
                    result = fetch => result,
                };
                let _ = results.send(TaskResult::Http(HttpOutcome {
                    seed,
                    pieces: range,
                    result,
                }));
            }
            .instrument(span),
        );
    }

    pub(super) fn http_finished(&mut self, outcome: HttpOutcome) {
        let HttpOutcome {
            seed,
            pieces,
            result,
        } = outcome;
        match result {
            Ok(verdicts) => {
                if let Some(slot) = self.seeds.get_mut(seed.0 as usize) {
                    slot.failures = 0;
                }
                for (piece, result) in verdicts {
                    match result {
                        Ok(()) => self.piece_verified(piece, Source::WebSeed(seed)),
                        Err(error) if error.blames_source() => {
                            tracing::warn!(piece, %error, "web seed sent a bad piece");
                            self.counters.hash_failures += 1;
                            self.scheduler.piece_failed(piece, Source::WebSeed(seed));
                            self.remove_seed(seed);
                        }
                        Err(error) => self.fail(error),
                    }
                }
            }
            Err(error) => {
                let verdict = seed_verdict(&error);
                tracing::info!(seed = seed.0, %error, ?verdict, "web seed fetch failed");
                match verdict {
                    SeedVerdict::Remove => self.remove_seed(seed),
                    SeedVerdict::BackOff(wait) => self.back_off_seed(seed, wait),
                    SeedVerdict::Transient => {
                        let failures = self.seeds.get_mut(seed.0 as usize).map(|s| {
                            s.failures += 1;
                            s.failures
                        });
                        let shift = failures.unwrap_or(1).saturating_sub(1).min(16);
                        let wait = WEB_SEED_RETRY_MIN
                            .saturating_mul(1 << shift)
                            .min(WEB_SEED_RETRY_MAX);
                        self.back_off_seed(seed, wait);
                    }
                }
            }
        }
        self.scheduler.http_fetch_finished(seed, pieces);
    }

    fn back_off_seed(&mut self, seed: WebSeedKey, wait: Duration) {
        let until = tokio::time::Instant::now().into_std() + wait;
        self.scheduler.web_seed_backoff(seed, until);
    }

    fn remove_seed(&mut self, seed: WebSeedKey) {
        if let Some(slot) = self.seeds.get_mut(seed.0 as usize)
            && !slot.removed
        {
            slot.removed = true;
            self.counters.web_seeds_removed += 1;
            tracing::warn!(url = %slot.seed.base_url(), "web seed dropped for this release");
        }
        self.scheduler.web_seed_removed(seed);
    }

    /// Tells the scheduler about every usable web seed (at start).
    pub(super) fn add_web_seeds(&mut self) {
        for index in 0..self.seeds.len() {
            self.scheduler.add_web_seed(WebSeedKey(index as u32));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_and_server_errors_retry_other_failures_remove() {
        assert_eq!(
            seed_verdict(&WebSeedError::Backoff {
                retry_after: Duration::from_secs(7)
            }),
            SeedVerdict::BackOff(Duration::from_secs(7))
        );
        let status = |code: u16| WebSeedError::Status {
            url: "http://x/".into(),
            status: reqwest::StatusCode::from_u16(code).unwrap(),
        };
        assert_eq!(seed_verdict(&status(500)), SeedVerdict::Transient);
        assert_eq!(seed_verdict(&status(502)), SeedVerdict::Transient);
        assert_eq!(seed_verdict(&status(404)), SeedVerdict::Remove);
        assert_eq!(seed_verdict(&status(403)), SeedVerdict::Remove);
        assert_eq!(
            seed_verdict(&WebSeedError::WrongLength {
                url: "http://x/".into(),
                expected: 1,
                got: 2
            }),
            SeedVerdict::Remove
        );
        assert_eq!(
            seed_verdict(&WebSeedError::BadContentRange {
                url: "http://x/".into(),
                expected: "bytes 0-1/2".into(),
                got: None
            }),
            SeedVerdict::Remove
        );
    }
}
