//! What the scheduler knows about one connected peer: its pieces, choke state, outstanding
//! requests, and the latency/throughput estimate that sets its deadline and pipeline depth.
//!
//! The pipeline is sized from the bandwidth-delay product, `throughput × minimum latency`,
//! doubled for headroom. The minimum latency (not the average) is used on purpose: blocks
//! queued behind a deep pipeline arrive later, and a target built on that queued latency
//! would grow the pipeline without end. Growth is also limited to 1.5× per measurement
//! window (one smoothed latency or more), so a block's latency can never jump past the
//! 2× deadline just because the pipeline grew.
//!
//! The bandwidth-delay product alone starves a fast peer whose latency is mostly our own
//! processing time (loopback, a LAN): a pipeline of a few blocks drains between two turns
//! of the session's loop. So the pipeline also never drops below what the peer delivers in
//! [`SchedulerConfig::min_pipeline_time`] at its measured rate (up to `max_pipeline`),
//! which covers a scheduling hiccup of that length.
//!
//! Throughput is measured over windows that stay open while the peer is idle: when a
//! request goes out to a peer with none outstanding, the time since its last block is cut
//! out of the open window instead of restarting it. A peer that drains its pipeline every
//! turn (the usual case for a fast one) would otherwise never complete a window, and its
//! pipeline would never be tuned.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use swarmcdn_proto::peer::Bitfield;

use super::config::{DeadlinePolicy, SchedulerConfig};

/// The shortest window over which a peer's throughput is measured (it lasts at least one
/// smoothed latency too). Short enough that a fast peer's pipeline grows to its size within
/// a few tens of milliseconds (1.5× per window).
pub(super) const MIN_RATE_WINDOW: Duration = Duration::from_millis(10);

/// The fewest blocks a measurement window holds, so a slow peer's rate is not judged on one
/// or two blocks.
const MIN_WINDOW_BLOCKS: u64 = 8;

/// Weight of a new latency sample in the smoothed latency (1/8, as for TCP's SRTT).
const LATENCY_WEIGHT: f64 = 1.0 / 8.0;

/// One request sent to a peer.
#[derive(Debug, Clone, Copy)]
pub(super) struct ReqInfo {
    /// When it was sent.
    pub(super) sent: Instant,
    /// When it becomes overdue.
    pub(super) deadline: Instant,
    /// Whether the deadline has passed (the request then leaves the deadline index).
    pub(super) overdue: bool,
}

/// One connected peer.
#[derive(Debug)]
pub(super) struct Peer {
    /// The pieces it has, minus pieces it is excluded from (see `Scheduler::exclude`).
    pub(super) has: Bitfield,
    /// BEP 6: a choke does not drop its requests; it rejects them one by one.
    pub(super) fast: bool,
    /// Whether it chokes us.
    pub(super) choked: bool,
    /// When the current choke began (or the connection, which starts choked).
    pub(super) choked_since: Instant,
    /// Whether its pieces count in availability: unchoking us, or choking for less than
    /// `choke_grace`.
    pub(super) usable: bool,
    /// What we last told it.
    pub(super) interested: bool,
    /// Pieces it has that we lack.
    pub(super) wanted: u32,
    /// Pieces it has that sit in the scheduler's candidate set (a fast "anything new to
    /// ask it for?" check).
    pub(super) idle_held: u32,
    /// Outstanding requests by `(piece, block)`.
    pub(super) reqs: BTreeMap<(u32, u32), ReqInfo>,
    /// Latency and throughput.
    pub(super) est: Estimator,
}

impl Peer {
    pub(super) fn new(
        piece_count: u32,
        fast: bool,
        now: Instant,
        config: &SchedulerConfig,
    ) -> Self {
        Peer {
            has: Bitfield::new(piece_count),
            fast,
            choked: true,
            choked_since: now,
            usable: true,
            interested: false,
            wanted: 0,
            idle_held: 0,
            reqs: BTreeMap::new(),
            est: Estimator::new(config),
        }
    }

    /// Requests that may still be sent to it now.
    pub(super) fn free_slots(&self) -> usize {
        if self.choked {
            0
        } else {
            self.est.pipeline.saturating_sub(self.reqs.len())
        }
    }
}

