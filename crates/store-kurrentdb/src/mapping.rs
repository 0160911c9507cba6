//! The pure mapping between the ledger's record model and KurrentDB's: stream
//! names, versions and revisions, event data and custom metadata, and errors.
//!
//! Nothing here does I/O, so all of it is unit-tested without a server.
//!
//! | ledger                                  | KurrentDB                                        |
//! |-----------------------------------------|--------------------------------------------------|
//! | stream `S` in namespace `N`             | stream `N-S` (`N` holds no `-`, so prefixes never nest) |
//! | version `v` (1-based, 0 = no stream)    | revision `v - 1` (0-based)                        |
//! | `ExpectedVersion::Any`                  | `StreamState::Any`                                |
//! | `ExpectedVersion::NoStream`, `Exact(0)` | `StreamState::NoStream`                           |
//! | `ExpectedVersion::Exact(n)`, `n >= 1`   | `StreamState::StreamRevision(n - 1)`              |
//! | event id (UUID)                         | event id (the same UUID)                          |
//! | event type                              | event type                                        |
//! | payload (sealed, opaque bytes)          | event data, content type binary                   |
//! | schema version, recorded-at, position, hash, log hash | custom metadata (JSON, [`Meta`])    |
//!
//! The writer never sends `Any` to the server: it checks the caller's expectation
//! against its own view and then appends with the exact current revision
//! ([`stream_state_for_current`]), so the server refuses any write that another
//! process slipped in meanwhile.

use kurrentdb::{CurrentRevision, StreamState};
use ledger_store::{ExpectedVersion, Hash32, NewEvent, RecordedEvent, StoreError, Version};
use ledger_types::{EventId, Timestamp};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::backend::{RawEvent, RawNew};

/// The namespace used by [`crate::connect`].
pub const DEFAULT_NAMESPACE: &str = "ledger";
/// Longest accepted namespace, in bytes.
pub const MAX_NAMESPACE_BYTES: usize = 64;

/// Stream naming within one ledger namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    namespace: String,
    data_prefix: String,
}

impl Names {
    /// A namespace is 1 to 64 ASCII letters, digits or `_`: no `-` (so that the
    /// prefix `ns-` of one namespace is never a prefix of another's) and no `$`
    /// (KurrentDB's system streams).
    pub fn new(namespace: &str) -> Result<Self, StoreError> {
        let ok = !namespace.is_empty()
            && namespace.len() <= MAX_NAMESPACE_BYTES
            && namespace
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !ok {
            return Err(StoreError::Invalid(format!(
                "a KurrentDB namespace is 1 to {MAX_NAMESPACE_BYTES} ASCII letters, digits or '_'"
            )));
        }
        Ok(Self {
            namespace: namespace.to_owned(),
            data_prefix: format!("{namespace}-"),
        })
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The prefix of every KurrentDB stream holding this namespace's events; the
    /// server-side `$all` filter.
    pub fn data_prefix(&self) -> &str {
        &self.data_prefix
    }

    /// Our stream name to the KurrentDB stream name.
    pub fn kurrent_stream(&self, stream: &str) -> String {
        format!("{}{stream}", self.data_prefix)
    }

    /// A KurrentDB stream name back to ours, if it belongs to this namespace.
    pub fn ledger_stream<'a>(&self, stream_id: &'a str) -> Option<&'a str> {
        stream_id
            .strip_prefix(self.data_prefix.as_str())
            .filter(|s| !s.is_empty())
    }
}

/// Our 1-based version of the event at KurrentDB revision `revision`.
pub fn version_of_revision(revision: u64) -> Version {
    revision + 1
}

/// The KurrentDB revision of our version `version` (`None` for 0, "no event").
pub fn revision_of_version(version: Version) -> Option<u64> {
    version.checked_sub(1)
}

