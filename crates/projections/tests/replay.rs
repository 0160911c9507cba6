//! Rebuilds and restarts: folding a history in one go, or up to a checkpoint,
//! persisting the rows, restarting and folding the rest, gives the same read model.

mod support;

use std::collections::BTreeMap;

use ledger_events::Integration;
use ledger_projections::{
    fold_read_model, Changes, CustomerView, ErasureRecord, Positions, ReadModel, RevenueFilter,
    RevenueKey, RevenueTotals,
};
use ledger_types::CustomerId;
use support::*;

/// Three customers over two white-label broadcasters and a shared one: links,
/// subscriptions, payments in two currencies, refunds, patches, two erasures with
/// revenue before, between and after them.
fn history() -> Log {
    let (b1, b2, b3) = (broadcaster(1), broadcaster(2), broadcaster(3));
    let (c1, c2, c3) = (customer(1), customer(2), customer(3));
    let mut log = Log::new();
    log.broadcaster(b1, Integration::WhiteLabel)
        .broadcaster(b2, Integration::WhiteLabel)
        .broadcaster(b3, Integration::Shared)
        .customer(c1, registered(c1, b1, t(0, 0), 1))
        .customer(c2, registered(c2, b2, t(0, 5), 2))
        .customer(c3, registered(c3, b1, t(0, 9), 3))
        .customer(c3, linked(b3, t(0, 10)))
        .customer(c1, started(sub(1), b1, "monthly", t(0, 20)))
        .customer(c1, captured(pay(1), b1, "monthly", eur(999), t(0, 30)))
        .customer(c2, captured(pay(2), b2, "annual", usd(9900), t(1, 0)))
        .customer(c3, captured(pay(3), b3, "monthly", eur(450), t(1, 10)))
        .customer(c1, patched(b1, t(1, 20), 4))
        .customer(c1, logged_in(b1, t(1, 30), 5))
        .customer(c1, captured(pay(4), b1, "monthly", eur(999), t(2, 30)))
        .customer(c1, terminated(sub(1), t(3, 0)))
        .customer(
            c1,
            refunded(refund(1), pay(4), b1, "monthly", eur(500), t(3, 10)),
        )
        .customer(c1, anonymized(c1, b1, request(1), t(3, 20)))
        .customer(c2, patched(b2, t(4, 0), 6))
        .customer(
            c1,
            refunded(refund(2), pay(1), b1, "monthly", eur(499), t(5, 0)),
        )
        .customer(c1, captured(pay(5), b1, "monthly", eur(100), t(5, 10)))
        .customer(c2, anonymized(c2, b2, request(2), t(6, 0)))
        .customer(c3, captured(pay(6), b1, "annual", usd(12_000), t(6, 10)))
        .customer(
            c2,
            refunded(refund(3), pay(2), b2, "annual", usd(9900), t(7, 0)),
        );
    log
}

type Snapshot = (
    BTreeMap<CustomerId, CustomerView>,
    Vec<(RevenueKey, RevenueTotals)>,
    Vec<ErasureRecord>,
    String,
);

fn snapshot(m: &ReadModel) -> Snapshot {
    (
        m.customers
            .iter()
            .map(|v| (v.customer_id, v.clone()))
            .collect(),
        m.revenue
            .rows(&RevenueFilter::all())
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
        m.erasures.iter().cloned().collect(),
        m.revenue.digest(&RevenueFilter::all()),
    )
}

/// What the app does at a checkpoint and a restart: persist every row (here as
/// JSON) with the position, then load them into a new read model.
fn restart_from(first: &ReadModel) -> ReadModel {
    fn through_json<T: serde::Serialize + serde::de::DeserializeOwned>(v: &T) -> T {
        serde_json::from_str(&serde_json::to_string(v).unwrap()).unwrap()
    }
    let mut next = ReadModel::new();
    for v in first.customers.iter() {
        next.customers.insert(through_json(v));
    }
    for (k, v) in first.revenue.rows(&RevenueFilter::all()) {
        next.revenue.insert(through_json(k), through_json(v));
    }
    for r in first.erasures.iter() {
        next.erasures.insert(through_json(r));
    }
    next.customers.set_position(first.customers.position());
    next.revenue.set_position(first.revenue.position());
    next.erasures.set_position(first.erasures.position());
    next
}

