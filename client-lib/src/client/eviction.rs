//! Making room and letting go: eviction of seeded releases when a budget is full, and
//! [`Client::remove`].
//!
//! The cache decides *which* releases go (least recently used first, never a leased or
//! pinned one: see [`crate::storage::Cache::plan_room`]); the client owns the sessions, so
//! it is the one that stops them (a `stopped` announce, connections closed) and waits for
//! their tasks to let go of the store before the cache deletes anything. A memory-only
//! client has no cache and applies the same rule to its running sessions itself.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use swarmcdn_proto::InfoHash;
use swarmcdn_proto::metainfo::Metainfo;

use super::error::StartError;
use super::{Client, RemoveError, blocking};
use crate::session::SessionHandle;
use crate::storage::{CacheMode, Placement, StorageError, Store, StoreKind};

/// How long removing or evicting a release waits for its session's tasks to let go of it.
const DISCARD_WAIT: Duration = Duration::from_secs(2);

/// How [`Client::remove`] treats the release's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RemoveOptions {
    /// Delete the release's files and stored torrent from the cache folder (default). With
    /// `false` the files stay where they are, untouched, and the cache forgets them (they
    /// no longer count against its budget): for a cache folder that is someone else's
    /// store. Memory content is dropped either way once no handle holds it.
    pub delete_data: bool,
}

impl Default for RemoveOptions {
    fn default() -> Self {
        RemoveOptions { delete_data: true }
    }
}

impl RemoveOptions {
    /// Stops seeding but leaves the files on disk.
    pub fn keep_data() -> Self {
        RemoveOptions { delete_data: false }
    }
}

impl Client {
    /// A store for `metainfo`, evicting releases only sessions hold (least recently used
    /// first, never leased ones) when the budget has no room otherwise.
    pub(super) async fn open_store(
        &self,
        metainfo: &Arc<Metainfo>,
        sessions: &mut HashMap<InfoHash, SessionHandle>,
    ) -> Result<Arc<Store>, StartError> {
        let Some(cache) = &self.inner.cache else {
            return self.open_memory_store(metainfo, sessions).await;
        };
        let open = || {
            let (cache, metainfo) = (Arc::clone(cache), Arc::clone(metainfo));
            blocking(move || cache.open_or_create(&metainfo, Placement::Auto))
        };
        match open().await {
            Err(StorageError::CacheFull { .. }) => {}
            other => return other.map_err(StartError::Storage),
        }
        let victims = {
            let (cache, metainfo) = (Arc::clone(cache), Arc::clone(metainfo));
            blocking(move || cache.plan_room(&metainfo, Placement::Auto))
                .await
                .map_err(StartError::Storage)?
        };
        self.stop_sessions(&victims, sessions, "evicting a seeded release to make room")
            .await;
        // The stopped sessions' tasks let go of their stores shortly after they end.
        let deadline = tokio::time::Instant::now() + DISCARD_WAIT;
        loop {
            match open().await {
                Err(StorageError::CacheFull { .. }) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                other => return other.map_err(StartError::Storage),
            }
        }
    }

    /// A memory store for a client without a cache folder: the memory budget is shared by
    /// the running sessions, and unleased ones are stopped, least recently used first, to
    /// make room.
    async fn open_memory_store(
        &self,
        metainfo: &Arc<Metainfo>,
        sessions: &mut HashMap<InfoHash, SessionHandle>,
    ) -> Result<Arc<Store>, StartError> {
        let size = metainfo.info().total_length();
        let budget = self.inner.shared.config.memory_budget;
        let running: Vec<&SessionHandle> = sessions
            .values()
            .filter(|s| !s.is_finished() && s.store.kind() == StoreKind::Memory)
            .collect();
        let used: u64 = running.iter().map(|s| s.store.size()).sum();
        let mut candidates: Vec<&SessionHandle> = running
            .into_iter()
            .filter(|s| s.store.lease_count() == 0)
            .collect();
        candidates.sort_by_key(|s| s.last_used.load(Ordering::Relaxed));
        let mut victims = Vec::new();
        let mut freed = 0;
        for candidate in candidates {
            if used - freed + size <= budget {
                break;
            }
            victims.push(candidate.info_hash());
            freed += candidate.store.size();
        }
        if size > budget || used - freed + size > budget {
            return Err(StartError::Storage(StorageError::CacheFull {
                needed: size,
                available: budget.saturating_sub(used - freed),
            }));
        }
        self.stop_sessions(&victims, sessions, "evicting a seeded release to make room")
            .await;
        Ok(Arc::new(Store::memory(metainfo)))
    }

