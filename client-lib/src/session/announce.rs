//! The announce loop: one task per tracker URL of a torrent.
//!
//! Each task announces `started`, then again every `interval` the tracker asks for (never
//! sooner than its `min interval`, nor than [`MIN_ANNOUNCE_INTERVAL`]), `completed` as soon
//! as the download completes (once, and only if it was not complete when the session
//! started), and `stopped` when the session stops, bounded by a short timeout so shutdown
//! never waits on a dead tracker. An announce under way when the session stops is let
//! finish first (within the same bound, shared with `stopped`): a tracker that handled it
//! after `stopped` would list us again. A tracker that cannot be reached (or refuses) is retried
//! with exponential backoff between the configured bounds; the event that failed is sent
//! again, so the tracker still sees `started` first.
//!
//! A session opened from a release lookup already knows the swarm the tracker would hand
//! out, so its first announce waits until it has a piece to offer (then the peers the
//! tracker tells about us can get something from us), or at most
//! [`ClientConfig::lookup_announce_wait`](crate::ClientConfig::lookup_announce_wait)
//! (50 ms by default). A small release is complete by then, and the announce no longer
//! competes with its first peer exchange.
//!
//! The task reads the transfer counters for `uploaded`/`downloaded`/`left` from the
//! session's progress watch, so it needs nothing else from the session, and it reports every
//! outcome (peers, or the failure) on the session's result channel: the session dials the
//! peers and uses the first outcome of each tracker to decide when discovery has settled.

use std::net::SocketAddr;
use std::time::Duration;

use swarmcdn_proto::tracker::{AnnounceEvent, AnnounceRequest};
use swarmcdn_proto::{InfoHash, PeerId};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::Progress;
use super::TaskResult;
use crate::tracker_client::{TrackerClient, TrackerError};

/// The shortest wait between two announces to one tracker, whatever it asks for.
pub const MIN_ANNOUNCE_INTERVAL: Duration = Duration::from_secs(1);
/// The longest wait between two announces to one tracker, whatever it asks for.
pub const MAX_ANNOUNCE_INTERVAL: Duration = Duration::from_secs(60 * 60);

/// What one announce attempt gave.
#[derive(Debug)]
pub(super) struct AnnounceOutcome {
    /// The tracker's index in the session's list.
    pub(super) tracker: usize,
    /// The peers handed out, or why the announce failed.
    pub(super) result: Result<Vec<SocketAddr>, TrackerError>,
}

/// Everything one announce task needs.
pub(super) struct Announcer {
    pub(super) index: usize,
    pub(super) url: String,
    pub(super) client: TrackerClient,
    pub(super) info_hash: InfoHash,
    pub(super) peer_id: PeerId,
    pub(super) port: u16,
    pub(super) numwant: u32,
    pub(super) retry_min: Duration,
    pub(super) retry_max: Duration,
    pub(super) stopped_timeout: Duration,
    /// Hold the first announce back until a piece is in (see the module docs), at most
    /// `first_wait`.
    pub(super) first_waits: bool,
    pub(super) first_wait: Duration,
    pub(super) progress: watch::Receiver<Progress>,
    pub(super) results: mpsc::UnboundedSender<TaskResult>,
    pub(super) stop: CancellationToken,
}

impl Announcer {
    fn request(&self, event: AnnounceEvent) -> AnnounceRequest {
        let progress = self.progress.borrow().clone();
        let mut request = AnnounceRequest::new(self.info_hash, self.peer_id, self.port);
        request.uploaded = progress.uploaded_bytes;
        request.downloaded = progress.bytes_from_peers + progress.bytes_from_http;
        request.left = progress.total_bytes.saturating_sub(progress.have_bytes);
        request.event = event;
        request.numwant = Some(self.numwant);
        request
    }

    /// Runs until the session stops, then sends `stopped` if the tracker ever answered.
    pub(super) async fn run(self) {
        // Before any wait: `completed` is for a download done in this session.
        let started_complete = self.progress.borrow().complete;
        if self.first_waits {
            let mut progress = self.progress.clone();
            tokio::select! {
                biased;
                () = self.stop.cancelled() => return,
                () = tokio::time::sleep(self.first_wait) => {}
                _ = progress.wait_for(|p| p.complete || p.have_pieces > 0) => {}
            }
        }
        // Set when the session stops with an announce under way: it and `stopped` share
        // one bound.
        let mut stop_deadline = None;
        let mut event = AnnounceEvent::Started;
        let mut answered = false;
        let mut completed_sent = started_complete;
        let mut backoff = self.retry_min;
        loop {
            if answered && !completed_sent && self.progress.borrow().complete {
                event = AnnounceEvent::Completed;
            }
            let request = self.request(event);
            let announcing = self.client.announce(&self.url, &request);
            tokio::pin!(announcing);
            let result = tokio::select! {
                biased;
                () = self.stop.cancelled() => {
                    let deadline = tokio::time::Instant::now() + self.stopped_timeout;
                    stop_deadline = Some(deadline);
                    // The request may have reached the tracker already: let it land
                    // (bounded) so that `stopped` is the last the tracker hears of us.
                    let landed = tokio::time::timeout_at(deadline, &mut announcing);
                    if let Ok(Ok(_)) = landed.await {
                        answered = true;
                    }
                    break;
                }
                result = &mut announcing => result,
            };
            let wait = match &result {
                Ok(success) => {
                    answered = true;
                    if event == AnnounceEvent::Completed {
                        completed_sent = true;
                    }
                    event = AnnounceEvent::None;
                    backoff = self.retry_min;
                    let interval = success
                        .interval
                        .max(success.min_interval.unwrap_or(0))
                        .into();
                    Duration::from_secs(interval)
                        .clamp(MIN_ANNOUNCE_INTERVAL, MAX_ANNOUNCE_INTERVAL)
                }
                Err(error) => {
                    tracing::debug!(url = %self.url, %error, "announce failed");
                    let wait = backoff;
                    backoff = (backoff * 2).min(self.retry_max);
                    wait
                }
            };
            let outcome = AnnounceOutcome {
                tracker: self.index,
                result: result.map(|s| s.peers.into_iter().map(SocketAddr::V4).collect()),
            };
            if self.results.send(TaskResult::Announce(outcome)).is_err() {
                break;
            }
            // Sleep until the next announce, or until the download completes (to say so at
            // once), or until the session stops.
            let complete_watch = answered && !completed_sent;
            let mut progress = self.progress.clone();
            tokio::select! {
                biased;
                () = self.stop.cancelled() => break,
                () = tokio::time::sleep(wait) => {}
                _ = progress.wait_for(|p| p.complete), if complete_watch => {}
            }
        }
        let stop_deadline =
            stop_deadline.unwrap_or_else(|| tokio::time::Instant::now() + self.stopped_timeout);
        if answered {
            let request = self.request(AnnounceEvent::Stopped);
            match tokio::time::timeout_at(stop_deadline, self.client.announce(&self.url, &request))
                .await
            {
                Ok(Ok(_)) => tracing::debug!(url = %self.url, "announced stopped"),
                Ok(Err(error)) => {
                    tracing::debug!(url = %self.url, %error, "stopped announce failed")
                }
                Err(_) => tracing::debug!(url = %self.url, "stopped announce timed out"),
            }
        }
    }
}
