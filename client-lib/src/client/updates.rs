//! The release a client serves as "latest" for each name, and the background poll that
//! moves it forward.
//!
//! Why it is built this way:
//! - Serving "latest" must not cost a tracker round trip per page view, so each name has a
//!   pointer to one verified [`Release`]: [`Client::latest`] reads it, and only the first
//!   call for a name (or a call after a failed first fetch) goes to the trackers.
//! - A site must never serve a mix of two versions, so a new version is downloaded and
//!   verified *in full* (through [`Client::get_version`], the same trust checks as
//!   [`Client::get`]) before the pointer moves, and the move is one store into a
//!   [`watch`] channel: a reader holds either the old release or the new one, never parts
//!   of both. A response built from one [`Release`] stays on that version even if the
//!   pointer moves while it is being sent.
//! - The pointer only moves forward ([`decide`]): a tracker that answers with an older
//!   version (a stale replica, a rollback attempt) or fails changes nothing, and a tracker
//!   error never clears what is served. The next poll simply tries again.
//! - One named task, owned by the client and ended by [`Client::shutdown`], polls every
//!   name in turn. A new version downloads in a task of its own, so a release whose content
//!   is slow to arrive never holds back the others' polls; at most one download per name is
//!   under way unless a still newer version overtakes it. The poll task holds the client
//!   weakly, so dropping every [`Client`] without a shutdown still lets it go at the next
//!   tick.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use swarmcdn_proto::manifest::{ReleaseName, Version};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tracing::Instrument;

use super::{Client, ClientBuilder, GetError, Inner, Release};
use crate::tracker_client::TrackerError;

/// What a poll does with the version a tracker offers, given the one served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Nothing is served yet, or the offer is newer: fetch it, then switch.
    Fetch,
    /// The offer is the version served: nothing to do.
    Same,
    /// The offer is older than what is served: never roll back.
    Older,
}

/// The no-rollback rule: only a strictly newer version (or a first one) is fetched.
pub(crate) fn decide(served: Option<&Version>, offered: &Version) -> Decision {
    match served {
        None => Decision::Fetch,
        Some(served) => match offered.cmp(served) {
            std::cmp::Ordering::Greater => Decision::Fetch,
            std::cmp::Ordering::Equal => Decision::Same,
            std::cmp::Ordering::Less => Decision::Older,
        },
    }
}

/// One name's pointer.
#[derive(Debug)]
struct Tracked {
    current: watch::Sender<Option<Release>>,
    /// The highest version being downloaded by a poll, if any.
    in_flight: Mutex<Option<Version>>,
}

impl Tracked {
    fn new() -> Self {
        Tracked {
            current: watch::Sender::new(None),
            in_flight: Mutex::new(None),
        }
    }

    /// Claims the download of `version` unless the same or a newer one is under way.
    fn claim(&self, version: &Version) -> bool {
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if in_flight.as_ref().is_some_and(|v| v >= version) {
            return false;
        }
        *in_flight = Some(version.clone());
        true
    }

    /// Lets go of the claim on `version` (a newer claim stays).
    fn release_claim(&self, version: &Version) {
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if in_flight.as_ref() == Some(version) {
            *in_flight = None;
        }
    }

    fn current(&self) -> Option<Release> {
        self.current.borrow().clone()
    }

    /// Makes `release` current if it is newer than the current one; whether it did.
    fn offer(&self, release: &Release) -> bool {
        self.current.send_if_modified(|current| {
            let served = current.as_ref().map(Release::version);
            if decide(served, release.version()) != Decision::Fetch {
                return false;
            }
            *current = Some(release.clone());
            true
        })
    }
}

/// The "latest" pointers of one client, by name.
#[derive(Debug, Default)]
pub(crate) struct LatestReleases {
    names: Mutex<HashMap<ReleaseName, Arc<Tracked>>>,
}

impl LatestReleases {
    /// The pointer of `name`, created (empty) if it is new: from then on it is polled.
    fn track(&self, name: &ReleaseName) -> Arc<Tracked> {
        let mut names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(
            names
                .entry(name.clone())
                .or_insert_with(|| Arc::new(Tracked::new())),
        )
    }

    /// The release served as latest for `name`, if any (tracks nothing new).
    fn current(&self, name: &ReleaseName) -> Option<Release> {
        let names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        names.get(name)?.current()
    }

    /// Every tracked name with its pointer.
    fn snapshot(&self) -> Vec<(ReleaseName, Arc<Tracked>)> {
        let names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        names
            .iter()
            .map(|(name, tracked)| (name.clone(), Arc::clone(tracked)))
            .collect()
    }

