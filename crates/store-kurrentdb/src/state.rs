//! The writer's in-memory view of the log, and the planning of appends against it.
//!
//! KurrentDB assigns `$all` positions, not ours, and cannot look events up by id
//! across streams, so the store keeps what it needs in memory, rebuilt at start by
//! one filtered read of `$all` (see ADR 0010): the head (position, log hash), per
//! position a lower bound of its `$all` position (to seek `read_all`) and its log
//! hash (to verify a page's first link), each stream's head (version, hash), and
//! every event id (idempotency). Planning is pure: it computes positions, versions
//! and both hashes for a whole message, or refuses it, without touching the state;
//! the state changes only by [`LogState::ingest`] of records that are stored.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ledger_store::chain::RecordFields;
use ledger_store::{
    AppendRequest, AppendResult, ExpectedVersion, Hash32, Position, RecordedEvent, StoreError,
    Version, ZERO_HASH,
};
use ledger_types::EventId;

use crate::backend::AllPos;
use crate::mapping::conflict;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamHead {
    pub version: Version,
    pub hash: Hash32,
}

const NO_STREAM: StreamHead = StreamHead {
    version: 0,
    hash: ZERO_HASH,
};

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// A `$all` position at or before this record's.
    seek: AllPos,
    log_hash: Hash32,
}

#[derive(Debug, Clone)]
struct IdEntry {
    position: Position,
    version: Version,
    stream: Arc<str>,
}

/// What one request of a message comes to.
#[derive(Debug)]
pub enum Step {
    /// A faithful retry of stored events: nothing to write.
    Retry(AppendResult),
    /// Records to append to `stream`, whose current version is `current`.
    Write {
        stream: String,
        current: Version,
        records: Vec<RecordedEvent>,
        result: AppendResult,
    },
}

/// How a record relates to the state.
#[derive(Debug, PartialEq, Eq)]
pub enum Ingest {
    /// It extended the log.
    Added,
    /// It is already in the state (same id at the same position).
    Known,
}

#[derive(Debug, Default)]
pub struct LogState {
    entries: Vec<Entry>,
    streams: HashMap<Arc<str>, StreamHead>,
    ids: HashMap<EventId, IdEntry>,
    /// The latest `$all` position known to be at or after every stored record.
    floor: AllPos,
}

impl LogState {
    pub fn head(&self) -> Position {
        self.entries.len() as Position
    }

    pub fn last_log_hash(&self) -> Hash32 {
        self.entries.last().map_or(ZERO_HASH, |e| e.log_hash)
    }

    /// The log hash of the record at `position` (`ZERO_HASH` for 0).
    pub fn log_hash_at(&self, position: Position) -> Option<Hash32> {
        match position {
            0 => Some(ZERO_HASH),
            p => self.entries.get(p as usize - 1).map(|e| e.log_hash),
        }
    }

    /// Where to start reading `$all` to find the record at `position`.
    pub fn seek_for(&self, position: Position) -> Option<AllPos> {
        let p = usize::try_from(position).ok()?.checked_sub(1)?;
        self.entries.get(p).map(|e| e.seek)
    }

    /// A `$all` position at or after every stored record.
    pub fn floor(&self) -> AllPos {
        self.floor
    }

