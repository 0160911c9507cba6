//! The projections' persistence on SQLite (`views.sqlite`): one row per customer
//! view, per revenue bucket and per erasure receipt, and one checkpoint row per
//! projection, written together in one transaction so a checkpoint never runs ahead
//! of (or behind) the rows it covers.
//!
//! Views keep personal blocks sealed, exactly as in the log. `secure_delete = FAST`
//! overwrites the sealed blocks a tombstone drops whenever their page is written
//! anyway (no extra I/O); they are ciphertext under a destroyed key in any case.
//! `synchronous = NORMAL`: projections are derived data; a lost last transaction is
//! folded again from the log at the next start. Checkpoints never run in the
//! saving connection (`wal_autocheckpoint = 0`): a thread with its own connection
//! runs a passive checkpoint once [`CHECKPOINT_AFTER_ROWS`] rows were saved since
//! the last one, at most every [`CHECKPOINT_INTERVAL`], concurrently with the
//! saves; once the WAL holds [`FINISH_AFTER_FRAMES`], the saving connection
//! finishes one after a save, so the WAL restarts (no passive checkpoint is
//! complete while saves go on). An inline checkpoint (every 32,768 pages)
//! stalled the projector, and so
//! every request waiting to read its own write, for about 100 ms every few seconds
//! under a stream of erasures. Small batches keep each checkpoint's writes from
//! competing with the log's and the key store's fsyncs; a rebuild pays for copying
//! a page rewritten several times more often, on another core. Views and receipts (about 1-2 KiB of JSON each)
//! live in ordinary rowid tables: `WITHOUT ROWID` would push rows that large into
//! overflow pages and triple the file.

use std::path::Path;
use std::sync::Mutex;

use ledger_projections::{
    Changes, CustomerView, ErasureRecord, ReadModel, RevenueKey, RevenueTotals, ViewStore,
    ViewStoreError,
};
use ledger_types::{BroadcasterId, Currency, OfferId};
use rusqlite::{params, Connection};

