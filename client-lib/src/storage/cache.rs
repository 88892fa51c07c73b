//! The cache: which releases a site keeps, where, and which go when space runs out.
//!
//! The cache owns one folder and two budgets. Releases up to
//! [`CacheConfig::memory_threshold`] go to memory (they are fetched quickly again after a
//! restart and served most often), larger ones to disk, unless the caller chooses
//! ([`Placement`]). Next to each disk release the cache keeps its torrent,
//! `<infohash>.torrent`, so that after a restart the release can be verified and seeded again
//! without asking the tracker ([`Cache::restore`]).
//!
//! # Eviction policy
//!
//! - Each budget (disk, memory) is checked before a release is added to it. A release larger
//!   than the whole budget is refused ([`StorageError::TooLarge`]).
//! - To make room, releases of that kind are evicted least recently used first. "Used"
//!   means handed out by [`Cache::open_or_create`] or [`Cache::get`], or marked with
//!   [`Cache::touch`] (the router calls it when it serves a release). Releases found on
//!   disk at start-up and not opened since count as the least recently used of all.
//! - The cache itself never deletes a release while it is **in use** (someone holds the
//!   `Arc<Store>` it handed out: a session downloading or seeding it, a response being
//!   read) or **pinned** ([`Cache::pin`]: e.g. the current version of a widget). Partial
//!   releases no one holds (abandoned downloads) are evictable like complete ones.
//! - Seeding alone does not keep a release: a session that holds a store no reader has
//!   **leased** ([`Store::lease`]) can be stopped to make room. [`Cache::plan_room`] names
//!   the releases whose holders must let go (least recently used first, skipping leased and
//!   pinned ones) for a new release to fit; the client stops their sessions, and the
//!   retried [`Cache::open_or_create`] evicts them. A release a reader holds a lease on is
//!   never evicted, so a handle's data stays readable for as long as it lives.
//! - If in-use and pinned releases leave no room, adding fails with
//!   [`StorageError::CacheFull`]; a release placed automatically falls back from memory to
//!   disk first.
//! - A release forgotten ([`Cache::forget`]) while someone holds its store is outside every
//!   budget and never evicted, yet its files are not deleted under the holder either:
//!   [`Cache::remove`] refuses while the store lives, and opening the release again adopts
//!   that same store rather than a second one on the same folder.
//! - Eviction deletes a disk release's folder and stored torrent. A complete folder is
//!   first renamed to `.partial`, so a crash half-way through never leaves a folder that
//!   looks complete.
//!
//! # Seed-only caches
//!
//! A cache folder may be someone else's store (the seeder's, which publishes into it and
//! reports damage with its own `verify`). [`CacheMode::SeedOnly`] makes the cache a reader
//! of it: a release is opened only from its complete folder, verified without changing a
//! byte or a name on disk, and refused if damaged ([`StorageError::Damaged`], naming the
//! bad pieces) or absent ([`StorageError::NotInStore`]). Nothing is ever created, renamed,
//! resized or deleted: no downloads, no eviction (budgets are not enforced), and
//! [`Cache::remove`] only forgets.
//!
//! Every method may block (disk I/O, and [`Cache::open_or_create`] verifies a release found
//! on disk); call them from `spawn_blocking` or at start-up. The cache's own lock is held
//! only for bookkeeping, never across I/O, so [`Cache::get`] stays fast while a release is
//! being verified.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use swarmcdn_proto::InfoHash;
use swarmcdn_proto::metainfo::Metainfo;

use super::disk::{self, PARTIAL_SUFFIX};
use super::{StorageError, Store, StoreKind, lock};

/// Default [`CacheConfig::disk_budget`]: 1 GiB.
pub const DEFAULT_DISK_BUDGET: u64 = 1024 * 1024 * 1024;
/// Default [`CacheConfig::memory_budget`]: 64 MiB.
pub const DEFAULT_MEMORY_BUDGET: u64 = 64 * 1024 * 1024;
/// Default [`CacheConfig::memory_threshold`]: 8 MiB.
pub const DEFAULT_MEMORY_THRESHOLD: u64 = 8 * 1024 * 1024;

/// The suffix of a stored torrent next to its release.
const TORRENT_SUFFIX: &str = ".torrent";
/// The suffix of a torrent being written (renamed into place when done).
const TEMP_SUFFIX: &str = ".tmp";

