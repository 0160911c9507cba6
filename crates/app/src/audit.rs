//! `ledger audit verify`: replays the whole log and checks what an auditor needs.
//!
//! - the log chain and gap-free positions (checked by the store on every read);
//! - every stream's chain and gap-free versions;
//! - every record decodes against the schema;
//! - every erasure is honoured: no anonymized customer still has a data key, and no
//!   customer view of an anonymized customer holds a personal block;
//! - revenue recomputed from the log equals the revenue projection (same digest);
//! - optionally, that the log still holds a head the auditor recorded earlier
//!   (`--expect-head POSITION:HASH`), which also detects a truncated tail;
//! - every destroyed data key (a tombstone in the key store) has its
//!   `CustomerAnonymized` in the log: a tombstone without one is evidence that the
//!   log lost its tail or was restored from an older backup;
//! - every registered, not erased customer still has a data key;
//! - every erasure request ended, or is still within its due date; every completed
//!   one has its `CustomerAnonymized` at the position it names and its customer's
//!   key destroyed; the on-time rate and the overdue requests by id
//!   ([`RequestAudit`], also run on an export, which holds no keys).
//!
//! # One snapshot, so a live store gives no false problem
//!
//! The audit runs beside a server that keeps writing. It checks the log, the key
//! store and the views as of one log position, the head when it starts (`at`):
//! the log is replayed up to `at`, the views are the persisted ones folded in
//! memory up to `at` ([`ReadSide::snapshot`]), and key states are judged at
//! `at`: a key destroyed by an erasure after `at` is alive at `at` (its tombstone
//! is matched against the log's tail past `at`), and a key of an erasure at or
//! before `at` that a running server is destroying right now is given a short
//! grace before it counts as not honoured. Nothing is written.

use std::collections::{BTreeMap, HashMap, HashSet};

use ledger_command::{ErasureRequest, RequestStatus};
use ledger_crypto::KeyState;
use ledger_events::CustomerEvent;
use ledger_store::{chain, Hash32, StoreError, ZERO_HASH};
use ledger_types::{CustomerId, RequestId, Timestamp};
use serde::Serialize;

use crate::codec::decode_record;
use crate::read::ReadSide;
use crate::{AppError, Ledger};
use ledger_events::DomainEvent;
use ledger_projections::{Envelope, Revenue, RevenueFilter};

/// One discrepancy. Holds positions, stream names (ids) and codes only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub code: &'static str,
    pub position: Option<u64>,
    pub stream: Option<String>,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    pub ok: bool,
    pub events: u64,
    pub streams: u64,
    pub customers: u64,
    pub broadcasters: u64,
    pub anonymized_customers: u64,
    pub head_position: u64,
    /// The log hash at the head: record it to detect a truncated tail later.
    pub head_log_hash: String,
    /// Digest of all revenue recomputed from the log (canonical form v1).
    pub revenue_digest: String,
    /// Erasure requests: counts, the on-time rate and the overdue ones.
    pub erasure_requests: RequestSummary,
    pub checks: Vec<&'static str>,
    pub problems: Vec<Problem>,
}

/// What the audit found of erasure requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RequestSummary {
    pub total: u64,
    /// By status (`open`, `deferred`, `completed`, `refused`, `cancelled`).
    pub by_status: BTreeMap<&'static str, u64>,
    /// Requests that ended by their due date ...
    pub on_time: u64,
    /// ... and those that ended after it or are still open past it.
    pub late: u64,
    /// `on_time / (on_time + late)`; absent while no request has ended or is due.
    pub on_time_rate: Option<f64>,
    /// The ids of the requests past their due date and not ended.
    pub overdue: Vec<RequestId>,
}

/// The erasure-request checks, fed the decoded log in order (see the module doc).
#[derive(Debug, Default)]
pub struct RequestAudit {
    requests: BTreeMap<RequestId, (u64, ErasureRequest)>,
    /// Position of every `CustomerAnonymized` → its customer.
    erasures: HashMap<u64, CustomerId>,
}

impl RequestAudit {
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds one decoded record at `position`.
    pub fn record(&mut self, position: u64, e: &DomainEvent) {
        match e {
            DomainEvent::ErasureRequest(id, e) => {
                self.requests
                    .entry(*id)
                    .or_insert_with(|| (position, ErasureRequest::default()))
                    .1
                    .apply(e);
            }
            DomainEvent::Customer(c, CustomerEvent::Anonymized(_)) => {
                self.erasures.insert(position, *c);
            }
            _ => {}
        }
    }

