//! The auditor's export: the whole log as NDJSON, sealed fields still sealed, and its
//! offline verification (no data folder, no keys).
//!
//! Format `ledger-export-v1`, one JSON object per line:
//! 1. a header `{"format":"ledger-export-v1","exported_at":RFC3339}`;
//! 2. one record per event in position order: `position`, `stream`, `version`,
//!    `event_id`, `event_type`, `schema_version`, `recorded_at` (ms), `payload`
//!    (the stored payload bytes as a UTF-8 string, exactly as hashed), `hash` and
//!    `log_hash` (hex);
//! 3. a trailer `{"trailer":true,"events":N,"head_position":N,"head_log_hash":HEX,
//!    "revenue_digest":HEX,"signed_tree_head":{...}}`; `signed_tree_head` (the
//!    operator's signed Merkle tree head of exactly the exported records, see
//!    [`crate::transparency::head`]) is there when the exporter had the signing key.
//!
//! Verification recomputes both hash chains from the records themselves, checks
//! positions and versions are gap-free, that the trailer names the last record, and
//! that the revenue recomputed from the records has the trailer's digest. With the
//! operator's public key it also checks the signed head's signature and that the
//! Merkle root recomputed from the records is the signed root, so an export cut
//! short or rewritten with recomputed chains is caught; with an earlier export it
//! proves the later one extends it (RFC 6962 consistency proof between their heads).

use std::collections::HashMap;
use std::io::{BufRead, Write};

use ledger_events::{CustomerEvent, DomainEvent};
use ledger_merkle::{leaf_hash, MerkleTree, TreeHead};
use ledger_projections::{Envelope, Revenue, RevenueFilter};
use ledger_store::{chain, Hash32, RecordedEvent, ZERO_HASH};
use ledger_types::{EventId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::audit::{Anchor, Problem};
use crate::transparency::{HeadSigner, PublicKey, SignedTreeHead};
use crate::{AppError, Ledger};

pub const FORMAT: &str = "ledger-export-v1";

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    exported_at: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    position: u64,
    stream: String,
    version: u64,
    event_id: EventId,
    event_type: String,
    schema_version: u16,
    recorded_at: i64,
    payload: String,
    hash: String,
    log_hash: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Trailer {
    trailer: bool,
    events: u64,
    head_position: u64,
    head_log_hash: String,
    revenue_digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signed_tree_head: Option<SignedTreeHead>,
}

/// What an export holds, as written or as verified.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    pub ok: bool,
    pub events: u64,
    pub head_position: u64,
    pub head_log_hash: String,
    pub revenue_digest: String,
    pub erasures: u64,
    /// Erasure requests: counts, the on-time rate and the overdue ones (an export
    /// holds no keys: completed requests are checked against the log only).
    pub erasure_requests: crate::audit::RequestSummary,
    /// The Merkle root of the records (RFC 6962, leaves = canonical bytes).
    pub root_hash: String,
    /// The trailer's signed tree head, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed_tree_head: Option<SignedTreeHead>,
    /// Every check that was run, in order.
    pub checks: Vec<&'static str>,
    pub problems: Vec<Problem>,
}

fn io(e: std::io::Error) -> AppError {
    AppError::Io(e.kind().to_string())
}

/// Writes the whole log to `out`, without a signed tree head.
pub async fn export(ledger: &Ledger, out: &mut impl Write) -> Result<ExportReport, AppError> {
    export_signed(ledger, out, None).await
}

