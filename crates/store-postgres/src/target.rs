//! The database to connect to, the sessions opened to it, and turning driver errors
//! into classified [`Failure`]s that never carry the connection password.

use std::fmt;
use std::time::Duration;

use ledger_store::StoreError;
use tokio::task::JoinHandle;
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};

use crate::backoff::OPEN_TIMEOUT;
use crate::condition::{Condition, Failure};

/// The TCP connect timeout per host when the URL sets none (the driver's default is
/// the operating system's, minutes for an address that does not answer).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A parsed connection target. `Debug` and every message show `host:port/db` only
/// (`h1:p1,h2:p2/db` for a multi-host URL).
///
/// A multi-host URL (`postgres://u@h1:p1,h2:p2,h3:p3/db?target_session_attrs=read-write`)
/// is the driver's: each session tries the hosts in order and keeps the first that
/// answers (and, with `read-write`, accepts writes), so after a fail-over the next
/// session finds the new primary. Opening a session may then take one connect
/// timeout per host, see [`open_timeout`](Self::open_timeout).
pub(crate) struct Target {
    config: Config,
    /// The password as text, to scrub from any message (belt and braces: the
    /// driver's messages do not echo it).
    secret: Option<String>,
    label: String,
    /// How long opening one session may take in all.
    open_timeout: Duration,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("database", &self.label)
            .finish()
    }
}

impl Target {
    pub(crate) fn parse(url: &str) -> Result<Self, Failure> {
        let mut config: Config = url.parse().map_err(|e: tokio_postgres::Error| {
            // The parser names the bad option, never its value; scrub the whole URL
            // anyway in case a future version echoes input.
            let msg = describe(&e).replace(url, "<url>");
            Failure::failed(format!("invalid PostgreSQL connection string: {msg}"))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let secret = config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .filter(|p| !p.is_empty());
        let ports = config.get_ports();
        let port = |i: usize| ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        let mut hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, h)| match h {
                Host::Tcp(h) => format!("{h}:{}", port(i)),
                #[cfg(unix)]
                Host::Unix(p) => format!("{}:{}", p.display(), port(i)),
            })
            .collect();
        if hosts.is_empty() {
            hosts.push(format!("localhost:{}", port(0)));
        }
        let db = config
            .get_dbname()
            .or(config.get_user())
            .unwrap_or("postgres");
        let label = format!("{}/{db}", hosts.join(","));
        // Every host may cost its connect timeout before the next is tried.
        let per_host = config
            .get_connect_timeout()
            .copied()
            .unwrap_or(CONNECT_TIMEOUT);
        let hosts = u32::try_from(hosts.len()).unwrap_or(u32::MAX);
        let open_timeout = OPEN_TIMEOUT.max(per_host.saturating_mul(hosts) + OPEN_TIMEOUT / 2);
        Ok(Self {
            config,
            secret,
            label,
            open_timeout,
        })
    }

    /// How long opening one session may take in all: [`OPEN_TIMEOUT`], or for a
    /// multi-host URL one connect timeout per host plus half of it for the
    /// start-up and authentication.
    pub(crate) fn open_timeout(&self) -> Duration {
        self.open_timeout
    }

    /// `host:port/database`.
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// Opens a session and spawns its driver task; gives up after
    /// [`open_timeout`](Self::open_timeout).
    /// `role` names the session in `pg_stat_activity.application_name`.
    pub(crate) async fn connect(&self, role: &str) -> Result<Session, Failure> {
        let mut config = self.config.clone();
        if config.get_application_name().is_none() {
            config.application_name(format!("ledger-store-postgres {role}"));
        }
        let context = || format!("cannot connect to PostgreSQL at {}", self.label);
        let limit = self.open_timeout;
        let (client, connection) = tokio::time::timeout(limit, config.connect(NoTls))
            .await
            .map_err(|_| {
                Failure::unavailable(format!("{}: no answer within {limit:?}", context()))
            })?
            .map_err(|e| self.failure(&context(), &e))?;
        let label = self.label.clone();
        let secret = self.secret.clone();
        let role = role.to_owned();
        let driver = tokio::spawn(async move {
            if let Err(e) = connection.await {
                let msg = scrub(describe(&e), secret.as_deref());
                tracing::warn!(database = %label, role = %role, error = %msg, "postgres connection ended with an error");
            }
        });
        Ok(Session { client, driver })
    }

    /// A driver error, classified (see `condition.rs`), with context, password
    /// scrubbed.
    pub(crate) fn failure(&self, context: &str, e: &tokio_postgres::Error) -> Failure {
        let Failure { condition, message } = Failure::of(e);
        let message = self.scrub(format!("{context}: {message}"));
        if condition == Condition::Full {
            // `Full` carries no message upstream: say here which database is full.
            tracing::error!(database = %self.label, error = %message, "PostgreSQL reports its disk full");
        }
        Failure { condition, message }
    }

