//! The key store and the projections' store on PostgreSQL, for users who keep
//! everything in one server database.
//!
//! Both traits (`KeyStore`, `ViewStore`) are synchronous: the callers run them on
//! blocking threads or hold them briefly. So each store owns one connection on a
//! private thread with its own single-threaded runtime (an actor) and callers wait
//! on a reply channel; no async runtime is ever entered from inside another.
//!
//! Key destruction is real for the live tables: the row is deleted, a tombstone is
//! written, and the table is vacuumed at once so the dead tuple's space is marked
//! free. PostgreSQL cannot overwrite freed space the way SQLite's `secure_delete`
//! does, and its WAL and base backups keep old pages for their retention time:
//! `docs/operations.md` lists that as a residual risk and what to do about it.

use std::sync::mpsc;
use std::sync::Mutex;
use std::thread::JoinHandle;

use ledger_crypto::{CryptoError, KeyState, KeyStore, Rewrap, WrappedKey};
use ledger_projections::{
    Changes, CustomerView, ErasureRecord, ReadModel, RevenueKey, RevenueTotals, ViewStore,
    ViewStoreError,
};
use ledger_types::{BroadcasterId, Currency, CustomerId, OfferId, Timestamp};
use tokio_postgres::{Client, NoTls};
use uuid::Uuid;

type Job = Box<dyn FnOnce(&tokio::runtime::Runtime, &mut Client) + Send>;