    /// Offers a release just fetched as "latest", tracking `name` from now on (by
    /// [`Client::latest`]).
    pub(crate) fn offer(&self, name: &ReleaseName, release: &Release) {
        Self::switched(name, release, self.track(name).offer(release));
    }

    /// Offers a release fetched by [`Client::get`] as "latest" only if `name` is already
    /// served as latest (or watched). A plain `get` does not make a name "served": the
    /// pointer holds a lease, so a release got and dropped by code that never serves it
    /// must stay evictable.
    pub(crate) fn offer_if_tracked(&self, name: &ReleaseName, release: &Release) {
        let tracked = {
            let names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
            names.get(name).cloned()
        };
        if let Some(tracked) = tracked {
            Self::switched(name, release, tracked.offer(release));
        }
    }

    fn switched(name: &ReleaseName, release: &Release, switched: bool) {
        if switched {
            tracing::info!(%name, version = %release.version(), "now serving as latest");
        }
    }
}

impl ClientBuilder {
    /// How often the trackers are asked for newer versions of the releases served as latest
    /// (default [`DEFAULT_UPDATE_INTERVAL`](crate::config::DEFAULT_UPDATE_INTERVAL));
    /// [`Duration::ZERO`] turns polling off.
    pub fn update_interval(mut self, interval: Duration) -> Self {
        self.config.update_interval = Some(interval);
        self
    }
}

impl Client {
    /// The release of `name` this client serves as latest: the one it already holds, with
    /// no tracker round trip, or (the first time) the result of [`Client::get`]. From the
    /// first release got on, the name is polled for newer versions every
    /// [`ClientConfig::update_interval`](crate::ClientConfig::update_interval), and the
    /// answer moves to a newer version only once that version is downloaded and verified.
    /// The router's latest routes use this.
    pub async fn latest(&self, name: &str) -> Result<Release, GetError> {
        let name: ReleaseName = name.parse()?;
        if let Some(release) = self.inner.latest.current(&name) {
            return Ok(release);
        }
        // Only a release actually got starts being tracked: names asked for by browsers
        // that do not exist never become polled names.
        let release = self.get(name.as_str()).await?;
        self.inner.latest.offer(&name, &release);
        // The poller may have moved further meanwhile.
        Ok(self.inner.latest.current(&name).unwrap_or(release))
    }

    /// A watch on the release of `name` served as latest: `None` until the first one is
    /// fetched, then each verified newer version as the client switches to it. Watching a
    /// name makes the client poll it (and fetch it at the next poll if nothing was fetched
    /// yet), as [`Client::latest`] does.
    ///
    /// ```no_run
    /// # async fn example(client: swarmcdn_client::Client) -> Result<(), swarmcdn_client::GetError> {
    /// let mut updates = client.watch_latest("share-button")?;
    /// while updates.changed().await.is_ok() {
    ///     if let Some(release) = updates.borrow_and_update().as_ref() {
    ///         println!("now serving share-button {}", release.version());
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn watch_latest(&self, name: &str) -> Result<watch::Receiver<Option<Release>>, GetError> {
        let name: ReleaseName = name.parse()?;
        Ok(self.inner.latest.track(&name).current.subscribe())
    }

    /// The release served as latest for `name` if it is at `version` (no tracker round
    /// trip): the router answers a page pinning the current version from it.
    pub(crate) fn latest_at(&self, name: &str, version: &Version) -> Option<Release> {
        let name: ReleaseName = name.parse().ok()?;
        self.inner
            .latest
            .current(&name)
            .filter(|release| release.version() == version)
    }

    /// One round: asks the trackers about every tracked name and moves the pointers that
    /// have a newer verified release.
    async fn poll_updates(&self) {
        for (name, tracked) in self.inner.latest.snapshot() {
            self.poll_one(&name, &tracked).await;
        }
    }

    async fn poll_one(&self, name: &ReleaseName, tracked: &Arc<Tracked>) {
        let served = tracked.current().map(|r| r.version().clone());
        let Some(offered) = self.newest_offered(name).await else {
            return;
        };
        match decide(served.as_ref(), &offered) {
            Decision::Same => tracing::debug!(%name, %offered, "up to date"),
            Decision::Older => {
                tracing::warn!(%name, %offered, served = ?served, "a tracker offers an older version; keeping the one served");
            }
            Decision::Fetch if tracked.claim(&offered) => {
                tracing::info!(%name, %offered, served = ?served, "fetching a newer version");
                self.spawn_prefetch(name.clone(), offered, Arc::clone(tracked));
            }
            Decision::Fetch => tracing::debug!(%name, %offered, "already being fetched"),
        }
    }

