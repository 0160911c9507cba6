//! The one place that picks concrete storage backends, from the store URL.
//!
//! - no URL, or `sqlite://PATH`: the embedded default. Events, keys and
//!   projections in SQLite files in the data folder (events at PATH if given).
//! - `postgres://...`: events, keys and projections in that PostgreSQL database.
//!   A multi-host URL (`postgres://u@h1:p1,h2:p2,h3:p3/db?target_session_attrs=read-write`)
//!   follows the primary of a cluster; `--read-store` may name a streaming replica
//!   for the read side's catch-up and the audit's replay
//!   (Cargo feature `postgres`, on by default).
//! - `esdb://...`, `kurrentdb://...` (and `+discover` forms): events in a KurrentDB
//!   (EventStoreDB) cluster; keys and projections in `--state-store` (a
//!   `postgres://` URL) or, by default, in SQLite files in the data folder (Cargo
//!   feature `kurrentdb`, off by default).
//!
//! A URL of a backend left out of the build is refused with the feature to build
//! it with (ADR 0024); SQLite is always built in.
//!
//! The key-encryption key always comes from `LEDGER_KEK`, `--kek-file`, or
//! `DATA/kek.hex` (created with mode 0600 by `serve` and `demo` only). URLs are
//! never echoed in errors: they may hold a password. How each command may use the
//! data folder (create, write under the lock, or read only) is [`Access`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use ledger_app::forget::{restore_check, FileForgetList, ForgetList, RestoreReport};
use ledger_app::read::ReadSide;
use ledger_app::Ledger;
use ledger_crypto::{Kek, KekSource, KeyStore, Keyring, SqliteKeyStore};
use ledger_projections::ViewStore;
use ledger_store::responses::{MemoryResponses, ResponseStore};
use ledger_store::EventStore;
use ledger_store_sqlite::{SqliteStore, SqliteViewStore};

use crate::folder::{self, Access};

/// Which backend a store URL names (only those this binary was built with).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite(PathBuf),
    #[cfg(feature = "postgres")]
    Postgres(String),
    #[cfg(feature = "kurrentdb")]
    Kurrent(String),
}

/// The URL schemes of KurrentDB connection strings (`ledger_store_kurrentdb::SCHEMES`,
/// known here too so that a build without the client can name its feature).
const KURRENTDB_SCHEMES: [&str; 6] = [
    "esdb",
    "esdb+discover",
    "kurrentdb",
    "kurrentdb+discover",
    "kdb",
    "kdb+discover",
];

/// A URL's scheme, lower case.
fn scheme(url: &str) -> Option<String> {
    url.split_once("://").map(|(s, _)| s.to_ascii_lowercase())
}

fn is_postgres_url(url: &str) -> bool {
    matches!(scheme(url).as_deref(), Some("postgres" | "postgresql"))
}

fn is_kurrentdb_url(url: &str) -> bool {
    scheme(url).is_some_and(|s| KURRENTDB_SCHEMES.contains(&s.as_str()))
}

/// The error for a store URL of a backend this binary was built without: it names
/// the Cargo feature that builds it in (never the URL: it may hold a password).
fn not_built(flag: &str, backend: &str, feature: &str) -> anyhow::Error {
    anyhow!(
        "BACKEND_NOT_BUILT: {flag} names a {backend} store, and this ledger was built without the `{feature}` feature; build it with `cargo build --release --features {feature}` (or `--all-features`)"
    )
}