const SCHEMA: &str = "
    PRAGMA journal_mode = WAL;
    PRAGMA synchronous = NORMAL;
    PRAGMA secure_delete = FAST;
    PRAGMA wal_autocheckpoint = 0;
    CREATE TABLE IF NOT EXISTS checkpoints (
        name TEXT PRIMARY KEY,
        position INTEGER NOT NULL,
        log_hash BLOB
    ) WITHOUT ROWID;
    -- Outbound sinks' checkpoints (the JetStream publisher's): apart from the
    -- projections' rows, which must agree on one log hash and which a rebuild clears.
    CREATE TABLE IF NOT EXISTS sink_checkpoints (
        name TEXT PRIMARY KEY,
        position INTEGER NOT NULL
    ) WITHOUT ROWID;
    -- Webhook endpoints (their JSON documents, secrets included) and the last
    -- delivery attempts of each: configuration and history, not derived from the log.
    CREATE TABLE IF NOT EXISTS webhook_endpoints (
        id TEXT PRIMARY KEY,
        doc TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS webhook_attempts (
        endpoint TEXT NOT NULL,
        seq INTEGER NOT NULL,
        doc TEXT NOT NULL,
        PRIMARY KEY (endpoint, seq)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS customer_views (
        customer_id TEXT PRIMARY KEY,
        view TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS revenue (
        broadcaster_id TEXT NOT NULL,
        currency TEXT NOT NULL,
        day INTEGER NOT NULL,
        offer_id TEXT NOT NULL,
        gross_captured INTEGER NOT NULL,
        refunded INTEGER NOT NULL,
        net INTEGER NOT NULL,
        payment_count INTEGER NOT NULL,
        refund_count INTEGER NOT NULL,
        PRIMARY KEY (broadcaster_id, currency, day, offer_id)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS erasures (
        customer_id TEXT PRIMARY KEY,
        record TEXT NOT NULL
    );
";

fn err(e: rusqlite::Error) -> ViewStoreError {
    match crate::SqliteErrorKind::of(&e) {
        crate::SqliteErrorKind::Full => ViewStoreError::Full,
        crate::SqliteErrorKind::Transient => ViewStoreError::Unavailable(e.to_string()),
        crate::SqliteErrorKind::Other => ViewStoreError::Backend(e.to_string()),
    }
}

fn corrupt(what: &str) -> ViewStoreError {
    ViewStoreError::Corrupt(what.to_owned())
}

/// A revenue total (`i128`) as SQLite stores it: an `INTEGER` when it fits in 64
/// bits (every total ever written before totals became `i128`, so existing files
/// read as before), else a 16-byte big-endian two's complement `BLOB`. Not TEXT:
/// SQLite turns a too-large integer literal in an `INTEGER` column into a `REAL`,
/// and loses digits.
fn total_to_sql(v: i128) -> rusqlite::types::Value {
    match i64::try_from(v) {
        Ok(small) => rusqlite::types::Value::Integer(small),
        Err(_) => rusqlite::types::Value::Blob(v.to_be_bytes().to_vec()),
    }
}

fn total_from_sql(row: &rusqlite::Row<'_>, idx: usize) -> Result<i128, ViewStoreError> {
    use rusqlite::types::ValueRef;
    match row.get_ref(idx).map_err(err)? {
        ValueRef::Integer(v) => Ok(i128::from(v)),
        ValueRef::Blob(b) => <[u8; 16]>::try_from(b)
            .map(i128::from_be_bytes)
            .map_err(|_| corrupt("revenue row")),
        _ => Err(corrupt("revenue row")),
    }
}

#[derive(Debug)]
pub struct SqliteViewStore {
    conn: Mutex<Connection>,
    read_only: bool,
    /// Wakes the checkpointer after a save (none when read-only), and the thread
    /// to join when the store is dropped.
    checkpointer: Option<Checkpointer>,
}

#[derive(Debug)]
struct Checkpointer {
    wake: std::sync::mpsc::SyncSender<()>,
    thread: std::thread::JoinHandle<()>,
    /// Rows saved since the checkpointer was last woken.
    rows: std::sync::atomic::AtomicUsize,
    /// Set by the checkpointer after a pass over a WAL of at least
    /// [`FINISH_AFTER_FRAMES`]: the saving connection completes the checkpoint.
    finish: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for SqliteViewStore {
    /// Ends the checkpointer first, so that the saving connection closes last and
    /// SQLite empties the WAL as it closes.
    fn drop(&mut self) {
        if let Some(Checkpointer { wake, thread, .. }) = self.checkpointer.take() {
            drop(wake);
            let _ = thread.join();
        }
    }
}

/// The shortest time between two background checkpoints of the view store.
pub const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// Rows saved (views, revenue buckets, receipts) between two background
/// checkpoints: about 1 to 2 MiB of WAL. Larger batches (16,384 rows) made the
/// checkpoints' writes compete with the log's and key store's fsyncs: erasure p99
/// over the API 57-69 ms, against 21-34 ms with 1,024.
pub const CHECKPOINT_AFTER_ROWS: usize = 1_024;

/// A WAL of this many frames (16 MiB) is restarted: after the checkpointer's next
/// pass, the saving connection finishes the checkpoint itself.
pub const FINISH_AFTER_FRAMES: i64 = 4_096;

/// The view store's checkpointer: a passive checkpoint after saves, at most every
/// [`CHECKPOINT_INTERVAL`], until the store is dropped. Passive checkpoints wait
/// for no reader or writer, so under a steady stream of saves none of them is
/// ever complete (frames are appended while it copies) and the WAL would never
/// restart: it grew past 600 MB in a 20 s stream of erasures, and every read
/// searched its index. Once the WAL holds [`FINISH_AFTER_FRAMES`], the pass
/// asks the saving connection to finish the checkpoint after its next save
/// (only the frames appended meanwhile, and one fsync), as the log's writer
/// does; the save after that restarts the WAL from its beginning.
fn run_checkpointer(
    conn: Connection,
    wake: std::sync::mpsc::Receiver<()>,
    finish: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::mpsc::RecvTimeoutError;
    let mut last: Option<std::time::Instant> = None;
    while wake.recv().is_ok() {
        // Not sooner than the interval after the last one; saves meanwhile are
        // covered by the checkpoint that follows. A dropped store ends the wait.
        while let Some(wait) = last
            .map(|l| CHECKPOINT_INTERVAL.saturating_sub(l.elapsed()))
            .filter(|w| !w.is_zero())
        {
            if let Err(RecvTimeoutError::Disconnected) = wake.recv_timeout(wait) {
                return;
            }
        }
        last = Some(std::time::Instant::now());
        if passive_checkpoint(&conn, "checkpointer").is_some_and(|log| log >= FINISH_AFTER_FRAMES) {
            finish.store(true, std::sync::atomic::Ordering::Release);
        }
    }
}

/// One passive checkpoint of the view store's WAL on `conn` (`by` names who ran
/// it, for the log): the frames the WAL held, or `None` if it failed (logged).
fn passive_checkpoint(conn: &Connection, by: &'static str) -> Option<i64> {
    let started = std::time::Instant::now();
    let r: rusqlite::Result<(i64, i64)> =
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get(1)?, r.get(2)?))
        });
    match r {
        Ok((log, done)) => {
            tracing::debug!(
                by,
                wal_frames = log,
                checkpointed = done,
                micros = started.elapsed().as_micros() as u64,
                "view store WAL checkpointed"
            );
            Some(log)
        }
        Err(e) => {
            tracing::warn!(by, error = %e, "view store WAL checkpoint failed");
            None
        }
    }
}

impl SqliteViewStore {
    pub fn open(path: &Path) -> Result<Self, ViewStoreError> {
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        // Views saved before checkpoints recorded the log hash: add the column.
        let has_hash: bool = conn
            .query_row(
                "SELECT COUNT(*) > 0 FROM pragma_table_info('checkpoints') WHERE name = 'log_hash'",
                [],
                |r| r.get(0),
            )
            .map_err(err)?;
        if !has_hash {
            conn.execute_batch("ALTER TABLE checkpoints ADD COLUMN log_hash BLOB")
                .map_err(err)?;
        }
        let checkpointer = Connection::open(path).map_err(err)?;
        checkpointer
            .busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        let (wake, rx) = std::sync::mpsc::sync_channel(1);
        let finish = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let asks = finish.clone();
        let thread = std::thread::Builder::new()
            .name("ledger-views-ckpt".into())
            .spawn(move || run_checkpointer(checkpointer, rx, asks))
            .map_err(|e| ViewStoreError::Backend(format!("cannot start the checkpointer: {e}")))?;
        Ok(Self {
            conn: Mutex::new(conn),
            read_only: false,
            checkpointer: Some(Checkpointer {
                wake,
                thread,
                rows: std::sync::atomic::AtomicUsize::new(0),
                finish,
            }),
        })
    }

    /// Counts `rows` saved by `conn` (the saving connection, just committed),
    /// asks the checkpointer for a checkpoint once [`CHECKPOINT_AFTER_ROWS`]
    /// were (one already asked for is enough), and finishes the checkpoint when
    /// the checkpointer asks for it (see [`run_checkpointer`]).
    fn saved(&self, conn: &Connection, rows: usize) {
        use std::sync::atomic::Ordering;
        if let Some(c) = &self.checkpointer {
            if c.finish.swap(false, Ordering::AcqRel) {
                passive_checkpoint(conn, "saving connection");
            }
            let total = c.rows.fetch_add(rows, Ordering::Relaxed) + rows;
            if total >= CHECKPOINT_AFTER_ROWS {
                c.rows.store(0, Ordering::Relaxed);
                let _ = c.wake.try_send(());
            }
        }
    }

    /// Opens existing views for loading only (nothing is created or saved), for the
    /// operator's read-only commands beside a running server. A missing file loads
    /// as empty views (the caller folds the log from zero in memory).
    /// With `immutable`, see [`crate::schema::open_read_only`].
    pub fn open_read_only(path: &Path, immutable: bool) -> Result<Self, ViewStoreError> {
        let conn = if path.is_file() {
            crate::schema::open_read_only(path, immutable)
        } else {
            Connection::open_in_memory().and_then(|c| c.execute_batch(SCHEMA).map(|()| c))
        }
        .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        Ok(Self {
            conn: Mutex::new(conn),
            read_only: true,
            checkpointer: None,
        })
    }

    fn writable(&self) -> Result<(), ViewStoreError> {
        if self.read_only {
            return Err(ViewStoreError::Backend(
                "the view store was opened read-only".into(),
            ));
        }
        Ok(())
    }

    fn conn(&self) -> Result<std::sync::MutexGuard<'_, Connection>, ViewStoreError> {
        self.conn
            .lock()
            .map_err(|_| ViewStoreError::Backend("view store lock poisoned".into()))
    }
}