/// A peer's smoothed latency, minimum latency, throughput and the pipeline depth they give.
#[derive(Debug)]
pub(super) struct Estimator {
    /// Smoothed request-to-arrival latency; `None` before the first sample.
    latency: Option<Duration>,
    /// The smallest latency seen on this connection.
    min_latency: Option<Duration>,
    /// Smoothed throughput in bytes per second.
    rate: Option<f64>,
    /// The open measurement window: its start (moved forward past idle gaps) and the bytes
    /// received since.
    window: Option<(Instant, u64)>,
    /// When the last block arrived.
    last_arrival: Option<Instant>,
    /// When the last request went out.
    last_sent: Option<Instant>,
    /// Requests to keep in flight.
    pub(super) pipeline: usize,
}

impl Estimator {
    fn new(config: &SchedulerConfig) -> Self {
        Estimator {
            latency: None,
            min_latency: None,
            rate: None,
            window: None,
            last_arrival: None,
            last_sent: None,
            pipeline: config.initial_pipeline,
        }
    }

    /// The latency assumed before any sample.
    fn prior(config: &SchedulerConfig) -> Duration {
        match config.deadline {
            DeadlinePolicy::Adaptive {
                multiplier,
                initial,
                ..
            } => initial.div_f64(multiplier),
            DeadlinePolicy::Fixed(deadline) => deadline / 2,
        }
    }

    /// How long a request sent now may take.
    pub(super) fn deadline(&self, config: &SchedulerConfig) -> Duration {
        match config.deadline {
            DeadlinePolicy::Fixed(deadline) => deadline,
            DeadlinePolicy::Adaptive {
                multiplier,
                floor,
                cap,
                initial,
            } => match self.latency {
                None => initial,
                Some(latency) => Duration::try_from_secs_f64(latency.as_secs_f64() * multiplier)
                    .unwrap_or(cap)
                    .clamp(floor, cap),
            },
        }
    }

    /// The smoothed latency, if there was a sample.
    pub(super) fn latency(&self) -> Option<Duration> {
        self.latency
    }

    /// A request is about to go out to a peer that had none outstanding (call before
    /// [`Estimator::request_sent`]). The first one opens the measurement window. Later ones
    /// cut the idle time out of the open window, so idle time does not count against the
    /// peer's throughput and what was measured before the gap is kept; but only when the
    /// pipeline emptied because its last block arrived. When it emptied because requests
    /// were given up (cancelled after a stall, dropped by a choke), the time since the last
    /// block was the peer's, and stays in the window: a staller's rate must not look high.
    pub(super) fn resume(&mut self, now: Instant) {
        let drained_by_arrival = match (self.last_arrival, self.last_sent) {
            // Strictly after: requests sent as a block arrives (the same `now`) are still
            // outstanding when that block is handled.
            (Some(arrival), Some(sent)) => arrival > sent,
            (Some(_), None) => true,
            (None, _) => false,
        };
        match self.window.as_mut() {
            None => self.window = Some((now, 0)),
            Some((start, _)) if drained_by_arrival => {
                let busy_until = self.last_arrival.map_or(*start, |at| at.max(*start));
                // `busy_until >= start`, so the new start is at most `now`.
                *start += now.saturating_duration_since(busy_until);
            }
            Some(_) => {}
        }
    }

    /// A request went out.
    pub(super) fn request_sent(&mut self, now: Instant) {
        self.last_sent = Some(self.last_sent.map_or(now, |at| at.max(now)));
    }

    /// The measured throughput in bytes per second, if a window has closed.
    #[cfg(test)]
    pub(super) fn rate(&self) -> Option<f64> {
        self.rate
    }