/// Whose the cache folder is: see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// The cache's own folder: releases are downloaded into it, damaged ones repaired,
    /// evicted ones deleted.
    #[default]
    ReadWrite,
    /// Someone else's store: complete, intact releases are served and seeded from it, and
    /// nothing in it is ever changed.
    SeedOnly,
}

/// How the cache is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// The cache folder. Created if missing; the cache owns everything in it that is named
    /// after an info-hash.
    pub dir: PathBuf,
    /// The most bytes of release content kept on disk (partial releases count at full
    /// size, as their files are created at full length).
    pub disk_budget: u64,
    /// The most bytes of release content kept in memory.
    pub memory_budget: u64,
    /// Releases up to this size go to memory when placed automatically.
    pub memory_threshold: u64,
    /// Whose the folder is ([`CacheMode::ReadWrite`] by default).
    pub mode: CacheMode,
}

impl CacheConfig {
    /// The defaults ([`DEFAULT_DISK_BUDGET`], [`DEFAULT_MEMORY_BUDGET`],
    /// [`DEFAULT_MEMORY_THRESHOLD`]) for the folder `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        CacheConfig {
            dir: dir.into(),
            disk_budget: DEFAULT_DISK_BUDGET,
            memory_budget: DEFAULT_MEMORY_BUDGET,
            memory_threshold: DEFAULT_MEMORY_THRESHOLD,
            mode: CacheMode::ReadWrite,
        }
    }
}

/// Where [`Cache::open_or_create`] puts a new release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Placement {
    /// Memory up to [`CacheConfig::memory_threshold`] (and if the memory budget has room),
    /// disk otherwise.
    #[default]
    Auto,
    /// Memory.
    Memory,
    /// Disk.
    Disk,
}

/// A release found in the cache folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedRelease {
    /// Its info-hash.
    pub info_hash: InfoHash,
    /// Whether its folder is the complete one (`<infohash>/`) rather than `.partial`.
    /// (Complete means complete when written; [`Store::open_existing`] checks it again.)
    pub complete: bool,
    /// Whether its torrent is stored next to it ([`Cache::load_metainfo`]).
    pub has_metainfo: bool,
}

/// How much of each budget is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheUsage {
    /// Bytes of release content on disk, counting releases found at start-up.
    pub disk: u64,
    /// Bytes of release content in memory.
    pub memory: u64,
    /// The number of releases known.
    pub releases: usize,
}

/// One release the cache knows.
#[derive(Debug)]
struct Entry {
    /// The open store; `None` for a release found on disk and not opened yet.
    store: Option<Arc<Store>>,
    kind: StoreKind,
    /// Bytes counted against the budget of `kind`.
    size: u64,
    /// The logical time of the last use (0: found on disk, never used).
    last_used: u64,
    pinned: bool,
}

impl Entry {
    /// Whether someone other than the cache holds the store.
    fn in_use(&self) -> bool {
        self.store
            .as_ref()
            .is_some_and(|s| Arc::strong_count(s) > 1)
    }

    /// Whether a reader holds a [`StoreLease`](super::StoreLease) on the store.
    fn leased(&self) -> bool {
        self.store.as_ref().is_some_and(|s| s.lease_count() > 0)
    }

    /// Whether the cache may delete it now.
    fn evictable(&self) -> bool {
        !self.pinned && !self.in_use()
    }

    /// Whether it may go once its holders (a seeding session) let go of it.
    fn reclaimable(&self) -> bool {
        !self.pinned && !self.leased()
    }
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<InfoHash, Entry>,
    /// Forgotten releases ([`Cache::forget`]) whose store someone still held then: outside
    /// every budget and never evicted, but [`Cache::remove`] refuses to delete their files
    /// while the store lives, and [`Cache::open_or_create`] hands the same store out again
    /// rather than opening a second one on the same folder.
    foreign: HashMap<InfoHash, Weak<Store>>,
    /// A logical clock for least-recently-used order (deterministic, unlike wall time).
    clock: u64,
}

impl State {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn used(&self, kind: StoreKind, except: Option<&InfoHash>) -> u64 {
        self.entries
            .iter()
            .filter(|(ih, e)| e.kind == kind && Some(*ih) != except)
            .map(|(_, e)| e.size)
            .sum()
    }
}