    /// The completed requests' customers (whose keys must be gone).
    pub fn completed_customers(&self) -> Vec<CustomerId> {
        self.requests
            .values()
            .filter(|(_, r)| r.status() == Some(RequestStatus::Completed))
            .filter_map(|(_, r)| r.requested().map(|q| q.customer_id))
            .collect()
    }

    /// The summary and the problems, judged at `now`; `key_alive` says whether a
    /// customer's data key still exists (`None`: not known, as in an export).
    pub fn finish(
        &self,
        now: Timestamp,
        key_alive: impl Fn(CustomerId) -> Option<bool>,
    ) -> (RequestSummary, Vec<Problem>) {
        let mut sum = RequestSummary::default();
        for st in RequestStatus::ALL {
            sum.by_status.insert(st.as_str(), 0);
        }
        let mut problems = Vec::new();
        for (id, (position, r)) in &self.requests {
            let (Some(q), Some(status), Some(due)) = (r.requested(), r.status(), r.due_at()) else {
                continue;
            };
            let stream = Some(ledger_events::streams::erasure_request(*id));
            sum.total += 1;
            *sum.by_status.entry(status.as_str()).or_default() += 1;
            match r.ended_at() {
                Some(end) if end <= due => sum.on_time += 1,
                Some(_) => sum.late += 1,
                None if now > due => {
                    sum.late += 1;
                    sum.overdue.push(*id);
                    problems.push(Problem {
                        code: "ERASURE_REQUEST_OVERDUE",
                        position: Some(*position),
                        stream: stream.clone(),
                        detail: format!("not ended, due {}", due.to_rfc3339()),
                    });
                }
                None => {}
            }
            if let Some(done) = r.completed() {
                if self.erasures.get(&done.anonymized_position) != Some(&q.customer_id) {
                    problems.push(Problem {
                        code: "ERASURE_REQUEST_WITHOUT_ERASURE",
                        position: Some(*position),
                        stream: stream.clone(),
                        detail: format!(
                            "completed, but position {} holds no erasure of its customer",
                            done.anonymized_position
                        ),
                    });
                }
                if key_alive(q.customer_id) == Some(true) {
                    problems.push(Problem {
                        code: "ERASURE_REQUEST_KEY_ALIVE",
                        position: Some(*position),
                        stream,
                        detail: "completed, but its customer's data key still exists".into(),
                    });
                }
            }
        }
        let judged = sum.on_time + sum.late;
        sum.on_time_rate = (judged > 0).then(|| sum.on_time as f64 / judged as f64);
        (sum, problems)
    }
}

/// An auditor's earlier record of the log head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    pub position: u64,
    pub log_hash: Hash32,
}

impl Anchor {
    /// Parses `POSITION:HEX64`.
    pub fn parse(s: &str) -> Option<Self> {
        let (p, h) = s.split_once(':')?;
        let position = p.parse().ok()?;
        let log_hash = hex::decode(h).ok()?.try_into().ok()?;
        Some(Self { position, log_hash })
    }
}