impl StoreKind {
    pub fn parse(url: Option<&str>, data: &Path) -> Result<Self> {
        match url {
            None => Ok(StoreKind::Sqlite(data.join("events.sqlite"))),
            Some(u) if u.starts_with("sqlite://") => {
                let p = &u["sqlite://".len()..];
                if p.is_empty() {
                    bail!(
                        "--store sqlite:// needs a path, e.g. sqlite://./ledger-data/events.sqlite"
                    );
                }
                Ok(StoreKind::Sqlite(PathBuf::from(p)))
            }
            #[cfg(feature = "postgres")]
            Some(u) if is_postgres_url(u) => Ok(StoreKind::Postgres(u.to_owned())),
            #[cfg(feature = "kurrentdb")]
            Some(u) if is_kurrentdb_url(u) => Ok(StoreKind::Kurrent(u.to_owned())),
            Some(u) if is_postgres_url(u) => Err(not_built("--store", "PostgreSQL", "postgres")),
            Some(u) if is_kurrentdb_url(u) => Err(not_built("--store", "KurrentDB", "kurrentdb")),
            Some(_) => bail!(
                "unsupported --store URL scheme (expected sqlite://PATH, postgres://... or esdb://...)"
            ),
        }
    }

    /// The SQLite file of the events, if they are in SQLite.
    pub fn sqlite_file(&self) -> Option<&Path> {
        match self {
            StoreKind::Sqlite(p) => Some(p),
            // Unreachable in a build with SQLite alone.
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// A name for reports (never the URL itself).
    pub fn label(&self) -> &'static str {
        match self {
            StoreKind::Sqlite(_) => "sqlite",
            #[cfg(feature = "postgres")]
            StoreKind::Postgres(_) => "postgres",
            #[cfg(feature = "kurrentdb")]
            StoreKind::Kurrent(_) => "kurrentdb",
        }
    }
}

/// The global store flags: `--store`, `--state-store`, `--read-store`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stores<'a> {
    pub store: Option<&'a str>,
    pub state_store: Option<&'a str>,
    pub read_store: Option<&'a str>,
}

/// The opened backends of one ledger process.
#[derive(Debug)]
pub struct Backends {
    pub events: Arc<dyn EventStore>,
    /// The key store behind `keyring` (for KEK rotation).
    pub keys: Arc<dyn KeyStore>,
    pub keyring: Arc<Keyring>,
    views: Arc<dyn ViewStore>,
    /// Commits what the event store queued, at [`close`](Self::close).
    closer: Closer,
    responses: Arc<dyn ResponseStore>,
    /// The writer lock on the data folder (none for read-only commands).
    _lock: Option<folder::WriterLock>,
    /// Whether the keyring holds the real KEK (a read-only command without one
    /// gets a placeholder that opens nothing: it only reads key states).
    has_kek: bool,
    /// The folders of the SQLite files this process writes.
    local_folders: Vec<PathBuf>,
    /// The forget list (writing commands only).
    forget: Option<Arc<dyn ForgetList>>,
}

/// The forget list used when `--forget-list` is not given: beside the data folder,
/// not in it (`./ledger-data` → `./ledger-data.forget-list.ndjson`), so that a copy
/// of the folder does not take it along.
pub fn default_forget_list(data: &Path) -> PathBuf {
    match data.file_name() {
        Some(name) => {
            let mut n = name.to_owned();
            n.push(".forget-list.ndjson");
            data.with_file_name(n)
        }
        None => PathBuf::from("ledger-forget-list.ndjson"),
    }
}

/// Opens only the event store a URL names (benchmarks, key commands).
pub async fn open_event_store(kind: &StoreKind) -> Result<(Arc<dyn EventStore>, Closer)> {
    Ok(match kind {
        StoreKind::Sqlite(p) => {
            let s = Arc::new(SqliteStore::open(p)?);
            (s.clone(), Closer::Sqlite(s))
        }
        #[cfg(feature = "postgres")]
        StoreKind::Postgres(url) => {
            let s = Arc::new(
                ledger_store_postgres::PostgresStore::connect(url)
                    .await
                    .context("cannot open the PostgreSQL event store")?,
            );
            (s.clone(), Closer::Postgres(s))
        }
        #[cfg(feature = "kurrentdb")]
        StoreKind::Kurrent(url) => {
            let s = ledger_store_kurrentdb::connect(url)
                .await
                .context("cannot open the KurrentDB event store")?;
            (Arc::new(s), Closer::Nothing)
        }
    })
}