/// The release cache; see the module docs.
#[derive(Debug)]
pub struct Cache {
    config: CacheConfig,
    state: Mutex<State>,
    /// Serialises opening, creating and removing releases, so no release is opened twice.
    /// Held across I/O; [`Cache::state`] never is.
    opening: Mutex<()>,
}

impl Cache {
    /// Opens (creating if needed) the cache folder and registers the releases in it, with
    /// their size on disk, as least recently used. Nothing is verified or opened yet:
    /// [`Cache::restore`] or [`Cache::open_or_create`] do that. Blocking.
    pub fn open(config: CacheConfig) -> Result<Cache, StorageError> {
        fs::create_dir_all(&config.dir).map_err(|e| StorageError::io(&config.dir, e))?;
        let cache = Cache {
            config,
            state: Mutex::new(State::default()),
            opening: Mutex::new(()),
        };
        if !cache.seed_only() {
            cache.remove_temporary_files()?;
        }
        let found = cache.scan()?;
        let mut entries = HashMap::new();
        for release in found {
            let mut size = 0;
            for dir in cache.release_dirs(&release.info_hash) {
                size += dir_size(&dir)?;
            }
            entries.insert(
                release.info_hash,
                Entry {
                    store: None,
                    kind: StoreKind::Disk,
                    size,
                    last_used: 0,
                    pinned: false,
                },
            );
        }
        lock(&cache.state).entries = entries;
        Ok(cache)
    }

    /// The configuration in force.
    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    fn seed_only(&self) -> bool {
        self.config.mode == CacheMode::SeedOnly
    }

