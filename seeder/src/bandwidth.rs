//! The upload cap, shared by web-seed responses and peer uploads.
//!
//! An origin's uplink is the scarce thing the whole design saves. The operator sets one cap
//! (bytes per second) for everything the seeder sends; every byte, whether a web-seed body or
//! (once peer seeding runs) a piece sent to a peer, waits on the same token bucket, a
//! [`governor`] rate limiter counting KiB. The bucket holds one second of the cap, so a
//! quiet seeder can answer a burst at once, and the body is read in chunks no larger than the
//! bucket, so a chunk never waits for more tokens than the bucket can hold.
//!
//! **The web seed's share, and `503`.** Pacing alone would let web-seed responses crowd out
//! peer uploads, and would make HTTP clients wait on a slow trickle when the swarm could
//! serve them. So the web seed also keeps count of the bytes it has *promised*: the unsent
//! rest of every response in flight. A new request is admitted while that backlog could be
//! sent within `webseed_backlog_secs` at the web seed's share of the cap; beyond that it gets
//! `503 Service Unavailable` with `Retry-After` set to the time the backlog needs to drain at
//! that share (at least 1 s, at most `max_retry_after_secs`), and the client turns to peers,
//! which is what a swarm is for. The first request is always admitted whatever its size, so a
//! large file can always be fetched from an idle seeder. While peers are idle, admitted
//! responses may use the whole cap: the share decides admission, not speed, so the uplink is
//! never left idle while HTTP clients wait.
//!
//! With no cap configured, nothing is counted or paced and the web seed never answers `503`.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::config::Config;

/// The largest chunk a web-seed body is read and sent in (also without a cap): large reads
/// keep the per-chunk overhead (a thread hop, an allocation, a limiter check) small next to
/// the copy (see `webseed/body.rs` and `docs/BENCHMARKS.md` for the measurement).
pub const MAX_CHUNK: usize = 512 * 1024;

/// The bucket's unit.
const KIB: u64 = 1024;

/// The shared upload cap; see the module docs for the policy.
#[derive(Debug)]
pub struct Bandwidth {
    limiter: Option<DefaultDirectRateLimiter>,
    /// The bucket's size in KiB (one second of the cap).
    burst_kib: u32,
    /// The web seed's share of the cap, in bytes per second.
    share_per_sec: u64,
    /// The backlog (bytes) beyond which new web-seed requests are turned away.
    backlog_limit: u64,
    /// The longest `Retry-After`, in seconds.
    max_retry_after: u32,
    /// Bytes promised by web-seed responses in flight and not yet sent.
    backlog: AtomicU64,
}

/// A web-seed request turned away: try again after this many seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub u32);

impl Bandwidth {
    /// No cap: nothing is paced, nothing is turned away.
    pub fn unlimited() -> Self {
        Self {
            limiter: None,
            burst_kib: u32::MAX,
            share_per_sec: u64::MAX,
            backlog_limit: u64::MAX,
            max_retry_after: 1,
            backlog: AtomicU64::new(0),
        }
    }

    /// A cap of `bytes_per_sec` (0 for none), of which the web seed's share is
    /// `share_percent`; new web-seed requests are turned away while the backlog exceeds
    /// `backlog_secs` at that share, with `Retry-After` at most `max_retry_after_secs`.
    pub fn new(
        bytes_per_sec: u64,
        share_percent: u8,
        backlog_secs: u32,
        max_retry_after_secs: u32,
    ) -> Self {
        let kib_per_sec = u32::try_from(bytes_per_sec / KIB).unwrap_or(u32::MAX);
        let Some(rate) = NonZeroU32::new(kib_per_sec) else {
            return Self::unlimited();
        };
        let share_per_sec =
            (bytes_per_sec.saturating_mul(u64::from(share_percent.min(100))) / 100).max(1);
        Self {
            limiter: Some(RateLimiter::direct(
                Quota::per_second(rate).allow_burst(rate),
            )),
            burst_kib: rate.get(),
            share_per_sec,
            backlog_limit: share_per_sec.saturating_mul(u64::from(backlog_secs)),
            max_retry_after: max_retry_after_secs.max(1),
            backlog: AtomicU64::new(0),
        }
    }

    /// The cap the configuration asks for.
    pub fn from_config(config: &Config) -> Self {
        Self::new(
            config.upload_limit_bytes_per_sec,
            config.webseed_share_percent,
            config.webseed_backlog_secs,
            config.max_retry_after_secs,
        )
    }

    /// Whether a cap is in force.
    pub fn is_limited(&self) -> bool {
        self.limiter.is_some()
    }

    /// The size to read and send a body in: [`MAX_CHUNK`], or less when the bucket is
    /// smaller.
    pub fn chunk_size(&self) -> usize {
        let bucket = u64::from(self.burst_kib).saturating_mul(KIB);
        usize::try_from(bucket).map_or(MAX_CHUNK, |b| b.min(MAX_CHUNK))
    }

    /// Bytes promised by web-seed responses in flight.
    pub fn backlog(&self) -> u64 {
        self.backlog.load(Ordering::Relaxed)
    }

