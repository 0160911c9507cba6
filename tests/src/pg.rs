//! A fresh PostgreSQL database per test, dropped afterwards.
//!
//! The server comes from `LEDGER_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). If it cannot be reached the test
//! prints one line `skipped: ...` and returns; with `LEDGER_TEST_POSTGRES_REQUIRED=1`
//! (CI, which starts the server) that is a failure instead.

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A scratch database (its URL may hold a password: `Debug` shows its name only).
pub struct TestDatabase {
    admin: String,
    name: String,
    url: String,
}

/// A PostgreSQL test that cannot run: one line `skipped: REASON`, or a failure
/// with `LEDGER_TEST_POSTGRES_REQUIRED=1` (CI, which starts the server).
fn skip_or_fail(reason: &str) {
    if std::env::var("LEDGER_TEST_POSTGRES_REQUIRED").is_ok_and(|v| v == "1") {
        panic!("{reason}, and LEDGER_TEST_POSTGRES_REQUIRED=1");
    }
    // Straight to stderr: the harness would swallow eprintln! of a passing test.
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "skipped: {reason}");
}

pub fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

async fn exec(url: &str, sql: &str) -> Result<(), String> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| e.to_string())?;
    let task = tokio::spawn(conn);
    let r = client.batch_execute(sql).await.map_err(|e| e.to_string());
    drop(client);
    let _ = task.await;
    r
}

impl std::fmt::Debug for TestDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDatabase")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl TestDatabase {
    pub fn create(tag: &str) -> Option<Self> {
        // `ledger-under-test` opens no PostgreSQL store without the feature
        // (another build given in LEDGER_TEST_BIN may).
        if !cfg!(feature = "postgres") && std::env::var_os("LEDGER_TEST_BIN").is_none() {
            skip_or_fail(
                "ledger-under-test was built without the `postgres` feature (use --all-features)",
            );
            return None;
        }
        let admin =
            std::env::var("LEDGER_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.into());
        let name = format!("ledger_test_{tag}_{}", uuid::Uuid::new_v4().simple());
        if let Err(reason) = block_on(exec(&admin, &format!("CREATE DATABASE {name}"))) {
            let shown = admin.split('@').next_back().unwrap_or("?");
            skip_or_fail(&format!("PostgreSQL not reachable at {shown} ({reason})"));
            return None;
        }
        let (base, _) = admin.split('?').next()?.rsplit_once('/')?;
        let url = format!("{base}/{name}");
        Some(Self { admin, name, url })
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let _ = block_on(exec(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        ));
    }
}

/// Runs a one-parameter query returning one bigint.
pub fn query_i64<P>(url: &str, sql: &str, param: P) -> i64
where
    P: tokio_postgres::types::ToSql + Sync + Send + 'static,
{
    let (url, sql) = (url.to_owned(), sql.to_owned());
    block_on(async move {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        let task = tokio::spawn(conn);
        let n: i64 = client
            .query_one(&sql, &[&param])
            .await
            .expect("query")
            .get(0);
        drop(client);
        let _ = task.await;
        n
    })
}
