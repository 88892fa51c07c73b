//! The registry: publishers, their releases, and each release's torrent, in SQLite.
//!
//! The tracker tracks only what publishers registered, and clients fetch a release's signed
//! manifest and metainfo from here before they join its swarm, so a restart must lose no
//! registration. SQLite, embedded, gives that with no server to run: every change is one
//! transaction, written with `synchronous = FULL` (publishing is rare, so paying for a full
//! sync per commit costs nothing that matters) in write-ahead-log mode for files, so readers
//! do not block the writer.
//!
//! **Why one connection behind a mutex is enough.** The announce hot path never touches
//! SQLite: the service loads [`Registry::registered_info_hashes`] into memory at start,
//! updates that set when it registers or removes a release, and re-reads it every
//! `registry_refresh_secs` to pick up other processes' changes. What reaches the registry is
//! publishing (a few requests a day), token checks on the publish API, and release and
//! metainfo fetches by clients joining a swarm, which are indexed point lookups well under a
//! millisecond and cacheable by the HTTP layer (a release is immutable). One connection
//! serialises them, which also makes the check-then-insert steps below race-free within the
//! process; `BEGIN IMMEDIATE` covers a second process on the same file.
//!
//! **What it does not do.** It does not parse manifests or torrents: the service verifies those
//! (signature, info-hash) and hands over the bytes plus the fields it extracted. Bearer tokens
//! are never stored: only their SHA-256, so a copy of the database does not let anyone publish.
//!
//! **Which release is "latest".** Versions are semantic versions, ordered by semver precedence
//! (`1.10.0` after `1.9.0`; numeric pre-release parts compare as numbers). [`latest_release`]
//! prefers the highest *stable* release, and falls back to the highest pre-release only for a
//! name that has no stable release yet: sites that follow "latest" run the code in their
//! visitors' browsers, and a publisher's `2.0.0-rc.1` should not reach them unasked.
//!
//! [`latest_release`]: Registry::latest_release

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use rand::Rng;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use sha2::{Digest, Sha256};
use swarmcdn_proto::InfoHash;
use swarmcdn_proto::manifest::{NameError, ReleaseName};

/// Longest publisher or release name accepted (that of [`ReleaseName`]); versions are held to
/// the same length.
pub const MAX_NAME_LEN: usize = ReleaseName::MAX_LEN;

/// Random bytes in a publisher token (shown to the publisher as twice as many hex digits).
pub const TOKEN_BYTES: usize = 32;

/// Length of a publisher public key (Ed25519).
pub const PUBLIC_KEY_LEN: usize = 32;

/// How long a statement waits for another process's lock on the database file.
const BUSY_TIMEOUT_MS: u32 = 5_000;