    /// A requested block of `bytes` arrived `latency` after it was asked for.
    pub(super) fn block_arrived(
        &mut self,
        latency: Duration,
        bytes: u32,
        now: Instant,
        config: &SchedulerConfig,
    ) {
        let previous = self.latency.unwrap_or_else(|| Self::prior(config));
        let smoothed = previous.as_secs_f64() * (1.0 - LATENCY_WEIGHT)
            + latency.as_secs_f64() * LATENCY_WEIGHT;
        self.latency = Some(Duration::try_from_secs_f64(smoothed).unwrap_or(latency));
        self.min_latency = Some(self.min_latency.map_or(latency, |min| min.min(latency)));

        self.last_arrival = Some(self.last_arrival.map_or(now, |at| at.max(now)));

        let window_len = MIN_RATE_WINDOW.max(self.latency.unwrap_or(latency));
        let Some((start, received)) = self.window.as_mut() else {
            return;
        };
        *received += u64::from(bytes);
        let elapsed = now.saturating_duration_since(*start);
        let enough = *received >= MIN_WINDOW_BLOCKS * u64::from(config.block_size);
        if elapsed < window_len || elapsed.is_zero() || !enough {
            return;
        }
        let sample = *received as f64 / elapsed.as_secs_f64();
        self.rate = Some(self.rate.map_or(sample, |rate| (rate + sample) / 2.0));
        *start = now;
        *received = 0;
        self.retune(config);
    }

