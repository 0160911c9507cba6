//! Revenue totals, filters, the canonical form and its digest.

mod support;

use ledger_events::Integration;
use ledger_projections::{
    fold_revenue_from, Revenue, RevenueFilter, RevenueKey, RevenueTotals, CANONICAL_HEADER,
};
use support::*;

fn fold(log: &Log) -> Revenue {
    fold_revenue_from(log.envelopes())
}

fn key(b: u64, cur: &str, day: i64, o: &str) -> RevenueKey {
    RevenueKey {
        broadcaster_id: broadcaster(b),
        currency: currency(cur),
        day: DAY0 + day,
        offer_id: offer(o),
    }
}

fn totals(gross: i64, refunded: i64, payments: u64, refunds: u64) -> RevenueTotals {
    RevenueTotals {
        gross_captured: gross.into(),
        refunded: refunded.into(),
        net: i128::from(gross) - i128::from(refunded),
        payment_count: payments,
        refund_count: refunds,
    }
}

/// The fixed history of the golden test: two white-label broadcasters, two
/// currencies, two offers, refunds on later days, and an erasure between a capture
/// and its refund.
fn golden_history() -> Log {
    let (c1, c2, b1, b2) = (customer(1), customer(2), broadcaster(1), broadcaster(2));
    let mut log = Log::new();
    log.broadcaster(b1, Integration::WhiteLabel)
        .broadcaster(b2, Integration::WhiteLabel)
        .customer(c1, registered(c1, b1, t(0, 0), 1))
        .customer(c1, captured(pay(1), b1, "premium", eur(1000), t(0, 60)))
        .customer(c1, captured(pay(2), b1, "basic", eur(500), t(0, 120)))
        .customer(c1, captured(pay(3), b1, "premium", usd(2000), t(1, 0)))
        .customer(
            c1,
            refunded(refund(1), pay(1), b1, "premium", eur(250), t(2, 0)),
        )
        .customer(c2, registered(c2, b2, t(0, 0), 2))
        .customer(c2, captured(pay(4), b2, "premium", eur(700), t(0, 86_399)))
        .customer(c2, anonymized(c2, b2, request(1), t(3, 0)))
        .customer(
            c2,
            refunded(refund(2), pay(4), b2, "premium", eur(700), t(4, 0)),
        );
    log
}

const GOLDEN: &str = "ledger-revenue-v1\n\
00000002-0000-4000-8000-000000000001\tEUR\t2026-01-01\tbasic\t500\t0\t500\t1\t0\n\
00000002-0000-4000-8000-000000000001\tEUR\t2026-01-01\tpremium\t1000\t0\t1000\t1\t0\n\
00000002-0000-4000-8000-000000000001\tEUR\t2026-01-03\tpremium\t0\t250\t-250\t0\t1\n\
00000002-0000-4000-8000-000000000001\tUSD\t2026-01-02\tpremium\t2000\t0\t2000\t1\t0\n\
00000002-0000-4000-8000-000000000002\tEUR\t2026-01-01\tpremium\t700\t0\t700\t1\t0\n\
00000002-0000-4000-8000-000000000002\tEUR\t2026-01-05\tpremium\t0\t700\t-700\t0\t1\n";

const GOLDEN_SHA256: &str = "9e26bff68682de0e107b7de40557677dc494c848c4c18de64c65b761b7d99c3e";
const HEADER_ONLY_SHA256: &str = "18ba74a5de068971d3549345cb907c754a04bfd098005e06dd26b9cf76d39eea";

#[test]
fn captures_are_totalled_per_broadcaster_currency_day_and_offer() {
    let revenue = fold(&golden_history());

    assert_eq!(
        revenue.get(&key(1, "EUR", 0, "premium")),
        Some(&totals(1000, 0, 1, 0))
    );
    assert_eq!(
        revenue.get(&key(1, "EUR", 0, "basic")),
        Some(&totals(500, 0, 1, 0))
    );
    assert_eq!(
        revenue.get(&key(1, "USD", 1, "premium")),
        Some(&totals(2000, 0, 1, 0))
    );
    assert_eq!(
        revenue.get(&key(2, "EUR", 0, "premium")),
        Some(&totals(700, 0, 1, 0)),
        "23:59:59 is still the capture's day"
    );
    assert_eq!(revenue.len(), 6);
}

