//! The client-wide upload rate limit, applied to the block data we send peers.
//!
//! How bytes are counted, and why:
//!
//! - **Only `piece` payload counts.** The limit exists to cap what seeding costs a site: the
//!   content it uploads. Control messages (requests, haves, choke state, keep-alives) are a
//!   few bytes each and latency-critical; making them wait behind a bandwidth limit would
//!   slow the site's own downloads on the same connections. The 13 header bytes of a
//!   16 KiB block are under 0.1 % of it, so leaving them out changes nothing measurable.
//! - **In whole KiB, rounded up per message.** The limiter counts "cells" as `u32`s; a cell
//!   of one KiB keeps the per-cell period in microseconds even at gigabit rates (byte cells
//!   would be a nanosecond apart) and a 16 KiB block is exactly 16 cells. Rounding up means a
//!   short last block is charged at most one KiB too much, erring on the side of the cap.
//! - **Burst of one second's worth, between one block and [`MAX_BURST_KIB`].** After an idle
//!   spell a connection may send that much at once; beyond it sends are paced. A block
//!   larger than the burst is charged in burst-sized steps, so any block size works with any
//!   rate.
//! - **Tokio's clock.** The limiter reads time from `tokio::time::Instant` and waits with
//!   `tokio::time::sleep`, so it obeys `tokio::time::pause` in tests like every other timer
//!   of the peer layer.
//!
//! One limiter is shared by all connections of a client (it is an `Arc` inside), which makes
//! the cap client-wide rather than per peer. An embedding program can share it further: a
//! seeder hands the same limiter to the client and to its HTTP server, so peer uploads and
//! HTTP responses draw from one budget, and reads [`UploadLimiter::charged_bytes`] to see how
//! much of it each side takes.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// One cell of the limiter: a KiB of `piece` payload.
pub const CELL_BYTES: usize = 1024;
/// The largest burst the limiter allows after an idle spell, in KiB.
pub const MAX_BURST_KIB: u32 = 256;
/// The smallest burst, in KiB: one 16 KiB block, so that a block never has to be split.
pub const MIN_BURST_KIB: u32 = 16;

/// Time as the limiter sees it: tokio's clock, counted from when the limiter was made.
#[derive(Debug, Clone, Copy)]
struct TokioClock {
    origin: tokio::time::Instant,
}

impl Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        tokio::time::Instant::now().saturating_duration_since(self.origin)
    }
}

type Gcra = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Duration>>;

/// A shared upload rate limit over `piece` payload bytes. Clones share the same budget.
#[derive(Clone)]
pub struct UploadLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    gcra: Gcra,
    clock: TokioClock,
    kib_per_second: NonZeroU32,
    burst: NonZeroU32,
    /// Cells taken so far, by every holder of the limiter.
    charged: AtomicU64,
}

impl std::fmt::Debug for UploadLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadLimiter")
            .field("kib_per_second", &self.inner.kib_per_second)
            .field("burst_kib", &self.inner.burst)
            .finish()
    }
}

impl UploadLimiter {
    /// A limit of `kib_per_second` KiB of block data per second, for all connections that
    /// share this value.
    pub fn new(kib_per_second: NonZeroU32) -> Self {
        let burst = kib_per_second.get().clamp(MIN_BURST_KIB, MAX_BURST_KIB);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_second(kib_per_second).allow_burst(burst);
        let clock = TokioClock {
            origin: tokio::time::Instant::now(),
        };
        UploadLimiter {
            inner: Arc::new(Inner {
                gcra: RateLimiter::direct_with_clock(quota, clock),
                clock,
                kib_per_second,
                burst,
                charged: AtomicU64::new(0),
            }),
        }
    }

    /// The configured rate in KiB per second.
    pub fn kib_per_second(&self) -> NonZeroU32 {
        self.inner.kib_per_second
    }

    /// The largest burst after an idle spell, in bytes: sends up to this size go at once.
    pub fn burst_bytes(&self) -> usize {
        usize::try_from(self.inner.burst.get())
            .unwrap_or(usize::MAX)
            .saturating_mul(CELL_BYTES)
    }

    /// The bytes charged so far by everyone sharing this limiter (whole cells, so each send
    /// is rounded up to a KiB): a monotonic counter, to see how much of the budget is used.
    pub fn charged_bytes(&self) -> u64 {
        self.inner
            .charged
            .load(Ordering::Relaxed)
            .saturating_mul(CELL_BYTES as u64)
    }

    fn charge(&self, cells: NonZeroU32) {
        self.inner
            .charged
            .fetch_add(u64::from(cells.get()), Ordering::Relaxed);
    }

    /// The number of cells (KiB, rounded up) that `bytes` of payload cost; at least one, so
    /// that even empty blocks are paced.
    fn cells(bytes: usize) -> u32 {
        let cells = bytes.div_ceil(CELL_BYTES).max(1);
        u32::try_from(cells).unwrap_or(u32::MAX)
    }