/// Schema migrations, in order: applying `MIGRATIONS[n]` takes the database's
/// `PRAGMA user_version` from `n` to `n + 1`. Append, never edit.
const MIGRATIONS: &[&str] = &[
    // 1: publishers, torrents, releases.
    "CREATE TABLE publishers (
        id          INTEGER PRIMARY KEY,
        name        TEXT    NOT NULL UNIQUE,
        token_hash  TEXT    NOT NULL UNIQUE,
        public_key  BLOB    NOT NULL CHECK (length(public_key) = 32),
        created     INTEGER NOT NULL DEFAULT (unixepoch())
    );
    CREATE TABLE torrents (
        info_hash   BLOB    PRIMARY KEY CHECK (length(info_hash) = 20),
        metainfo    BLOB    NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE releases (
        id           INTEGER PRIMARY KEY,
        publisher_id INTEGER NOT NULL REFERENCES publishers (id),
        name         TEXT    NOT NULL,
        version      TEXT    NOT NULL,
        major        INTEGER NOT NULL,
        minor        INTEGER NOT NULL,
        patch        INTEGER NOT NULL,
        pre          TEXT    NOT NULL,
        info_hash    BLOB    NOT NULL UNIQUE REFERENCES torrents (info_hash),
        manifest     BLOB    NOT NULL,
        created      INTEGER NOT NULL DEFAULT (unixepoch()),
        UNIQUE (name, version)
    );
    CREATE INDEX releases_by_precedence ON releases (name, major, minor, patch);",
];

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// A publisher with this name exists already.
    #[error("publisher {0:?} already exists")]
    DuplicatePublisher(String),
    /// This name and version were published already; versions are immutable.
    #[error("release {name} {version} already exists")]
    DuplicateRelease {
        /// Release name.
        name: String,
        /// Version text.
        version: String,
    },
    /// The torrent is already registered (by another release).
    #[error("torrent {0} is already registered")]
    DuplicateInfoHash(InfoHash),
    /// The release name belongs to a different publisher.
    #[error("release name {0:?} belongs to another publisher")]
    NameTaken(String),
    /// No publisher with this name (or it was removed meanwhile).
    #[error("no publisher {0:?}")]
    PublisherNotFound(String),
    /// No release with this name and version.
    #[error("no release {name} {version}")]
    ReleaseNotFound {
        /// Release name.
        name: String,
        /// Version text.
        version: String,
    },
    /// A publisher name outside the allowed form (that of a [`ReleaseName`]).
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The name given (cut after [`MAX_NAME_LEN`] + 1 characters).
        name: String,
        /// What is wrong with it.
        reason: NameError,
    },
    /// A version that is not a semantic version we accept.
    #[error("invalid version {version:?}: {reason}")]
    InvalidVersion {
        /// The version text given.
        version: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The database was written by a newer build with a schema this one does not know.
    #[error("registry schema version {found} is newer than this build supports ({supported})")]
    SchemaTooNew {
        /// `user_version` found in the database.
        found: i64,
        /// The newest schema this build knows.
        supported: i64,
    },
    /// A stored row does not hold what the schema promises (the file was edited by hand?).
    #[error("registry data is corrupt: {0}")]
    Corrupt(String),
    /// SQLite failed (disk full, file unreadable, locked past the busy timeout, ...).
    #[error("registry storage failed")]
    Storage(#[from] rusqlite::Error),
}

/// A registered publisher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publisher {
    /// Row id; stable for the publisher's lifetime.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Ed25519 public key that must have signed the publisher's manifests.
    pub public_key: [u8; PUBLIC_KEY_LEN],
    /// When the publisher was added, in Unix seconds.
    pub created: i64,
}

/// A publisher's bearer token, as returned once by [`Registry::add_publisher`] and
/// [`Registry::rotate_token`]. Its `Debug` form hides the secret so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq)]
pub struct PublisherToken(String);

impl PublisherToken {
    /// The token text (64 lowercase hex digits) to hand to the publisher.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The token text, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl std::fmt::Debug for PublisherToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PublisherToken(<redacted>)")
    }
}

/// A published release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// Name of the publisher that owns the release name.
    pub publisher: String,
    /// Release name (the widget's name).
    pub name: String,
    /// Version.
    pub version: semver::Version,
    /// The release bundle's torrent.
    pub info_hash: InfoHash,
    /// The signed manifest, exactly as the publisher sent it.
    pub manifest: Vec<u8>,
    /// When it was published, in Unix seconds.
    pub created: i64,
}

/// The publishers, releases and torrents the tracker knows. See the module docs.
#[derive(Debug)]
pub struct Registry {
    connection: Mutex<Connection>,
}

