//! Tuning knobs of the piece scheduler, with defaults for small, latency-bound releases.
//!
//! Every duration the scheduler adds to an `Instant` is capped at [`MAX_DURATION`] when the
//! config is taken in, so no setting can make the arithmetic overflow (and panic).

use std::time::Duration;

/// The largest duration any setting may have; larger values are lowered to it.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// The largest deadline multiplier; larger (or non-finite) values are replaced.
pub const MAX_DEADLINE_MULTIPLIER: f64 = 1000.0;

/// How long a requested block may stay unanswered before it is *overdue*: its piece then
/// becomes eligible for HTTP (or for a second peer when no web seed is usable).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DeadlinePolicy {
    /// `multiplier` × the peer's smoothed request-to-arrival latency, clamped to
    /// `[floor, cap]`. The latency estimate starts at `initial / multiplier`, so a peer with
    /// no sample yet gets `initial`, and moves towards each sample with weight 1/8 (a prior
    /// that a fast first block cannot collapse: blocks sent behind a full pipeline wait longer
    /// than the first one did).
    Adaptive {
        /// How many times the smoothed latency a block may take.
        multiplier: f64,
        /// The shortest deadline.
        floor: Duration,
        /// The longest deadline.
        cap: Duration,
        /// The deadline before the peer delivered any block.
        initial: Duration,
    },
    /// The same deadline for every request.
    Fixed(Duration),
}

impl Default for DeadlinePolicy {
    fn default() -> Self {
        DeadlinePolicy::Adaptive {
            multiplier: 2.0,
            floor: Duration::from_millis(50),
            cap: Duration::from_secs(2),
            initial: Duration::from_millis(500),
        }
    }
}

/// Settings of one [`Scheduler`](super::Scheduler). Out-of-range values are corrected when
/// the scheduler is built (see each field), never rejected.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerConfig {
    /// Bytes per requested block (the last block of a piece may be shorter). BEP 3 clients
    /// serve 16 KiB; at least 1.
    pub block_size: u32,
    /// Requests in flight to a peer before its throughput is measured.
    pub initial_pipeline: usize,
    /// The fewest requests kept in flight to an unchoking peer (at least 1).
    pub min_pipeline: usize,
    /// The most requests kept in flight to one peer (at least `min_pipeline`).
    pub max_pipeline: usize,
    /// Once a peer's throughput is measured, at least this much of its data is kept
    /// requested (bounded by `max_pipeline`): a fast peer whose round trip is mostly our
    /// own processing time then never runs dry while the session is busy for that long.
    pub min_pipeline_time: Duration,
    /// When a requested block counts as late.
    pub deadline: DeadlinePolicy,
    /// After start, how long pieces that no connected peer has wait for peers before they
    /// go to a web seed. Ended early by [`Scheduler::discovery_settled`](super::Scheduler::discovery_settled).
    pub initial_peer_wait: Duration,
    /// How long a peer may choke us and still count as a holder of its pieces (a new
    /// connection starts choked). After that, pieces only it has go to HTTP.
    pub choke_grace: Duration,
    /// The largest HTTP range (sum of whole pieces) in one fetch; a fetch always holds at
    /// least one piece even if that piece is larger.
    pub max_http_range_bytes: u64,
    /// Fetches in flight per web seed; 0 never uses web seeds.
    pub max_http_in_flight_per_seed: usize,
    /// Request still-outstanding blocks from a second peer once every missing block has been
    /// requested, and cancel the loser.
    pub endgame: bool,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            block_size: 16 * 1024,
            initial_pipeline: 16,
            min_pipeline: 2,
            max_pipeline: 256,
            min_pipeline_time: Duration::from_millis(5),
            deadline: DeadlinePolicy::default(),
            initial_peer_wait: Duration::from_millis(150),
            choke_grace: Duration::from_millis(500),
            max_http_range_bytes: 4 * 1024 * 1024,
            max_http_in_flight_per_seed: 2,
            endgame: true,
        }
    }
}

impl SchedulerConfig {
    /// The config with every field brought into range, as documented on the fields.
    pub(super) fn sanitized(mut self) -> Self {
        self.block_size = self.block_size.max(1);
        self.min_pipeline = self.min_pipeline.max(1);
        self.max_pipeline = self.max_pipeline.max(self.min_pipeline);
        self.initial_pipeline = self
            .initial_pipeline
            .clamp(self.min_pipeline, self.max_pipeline);
        self.min_pipeline_time = self.min_pipeline_time.min(MAX_DURATION);
        self.initial_peer_wait = self.initial_peer_wait.min(MAX_DURATION);
        self.choke_grace = self.choke_grace.min(MAX_DURATION);
        self.deadline = match self.deadline {
            DeadlinePolicy::Fixed(d) => DeadlinePolicy::Fixed(d.min(MAX_DURATION)),
            DeadlinePolicy::Adaptive {
                multiplier,
                floor,
                cap,
                initial,
            } => {
                let multiplier = if multiplier.is_finite() && multiplier > 0.0 {
                    multiplier.min(MAX_DEADLINE_MULTIPLIER)
                } else {
                    2.0
                };
                let cap = cap.min(MAX_DURATION);
                DeadlinePolicy::Adaptive {
                    multiplier,
                    floor: floor.min(cap),
                    cap,
                    initial: initial.min(MAX_DURATION),
                }
            }
        };
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitized_brings_every_field_into_range() {
        let config = SchedulerConfig {
            block_size: 0,
            initial_pipeline: 1000,
            min_pipeline: 0,
            max_pipeline: 0,
            deadline: DeadlinePolicy::Adaptive {
                multiplier: f64::NAN,
                floor: Duration::from_secs(10),
                cap: Duration::MAX,
                initial: Duration::MAX,
            },
            min_pipeline_time: Duration::MAX,
            initial_peer_wait: Duration::MAX,
            choke_grace: Duration::MAX,
            ..SchedulerConfig::default()
        }
        .sanitized();
        assert_eq!(config.block_size, 1);
        assert_eq!(
            (
                config.min_pipeline,
                config.max_pipeline,
                config.initial_pipeline
            ),
            (1, 1, 1)
        );
        assert_eq!(config.min_pipeline_time, MAX_DURATION);
        assert_eq!(config.initial_peer_wait, MAX_DURATION);
        assert_eq!(config.choke_grace, MAX_DURATION);
        assert_eq!(
            config.deadline,
            DeadlinePolicy::Adaptive {
                multiplier: 2.0,
                floor: Duration::from_secs(10),
                cap: MAX_DURATION,
                initial: MAX_DURATION,
            }
        );
    }

    #[test]
    fn defaults_are_already_sane() {
        assert_eq!(
            SchedulerConfig::default().sanitized(),
            SchedulerConfig::default()
        );
    }
}