/// The documented mapping of a caller's expectation to KurrentDB's. The writer
/// checks expectations itself and sends [`stream_state_for_current`]; this is the
/// correspondence the ADR and the tests pin down.
#[cfg_attr(not(test), allow(dead_code))]
pub fn expected_revision(expected: ExpectedVersion) -> StreamState {
    match expected {
        ExpectedVersion::Any => StreamState::Any,
        ExpectedVersion::NoStream | ExpectedVersion::Exact(0) => StreamState::NoStream,
        ExpectedVersion::Exact(n) => StreamState::StreamRevision(n - 1),
    }
}

/// What the writer sends: the exact state it checked against (a stream whose last
/// version is `current`).
pub fn stream_state_for_current(current: Version) -> StreamState {
    match revision_of_version(current) {
        None => StreamState::NoStream,
        Some(r) => StreamState::StreamRevision(r),
    }
}

/// Our version for KurrentDB's reported current revision.
pub fn version_of_current(current: CurrentRevision) -> Version {
    match current {
        CurrentRevision::NoStream => 0,
        CurrentRevision::Current(r) => version_of_revision(r),
    }
}

/// The custom metadata stored with each event (JSON). `ns` tells our events from
/// anything else written under the same prefix; `writer` is the id of the process
/// that appended it (foreign writes are detected by it, see `follower`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub ns: String,
    pub schema_version: u16,
    /// Milliseconds since the epoch.
    pub recorded_at: i64,
    pub position: u64,
    /// Hex of the per-stream chain hash.
    pub hash: String,
    /// Hex of the log chain hash.
    pub log_hash: String,
    pub writer: Uuid,
}

/// The KurrentDB event for a planned record.
pub fn encode(ns: &str, writer: Uuid, record: &RecordedEvent) -> RawNew {
    let meta = Meta {
        ns: ns.to_owned(),
        schema_version: record.schema_version,
        recorded_at: record.recorded_at.millis(),
        position: record.position,
        hash: hex::encode(record.hash),
        log_hash: hex::encode(record.log_hash),
        writer,
    };
    RawNew {
        id: *record.event_id.as_uuid(),
        event_type: record.event_type.clone(),
        data: record.payload.clone(),
        // A struct of strings and integers always serializes.
        metadata: serde_json::to_vec(&meta).unwrap_or_default(),
    }
}

/// A KurrentDB event, read back.
#[derive(Debug)]
pub enum Decoded {
    /// One of this namespace's records, with the id of the process that wrote it.
    Ours(RecordedEvent, Uuid),
    /// Not ours: another namespace, a system or link event, or no ledger metadata.
    NotOurs,
}

/// Decodes a KurrentDB event. An event under our prefix whose metadata names our
/// namespace but does not decode is an integrity violation, not a skip.
pub fn decode(names: &Names, raw: &RawEvent) -> Result<Decoded, StoreError> {
    let Some(stream) = names.ledger_stream(&raw.stream_id) else {
        return Ok(Decoded::NotOurs);
    };
    if raw.event_type.starts_with('$') {
        return Ok(Decoded::NotOurs);
    }
    #[derive(Deserialize)]
    struct NsOnly {
        ns: Option<String>,
    }
    match serde_json::from_slice::<NsOnly>(&raw.metadata) {
        Ok(NsOnly { ns: Some(ns) }) if ns == names.namespace() => {}
        _ => return Ok(Decoded::NotOurs),
    }
    let version = version_of_revision(raw.revision);
    let bad = |what: &str, position: u64| StoreError::Integrity {
        position,
        reason: format!(
            "KurrentDB event {} (stream version {version}) has {what}",
            raw.id
        ),
    };
    let meta: Meta =
        serde_json::from_slice(&raw.metadata).map_err(|_| bad("malformed ledger metadata", 0))?;
    let hash = parse_hash(&meta.hash).ok_or_else(|| bad("a malformed hash", meta.position))?;
    let log_hash =
        parse_hash(&meta.log_hash).ok_or_else(|| bad("a malformed log hash", meta.position))?;
    if meta.position == 0 {
        return Err(bad("position 0", 0));
    }
    Ok(Decoded::Ours(
        RecordedEvent {
            position: meta.position,
            stream: stream.to_owned(),
            version,
            event_id: EventId::from_uuid(raw.id),
            event_type: raw.event_type.clone(),
            schema_version: meta.schema_version,
            payload: raw.data.clone(),
            recorded_at: Timestamp::from_millis(meta.recorded_at),
            hash,
            log_hash,
        },
        meta.writer,
    ))
}

