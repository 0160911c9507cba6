//! The schema with its migrations, the writer lock, and the writer session's
//! durability settings.
//!
//! The schema version lives in `schema_meta` (`key = 'schema_version'`). Migrations
//! are applied in order, each in its own transaction, by the writer connection at
//! connect, after it took the writer lock (so two processes never migrate at once);
//! a database written by a newer binary is refused rather than guessed at.

use std::time::{Duration, Instant};

use ledger_store::StoreError;
use tokio_postgres::Client;

use crate::condition::{Condition, Failure};
use crate::target::Target;

/// The writer lock: `pg_advisory_lock(WRITER_LOCK.0, WRITER_LOCK.1)`, session level,
/// held by the writer connection for as long as it lives. Advisory locks are per
/// database, so one server can host several ledgers. `0x4c454447` is "LEDG".
pub const WRITER_LOCK: (i32, i32) = (0x4c45_4447, 1);

/// The migrations, in order; index `i` brings the schema to version `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: the event log. Same columns and constraints as the SQLite backend; integers
    // are checked to the ranges the record format allows.
    "CREATE TABLE events (
        position       BIGINT  PRIMARY KEY CHECK (position > 0),
        stream         TEXT    NOT NULL,
        version        BIGINT  NOT NULL CHECK (version > 0),
        event_id       UUID    NOT NULL UNIQUE,
        event_type     TEXT    NOT NULL,
        schema_version INTEGER NOT NULL CHECK (schema_version BETWEEN 0 AND 65535),
        payload        BYTEA   NOT NULL,
        recorded_at    BIGINT  NOT NULL,
        hash           BYTEA   NOT NULL,
        log_hash       BYTEA   NOT NULL,
        UNIQUE (stream, version)
    );",
    // 2: saved answers to write requests (idempotency keys), see
    // `ledger_store::responses`. Same columns as the SQLite backend's `responses`
    // table; written by the writer session in its group commits.
    "CREATE TABLE ledger_responses (
        scope        BYTEA   NOT NULL CHECK (length(scope) = 16),
        key          TEXT    NOT NULL,
        fingerprint  BYTEA   NOT NULL CHECK (length(fingerprint) = 32),
        status       INTEGER NOT NULL CHECK (status BETWEEN 0 AND 65535),
        content_type TEXT,
        body         BYTEA   NOT NULL,
        saved_at     BIGINT  NOT NULL,
        PRIMARY KEY (scope, key)
    );
    CREATE INDEX ledger_responses_by_age ON ledger_responses (saved_at);",
];

/// The schema version this binary writes.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Prepares the writer session: durable commits, the writer lock, the schema.
///
/// `lock_held` is what finding the lock held by another session means: at start
/// another process is the writer ([`Condition::Failed`]); when reconnecting it may
/// be this process's own lost session that the server has not ended yet, or a
/// stand-in writer during a fail-over ([`Condition::Unavailable`]: try again later).
pub(crate) async fn prepare_writer(
    client: &Client,
    target: &Target,
    lock_wait: Duration,
    lock_held: Condition,
) -> Result<(), StoreError> {
    let err = |what: &str, e: tokio_postgres::Error| target.error(what, &e);
    // Acknowledged means durable: the commit returns after the WAL is flushed.
    // Every writer query is an index look-up by design; a generic plan cached while
    // the table was tiny must not stay a sequential scan as the log grows.
    client
        .batch_execute(
            "SET synchronous_commit = on; SET statement_timeout = 0; SET enable_seqscan = off",
        )
        .await
        .map_err(|e| err("cannot configure the writer session", e))?;
    let fsync: String = client
        .query_one("SHOW fsync", &[])
        .await
        .and_then(|r| r.try_get(0))
        .map_err(|e| err("cannot read the fsync setting", e))?;
    if fsync != "on" {
        tracing::warn!(database = %target.label(), "PostgreSQL runs with fsync = off: acknowledged appends are not crash-safe");
    }
    take_lock(client, target, lock_wait, lock_held).await?;
    migrate(client, target).await
}