    /// Removes torrents left half-written by a crash.
    fn remove_temporary_files(&self) -> Result<(), StorageError> {
        let dir = &self.config.dir;
        for entry in fs::read_dir(dir).map_err(|e| StorageError::io(dir, e))? {
            let entry = entry.map_err(|e| StorageError::io(dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(TEMP_SUFFIX) && parse_hex(name.split('.').next()).is_some() {
                disk::remove_if_present(&entry.path())?;
            }
        }
        Ok(())
    }

    /// Lists the releases in the cache folder, sorted by info-hash: complete and partial
    /// folders, and stored torrents whose folder is gone. Blocking.
    pub fn scan(&self) -> Result<Vec<CachedRelease>, StorageError> {
        let dir = &self.config.dir;
        let mut found: BTreeMap<InfoHash, CachedRelease> = BTreeMap::new();
        let listing = fs::read_dir(dir).map_err(|e| StorageError::io(dir, e))?;
        for entry in listing {
            let entry = entry.map_err(|e| StorageError::io(dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let (stem, suffix) = match name.find('.') {
                Some(dot) => name.split_at(dot),
                None => (name, ""),
            };
            let Some(info_hash) = parse_hex(Some(stem)) else {
                continue;
            };
            let is_dir = entry
                .file_type()
                .map_err(|e| StorageError::io(entry.path(), e))?
                .is_dir();
            let release = found.entry(info_hash).or_insert(CachedRelease {
                info_hash,
                complete: false,
                has_metainfo: false,
            });
            match suffix {
                "" if is_dir => release.complete = true,
                PARTIAL_SUFFIX if is_dir => {}
                TORRENT_SUFFIX if !is_dir => release.has_metainfo = true,
                _ => {}
            }
        }
        Ok(found.into_values().collect())
    }

    /// The open store of a release, marking it used. `None` if the release is not open
    /// (found on disk but not opened yet counts as not open).
    pub fn get(&self, info_hash: &InfoHash) -> Option<Arc<Store>> {
        let mut state = lock(&self.state);
        let now = state.tick();
        let entry = state.entries.get_mut(info_hash)?;
        let store = entry.store.clone()?;
        entry.last_used = now;
        Some(store)
    }

    /// Marks a release used (for the eviction order). Returns whether the cache knows it.
    pub fn touch(&self, info_hash: &InfoHash) -> bool {
        let mut state = lock(&self.state);
        let now = state.tick();
        state
            .entries
            .get_mut(info_hash)
            .map(|e| e.last_used = now)
            .is_some()
    }

    /// Keeps a release from being evicted until [`Cache::unpin`]. Returns whether the cache
    /// knows it.
    pub fn pin(&self, info_hash: &InfoHash) -> bool {
        self.set_pinned(info_hash, true)
    }

    /// Lets a pinned release be evicted again. Returns whether the cache knows it.
    pub fn unpin(&self, info_hash: &InfoHash) -> bool {
        self.set_pinned(info_hash, false)
    }

    fn set_pinned(&self, info_hash: &InfoHash, pinned: bool) -> bool {
        lock(&self.state)
            .entries
            .get_mut(info_hash)
            .map(|e| e.pinned = pinned)
            .is_some()
    }

    /// How much of each budget is taken.
    pub fn usage(&self) -> CacheUsage {
        let state = lock(&self.state);
        CacheUsage {
            disk: state.used(StoreKind::Disk, None),
            memory: state.used(StoreKind::Memory, None),
            releases: state.entries.len(),
        }
    }

    /// The store for a release, marking it used: the open one if there is one; else what is
    /// on disk for it, verified ([`Store::open_existing`]); else a new, empty store placed
    /// as `placement` says, after evicting releases to make room (see the module docs).
    /// A release found on disk is opened there whatever `placement` says. A new disk
    /// release gets its torrent stored next to it. Blocking (verification reads the whole
    /// release).
    pub fn open_or_create(
        &self,
        metainfo: &Metainfo,
        placement: Placement,
    ) -> Result<Arc<Store>, StorageError> {
        let info_hash = metainfo.info_hash();
        let _opening = lock(&self.opening);
        if let Some(store) = self.get(&info_hash) {
            return Ok(store);
        }
        let size = metainfo.info().total_length();
        let foreign = lock(&self.state)
            .foreign
            .get(&info_hash)
            .and_then(Weak::upgrade);
        if let Some(store) = foreign {
            // Forgotten but still held: the same store again (a second one on the same
            // folder could be evicted, deleting what the holder reads), counted again.
            let kind = store.kind();
            if !self.seed_only() {
                self.make_room(kind, size, &info_hash)?;
            }
            lock(&self.state).foreign.remove(&info_hash);
            self.register(info_hash, &store, kind, size);
            return Ok(store);
        }
        if self.seed_only() {
            let store = Arc::new(Store::open_seed_only(&self.config.dir, metainfo)?);
            self.register(info_hash, &store, StoreKind::Disk, size);
            return Ok(store);
        }
        let kinds = self.kinds(&info_hash, size, placement);
        let kind = match self.make_room(kinds[0], size, &info_hash) {
            Ok(()) => kinds[0],
            Err(_) if kinds.len() > 1 => {
                self.make_room(kinds[1], size, &info_hash)?;
                kinds[1]
            }
            Err(e) => return Err(e),
        };
        let store = match kind {
            StoreKind::Memory => Store::memory(metainfo),
            StoreKind::Disk => {
                let store = Store::disk(&self.config.dir, metainfo)?;
                self.save_metainfo(metainfo)?;
                store
            }
        };
        let store = Arc::new(store);
        self.register(info_hash, &store, kind, size);
        Ok(store)
    }

    /// Records an opened release as just used.
    fn register(&self, info_hash: InfoHash, store: &Arc<Store>, kind: StoreKind, size: u64) {
        let mut state = lock(&self.state);
        let now = state.tick();
        let pinned = state.entries.get(&info_hash).is_some_and(|e| e.pinned);
        state.entries.insert(
            info_hash,
            Entry {
                store: Some(Arc::clone(store)),
                kind,
                size,
                last_used: now,
                pinned,
            },
        );
    }

    /// Where a new release of `size` bytes may go, in order of preference.
    fn kinds(&self, info_hash: &InfoHash, size: u64, placement: Placement) -> Vec<StoreKind> {
        let on_disk = lock(&self.state).entries.contains_key(info_hash);
        let memory_fits = size <= self.config.memory_threshold && size <= self.config.memory_budget;
        match placement {
            // Something is on disk already: resume it rather than download again.
            _ if on_disk => vec![StoreKind::Disk],
            Placement::Disk => vec![StoreKind::Disk],
            Placement::Memory => vec![StoreKind::Memory],
            Placement::Auto if memory_fits => vec![StoreKind::Memory, StoreKind::Disk],
            Placement::Auto => vec![StoreKind::Disk],
        }
    }

    /// The releases whose holders must let go of them (stop seeding) for
    /// [`Cache::open_or_create`] of `metainfo` to find room, least recently used first:
    /// empty if there is room already (or the release is open). Leased and pinned releases
    /// are never named; if even every other release would not make room, this fails as
    /// `open_or_create` would ([`StorageError::CacheFull`], [`StorageError::TooLarge`]).
    pub fn plan_room(
        &self,
        metainfo: &Metainfo,
        placement: Placement,
    ) -> Result<Vec<InfoHash>, StorageError> {
        let info_hash = metainfo.info_hash();
        let size = metainfo.info().total_length();
        if lock(&self.state)
            .entries
            .get(&info_hash)
            .is_some_and(|e| e.store.is_some())
        {
            return Ok(Vec::new());
        }
        let kinds = self.kinds(&info_hash, size, placement);
        let mut error = None;
        // Room without stopping anything, in any allowed place, comes first.
        for reclaim in [false, true] {
            for &kind in &kinds {
                match self.victims_for(kind, size, &info_hash, reclaim) {
                    Ok(victims) => {
                        let state = lock(&self.state);
                        return Ok(victims
                            .into_iter()
                            .filter(|v| state.entries.get(v).is_some_and(Entry::in_use))
                            .collect());
                    }
                    Err(e) => error = Some(e),
                }
            }
        }
        Err(error.unwrap_or(StorageError::CacheFull {
            needed: size,
            available: 0,
        }))
    }

    /// The releases of `kind` that must go for `needed` more bytes to fit (evictable ones
    /// only, or with `reclaim` also those only a session holds), or why they cannot.
    fn victims_for(
        &self,
        kind: StoreKind,
        needed: u64,
        adding: &InfoHash,
        reclaim: bool,
    ) -> Result<Vec<InfoHash>, StorageError> {
        let budget = self.budget(kind);
        if needed > budget {
            return Err(StorageError::TooLarge {
                size: needed,
                limit: budget,
            });
        }
        let state = lock(&self.state);
        let used = state.used(kind, Some(adding));
        let allowed = budget - needed;
        let filter = if reclaim {
            Entry::reclaimable
        } else {
            Entry::evictable
        };
        let (victims, freeable) = choose_victims(&state, kind, used, allowed, Some(adding), filter);
        if used.saturating_sub(freeable) > allowed {
            return Err(StorageError::CacheFull {
                needed,
                available: budget.saturating_sub(used) + freeable,
            });
        }
        Ok(victims)
    }

    /// Opens every release in the cache folder whose torrent is stored next to it,
    /// verifying each (the start-up path: afterwards the site seeds what it has without
    /// asking the tracker). Releases without a usable torrent, or that fail to open (logged),
    /// stay registered, least recently used, until evicted or removed. Only listing the
    /// cache folder can fail the whole call. Blocking, and it reads every release.
    pub fn restore(&self) -> Result<Vec<Arc<Store>>, StorageError> {
        let mut stores = Vec::new();
        for release in self.scan()? {
            if self.seed_only() && !release.complete {
                continue;
            }
            let metainfo = match self.load_metainfo(&release.info_hash) {
                Ok(Some(metainfo)) => metainfo,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(info_hash = %release.info_hash, error = %e, "cannot restore cached release");
                    continue;
                }
            };
            match self.open_or_create(&metainfo, Placement::Disk) {
                Ok(store) => stores.push(store),
                Err(StorageError::Damaged { bad_pieces, .. }) => {
                    tracing::warn!(
                        info_hash = %release.info_hash,
                        ?bad_pieces,
                        "damaged release in a seed-only cache: not seeded, its files left untouched"
                    );
                }
                // One unreadable or oversized release must not keep the others from
                // being seeded; it stays registered until evicted or removed.
                Err(e) => {
                    tracing::warn!(info_hash = %release.info_hash, error = %e, "cannot restore cached release");
                }
            }
        }
        Ok(stores)
    }

    /// The torrent stored next to a disk release, checked against its info-hash; `None` if
    /// there is none.
    pub fn load_metainfo(&self, info_hash: &InfoHash) -> Result<Option<Metainfo>, StorageError> {
        let path = self.torrent_path(info_hash);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io(&path, e)),
        };
        let metainfo = Metainfo::from_bytes(&bytes).map_err(|e| StorageError::Corrupt {
            path: path.clone(),
            detail: format!("stored torrent does not parse: {e}"),
        })?;
        if metainfo.info_hash() != *info_hash {
            return Err(StorageError::Corrupt {
                path,
                detail: format!("stored torrent has info-hash {}", metainfo.info_hash()),
            });
        }
        Ok(Some(metainfo))
    }

    /// Removes a release: forgets it and deletes its files and stored torrent. Fails with
    /// [`StorageError::InUse`] while someone holds its store (pinning does not protect from
    /// an explicit removal). Returns whether there was anything to remove. Blocking.
    ///
    /// A seed-only cache deletes nothing: it only forgets the release.
    pub fn remove(&self, info_hash: &InfoHash) -> Result<bool, StorageError> {
        if self.seed_only() {
            return Ok(self.forget(info_hash));
        }
        let _opening = lock(&self.opening);
        let known = {
            let mut state = lock(&self.state);
            let foreign_held = state
                .foreign
                .get(info_hash)
                .is_some_and(|s| s.strong_count() > 0);
            if foreign_held || state.entries.get(info_hash).is_some_and(Entry::in_use) {
                return Err(StorageError::InUse(*info_hash));
            }
            state.foreign.remove(info_hash);
            state.entries.remove(info_hash).is_some()
        };
        let on_disk = self.delete_files(info_hash)?;
        Ok(known || on_disk)
    }

    /// Forgets a release without touching its files: it no longer counts against a budget
    /// and is never evicted (deleted) by this cache. For a folder that belongs to someone
    /// else once it is no longer seeded. Returns whether the cache knew it.
    ///
    /// A store someone still holds stays known as *foreign* for as long as it lives: it
    /// counts against no budget and is never evicted, but [`Cache::remove`] refuses to
    /// delete its files ([`StorageError::InUse`]) and [`Cache::open_or_create`] adopts it
    /// again instead of opening the same folder twice.
    pub fn forget(&self, info_hash: &InfoHash) -> bool {
        let _opening = lock(&self.opening);
        let mut state = lock(&self.state);
        state.foreign.retain(|_, store| store.strong_count() > 0);
        let Some(entry) = state.entries.remove(info_hash) else {
            return false;
        };
        if let Some(store) = entry.store.filter(|s| Arc::strong_count(s) > 1) {
            state.foreign.insert(*info_hash, Arc::downgrade(&store));
        }
        true
    }

    /// The store of a release if a reader holds a lease on it, whether the cache counts it
    /// or only knows it as forgotten but still held ([`Cache::forget`]).
    pub fn leased(&self, info_hash: &InfoHash) -> Option<Arc<Store>> {
        let state = lock(&self.state);
        let counted = state.entries.get(info_hash).and_then(|e| e.store.clone());
        let store = counted.or_else(|| state.foreign.get(info_hash).and_then(Weak::upgrade))?;
        (store.lease_count() > 0).then_some(store)
    }

    /// Evicts releases, least recently used first, until each budget is kept (releases in
    /// use or pinned stay even if that is not enough). Returns the evicted releases.
    /// Blocking.
    pub fn evict_to_budget(&self) -> Result<Vec<InfoHash>, StorageError> {
        if self.seed_only() {
            return Ok(Vec::new());
        }
        let _opening = lock(&self.opening);
        let mut evicted = Vec::new();
        for kind in [StoreKind::Disk, StoreKind::Memory] {
            let victims = {
                let mut state = lock(&self.state);
                let budget = self.budget(kind);
                let used = state.used(kind, None);
                let (victims, _) =
                    choose_victims(&state, kind, used, budget, None, Entry::evictable);
                forget(&mut state, &victims);
                victims
            };
            for victim in &victims {
                self.delete_evicted(kind, victim)?;
            }
            evicted.extend(victims);
        }
        Ok(evicted)
    }

    fn budget(&self, kind: StoreKind) -> u64 {
        match kind {
            StoreKind::Disk => self.config.disk_budget,
            StoreKind::Memory => self.config.memory_budget,
        }
    }

    /// Evicts what must go for `needed` more bytes of `kind` to fit (not counting the
    /// release `adding`, which is being replaced); fails without evicting if they cannot.
    fn make_room(
        &self,
        kind: StoreKind,
        needed: u64,
        adding: &InfoHash,
    ) -> Result<(), StorageError> {
        let victims = self.victims_for(kind, needed, adding, false)?;
        forget(&mut lock(&self.state), &victims);
        for victim in &victims {
            self.delete_evicted(kind, victim)?;
        }
        Ok(())
    }

    fn delete_evicted(&self, kind: StoreKind, info_hash: &InfoHash) -> Result<(), StorageError> {
        tracing::info!(%info_hash, ?kind, "evicting cached release");
        if kind == StoreKind::Disk {
            self.delete_files(info_hash)?;
        }
        Ok(())
    }

    /// Deletes a release's folders and stored torrent; returns whether there were any.
    fn delete_files(&self, info_hash: &InfoHash) -> Result<bool, StorageError> {
        let dir = &self.config.dir;
        let complete = disk::complete_dir(dir, info_hash);
        let partial = disk::partial_dir(dir, info_hash);
        let torrent = self.torrent_path(info_hash);
        let existed = [&complete, &partial, &torrent]
            .iter()
            .any(|p| fs::symlink_metadata(p).is_ok());
        if fs::symlink_metadata(&complete).is_ok_and(|m| m.is_dir()) {
            // Never leave a half-deleted folder that looks complete.
            disk::remove_if_present(&partial)?;
            disk::rename_durably(&complete, &partial, dir)?;
        }
        disk::remove_if_present(&partial)?;
        disk::remove_if_present(&complete)?;
        disk::remove_if_present(&torrent)?;
        Ok(existed)
    }

    /// The folders a release may have on disk.
    fn release_dirs(&self, info_hash: &InfoHash) -> [PathBuf; 2] {
        [
            disk::complete_dir(&self.config.dir, info_hash),
            disk::partial_dir(&self.config.dir, info_hash),
        ]
    }

    fn torrent_path(&self, info_hash: &InfoHash) -> PathBuf {
        self.config
            .dir
            .join(format!("{}{TORRENT_SUFFIX}", info_hash.to_hex()))
    }

    /// Stores the torrent next to its release: written to a temporary file, synced, renamed.
    fn save_metainfo(&self, metainfo: &Metainfo) -> Result<(), StorageError> {
        let path = self.torrent_path(&metainfo.info_hash());
        if path.is_file() {
            return Ok(());
        }
        let temp = path.with_extension(format!("torrent{TEMP_SUFFIX}"));
        let write = || -> io::Result<()> {
            let mut file = fs::File::create(&temp)?;
            file.write_all(&metainfo.to_bytes())?;
            file.sync_all()
        };
        write().map_err(|e| StorageError::io(&temp, e))?;
        disk::rename_durably(&temp, &path, &self.config.dir)
    }
}

/// The releases of `kind` that `eligible` accepts, least recently used first, that must go
/// for `used` bytes to fall to `allowed`, and how much they free. If that is not enough,
/// every eligible release is listed.
fn choose_victims(
    state: &State,
    kind: StoreKind,
    used: u64,
    allowed: u64,
    except: Option<&InfoHash>,
    eligible: fn(&Entry) -> bool,
) -> (Vec<InfoHash>, u64) {
    let mut candidates: Vec<(&InfoHash, &Entry)> = state
        .entries
        .iter()
        .filter(|(ih, e)| e.kind == kind && Some(*ih) != except && eligible(e))
        .collect();
    candidates.sort_by_key(|(ih, e)| (e.last_used, **ih));
    let mut victims = Vec::new();
    let mut freed = 0;
    for (ih, entry) in candidates {
        if used.saturating_sub(freed) <= allowed {
            break;
        }
        victims.push(*ih);
        freed += entry.size;
    }
    (victims, freed)
}

fn forget(state: &mut State, victims: &[InfoHash]) {
    for victim in victims {
        state.entries.remove(victim);
    }
}

/// An info-hash written as 40 lowercase hex digits (the way the cache names things).
fn parse_hex(text: Option<&str>) -> Option<InfoHash> {
    let text = text?;
    if text.len() != 40 {
        return None;
    }
    let info_hash = InfoHash::from_text(text).ok()?;
    (info_hash.to_hex() == text).then_some(info_hash)
}

/// The bytes of the files below `path` (their lengths; sparse files count in full).
fn dir_size(path: &Path) -> Result<u64, StorageError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(StorageError::io(path, e)),
    };
    if !meta.is_dir() {
        return Ok(meta.len());
    }
    let mut total = 0;
    for entry in fs::read_dir(path).map_err(|e| StorageError::io(path, e))? {
        let entry = entry.map_err(|e| StorageError::io(path, e))?;
        total += dir_size(&entry.path())?;
    }
    Ok(total)
}