#[test]
fn refunds_are_bucketed_on_their_own_day_with_the_broadcaster_and_offer_of_the_event() {
    let revenue = fold(&golden_history());

    assert_eq!(
        revenue.get(&key(1, "EUR", 2, "premium")),
        Some(&totals(0, 250, 0, 1))
    );
    assert_eq!(
        revenue.get(&key(2, "EUR", 4, "premium")),
        Some(&totals(0, 700, 0, 1))
    );
    assert_eq!(revenue.get(&key(2, "EUR", 4, "premium")).unwrap().net, -700);
    // The capture's own bucket is untouched by the later refund.
    assert_eq!(
        revenue.get(&key(1, "EUR", 0, "premium")),
        Some(&totals(1000, 0, 1, 0))
    );
}

#[test]
fn filters_select_by_broadcaster_currency_and_an_inclusive_day_range() {
    let revenue = fold(&golden_history());
    let keys = |f: RevenueFilter| revenue.rows(&f).map(|(k, _)| k.clone()).collect::<Vec<_>>();

    assert_eq!(keys(RevenueFilter::all()).len(), 6);
    assert_eq!(
        keys(RevenueFilter::broadcaster(broadcaster(2))),
        vec![key(2, "EUR", 0, "premium"), key(2, "EUR", 4, "premium")]
    );
    assert_eq!(
        keys(RevenueFilter {
            currency: Some(currency("USD")),
            ..RevenueFilter::default()
        }),
        vec![key(1, "USD", 1, "premium")]
    );
    let days = RevenueFilter {
        from_day: Some(DAY0 + 1),
        to_day: Some(DAY0 + 2),
        ..RevenueFilter::default()
    };
    assert_eq!(
        keys(days),
        vec![key(1, "EUR", 2, "premium"), key(1, "USD", 1, "premium")]
    );
    let one = RevenueFilter {
        broadcaster_id: Some(broadcaster(1)),
        currency: Some(currency("EUR")),
        from_day: Some(DAY0),
        to_day: Some(DAY0),
    };
    assert_eq!(
        keys(one),
        vec![key(1, "EUR", 0, "basic"), key(1, "EUR", 0, "premium")]
    );
    let inverted = RevenueFilter {
        broadcaster_id: Some(broadcaster(1)),
        currency: Some(currency("EUR")),
        from_day: Some(DAY0 + 3),
        to_day: Some(DAY0),
    };
    assert!(
        keys(inverted).is_empty(),
        "an empty range is empty, not a panic"
    );
    assert!(keys(RevenueFilter::broadcaster(broadcaster(9))).is_empty());
}

#[test]
fn the_summary_sums_the_selected_rows_per_currency() {
    let revenue = fold(&golden_history());

    let all = revenue.summary(&RevenueFilter::all());
    assert_eq!(all[&currency("EUR")], totals(2200, 950, 3, 2));
    assert_eq!(all[&currency("USD")], totals(2000, 0, 1, 0));
    let b2 = revenue.summary(&RevenueFilter::broadcaster(broadcaster(2)));
    assert_eq!(b2.len(), 1);
    assert_eq!(b2[&currency("EUR")], totals(700, 700, 1, 1));
}

#[test]
fn the_canonical_form_of_a_fixed_history_is_exactly_this_text_and_digest() {
    let revenue = fold(&golden_history());

    let text = String::from_utf8(revenue.canonical_bytes(&RevenueFilter::all())).unwrap();
    assert_eq!(text, GOLDEN);
    assert_eq!(revenue.digest(&RevenueFilter::all()), GOLDEN_SHA256);

    let b2 = RevenueFilter::broadcaster(broadcaster(2));
    let tail: String = GOLDEN.lines().skip(5).map(|l| format!("{l}\n")).collect();
    assert_eq!(
        String::from_utf8(revenue.canonical_bytes(&b2)).unwrap(),
        format!("{CANONICAL_HEADER}{tail}")
    );
    assert_eq!(
        revenue.digest(&b2),
        "0c66d2ffa8a65ee6178dd89f22c88c5c43e419475808513b2dfc4aeb032209e3"
    );
}

