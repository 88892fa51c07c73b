//! The session's loop: wait for the next event, handle it, let the scheduler decide, carry
//! out its actions, publish progress.
//!
//! Every handler only changes state and feeds the scheduler; the scheduler's actions all
//! come back from the one [`Scheduler::poll`](crate::scheduler::Scheduler::poll) after it,
//! so the order of effects is the scheduler's (cancels and interest first, then fetches,
//! then requests). A piece assembled from peer blocks, or fetched over HTTP, is committed
//! (hashed, and written for a disk store) in its own task, and only its verdict comes back
//! here: the first verified copy of a piece wins, a copy that fails its hash gets its
//! source banned (peers) or dropped (web seeds), and the piece is fetched again.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use swarmcdn_proto::peer::Message;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Instrument;

use super::{
    Command, DownloadError, MAX_HASH_STRIKES, PeerInfo, Progress, SessionStats, TaskResult, Torrent,
};
use crate::peer::{PeerConnection, PeerEvent, PeerKey, Registration};
use crate::scheduler::{Action, Source};
use crate::storage::{StorageError, StoreKind};

/// While peers are connected, progress is refreshed at least this often (upload counters
/// change without the session seeing an event).
const PROGRESS_REFRESH: Duration = Duration::from_millis(500);
/// Pieces of a memory store up to this size are hashed on the session's task rather than
/// in a task of their own: about 20 µs of SHA-1, less than the two task hand-offs it saves
/// (small releases, whose few pieces are fetched in a few round trips, are where those
/// hand-offs show).
const INLINE_COMMIT_MAX: usize = 32 * 1024;
/// Peer events handled in one go before the scheduler is polled (batching amortises the
/// poll over a burst of blocks without starving the other inputs).
const EVENT_BATCH: usize = 64;

/// The channels the loop reads.
pub(super) struct Inputs {
    pub(super) events: mpsc::Receiver<(PeerKey, PeerEvent)>,
    pub(super) incoming: mpsc::Receiver<PeerConnection>,
    pub(super) results: mpsc::UnboundedReceiver<super::TaskResult>,
    pub(super) commands: mpsc::Receiver<Command>,
}

/// The verdict on a piece committed to the store.
#[derive(Debug)]
pub(super) struct CommitOutcome {
    piece: u32,
    /// The peers whose blocks made up the copy.
    contributors: Vec<PeerKey>,
    result: Result<(), StorageError>,
}