/// The log hash saved with the checkpoints, if all three were saved at one
/// position with the same hash (an older view store has no such column).
fn checkpoint_hash(conn: &Connection) -> Result<Option<[u8; 32]>, ViewStoreError> {
    let has_column: bool = conn
        .query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('checkpoints') WHERE name = 'log_hash'",
            [],
            |r| r.get(0),
        )
        .map_err(err)?;
    if !has_column {
        return Ok(None);
    }
    let mut stmt = conn
        .prepare("SELECT position, log_hash FROM checkpoints")
        .map_err(err)?;
    let rows: Vec<(u64, Option<Vec<u8>>)> = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?.max(0) as u64, r.get(1)?)))
        .map_err(err)?
        .collect::<Result<_, _>>()
        .map_err(err)?;
    Ok(ledger_projections::agreed_checkpoint_hash(&rows))
}

fn position(conn: &Connection, name: &str) -> Result<u64, ViewStoreError> {
    position_in(
        conn,
        "SELECT position FROM checkpoints WHERE name = ?1",
        name,
    )
}

/// The position `sql` (one `?1` for the name) reads, 0 if no row.
fn position_in(conn: &Connection, sql: &str, name: &str) -> Result<u64, ViewStoreError> {
    let p: Option<i64> = conn
        .query_row(sql, [name], |r| r.get(0))
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(err(e)),
        })?;
    Ok(p.unwrap_or(0).max(0) as u64)
}