#[test]
fn folding_in_one_go_or_in_two_halves_across_a_restart_gives_the_same_read_model() {
    let log = history();
    let whole = fold_read_model(log.envelopes());
    let expected = snapshot(&whole);
    assert_eq!(expected.2.len(), 2, "the history has two erasures");

    for k in 0..=log.events.len() {
        let first = fold_read_model(log.envelopes().take(k));
        assert_eq!(first.position(), k as u64);
        let mut resumed = restart_from(&first);
        assert_eq!(resumed.position(), k as u64);
        for e in log.envelopes().skip(resumed.position() as usize) {
            resumed.apply(&e);
        }
        assert_eq!(snapshot(&resumed), expected, "split after {k} events");
    }
}

#[test]
fn replaying_the_whole_log_into_a_restarted_model_changes_nothing() {
    let log = history();
    let mut model = fold_read_model(log.envelopes());
    let expected = snapshot(&model);
    model.customers.take_dirty();
    model.revenue.take_dirty();
    model.erasures.take_dirty();

    for e in log.envelopes() {
        model.apply(&e);
    }

    assert_eq!(snapshot(&model), expected);
    assert!(model.customers.take_dirty().is_empty());
    assert!(model.revenue.take_dirty().is_empty());
    assert!(model.erasures.take_dirty().is_empty());
}

#[test]
fn an_erasure_record_carries_the_receipt_and_equal_revenue_digests() {
    let log = history();
    let mut model = fold_read_model(log.envelopes());

    let records: Vec<_> = model.erasures.iter().cloned().collect();
    assert_eq!(
        records.iter().map(|r| r.customer_id).collect::<Vec<_>>(),
        vec![customer(1), customer(2)],
        "in log order"
    );
    let r1 = model.erasures.get(customer(1)).unwrap();
    assert_eq!(r1.request_id, request(1));
    assert_eq!(r1.broadcaster_id, broadcaster(1));
    assert_eq!(r1.at, t(3, 20));
    assert_eq!(r1.position, 17);
    assert_eq!(r1.categories, ledger_events::PersonalCategory::ALL.to_vec());
    assert_eq!(r1.preconditions, ledger_events::Precondition::ALL.to_vec());
    for r in &records {
        assert_eq!(r.revenue_digest_before, r.revenue_digest_after);
    }

    // The digest is of the erasing broadcaster's revenue as it stood at the erasure:
    // recompute it from the log up to that event.
    let upto = ledger_projections::fold_revenue_from(log.envelopes().take(17));
    assert_eq!(
        r1.revenue_digest_before,
        upto.digest(&RevenueFilter::broadcaster(broadcaster(1)))
    );
    assert_ne!(
        r1.revenue_digest_before,
        model
            .revenue
            .digest(&RevenueFilter::broadcaster(broadcaster(1))),
        "later revenue moved on"
    );
    assert_eq!(model.erasures.len(), 2);
    assert_eq!(model.erasures.take_dirty(), vec![customer(1), customer(2)]);
}

#[test]
fn collected_changes_hold_every_changed_row_once_with_the_positions() {
    let log = history();
    let mut model = fold_read_model(log.envelopes());
    let reindexed = model.customers.take_dirty();
    assert_eq!(reindexed, vec![customer(1), customer(2), customer(3)]);

    let changes = Changes::collect(&mut model, &reindexed);

    assert_eq!(
        changes
            .customers
            .iter()
            .map(|v| v.customer_id)
            .collect::<Vec<_>>(),
        reindexed
    );
    assert_eq!(changes.revenue.len(), model.revenue.len());
    assert_eq!(
        changes
            .erasures
            .iter()
            .map(|r| r.customer_id)
            .collect::<Vec<_>>(),
        vec![customer(1), customer(2)]
    );
    let end = log.events.len() as u64;
    assert_eq!(
        changes.positions,
        Positions {
            customers: end,
            revenue: end,
            erasures: end
        }
    );
    let again = Changes::collect(&mut model, &[]);
    assert!(again.is_empty(), "nothing changed since");
}

#[test]
fn resetting_the_erasure_records_resets_revenue_and_a_rebuild_restores_both() {
    let log = history();
    let mut model = fold_read_model(log.envelopes());
    let expected = snapshot(&model);

    model.reset(false, false, true);
    assert_eq!(
        model.revenue.position(),
        0,
        "erasures are rebuilt with revenue"
    );
    assert_eq!(model.position(), 0);
    assert!(model.erasures.is_empty() && model.revenue.is_empty());
    assert_eq!(model.customers.len(), 3, "customer views are kept");

    for e in log.envelopes() {
        model.apply(&e);
    }
    assert_eq!(snapshot(&model), expected);
}