    /// Stops the sessions of `victims` (a `stopped` announce, connections closed), forgets
    /// them and waits until their tasks have ended: all at once, so the wait (the caller
    /// holds the session lock) is that of the slowest, at most [`DISCARD_WAIT`].
    async fn stop_sessions(
        &self,
        victims: &[InfoHash],
        sessions: &mut HashMap<InfoHash, SessionHandle>,
        why: &'static str,
    ) {
        let mut ending = Vec::new();
        for info_hash in victims {
            self.inner
                .verified
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|(ih, _)| ih != info_hash);
            let Some(session) = sessions.remove(info_hash) else {
                continue;
            };
            tracing::info!(%info_hash, "{why}");
            session.stop();
            let mut progress = session.progress.clone();
            drop(session);
            let info_hash = *info_hash;
            ending.push(async move {
                // The session task drops its progress sender (and its store) when it ends.
                let ended = async { while progress.changed().await.is_ok() {} };
                if tokio::time::timeout(DISCARD_WAIT, ended).await.is_err() {
                    tracing::warn!(%info_hash, "a stopped session is slow to end");
                }
            });
        }
        futures::future::join_all(ending).await;
    }

    /// Deletes (or, without `delete_data`, forgets) a release whose session is stopped,
    /// waiting up to [`DISCARD_WAIT`] for its tasks to let go of its store.
    async fn drop_data(
        &self,
        info_hash: InfoHash,
        delete_data: bool,
    ) -> Result<bool, StorageError> {
        let Some(cache) = self.inner.cache.clone() else {
            return Ok(false);
        };
        if !delete_data {
            return Ok(cache.forget(&info_hash));
        }
        let deadline = tokio::time::Instant::now() + DISCARD_WAIT;
        loop {
            let cache = Arc::clone(&cache);
            match blocking(move || cache.remove(&info_hash)).await {
                Err(StorageError::InUse(_)) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                other => return other,
            }
        }
    }

    /// Stops seeding the release `info_hash` and drops it: its session is stopped (a
    /// `stopped` announce to its trackers, every connection closed, peers' handshakes for
    /// it refused from then on) and its data removed as `options` says. Returns whether
    /// the client had the release (running, or in the cache).
    ///
    /// A [`CacheMode::SeedOnly`] cache never deletes: the release is only forgotten.
    /// Deleting the files of a disk release that a live [`Release`](super::Release) or [`TorrentHandle`](super::TorrentHandle)
    /// reads from is refused ([`RemoveError::InUse`]) before anything is stopped, also
    /// after an earlier `remove` kept the files (the cache still knows who reads them);
    /// memory content stays readable by such handles until they drop. A later `get` of the
    /// release downloads it again, or shares the store a live handle still reads.
    pub async fn remove(
        &self,
        info_hash: InfoHash,
        options: RemoveOptions,
    ) -> Result<bool, RemoveError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(RemoveError::Shutdown);
        }
        // A seed-only cache deletes nothing, so there is nothing to refuse.
        let delete_data =
            options.delete_data && self.inner.shared.config.cache_mode == CacheMode::ReadWrite;
        // Held until the data is gone, so that no `get` starts the release again meanwhile.
        let mut sessions = self.inner.sessions.lock().await;
        let running = sessions.get(&info_hash).map(|s| Arc::clone(&s.store));
        // A reader may hold the store of a release that no session runs any more (a
        // `remove` that kept the data): the cache still knows it.
        let leased = self.inner.cache.as_ref().and_then(|c| c.leased(&info_hash));
        let read_on_disk = running
            .iter()
            .chain(&leased)
            .any(|s| s.kind() == StoreKind::Disk && s.lease_count() > 0);
        if delete_data && read_on_disk {
            return Err(RemoveError::InUse(info_hash));
        }
        drop(leased);
        let known = running.is_some();
        let memory = running
            .as_ref()
            .is_some_and(|s| s.kind() == StoreKind::Memory);
        drop(running);
        self.stop_sessions(&[info_hash], &mut sessions, "removing a release")
            .await;
        let removed = self
            .drop_data(info_hash, delete_data && !memory)
            .await
            .map_err(|e| match e {
                StorageError::InUse(ih) => RemoveError::InUse(ih),
                other => RemoveError::Storage(Arc::new(other)),
            })?;
        drop(sessions);
        Ok(removed || known)
    }

    /// Stops a release's session and removes it from the cache (a release that failed its
    /// manifest check is not kept). If someone else still holds its store after
    /// [`DISCARD_WAIT`], it stays until evicted (its manifest is not saved, so `get` never
    /// serves it).
    pub(super) async fn discard(&self, session: SessionHandle) {
        let info_hash = session.info_hash();
        drop(session);
        let mut sessions = self.inner.sessions.lock().await;
        self.stop_sessions(&[info_hash], &mut sessions, "dropping a rejected release")
            .await;
        drop(sessions);
        if let Err(error) = self.drop_data(info_hash, true).await {
            tracing::warn!(%error, %info_hash, "cannot remove a rejected release");
        }
    }
}
