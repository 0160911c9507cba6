//! The revenue rows as analysts read them: CSV and NDJSON, one line per
//! broadcaster × currency × UTC day × offer, in canonical order, with real dates,
//! amounts in minor units and each currency's exponent.
//!
//! Both the API (`GET /v1/revenue` with `Accept: text/csv` or
//! `application/x-ndjson`) and `ledger revenue --format csv|ndjson` write these
//! exact bytes, so a file saved from either is the input of
//! `scripts/verify_revenue_digest.py`, which rebuilds the canonical form
//! `ledger-revenue-v1` from it and recomputes the digest (`docs/revenue-digest.md`).
//! The CSV needs no quoting: every field is a UUID, an ISO 4217 code, a digit
//! string, a date or an offer id (`[a-z0-9_-]{1,64}`).

use std::fmt::Write as _;

use serde::Serialize;

use crate::{canonical_day, RevenueKey, RevenueTotals};

/// The CSV header line, newline included. Columns in this order; lines end in `\n`.
pub const CSV_HEADER: &str = "broadcaster_id,currency,exponent,day,offer_id,gross_captured,refunded,net,payment_count,refund_count\n";

/// One row as an NDJSON line (or any serde format): the canonical row's fields
/// plus the currency's exponent, the day as `YYYY-MM-DD`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RevenueLine {
    pub broadcaster_id: String,
    pub currency: String,
    /// Digits of the currency's minor unit (ISO 4217); `None` for a stored code
    /// that is no longer an ISO 4217 currency with minor units.
    pub exponent: Option<u8>,
    pub day: String,
    pub offer_id: String,
    /// `gross_captured`, `refunded`, `net`, `payment_count`, `refund_count`.
    #[serde(flatten)]
    pub totals: RevenueTotals,
}

impl RevenueLine {
    pub fn of(k: &RevenueKey, t: &RevenueTotals) -> Self {
        Self {
            broadcaster_id: k.broadcaster_id.to_string(),
            currency: k.currency.to_string(),
            exponent: k.currency.exponent(),
            day: canonical_day(k.day),
            offer_id: k.offer_id.to_string(),
            totals: *t,
        }
    }
}

/// Appends one CSV line (the columns of [`CSV_HEADER`]); an unknown exponent is
/// an empty field.
pub fn write_csv_line(out: &mut String, k: &RevenueKey, t: &RevenueTotals) {
    let exponent = k
        .currency
        .exponent()
        .map(|e| e.to_string())
        .unwrap_or_default();
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "{},{},{},{},{},{},{},{},{},{}",
        k.broadcaster_id,
        k.currency,
        exponent,
        canonical_day(k.day),
        k.offer_id,
        t.gross_captured,
        t.refunded,
        t.net,
        t.payment_count,
        t.refund_count
    );
}

/// The whole CSV document of some rows (header first), in the order given.
pub fn csv<'a>(rows: impl IntoIterator<Item = (&'a RevenueKey, &'a RevenueTotals)>) -> String {
    let mut out = String::from(CSV_HEADER);
    for (k, t) in rows {
        write_csv_line(&mut out, k, t);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_types::{BroadcasterId, Currency, OfferId};

    #[test]
    fn a_csv_line_has_the_header_s_columns_a_real_date_and_the_exponent() {
        let k = RevenueKey {
            broadcaster_id: BroadcasterId::parse("00000002-0000-4000-8000-000000000001").unwrap(),
            currency: Currency::parse("EUR").unwrap(),
            day: 20_454,
            offer_id: OfferId::parse("premium").unwrap(),
        };
        let t = RevenueTotals {
            gross_captured: 1000,
            refunded: 250,
            net: 750,
            payment_count: 1,
            refund_count: 1,
        };
        let text = csv([(&k, &t)]);
        assert_eq!(
            text,
            "broadcaster_id,currency,exponent,day,offer_id,gross_captured,refunded,net,payment_count,refund_count\n\
             00000002-0000-4000-8000-000000000001,EUR,2,2026-01-01,premium,1000,250,750,1,1\n"
        );
        let line = serde_json::to_string(&RevenueLine::of(&k, &t)).unwrap();
        assert_eq!(
            line,
            r#"{"broadcaster_id":"00000002-0000-4000-8000-000000000001","currency":"EUR","exponent":2,"day":"2026-01-01","offer_id":"premium","gross_captured":1000,"refunded":250,"net":750,"payment_count":1,"refund_count":1}"#
        );
    }

    /// The worked example of `docs/revenue-digest.md`: its CSV, its canonical
    /// bytes and its digest are the code's.
    #[test]
    fn the_worked_example_of_the_revenue_digest_doc_holds() {
        let b = BroadcasterId::parse("00000002-0000-4000-8000-000000000001").unwrap();
        let key = |day| RevenueKey {
            broadcaster_id: b,
            currency: Currency::parse("EUR").unwrap(),
            day,
            offer_id: OfferId::parse("premium").unwrap(),
        };
        let mut revenue = crate::Revenue::new();
        // Inserted out of order: the canonical form sorts.
        revenue.insert(
            key(20_455),
            RevenueTotals {
                gross_captured: 0,
                refunded: 250,
                net: -250,
                payment_count: 0,
                refund_count: 1,
            },
        );
        revenue.insert(
            key(20_454),
            RevenueTotals {
                gross_captured: 1000,
                refunded: 0,
                net: 1000,
                payment_count: 1,
                refund_count: 0,
            },
        );
        let all = crate::RevenueFilter::all();
        let doc = include_str!("../../../docs/revenue-digest.md");
        let csv_text = csv(revenue.rows(&all));
        assert!(
            doc.contains(&format!("```text\n{csv_text}```")),
            "{csv_text}"
        );
        let canonical = revenue.canonical_bytes(&all);
        assert_eq!(canonical.len(), 169);
        let shown = String::from_utf8(canonical)
            .unwrap()
            .replace('\t', "\\t")
            .replace('\n', "\\n\n");
        assert!(doc.contains(&format!("```text\n{shown}```")), "{shown}");
        let digest = revenue.digest(&all);
        assert_eq!(
            digest,
            "f1711a104960aba14a808502f8cbe5eb968eaf3739eee949078ed0c06cc17c1a"
        );
        assert!(doc.contains(&digest));
        assert_eq!(
            crate::Revenue::new().digest(&all),
            "18ba74a5de068971d3549345cb907c754a04bfd098005e06dd26b9cf76d39eea"
        );
    }
}