/// Closes an event store cleanly (commits everything queued).
#[derive(Debug)]
pub enum Closer {
    Sqlite(Arc<SqliteStore>),
    #[cfg(feature = "postgres")]
    Postgres(Arc<ledger_store_postgres::PostgresStore>),
    /// Read-only stores, and KurrentDB, whose appends are acknowledged by the
    /// cluster: nothing is queued here.
    Nothing,
}

impl Closer {
    pub async fn close(&self) {
        match self {
            Closer::Sqlite(s) => s.close().await,
            #[cfg(feature = "postgres")]
            Closer::Postgres(s) => s.close().await,
            Closer::Nothing => {}
        }
    }

    /// Where answers to idempotent writes are saved: beside the writes, in the
    /// event database (none for KurrentDB, which holds events only).
    fn responses(&self) -> Option<Arc<dyn ResponseStore>> {
        match self {
            Closer::Sqlite(s) => Some(s.clone()),
            #[cfg(feature = "postgres")]
            Closer::Postgres(p) => Some(p.clone()),
            Closer::Nothing => None,
        }
    }
}

/// The KEK file used when neither `LEDGER_KEK` nor `--kek-file` is given.
pub fn default_kek_file(data: &Path) -> PathBuf {
    data.join("kek.hex")
}

/// The KEK, created (and announced) only when `access` is [`Access::Create`].
/// `None` when a read-only command finds none (it only needs key states).
pub fn load_kek(data: &Path, kek_file: Option<&Path>, access: Access) -> Result<Option<Kek>> {
    let kek_path = kek_file.map_or_else(|| default_kek_file(data), Path::to_path_buf);
    if access == Access::Create {
        let (kek, source) = Kek::load_or_create("LEDGER_KEK", &kek_path)?;
        if let KekSource::Created(p) = &source {
            eprintln!(
                "created a new key-encryption key in {} (mode 0600); back it up apart from the data folder",
                p.display()
            );
        }
        return Ok(Some(kek));
    }
    match Kek::load("LEDGER_KEK", &kek_path)? {
        Some((kek, _)) => Ok(Some(kek)),
        None if access == Access::Read && kek_file.is_none() => Ok(None),
        None => bail!(
            "no key-encryption key at {} and LEDGER_KEK is not set (check --kek-file; only `ledger serve` and `ledger demo` create one)",
            kek_path.display()
        ),
    }
}

