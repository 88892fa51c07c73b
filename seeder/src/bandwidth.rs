//! The upload cap, shared by web-seed responses and peer uploads.
//!
//! An origin's uplink is the scarce thing the whole design saves. The operator sets one cap
//! (bytes per second) for everything the seeder sends. It is one token bucket, the client
//! library's [`UploadLimiter`] counting KiB: `serve` hands a clone of it to the peer engine,
//! which charges every block it sends a peer, and the web seed charges every chunk of a body
//! to the same bucket. So peer uploads and web-seed responses together stay within the cap,
//! whoever is busier. The bucket holds up to a second of the cap (at most
//! [`MAX_BURST_KIB`](swarmcdn_client::peer::MAX_BURST_KIB)), and a body is read in chunks no
//! larger than the bucket, so a chunk never waits for more tokens than the bucket can hold.
//!
//! **The web seed's share, and `503`.** Pacing alone would let web-seed responses crowd out
//! peer uploads, and would make HTTP clients wait on a slow trickle when the swarm could
//! serve them. So the web seed also keeps count of the bytes it has *promised*: the unsent
//! rest of every response in flight. A new request is admitted while that backlog could be
//! sent within `webseed_backlog_secs` at the rate the web seed can count on: its share of the
//! cap, plus whatever part of the rest the peers leave unused. Beyond that it gets `503
//! Service Unavailable` with `Retry-After` set to the time the backlog needs to drain at that
//! rate (at least 1 s, at most `max_retry_after_secs`), and the client turns to peers, which
//! is what a swarm is for. So while peers are idle the web seed may promise up to the whole
//! cap; while they use the whole budget, only its share. The first request is always
//! admitted whatever its size, so a large file can always be fetched from an idle seeder.
//! The share decides admission, not speed: admitted responses and peers share the bucket
//! first come, first served, and the uplink is never left idle while anyone waits.
//!
//! **How busy the peers are** is read off the bucket: everything charged to it that the web
//! seed did not charge is the peers'. The rate is measured over windows of at least
//! [`PEER_RATE_WINDOW`], sampled when the web seed admits a request or sends a chunk (no
//! timer task). After a long quiet spell the first sample averages over the whole spell;
//! that can only misjudge how much to admit, never break the cap, which the bucket keeps.
//!
//! With no cap configured, nothing is counted or paced and the web seed never answers `503`.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use swarmcdn_client::peer::{CELL_BYTES, UploadLimiter};
use tokio::time::Instant;

use crate::config::Config;

/// The largest chunk a web-seed body is read and sent in (also without a cap): large reads
/// keep the per-chunk overhead (a thread hop, an allocation, a limiter check) small next to
/// the copy (see `webseed/body.rs` and `docs/BENCHMARKS.md` for the measurement).
pub const MAX_CHUNK: usize = 512 * 1024;

/// The web seed charges the bucket in steps of this many bytes, the size of a block peers
/// are sent in: the bucket serves whoever asks when tokens are there, so a web seed waiting
/// for a whole chunk's worth at once would never get it while peers keep taking blocks.
pub const CHARGE_STEP: u64 = 16 * 1024;

/// The shortest span the peers' upload rate is measured over.
pub const PEER_RATE_WINDOW: Duration = Duration::from_secs(1);

/// The shared upload cap; see the module docs for the policy.
#[derive(Debug)]
pub struct Bandwidth {
    limiter: Option<UploadLimiter>,
    /// The cap, in bytes per second.
    cap_per_sec: u64,
    /// The web seed's share of the cap, in bytes per second.
    share_per_sec: u64,
    /// Seconds of backlog admitted.
    backlog_secs: u64,
    /// The longest `Retry-After`, in seconds.
    max_retry_after: u32,
    /// Bytes promised by web-seed responses in flight and not yet sent.
    backlog: AtomicU64,
    /// Bytes the web seed charged to the bucket (the rest of its charges are the peers').
    webseed_charged: AtomicU64,
    /// The peers' measured upload rate.
    peer_rate: Mutex<PeerRate>,
}

/// The peers' upload rate, from samples of what they charged to the bucket.
#[derive(Debug, Default)]
struct PeerRate {
    /// When the current window began, and the peers' charges then.
    window: Option<(Instant, u64)>,
    /// Bytes per second over the last complete window.
    bytes_per_sec: u64,
}

/// A web-seed request turned away: try again after this many seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub u32);

impl Bandwidth {
    /// No cap: nothing is paced, nothing is turned away.
    pub fn unlimited() -> Self {
        Self {
            limiter: None,
            cap_per_sec: u64::MAX,
            share_per_sec: u64::MAX,
            backlog_secs: u64::MAX,
            max_retry_after: 1,
            backlog: AtomicU64::new(0),
            webseed_charged: AtomicU64::new(0),
            peer_rate: Mutex::new(PeerRate::default()),
        }
    }