/// Writes the whole log to `out`; with `signer`, the trailer carries a tree head
/// of exactly the exported records, signed now.
pub async fn export_signed(
    ledger: &Ledger,
    out: &mut impl Write,
    signer: Option<&HeadSigner>,
) -> Result<ExportReport, AppError> {
    let header = Header {
        format: FORMAT.into(),
        exported_at: Timestamp::now().to_rfc3339(),
    };
    write_line(out, &header)?;
    let mut revenue = Revenue::new();
    let (mut after, mut events, mut erasures) = (0u64, 0u64, 0u64);
    let mut head_hash = ZERO_HASH;
    let mut tree = MerkleTree::new();
    loop {
        let page = ledger.store().read_all(after, 10_000).await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        for r in &page {
            let payload = String::from_utf8(r.payload.clone()).map_err(|_| {
                AppError::Codec(ledger_events::CodecError::Malformed {
                    event_type: "record",
                    reason: "payload is not UTF-8".into(),
                })
            })?;
            let rec = Record {
                position: r.position,
                stream: r.stream.clone(),
                version: r.version,
                event_id: r.event_id,
                event_type: r.event_type.clone(),
                schema_version: r.schema_version,
                recorded_at: r.recorded_at.millis(),
                payload,
                hash: hex::encode(r.hash),
                log_hash: hex::encode(r.log_hash),
            };
            write_line(out, &rec)?;
            tree.append_leaf_hash(crate::transparency::record_leaf_hash(r));
            let e = crate::decode_record(r)?;
            if matches!(e, DomainEvent::Customer(_, CustomerEvent::Anonymized(_))) {
                erasures += 1;
            }
            revenue.apply(&Envelope {
                position: r.position,
                event_id: r.event_id,
                recorded_at: r.recorded_at,
                event: &e,
            });
            events += 1;
            head_hash = r.log_hash;
        }
    }
    let head = tree.head();
    let trailer = Trailer {
        trailer: true,
        events,
        head_position: after,
        head_log_hash: hex::encode(head_hash),
        revenue_digest: revenue.digest(&RevenueFilter::all()),
        signed_tree_head: signer.map(|s| s.sign(head, Timestamp::now().millis())),
    };
    write_line(out, &trailer)?;
    out.flush().map_err(io)?;
    Ok(ExportReport {
        ok: true,
        events,
        head_position: after,
        head_log_hash: trailer.head_log_hash,
        revenue_digest: trailer.revenue_digest,
        erasures,
        erasure_requests: Default::default(),
        root_hash: head.root_hash.to_hex(),
        signed_tree_head: trailer.signed_tree_head,
        checks: vec![],
        problems: vec![],
    })
}

fn write_line<T: Serialize>(out: &mut impl Write, value: &T) -> Result<(), AppError> {
    serde_json::to_writer(&mut *out, value).map_err(|e| AppError::Io(e.to_string()))?;
    out.write_all(b"\n").map_err(io)
}

pub(crate) fn problem(
    code: &'static str,
    position: Option<u64>,
    detail: impl Into<String>,
) -> Problem {
    Problem {
        code,
        position,
        stream: None,
        detail: detail.into(),
    }
}

fn hash32(s: &str) -> Option<Hash32> {
    hex::decode(s).ok()?.try_into().ok()
}

/// What an offline verification checks beyond the export itself.
#[derive(Debug, Clone, Default)]
pub struct ExportChecks {
    /// The operator's public key: the trailer's signed tree head must verify with
    /// it, and its root must be the root recomputed from the records.
    pub public_key: Option<PublicKey>,
    /// A head recorded earlier (`POSITION:LOG_HASH`) that the export must hold.
    pub anchor: Option<Anchor>,
}

/// A verified export: its report and the Merkle tree of its records (for a
/// consistency proof to a later export).
#[derive(Debug)]
pub struct VerifiedExport {
    pub report: ExportReport,
    tree: MerkleTree,
    /// The head vouched for: the signed one if its signature was checked, else
    /// the one recomputed from the records.
    head: TreeHead,
    signed: bool,
}

/// Two exports: each one's report, and whether the later extends the earlier.
#[derive(Debug, Clone, Serialize)]
pub struct ExtensionReport {
    pub ok: bool,
    pub exports: Vec<ExportReport>,
    pub checks: Vec<&'static str>,
    pub problems: Vec<Problem>,
}

/// Checks that `later` extends `earlier`: the RFC 6962 consistency proof between
/// their heads, computed from the later export's records. The heads are the
/// signed ones when their signatures were checked (`ExportChecks::public_key`).
pub fn verify_extension(earlier: VerifiedExport, later: VerifiedExport) -> ExtensionReport {
    let mut checks = Vec::new();
    let mut problems = Vec::new();
    let (old, new) = (earlier.head, later.head);
    if earlier.report.ok && later.report.ok {
        checks.push(if earlier.signed && later.signed {
            "the later export extends the earlier one: consistency proof between their signed tree heads"
        } else {
            "the later export extends the earlier one: consistency proof between their recomputed roots"
        });
        if old.size > new.size {
            problems.push(problem(
                "NOT_EXTENDED",
                None,
                format!(
                    "the later export holds {} records, fewer than the earlier one's {}",
                    new.size, old.size
                ),
            ));
        } else if old.size > 0 {
            let verified = later
                .tree
                .consistency_proof(old.size, new.size)
                .map_err(|e| e.to_string())
                .and_then(|p| p.verify(&old, &new).map_err(|e| e.to_string()));
            if let Err(reason) = verified {
                problems.push(problem(
                    "NOT_EXTENDED",
                    Some(old.size),
                    format!("the later export does not extend the earlier one ({reason})"),
                ));
            }
        }
    }
    ExtensionReport {
        ok: earlier.report.ok && later.report.ok && problems.is_empty(),
        exports: vec![earlier.report, later.report],
        checks,
        problems,
    }
}