#[test]
fn an_empty_selection_is_the_header_alone_with_a_fixed_digest() {
    let empty = Revenue::new();
    assert_eq!(
        empty.canonical_bytes(&RevenueFilter::all()),
        b"ledger-revenue-v1\n"
    );
    assert_eq!(empty.digest(&RevenueFilter::all()), HEADER_ONLY_SHA256);

    let revenue = fold(&golden_history());
    let nothing = RevenueFilter {
        currency: Some(currency("GBP")),
        ..RevenueFilter::default()
    };
    assert_eq!(
        revenue.canonical_bytes(&nothing),
        CANONICAL_HEADER.as_bytes()
    );
    assert_eq!(revenue.digest(&nothing), HEADER_ONLY_SHA256);
}

#[test]
fn erasure_events_do_not_change_revenue() {
    let log = golden_history();
    let without: Vec<_> = log
        .envelopes()
        .filter(|e| {
            !matches!(
                e.event,
                ledger_events::DomainEvent::Customer(
                    _,
                    ledger_events::CustomerEvent::Anonymized(_)
                )
            )
        })
        .collect();

    let with = fold(&log);
    let without = fold_revenue_from(without);

    assert_eq!(
        with.digest(&RevenueFilter::all()),
        without.digest(&RevenueFilter::all())
    );
    assert!(with
        .rows(&RevenueFilter::all())
        .eq(without.rows(&RevenueFilter::all())));
}

#[test]
fn an_event_seen_twice_is_counted_once() {
    let log = golden_history();
    let mut revenue = fold(&log);
    let digest = revenue.digest(&RevenueFilter::all());
    revenue.take_dirty();

    for p in (1..=log.events.len() as u64).rev() {
        revenue.apply(&log.at(p));
    }

    assert_eq!(revenue.digest(&RevenueFilter::all()), digest);
    assert!(revenue.take_dirty().is_empty());
    assert_eq!(revenue.position(), log.events.len() as u64);
}

#[test]
fn dirty_keys_are_the_rows_changed_since_the_last_call_in_key_order() {
    let log = golden_history();
    let mut revenue = Revenue::new();
    for p in 1..=5 {
        revenue.apply(&log.at(p));
    }
    assert_eq!(
        revenue.take_dirty(),
        vec![key(1, "EUR", 0, "basic"), key(1, "EUR", 0, "premium")]
    );
    for p in 6..=log.events.len() as u64 {
        revenue.apply(&log.at(p));
    }
    assert_eq!(
        revenue.take_dirty(),
        vec![
            key(1, "EUR", 2, "premium"),
            key(1, "USD", 1, "premium"),
            key(2, "EUR", 0, "premium"),
            key(2, "EUR", 4, "premium"),
        ]
    );
    assert!(revenue.take_dirty().is_empty());
}

#[test]
fn rows_loaded_from_storage_give_the_same_digest_and_are_not_dirty() {
    let log = golden_history();
    let revenue = fold(&log);

    let mut loaded = Revenue::new();
    for (k, v) in revenue.rows(&RevenueFilter::all()) {
        let json = serde_json::to_string(&(k, v)).unwrap();
        let (k, v): (RevenueKey, RevenueTotals) = serde_json::from_str(&json).unwrap();
        loaded.insert(k, v);
    }
    loaded.set_position(revenue.position());

    assert_eq!(
        loaded.canonical_bytes(&RevenueFilter::all()),
        GOLDEN.as_bytes()
    );
    assert!(loaded.take_dirty().is_empty());
    loaded.apply(&log.at(3));
    assert_eq!(
        loaded.digest(&RevenueFilter::all()),
        GOLDEN_SHA256,
        "already folded"
    );
}