fn parse_hash(s: &str) -> Option<Hash32> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// An event as the caller sent it, for size checks before planning.
pub fn encoded_size_estimate(e: &NewEvent) -> usize {
    // Metadata JSON is about 330 bytes; the id, type and framing add the rest.
    e.payload.len() + e.event_type.len() + 400
}

/// Maps a client error to a store error. The message never holds the connection
/// string (which may carry credentials) nor any event data.
pub fn map_error(e: &kurrentdb::Error) -> StoreError {
    use kurrentdb::Error as E;
    let msg = match e {
        E::WrongExpectedVersion { expected, current } => {
            // Callers that know the stream map this with `conflict`; reaching here
            // means an append the writer did not expect to race.
            format!(
                "kurrentdb: wrong expected version (expected {expected:?}, current {current:?})"
            )
        }
        E::ServerError(m) => format!("kurrentdb: server error: {}", redact(m)),
        E::NotLeaderException(_) => {
            "kurrentdb: the node is not the leader (the client reconnects; retry)".into()
        }
        E::ConnectionClosed => "kurrentdb: connection closed".into(),
        E::Grpc { code, message } => {
            format!("kurrentdb: gRPC error {code:?}: {}", redact(message))
        }
        E::GrpcConnectionError(_) => "kurrentdb: cannot connect to the cluster".into(),
        E::InternalParsingError(_) => "kurrentdb: malformed response".into(),
        E::AccessDenied => {
            "kurrentdb: access denied (check the user in the connection string)".into()
        }
        E::ResourceAlreadyExists => "kurrentdb: resource already exists".into(),
        E::ResourceNotFound => "kurrentdb: resource not found".into(),
        E::ResourceDeleted => "kurrentdb: the stream was deleted".into(),
        E::UnsupportedFeature => "kurrentdb: the server does not support this operation".into(),
        E::InternalClientError => "kurrentdb: internal client error".into(),
        E::DeadlineExceeded => "kurrentdb: deadline exceeded".into(),
        E::InitializationError(_) => "kurrentdb: client initialization failed".into(),
        E::IllegalStateError(m) => format!("kurrentdb: illegal state: {}", redact(m)),
    };
    StoreError::Backend(msg)
}

/// A refused append, as the caller sees it.
pub fn conflict(stream: &str, expected: ExpectedVersion, actual: Version) -> StoreError {
    StoreError::Conflict {
        stream: stream.to_owned(),
        expected,
        actual,
    }
}

