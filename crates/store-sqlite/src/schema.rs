//! Connection set-up (pragmas) and the schema with its migrations.
//!
//! The schema version lives in the `schema_meta` table (`key = 'schema_version'`).
//! Migrations are applied in order, each in its own transaction, by the writer
//! connection at open; a database written by a newer binary is refused rather than
//! guessed at.

use std::path::Path;

use ledger_store::StoreError;
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::backend;

/// Page size for a new database. 4 KiB matches the OS page and the disk's write
/// unit; every group commit writes each dirty page whole into the WAL and the
/// `event_id` index is random-insert (UUID v4), so smaller pages mean less WAL
/// traffic per commit. Sequential replay does not need larger pages.
const PAGE_SIZE: u32 = 4096;
/// Writer page cache (negative = KiB): keeps the hot index leaves of both unique
/// indexes resident so event-id and head look-ups rarely touch the disk.
const WRITER_CACHE_KIB: i64 = 128 * 1024;
/// Reader page cache per connection.
const READER_CACHE_KIB: i64 = 32 * 1024;
/// Memory-mapped I/O for the main database file (reads only; WAL frames are read
/// normally). Saves a copy per page on replay.
const MMAP_BYTES: i64 = 1 << 30;
/// The writer connection never checkpoints on its own (`wal_autocheckpoint = 0`):
/// a checkpoint copies pages into the database file and fsyncs it, which would stall
/// every append queued behind it. A background checkpointer thread with its own
/// connection runs `PASSIVE` checkpoints instead, concurrently with commits, once the
/// WAL file passes [`CHECKPOINT_WAL_BYTES`]; the writer only checkpoints itself if
/// the WAL still grows past [`FORCE_CHECKPOINT_WAL_BYTES`] (a passive checkpoint
/// cannot reset a WAL that is written without pause). 64 MiB lets the hot index
/// leaves, rewritten by almost every commit, be copied once for many commits.
pub(crate) const CHECKPOINT_WAL_BYTES: u64 = 64 * 1024 * 1024;
pub(crate) const FORCE_CHECKPOINT_WAL_BYTES: u64 = 512 * 1024 * 1024;
/// After a checkpoint resets the WAL, truncate the file back to this size. Below
/// [`CHECKPOINT_WAL_BYTES`], so the file size tells the writer when to checkpoint.
const JOURNAL_SIZE_LIMIT: i64 = 16 * 1024 * 1024;
const BUSY_TIMEOUT_MS: i64 = 10_000;

/// The migrations, in order; index `i` brings the schema to version `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: the event log.
    "CREATE TABLE events (
        position       INTEGER PRIMARY KEY,
        stream         TEXT    NOT NULL,
        version        INTEGER NOT NULL,
        event_id       BLOB    NOT NULL UNIQUE,
        event_type     TEXT    NOT NULL,
        schema_version INTEGER NOT NULL,
        payload        BLOB    NOT NULL,
        recorded_at    INTEGER NOT NULL,
        hash           BLOB    NOT NULL,
        log_hash       BLOB    NOT NULL,
        UNIQUE (stream, version)
    );",
    // 2: saved answers to write requests (idempotency keys), see
    // `ledger_store::responses`.
    "CREATE TABLE responses (
        scope        BLOB    NOT NULL,
        key          TEXT    NOT NULL,
        fingerprint  BLOB    NOT NULL,
        status       INTEGER NOT NULL,
        content_type TEXT,
        body         BLOB    NOT NULL,
        saved_at     INTEGER NOT NULL,
        PRIMARY KEY (scope, key)
    ) WITHOUT ROWID;
    CREATE INDEX responses_by_age ON responses (saved_at);",
];

/// The schema version this binary writes.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Opens the writer connection: creates the file, sets the durable WAL pragmas and
/// brings the schema up to date.
pub(crate) fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(backend)?;
    conn.pragma_update(None, "busy_timeout", BUSY_TIMEOUT_MS)
        .map_err(backend)?;
    // Only takes effect on a new, empty database (before WAL is on).
    conn.pragma_update(None, "page_size", PAGE_SIZE)
        .map_err(backend)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .map_err(backend)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Backend(format!(
            "could not enable WAL journal mode (got {mode})"
        )));
    }
    // FULL: the WAL is fsynced at every commit, so an acknowledged append survives
    // power loss (NORMAL would only survive an application crash).
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(backend)?;
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)
        .map_err(backend)?;
    conn.pragma_update(None, "mmap_size", MMAP_BYTES)
        .map_err(backend)?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .map_err(backend)?;
    conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)
        .map_err(backend)?;
    conn.pragma_update(None, "temp_store", "MEMORY")
        .map_err(backend)?;
    conn.set_prepared_statement_cache_capacity(32);
    migrate(&conn)?;
    Ok(conn)
}

/// Opens the background checkpointer's connection (the schema already exists).
pub(crate) fn open_checkpointer(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(backend)?;
    conn.pragma_update(None, "busy_timeout", BUSY_TIMEOUT_MS)
        .map_err(backend)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(backend)?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .map_err(backend)?;
    Ok(conn)
}