/// One connection on its own thread; `call` runs a closure there and waits.
#[derive(Debug)]
struct Actor {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Actor {
    fn start(url: &str, schema: &'static str) -> Result<Self, String> {
        let url = url.to_owned();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("ledger-pg-state".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let client = rt.block_on(async {
                    let (client, conn) = tokio_postgres::connect(&url, NoTls)
                        .await
                        .map_err(|e| pg_message(&e))?;
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    client
                        .batch_execute(schema)
                        .await
                        .map_err(|e| pg_message(&e))?;
                    Ok::<_, String>(client)
                });
                let mut client = match client {
                    Ok(c) => {
                        let _ = ready_tx.send(Ok(()));
                        c
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while let Ok(job) = jobs_rx.recv() {
                    job(&rt, &mut client);
                }
            })
            .map_err(|e| e.to_string())?;
        ready_rx
            .recv()
            .map_err(|_| "the PostgreSQL state thread stopped".to_owned())??;
        Ok(Self {
            jobs: Mutex::new(Some(jobs_tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&tokio::runtime::Runtime, &mut Client) -> T + Send + 'static,
    ) -> Result<T, String> {
        let (tx, rx) = mpsc::channel();
        let job: Job = Box::new(move |rt, c| {
            let _ = tx.send(f(rt, c));
        });
        self.jobs
            .lock()
            .map_err(|_| "state lock poisoned".to_owned())?
            .as_ref()
            .ok_or_else(|| "the PostgreSQL state store is closed".to_owned())?
            .send(job)
            .map_err(|_| "the PostgreSQL state thread stopped".to_owned())?;
        rx.recv()
            .map_err(|_| "the PostgreSQL state thread stopped".to_owned())
    }
}

impl Drop for Actor {
    fn drop(&mut self) {
        if let Ok(mut j) = self.jobs.lock() {
            j.take();
        }
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

/// A PostgreSQL error as text without any bound value (the server's message and
/// code only; our statements bind ids and ciphertext, never plaintext).
fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

const KEY_SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS ledger_data_keys (
        customer_id UUID PRIMARY KEY,
        wrapped BYTEA NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS ledger_destroyed_keys (
        customer_id UUID PRIMARY KEY,
        destroyed_at BIGINT NOT NULL
    );
";

/// Wrapped data keys and destruction tombstones in PostgreSQL.
#[derive(Debug)]
pub struct PgKeyStore {
    actor: Actor,
}

impl PgKeyStore {
    /// Connects (on a private thread) and creates the tables if needed.
    pub fn connect(url: &str) -> Result<Self, CryptoError> {
        Ok(Self {
            actor: Actor::start(url, KEY_SCHEMA).map_err(CryptoError::Store)?,
        })
    }
}

fn crypto(e: tokio_postgres::Error) -> CryptoError {
    CryptoError::Store(pg_message(&e))
}

async fn key_state(
    c: &impl tokio_postgres::GenericClient,
    id: Uuid,
) -> Result<KeyState, CryptoError> {
    if let Some(row) = c
        .query_opt(
            "SELECT wrapped FROM ledger_data_keys WHERE customer_id = $1",
            &[&id],
        )
        .await
        .map_err(crypto)?
    {
        return Ok(KeyState::Active(WrappedKey::from_stored(row.get(0))));
    }
    Ok(
        match c
            .query_opt(
                "SELECT destroyed_at FROM ledger_destroyed_keys WHERE customer_id = $1",
                &[&id],
            )
            .await
            .map_err(crypto)?
        {
            Some(row) => KeyState::Destroyed {
                at: Timestamp::from_millis(row.get(0)),
            },
            None => KeyState::Missing,
        },
    )
}

/// Marks the space of deleted or replaced wrapped keys free now rather than at the
/// next autovacuum (VACUUM cannot run inside a transaction).
async fn vacuum_keys(client: &tokio_postgres::Client) -> Result<(), CryptoError> {
    client
        .batch_execute("VACUUM ledger_data_keys")
        .await
        .map_err(crypto)
}

impl KeyStore for PgKeyStore {
    fn insert_new(&self, keys: &[(CustomerId, WrappedKey)]) -> Result<Vec<KeyState>, CryptoError> {
        let keys: Vec<(Uuid, Vec<u8>)> = keys
            .iter()
            .map(|(c, w)| (*c.as_uuid(), w.as_bytes().to_vec()))
            .collect();
        self.actor
            .call(move |rt, client| {
                rt.block_on(async {
                    let tx = client.transaction().await.map_err(crypto)?;
                    let now = Timestamp::now().millis();
                    let mut out = Vec::with_capacity(keys.len());
                    for (id, wrapped) in keys {
                        let destroyed = tx
                            .query_opt(
                                "SELECT 1 FROM ledger_destroyed_keys WHERE customer_id = $1",
                                &[&id],
                            )
                            .await
                            .map_err(crypto)?;
                        if destroyed.is_none() {
                            tx.execute(
                                "INSERT INTO ledger_data_keys (customer_id, wrapped, created_at)
                                 VALUES ($1, $2, $3) ON CONFLICT (customer_id) DO NOTHING",
                                &[&id, &wrapped, &now],
                            )
                            .await
                            .map_err(crypto)?;
                        }
                        out.push(key_state(&tx, id).await?);
                    }
                    tx.commit().await.map_err(crypto)?;
                    Ok(out)
                })
            })
            .map_err(CryptoError::Store)?
    }

    fn get(&self, customer: CustomerId) -> Result<KeyState, CryptoError> {
        let id = *customer.as_uuid();
        self.actor
            .call(move |rt, client| rt.block_on(key_state(&*client, id)))
            .map_err(CryptoError::Store)?
    }

    fn destroy(&self, customers: &[CustomerId], at: Timestamp) -> Result<usize, CryptoError> {
        let ids: Vec<Uuid> = customers.iter().map(|c| *c.as_uuid()).collect();
        self.actor
            .call(move |rt, client| {
                rt.block_on(async {
                    let tx = client.transaction().await.map_err(crypto)?;
                    let n = tx
                        .execute(
                            "DELETE FROM ledger_data_keys WHERE customer_id = ANY($1)",
                            &[&ids],
                        )
                        .await
                        .map_err(crypto)?;
                    tx.execute(
                        "INSERT INTO ledger_destroyed_keys (customer_id, destroyed_at)
                         SELECT id, $2 FROM UNNEST($1::uuid[]) AS id
                         ON CONFLICT (customer_id) DO NOTHING",
                        &[&ids, &at.millis()],
                    )
                    .await
                    .map_err(crypto)?;
                    tx.commit().await.map_err(crypto)?;
                    vacuum_keys(client).await?;
                    Ok(n as usize)
                })
            })
            .map_err(CryptoError::Store)?
    }

    fn rewrap_all(&self, rewrap: Rewrap) -> Result<usize, CryptoError> {
        self.actor
            .call(move |rt, client| {
                rt.block_on(async {
                    let tx = client.transaction().await.map_err(crypto)?;
                    let rows = tx
                        .query(
                            "SELECT customer_id, wrapped FROM ledger_data_keys FOR UPDATE",
                            &[],
                        )
                        .await
                        .map_err(crypto)?;
                    for row in &rows {
                        let id: Uuid = row.get(0);
                        let old = WrappedKey::from_stored(row.get(1));
                        let new = rewrap(CustomerId::from_uuid(id), &old)?;
                        tx.execute(
                            "UPDATE ledger_data_keys SET wrapped = $2 WHERE customer_id = $1",
                            &[&id, &new.as_bytes()],
                        )
                        .await
                        .map_err(crypto)?;
                    }
                    tx.commit().await.map_err(crypto)?;
                    vacuum_keys(client).await?;
                    Ok(rows.len())
                })
            })
            .map_err(CryptoError::Store)?
    }

    fn active_ids(&self) -> Result<Vec<CustomerId>, CryptoError> {
        self.actor
            .call(move |rt, client| {
                rt.block_on(async {
                    let rows = client
                        .query("SELECT customer_id FROM ledger_data_keys", &[])
                        .await
                        .map_err(crypto)?;
                    Ok(rows
                        .iter()
                        .map(|r| CustomerId::from_uuid(r.get(0)))
                        .collect())
                })
            })
            .map_err(CryptoError::Store)?
    }
}

const VIEW_SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS ledger_checkpoints (
        name TEXT PRIMARY KEY,
        position BIGINT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS ledger_customer_views (
        customer_id UUID PRIMARY KEY,
        view TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS ledger_revenue (
        broadcaster_id UUID NOT NULL,
        currency TEXT NOT NULL,
        day BIGINT NOT NULL,
        offer_id TEXT NOT NULL,
        gross_captured NUMERIC(39, 0) NOT NULL,
        refunded NUMERIC(39, 0) NOT NULL,
        net NUMERIC(39, 0) NOT NULL,
        payment_count BIGINT NOT NULL,
        refund_count BIGINT NOT NULL,
        PRIMARY KEY (broadcaster_id, currency, day, offer_id)
    );
    -- Revenue totals are i128 (sums of payments can pass i64): a table made while
    -- they were BIGINT is widened once, losslessly.
    DO $$
    BEGIN
        IF EXISTS (SELECT 1 FROM information_schema.columns
                   WHERE table_schema = current_schema() AND table_name = 'ledger_revenue'
                     AND column_name = 'gross_captured' AND data_type = 'bigint') THEN
            ALTER TABLE ledger_revenue
                ALTER COLUMN gross_captured TYPE NUMERIC(39, 0),
                ALTER COLUMN refunded TYPE NUMERIC(39, 0),
                ALTER COLUMN net TYPE NUMERIC(39, 0);
        END IF;
    END $$;
    CREATE TABLE IF NOT EXISTS ledger_erasures (
        customer_id UUID PRIMARY KEY,
        record TEXT NOT NULL
    );
";

/// The projections' rows and checkpoints in PostgreSQL, written in one
/// transaction per save (like `SqliteViewStore`).
#[derive(Debug)]
pub struct PgViewStore {
    actor: Actor,
}

impl PgViewStore {
    pub fn connect(url: &str) -> Result<Self, ViewStoreError> {
        Ok(Self {
            actor: Actor::start(url, VIEW_SCHEMA).map_err(ViewStoreError::Backend)?,
        })
    }
}

fn views(e: tokio_postgres::Error) -> ViewStoreError {
    ViewStoreError::Backend(pg_message(&e))
}

fn corrupt(what: &str) -> ViewStoreError {
    ViewStoreError::Corrupt(what.to_owned())
}

/// A revenue total read as `NUMERIC::text`.
fn total(text: &str) -> Result<i128, ViewStoreError> {
    text.parse().map_err(|_| corrupt("revenue row"))
}

impl ViewStore for PgViewStore {
    fn load(&self) -> Result<ReadModel, ViewStoreError> {
        self.actor
            .call(move |rt, client| {
                rt.block_on(async {
                    let mut model = ReadModel::new();
                    for row in client
                        .query("SELECT view FROM ledger_customer_views", &[])
                        .await
                        .map_err(views)?
                    {
                        let text: &str = row.get(0);
                        model.customers.insert(
                            serde_json::from_str::<CustomerView>(text)
                                .map_err(|_| corrupt("customer view row"))?,
                        );
                    }
                    for row in client
                        .query(
                            "SELECT broadcaster_id, currency, day, offer_id, gross_captured::text,
                                    refunded::text, net::text, payment_count, refund_count
                             FROM ledger_revenue",
                            &[],
                        )
                        .await
                        .map_err(views)?
                    {
                        let key = RevenueKey {
                            broadcaster_id: BroadcasterId::from_uuid(row.get(0)),
                            currency: Currency::from_stored(row.get(1))
                                .map_err(|_| corrupt("revenue row"))?,
                            day: row.get(2),
                            offer_id: OfferId::parse(row.get(3))
                                .map_err(|_| corrupt("revenue row"))?,
                        };
                        let totals = RevenueTotals {
                            gross_captured: total(row.get(4))?,
                            refunded: total(row.get(5))?,
                            net: total(row.get(6))?,
                            payment_count: row.get::<_, i64>(7).max(0) as u64,
                            refund_count: row.get::<_, i64>(8).max(0) as u64,
                        };
                        model.revenue.insert(key, totals);
                    }
                    for row in client
                        .query("SELECT record FROM ledger_erasures", &[])
                        .await
                        .map_err(views)?
                    {
                        let text: &str = row.get(0);
                        model.erasures.insert(
                            serde_json::from_str::<ErasureRecord>(text)
                                .map_err(|_| corrupt("erasure row"))?,
                        );
                    }
                    for row in client
                        .query("SELECT name, position FROM ledger_checkpoints", &[])
                        .await
                        .map_err(views)?
                    {
                        let p = row.get::<_, i64>(1).max(0) as u64;
                        match row.get::<_, &str>(0) {
                            "customers" => model.customers.set_position(p),
                            "revenue" => model.revenue.set_position(p),
                            "erasures" => model.erasures.set_position(p),
                            _ => {}
                        }
                    }
                    model.customers.take_dirty();
                    model.revenue.take_dirty();
                    model.erasures.take_dirty();
                    Ok(model)
                })
            })
            .map_err(ViewStoreError::Backend)?
    }

    fn save(&self, changes: &Changes) -> Result<(), ViewStoreError> {
        let view_ids: Vec<Uuid> = changes
            .customers
            .iter()
            .map(|v| *v.customer_id.as_uuid())
            .collect();
        let view_texts = changes
            .customers
            .iter()
            .map(|v| json(&**v))
            .collect::<Result<Vec<_>, _>>()?;
        let er_ids: Vec<Uuid> = changes
            .erasures
            .iter()
            .map(|r| *r.customer_id.as_uuid())
            .collect();
        let er_texts = changes
            .erasures
            .iter()
            .map(json)
            .collect::<Result<Vec<_>, _>>()?;
        let mut rev: (Vec<Uuid>, Vec<String>, Vec<i64>, Vec<String>) = Default::default();
        // Totals travel as base-10 text (tokio-postgres has no i128 <-> NUMERIC).
        let mut sums: [Vec<String>; 3] = Default::default();
        let mut counts: [Vec<i64>; 2] = Default::default();
        for (k, t) in &changes.revenue {
            rev.0.push(*k.broadcaster_id.as_uuid());
            rev.1.push(k.currency.as_str().to_owned());
            rev.2.push(k.day);
            rev.3.push(k.offer_id.as_str().to_owned());
            sums[0].push(t.gross_captured.to_string());
            sums[1].push(t.refunded.to_string());
            sums[2].push(t.net.to_string());
            counts[0].push(t.payment_count as i64);
            counts[1].push(t.refund_count as i64);
        }
        let p = &changes.positions;
        let positions = [
            ("customers", p.customers as i64),
            ("revenue", p.revenue as i64),
            ("erasures", p.erasures as i64),
        ];
        self.actor
            .call(move |rt, client| {
                rt.block_on(async {
                    let tx = client.transaction().await.map_err(views)?;
                    tx.execute(
                        "INSERT INTO ledger_customer_views (customer_id, view)
                         SELECT * FROM UNNEST($1::uuid[], $2::text[])
                         ON CONFLICT (customer_id) DO UPDATE SET view = EXCLUDED.view",
                        &[&view_ids, &view_texts],
                    )
                    .await
                    .map_err(views)?;
                    tx.execute(
                        "INSERT INTO ledger_revenue (broadcaster_id, currency, day, offer_id,
                             gross_captured, refunded, net, payment_count, refund_count)
                         SELECT b, c, d, o, g::numeric, r::numeric, n::numeric, pc, rc
                         FROM UNNEST($1::uuid[], $2::text[], $3::bigint[], $4::text[],
                             $5::text[], $6::text[], $7::text[], $8::bigint[], $9::bigint[])
                             AS u(b, c, d, o, g, r, n, pc, rc)
                         ON CONFLICT (broadcaster_id, currency, day, offer_id) DO UPDATE SET
                             gross_captured = EXCLUDED.gross_captured, refunded = EXCLUDED.refunded,
                             net = EXCLUDED.net, payment_count = EXCLUDED.payment_count,
                             refund_count = EXCLUDED.refund_count",
                        &[
                            &rev.0, &rev.1, &rev.2, &rev.3, &sums[0], &sums[1], &sums[2],
                            &counts[0], &counts[1],
                        ],
                    )
                    .await
                    .map_err(views)?;
                    tx.execute(
                        "INSERT INTO ledger_erasures (customer_id, record)
                         SELECT * FROM UNNEST($1::uuid[], $2::text[])
                         ON CONFLICT (customer_id) DO UPDATE SET record = EXCLUDED.record",
                        &[&er_ids, &er_texts],
                    )
                    .await
                    .map_err(views)?;
                    for (name, pos) in positions {
                        tx.execute(
                            "INSERT INTO ledger_checkpoints (name, position) VALUES ($1, $2)
                             ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position",
                            &[&name, &pos],
                        )
                        .await
                        .map_err(views)?;
                    }
                    tx.commit().await.map_err(views)
                })
            })
            .map_err(ViewStoreError::Backend)?
    }

    fn clear(&self, name: Option<&str>) -> Result<(), ViewStoreError> {
        let (c, r, e) = match name {
            None => (true, true, true),
            Some("customers") => (true, false, false),
            Some("revenue") => (false, true, false),
            Some("erasures") => (false, true, true),
            Some(_) => return Err(ViewStoreError::Backend("unknown projection".into())),
        };
        self.actor
            .call(move |rt, client| {
                rt.block_on(async {
                    let tx = client.transaction().await.map_err(views)?;
                    for (on, table, cp) in [
                        (c, "ledger_customer_views", "customers"),
                        (r, "ledger_revenue", "revenue"),
                        (e, "ledger_erasures", "erasures"),
                    ] {
                        if on {
                            tx.execute(&format!("DELETE FROM {table}"), &[])
                                .await
                                .map_err(views)?;
                            tx.execute("DELETE FROM ledger_checkpoints WHERE name = $1", &[&cp])
                                .await
                                .map_err(views)?;
                        }
                    }
                    tx.commit().await.map_err(views)
                })
            })
            .map_err(ViewStoreError::Backend)?
    }
}

fn json<T: serde::Serialize>(row: &T) -> Result<String, ViewStoreError> {
    serde_json::to_string(row)
        .map_err(|_| ViewStoreError::Backend("a row could not be encoded".into()))
}