    pub fn stream_head(&self, stream: &str) -> StreamHead {
        self.streams.get(stream).copied().unwrap_or(NO_STREAM)
    }

    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// Adds a stored record, verifying that it continues the log and its stream.
    /// `seek` is a `$all` position at or before the record's (exact when read).
    /// A record already held (same id at the same position) is `Known`; anything
    /// else that does not continue the log is an integrity violation.
    pub fn ingest(&mut self, r: &RecordedEvent, seek: AllPos) -> Result<Ingest, StoreError> {
        let fail = |reason: String| StoreError::Integrity {
            position: r.position,
            reason,
        };
        if r.position <= self.head() {
            return match self.ids.get(&r.event_id) {
                Some(e) if e.position == r.position && *e.stream == *r.stream => Ok(Ingest::Known),
                _ => Err(fail(format!(
                    "position {} is held by two events (event {}): two writers appended to this namespace",
                    r.position, r.event_id
                ))),
            };
        }
        if r.position != self.head() + 1 {
            return Err(fail(format!(
                "position gap: expected {}, found {}",
                self.head() + 1,
                r.position
            )));
        }
        let prev_log = self.last_log_hash();
        if RecordFields::of(r).chain(&prev_log) != r.log_hash {
            return Err(fail("log hash does not verify".into()));
        }
        let head = self.stream_head(&r.stream);
        if r.version != head.version + 1 {
            return Err(fail(format!(
                "stream {} version {} does not follow {}",
                r.stream, r.version, head.version
            )));
        }
        if RecordFields::of(r).chain(&head.hash) != r.hash {
            return Err(fail(format!("stream hash of {} does not verify", r.stream)));
        }
        if self.ids.contains_key(&r.event_id) {
            return Err(fail(format!("event id {} stored twice", r.event_id)));
        }
        let stream: Arc<str> = match self.streams.get_key_value(r.stream.as_str()) {
            Some((k, _)) => k.clone(),
            None => Arc::from(r.stream.as_str()),
        };
        self.streams.insert(
            stream.clone(),
            StreamHead {
                version: r.version,
                hash: r.hash,
            },
        );
        self.ids.insert(
            r.event_id,
            IdEntry {
                position: r.position,
                version: r.version,
                stream,
            },
        );
        self.entries.push(Entry {
            seek,
            log_hash: r.log_hash,
        });
        if seek > self.floor {
            self.floor = seek;
        }
        Ok(Ingest::Added)
    }

    /// Records that every stored record is at or before `pos` in `$all`.
    pub fn raise_floor(&mut self, pos: AllPos) {
        if pos > self.floor {
            self.floor = pos;
        }
    }

    /// Plans one message (an `append` or a whole `append_batch`): each request is
    /// a faithful retry, or new events after the expected version, else the whole
    /// message is refused. Requests see the effects of earlier ones in the message.
    pub fn plan(&self, requests: &[AppendRequest]) -> Result<Vec<Step>, StoreError> {
        let mut next = self.head() + 1;
        let mut last_log = self.last_log_hash();
        let mut heads: HashMap<&str, StreamHead> = HashMap::new();
        let mut batch_ids: HashSet<EventId> = HashSet::new();
        let mut steps = Vec::with_capacity(requests.len());
        for r in requests {
            if let Some(retry) = self.check_ids(r, &batch_ids)? {
                steps.push(Step::Retry(retry));
                continue;
            }
            batch_ids.extend(r.events.iter().map(|e| e.event_id));
            let head = heads
                .get(r.stream.as_str())
                .copied()
                .unwrap_or_else(|| self.stream_head(&r.stream));
            let ok = match r.expected {
                ExpectedVersion::Any => true,
                ExpectedVersion::NoStream => head.version == 0,
                ExpectedVersion::Exact(v) => head.version == v,
            };
            if !ok {
                return Err(conflict(&r.stream, r.expected, head.version));
            }
            let first_position = next;
            let mut prev_hash = head.hash;
            let mut version = head.version;
            let mut records = Vec::with_capacity(r.events.len());
            for e in &r.events {
                version += 1;
                let fields = RecordFields {
                    position: next,
                    stream: &r.stream,
                    version,
                    event_id: e.event_id.as_bytes(),
                    event_type: &e.event_type,
                    schema_version: e.schema_version,
                    recorded_at_ms: e.recorded_at.millis(),
                    payload: &e.payload,
                };
                let hash = fields.chain(&prev_hash);
                let log_hash = fields.chain(&last_log);
                records.push(RecordedEvent {
                    position: next,
                    stream: r.stream.clone(),
                    version,
                    event_id: e.event_id,
                    event_type: e.event_type.clone(),
                    schema_version: e.schema_version,
                    payload: e.payload.clone(),
                    recorded_at: e.recorded_at,
                    hash,
                    log_hash,
                });
                prev_hash = hash;
                last_log = log_hash;
                next += 1;
            }
            heads.insert(
                &r.stream,
                StreamHead {
                    version,
                    hash: prev_hash,
                },
            );
            steps.push(Step::Write {
                stream: r.stream.clone(),
                current: head.version,
                result: AppendResult {
                    first_position,
                    last_position: next - 1,
                    stream_version: version,
                    duplicate: false,
                },
                records,
            });
        }
        Ok(steps)
    }