    /// Downloads and verifies `version` in its own task (so one slow release never holds
    /// back the polls of the others), then offers it as latest.
    fn spawn_prefetch(&self, name: ReleaseName, version: Version, tracked: Arc<Tracked>) {
        let client = self.clone();
        let stop = self.inner.shutdown.clone();
        let span = tracing::info_span!("prefetch", %name, %version);
        let task = async move {
            let fetched = tokio::select! {
                () = stop.cancelled() => None,
                fetched = client.fetch(name.clone(), Some(version.clone())) => Some(fetched),
            };
            match fetched {
                Some(Ok(release)) if tracked.offer(&release) => {
                    tracing::info!("switched to the new version");
                }
                // A newer version got there first.
                Some(Ok(_)) => {}
                Some(Err(error)) => {
                    tracing::warn!(%error, "cannot fetch the new version; keeping the one served, will retry");
                }
                None => {}
            }
            tracked.release_claim(&version);
        };
        self.inner.shared.tasks.spawn(task.instrument(span));
    }

    /// The highest version of `name` whose latest manifest, from any tracker, verifies
    /// against a trusted key. Errors are logged and leave the answer to the other trackers.
    async fn newest_offered(&self, name: &ReleaseName) -> Option<Version> {
        let trusted = &self.inner.shared.config.trusted_keys;
        let mut newest: Option<Version> = None;
        for tracker in &self.inner.trackers {
            let url = tracker.base_url();
            let signed = match tracker.manifest(name, None).await {
                Ok(signed) => signed,
                Err(TrackerError::NotFound { .. }) => {
                    tracing::debug!(%url, %name, "the tracker does not know the release");
                    continue;
                }
                Err(error) => {
                    tracing::info!(%url, %name, %error, "update poll failed; will retry");
                    continue;
                }
            };
            match signed.verify(trusted) {
                Ok(manifest) if manifest.name() == name => {
                    let version = manifest.version();
                    if newest.as_ref().is_none_or(|n| version > n) {
                        newest = Some(version.clone());
                    }
                }
                Ok(manifest) => {
                    tracing::warn!(%url, %name, got = %manifest.name(), "a tracker served another release's manifest");
                }
                Err(error) => {
                    tracing::warn!(%url, %name, %error, "a tracker served a manifest that does not verify");
                }
            }
        }
        newest
    }
}

/// Starts the poll task (counted in [`Client::task_count`], ended by shutdown).
pub(super) fn spawn_poller(client: &Client, interval: Duration) {
    let weak: Weak<Inner> = Arc::downgrade(&client.inner);
    let stop = client.inner.shutdown.clone();
    let task = async move {
        let start = tokio::time::Instant::now() + interval;
        let mut ticks = tokio::time::interval_at(start, interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = ticks.tick() => {}
            }
            let Some(inner) = weak.upgrade() else { break };
            let client = Client { inner };
            tokio::select! {
                () = stop.cancelled() => break,
                () = client.poll_updates() => {}
            }
        }
    };
    client
        .inner
        .shared
        .tasks
        .spawn(task.instrument(tracing::info_span!("update_poller", ?interval)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    #[test]
    fn only_a_first_or_strictly_newer_version_is_fetched() {
        assert_eq!(decide(None, &v("0.1.0")), Decision::Fetch);
        assert_eq!(decide(Some(&v("1.2.0")), &v("1.10.0")), Decision::Fetch);
        assert_eq!(decide(Some(&v("1.2.0")), &v("1.2.0")), Decision::Same);
        // A stale tracker answer never rolls a site back.
        assert_eq!(decide(Some(&v("1.10.0")), &v("1.9.9")), Decision::Older);
        assert_eq!(decide(Some(&v("2.0.0")), &v("1.99.99")), Decision::Older);
        // Pre-releases come before their release.
        assert_eq!(decide(Some(&v("1.0.0")), &v("1.0.0-rc.1")), Decision::Older);
    }

    #[test]
    fn one_download_per_version_and_a_newer_one_may_overtake() {
        let tracked = Tracked::new();
        assert!(tracked.claim(&v("1.1.0")));
        assert!(!tracked.claim(&v("1.1.0")), "the same version twice");
        assert!(
            !tracked.claim(&v("1.0.5")),
            "an older one while a newer is under way"
        );
        assert!(tracked.claim(&v("1.2.0")), "a newer one overtakes");
        // The overtaken download ending does not free the newer claim.
        tracked.release_claim(&v("1.1.0"));
        assert!(!tracked.claim(&v("1.2.0")));
        tracked.release_claim(&v("1.2.0"));
        assert!(tracked.claim(&v("1.2.0")), "retried at the next poll");
    }
}