    /// Admits a web-seed response of `len` bytes, or says when to come back.
    pub fn admit_webseed(self: &Arc<Self>, len: u64) -> Result<WebSeedPermit, RetryAfter> {
        if self.is_limited() {
            let before = self.backlog.fetch_add(len, Ordering::Relaxed);
            if before > self.backlog_limit {
                self.backlog.fetch_sub(len, Ordering::Relaxed);
                let secs = before.div_ceil(self.share_per_sec);
                let secs = u32::try_from(secs).unwrap_or(u32::MAX);
                return Err(RetryAfter(secs.clamp(1, self.max_retry_after)));
            }
        }
        Ok(WebSeedPermit {
            bandwidth: Arc::clone(self),
            remaining: if self.is_limited() { len } else { 0 },
        })
    }

    /// Waits until `bytes` may be sent under the cap. Peer uploads call this before sending a
    /// block; web-seed bodies go through [`WebSeedPermit::send`].
    pub async fn wait_for(&self, bytes: u64) {
        let Some(limiter) = &self.limiter else {
            return;
        };
        let mut kib = bytes.div_ceil(KIB);
        while kib > 0 {
            let take = u32::try_from(kib).unwrap_or(u32::MAX).min(self.burst_kib);
            let Some(n) = NonZeroU32::new(take) else {
                return;
            };
            // Never more than the bucket holds, so this cannot fail; if it did, sending
            // unpaced is the safe way out (the cap is a politeness, not a safety bound).
            if limiter.until_n_ready(n).await.is_err() {
                return;
            }
            kib -= u64::from(take);
        }
    }
}

/// An admitted web-seed response: its unsent bytes count in the backlog until they are sent
/// or the response is dropped.
#[derive(Debug)]
pub struct WebSeedPermit {
    bandwidth: Arc<Bandwidth>,
    remaining: u64,
}

impl WebSeedPermit {
    /// Waits until `bytes` of the body may be sent, and takes them off the backlog.
    pub async fn send(&mut self, bytes: u64) {
        self.bandwidth.wait_for(bytes).await;
        let taken = bytes.min(self.remaining);
        self.remaining -= taken;
        self.bandwidth.backlog.fetch_sub(taken, Ordering::Relaxed);
    }
}

impl Drop for WebSeedPermit {
    fn drop(&mut self) {
        self.bandwidth
            .backlog
            .fetch_sub(self.remaining, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_cap_everything_is_admitted() {
        let bandwidth = Arc::new(Bandwidth::new(0, 50, 2, 60));
        assert!(!bandwidth.is_limited());
        let _permits: Vec<_> = (0..100)
            .map(|_| bandwidth.admit_webseed(1 << 30).unwrap())
            .collect();
        assert_eq!(bandwidth.backlog(), 0);
        assert_eq!(bandwidth.chunk_size(), MAX_CHUNK);
    }

    #[test]
    fn requests_beyond_the_backlog_are_turned_away_until_it_drains() {
        // 100 KiB/s, half for the web seed (50 KiB/s), 2 s of backlog (100 KiB).
        let bandwidth = Arc::new(Bandwidth::new(100 * 1024, 50, 2, 60));
        let first = bandwidth.admit_webseed(400 * 1024).unwrap();
        assert_eq!(bandwidth.backlog(), 400 * 1024);
        // 400 KiB at 50 KiB/s: 8 s to drain.
        assert_eq!(bandwidth.admit_webseed(10).unwrap_err(), RetryAfter(8));
        assert_eq!(bandwidth.backlog(), 400 * 1024);
        drop(first);
        assert_eq!(bandwidth.backlog(), 0);
        let _second = bandwidth.admit_webseed(10).unwrap();
    }

    #[test]
    fn retry_after_is_clamped() {
        let bandwidth = Arc::new(Bandwidth::new(1024, 1, 1, 30));
        let _big = bandwidth.admit_webseed(1 << 40).unwrap();
        assert_eq!(bandwidth.admit_webseed(1).unwrap_err(), RetryAfter(30));
    }

    #[test]
    fn chunks_fit_the_bucket() {
        assert_eq!(Bandwidth::new(64 * 1024, 50, 2, 60).chunk_size(), 64 * 1024);
        assert_eq!(Bandwidth::new(1 << 30, 50, 2, 60).chunk_size(), MAX_CHUNK);
    }

    #[tokio::test]
    async fn sending_takes_bytes_off_the_backlog() {
        let bandwidth = Arc::new(Bandwidth::new(1024 * 1024, 50, 2, 60));
        let mut permit = bandwidth.admit_webseed(300 * 1024).unwrap();
        permit.send(100 * 1024).await;
        assert_eq!(bandwidth.backlog(), 200 * 1024);
        drop(permit);
        assert_eq!(bandwidth.backlog(), 0);
    }

    #[tokio::test]
    async fn the_cap_paces_sending() {
        // 64 KiB/s with a 64 KiB bucket: 64 KiB go at once, the next 32 KiB take ~0.5 s.
        let bandwidth = Bandwidth::new(64 * 1024, 100, 2, 60);
        let start = std::time::Instant::now();
        bandwidth.wait_for(64 * 1024).await;
        assert!(start.elapsed() < std::time::Duration::from_millis(200));
        bandwidth.wait_for(32 * 1024).await;
        let elapsed = start.elapsed();
        assert!(
            elapsed >= std::time::Duration::from_millis(400),
            "{elapsed:?}"
        );
    }
}