/// Opens a read-only connection for the read pool (see [`open_read_only`]).
pub(crate) fn open_reader(path: &Path, immutable: bool) -> Result<Connection, StoreError> {
    let conn = open_read_only(path, immutable).map_err(backend)?;
    conn.pragma_update(None, "busy_timeout", BUSY_TIMEOUT_MS)
        .map_err(backend)?;
    conn.pragma_update(None, "cache_size", -READER_CACHE_KIB)
        .map_err(backend)?;
    conn.pragma_update(None, "mmap_size", MMAP_BYTES)
        .map_err(backend)?;
    conn.pragma_update(None, "query_only", true)
        .map_err(backend)?;
    conn.set_prepared_statement_cache_capacity(16);
    Ok(conn)
}

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);",
    )
    .map_err(backend)?;
    let current: i64 = conn
        .query_row(
            "SELECT value FROM schema_meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(backend)?
        .unwrap_or(0);
    if current > SCHEMA_VERSION {
        return Err(StoreError::Backend(format!(
            "database schema version {current} is newer than this binary supports ({SCHEMA_VERSION})"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = i as i64 + 1;
        let tx = conn.unchecked_transaction().map_err(backend)?;
        tx.execute_batch(sql).map_err(backend)?;
        tx.execute(
            "INSERT INTO schema_meta (key, value) VALUES ('schema_version', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [version],
        )
        .map_err(backend)?;
        tx.commit().map_err(backend)?;
        tracing::info!(schema_version = version, "event store schema migrated");
    }
    Ok(())
}

/// Opens a database file for reading only. With `immutable`, SQLite is told the
/// file cannot change while open (`immutable=1`): no lock, no `-wal` or `-shm`
/// file is created, and a read-only medium works (an auditor's mounted backup).
/// Only for a caller that holds the data folder's writer lock, on a file whose
/// WAL is absent or empty ([`has_pending_wal`]); otherwise the file is read
/// through the WAL like any reader beside a writer.
pub fn open_read_only(path: &Path, immutable: bool) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if !immutable {
        return Connection::open_with_flags(path, flags);
    }
    // A URI filename: escape what a URI gives a meaning to.
    let mut uri = String::from("file:");
    for ch in path.to_string_lossy().chars() {
        match ch {
            '%' | '?' | '#' => uri.push_str(&format!("%{:02X}", ch as u32)),
            c => uri.push(c),
        }
    }
    uri.push_str("?immutable=1");
    Connection::open_with_flags(uri, flags | OpenFlags::SQLITE_OPEN_URI)
}

/// WAL frames the first 32 KiB region of a `-shm` file indexes (SQLite's
/// `HASHTABLE_NPAGE_ONE`); every further region indexes 4,096.
const SHM_FIRST_REGION_FRAMES: u64 = 4062;
const SHM_REGION_FRAMES: u64 = 4096;
const SHM_REGION_BYTES: u64 = 32 * 1024;
const OS_PAGE: u64 = 4096;

/// Grows the `-shm` file of the open database at `db` (the WAL index) to the size
/// a WAL of `wal_bytes` needs, allocating its pages now the way SQLite does when it
/// grows the file itself (a zero byte at the end of every new 4 KiB page,
/// `unixShmMap` in os_unix.c). SQLite maps regions that already exist and zeroes
/// each hash table when it starts using it.
///
/// Why: SQLite grows the `-shm` file only after a commit's frames are written and
/// synced to the WAL. On a full disk that growth fails (`SQLITE_IOERR_SHMSIZE`)
/// and the commit is reported failed, yet its frames stay in the WAL: a crash
/// before the next commit overwrites them makes recovery replay a write whose
/// client was told it failed. With the index reserved at open, a WAL up to
/// `wal_bytes` never needs disk space to be indexed. Call it once the writer
/// connection has read the database (SQLite truncates the file when the first
/// connection attaches).
///
/// Returns the file (if it could be opened, whether or not growing it worked),
/// which the caller must keep open until SQLite has closed every connection to
/// the database: closing a descriptor of a file releases all the POSIX locks the
/// process holds on it, SQLite's on the `-shm` file too. Failures are logged; SQLite
/// then grows the file itself as before.
#[cfg(unix)]
pub(crate) fn reserve_shm(db: &Path, wal_bytes: u64) -> Option<std::fs::File> {
    use std::os::unix::fs::FileExt as _;
    let frames = wal_bytes / (u64::from(PAGE_SIZE) + 24) + 1;
    let regions = 1 + frames
        .saturating_sub(SHM_FIRST_REGION_FRAMES)
        .div_ceil(SHM_REGION_FRAMES);
    let size = regions * SHM_REGION_BYTES;
    let mut shm = db.as_os_str().to_owned();
    shm.push("-shm");
    let warn = |e: std::io::Error| {
        tracing::warn!(error = %e, "could not reserve the WAL index file; SQLite grows it as needed");
    };
    let f = match std::fs::OpenOptions::new()
        .write(true)
        .open(Path::new(&shm))
    {
        Ok(f) => f,
        Err(e) => {
            warn(e);
            return None;
        }
    };
    // From here on `f` is returned, whatever happens (see above).
    match f.metadata() {
        Ok(m) => {
            // The last byte of every page that ends past the current end of the file.
            let mut end = (m.len() / OS_PAGE + 1) * OS_PAGE;
            while end <= size {
                if let Err(e) = f.write_at(&[0], end - 1) {
                    warn(e);
                    break;
                }
                end += OS_PAGE;
            }
        }
        Err(e) => warn(e),
    }
    Some(f)
}

/// Elsewhere SQLite keeps growing the index itself (see the Unix version).
#[cfg(not(unix))]
pub(crate) fn reserve_shm(_db: &Path, _wal_bytes: u64) -> Option<std::fs::File> {
    None
}

/// Whether the database has a WAL file with frames in it (committed data that
/// may not be in the main file yet).
pub fn has_pending_wal(path: &Path) -> bool {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(Path::new(&wal)).is_ok_and(|m| m.len() > 0)
}