// ------------------------------------------------------------------ overflow (issue 10.3)

/// The history: one capture of `i64::MAX` minor units (possible before
/// `Money::MAX_AMOUNT`; such events stay in the log), then ordinary payments. With
/// `i64` sums that saturated, the later payments vanished from the totals and the
/// digest vouched for the wrong figure.
#[test]
fn payments_after_a_capture_of_i64_max_still_count_and_change_the_digest() {
    let (c, b) = (customer(1), broadcaster(1));
    let mut log = Log::new();
    log.broadcaster(b, Integration::WhiteLabel)
        .customer(c, registered(c, b, t(0, 0), 1))
        .customer(c, captured(pay(1), b, "premium", eur(i64::MAX), t(0, 10)));
    for n in 2..=4 {
        log.customer(
            c,
            captured(pay(n), b, "premium", eur(1_000_000_000_000), t(0, 20)),
        );
    }
    let revenue = fold(&log);

    let expected = i128::from(i64::MAX) + 3 * 1_000_000_000_000;
    let row = revenue.get(&key(1, "EUR", 0, "premium")).unwrap();
    assert_eq!(
        (row.gross_captured, row.net, row.payment_count),
        (expected, expected, 4)
    );
    assert_eq!(
        revenue.summary(&RevenueFilter::all())[&currency("EUR")].gross_captured,
        expected
    );
    let text = String::from_utf8(revenue.canonical_bytes(&RevenueFilter::all())).unwrap();
    assert!(
        text.contains("\t9223375036854775807\t0\t9223375036854775807\t4\t0\n"),
        "{text}"
    );

    // The digest of the saturated figures (what the old fold produced) differs.
    let mut saturated = Revenue::new();
    saturated.insert(
        key(1, "EUR", 0, "premium"),
        RevenueTotals {
            gross_captured: i64::MAX.into(),
            net: i64::MAX.into(),
            payment_count: 4,
            ..RevenueTotals::default()
        },
    );
    assert_ne!(
        revenue.digest(&RevenueFilter::all()),
        saturated.digest(&RevenueFilter::all())
    );
}

/// 9,223,373 payments of the largest amount allowed (10^12 minor units) total
/// 9,223,373,000,000,000,000: past `i64::MAX` (9,223,372,036,854,775,807), exact.
/// All go to one row, so both the row and the per-currency summary cross the bound.
#[test]
fn many_payments_of_the_maximum_amount_sum_past_i64_without_loss() {
    const MAX: i64 = ledger_types::Money::MAX_AMOUNT;
    let n: u64 = (i64::MAX as u64) / (MAX as u64) + 1;
    let b = broadcaster(1);
    let event = ledger_events::DomainEvent::Customer(
        customer(1),
        captured(pay(1), b, "premium", eur(MAX), t(0, 10)),
    );
    let mut revenue = Revenue::new();
    for position in 1..=n {
        revenue.apply(&envelope(position, &event));
    }
    let expected = i128::from(MAX) * i128::from(n);
    assert!(expected > i128::from(i64::MAX));
    let eur_total = revenue.summary(&RevenueFilter::all())[&currency("EUR")];
    assert_eq!(
        (
            eur_total.gross_captured,
            eur_total.net,
            eur_total.payment_count
        ),
        (expected, expected, n)
    );
    let text = String::from_utf8(revenue.canonical_bytes(&RevenueFilter::all())).unwrap();
    assert!(
        text.contains(&format!("\t{expected}\t0\t{expected}\t{n}\t0\n")),
        "{text}"
    );

    // Through serde and back (how a checkpoint or the CLI's JSON carries a row):
    // a figure beyond i64 is a string, one within it a number as before.
    let json = serde_json::to_value(eur_total).unwrap();
    assert_eq!(json["gross_captured"], expected.to_string());
    assert_eq!(json["refunded"], 0);
    let back: RevenueTotals = serde_json::from_value(json).unwrap();
    assert_eq!(back, eur_total);
}
