//! What a failed PostgreSQL call means for the caller: the server cannot serve now
//! (retry later), its disk is full, or something else went wrong.
//!
//! The difference decides the answer upstream: `Unavailable` is HTTP 503 with
//! `Retry-After` (and readiness fails), `Full` is 507, anything else a plain
//! storage failure (500). The three stores of this crate report through three error
//! types (`StoreError`, `CryptoError`, `ViewStoreError`) that share the `Unavailable`
//! and `Full` variants, so the classification lives here once and a [`Failure`]
//! converts into each. The reconnect logic keys off the same classification: only an
//! `Unavailable` failure means the session may be gone.

use ledger_crypto::CryptoError;
use ledger_projections::ViewStoreError;
use ledger_store::StoreError;

use crate::target::describe;

/// How a failure is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Condition {
    /// The server cannot be reached or cannot serve this session now (lost
    /// connection, restart, fail-over, resource limits): a retry later may succeed.
    Unavailable,
    /// The server's disk is full (SQLSTATE 53100): nothing was written.
    Full,
    /// Anything else (a bad statement, a constraint, a refused login, bad data).
    Failed,
}

/// The driver's own messages for failures to connect to or talk with the server
/// (`tokio_postgres::Error` does not expose its kind). The unit tests below pin the
/// connect case to a real refused connection, so a driver upgrade that rewords it
/// fails a test instead of silently turning outages into 500s.
const CONNECTION_KINDS: [&str; 3] = [
    "error connecting to server",
    "error communicating with the server",
    "timeout waiting for server",
];

impl Condition {
    pub(crate) fn of(e: &tokio_postgres::Error) -> Self {
        if let Some(code) = e.code() {
            return Self::of_sqlstate(code.code());
        }
        if e.is_closed() || CONNECTION_KINDS.contains(&e.to_string().as_str()) {
            return Self::Unavailable;
        }
        // Encoding, decoding, parameter and protocol errors: bugs, not outages.
        Self::Failed
    }

    /// The condition a server error code stands for.
    pub(crate) fn of_sqlstate(code: &str) -> Self {
        match code {
            // disk_full
            "53100" => Self::Full,
            // Class 08, connection exception; class 53, insufficient resources
            // (out of memory, too many connections, configuration limit).
            c if c.starts_with("08") || c.starts_with("53") => Self::Unavailable,
            // admin_shutdown (pg_terminate_backend, a fast shutdown), crash_shutdown,
            // cannot_connect_now (starting up, shutting down, in recovery),
            // idle_session_timeout: the session is gone or cannot start yet.
            "57P01" | "57P02" | "57P03" | "57P05" => Self::Unavailable,
            // idle_in_transaction_session_timeout: the server ended the session.
            "25P03" => Self::Unavailable,
            // serialization_failure, deadlock_detected: nothing was done, retry.
            "40001" | "40P01" => Self::Unavailable,
            // read_only_sql_transaction: connected to a standby, as during a
            // fail-over before the new primary takes the address.
            "25006" => Self::Unavailable,
            // io_error: the server could not read or write its files (as SQLite's
            // I/O errors are classified in `ledger-store-sqlite`).
            "58030" => Self::Unavailable,
            _ => Self::Failed,
        }
    }
}

/// A classified failure with its message: context plus the driver's description,
/// never a bound value and never the password (see `target::describe`).
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) condition: Condition,
    pub(crate) message: String,
}

impl Failure {
    /// A driver error, classified, described by [`describe`] (the server's
    /// severity, code and message, never DETAIL, which can quote row values).
    /// Connection errors go through `Target::failure`, which also scrubs the
    /// password and adds the target.
    pub(crate) fn of(e: &tokio_postgres::Error) -> Self {
        Self {
            condition: Condition::of(e),
            message: describe(e),
        }
    }

    pub(crate) fn unavailable(message: String) -> Self {
        Self {
            condition: Condition::Unavailable,
            message,
        }
    }

    pub(crate) fn failed(message: String) -> Self {
        Self {
            condition: Condition::Failed,
            message,
        }
    }
}

impl From<Failure> for StoreError {
    fn from(f: Failure) -> Self {
        match f.condition {
            Condition::Unavailable => StoreError::Unavailable(f.message),
            Condition::Full => StoreError::Full,
            Condition::Failed => StoreError::Backend(f.message),
        }
    }
}

impl From<Failure> for CryptoError {
    fn from(f: Failure) -> Self {
        match f.condition {
            Condition::Unavailable => CryptoError::Unavailable(f.message),
            Condition::Full => CryptoError::Full,
            Condition::Failed => CryptoError::Store(f.message),
        }
    }
}

impl From<Failure> for ViewStoreError {
    fn from(f: Failure) -> Self {
        match f.condition {
            Condition::Unavailable => ViewStoreError::Unavailable(f.message),
            Condition::Full => ViewStoreError::Full,
            Condition::Failed => ViewStoreError::Backend(f.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_are_classified() {
        use Condition::*;
        for (code, want) in [
            ("53100", Full),
            ("08000", Unavailable),
            ("08006", Unavailable),
            ("08001", Unavailable),
            ("57P01", Unavailable),
            ("57P02", Unavailable),
            ("57P03", Unavailable),
            ("53300", Unavailable),
            ("53200", Unavailable),
            ("40001", Unavailable),
            ("40P01", Unavailable),
            ("23505", Failed),
            ("42P01", Failed),
            ("28P01", Failed),
            ("3D000", Failed),
            ("57014", Failed),
        ] {
            assert_eq!(Condition::of_sqlstate(code), want, "{code}");
        }
    }

    #[test]
    fn failures_become_each_stores_variants() {
        let f = || Failure::unavailable("lost".into());
        assert!(matches!(StoreError::from(f()), StoreError::Unavailable(m) if m == "lost"));
        assert!(matches!(
            CryptoError::from(f()),
            CryptoError::Unavailable(_)
        ));
        assert!(matches!(
            ViewStoreError::from(f()),
            ViewStoreError::Unavailable(_)
        ));
        let full = || Failure {
            condition: Condition::Full,
            message: "disk full".into(),
        };
        assert!(matches!(StoreError::from(full()), StoreError::Full));
        assert!(matches!(CryptoError::from(full()), CryptoError::Full));
        assert!(matches!(ViewStoreError::from(full()), ViewStoreError::Full));
        let other = || Failure::failed("bad".into());
        assert!(matches!(StoreError::from(other()), StoreError::Backend(_)));
        assert!(matches!(CryptoError::from(other()), CryptoError::Store(_)));
        assert!(matches!(
            ViewStoreError::from(other()),
            ViewStoreError::Backend(_)
        ));
    }

    #[tokio::test]
    async fn a_refused_connection_is_unavailable() {
        // Nothing listens on port 1: the driver's connect error, not a server's.
        let e = tokio_postgres::connect(
            "host=127.0.0.1 port=1 user=x connect_timeout=2",
            tokio_postgres::NoTls,
        )
        .await
        .err()
        .expect("nothing listens on port 1");
        assert_eq!(Condition::of(&e), Condition::Unavailable, "{e}");
    }
}