impl ViewStore for SqliteViewStore {
    fn load(&self) -> Result<ReadModel, ViewStoreError> {
        let conn = self.conn()?;
        // One read transaction: the rows and the checkpoints of one commit, even
        // while a running server saves (a reader beside `serve`, or a snapshot).
        let _read = conn.unchecked_transaction().map_err(err)?;
        let mut model = ReadModel::new();
        let mut stmt = conn
            .prepare("SELECT view FROM customer_views")
            .map_err(err)?;
        let mut rows = stmt.query([]).map_err(err)?;
        while let Some(row) = rows.next().map_err(err)? {
            let text: String = row.get(0).map_err(err)?;
            let v: CustomerView =
                serde_json::from_str(&text).map_err(|_| corrupt("customer view row"))?;
            model.customers.insert(v);
        }
        let mut stmt = conn
            .prepare(
                "SELECT broadcaster_id, currency, day, offer_id, gross_captured, refunded, net,
                        payment_count, refund_count FROM revenue",
            )
            .map_err(err)?;
        let mut rows = stmt.query([]).map_err(err)?;
        while let Some(row) = rows.next().map_err(err)? {
            let b: String = row.get(0).map_err(err)?;
            let c: String = row.get(1).map_err(err)?;
            let o: String = row.get(3).map_err(err)?;
            let key = RevenueKey {
                broadcaster_id: BroadcasterId::parse(&b).map_err(|_| corrupt("revenue row"))?,
                currency: Currency::from_stored(&c).map_err(|_| corrupt("revenue row"))?,
                day: row.get(2).map_err(err)?,
                offer_id: OfferId::parse(&o).map_err(|_| corrupt("revenue row"))?,
            };
            let totals = RevenueTotals {
                gross_captured: total_from_sql(row, 4)?,
                refunded: total_from_sql(row, 5)?,
                net: total_from_sql(row, 6)?,
                payment_count: row.get::<_, i64>(7).map_err(err)?.max(0) as u64,
                refund_count: row.get::<_, i64>(8).map_err(err)?.max(0) as u64,
            };
            model.revenue.insert(key, totals);
        }
        let mut stmt = conn.prepare("SELECT record FROM erasures").map_err(err)?;
        let mut rows = stmt.query([]).map_err(err)?;
        while let Some(row) = rows.next().map_err(err)? {
            let text: String = row.get(0).map_err(err)?;
            let r: ErasureRecord =
                serde_json::from_str(&text).map_err(|_| corrupt("erasure row"))?;
            model.erasures.insert(r);
        }
        model.customers.set_position(position(&conn, "customers")?);
        model.revenue.set_position(position(&conn, "revenue")?);
        model.erasures.set_position(position(&conn, "erasures")?);
        model.checkpoint_hash = checkpoint_hash(&conn)?;
        // Rows loaded from disk are not changes.
        model.customers.take_dirty();
        model.revenue.take_dirty();
        model.erasures.take_dirty();
        Ok(model)
    }