impl Backends {
    /// Opens the event store, the key store and the view store the URLs name, as
    /// `access` allows: creating the data folder and KEK only for
    /// [`Access::Create`], taking the folder's writer lock unless
    /// [`Access::Read`], and opening every store read-only for [`Access::Read`].
    /// `what` names the command (recorded in the lock file).
    pub async fn open(
        stores: Stores<'_>,
        data: &Path,
        kek_file: Option<&Path>,
        forget_list: Option<&Path>,
        access: Access,
        what: &str,
    ) -> Result<Self> {
        let (url, state_url, read_url) = (stores.store, stores.state_store, stores.read_store);
        // The URLs first: one this build cannot open changes nothing.
        let kind = StoreKind::parse(url, data)?;
        let state = match (&kind, state_url) {
            #[cfg(feature = "postgres")]
            (StoreKind::Postgres(url), None) => Some(url.clone()),
            (_, Some(u)) if is_postgres_url(u) => Some(u.to_owned()),
            (_, Some(_)) => {
                bail!("--state-store must be a postgres:// URL (or omitted for SQLite)")
            }
            (_, None) => None,
        };
        if state.is_some() && !cfg!(feature = "postgres") {
            return Err(not_built("--state-store", "PostgreSQL", "postgres"));
        }
        let replica: Option<&str> = match (&kind, read_url) {
            (_, None) => None,
            #[cfg(feature = "postgres")]
            (StoreKind::Postgres(_), Some(r)) if is_postgres_url(r) => Some(r),
            #[cfg(feature = "postgres")]
            (StoreKind::Postgres(_), Some(_)) => {
                bail!("--read-store must be a postgres:// URL (a streaming replica of --store)")
            }
            (_, Some(_)) => {
                bail!("--read-store needs a postgres:// --store (it names a replica of it)")
            }
        };
        #[cfg(not(feature = "postgres"))]
        let _ = replica;
        folder::prepare(data, access)?;
        let forget: Option<Arc<dyn ForgetList>> = match access {
            Access::Read => None,
            Access::Create | Access::Write => {
                let path = forget_list.map_or_else(|| default_forget_list(data), Path::to_path_buf);
                if path.starts_with(data) {
                    eprintln!(
                        "warning: the forget list {} is inside the data folder: a restored backup would roll it back with the data",
                        path.display()
                    );
                }
                Some(Arc::new(FileForgetList::open(&path, true).with_context(
                    || format!("cannot open the forget list {}", path.display()),
                )?))
            }
        };
        let lock = match access {
            Access::Read => folder::try_lock_quietly(data),
            Access::Create | Access::Write => Some(folder::lock(data, what)?),
        };
        // A reader holding the lock reads files with no pending WAL as immutable:
        // no writer can start meanwhile, and SQLite then creates nothing.
        let quiet = access == Access::Read && lock.is_some();
        let immutable = |p: &Path| quiet && !ledger_store_sqlite::schema::has_pending_wal(p);
        let kek = load_kek(data, kek_file, access)?;
        let has_kek = kek.is_some();
        let kek = kek.unwrap_or_else(Kek::generate);
        let read_only = access == Access::Read;
        let (events, closer) = match (&kind, read_only) {
            (StoreKind::Sqlite(p), true) => {
                let s = Arc::new(SqliteStore::open_read_only(p, immutable(p))?);
                (s.clone() as Arc<dyn EventStore>, Closer::Nothing)
            }
            // Beside a running server (which holds the writer lock): no lock, no
            // migration, nothing written.
            #[cfg(feature = "postgres")]
            (StoreKind::Postgres(url), true) => {
                let s = match replica {
                    None => ledger_store_postgres::PostgresReader::connect(url).await,
                    Some(r) => {
                        ledger_store_postgres::PostgresReader::connect_with_replica(url, r).await
                    }
                };
                let s = Arc::new(s.context("cannot open the PostgreSQL event store read-only")?);
                (s as Arc<dyn EventStore>, Closer::Nothing)
            }
            #[cfg(feature = "postgres")]
            (StoreKind::Postgres(url), false) if replica.is_some() => {
                let options = ledger_store_postgres::PostgresOptions {
                    read_replica: replica.map(str::to_owned),
                    ..Default::default()
                };
                let s = Arc::new(
                    ledger_store_postgres::PostgresStore::connect_with(url, options)
                        .await
                        .context("cannot open the PostgreSQL event store")?,
                );
                (s.clone() as Arc<dyn EventStore>, Closer::Postgres(s))
            }
            (kind, _) => {
                if let Some(p) = kind.sqlite_file() {
                    folder::precreate_private(p)?;
                }
                open_event_store(kind).await?
            }
        };
        let (keys, views): (Arc<dyn KeyStore>, Arc<dyn ViewStore>) = match (&state, read_only) {
            (Some(url), _) => postgres_state(url, read_only)?,
            (None, true) => {
                let (k, v) = (data.join("keys.sqlite"), data.join("views.sqlite"));
                let (ik, iv) = (immutable(&k), immutable(&v));
                (
                    Arc::new(SqliteKeyStore::open_read_only(&k, |p| {
                        ledger_store_sqlite::schema::open_read_only(p, ik)
                    })?),
                    Arc::new(SqliteViewStore::open_read_only(&v, iv)?),
                )
            }
            (None, false) => {
                let (k, v) = (data.join("keys.sqlite"), data.join("views.sqlite"));
                folder::precreate_private(&k)?;
                folder::precreate_private(&v)?;
                (
                    Arc::new(SqliteKeyStore::open(&k)?),
                    Arc::new(SqliteViewStore::open(&v)?),
                )
            }
        };
        let mut local_folders = Vec::new();
        if !read_only {
            if let Some(p) = kind.sqlite_file() {
                let dir = p.parent().filter(|d| !d.as_os_str().is_empty());
                local_folders.push(dir.unwrap_or(Path::new(".")).to_path_buf());
            }
            if state.is_none() && !local_folders.iter().any(|d| d == data) {
                local_folders.push(data.to_path_buf());
            }
        }
        // Answers to idempotent writes live beside the writes (the event database);
        // KurrentDB holds events only, so there they are kept in memory.
        let responses = closer
            .responses()
            .unwrap_or_else(|| Arc::new(MemoryResponses::new()));
        Ok(Self {
            responses,
            events,
            keys: keys.clone(),
            keyring: Arc::new(Keyring::new(kek, keys)),
            views,
            closer,
            _lock: lock,
            has_kek,
            local_folders,
            forget,
        })
    }