impl Registry {
    /// Opens (creating if needed) the registry at `path`, or an in-memory one for `:memory:`,
    /// and brings its schema up to date.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, RegistryError> {
        let connection = Connection::open(path)?;
        Self::with_connection(connection)
    }

    /// An empty registry that lives and dies with this value (for tests and trials).
    pub fn open_in_memory() -> Result<Self, RegistryError> {
        Self::with_connection(Connection::open_in_memory()?)
    }

    fn with_connection(mut connection: Connection) -> Result<Self, RegistryError> {
        // For an in-memory database the journal mode stays "memory"; a file system without
        // shared-memory support keeps its rollback journal. Both are correct, just slower.
        let _mode: String =
            connection.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        connection.pragma_update(None, "busy_timeout", BUSY_TIMEOUT_MS)?;
        migrate(&mut connection)?;
        Ok(Self {
            connection: Mutex::new(connection),
        })
    }

    /// Locks the connection. A panic while it was held poisons the mutex, but any transaction
    /// open then was rolled back when it was dropped, so the connection is still usable.
    fn connection(&self) -> MutexGuard<'_, Connection> {
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a publisher and returns its bearer token. The token is not stored (only its
    /// SHA-256) and cannot be recovered: show it to the publisher once.
    pub fn add_publisher(
        &self,
        name: &str,
        public_key: &[u8; PUBLIC_KEY_LEN],
    ) -> Result<PublisherToken, RegistryError> {
        validate_name(name)?;
        let token = new_token();
        let mut connection = self.connection();
        let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let exists = tx
            .query_row("SELECT 1 FROM publishers WHERE name = ?1", [name], |_| {
                Ok(())
            })
            .optional()?
            .is_some();
        if exists {
            return Err(RegistryError::DuplicatePublisher(name.to_owned()));
        }
        tx.execute(
            "INSERT INTO publishers (name, token_hash, public_key) VALUES (?1, ?2, ?3)",
            params![name, token_hash(token.as_str()), &public_key[..]],
        )?;
        tx.commit()?;
        Ok(token)
    }

    /// Replaces a publisher's token (the old one stops working) and returns the new one.
    pub fn rotate_token(&self, name: &str) -> Result<PublisherToken, RegistryError> {
        let token = new_token();
        let changed = self.connection().execute(
            "UPDATE publishers SET token_hash = ?2 WHERE name = ?1",
            params![name, token_hash(token.as_str())],
        )?;
        if changed == 0 {
            return Err(RegistryError::PublisherNotFound(name.to_owned()));
        }
        Ok(token)
    }

    /// Every publisher, by name.
    pub fn list_publishers(&self) -> Result<Vec<Publisher>, RegistryError> {
        let connection = self.connection();
        let mut statement = connection
            .prepare_cached("SELECT id, name, public_key, created FROM publishers ORDER BY name")?;
        let rows = statement.query_map([], publisher_from_row)?;
        let mut publishers = Vec::new();
        for row in rows {
            publishers.push(row??);
        }
        Ok(publishers)
    }

    /// The publisher named `name`.
    pub fn publisher(&self, name: &str) -> Result<Option<Publisher>, RegistryError> {
        self.connection()
            .query_row(
                "SELECT id, name, public_key, created FROM publishers WHERE name = ?1",
                [name],
                publisher_from_row,
            )
            .optional()?
            .transpose()
    }

    /// Removes a publisher together with its releases and their torrents, in one transaction.
    /// Returns the info-hashes that are no longer registered, so the caller can stop tracking
    /// them.
    pub fn remove_publisher(&self, name: &str) -> Result<Vec<InfoHash>, RegistryError> {
        let mut connection = self.connection();
        let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let id: i64 = tx
            .query_row("SELECT id FROM publishers WHERE name = ?1", [name], |row| {
                row.get(0)
            })
            .optional()?
            .ok_or_else(|| RegistryError::PublisherNotFound(name.to_owned()))?;
        let removed = {
            let mut statement =
                tx.prepare("DELETE FROM releases WHERE publisher_id = ?1 RETURNING info_hash")?;
            let rows = statement.query_map([id], |row| row.get::<_, [u8; 20]>(0))?;
            rows.map(|row| row.map(InfoHash))
                .collect::<Result<Vec<_>, _>>()?
        };
        for info_hash in &removed {
            tx.execute(
                "DELETE FROM torrents WHERE info_hash = ?1",
                [&info_hash.0[..]],
            )?;
        }
        tx.execute("DELETE FROM publishers WHERE id = ?1", [id])?;
        tx.commit()?;
        Ok(removed)
    }

    /// The publisher whose token this is, if any.
    ///
    /// The token is hashed and the hash looked up through a unique index: the lookup's timing
    /// depends on the hash, which tells an attacker nothing about any valid token.
    pub fn authenticate(&self, token: &str) -> Result<Option<Publisher>, RegistryError> {
        if token.len() != TOKEN_BYTES * 2 {
            return Ok(None);
        }
        self.connection()
            .query_row(
                "SELECT id, name, public_key, created FROM publishers WHERE token_hash = ?1",
                [token_hash(token)],
                publisher_from_row,
            )
            .optional()?
            .transpose()
    }

    /// Registers a release and its torrent in one transaction: either both are stored, or
    /// neither is.
    ///
    /// `manifest` (the signed manifest) and `metainfo` (the `.torrent`) are stored as given;
    /// the caller has verified them and extracted `name`, `version` and `info_hash`. Refuses a
    /// name owned by another publisher, a version already published under this name, and a
    /// torrent already registered.
    pub fn insert_release(
        &self,
        publisher: &Publisher,
        name: &ReleaseName,
        version: &str,
        info_hash: &InfoHash,
        manifest: &[u8],
        metainfo: &[u8],
    ) -> Result<Release, RegistryError> {
        let name = name.as_str();
        let parsed = parse_version(version)?;
        // SQLite integers are signed 64-bit; semver numbers are unsigned.
        let number = |n: u64| {
            i64::try_from(n).map_err(|_| RegistryError::InvalidVersion {
                version: version.to_owned(),
                reason: "a version number is larger than 2^63 - 1".to_owned(),
            })
        };
        let (major, minor, patch) = (
            number(parsed.major)?,
            number(parsed.minor)?,
            number(parsed.patch)?,
        );

        let mut connection = self.connection();
        let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let publisher_exists = tx
            .query_row(
                "SELECT 1 FROM publishers WHERE id = ?1",
                [publisher.id],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if !publisher_exists {
            return Err(RegistryError::PublisherNotFound(publisher.name.clone()));
        }
        let owner: Option<i64> = tx
            .query_row(
                "SELECT publisher_id FROM releases WHERE name = ?1 LIMIT 1",
                [name],
                |row| row.get(0),
            )
            .optional()?;
        if owner.is_some_and(|owner| owner != publisher.id) {
            return Err(RegistryError::NameTaken(name.to_owned()));
        }
        let duplicate = tx
            .query_row(
                "SELECT 1 FROM releases WHERE name = ?1 AND version = ?2",
                [name, version],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if duplicate {
            return Err(RegistryError::DuplicateRelease {
                name: name.to_owned(),
                version: version.to_owned(),
            });
        }
        let torrent_exists = tx
            .query_row(
                "SELECT 1 FROM torrents WHERE info_hash = ?1",
                [&info_hash.0[..]],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if torrent_exists {
            return Err(RegistryError::DuplicateInfoHash(*info_hash));
        }
        tx.execute(
            "INSERT INTO torrents (info_hash, metainfo) VALUES (?1, ?2)",
            params![&info_hash.0[..], metainfo],
        )?;
        let created: i64 = tx.query_row(
            "INSERT INTO releases
                (publisher_id, name, version, major, minor, patch, pre, info_hash, manifest)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             RETURNING created",
            params![
                publisher.id,
                name,
                version,
                major,
                minor,
                patch,
                parsed.pre.as_str(),
                &info_hash.0[..],
                manifest
            ],
            |row| row.get(0),
        )?;
        tx.commit()?;
        Ok(Release {
            publisher: publisher.name.clone(),
            name: name.to_owned(),
            version: parsed,
            info_hash: *info_hash,
            manifest: manifest.to_vec(),
            created,
        })
    }

    /// The release `version` of `name`.
    pub fn release(&self, name: &str, version: &str) -> Result<Option<Release>, RegistryError> {
        let sql = format!("{RELEASE_SELECT} WHERE r.name = ?1 AND r.version = ?2");
        self.connection()
            .query_row(&sql, [name, version], release_from_row)
            .optional()?
            .transpose()
    }

    /// The release of `name` that sites following "latest" should run: the highest stable
    /// version by semver precedence, or the highest pre-release if there is no stable one.
    pub fn latest_release(&self, name: &str) -> Result<Option<Release>, RegistryError> {
        let connection = self.connection();
        // Stable versions are ordered by their three numbers alone, which SQL can do.
        let sql = format!(
            "{RELEASE_SELECT} WHERE r.name = ?1 AND r.pre = ''
             ORDER BY r.major DESC, r.minor DESC, r.patch DESC LIMIT 1"
        );
        if let Some(release) = connection
            .query_row(&sql, [name], release_from_row)
            .optional()?
        {
            return release.map(Some);
        }
        // Pre-release precedence (identifier by identifier, numbers numerically) is left to
        // the semver crate; a name with only pre-releases has few of them.
        let sql = format!("{RELEASE_SELECT} WHERE r.name = ?1");
        let mut statement = connection.prepare(&sql)?;
        let mut best: Option<Release> = None;
        for row in statement.query_map([name], release_from_row)? {
            let release = row??;
            if best
                .as_ref()
                .is_none_or(|b| release.version.cmp_precedence(&b.version).is_gt())
            {
                best = Some(release);
            }
        }
        Ok(best)
    }

    /// The metainfo (`.torrent` bytes) registered under `info_hash`.
    pub fn torrent(&self, info_hash: &InfoHash) -> Result<Option<Vec<u8>>, RegistryError> {
        Ok(self
            .connection()
            .query_row(
                "SELECT metainfo FROM torrents WHERE info_hash = ?1",
                [&info_hash.0[..]],
                |row| row.get(0),
            )
            .optional()?)
    }

    /// Withdraws a release and its torrent, in one transaction; returns the info-hash that is
    /// no longer registered. Once a name has no releases left, any publisher may claim it.
    pub fn remove_release(&self, name: &str, version: &str) -> Result<InfoHash, RegistryError> {
        let mut connection = self.connection();
        let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let info_hash: [u8; 20] = tx
            .query_row(
                "DELETE FROM releases WHERE name = ?1 AND version = ?2 RETURNING info_hash",
                [name, version],
                |row| row.get(0),
            )
            .optional()?
            .ok_or_else(|| RegistryError::ReleaseNotFound {
                name: name.to_owned(),
                version: version.to_owned(),
            })?;
        tx.execute(
            "DELETE FROM torrents WHERE info_hash = ?1",
            [&info_hash[..]],
        )?;
        tx.commit()?;
        Ok(InfoHash(info_hash))
    }

    /// Checks that the database answers a query (the service's readiness probe).
    pub fn ping(&self) -> Result<(), RegistryError> {
        self.connection()
            .query_row("SELECT count(*) FROM publishers", [], |_| Ok(()))?;
        Ok(())
    }

    /// Every registered info-hash, for the in-memory set the announce path checks.
    pub fn registered_info_hashes(&self) -> Result<Vec<InfoHash>, RegistryError> {
        let connection = self.connection();
        let mut statement = connection.prepare_cached("SELECT info_hash FROM torrents")?;
        let rows = statement.query_map([], |row| row.get::<_, [u8; 20]>(0))?;
        Ok(rows
            .map(|row| row.map(InfoHash))
            .collect::<Result<Vec<_>, _>>()?)
    }
}

/// The columns [`release_from_row`] reads.
const RELEASE_SELECT: &str = "SELECT p.name, r.name, r.version, r.info_hash, r.manifest, r.created
     FROM releases r JOIN publishers p ON p.id = r.publisher_id";

/// Brings the schema to the newest version, one migration per transaction.
fn migrate(connection: &mut Connection) -> Result<(), RegistryError> {
    let supported = MIGRATIONS.len() as i64;
    let found: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if found > supported {
        return Err(RegistryError::SchemaTooNew { found, supported });
    }
    for (done, sql) in (found..).zip(MIGRATIONS.iter().skip(found.max(0) as usize)) {
        let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", done + 1)?;
        tx.commit()?;
    }
    Ok(())
}

/// A publisher from `SELECT id, name, public_key, created`. The outer `Result` is SQLite's,
/// the inner one says whether the row holds what the schema promises.
fn publisher_from_row(row: &Row<'_>) -> rusqlite::Result<Result<Publisher, RegistryError>> {
    let id = row.get(0)?;
    let name: String = row.get(1)?;
    let key: Vec<u8> = row.get(2)?;
    let created = row.get(3)?;
    Ok(match <[u8; PUBLIC_KEY_LEN]>::try_from(key.as_slice()) {
        Ok(public_key) => Ok(Publisher {
            id,
            name,
            public_key,
            created,
        }),
        Err(_) => Err(RegistryError::Corrupt(format!(
            "public key of publisher {name:?} is not {PUBLIC_KEY_LEN} bytes"
        ))),
    })
}

/// A release from [`RELEASE_SELECT`]; results nest as in [`publisher_from_row`].
fn release_from_row(row: &Row<'_>) -> rusqlite::Result<Result<Release, RegistryError>> {
    let version_text: String = row.get(2)?;
    let version = match semver::Version::parse(&version_text) {
        Ok(version) => version,
        Err(_) => {
            return Ok(Err(RegistryError::Corrupt(format!(
                "stored version {version_text:?} is not a semantic version"
            ))));
        }
    };
    Ok(Ok(Release {
        publisher: row.get(0)?,
        name: row.get(1)?,
        version,
        info_hash: InfoHash(row.get(3)?),
        manifest: row.get(4)?,
        created: row.get(5)?,
    }))
}

/// Checks a publisher name by the rules of release names ([`ReleaseName`]): both appear in
/// URLs, paths and log lines, so both keep to characters that need no escaping.
fn validate_name(name: &str) -> Result<(), RegistryError> {
    ReleaseName::new(name)
        .map(drop)
        .map_err(|reason| RegistryError::InvalidName {
            name: name.chars().take(MAX_NAME_LEN + 1).collect(),
            reason,
        })
}

/// Parses a version: strict semver, without build metadata (which semver precedence ignores,
/// so `1.0.0+a` and `1.0.0+b` could not be told apart as "latest").
fn parse_version(version: &str) -> Result<semver::Version, RegistryError> {
    let invalid = |reason: String| RegistryError::InvalidVersion {
        version: version.chars().take(MAX_NAME_LEN + 1).collect(),
        reason,
    };
    if version.len() > MAX_NAME_LEN {
        return Err(invalid("longer than 64 bytes".to_owned()));
    }
    let parsed = semver::Version::parse(version).map_err(|e| invalid(e.to_string()))?;
    if !parsed.build.is_empty() {
        return Err(invalid("build metadata (+...) is not allowed".to_owned()));
    }
    Ok(parsed)
}

/// A fresh token: [`TOKEN_BYTES`] bytes from the thread-local CSPRNG (seeded from the OS), in
/// hex.
fn new_token() -> PublisherToken {
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    PublisherToken(data_encoding::HEXLOWER.encode(&bytes))
}

/// The stored form of a token: SHA-256, lowercase hex.
fn token_hash(token: &str) -> String {
    data_encoding::HEXLOWER.encode(&Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: [u8; 32] = [0xAA; 32];
    const KEY_B: [u8; 32] = [0xBB; 32];

    fn ih(n: u8) -> InfoHash {
        InfoHash([n; 20])
    }

    fn publish(
        registry: &Registry,
        publisher: &Publisher,
        name: &str,
        version: &str,
        n: u8,
    ) -> Result<Release, RegistryError> {
        registry.insert_release(
            publisher,
            &name.parse().unwrap(),
            version,
            &ih(n),
            format!("manifest {name} {version}").as_bytes(),
            &[n; 100],
        )
    }

    fn setup() -> (Registry, Publisher, Publisher) {
        let registry = Registry::open(":memory:").unwrap();
        registry.add_publisher("acme", &KEY_A).unwrap();
        registry.add_publisher("globex", &KEY_B).unwrap();
        let a = registry.publisher("acme").unwrap().unwrap();
        let b = registry.publisher("globex").unwrap().unwrap();
        (registry, a, b)
    }

    #[test]
    fn publishers_authenticate_by_token_and_tokens_rotate() {
        let registry = Registry::open_in_memory().unwrap();
        let token = registry.add_publisher("acme", &KEY_A).unwrap();
        assert_eq!(token.as_str().len(), 64);
        assert!(!format!("{token:?}").contains(token.as_str()));

        let publisher = registry.authenticate(token.as_str()).unwrap().unwrap();
        assert_eq!(publisher.name, "acme");
        assert_eq!(publisher.public_key, KEY_A);
        assert!(publisher.created > 1_600_000_000);
        assert_eq!(registry.authenticate(&"0".repeat(64)).unwrap(), None);
        assert_eq!(registry.authenticate("short").unwrap(), None);

        let rotated = registry.rotate_token("acme").unwrap();
        assert_ne!(rotated, token);
        assert_eq!(registry.authenticate(token.as_str()).unwrap(), None);
        assert_eq!(
            registry.authenticate(rotated.as_str()).unwrap(),
            Some(publisher)
        );
        assert!(matches!(
            registry.rotate_token("nobody"),
            Err(RegistryError::PublisherNotFound(_))
        ));
    }

    #[test]
    fn the_token_itself_is_never_stored() {
        let registry = Registry::open_in_memory().unwrap();
        let token = registry.add_publisher("acme", &KEY_A).unwrap();
        let stored: String = registry
            .connection()
            .query_row("SELECT token_hash FROM publishers", [], |row| row.get(0))
            .unwrap();
        assert_ne!(stored, token.as_str());
        assert_eq!(stored, token_hash(token.as_str()));
    }

    #[test]
    fn publisher_names_are_unique_and_validated() {
        let registry = Registry::open_in_memory().unwrap();
        registry.add_publisher("acme", &KEY_A).unwrap();
        assert!(matches!(
            registry.add_publisher("acme", &KEY_B),
            Err(RegistryError::DuplicatePublisher(name)) if name == "acme"
        ));
        for bad in [
            "",
            "Acme",
            "a/b",
            "-x",
            "a b",
            "é",
            &"a".repeat(MAX_NAME_LEN + 1),
        ] {
            assert!(
                matches!(
                    registry.add_publisher(bad, &KEY_B),
                    Err(RegistryError::InvalidName { .. })
                ),
                "{bad:?} accepted"
            );
        }
        registry
            .add_publisher(&"a".repeat(MAX_NAME_LEN), &KEY_B)
            .unwrap();
        let names: Vec<_> = registry
            .list_publishers()
            .unwrap()
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, vec!["a".repeat(MAX_NAME_LEN), "acme".to_owned()]);
    }

    #[test]
    fn releases_are_stored_and_fetched() {
        let (registry, acme, _) = setup();
        let stored = publish(&registry, &acme, "share-button", "1.0.0", 1).unwrap();
        assert_eq!(stored.publisher, "acme");
        let fetched = registry.release("share-button", "1.0.0").unwrap().unwrap();
        assert_eq!(fetched, stored);
        assert_eq!(fetched.manifest, b"manifest share-button 1.0.0");
        assert_eq!(registry.torrent(&ih(1)).unwrap(), Some(vec![1; 100]));
        assert_eq!(registry.torrent(&ih(2)).unwrap(), None);
        assert_eq!(registry.release("share-button", "1.0.1").unwrap(), None);
        assert_eq!(registry.registered_info_hashes().unwrap(), vec![ih(1)]);
    }

    #[test]
    fn duplicates_and_foreign_names_are_refused_without_half_writes() {
        let (registry, acme, globex) = setup();
        publish(&registry, &acme, "share-button", "1.0.0", 1).unwrap();

        // Same name and version, new torrent: refused, and the new torrent is not stored.
        assert!(matches!(
            publish(&registry, &acme, "share-button", "1.0.0", 2),
            Err(RegistryError::DuplicateRelease { .. })
        ));
        // Another publisher's name.
        assert!(matches!(
            publish(&registry, &globex, "share-button", "2.0.0", 3),
            Err(RegistryError::NameTaken(name)) if name == "share-button"
        ));
        // A torrent already registered under another release.
        assert!(matches!(
            publish(&registry, &acme, "share-button", "1.0.1", 1),
            Err(RegistryError::DuplicateInfoHash(hash)) if hash == ih(1)
        ));
        assert_eq!(registry.registered_info_hashes().unwrap(), vec![ih(1)]);
        assert_eq!(registry.torrent(&ih(2)).unwrap(), None);
        assert_eq!(registry.torrent(&ih(3)).unwrap(), None);
    }

    #[test]
    fn a_failure_inside_the_transaction_leaves_nothing_behind() {
        let (registry, acme, _) = setup();
        // Make the release insert itself fail after the torrent row was written.
        registry
            .connection()
            .execute_batch(
                "CREATE TRIGGER refuse BEFORE INSERT ON releases
                 BEGIN SELECT RAISE(ABORT, 'refused'); END;",
            )
            .unwrap();
        assert!(matches!(
            publish(&registry, &acme, "share-button", "1.0.0", 1),
            Err(RegistryError::Storage(_))
        ));
        assert_eq!(registry.torrent(&ih(1)).unwrap(), None);
        assert!(registry.registered_info_hashes().unwrap().is_empty());
    }

    #[test]
    fn versions_must_be_strict_semver_without_build_metadata() {
        let (registry, acme, _) = setup();
        for bad in [
            "1.0",
            "v1.0.0",
            "01.0.0",
            "1.0.0+build.5",
            "",
            "99999999999999999999.0.0",
            "18446744073709551615.0.0",
        ] {
            assert!(
                matches!(
                    publish(&registry, &acme, "w", bad, 1),
                    Err(RegistryError::InvalidVersion { .. })
                ),
                "{bad:?} accepted"
            );
        }
        assert!(matches!(
            publish(
                &registry,
                &acme,
                "w",
                &format!("1.0.0-{}", "a".repeat(70)),
                1
            ),
            Err(RegistryError::InvalidVersion { .. })
        ));
    }

    #[test]
    fn latest_is_the_highest_stable_version_by_semver_precedence() {
        let (registry, acme, _) = setup();
        assert_eq!(registry.latest_release("w").unwrap(), None);
        for (n, version) in ["1.2.0", "1.10.0", "1.9.9", "2.0.0-rc.1", "0.99.0"]
            .iter()
            .enumerate()
        {
            publish(&registry, &acme, "w", version, n as u8).unwrap();
        }
        let latest = registry.latest_release("w").unwrap().unwrap();
        assert_eq!(latest.version.to_string(), "1.10.0");
        assert_eq!(latest.info_hash, ih(1));
    }

    #[test]
    fn latest_falls_back_to_the_highest_pre_release() {
        let (registry, acme, _) = setup();
        for (n, version) in ["1.0.0-beta.2", "1.0.0-beta.10", "1.0.0-alpha", "0.9.0-rc.1"]
            .iter()
            .enumerate()
        {
            publish(&registry, &acme, "w", version, n as u8).unwrap();
        }
        let latest = registry.latest_release("w").unwrap().unwrap();
        assert_eq!(latest.version.to_string(), "1.0.0-beta.10");
        // Once a stable release exists, it wins over any pre-release.
        publish(&registry, &acme, "w", "0.1.0", 9).unwrap();
        let latest = registry.latest_release("w").unwrap().unwrap();
        assert_eq!(latest.version.to_string(), "0.1.0");
    }

    #[test]
    fn removing_a_release_unregisters_its_torrent_and_frees_the_name() {
        let (registry, acme, globex) = setup();
        publish(&registry, &acme, "w", "1.0.0", 1).unwrap();
        assert_eq!(registry.remove_release("w", "1.0.0").unwrap(), ih(1));
        assert_eq!(registry.torrent(&ih(1)).unwrap(), None);
        assert!(registry.registered_info_hashes().unwrap().is_empty());
        assert!(matches!(
            registry.remove_release("w", "1.0.0"),
            Err(RegistryError::ReleaseNotFound { .. })
        ));
        // The name has no releases left, so another publisher may claim it.
        publish(&registry, &globex, "w", "1.0.0", 2).unwrap();
    }

    #[test]
    fn removing_a_publisher_removes_its_releases() {
        let (registry, acme, globex) = setup();
        publish(&registry, &acme, "w", "1.0.0", 1).unwrap();
        publish(&registry, &acme, "w", "1.1.0", 2).unwrap();
        publish(&registry, &globex, "g", "1.0.0", 3).unwrap();
        let mut removed = registry.remove_publisher("acme").unwrap();
        removed.sort();
        assert_eq!(removed, vec![ih(1), ih(2)]);
        assert_eq!(registry.registered_info_hashes().unwrap(), vec![ih(3)]);
        assert_eq!(registry.latest_release("w").unwrap(), None);
        assert_eq!(registry.publisher("acme").unwrap(), None);
        // A release for a publisher removed meanwhile is refused.
        assert!(matches!(
            publish(&registry, &acme, "w", "2.0.0", 4),
            Err(RegistryError::PublisherNotFound(_))
        ));
        assert!(matches!(
            registry.remove_publisher("acme"),
            Err(RegistryError::PublisherNotFound(_))
        ));
    }

    #[test]
    fn everything_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.sqlite3");
        let token = {
            let registry = Registry::open(&path).unwrap();
            let token = registry.add_publisher("acme", &KEY_A).unwrap();
            let acme = registry.authenticate(token.as_str()).unwrap().unwrap();
            publish(&registry, &acme, "w", "1.0.0", 1).unwrap();
            publish(&registry, &acme, "w", "1.1.0", 2).unwrap();
            let mode: String = registry
                .connection()
                .pragma_query_value(None, "journal_mode", |row| row.get(0))
                .unwrap();
            assert_eq!(mode, "wal");
            token
        };
        // Reopening runs the migration step again, which must be a no-op.
        let registry = Registry::open(&path).unwrap();
        let acme = registry.authenticate(token.as_str()).unwrap().unwrap();
        assert_eq!(acme.public_key, KEY_A);
        let mut hashes = registry.registered_info_hashes().unwrap();
        hashes.sort();
        assert_eq!(hashes, vec![ih(1), ih(2)]);
        let latest = registry.latest_release("w").unwrap().unwrap();
        assert_eq!(latest.version.to_string(), "1.1.0");
        assert_eq!(latest.manifest, b"manifest w 1.1.0");
        assert_eq!(registry.torrent(&ih(1)).unwrap(), Some(vec![1; 100]));
        let version: i64 = registry
            .connection()
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
    }

    #[test]
    fn a_hand_edited_row_is_reported_as_corrupt() {
        let (registry, acme, _) = setup();
        publish(&registry, &acme, "w", "1.0.0", 1).unwrap();
        registry
            .connection()
            .execute("UPDATE releases SET version = 'garbage'", [])
            .unwrap();
        assert!(matches!(
            registry.release("w", "garbage"),
            Err(RegistryError::Corrupt(_))
        ));
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.sqlite3");
        drop(Registry::open(&path).unwrap());
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        assert!(matches!(
            Registry::open(&path),
            Err(RegistryError::SchemaTooNew { found: 99, .. })
        ));
    }
}