    fn save(&self, changes: &Changes) -> Result<(), ViewStoreError> {
        self.writable()?;
        let mut conn = self.conn()?;
        let tx = conn.transaction().map_err(err)?;
        {
            let mut put_view = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO customer_views (customer_id, view) VALUES (?1, ?2)",
                )
                .map_err(err)?;
            for v in &changes.customers {
                let text = serde_json::to_string(&**v)
                    .map_err(|_| ViewStoreError::Backend("a view could not be encoded".into()))?;
                put_view
                    .execute(params![v.customer_id.to_string(), text])
                    .map_err(err)?;
            }
            let mut put_rev = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO revenue (broadcaster_id, currency, day, offer_id,
                        gross_captured, refunded, net, payment_count, refund_count)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .map_err(err)?;
            for (k, t) in &changes.revenue {
                put_rev
                    .execute(params![
                        k.broadcaster_id.to_string(),
                        k.currency.as_str(),
                        k.day,
                        k.offer_id.as_str(),
                        total_to_sql(t.gross_captured),
                        total_to_sql(t.refunded),
                        total_to_sql(t.net),
                        t.payment_count as i64,
                        t.refund_count as i64
                    ])
                    .map_err(err)?;
            }
            let mut put_erasure = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO erasures (customer_id, record) VALUES (?1, ?2)",
                )
                .map_err(err)?;
            for r in &changes.erasures {
                let text = serde_json::to_string(r).map_err(|_| {
                    ViewStoreError::Backend("an erasure record could not be encoded".into())
                })?;
                put_erasure
                    .execute(params![r.customer_id.to_string(), text])
                    .map_err(err)?;
            }
            let mut put_pos = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO checkpoints (name, position, log_hash) VALUES (?1, ?2, ?3)",
                )
                .map_err(err)?;
            let p = &changes.positions;
            let hash = changes.log_hash.as_ref().map(|h| &h[..]);
            for (name, pos) in [
                ("customers", p.customers),
                ("revenue", p.revenue),
                ("erasures", p.erasures),
            ] {
                put_pos
                    .execute(params![name, pos as i64, hash])
                    .map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        self.saved(
            &conn,
            changes.customers.len() + changes.revenue.len() + changes.erasures.len() + 1,
        );
        Ok(())
    }

    fn clear(&self, name: Option<&str>) -> Result<(), ViewStoreError> {
        self.writable()?;
        let (c, r, e) = match name {
            None => (true, true, true),
            Some("customers") => (true, false, false),
            Some("revenue") => (false, true, false),
            Some("erasures") => (false, true, true),
            Some(_) => return Err(ViewStoreError::Backend("unknown projection".into())),
        };
        let mut conn = self.conn()?;
        let tx = conn.transaction().map_err(err)?;
        for (on, table, cp) in [
            (c, "customer_views", "customers"),
            (r, "revenue", "revenue"),
            (e, "erasures", "erasures"),
        ] {
            if on {
                tx.execute(&format!("DELETE FROM {table}"), [])
                    .map_err(err)?;
                tx.execute("DELETE FROM checkpoints WHERE name = ?1", [cp])
                    .map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        self.saved(&conn, CHECKPOINT_AFTER_ROWS);
        Ok(())
    }

    fn sink_position(&self, name: &str) -> Result<u64, ViewStoreError> {
        let conn = self.conn()?;
        // A read-only file written before sinks existed has no such table.
        if !table_present(&conn, "sink_checkpoints")? {
            return Ok(0);
        }
        position_in(
            &conn,
            "SELECT position FROM sink_checkpoints WHERE name = ?1",
            name,
        )
    }

    fn save_sink_position(&self, name: &str, position: u64) -> Result<(), ViewStoreError> {
        self.writable()?;
        self.conn()?
            .execute(
                "INSERT OR REPLACE INTO sink_checkpoints (name, position) VALUES (?1, ?2)",
                params![name, position as i64],
            )
            .map_err(err)?;
        Ok(())
    }

    fn webhook_endpoints(&self) -> Result<Vec<String>, ViewStoreError> {
        let conn = self.conn()?;
        if !table_present(&conn, "webhook_endpoints")? {
            return Ok(Vec::new());
        }
        let mut stmt = conn
            .prepare("SELECT doc FROM webhook_endpoints ORDER BY id")
            .map_err(err)?;
        let docs = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        Ok(docs)
    }

    fn put_webhook_endpoint(&self, id: &str, doc: Option<&str>) -> Result<(), ViewStoreError> {
        self.writable()?;
        let conn = self.conn()?;
        match doc {
            Some(doc) => conn.execute(
                "INSERT OR REPLACE INTO webhook_endpoints (id, doc) VALUES (?1, ?2)",
                params![id, doc],
            ),
            None => conn.execute("DELETE FROM webhook_endpoints WHERE id = ?1", params![id]),
        }
        .map_err(err)?;
        Ok(())
    }

    fn add_webhook_attempts(
        &self,
        endpoint: &str,
        docs: &[String],
        keep: usize,
    ) -> Result<(), ViewStoreError> {
        self.writable()?;
        let conn = self.conn()?;
        let tx = conn.unchecked_transaction().map_err(err)?;
        let last: i64 = tx
            .query_row(
                "SELECT COALESCE(MAX(seq), 0) FROM webhook_attempts WHERE endpoint = ?1",
                [endpoint],
                |r| r.get(0),
            )
            .map_err(err)?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO webhook_attempts (endpoint, seq, doc) VALUES (?1, ?2, ?3)",
                )
                .map_err(err)?;
            for (i, doc) in docs.iter().enumerate() {
                insert
                    .execute(params![endpoint, last + 1 + i as i64, doc])
                    .map_err(err)?;
            }
        }
        let newest = last + docs.len() as i64;
        tx.execute(
            "DELETE FROM webhook_attempts WHERE endpoint = ?1 AND seq <= ?2",
            params![endpoint, newest - keep as i64],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        // Twice the rows: as many are deleted once the history is full.
        self.saved(&conn, 2 * docs.len());
        Ok(())
    }

    fn webhook_attempts(
        &self,
        endpoint: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, String)>, ViewStoreError> {
        let conn = self.conn()?;
        if !table_present(&conn, "webhook_attempts")? {
            return Ok(Vec::new());
        }
        let before = before.map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
        let mut stmt = conn
            .prepare(
                "SELECT seq, doc FROM webhook_attempts WHERE endpoint = ?1 AND seq < ?2
                 ORDER BY seq DESC LIMIT ?3",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map(params![endpoint, before, limit as i64], |r| {
                Ok((r.get::<_, i64>(0)?.max(0) as u64, r.get::<_, String>(1)?))
            })
            .map_err(err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        Ok(rows)
    }
}