impl Torrent {
    /// Runs the session until it is stopped (or fails), then stops everything it started.
    pub(super) async fn run(mut self, mut inputs: Inputs, registration: Registration) {
        tracing::debug!(
            pieces = self.info.piece_count(),
            size = self.info.total_length(),
            trackers = self.announce_urls.len(),
            web_seeds = self.seeds.len(),
            complete = self.scheduler.is_complete(),
            "session started"
        );
        self.add_web_seeds();
        self.start_announcers();
        self.redial_bootstrap();
        self.maybe_settle();
        self.drive();

        let mut next_refresh = Instant::now() + PROGRESS_REFRESH;
        let mut next_snub_check = None;
        let mut next_redial = Instant::now() + super::BOOTSTRAP_REDIAL;
        let bootstrap = !self.bootstrap_peers.is_empty();
        loop {
            let wakeup = self
                .scheduler
                .next_wakeup()
                .map(Instant::from_std)
                .into_iter()
                .chain(self.choker.next_wakeup().map(Instant::from_std))
                // Also while a let-go connection may still count a last write.
                .chain(
                    (!self.peers.is_empty() || !self.counters.closing.is_empty())
                        .then_some(next_refresh),
                )
                .chain(next_snub_check)
                .chain((bootstrap && !self.scheduler.is_complete()).then_some(next_redial))
                .min();
            tokio::select! {
                biased;
                () = self.stop.cancelled() => break,
                Some(command) = inputs.commands.recv() => self.command(command),
                // Results first: there are few (bounded by what we started), each may free
                // work (a verified piece), and a flood of peer events must not delay them.
                Some(result) = inputs.results.recv() => self.task_result(result),
                Some(outcome) = self.dials.next(), if !self.dials.is_empty() => {
                    self.dial_finished(outcome);
                }
                Some(conn) = inputs.incoming.recv() => self.incoming(conn),
                Some((key, event)) = inputs.events.recv() => {
                    self.peer_event(key, event);
                    for _ in 1..EVENT_BATCH {
                        match inputs.events.try_recv() {
                            Ok((key, event)) => self.peer_event(key, event),
                            Err(_) => break,
                        }
                    }
                }
                () = sleep_until(wakeup) => {}
            }
            if self.failure.is_some() {
                break;
            }
            if next_snub_check.is_none_or(|at| at <= Instant::now()) {
                next_snub_check = self.check_snubs();
            }
            if next_redial <= Instant::now() {
                next_redial = Instant::now() + super::BOOTSTRAP_REDIAL;
                if !self.scheduler.is_complete() {
                    self.redial_bootstrap();
                }
            }
            self.drive();
            if Instant::now() >= next_refresh {
                next_refresh = Instant::now() + PROGRESS_REFRESH;
            }
        }

        // Stop: no more incoming peers (the registration goes first, so a new session for
        // the torrent can register), then every connection and task of ours ends. The
        // announce loops see the same token and say `stopped`.
        drop(registration);
        self.stop.cancel();
        for (_, peer) in self.peers.drain() {
            peer.link.close();
            self.counters.closed_uploaded += peer.link.uploaded();
        }
        if self.failure.is_none() && !self.scheduler.is_complete() {
            self.failure = Some(DownloadError::Stopped);
        }
        self.publish_progress();
        tracing::debug!(progress = %*self.progress_tx.borrow(), "session stopped");
    }

    /// A request from the client.
    fn command(&mut self, command: Command) {
        match command {
            Command::Stats(reply) => {
                let _ = reply.send(self.stats());
            }
        }
    }

    /// A fresh snapshot: progress counters recomputed (upload counters included) and the
    /// peer table.
    fn stats(&self) -> SessionStats {
        SessionStats {
            progress: self.progress(),
            scheduler: *self.scheduler.stats(),
            peers: self
                .peers
                .values()
                .map(|p| PeerInfo {
                    addr: p.addr,
                    peer_id: p.peer_id,
                    outgoing: p.direction == crate::peer::Direction::Outgoing,
                    pieces: p.has.count(),
                    uploaded: p.link.uploaded(),
                })
                .collect(),
            web_seeds: self
                .seeds
                .iter()
                .filter(|s| !s.removed)
                .map(|s| s.seed.base_url().to_owned())
                .collect(),
        }
    }

    /// The report of one task this session started.
    fn task_result(&mut self, result: TaskResult) {
        match result {
            TaskResult::Http(outcome) => self.http_finished(outcome),
            TaskResult::Commit(outcome) => self.commit_finished(outcome),
            TaskResult::Announce(outcome) => self.announce_finished(outcome),
        }
    }

    /// Polls the scheduler and the choker, carries out their actions and publishes
    /// progress.
    pub(super) fn drive(&mut self) {
        let now = Instant::now().into_std();
        let actions = self.scheduler.poll(now, &mut self.rng);
        for action in actions {
            self.execute(action);
        }
        for (&key, peer) in &mut self.peers {
            let uploaded = peer.link.uploaded();
            if uploaded > peer.reported_upload {
                self.choker
                    .record_upload(key, uploaded - peer.reported_upload, now);
                peer.reported_upload = uploaded;
            }
        }
        let choke = self.choker.poll(now, &mut self.rng);
        self.apply_choke(choke);
        self.flush_links();
        self.publish_progress();
    }

    /// Sends what this turn of the loop had for each peer (see `PeerLink::send`); a peer
    /// that cannot take it is dropped (the scheduler then frees what it had asked of it).
    fn flush_links(&mut self) {
        let failed: Vec<PeerKey> = self
            .peers
            .iter_mut()
            .filter_map(|(&key, peer)| peer.link.flush().is_err().then_some(key))
            .collect();
        for key in failed {
            tracing::debug!(key = key.0, "peer not taking messages; dropping it");
            self.remove_peer(key);
        }
    }