    /// Sets the pipeline from the latest throughput: twice the bandwidth-delay product, and
    /// at least what the peer delivers in `min_pipeline_time`, growing at most 1.5× and
    /// shrinking at most 2× per window.
    fn retune(&mut self, config: &SchedulerConfig) {
        let (Some(rate), Some(min_latency)) = (self.rate, self.min_latency) else {
            return;
        };
        let block = f64::from(config.block_size);
        let bdp_blocks = rate * min_latency.as_secs_f64() / block;
        let floor_blocks = rate * config.min_pipeline_time.as_secs_f64() / block;
        // `as` saturates (and maps NaN to 0); the clamps below bound it anyway.
        let target = ((2.0 * bdp_blocks).ceil() as usize + 1).max(floor_blocks.ceil() as usize);
        let current = self.pipeline;
        let grow_limit = current + (current / 2).max(1);
        let shrink_limit = current / 2;
        self.pipeline = target
            .clamp(shrink_limit, grow_limit)
            .clamp(config.min_pipeline, config.max_pipeline);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn deadline_starts_at_initial_and_follows_samples_within_bounds() {
        let config = SchedulerConfig::default();
        let t0 = Instant::now();
        let mut est = Estimator::new(&config);
        assert_eq!(est.deadline(&config), ms(500));
        for _ in 0..100 {
            est.block_arrived(ms(100), 16384, t0, &config);
        }
        let deadline = est.deadline(&config);
        assert!(deadline > ms(199) && deadline < ms(201), "{deadline:?}");
        for _ in 0..100 {
            est.block_arrived(ms(1), 16384, t0, &config);
        }
        assert_eq!(est.deadline(&config), ms(50), "floor");
        for _ in 0..100 {
            est.block_arrived(ms(5000), 16384, t0, &config);
        }
        assert_eq!(est.deadline(&config), ms(2000), "cap");
    }

    #[test]
    fn pipeline_grows_at_most_one_and_a_half_times_per_window_and_settles_at_twice_the_bdp() {
        let config = SchedulerConfig::default();
        let t0 = Instant::now();
        let mut est = Estimator::new(&config);
        est.resume(t0);
        // A peer on a 100 ms path that can deliver 1000 blocks/s: BDP = 100 blocks.
        let mut now = t0;
        let mut last = est.pipeline;
        for _ in 0..40 {
            // It delivers what the pipeline allows in one round trip.
            let per_block = ms(100) / u32::try_from(est.pipeline.min(100)).unwrap();
            for _ in 0..est.pipeline.min(100) {
                now += per_block;
                est.block_arrived(ms(100), 16384, now, &config);
            }
            assert!(
                est.pipeline <= last + last / 2 + 1,
                "{} after {last}",
                est.pipeline
            );
            last = est.pipeline;
        }
        assert!((190..=210).contains(&est.pipeline), "{}", est.pipeline);
    }

    #[test]
    fn a_peer_that_drains_its_pipeline_every_round_trip_is_still_measured() {
        let config = SchedulerConfig::default();
        let t0 = Instant::now();
        let mut est = Estimator::new(&config);
        // Each round: 16 requests go out with none outstanding, the blocks arrive 50 µs
        // apart after a 200 µs round trip, and the next round starts 100 µs after the last
        // block (the session's turn). Busy time per round: 200 + 16 × 50 = 1000 µs.
        let us = Duration::from_micros;
        let mut now = t0;
        for _ in 0..100 {
            est.resume(now);
            now += us(200);
            for _ in 0..16 {
                now += us(50);
                est.block_arrived(us(200), 16384, now, &config);
            }
            now += us(100);
        }
        let rate = est.rate().expect("a window closed");
        // 16 blocks per 1000 µs of busy time (the 100 µs gaps are cut out).
        let expected = 16.0 * 16384.0 / 1e-3;
        assert!(
            (rate - expected).abs() < expected * 0.05,
            "{rate} vs {expected}"
        );
        assert!(est.pipeline > 16, "{}", est.pipeline);
    }

    /// A latency prior of 1 ms, so a window is the 10 ms minimum from the start.
    fn one_ms_latency_config() -> SchedulerConfig {
        SchedulerConfig {
            deadline: DeadlinePolicy::Fixed(ms(2)),
            ..SchedulerConfig::default()
        }
    }

    /// Six blocks of 16 KiB arriving one per millisecond after `now` (each 1 ms after it was
    /// asked for); returns the time of the last.
    fn six_blocks_a_ms_apart(
        est: &mut Estimator,
        mut now: Instant,
        config: &SchedulerConfig,
    ) -> Instant {
        for _ in 0..6 {
            now += ms(1);
            est.block_arrived(ms(1), 16384, now, config);
        }
        now
    }

    #[test]
    fn an_idle_gap_keeps_what_was_measured_before_it() {
        let config = one_ms_latency_config();
        let mut est = Estimator::new(&config);
        let mut now = Instant::now();
        est.resume(now);
        // Half a window of blocks, one per millisecond...
        now = six_blocks_a_ms_apart(&mut est, now, &config);
        // ...a second of nothing, then the rest of the window at the same pace.
        now += ms(1000);
        est.resume(now);
        six_blocks_a_ms_apart(&mut est, now, &config);
        // The window holds all 12 blocks over 12 ms of busy time, not the gap (restarted
        // at the gap, it would still be open).
        let rate = est.rate().expect("a window closed");
        let expected = 16384.0 / 1e-3;
        assert!(
            (rate - expected).abs() < expected * 0.01,
            "{rate} vs {expected}"
        );
    }

    #[test]
    fn a_stall_ended_by_giving_up_counts_against_the_peer() {
        let config = one_ms_latency_config();
        let mut est = Estimator::new(&config);
        let mut now = Instant::now();
        est.resume(now);
        est.request_sent(now);
        now = six_blocks_a_ms_apart(&mut est, now, &config);
        // Requests go out and nothing comes for a second; they are given up (the caller
        // forgets them), and later new requests go out.
        est.request_sent(now);
        now += ms(1000);
        est.resume(now);
        est.request_sent(now);
        six_blocks_a_ms_apart(&mut est, now, &config);
        // The second of stalling is in the window: 12 blocks over about 1.012 s.
        let rate = est.rate().expect("a window closed");
        assert!(
            rate < 16384.0 * 12.0 / 0.9,
            "{rate} B/s: the stall was cut out"
        );
    }

    /// An estimator fed `blocks` blocks of 16 KiB, one every `per_block`, each 100 µs after
    /// it was asked for.
    fn steady(config: &SchedulerConfig, per_block: Duration, blocks: usize) -> Estimator {
        let mut est = Estimator::new(config);
        let mut now = Instant::now();
        est.resume(now);
        for _ in 0..blocks {
            now += per_block;
            est.block_arrived(Duration::from_micros(100), 16384, now, config);
        }
        est
    }

    #[test]
    fn a_fast_peer_gets_at_least_min_pipeline_time_of_data_up_to_the_cap() {
        let config = SchedulerConfig::default();
        // 1 GB/s with a 100 µs round trip: the bandwidth-delay product is 6 blocks, while
        // 5 ms of data is 305 blocks, above the cap.
        let est = steady(&config, Duration::from_nanos(16_384), 100_000);
        assert_eq!(est.pipeline, config.max_pipeline);
        // A peer at 100 MB/s: 5 ms is about 31 blocks.
        let est = steady(&config, Duration::from_nanos(163_840), 10_000);
        assert!((31..=32).contains(&est.pipeline), "{}", est.pipeline);
    }
}