/// Whether a table exists (a read-only file written by an older version may lack
/// one).
fn table_present(conn: &Connection, name: &str) -> Result<bool, ViewStoreError> {
    conn.query_row(
        "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [name],
        |r| r.get(0),
    )
    .map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_projections::Positions;

    /// Webhook endpoints and attempts survive a reopen and a rebuild's `clear`;
    /// attempts are numbered on, listed newest first, and pruned to `keep`.
    #[test]
    fn webhook_documents_are_kept_apart_and_attempts_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("views.sqlite");
        let store = SqliteViewStore::open(&path).unwrap();
        store.put_webhook_endpoint("b", Some("{\"n\":2}")).unwrap();
        store.put_webhook_endpoint("a", Some("{\"n\":1}")).unwrap();
        store.put_webhook_endpoint("a", Some("{\"n\":3}")).unwrap();
        let docs: Vec<String> = (0..5).map(|i| format!("{{\"i\":{i}}}")).collect();
        store.add_webhook_attempts("a", &docs[..3], 4).unwrap();
        store.add_webhook_attempts("a", &docs[3..], 4).unwrap();
        store.clear(None).unwrap();
        drop(store);
        let store = SqliteViewStore::open(&path).unwrap();
        assert_eq!(
            store.webhook_endpoints().unwrap(),
            ["{\"n\":3}", "{\"n\":2}"]
        );
        let all = store.webhook_attempts("a", None, 10).unwrap();
        let seqs: Vec<u64> = all.iter().map(|(n, _)| *n).collect();
        assert_eq!(seqs, [5, 4, 3, 2], "newest first, the oldest pruned");
        assert_eq!(all[0].1, "{\"i\":4}");
        let older = store.webhook_attempts("a", Some(4), 2).unwrap();
        assert_eq!(older.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [3, 2]);
        assert!(store.webhook_attempts("b", None, 10).unwrap().is_empty());
        store.put_webhook_endpoint("a", None).unwrap();
        store.add_webhook_attempts("a", &[], 0).unwrap();
        assert_eq!(store.webhook_endpoints().unwrap(), ["{\"n\":2}"]);
        assert!(store.webhook_attempts("a", None, 10).unwrap().is_empty());
    }

    /// Under a steady stream of saves, the WAL still restarts: 96 MiB saved at
    /// 30 MB/s at most leave a WAL file of a fraction of that (before,
    /// every frame stayed in it: the file grew to more than what was written).
    #[test]
    fn the_wal_restarts_under_a_steady_stream_of_saves() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("views.sqlite");
        let store = SqliteViewStore::open(&path).unwrap();
        let docs: Vec<String> = (0..8)
            .map(|i| format!("{{\"i\":\"{}\"}}", "x".repeat(4000 + i)))
            .collect();
        let mut written = 0u64;
        let started = std::time::Instant::now();
        while written < 96 << 20 && started.elapsed() < std::time::Duration::from_secs(30) {
            store.add_webhook_attempts("a", &docs, 64).unwrap();
            written += docs.iter().map(|d| d.len() as u64).sum::<u64>();
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(
            written > 64 << 20,
            "only {written} bytes written: nothing tested"
        );
        let wal = std::fs::metadata(dir.path().join("views.sqlite-wal"))
            .unwrap()
            .len();
        assert!(
            wal < written / 2,
            "the WAL holds {wal} bytes after {written} written"
        );
    }

    /// A sink's checkpoint survives a reopen and a rebuild's `clear`, and does not
    /// count as a projection checkpoint (the log hash still agrees).
    #[test]
    fn sink_checkpoints_are_kept_apart_from_the_projections() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("views.sqlite");
        let store = SqliteViewStore::open(&path).unwrap();
        assert_eq!(store.sink_position("nats:LEDGER").unwrap(), 0);
        let changes = Changes {
            positions: Positions {
                customers: 7,
                revenue: 7,
                erasures: 7,
            },
            log_hash: Some([9; 32]),
            ..Changes::default()
        };
        store.save(&changes).unwrap();
        store.save_sink_position("nats:LEDGER", 5).unwrap();
        store.save_sink_position("nats:OTHER", 2).unwrap();
        store.clear(None).unwrap();
        store.save(&changes).unwrap();
        drop(store);
        let store = SqliteViewStore::open(&path).unwrap();
        assert_eq!(store.sink_position("nats:LEDGER").unwrap(), 5);
        assert_eq!(store.sink_position("nats:OTHER").unwrap(), 2);
        assert_eq!(store.load().unwrap().checkpoint_hash, Some([9; 32]));
    }

    /// Revenue totals are i128: one past i64 (a BLOB) and ordinary ones (INTEGER,
    /// as every file written before) both come back exactly.
    #[test]
    fn revenue_totals_beyond_i64_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteViewStore::open(&dir.path().join("views.sqlite")).unwrap();
        let key = |day| RevenueKey {
            broadcaster_id: BroadcasterId::parse("00000002-0000-4000-8000-000000000001").unwrap(),
            currency: Currency::parse("EUR").unwrap(),
            day,
            offer_id: OfferId::parse("premium").unwrap(),
        };
        let big = i128::from(i64::MAX) + 3_000_000_000_000;
        let rows = vec![
            (
                key(1),
                RevenueTotals {
                    gross_captured: big,
                    refunded: 5,
                    net: big - 5,
                    payment_count: 4,
                    refund_count: 1,
                },
            ),
            (
                key(2),
                RevenueTotals {
                    gross_captured: 0,
                    refunded: 700,
                    net: -700,
                    payment_count: 0,
                    refund_count: 1,
                },
            ),
        ];
        store
            .save(&Changes {
                customers: vec![],
                revenue: rows.clone(),
                erasures: vec![],
                positions: Positions {
                    customers: 9,
                    revenue: 9,
                    erasures: 9,
                },
                log_hash: None,
            })
            .unwrap();
        let model = store.load().unwrap();
        for (k, t) in &rows {
            assert_eq!(model.revenue.get(k), Some(t));
        }
        let conn = store.conn().unwrap();
        let kinds: Vec<String> = conn
            .prepare("SELECT typeof(gross_captured) FROM revenue ORDER BY day")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(kinds, ["blob", "integer"]);
    }

    /// A save never copies the WAL into the database itself (that stalled the
    /// projector, and every request reading its own write, for about 100 ms every
    /// few seconds): its connection does not checkpoint, and the background thread
    /// has the WAL copied into the database file shortly after.
    #[test]
    fn saves_leave_checkpoints_to_the_background_thread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("views.sqlite");
        let store = SqliteViewStore::open(&path).unwrap();
        let size = || std::fs::metadata(&path).unwrap().len();
        let before = size();
        let auto: i64 = store
            .conn()
            .unwrap()
            .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
            .unwrap();
        assert_eq!(auto, 0, "the saving connection never checkpoints");
        for p in 1..=(CHECKPOINT_AFTER_ROWS as u64 / 2 + 1) {
            let key = RevenueKey {
                broadcaster_id: BroadcasterId::new(),
                offer_id: OfferId::parse("monthly").unwrap(),
                currency: Currency::parse("EUR").unwrap(),
                day: 20_000 + p as i64,
            };
            let totals = RevenueTotals {
                gross_captured: 100,
                refunded: 0,
                net: 100,
                payment_count: 1,
                refund_count: 0,
            };
            store
                .save(&Changes {
                    customers: vec![],
                    revenue: vec![(key, totals)],
                    erasures: vec![],
                    positions: Positions {
                        customers: p,
                        revenue: p,
                        erasures: p,
                    },
                    log_hash: None,
                })
                .unwrap();
        }
        // The rows' pages reach the database file without another save.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while size() <= before {
            assert!(
                std::time::Instant::now() < deadline,
                "nothing was checkpointed: the database file is still {before} bytes"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}