/// Removes `user:password@` from anything that looks like a URL, and bounds the
/// length, so a server or client message cannot leak credentials into logs.
pub fn redact(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(300));
    let mut rest = message;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '/' || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***@");
                out.push_str(&authority[at + 1..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    if out.len() > 300 {
        let mut cut = 300;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::AllPos;

    fn record() -> RecordedEvent {
        RecordedEvent {
            position: 42,
            stream: "customer-7".into(),
            version: 3,
            event_id: EventId::new(),
            event_type: "CustomerRegistered".into(),
            schema_version: 2,
            payload: vec![0, 1, 2, 255],
            recorded_at: Timestamp::from_millis(1_700_000_000_123),
            hash: [7u8; 32],
            log_hash: [9u8; 32],
        }
    }

    fn raw_of(names: &Names, r: &RecordedEvent, writer: Uuid) -> RawEvent {
        let n = encode(names.namespace(), writer, r);
        RawEvent {
            stream_id: names.kurrent_stream(&r.stream),
            id: n.id,
            revision: revision_of_version(r.version).unwrap(),
            event_type: n.event_type,
            data: n.data,
            metadata: n.metadata,
            all: AllPos {
                commit: 100,
                prepare: 100,
            },
        }
    }

    #[test]
    fn namespaces_are_checked_and_never_nest() {
        assert!(Names::new("ledger").is_ok());
        assert!(Names::new("tenant_a1").is_ok());
        for bad in ["", "a-b", "$all", "a b", "a.b", &"x".repeat(65)] {
            assert!(
                matches!(Names::new(bad), Err(StoreError::Invalid(_))),
                "{bad:?} must be refused"
            );
        }
        let n = Names::new("ledger").unwrap();
        assert_eq!(n.kurrent_stream("customer-1"), "ledger-customer-1");
        assert_eq!(n.ledger_stream("ledger-customer-1"), Some("customer-1"));
        assert_eq!(n.ledger_stream("ledger-"), None);
        assert_eq!(n.ledger_stream("ledgerx-customer-1"), None);
        assert_eq!(n.ledger_stream("$stats-127.0.0.1:2113"), None);
        // Another namespace can never fall under our prefix.
        let other = Names::new("ledger2").unwrap();
        assert_eq!(n.ledger_stream(&other.kurrent_stream("s")), None);
    }

    #[test]
    fn versions_and_revisions() {
        assert_eq!(version_of_revision(0), 1);
        assert_eq!(revision_of_version(1), Some(0));
        assert_eq!(revision_of_version(0), None);
        assert_eq!(expected_revision(ExpectedVersion::Any), StreamState::Any);
        assert_eq!(
            expected_revision(ExpectedVersion::NoStream),
            StreamState::NoStream
        );
        assert_eq!(
            expected_revision(ExpectedVersion::Exact(0)),
            StreamState::NoStream
        );
        assert_eq!(
            expected_revision(ExpectedVersion::Exact(5)),
            StreamState::StreamRevision(4)
        );
        assert_eq!(stream_state_for_current(0), StreamState::NoStream);
        assert_eq!(stream_state_for_current(3), StreamState::StreamRevision(2));
        assert_eq!(version_of_current(CurrentRevision::NoStream), 0);
        assert_eq!(version_of_current(CurrentRevision::Current(4)), 5);
    }

    #[test]
    fn event_data_and_metadata_round_trip() {
        let names = Names::new("ledger").unwrap();
        let r = record();
        let writer = Uuid::new_v4();
        let n = encode("ledger", writer, &r);
        assert_eq!(
            n.id,
            *r.event_id.as_uuid(),
            "the event id is the KurrentDB id"
        );
        assert_eq!(n.event_type, "CustomerRegistered");
        assert_eq!(n.data, r.payload, "the payload is the event data, as is");
        let meta: Meta = serde_json::from_slice(&n.metadata).unwrap();
        assert_eq!(
            meta,
            Meta {
                ns: "ledger".into(),
                schema_version: 2,
                recorded_at: 1_700_000_000_123,
                position: 42,
                hash: hex::encode([7u8; 32]),
                log_hash: hex::encode([9u8; 32]),
                writer,
            }
        );
        let raw = raw_of(&names, &r, writer);
        match decode(&names, &raw).unwrap() {
            Decoded::Ours(back, w) => {
                assert!(back == r, "decode(encode(r)) == r");
                assert_eq!(w, writer);
            }
            Decoded::NotOurs => panic!("our own event must decode"),
        }
    }

    #[test]
    fn metadata_is_plain_json_without_payload() {
        let mut r = record();
        r.payload = b"SECRET-SEALED-BYTES".to_vec();
        let n = encode("ledger", Uuid::nil(), &r);
        let text = String::from_utf8(n.metadata).unwrap();
        assert!(!text.contains("SECRET"));
        assert!(text.contains("\"position\":42"));
    }

    #[test]
    fn foreign_system_and_link_events_are_not_ours() {
        let names = Names::new("ledger").unwrap();
        let r = record();
        let mut raw = raw_of(&names, &r, Uuid::nil());
        raw.stream_id = "other-customer-7".into();
        assert!(matches!(decode(&names, &raw), Ok(Decoded::NotOurs)));

        let mut raw = raw_of(&names, &r, Uuid::nil());
        raw.event_type = "$>".into();
        assert!(matches!(decode(&names, &raw), Ok(Decoded::NotOurs)));

        let mut raw = raw_of(&names, &r, Uuid::nil());
        raw.metadata = b"{}".to_vec();
        assert!(matches!(decode(&names, &raw), Ok(Decoded::NotOurs)));
        raw.metadata = b"not json".to_vec();
        assert!(matches!(decode(&names, &raw), Ok(Decoded::NotOurs)));

        let other = Names::new("ledger2").unwrap();
        let raw = raw_of(&other, &r, Uuid::nil());
        assert!(matches!(decode(&names, &raw), Ok(Decoded::NotOurs)));
    }

    #[test]
    fn damaged_metadata_of_our_namespace_is_an_integrity_error() {
        let names = Names::new("ledger").unwrap();
        let r = record();
        let mut raw = raw_of(&names, &r, Uuid::nil());
        let mut meta: serde_json::Value = serde_json::from_slice(&raw.metadata).unwrap();
        meta["hash"] = "zz".into();
        raw.metadata = serde_json::to_vec(&meta).unwrap();
        assert!(matches!(
            decode(&names, &raw),
            Err(StoreError::Integrity { position: 42, .. })
        ));
        meta["hash"] = hex::encode([1u8; 32]).into();
        meta["position"] = "x".into();
        raw.metadata = serde_json::to_vec(&meta).unwrap();
        assert!(matches!(
            decode(&names, &raw),
            Err(StoreError::Integrity { .. })
        ));
    }

    #[test]
    fn wrong_expected_version_maps_to_a_conflict_with_our_versions() {
        let e = kurrentdb::Error::WrongExpectedVersion {
            expected: StreamState::StreamRevision(1),
            current: CurrentRevision::Current(4),
        };
        let kurrentdb::Error::WrongExpectedVersion { current, .. } = e else {
            unreachable!()
        };
        match conflict(
            "acct-1",
            ExpectedVersion::Exact(2),
            version_of_current(current),
        ) {
            StoreError::Conflict {
                stream,
                expected,
                actual,
            } => {
                assert_eq!(stream, "acct-1");
                assert_eq!(expected, ExpectedVersion::Exact(2));
                assert_eq!(actual, 5);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn other_errors_map_to_backend_without_secrets() {
        use kurrentdb::Error as E;
        let cases = [
            E::ServerError(
                "status: Unavailable, dial esdb://admin:changeit@node1:2113 failed".into(),
            ),
            E::IllegalStateError("kurrentdb://u:p4ss@h:2113/?tls=true refused".into()),
            E::AccessDenied,
            E::ConnectionClosed,
            E::DeadlineExceeded,
            E::ResourceDeleted,
            E::NotLeaderException(kurrentdb::Endpoint {
                host: "node2".into(),
                port: 2113,
            }),
            E::IllegalStateError("x".repeat(1000)),
        ];
        for e in cases {
            match map_error(&e) {
                StoreError::Backend(m) => {
                    assert!(m.starts_with("kurrentdb: "), "{m}");
                    assert!(!m.contains("changeit") && !m.contains("p4ss"), "{m}");
                    assert!(!m.contains("admin:"), "{m}");
                    assert!(m.len() < 400, "{m}");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn redact_keeps_hosts_and_drops_userinfo() {
        assert_eq!(
            redact("connect esdb://admin:changeit@node1:2113,node2:2113?tls=false x"),
            "connect esdb://***@node1:2113,node2:2113?tls=false x"
        );
        assert_eq!(redact("no url here"), "no url here");
        assert_eq!(redact("http://host/path"), "http://host/path");
    }
}