    /// [`failure`](Self::failure) as a [`StoreError`]: `Unavailable`, `Full` or
    /// `Backend`.
    pub(crate) fn error(&self, context: &str, e: &tokio_postgres::Error) -> StoreError {
        self.failure(context, e).into()
    }

    pub(crate) fn scrub(&self, msg: String) -> String {
        scrub(msg, self.secret.as_deref())
    }
}

/// Waits until everything the server shows this session is as durable as an
/// acknowledged commit: on a primary with synchronous replication, also on its
/// synchronous standby.
///
/// Why: a session that dies while its commit waits for the standby leaves that
/// commit on the primary alone, yet visible to every later session (PostgreSQL
/// cannot take it back). A new session that settles a lost group, reloads the log
/// end or answers a repeated key destruction from what it sees would otherwise
/// acknowledge a write that a fail-over right after may lose. Assigning a
/// transaction id makes the commit write a WAL record, and a commit with
/// `synchronous_commit = on` returns only once the WAL up to it, so everything
/// committed before, is flushed where the server's synchronous standbys are. On a
/// server without standbys it costs one local commit.
pub(crate) async fn barrier(client: &Client, target: &Target) -> Result<(), Failure> {
    client
        .batch_execute("SET synchronous_commit = on; SELECT txid_current()")
        .await
        .map_err(|e| target.failure("cannot confirm that the visible writes are durable", &e))
}

/// An open session: the client and the task driving its connection.
pub(crate) struct Session {
    pub(crate) client: Client,
    driver: JoinHandle<()>,
}

impl Session {
    /// Completes when the connection has ended (killed, server gone, closed). The
    /// driver task runs on its own, so this notices a loss while the session is
    /// idle, before any request trips over it.
    pub(crate) async fn ended(&mut self) {
        if !self.driver.is_finished() {
            let _ = (&mut self.driver).await;
        }
    }

    /// Closes the connection and waits until its driver task is done.
    pub(crate) async fn close(self) {
        drop(self.client);
        let _ = self.driver.await;
    }
}

/// [`Session::ended`] of an optional session; never completes for `None`.
pub(crate) async fn ended(session: &mut Option<impl AsMut<Session>>) {
    match session {
        Some(s) => s.as_mut().ended().await,
        None => std::future::pending().await,
    }
}

impl AsMut<Session> for Session {
    fn as_mut(&mut self) -> &mut Session {
        self
    }
}

fn scrub(msg: String, secret: Option<&str>) -> String {
    match secret {
        Some(s) if msg.contains(s) => msg.replace(s, "***"),
        _ => msg,
    }
}

/// The driver's error with its cause. For a server error: severity, SQLSTATE and
/// message, but not DETAIL (which can quote row values).
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} {}: {}", db.severity(), db.code().code(), db.message());
    }
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_and_debug_hold_no_password() {
        let t = Target::parse("postgres://alice:hunter2pw@db.example:6543/ledger").unwrap();
        assert_eq!(t.label(), "db.example:6543/ledger");
        assert!(!format!("{t:?}").contains("hunter2pw"));
        assert_eq!(
            t.scrub("x hunter2pw y".into()),
            "x *** y",
            "the password is scrubbed from messages"
        );
    }

    #[test]
    fn a_multi_host_label_names_every_host_and_the_timeout_covers_them() {
        let url = "postgres://alice:pw@h1:5433,h2:5434,h3/ledger?target_session_attrs=read-write";
        let t = Target::parse(url).unwrap();
        assert_eq!(t.label(), "h1:5433,h2:5434,h3:5432/ledger");
        // Three hosts at the default 2 s connect timeout each, plus start-up.
        assert_eq!(t.open_timeout(), Duration::from_millis(8_500));
        let one = Target::parse("postgres://alice@h1:5433/ledger").unwrap();
        assert_eq!(one.label(), "h1:5433/ledger");
        assert_eq!(one.open_timeout(), OPEN_TIMEOUT);
        // In a URL a host without a port gets 5432; in key=value form one port
        // serves every host.
        let url_ports = Target::parse("postgres://alice@h1,h2:6000/ledger").unwrap();
        assert_eq!(url_ports.label(), "h1:5432,h2:6000/ledger");
        let same_port = Target::parse("host=h1,h2 port=6000 user=alice dbname=ledger").unwrap();
        assert_eq!(same_port.label(), "h1:6000,h2:6000/ledger");
    }

    #[test]
    fn a_bad_url_error_holds_no_password() {
        let url = "postgres://alice:hunter2pw@db.example:notaport/ledger";
        let e = Target::parse(url).unwrap_err().message;
        assert!(!e.contains("hunter2pw"), "{e}");
        assert!(e.contains("invalid PostgreSQL connection string"), "{e}");
    }
}
