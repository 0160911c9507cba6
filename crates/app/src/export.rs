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
//!    "revenue_digest":HEX}`.
//!
//! Verification recomputes both hash chains from the records themselves, checks
//! positions and versions are gap-free, that the trailer names the last record, and
//! that the revenue recomputed from the records has the trailer's digest.

use std::collections::HashMap;
use std::io::{BufRead, Write};

use ledger_events::{CustomerEvent, DomainEvent};
use ledger_projections::{Envelope, Revenue, RevenueFilter};
use ledger_store::{chain, Hash32, RecordedEvent, ZERO_HASH};
use ledger_types::{EventId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::audit::Problem;
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
    pub problems: Vec<Problem>,
}

fn io(e: std::io::Error) -> AppError {
    AppError::Io(e.kind().to_string())
}

/// Writes the whole log to `out`.
pub async fn export(ledger: &Ledger, out: &mut impl Write) -> Result<ExportReport, AppError> {
    let header = Header {
        format: FORMAT.into(),
        exported_at: Timestamp::now().to_rfc3339(),
    };
    write_line(out, &header)?;
    let mut revenue = Revenue::new();
    let (mut after, mut events, mut erasures) = (0u64, 0u64, 0u64);
    let mut head_hash = ZERO_HASH;
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
    let trailer = Trailer {
        trailer: true,
        events,
        head_position: after,
        head_log_hash: hex::encode(head_hash),
        revenue_digest: revenue.digest(&RevenueFilter::all()),
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
        problems: vec![],
    })
}

fn write_line<T: Serialize>(out: &mut impl Write, value: &T) -> Result<(), AppError> {
    serde_json::to_writer(&mut *out, value).map_err(|e| AppError::Io(e.to_string()))?;
    out.write_all(b"\n").map_err(io)
}

fn problem(code: &'static str, position: Option<u64>, detail: impl Into<String>) -> Problem {
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

/// Verifies an export offline. Never fails on bad content: every discrepancy is
/// reported as a problem; only an unreadable file is an error.
pub fn verify_export(input: impl BufRead) -> Result<ExportReport, AppError> {
    let mut problems = Vec::new();
    let mut lines = input.lines();
    match lines.next() {
        Some(Ok(l)) => match serde_json::from_str::<Header>(&l) {
            Ok(h) if h.format == FORMAT => {}
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
        match crate::decode_record(&r) {
            Ok(e) => {
                if matches!(e, DomainEvent::Customer(_, CustomerEvent::Anonymized(_))) {
                    erasures += 1;
                }
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
    match &trailer {
        None => problems.push(problem(
            "NO_TRAILER",
            None,
            "the export ends without its trailer (truncated)",
        )),
        Some(t) if problems.is_empty() => {
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
        }
        Some(_) => {}
    }
    Ok(ExportReport {
        ok: problems.is_empty(),
        events,
        head_position: expected_pos - 1,
        head_log_hash: hex::encode(log_prev),
        revenue_digest: digest,
        erasures,
        problems,
    })
}