    /// A cap of `bytes_per_sec` (0 for none; rounded up to whole KiB), of which the web
    /// seed's share is `share_percent`; new web-seed requests are turned away while the
    /// backlog exceeds `backlog_secs` at the rate the web seed can count on, with
    /// `Retry-After` at most `max_retry_after_secs`.
    pub fn new(
        bytes_per_sec: u64,
        share_percent: u8,
        backlog_secs: u32,
        max_retry_after_secs: u32,
    ) -> Self {
        let kib_per_sec =
            u32::try_from(bytes_per_sec.div_ceil(CELL_BYTES as u64)).unwrap_or(u32::MAX);
        let Some(rate) = NonZeroU32::new(kib_per_sec) else {
            return Self::unlimited();
        };
        let share_per_sec =
            (bytes_per_sec.saturating_mul(u64::from(share_percent.min(100))) / 100).max(1);
        Self {
            limiter: Some(UploadLimiter::new(rate)),
            cap_per_sec: bytes_per_sec,
            share_per_sec,
            backlog_secs: u64::from(backlog_secs),
            max_retry_after: max_retry_after_secs.max(1),
            backlog: AtomicU64::new(0),
            webseed_charged: AtomicU64::new(0),
            peer_rate: Mutex::new(PeerRate::default()),
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

    /// The shared bucket, for the peer engine to charge its uploads to (`None`: no cap).
    pub fn limiter(&self) -> Option<UploadLimiter> {
        self.limiter.clone()
    }

    /// The size to read and send a body in: [`MAX_CHUNK`], or less when the bucket is
    /// smaller.
    pub fn chunk_size(&self) -> usize {
        self.limiter
            .as_ref()
            .map_or(MAX_CHUNK, |l| l.burst_bytes().min(MAX_CHUNK))
    }

    /// Bytes promised by web-seed responses in flight.
    pub fn backlog(&self) -> u64 {
        self.backlog.load(Ordering::Relaxed)
    }

    /// Bytes charged to the bucket by the web seed so far.
    pub fn webseed_charged(&self) -> u64 {
        self.webseed_charged.load(Ordering::Relaxed)
    }

    /// Bytes charged to the bucket by everyone else (the peers) so far.
    pub fn peer_charged(&self) -> u64 {
        self.limiter.as_ref().map_or(0, |l| {
            l.charged_bytes()
                .saturating_sub(self.webseed_charged.load(Ordering::Relaxed))
        })
    }

    /// Takes a sample of the peers' charges at `now` and returns their upload rate (bytes
    /// per second over the last complete window).
    fn sample_peer_rate(&self, now: Instant) -> u64 {
        let charged = self.peer_charged();
        let mut rate = self
            .peer_rate
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match rate.window {
            None => rate.window = Some((now, charged)),
            Some((since, at_start)) => {
                let elapsed = now.saturating_duration_since(since);
                if elapsed >= PEER_RATE_WINDOW {
                    let bytes = u128::from(charged.saturating_sub(at_start));
                    let per_sec = bytes * 1000 / elapsed.as_millis().max(1);
                    rate.bytes_per_sec = u64::try_from(per_sec).unwrap_or(u64::MAX);
                    rate.window = Some((now, charged));
                }
            }
        }
        rate.bytes_per_sec
    }

    /// The rate the web seed can count on at `now`: its share, or more when the peers leave
    /// more of the cap unused.
    fn webseed_rate(&self, now: Instant) -> u64 {
        let peers = self.sample_peer_rate(now);
        self.share_per_sec
            .max(self.cap_per_sec.saturating_sub(peers))
            .max(1)
    }

    /// Admits a web-seed response of `len` bytes, or says when to come back.
    pub fn admit_webseed(self: &Arc<Self>, len: u64) -> Result<WebSeedPermit, RetryAfter> {
        self.admit_webseed_at(len, Instant::now())
    }

    /// [`Bandwidth::admit_webseed`] at time `now`.
    pub fn admit_webseed_at(
        self: &Arc<Self>,
        len: u64,
        now: Instant,
    ) -> Result<WebSeedPermit, RetryAfter> {
        if self.is_limited() {
            let rate = self.webseed_rate(now);
            let before = self.backlog.fetch_add(len, Ordering::Relaxed);
            if before > rate.saturating_mul(self.backlog_secs) {
                self.backlog.fetch_sub(len, Ordering::Relaxed);
                let secs = u32::try_from(before.div_ceil(rate)).unwrap_or(u32::MAX);
                return Err(RetryAfter(secs.clamp(1, self.max_retry_after)));
            }
        }
        Ok(WebSeedPermit {
            bandwidth: Arc::clone(self),
            remaining: if self.is_limited() { len } else { 0 },
        })
    }

    /// Waits until `bytes` of a web-seed body may be sent under the cap, charging them to
    /// the shared bucket as the web seed's. Web-seed bodies go through
    /// [`WebSeedPermit::send`], which calls this.
    pub async fn wait_for(&self, bytes: u64) {
        let Some(limiter) = &self.limiter else {
            return;
        };
        let step = CHARGE_STEP.min(limiter.burst_bytes().max(1) as u64);
        let mut left = bytes;
        while left > 0 {
            let take = left.min(step);
            // Counted before the wait, in the whole KiB the bucket charges: a wait that is
            // cancelled then counts as the web seed's, never as the peers'.
            let cells = take.div_ceil(CELL_BYTES as u64).max(1);
            self.webseed_charged
                .fetch_add(cells * CELL_BYTES as u64, Ordering::Relaxed);
            limiter
                .acquire(usize::try_from(take).unwrap_or(usize::MAX))
                .await;
            left -= take;
        }
        self.sample_peer_rate(Instant::now());
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
        // 100 KiB/s, half for the web seed, 2 s of backlog: with the peers idle the web seed
        // counts on the whole cap, so 200 KiB.
        let bandwidth = Arc::new(Bandwidth::new(100 * 1024, 50, 2, 60));
        let first = bandwidth.admit_webseed(400 * 1024).unwrap();
        assert_eq!(bandwidth.backlog(), 400 * 1024);
        // 400 KiB at 100 KiB/s: 4 s to drain.
        assert_eq!(bandwidth.admit_webseed(10).unwrap_err(), RetryAfter(4));
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
        // The bucket holds at most MAX_BURST_KIB.
        assert_eq!(Bandwidth::new(1 << 30, 50, 2, 60).chunk_size(), 256 * 1024);
        assert_eq!(Bandwidth::unlimited().chunk_size(), MAX_CHUNK);
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

    #[tokio::test(start_paused = true)]
    async fn peers_using_the_budget_shrink_what_the_web_seed_admits() {
        // 100 KiB/s, half for the web seed, 2 s of backlog.
        let bandwidth = Arc::new(Bandwidth::new(100 * 1024, 50, 2, 60));
        let peers = bandwidth.limiter().unwrap();

        // Peers idle: 150 KiB promised is within 2 s of the whole cap, so more is admitted.
        let first = bandwidth.admit_webseed(150 * 1024).unwrap();
        let second = bandwidth.admit_webseed(1).unwrap();
        drop(second);

        // The peers take the whole budget for two seconds (the paused clock moves on as the
        // bucket makes them wait).
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(2) {
            peers.acquire(16 * 1024).await;
        }
        assert!(bandwidth.peer_charged() >= 200 * 1024);
        assert_eq!(bandwidth.webseed_charged(), 0);
        // Now the web seed counts on its share only (50 KiB/s, so 100 KiB of backlog): the
        // 150 KiB in flight is too much, and takes 3 s to drain at that rate.
        assert_eq!(bandwidth.admit_webseed(1).unwrap_err(), RetryAfter(3));

        // The peers go quiet; a window later the web seed has the whole cap again.
        tokio::time::advance(Duration::from_secs(2)).await;
        let _ = bandwidth.admit_webseed_at(0, Instant::now());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(bandwidth.admit_webseed(1).is_ok());
        drop(first);
    }

    #[tokio::test(start_paused = true)]
    async fn the_web_seed_and_the_peers_draw_from_one_bucket() {
        // 64 KiB/s: the bucket holds 64 KiB.
        let bandwidth = Arc::new(Bandwidth::new(64 * 1024, 50, 2, 60));
        let peers = bandwidth.limiter().unwrap();
        let start = Instant::now();
        let web = {
            let bandwidth = Arc::clone(&bandwidth);
            tokio::spawn(async move {
                let mut permit = bandwidth.admit_webseed(192 * 1024).unwrap();
                for _ in 0..6 {
                    permit.send(32 * 1024).await;
                }
            })
        };
        for _ in 0..12 {
            peers.acquire(16 * 1024).await;
        }
        web.await.unwrap();
        // 384 KiB in all: the first 64 KiB from the full bucket, the other 320 KiB at
        // 64 KiB/s, so 5 s: one cap for both, not one each (which would take 2.5 s).
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(4900), "{elapsed:?}");
        assert_eq!(bandwidth.webseed_charged(), 192 * 1024);
        assert_eq!(bandwidth.peer_charged(), 192 * 1024);
        assert_eq!(bandwidth.backlog(), 0);
    }
}
