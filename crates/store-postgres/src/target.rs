//! The database to connect to, and turning driver errors into [`StoreError`]s that
//! never carry the connection password.

use std::fmt;

use ledger_store::StoreError;
use tokio::task::JoinHandle;
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};

/// A parsed connection target. `Debug` and every message show `host:port/db` only.
pub(crate) struct Target {
    config: Config,
    /// The password as text, to scrub from any message (belt and braces: the
    /// driver's messages do not echo it).
    secret: Option<String>,
    label: String,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("database", &self.label)
            .finish()
    }
}

impl Target {
    pub(crate) fn parse(url: &str) -> Result<Self, StoreError> {
        let config: Config = url.parse().map_err(|e: tokio_postgres::Error| {
            // The parser names the bad option, never its value; scrub the whole URL
            // anyway in case a future version echoes input.
            let msg = describe(&e).replace(url, "<url>");
            StoreError::Backend(format!("invalid PostgreSQL connection string: {msg}"))
        })?;
        let secret = config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .filter(|p| !p.is_empty());
        let host = match config.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            #[cfg(unix)]
            Some(Host::Unix(p)) => p.display().to_string(),
            None => "localhost".to_owned(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let db = config
            .get_dbname()
            .or(config.get_user())
            .unwrap_or("postgres");
        let label = format!("{host}:{port}/{db}");
        Ok(Self {
            config,
            secret,
            label,
        })
    }

    /// `host:port/database`.
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// Opens a connection and spawns its driver task.
    pub(crate) async fn connect(&self, role: &str) -> Result<(Client, JoinHandle<()>), StoreError> {
        let mut config = self.config.clone();
        if config.get_application_name().is_none() {
            config.application_name(format!("ledger-store-postgres {role}"));
        }
        let (client, connection) = config.connect(NoTls).await.map_err(|e| {
            self.error(
                &format!("cannot connect to PostgreSQL at {}", self.label),
                &e,
            )
        })?;
        let label = self.label.clone();
        let secret = self.secret.clone();
        let role = role.to_owned();
        let task = tokio::spawn(async move {
            if let Err(e) = connection.await {
                let msg = scrub(describe(&e), secret.as_deref());
                tracing::warn!(database = %label, role = %role, error = %msg, "postgres connection ended with an error");
            }
        });
        Ok((client, task))
    }

    /// A [`StoreError::Backend`] for a driver error, with context, password scrubbed.
    pub(crate) fn error(&self, context: &str, e: &tokio_postgres::Error) -> StoreError {
        StoreError::Backend(self.scrub(format!("{context}: {}", describe(e))))
    }

    pub(crate) fn scrub(&self, msg: String) -> String {
        scrub(msg, self.secret.as_deref())
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
    fn a_bad_url_error_holds_no_password() {
        let url = "postgres://alice:hunter2pw@db.example:notaport/ledger";
        let e = Target::parse(url).unwrap_err().to_string();
        assert!(!e.contains("hunter2pw"), "{e}");
        assert!(e.contains("invalid PostgreSQL connection string"), "{e}");
    }
}