/// How long a key of an erasure decided at or before the snapshot may still be
/// alive (a running server destroys it within a few milliseconds).
const DESTRUCTION_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// Replays the log up to position `at` (normally its head when the audit starts;
/// `read_side` must be a snapshot at the same position, see the module doc) and
/// reports every discrepancy found.
pub async fn verify(
    ledger: &Ledger,
    read_side: Option<&ReadSide>,
    anchor: Option<Anchor>,
    at: u64,
) -> Result<AuditReport, AppError> {
    let mut revenue = Revenue::new();
    let mut problems = Vec::new();
    let mut heads: HashMap<String, (u64, Hash32)> = HashMap::new();
    let mut anonymized: HashSet<CustomerId> = HashSet::new();
    let mut customers = 0u64;
    let mut broadcasters = 0u64;
    let mut events = 0u64;
    let mut after = 0u64;
    let mut head_hash = ZERO_HASH;
    let mut anchor_seen = anchor.is_none();
    let mut registered: Vec<CustomerId> = Vec::new();
    let mut requests = RequestAudit::new();
    'replay: while after < at {
        let page = match ledger.store().read_all(after, 10_000).await {
            Ok(p) => p,
            Err(StoreError::Integrity { position, reason }) => {
                problems.push(Problem {
                    code: "LOG_CHAIN_BROKEN",
                    position: Some(position),
                    stream: None,
                    detail: reason,
                });
                break 'replay;
            }
            Err(e) => return Err(e.into()),
        };
        let Some(last) = page.last() else { break };
        after = last.position.min(at);
        for r in page.iter().take_while(|r| r.position <= at) {
            events += 1;
            head_hash = r.log_hash;
            if let Some(a) = anchor {
                if a.position == r.position {
                    anchor_seen = a.log_hash == r.log_hash;
                }
            }
            let (version, prev) = heads.get(&r.stream).copied().unwrap_or((0, ZERO_HASH));
            if r.version != version + 1 {
                problems.push(Problem {
                    code: "STREAM_GAP",
                    position: Some(r.position),
                    stream: Some(r.stream.clone()),
                    detail: format!("version {} follows {}", r.version, version),
                });
            } else if !chain::stream_link_ok(r, &prev) {
                problems.push(Problem {
                    code: "STREAM_CHAIN_BROKEN",
                    position: Some(r.position),
                    stream: Some(r.stream.clone()),
                    detail: "record hash does not chain to the previous record of its stream"
                        .into(),
                });
            }
            heads.insert(r.stream.clone(), (r.version, r.hash));
            let decoded = decode_record(r);
            if let Ok(e) = &decoded {
                requests.record(r.position, e);
                revenue.apply(&Envelope {
                    position: r.position,
                    event_id: r.event_id,
                    recorded_at: r.recorded_at,
                    event: e,
                });
            }
            match decoded {
                Ok(DomainEvent::Customer(c, e)) => match e {
                    CustomerEvent::Registered(_) => {
                        customers += 1;
                        registered.push(c);
                    }
                    CustomerEvent::Anonymized(a) => {
                        if a.customer_id != c {
                            problems.push(Problem {
                                code: "ERASURE_MISFILED",
                                position: Some(r.position),
                                stream: Some(r.stream.clone()),
                                detail: "erasure event names another customer".into(),
                            });
                        }
                        anonymized.insert(c);
                    }
                    _ => {}
                },
                Ok(DomainEvent::Broadcaster(..)) => broadcasters += 1,
                Ok(DomainEvent::ErasureRequest(..) | DomainEvent::ErasureJob(..)) => {}
                Err(e) => problems.push(Problem {
                    code: "SCHEMA_INVALID",
                    position: Some(r.position),
                    stream: Some(r.stream.clone()),
                    detail: e.to_string(),
                }),
            }
        }
    }
    if !anchor_seen {
        problems.push(Problem {
            code: "ANCHOR_MISMATCH",
            position: anchor.map(|a| a.position),
            stream: None,
            detail: "the log does not hold the recorded head (truncated or rewritten)".into(),
        });
    }
    let mut sorted: Vec<_> = anonymized.iter().copied().collect();
    sorted.sort();
    problems.extend(check_keys(ledger, &sorted, &registered, &anonymized, at).await?);
    let mut alive = HashSet::new();
    for c in requests.completed_customers() {
        if let KeyState::Active(_) = ledger.keyring().store().get(c)? {
            alive.insert(c);
        }
    }
    let (erasure_requests, request_problems) =
        requests.finish(Timestamp::now(), |c| Some(alive.contains(&c)));
    problems.extend(request_problems);
    let revenue_digest = revenue.digest(&RevenueFilter::all());
    if let Some(rs) = read_side {
        let (projected, leaky) = rs.with_model(|m| {
            let leaky: Vec<CustomerId> = sorted
                .iter()
                .copied()
                .filter(|c| {
                    m.customers
                        .get(*c)
                        .is_some_and(|v| v.holds_personal_data() || !v.is_tombstone())
                })
                .collect();
            (m.revenue.digest(&RevenueFilter::all()), leaky)
        })?;
        if problems.is_empty() && projected != revenue_digest {
            problems.push(Problem {
                code: "REVENUE_MISMATCH",
                position: None,
                stream: None,
                detail: "the revenue projection differs from revenue recomputed from the log"
                    .into(),
            });
        }
        for c in leaky {
            problems.push(Problem {
                code: "ERASED_VIEW_NOT_TOMBSTONE",
                position: None,
                stream: Some(ledger_events::streams::customer(c)),
                detail: "the view of an anonymized customer still holds personal blocks".into(),
            });
        }
    }
    Ok(AuditReport {
        ok: problems.is_empty(),
        revenue_digest,
        events,
        streams: heads.len() as u64,
        customers,
        broadcasters,
        anonymized_customers: anonymized.len() as u64,
        head_position: after,
        head_log_hash: hex::encode(head_hash),
        erasure_requests,
        checks: [
            "log chain and gap-free positions",
            "stream chains and gap-free versions",
            "every record decodes against the schema",
            "every anonymized customer has no data key",
            "every destroyed data key has its erasure in the log",
            "every registered, not erased customer has a data key",
            "every erasure request ended or is within its due date",
            "every completed erasure request has its erasure in the log and no data key",
        ]
        .into_iter()
        .chain(read_side.map(|_| "every anonymized customer's view is a tombstone"))
        .chain(read_side.map(|_| "revenue recomputed from the log equals the revenue projection"))
        .collect(),
        problems,
    })
}