/// Verifies an export offline. Never fails on bad content: every discrepancy is
/// reported as a problem; only an unreadable file is an error.
pub fn verify_export(input: impl BufRead) -> Result<ExportReport, AppError> {
    Ok(verify_export_with(input, &ExportChecks::default())?.report)
}

/// Verifies an export offline, with the extra checks asked for. Reports only real
/// problems: after a broken record nothing later (trailer, signed head, anchor) is
/// judged, since it could only repeat the first discrepancy.
pub fn verify_export_with(
    input: impl BufRead,
    extra: &ExportChecks,
) -> Result<VerifiedExport, AppError> {
    let mut checks: Vec<&'static str> = Vec::new();
    let mut problems = Vec::new();
    let mut tree = MerkleTree::new();
    let mut anchor_seen = false;
    let mut lines = input.lines();
    match lines.next() {
        Some(Ok(l)) => match serde_json::from_str::<Header>(&l) {
            Ok(h) if h.format == FORMAT => checks.push("the header names ledger-export-v1"),
            _ => problems.push(problem(
                "BAD_HEADER",
                None,
                format!("first line is not a {FORMAT} header"),
            )),
        },
        Some(Err(e)) => return Err(io(e)),
        None => problems.push(problem("BAD_HEADER", None, "the export is empty")),
    }
    let mut heads: HashMap<String, (u64, Hash32)> = HashMap::new();
    let mut revenue = Revenue::new();
    let (mut expected_pos, mut events, mut erasures) = (1u64, 0u64, 0u64);
    let mut requests = crate::audit::RequestAudit::new();
    let mut log_prev = ZERO_HASH;
    let mut trailer: Option<Trailer> = None;
    for (n, line) in lines.enumerate() {
        let line = line.map_err(io)?;
        let line_no = n as u64 + 2;
        if trailer.is_some() {
            problems.push(problem(
                "DATA_AFTER_TRAILER",
                None,
                format!("line {line_no} follows the trailer"),
            ));
            break;
        }
        if let Ok(t) = serde_json::from_str::<Trailer>(&line) {
            trailer = Some(t);
            continue;
        }
        let rec: Record = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(_) => {
                problems.push(problem(
                    "BAD_RECORD",
                    None,
                    format!("line {line_no} is not a record"),
                ));
                break;
            }
        };
        let (Some(hash), Some(log_hash)) = (hash32(&rec.hash), hash32(&rec.log_hash)) else {
            problems.push(problem(
                "BAD_RECORD",
                Some(rec.position),
                "hash is not 64 hex digits",
            ));
            break;
        };
        let r = RecordedEvent {
            position: rec.position,
            stream: rec.stream,
            version: rec.version,
            event_id: rec.event_id,
            event_type: rec.event_type,
            schema_version: rec.schema_version,
            payload: rec.payload.into_bytes(),
            recorded_at: Timestamp::from_millis(rec.recorded_at),
            hash,
            log_hash,
        };
        if r.position != expected_pos {
            problems.push(problem(
                "POSITION_GAP",
                Some(r.position),
                format!("expected position {expected_pos}"),
            ));
            break;
        }
        if !chain::log_link_ok(&r, &log_prev) {
            problems.push(problem(
                "LOG_CHAIN_BROKEN",
                Some(r.position),
                "log hash does not chain",
            ));
            break;
        }
        let (version, prev) = heads.get(&r.stream).copied().unwrap_or((0, ZERO_HASH));
        if r.version != version + 1 || !chain::stream_link_ok(&r, &prev) {
            problems.push(Problem {
                code: "STREAM_CHAIN_BROKEN",
                position: Some(r.position),
                stream: Some(r.stream.clone()),
                detail: format!(
                    "version {} after {version}, or hash does not chain",
                    r.version
                ),
            });
            break;
        }
        heads.insert(r.stream.clone(), (r.version, r.hash));
        tree.append_leaf_hash(leaf_hash(&chain::RecordFields::of(&r).canonical()));
        if let Some(a) = extra.anchor {
            if a.position == r.position {
                anchor_seen = a.log_hash == r.log_hash;
            }
        }
        match crate::decode_record(&r) {
            Ok(e) => {
                if matches!(e, DomainEvent::Customer(_, CustomerEvent::Anonymized(_))) {
                    erasures += 1;
                }
                requests.record(r.position, &e);
                revenue.apply(&Envelope {
                    position: r.position,
                    event_id: r.event_id,
                    recorded_at: r.recorded_at,
                    event: &e,
                });
            }
            Err(e) => problems.push(problem("SCHEMA_INVALID", Some(r.position), e.to_string())),
        }
        log_prev = r.log_hash;
        expected_pos += 1;
        events += 1;
    }
    let digest = revenue.digest(&RevenueFilter::all());
    let records_ok = problems.is_empty();
    let (erasure_requests, request_problems) = requests.finish(Timestamp::now(), |_| None);
    if records_ok {
        checks.extend([
            "log chain and gap-free positions",
            "stream chains and gap-free versions",
            "every record decodes against the schema",
            "every erasure request ended or is within its due date",
            "every completed erasure request has its erasure in the log",
        ]);
        problems.extend(request_problems);
    }
    let computed = tree.head();
    let mut vouched = (computed, false);
    match &trailer {
        None if records_ok => problems.push(problem(
            "NO_TRAILER",
            None,
            "the export ends without its trailer (truncated)",
        )),
        None => {}
        Some(t) if records_ok => {
            checks.push("the trailer names the last record (count, head position, log hash)");
            checks.push("revenue recomputed from the records equals the trailer's digest");
            if t.events != events || t.head_position != expected_pos - 1 {
                problems.push(problem(
                    "TRAILER_MISMATCH",
                    None,
                    "the trailer's count or head does not match the records",
                ));
            }
            if hash32(&t.head_log_hash) != Some(log_prev) {
                problems.push(problem(
                    "TRAILER_MISMATCH",
                    None,
                    "the trailer's head hash does not match the last record",
                ));
            }
            if t.revenue_digest != digest {
                problems.push(problem(
                    "REVENUE_MISMATCH",
                    None,
                    "revenue recomputed from the records differs from the trailer's digest",
                ));
            }
            if let Some(key) = &extra.public_key {
                vouched = check_signed_head(t, key, &computed, &mut checks, &mut problems);
            }
        }
        Some(_) => {}
    }
    if let Some(a) = extra.anchor.filter(|_| records_ok) {
        checks.push("the export holds the expected head (--expect-head)");
        if !anchor_seen {
            problems.push(problem(
                "ANCHOR_MISMATCH",
                Some(a.position),
                "the export does not hold the recorded head (truncated or rewritten)",
            ));
        }
    }
    let (head, signed) = vouched;
    let signed_tree_head = trailer.and_then(|t| t.signed_tree_head);
    Ok(VerifiedExport {
        report: ExportReport {
            ok: problems.is_empty(),
            events,
            head_position: expected_pos - 1,
            head_log_hash: hex::encode(log_prev),
            revenue_digest: digest,
            erasures,
            erasure_requests,
            root_hash: computed.root_hash.to_hex(),
            signed_tree_head,
            checks,
            problems,
        },
        tree,
        head,
        signed,
    })
}

