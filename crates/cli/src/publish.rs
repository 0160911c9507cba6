//! `ledger serve --publish nats://HOST:4222`: the public events to NATS JetStream
//! (ADR 0027). The URL, stream name and subject prefix are checked here in every
//! build, so a malformed one is refused at start with the same message whether
//! or not the client is built in; the client itself (`ledger-sink-nats`, the
//! `async-nats` crate) is behind the Cargo feature `nats`, off by default like the
//! server stores (ADR 0024): a build without it refuses `--publish` with
//! `PUBLISH_NOT_BUILT`.

use anyhow::{anyhow, bail, Result};

/// Where to publish, checked.
#[derive(Clone)]
pub struct Target {
    /// Read by the client only (a build without it refuses every target).
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    url: String,
    stream: String,
    prefix: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never shown.
        f.debug_struct("Target")
            .field("stream", &self.stream)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The schemes the NATS client takes.
const SCHEMES: [&str; 2] = ["nats", "tls"];

impl Target {
    /// Checks `--publish URL` (`nats://HOST:PORT` or `tls://HOST:PORT`, an optional
    /// `USER:PASSWORD@`), `--publish-stream` (letters, digits, `-`, `_`) and
    /// `--publish-prefix` (subject tokens separated by dots, without wildcards).
    /// Errors never echo the URL.
    pub fn parse(url: &str, stream: &str, prefix: &str) -> Result<Self> {
        let expected = "expected nats://HOST:PORT (or tls://HOST:PORT), e.g. nats://127.0.0.1:4222";
        let Some((scheme, rest)) = url.split_once("://") else {
            bail!("INVALID_PUBLISH_URL: --publish: {expected}");
        };
        if !SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()) {
            bail!("INVALID_PUBLISH_URL: --publish: unsupported scheme; {expected}");
        }
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let (host, port) = match host_port.rsplit_once(':') {
            Some((h, p)) if !host_port.ends_with(']') => (h, Some(p)),
            _ => (host_port, None),
        };
        let bracketed = host.starts_with('[') && host.ends_with(']');
        let host_ok = !host.is_empty()
            && (bracketed || !host.contains(':'))
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._[]:".contains(c));
        let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
        if !host_ok
            || !port_ok
            || authority.contains('/')
            || authority.contains(char::is_whitespace)
        {
            bail!("INVALID_PUBLISH_URL: --publish: malformed host or port; {expected}");
        }
        if stream.is_empty()
            || !stream
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            bail!("INVALID_PUBLISH_STREAM: --publish-stream must be letters, digits, '-' or '_'");
        }
        let token_ok = |t: &str| {
            !t.is_empty()
                && t.chars()
                    .all(|c| c.is_ascii_graphic() && !matches!(c, '*' | '>' | '.'))
        };
        if !prefix.split('.').all(token_ok) {
            bail!(
                "INVALID_PUBLISH_PREFIX: --publish-prefix must be subject tokens separated by dots, without '*' or '>'"
            );
        }
        Ok(Self {
            url: url.to_owned(),
            stream: stream.to_owned(),
            prefix: prefix.to_owned(),
        })
    }

    pub fn stream(&self) -> &str {
        &self.stream
    }
}

/// The error for `--publish` in a build without the `nats` feature.
fn not_built() -> anyhow::Error {
    anyhow!(
        "PUBLISH_NOT_BUILT: --publish names a NATS JetStream destination, and this ledger was built without the `nats` feature; build it with `cargo build --release --features nats` (or `--all-features`)"
    )
}

/// Refuses a target this build cannot publish to (before anything is opened).
pub fn check_built(target: Option<&Target>) -> Result<()> {
    if target.is_some() && !cfg!(feature = "nats") {
        return Err(not_built());
    }
    Ok(())
}

#[cfg(feature = "nats")]
mod nats {
    use std::sync::Arc;

    use ledger_app::health::Health;
    use ledger_app::sink::Sink;
    use ledger_projections::ViewStore;
    use ledger_sink_nats::{Nats, NatsTarget};
    use ledger_store::EventStore;

    use super::Target;

    /// The JetStream sink of `target`.
    pub fn sink(
        target: &Target,
        store: Arc<dyn EventStore>,
        views: Arc<dyn ViewStore>,
    ) -> Sink<Nats> {
        let nats = Nats::new(NatsTarget {
            url: target.url.clone(),
            stream: target.stream.clone(),
            prefix: target.prefix.clone(),
        });
        Sink::new(store, views, nats.checkpoint_name(), nats)
    }

    /// Runs the sink until `stop` (serve's shutdown signal).
    pub fn spawn(
        target: &Target,
        store: Arc<dyn EventStore>,
        views: Arc<dyn ViewStore>,
        health: Arc<Health>,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let sink = sink(target, store, views);
        tokio::spawn(async move { sink.run(stop, &health).await })
    }
}

#[cfg(feature = "nats")]
pub use nats::{sink, spawn};

/// Without the client, `check_built` has refused every target already.
#[cfg(not(feature = "nats"))]
pub fn spawn(
    _target: &Target,
    _store: std::sync::Arc<dyn ledger_store::EventStore>,
    _views: std::sync::Arc<dyn ledger_projections::ViewStore>,
    _health: std::sync::Arc<ledger_app::health::Health>,
    _stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async {})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(url: &str) -> String {
        Target::parse(url, "LEDGER", "ledger")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn nats_urls_are_taken_and_malformed_ones_refused_without_echoing_them() {
        for ok in [
            "nats://127.0.0.1:4222",
            "nats://localhost",
            "NATS://nats.example.com:4222/",
            "tls://user:s3cret@nats.example.com:4222",
            "nats://[::1]:4222",
            "nats://[::1]",
        ] {
            assert!(Target::parse(ok, "LEDGER", "ledger").is_ok(), "{ok}");
        }
        for bad in [
            "127.0.0.1:4222",
            "http://127.0.0.1:4222",
            "nats://",
            "nats://host:notaport",
            "nats://host:70000",
            "nats://host:0",
            "nats://host:4222/path",
            "nats://ho st:4222",
            "nats://user:s3cret@:4222",
            "nats://a:b:4222",
        ] {
            let e = refused(bad);
            assert!(e.starts_with("INVALID_PUBLISH_URL: "), "{bad}: {e}");
            assert!(!e.contains("s3cret") && !e.contains("notaport"), "{e}");
        }
    }

    #[test]
    fn stream_names_and_prefixes_are_checked() {
        let url = "nats://127.0.0.1:4222";
        assert!(Target::parse(url, "LEDGER_test-1", "ledger.prod").is_ok());
        for s in ["", "a.b", "a b", "A>"] {
            assert!(Target::parse(url, s, "ledger").is_err(), "{s:?}");
        }
        for p in ["", "a..b", ".a", "a.", "a.*", "a.>", "a b"] {
            assert!(Target::parse(url, "LEDGER", p).is_err(), "{p:?}");
        }
    }

    #[test]
    fn a_build_without_the_client_names_the_feature() {
        let t = Target::parse("nats://127.0.0.1:4222", "LEDGER", "ledger").unwrap();
        let r = check_built(Some(&t)).map_err(|e| e.to_string());
        if cfg!(feature = "nats") {
            assert!(r.is_ok(), "{r:?}");
        } else {
            let e = r.unwrap_err();
            assert!(e.starts_with("PUBLISH_NOT_BUILT: "), "{e}");
            assert!(e.contains("--features nats"), "{e}");
        }
        assert!(check_built(None).is_ok());
    }
}