/// The key-store checks at snapshot `at`: erased customers have no key (after a
/// grace for a destruction in flight), every tombstone has its erasure in the log
/// (at or before `at`, or in the tail written since), and every other registered
/// customer has a key.
async fn check_keys(
    ledger: &Ledger,
    erased: &[CustomerId],
    registered: &[CustomerId],
    anonymized: &HashSet<CustomerId>,
    at: u64,
) -> Result<Vec<Problem>, AppError> {
    let keys = ledger.keyring().store().clone();
    let state = |c: CustomerId| keys.get(c);
    let mut alive: Vec<CustomerId> = Vec::new();
    for c in erased {
        if let KeyState::Active(_) = state(*c)? {
            alive.push(*c);
        }
    }
    let started = std::time::Instant::now();
    while !alive.is_empty() && started.elapsed() < DESTRUCTION_GRACE {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let mut still = Vec::new();
        for c in alive {
            if let KeyState::Active(_) = state(c)? {
                still.push(c);
            }
        }
        alive = still;
    }
    let mut problems: Vec<Problem> = alive
        .into_iter()
        .map(|c| Problem {
            code: "ERASURE_NOT_HONOURED",
            position: None,
            stream: Some(ledger_events::streams::customer(c)),
            detail: "an anonymized customer still has a data key".into(),
        })
        .collect();

    let active: HashSet<CustomerId> = keys.active_ids()?.into_iter().collect();
    let destroyed: Vec<CustomerId> = keys.destroyed_ids()?;
    let mut unexplained: HashSet<CustomerId> = destroyed
        .iter()
        .copied()
        .filter(|c| !anonymized.contains(c))
        .collect();
    // Erasures written after the snapshot explain their tombstones too.
    let mut after = at;
    while !unexplained.is_empty() {
        let page = ledger.store().read_all(after, 10_000).await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        for r in &page {
            if r.event_type == "CustomerAnonymized" {
                if let Some(c) = ledger_events::streams::parse_customer(&r.stream) {
                    unexplained.remove(&c);
                }
            }
        }
    }
    let mut unexplained: Vec<CustomerId> = unexplained.into_iter().collect();
    unexplained.sort();
    problems.extend(unexplained.into_iter().map(|c| {
        Problem {
            code: "KEY_DESTROYED_WITHOUT_ERASURE",
            position: None,
            stream: Some(ledger_events::streams::customer(c)),
            detail:
                "the key store destroyed this customer's key, but the log holds no erasure of it: \
                 the log lost its tail or was restored from an older backup"
                    .into(),
        }
    }));
    let destroyed: HashSet<CustomerId> = destroyed.into_iter().collect();
    let mut missing: Vec<CustomerId> = registered
        .iter()
        .copied()
        .filter(|c| !anonymized.contains(c) && !active.contains(c) && !destroyed.contains(c))
        .collect();
    missing.sort();
    missing.dedup();
    problems.extend(missing.into_iter().map(|c| {
        Problem {
            code: "DATA_KEY_MISSING",
            position: None,
            stream: Some(ledger_events::streams::customer(c)),
            detail: "a registered customer has no data key: the key store is older than the log \
                 (restored from an older backup?); the customer's personal data cannot be read"
                .into(),
        }
    }));
    Ok(problems)
}
