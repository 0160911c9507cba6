//! `ledger revenue --format csv|ndjson|json`: the canonical revenue rows for
//! analysts, byte for byte what `GET /v1/revenue` answers to `Accept: text/csv`
//! or `application/x-ndjson` (`ledger_projections::revenue_table`). Read-only: a
//! snapshot of the log, no KEK (revenue is never sealed).

use std::io::Write as _;

use anyhow::Result;
use ledger_app::read::RevenueReport;
use ledger_projections::revenue_table::{self, RevenueLine};

/// Totals of one currency in `--format json`.
#[derive(serde::Serialize)]
struct CurrencyLine<'a> {
    currency: &'a str,
    exponent: Option<u8>,
    #[serde(flatten)]
    totals: &'a ledger_projections::RevenueTotals,
}

/// The machine formats of `ledger revenue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A header line, then one line per row; the digest goes to stderr.
    Csv,
    /// One JSON object per row; the digest goes to stderr.
    Ndjson,
    /// One JSON document: the digest, totals per currency and every row.
    Json,
}

/// Writes the report to stdout in `format`.
pub fn print(report: &RevenueReport, format: Format) -> Result<()> {
    let rows = || report.rows.iter().map(|(k, t)| (k, t));
    let mut out = std::io::stdout().lock();
    match format {
        Format::Csv => out.write_all(revenue_table::csv(rows()).as_bytes())?,
        Format::Ndjson => {
            for (k, t) in rows() {
                serde_json::to_writer(&mut out, &RevenueLine::of(k, t))?;
                out.write_all(b"\n")?;
            }
        }
        Format::Json => {
            let totals: Vec<_> = report
                .per_currency
                .iter()
                .map(|(c, t)| CurrencyLine {
                    currency: c.as_str(),
                    exponent: c.exponent(),
                    totals: t,
                })
                .collect();
            let lines: Vec<_> = rows().map(|(k, t)| RevenueLine::of(k, t)).collect();
            let v = serde_json::json!({
                "canonical_form": "ledger-revenue-v1",
                "digest": report.digest,
                "totals": totals,
                "rows": lines,
            });
            serde_json::to_writer_pretty(&mut out, &v)?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    if format != Format::Json {
        eprintln!("digest {}", report.digest);
    }
    Ok(())
}