    /// The folders holding the SQLite files this process writes (the event store's,
    /// and the data folder for keys and views); empty when every store is remote.
    /// `serve` probes them for space after a full disk.
    pub fn local_folders(&self) -> &[PathBuf] {
        &self.local_folders
    }

    /// Where the forget list is (writing commands only).
    pub fn forget_list(&self) -> Option<String> {
        self.forget.as_ref().map(|l| l.describe())
    }

    /// The view store (read models, and the outbound sinks' checkpoints).
    pub fn views(&self) -> Arc<dyn ViewStore> {
        self.views.clone()
    }

    /// Where answers to idempotent writes are saved.
    pub fn responses(&self) -> Arc<dyn ResponseStore> {
        self.responses.clone()
    }

    /// The command side for a read-only command: no reconciler, nothing written.
    /// `needs_kek` commands (which open personal data) fail here without a KEK.
    pub fn reader(&self, needs_kek: bool) -> Result<Ledger> {
        if needs_kek && !self.has_kek {
            bail!("this command opens personal data and needs the key-encryption key: set LEDGER_KEK or --kek-file");
        }
        if self.has_kek {
            match self.keyring.check_kek() {
                Ok(()) => {}
                // A command that only reads key states goes on, and says so.
                Err(e) if !needs_kek => eprintln!("warning: {e}"),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Ledger::new(self.events.clone(), self.keyring.clone()))
    }

    /// The read models as of the log's head now, folded in memory from the
    /// persisted views (nothing saved): for read-only commands.
    pub async fn snapshot(&self) -> Result<ReadSide> {
        Ok(ReadSide::snapshot(
            self.events.clone(),
            self.keyring.clone(),
            self.views.clone(),
            None,
        )
        .await?)
    }

    /// The command side over these backends, for a writing command: checks first
    /// that the KEK opens a stored data key (a wrong KEK, or the old one after a
    /// rotation, stops here, not on every personal field later), finishes any
    /// erasure whose key destruction did not complete, and compares the forget list
    /// with the log and the key store (re-applying erasures a restored log lacks).
    pub async fn ledger(&self) -> Result<Ledger> {
        Ok(self.ledger_checked().await?.0)
    }

    /// [`ledger`](Self::ledger), with what the forget list check found.
    pub async fn ledger_checked(&self) -> Result<(Ledger, Option<RestoreReport>)> {
        self.keyring.check_kek()?;
        let mut ledger = Ledger::new(self.events.clone(), self.keyring.clone());
        if let Some(list) = &self.forget {
            ledger = ledger.with_forget_list(list.clone());
        }
        ledger.reconcile().await?;
        let report = match &self.forget {
            Some(list) => {
                let r = restore_check(&ledger, &**list).await?;
                if r.repaired_anything() {
                    eprintln!(
                        "the forget list ({}) found a log or key store restored from before erasures: {} erasures re-applied, {} keys destroyed again",
                        list.describe(),
                        r.erasures_reapplied,
                        r.keys_destroyed
                    );
                }
                Some(r)
            }
            None => None,
        };
        Ok((ledger, report))
    }

    /// The read side, caught up with the log, with its search index (for `serve`).
    pub async fn read_side(&self) -> Result<ReadSide> {
        Ok(ReadSide::open(
            self.events.clone(),
            self.keyring.clone(),
            self.views.clone(),
        )
        .await?)
    }

    /// The read side, caught up with the log, without a search index: for the
    /// operator's writing commands, which never search and so need not open every
    /// profile.
    pub async fn report_side(&self) -> Result<ReadSide> {
        Ok(ReadSide::open_unindexed(
            self.events.clone(),
            self.keyring.clone(),
            self.views.clone(),
        )
        .await?)
    }

    /// Commits everything queued and stops the writers.
    pub async fn close(&self) {
        self.closer.close().await;
    }
}

/// The key store and the view store in PostgreSQL (`--state-store`, or the
/// `postgres://` event store's database).
#[cfg(feature = "postgres")]
fn postgres_state(url: &str, read_only: bool) -> Result<(Arc<dyn KeyStore>, Arc<dyn ViewStore>)> {
    use ledger_store_postgres::{PgKeyStore, PgViewStore};
    Ok(if read_only {
        (
            Arc::new(PgKeyStore::connect_read_only(url)?),
            Arc::new(PgViewStore::connect_read_only(url)?),
        )
    } else {
        (
            Arc::new(PgKeyStore::connect(url)?),
            Arc::new(PgViewStore::connect(url)?),
        )
    })
}

/// Without the `postgres` feature a `postgres://` state store cannot be opened.
#[cfg(not(feature = "postgres"))]
fn postgres_state(_: &str, _: bool) -> Result<(Arc<dyn KeyStore>, Arc<dyn ViewStore>)> {
    Err(not_built("--state-store", "PostgreSQL", "postgres"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(url: &str) -> String {
        StoreKind::parse(Some(url), Path::new("data"))
            .map(|k| format!("accepted as {}", k.label()))
            .unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn every_kurrentdb_scheme_is_known_without_the_client() {
        for s in KURRENTDB_SCHEMES {
            assert!(is_kurrentdb_url(&format!("{s}://h:2113")), "{s}");
            assert!(
                is_kurrentdb_url(&format!("{}://h:2113", s.to_uppercase())),
                "{s}"
            );
        }
        assert!(!is_kurrentdb_url("postgres://u@h/db"));
        #[cfg(feature = "kurrentdb")]
        assert_eq!(KURRENTDB_SCHEMES, ledger_store_kurrentdb::SCHEMES);
    }

    #[test]
    fn a_postgres_url_needs_the_postgres_feature() {
        for url in ["postgres://u:secret@h/db", "postgresql://u:secret@h/db"] {
            let r = refusal(url);
            if cfg!(feature = "postgres") {
                assert_eq!(r, "accepted as postgres");
            } else {
                assert!(r.starts_with("BACKEND_NOT_BUILT: "), "{r}");
                assert!(r.contains("--features postgres"), "{r}");
                assert!(!r.contains("secret"), "{r}");
            }
        }
    }

    #[test]
    fn a_kurrentdb_url_needs_the_kurrentdb_feature() {
        let r = refusal("esdb://u:secret@h:2113?tls=false");
        if cfg!(feature = "kurrentdb") {
            assert_eq!(r, "accepted as kurrentdb");
        } else {
            assert!(r.starts_with("BACKEND_NOT_BUILT: "), "{r}");
            assert!(r.contains("--features kurrentdb"), "{r}");
            assert!(!r.contains("secret"), "{r}");
        }
    }

    #[test]
    fn an_unknown_scheme_is_refused_without_echoing_the_url() {
        let r = refusal("mysql://u:secret@h/db");
        assert!(r.starts_with("unsupported --store URL scheme"), "{r}");
        assert!(!r.contains("secret"), "{r}");
    }
}