    /// All ids new (`None`), or a faithful retry (all stored, same stream,
    /// consecutive versions, in order), or `DuplicateEventId`.
    fn check_ids(
        &self,
        r: &AppendRequest,
        batch_ids: &HashSet<EventId>,
    ) -> Result<Option<AppendResult>, StoreError> {
        let mut found: Vec<&IdEntry> = Vec::new();
        let mut first_found = None;
        let mut foreign = false;
        for e in &r.events {
            if batch_ids.contains(&e.event_id) {
                return Err(StoreError::DuplicateEventId {
                    event_id: e.event_id,
                });
            }
            if let Some(entry) = self.ids.get(&e.event_id) {
                foreign |= *entry.stream != *r.stream;
                first_found.get_or_insert(e.event_id);
                found.push(entry);
            }
        }
        let Some(event_id) = first_found else {
            return Ok(None);
        };
        let consecutive = found.windows(2).all(|w| w[1].version == w[0].version + 1);
        if foreign || found.len() != r.events.len() || !consecutive {
            return Err(StoreError::DuplicateEventId { event_id });
        }
        let first = found[0];
        let last = found[found.len() - 1];
        Ok(Some(AppendResult {
            first_position: first.position,
            last_position: last.position,
            stream_version: last.version,
            duplicate: true,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_store::chain::{log_link_ok, stream_link_ok};
    use ledger_store::NewEvent;
    use ledger_types::Timestamp;

    fn ev(n: u8) -> NewEvent {
        NewEvent {
            event_id: EventId::new(),
            event_type: "T".into(),
            schema_version: 1,
            payload: vec![n; 8],
            recorded_at: Timestamp::from_millis(n as i64),
        }
    }

    fn req(stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> AppendRequest {
        AppendRequest {
            stream: stream.into(),
            expected,
            events,
        }
    }

    /// Plans and stores a message, as the writer does after the server acked it.
    fn commit(s: &mut LogState, requests: &[AppendRequest]) -> Vec<AppendResult> {
        let steps = s.plan(requests).unwrap();
        let mut out = Vec::new();
        for step in steps {
            match step {
                Step::Retry(r) => out.push(r),
                Step::Write {
                    records, result, ..
                } => {
                    for r in &records {
                        assert_eq!(s.ingest(r, AllPos::default()).unwrap(), Ingest::Added);
                    }
                    out.push(result);
                }
            }
        }
        out
    }

    #[test]
    fn plans_positions_versions_and_both_chains() {
        let mut s = LogState::default();
        let a = commit(
            &mut s,
            &[req("a", ExpectedVersion::NoStream, vec![ev(1), ev(2)])],
        );
        assert_eq!(
            a[0],
            AppendResult {
                first_position: 1,
                last_position: 2,
                stream_version: 2,
                duplicate: false
            }
        );
        let steps = s
            .plan(&[
                req("b", ExpectedVersion::Any, vec![ev(3)]),
                req("a", ExpectedVersion::Exact(2), vec![ev(4)]),
                req("a", ExpectedVersion::Exact(3), vec![ev(5)]),
            ])
            .unwrap();
        let mut prev_log = s.last_log_hash();
        let mut prev_a = s.stream_head("a").hash;
        let mut currents = Vec::new();
        for step in &steps {
            let Step::Write {
                records,
                current,
                stream,
                ..
            } = step
            else {
                panic!("no retry here")
            };
            currents.push((stream.clone(), *current));
            for r in records {
                assert!(log_link_ok(r, &prev_log));
                prev_log = r.log_hash;
                if r.stream == "a" {
                    assert!(stream_link_ok(r, &prev_a));
                    prev_a = r.hash;
                }
            }
        }
        assert_eq!(
            currents,
            vec![("b".into(), 0), ("a".into(), 2), ("a".into(), 3)],
            "a later request of a message sees the earlier ones"
        );
        // Planning changed nothing.
        assert_eq!(s.head(), 2);
    }

    #[test]
    fn conflicts_name_expected_and_actual() {
        let mut s = LogState::default();
        commit(
            &mut s,
            &[req("a", ExpectedVersion::Any, vec![ev(1), ev(2)])],
        );
        for (expected, actual) in [
            (ExpectedVersion::NoStream, 2),
            (ExpectedVersion::Exact(0), 2),
            (ExpectedVersion::Exact(1), 2),
            (ExpectedVersion::Exact(9), 2),
        ] {
            match s.plan(&[req("a", expected, vec![ev(3)])]) {
                Err(StoreError::Conflict {
                    stream,
                    expected: e,
                    actual: a,
                }) => assert_eq!((stream.as_str(), e, a), ("a", expected, actual)),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            s.plan(&[req("new", ExpectedVersion::Exact(1), vec![ev(3)])]),
            Err(StoreError::Conflict { actual: 0, .. })
        ));
    }

    #[test]
    fn retries_and_reused_ids() {
        let mut s = LogState::default();
        let original = req("a", ExpectedVersion::NoStream, vec![ev(1), ev(2)]);
        let first = commit(&mut s, std::slice::from_ref(&original))[0];
        commit(&mut s, &[req("b", ExpectedVersion::Any, vec![ev(3)])]);
        let mut again = original.clone();
        again.expected = ExpectedVersion::Exact(42);
        let steps = s.plan(&[again]).unwrap();
        assert!(matches!(
            &steps[0],
            Step::Retry(r) if *r == AppendResult { duplicate: true, ..first }
        ));
        let dup = |r: Result<Vec<Step>, StoreError>| {
            assert!(
                matches!(r, Err(StoreError::DuplicateEventId { .. })),
                "{r:?}"
            )
        };
        let e = &original.events;
        dup(s.plan(&[req("a", ExpectedVersion::Any, vec![e[0].clone(), ev(9)])]));
        dup(s.plan(&[req(
            "a",
            ExpectedVersion::Any,
            vec![e[1].clone(), e[0].clone()],
        )]));
        dup(s.plan(&[req("c", ExpectedVersion::Any, e.clone())]));
        let fresh = ev(7);
        dup(s.plan(&[
            req("c", ExpectedVersion::Any, vec![fresh.clone()]),
            req("d", ExpectedVersion::Any, vec![fresh]),
        ]));
    }

    #[test]
    fn ingest_refuses_gaps_tampering_and_collisions() {
        let mut s = LogState::default();
        let steps = s
            .plan(&[req("a", ExpectedVersion::Any, vec![ev(1), ev(2), ev(3)])])
            .unwrap();
        let Step::Write { records, .. } = &steps[0] else {
            panic!()
        };
        assert!(matches!(
            s.ingest(&records[1], AllPos::default()),
            Err(StoreError::Integrity { position: 2, .. })
        ));
        let mut tampered = records[0].clone();
        tampered.payload.push(0);
        assert!(matches!(
            s.ingest(&tampered, AllPos::default()),
            Err(StoreError::Integrity { position: 1, .. })
        ));
        let seek = AllPos {
            commit: 10,
            prepare: 10,
        };
        assert_eq!(s.ingest(&records[0], seek).unwrap(), Ingest::Added);
        assert_eq!(s.ingest(&records[0], seek).unwrap(), Ingest::Known);
        assert_eq!(s.seek_for(1), Some(seek));
        assert_eq!(s.floor(), seek);
        assert_eq!(s.log_hash_at(1), Some(records[0].log_hash));
        assert_eq!(s.log_hash_at(0), Some(ZERO_HASH));
        // Another event claiming position 1: two writers.
        let other = s
            .plan(&[req("z", ExpectedVersion::Any, vec![ev(5)])])
            .unwrap();
        let Step::Write { records: o, .. } = &other[0] else {
            panic!()
        };
        let mut collided = o[0].clone();
        collided.position = 1;
        assert!(matches!(
            s.ingest(&collided, seek),
            Err(StoreError::Integrity { position: 1, .. })
        ));
        assert_eq!(s.head(), 1);
    }
}