async fn take_lock(
    client: &Client,
    target: &Target,
    wait: Duration,
    lock_held: Condition,
) -> Result<(), StoreError> {
    let deadline = Instant::now() + wait;
    loop {
        let got: bool = client
            .query_one(
                "SELECT pg_try_advisory_lock($1, $2)",
                &[&WRITER_LOCK.0, &WRITER_LOCK.1],
            )
            .await
            .and_then(|r| r.try_get(0))
            .map_err(|e| target.error("cannot take the writer lock", &e))?;
        if got {
            return Ok(());
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let holder: Option<i32> = client
        .query_opt(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND classid = $1::int4::oid AND objid = $2::int4::oid AND objsubid = 2
             LIMIT 1",
            &[&WRITER_LOCK.0, &WRITER_LOCK.1],
        )
        .await
        .ok()
        .flatten()
        .and_then(|r| r.try_get(0).ok());
    let holder = holder.map_or_else(|| "unknown".to_owned(), |p| p.to_string());
    Err(Failure {
        condition: lock_held,
        message: format!(
            "the event store at {} is locked by another writer (PostgreSQL backend pid \
             {holder} holds advisory lock {}/{}); only one ledger process may write to a \
             database",
            target.label(),
            WRITER_LOCK.0,
            WRITER_LOCK.1
        ),
    }
    .into())
}

/// Checks, creating nothing, that the database holds a ledger event store this
/// binary can read: the `events` table, and a schema version no newer than
/// [`SCHEMA_VERSION`]. For read-only access beside a running writer, which alone
/// migrates.
pub(crate) async fn check_readable(client: &Client, target: &Target) -> Result<(), StoreError> {
    let err = |e: tokio_postgres::Error| target.error("cannot read the schema", &e);
    let row = client
        .query_one(
            "SELECT to_regclass('events') IS NOT NULL, to_regclass('schema_meta') IS NOT NULL",
            &[],
        )
        .await
        .map_err(err)?;
    let events: bool = row.try_get(0).map_err(err)?;
    let meta: bool = row.try_get(1).map_err(err)?;
    if !events {
        return Err(no_event_store(target));
    }
    if meta {
        recorded_version(client, target).await?;
    }
    Ok(())
}

/// The schema version recorded in `schema_meta` (0 if none); a version newer than
/// this binary's is refused rather than guessed at.
async fn recorded_version(client: &Client, target: &Target) -> Result<i64, StoreError> {
    let err = |e: tokio_postgres::Error| target.error("cannot read the schema version", &e);
    let current: i64 = client
        .query_opt(
            "SELECT value FROM schema_meta WHERE key = 'schema_version'",
            &[],
        )
        .await
        .map_err(err)?
        .map(|r| r.try_get(0))
        .transpose()
        .map_err(err)?
        .unwrap_or(0);
    if current > SCHEMA_VERSION {
        return Err(StoreError::Backend(format!(
            "database schema version {current} is newer than this binary supports ({SCHEMA_VERSION})"
        )));
    }
    Ok(current)
}

/// The error for a database without the `events` table, opened read-only.
pub(crate) fn no_event_store(target: &Target) -> StoreError {
    StoreError::Backend(format!(
        "no ledger event store in the database {} (it has no `events` table; `ledger serve` \
         creates it): check --store",
        target.label()
    ))
}

async fn migrate(client: &Client, target: &Target) -> Result<(), StoreError> {
    let err = |e: tokio_postgres::Error| target.error("schema migration failed", &e);
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL)",
        )
        .await
        .map_err(err)?;
    let current = recorded_version(client, target).await?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current.max(0) as usize) {
        let version = i as i64 + 1;
        client.batch_execute("BEGIN").await.map_err(err)?;
        let applied = async {
            client.batch_execute(sql).await?;
            client
                .execute(
                    "INSERT INTO schema_meta (key, value) VALUES ('schema_version', $1)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    &[&version],
                )
                .await?;
            client.batch_execute("COMMIT").await
        }
        .await;
        if let Err(e) = applied {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(err(e));
        }
        tracing::info!(schema_version = version, "event store schema migrated");
    }
    Ok(())
}