    /// Carries out one scheduler action. Peer messages are handed over without waiting
    /// (see `peers.rs`); a fetch starts a task.
    fn execute(&mut self, action: Action) {
        match action {
            Action::Interested { peer, interested } => {
                let message = if interested {
                    Message::Interested
                } else {
                    Message::NotInterested
                };
                self.send_or_drop(peer, message);
            }
            Action::Request {
                peer,
                piece,
                begin,
                length,
            } => self.send_or_drop(
                peer,
                Message::Request {
                    index: piece,
                    begin,
                    length,
                },
            ),
            Action::Cancel {
                peer,
                piece,
                begin,
                length,
            } => self.send_or_drop(
                peer,
                Message::Cancel {
                    index: piece,
                    begin,
                    length,
                },
            ),
            Action::HttpFetch { seed, pieces } => self.start_fetch(seed, pieces),
        }
    }

    /// Sends `message` to `peer` at the end of this turn of the loop (see
    /// [`Torrent::flush_links`]); a peer that cannot take it is dropped then.
    pub(super) fn send_or_drop(&mut self, peer: PeerKey, message: Message) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.link.send(message);
        }
    }

    /// Hashes (and stores) a piece assembled from peer blocks: a small piece of a memory
    /// store right here (see [`INLINE_COMMIT_MAX`]), a large or on-disk one in the store's
    /// commit queue on the blocking pool, one in between in a task of its own (hashed inline
    /// there; a blocking-pool trip would cost more). Every verdict comes back through the
    /// results channel, so it is handled like any other.
    pub(super) fn commit_from_peers(&mut self, piece: u32, data: Bytes) {
        let contributors = self.scheduler.piece_contributors(piece);
        if self.store.kind() == StoreKind::Memory && data.len() <= INLINE_COMMIT_MAX {
            let result = self.store.commit_piece(piece, data);
            let _ = self.results_tx.send(TaskResult::Commit(CommitOutcome {
                piece,
                contributors,
                result,
            }));
            return;
        }
        let store = Arc::clone(&self.store);
        let results = self.results_tx.clone();
        let stop = self.stop.clone();
        if !store.commits_inline(data.len()) {
            let tasks = &self.shared.tasks;
            store.commit_piece_queued(piece, data, stop.clone(), tasks, move |result| {
                if !stop.is_cancelled() {
                    let _ = results.send(TaskResult::Commit(CommitOutcome {
                        piece,
                        contributors,
                        result,
                    }));
                }
            });
            return;
        }
        self.shared.tasks.spawn(
            async move {
                let result = tokio::select! {
                    biased;
                    () = stop.cancelled() => return,
                    result = store.commit_piece_async(piece, data) => result,
                };
                let _ = results.send(TaskResult::Commit(CommitOutcome {
                    piece,
                    contributors,
                    result,
                }));
            }
            .instrument(tracing::trace_span!("commit", piece)),
        );
    }

    /// The verdict on a piece assembled from peer blocks. A bad piece is blamed on every
    /// peer that sent a block of it: at once when one peer sent it all, by strikes when
    /// several did (one of them may be honest; see [`MAX_HASH_STRIKES`]).
    fn commit_finished(&mut self, outcome: CommitOutcome) {
        let CommitOutcome {
            piece,
            contributors,
            result,
        } = outcome;
        let blamed = contributors.first().copied().unwrap_or(PeerKey(0));
        match result {
            Ok(()) => self.piece_verified(piece, Source::Peer(blamed)),
            Err(error) if error.blames_source() => {
                tracing::info!(piece, ?contributors, %error, "piece from peers failed its hash");
                self.counters.hash_failures += 1;
                self.scheduler.piece_failed(piece, Source::Peer(blamed));
                self.assembler.discard(piece);
                let sole = contributors.len() == 1;
                for key in contributors {
                    let strikes = self.strikes.entry(key).or_insert(0);
                    *strikes += 1;
                    if sole || *strikes >= MAX_HASH_STRIKES {
                        self.ban_peer(key, "sent a piece that failed its hash");
                    }
                }
            }
            Err(error) => self.fail(error),
        }
    }

    /// A verified copy of `piece` is stored. The first copy wins: later ones change nothing.
    pub(super) fn piece_verified(&mut self, piece: u32, source: Source) {
        if self.scheduler.have().has(piece) {
            return;
        }
        self.scheduler.piece_verified(piece, source);
        self.assembler.discard(piece);
        let len = u64::from(self.info.piece_len(piece).unwrap_or(0));
        self.counters.have_bytes += len;
        match source {
            Source::Peer(_) => self.counters.bytes_from_peers += len,
            Source::WebSeed(_) => self.counters.bytes_from_http += len,
        }
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            if self.peers.get(&key).is_some_and(|p| !p.has.has(piece)) {
                self.send_or_drop(key, Message::Have { piece });
            }
        }
        if self.scheduler.is_complete() {
            self.completed();
        }
    }

    /// Every piece is verified: from now on the session seeds (the choker ranks peers by
    /// upload rate) and drops connections to other seeds.
    fn completed(&mut self) {
        self.choker.set_seeding(true);
        tracing::info!(
            from_peers = self.counters.bytes_from_peers,
            from_http = self.counters.bytes_from_http,
            "release complete; seeding"
        );
        if !self.store.is_complete() {
            // A disk store whose final rename failed: try once more, else give up.
            if let Err(error) = self.store.finish() {
                self.fail(error);
                return;
            }
        }
        // Two seeds have nothing to say to each other.
        let seeds: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(_, p)| p.is_seed())
            .map(|(&k, _)| k)
            .collect();
        for key in seeds {
            self.remove_peer(key);
        }
    }

    /// A storage error that does not blame a source (I/O, cache): the session cannot go on.
    pub(super) fn fail(&mut self, error: StorageError) {
        tracing::error!(%error, "storage failed; stopping the session");
        if self.failure.is_none() {
            self.failure = Some(DownloadError::Storage(Arc::new(error)));
        }
    }

    /// The progress as it is now.
    pub(super) fn progress(&self) -> Progress {
        let uploaded = self.counters.closed_uploaded
            + self
                .counters
                .closing
                .iter()
                .map(|s| s.uploaded())
                .sum::<u64>()
            + self.peers.values().map(|p| p.link.uploaded()).sum::<u64>();
        Progress {
            total_bytes: self.info.total_length(),
            have_bytes: self.counters.have_bytes,
            total_pieces: self.info.piece_count(),
            have_pieces: self.scheduler.have().count(),
            bytes_from_peers: self.counters.bytes_from_peers,
            bytes_from_http: self.counters.bytes_from_http,
            uploaded_bytes: uploaded,
            peers_connected: self.peers.len(),
            peers_banned: self.counters.peers_banned,
            web_seeds_removed: self.counters.web_seeds_removed,
            hash_failures: self.counters.hash_failures,
            announces: self.counters.announces,
            complete: self.scheduler.is_complete() && self.store.is_complete(),
            failure: self.failure.clone(),
        }
    }

    /// Moves the uploads of let-go connections whose writers have ended into
    /// `closed_uploaded`.
    pub(super) fn settle_closing(&mut self) {
        let counters = &mut self.counters;
        counters.closing.retain(|stats| {
            if stats.upload_final() {
                counters.closed_uploaded += stats.uploaded();
                false
            } else {
                true
            }
        });
    }

    /// Updates the watch channel, waking watchers only when something changed.
    pub(super) fn publish_progress(&mut self) {
        self.settle_closing();
        let progress = self.progress();
        self.progress_tx.send_if_modified(|current| {
            if *current == progress {
                false
            } else {
                *current = progress;
                true
            }
        });
    }
}

/// Sleeps until `at`, or forever when there is nothing to wake up for.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