    /// Takes the budget for `bytes` of payload if it is available right now (and fits in one
    /// burst); returns whether it did. Nothing is taken when it returns `false`.
    pub fn try_acquire(&self, bytes: usize) -> bool {
        let cells = Self::cells(bytes);
        if cells > self.inner.burst.get() {
            return false;
        }
        let Some(n) = NonZeroU32::new(cells) else {
            return true;
        };
        let taken = matches!(self.inner.gcra.check_n(n), Ok(Ok(())));
        if taken {
            self.charge(n);
        }
        taken
    }

    /// Waits until the budget for `bytes` of payload is available and takes it.
    ///
    /// Cancel-safe in the sense that matters here: a cancelled wait has taken at most the
    /// burst-sized steps that completed, which only makes the limit stricter.
    pub async fn acquire(&self, bytes: usize) {
        let mut left = Self::cells(bytes);
        while left > 0 {
            let step = left.min(self.inner.burst.get());
            let Some(n) = NonZeroU32::new(step) else {
                return;
            };
            loop {
                match self.inner.gcra.check_n(n) {
                    Ok(Ok(())) => {
                        self.charge(n);
                        break;
                    }
                    Ok(Err(not_until)) => {
                        let wait = not_until.wait_time_from(self.inner.clock.now());
                        // Never spin: a zero wait still yields to the timer.
                        tokio::time::sleep(wait.max(Duration::from_micros(100))).await;
                    }
                    // Unreachable since `step <= burst`; give up rather than loop forever.
                    Err(_insufficient) => return,
                }
            }
            left -= step;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kib(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    #[test]
    fn cells_are_kib_rounded_up() {
        assert_eq!(UploadLimiter::cells(0), 1);
        assert_eq!(UploadLimiter::cells(1), 1);
        assert_eq!(UploadLimiter::cells(1024), 1);
        assert_eq!(UploadLimiter::cells(1025), 2);
        assert_eq!(UploadLimiter::cells(16 * 1024), 16);
    }

    #[tokio::test(start_paused = true)]
    async fn burst_is_clamped_between_one_block_and_the_maximum() {
        assert_eq!(UploadLimiter::new(kib(1)).inner.burst.get(), MIN_BURST_KIB);
        assert_eq!(UploadLimiter::new(kib(100)).inner.burst.get(), 100);
        assert_eq!(
            UploadLimiter::new(kib(1_000_000)).inner.burst.get(),
            MAX_BURST_KIB
        );
    }

    #[tokio::test(start_paused = true)]
    async fn paces_to_the_rate_after_the_burst() {
        let limiter = UploadLimiter::new(kib(32));
        let start = tokio::time::Instant::now();
        // The burst (32 KiB) goes at once, then 32 KiB per second.
        for _ in 0..6 {
            limiter.acquire(16 * 1024).await;
        }
        let elapsed = start.elapsed();
        // 96 KiB - 32 KiB burst = 64 KiB at 32 KiB/s = 2 s.
        assert!(elapsed >= Duration::from_millis(1990), "{elapsed:?}");
        assert!(elapsed <= Duration::from_millis(2100), "{elapsed:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn try_acquire_takes_nothing_when_it_says_no() {
        let limiter = UploadLimiter::new(kib(16));
        assert!(limiter.try_acquire(16 * 1024));
        assert!(!limiter.try_acquire(1024), "burst used up");
        tokio::time::advance(Duration::from_millis(500)).await;
        // Half a second refills 8 KiB: an 8 KiB block fits, nothing was lost to the refusal.
        assert!(limiter.try_acquire(8 * 1024));
        // Larger than the burst: never in one step.
        assert!(!UploadLimiter::new(kib(16)).try_acquire(17 * 1024));
    }

    #[tokio::test(start_paused = true)]
    async fn blocks_larger_than_the_burst_are_charged_in_steps() {
        let limiter = UploadLimiter::new(kib(16));
        let start = tokio::time::Instant::now();
        limiter.acquire(64 * 1024).await; // burst 16, then 48 KiB at 16 KiB/s
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(2990), "{elapsed:?}");
        assert!(elapsed <= Duration::from_millis(3100), "{elapsed:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn clones_share_one_budget() {
        let a = UploadLimiter::new(kib(16));
        let b = a.clone();
        assert!(a.try_acquire(16 * 1024));
        assert!(!b.try_acquire(1024));
        assert_eq!(b.kib_per_second().get(), 16);
    }

    #[tokio::test(start_paused = true)]
    async fn charged_bytes_count_every_holder_in_whole_cells() {
        let a = UploadLimiter::new(kib(64));
        let b = a.clone();
        assert_eq!(a.burst_bytes(), 64 * 1024);
        a.acquire(16 * 1024).await;
        assert!(b.try_acquire(100)); // one cell
        assert!(!b.try_acquire(64 * 1024)); // refused: not charged
        b.acquire(20 * 1024 + 1).await; // 21 cells
        assert_eq!(a.charged_bytes(), (16 + 1 + 21) * 1024);
        assert_eq!(b.charged_bytes(), a.charged_bytes());
    }
}