/// The trailer's signed head against the public key and the recomputed root.
/// Returns the head vouched for and whether it is the signed one.
fn check_signed_head(
    t: &Trailer,
    key: &PublicKey,
    computed: &TreeHead,
    checks: &mut Vec<&'static str>,
    problems: &mut Vec<Problem>,
) -> (TreeHead, bool) {
    checks.push("the trailer's signed tree head verifies with the public key");
    let Some(sth) = &t.signed_tree_head else {
        problems.push(problem(
            "NO_SIGNED_HEAD",
            None,
            "the trailer carries no signed tree head (exported without the signing key, or removed)",
        ));
        return (*computed, false);
    };
    let head = match sth.verify(key) {
        Ok(h) => h,
        Err(e) => {
            problems.push(problem("BAD_SIGNATURE", None, e.to_string()));
            return (*computed, false);
        }
    };
    checks.push("the Merkle root recomputed from the records equals the signed root");
    if head.size != computed.size {
        problems.push(problem(
            "SIGNED_HEAD_MISMATCH",
            None,
            format!(
                "the signed tree head covers {} records, the export holds {}",
                head.size, computed.size
            ),
        ));
    } else if head.root_hash != computed.root_hash {
        problems.push(problem(
            "SIGNED_HEAD_MISMATCH",
            None,
            "the Merkle root of the records differs from the signed root (records rewritten)",
        ));
    }
    (head, true)
}
