//! Customer summaries: given a log, when it is folded, then the views say this.

mod support;

use ledger_events::{Integration, Personal};
use ledger_projections::{CustomerView, CustomerViews, Totals};
use support::*;

fn fold(log: &Log) -> CustomerViews {
    let mut views = CustomerViews::new();
    for e in log.envelopes() {
        views.apply(&e);
    }
    views
}

fn view(views: &CustomerViews, n: u64) -> &CustomerView {
    views.get(customer(n)).expect("a view for the customer")
}

/// Customer 1 registered by broadcaster 1, then a bit of everything.
fn busy_customer() -> Log {
    let (c, b) = (customer(1), broadcaster(1));
    let mut log = Log::new();
    log.broadcaster(b, Integration::WhiteLabel)
        .customer(c, registered(c, b, t(0, 10), 1))
        .customer(c, patched(b, t(0, 20), 2))
        .customer(c, started(sub(1), b, "monthly", t(0, 30)))
        .customer(c, captured(pay(1), b, "monthly", eur(1000), t(0, 40)))
        .customer(c, captured(pay(2), b, "annual", usd(5000), t(1, 0)))
        .customer(
            c,
            refunded(refund(1), pay(1), b, "monthly", eur(250), t(2, 0)),
        )
        .customer(c, patched(b, t(2, 10), 3))
        .customer(c, terminated(sub(1), t(3, 0)));
    log
}

#[test]
fn a_registration_creates_a_summary_with_the_profile_still_sealed() {
    let (c, b) = (customer(1), broadcaster(1));
    let mut log = Log::new();
    log.customer(c, registered(c, b, t(0, 10), 1));

    let views = fold(&log);

    let v = view(&views, 1);
    assert_eq!(v.customer_id, c);
    assert_eq!(v.registered_by, b);
    assert_eq!(v.broadcasters.iter().copied().collect::<Vec<_>>(), vec![b]);
    assert_eq!((v.created_at, v.updated_at), (t(0, 10), t(0, 10)));
    let profile = v.profile.as_ref().expect("the sealed profile");
    assert_eq!(
        profile.event_id,
        event_id(1),
        "the event id is the AAD to open it"
    );
    assert_eq!(profile.block, Personal::Sealed(sealed(1)));
    assert!(v.holds_personal_data());
    assert!(!v.is_tombstone());
    assert!(v.subscriptions.is_empty() && v.totals.is_empty() && v.patches.is_empty());
    assert_eq!((v.payment_count, v.refund_count), (0, 0));
    assert_eq!(views.len(), 1);
    assert_eq!(views.position(), 1);
}

#[test]
fn linking_makes_the_customer_visible_to_one_more_broadcaster() {
    let (c, b1, b2, b3) = (customer(1), broadcaster(1), broadcaster(2), broadcaster(3));
    let mut log = Log::new();
    log.customer(c, registered(c, b1, t(0, 0), 1))
        .customer(c, linked(b2, t(1, 0)));

    let views = fold(&log);

    let v = view(&views, 1);
    assert!(v.visible_to(b1) && v.visible_to(b2));
    assert!(
        !v.visible_to(b3),
        "another tenant does not see the customer"
    );
    assert_eq!(v.registered_by, b1);
    assert_eq!(v.updated_at, t(1, 0));
}

#[test]
fn subscriptions_start_active_and_record_their_first_termination() {
    let (c, b) = (customer(1), broadcaster(1));
    let mut log = Log::new();
    log.customer(c, registered(c, b, t(0, 0), 1))
        .customer(c, started(sub(1), b, "monthly", t(0, 10)))
        .customer(c, started(sub(2), b, "annual", t(0, 20)))
        .customer(c, terminated(sub(1), t(1, 0)))
        // The aggregate's rule: the first start and the first termination win.
        .customer(c, started(sub(1), b, "annual", t(2, 0)))
        .customer(c, terminated(sub(1), t(3, 0)))
        // A termination of an unknown subscription changes nothing.
        .customer(c, terminated(sub(9), t(4, 0)));

    let views = fold(&log);

    let v = view(&views, 1);
    assert_eq!(v.subscriptions.len(), 2);
    let s1 = &v.subscriptions[0];
    assert_eq!(s1.subscription_id, sub(1));
    assert_eq!(s1.offer_id, offer("monthly"));
    assert_eq!(s1.broadcaster_id, b);
    assert_eq!((s1.started_at, s1.terminated_at), (t(0, 10), Some(t(1, 0))));
    assert!(!s1.active);
    let s2 = &v.subscriptions[1];
    assert_eq!(s2.subscription_id, sub(2));
    assert!(s2.active && s2.terminated_at.is_none());
    assert_eq!(
        v.active_subscriptions()
            .map(|s| s.subscription_id)
            .collect::<Vec<_>>(),
        vec![sub(2)]
    );
}

#[test]
fn payments_and_refunds_are_totalled_per_currency() {
    let views = fold(&busy_customer());

    let v = view(&views, 1);
    assert_eq!((v.payment_count, v.refund_count), (2, 1));
    assert_eq!(
        v.totals.get(&currency("EUR")),
        Some(&Totals {
            captured: 1000,
            refunded: 250,
            net: 750
        })
    );
    assert_eq!(
        v.totals.get(&currency("USD")),
        Some(&Totals {
            captured: 5000,
            refunded: 0,
            net: 5000
        })
    );
    assert_eq!(v.totals.len(), 2);
}

#[test]
fn profile_patches_are_kept_sealed_in_log_order_with_their_event_ids() {
    let views = fold(&busy_customer());

    let v = view(&views, 1);
    let patches: Vec<_> = v
        .patches
        .iter()
        .map(|p| (p.event_id, p.block.clone()))
        .collect();
    assert_eq!(
        patches,
        vec![
            (event_id(3), Personal::Sealed(sealed(2))),
            (event_id(8), Personal::Sealed(sealed(3))),
        ]
    );
    assert_eq!(v.updated_at, t(3, 0), "the time of the last event applied");
}

#[test]
fn erasure_turns_the_summary_into_a_tombstone_that_keeps_subscriptions_and_totals() {
    let mut log = busy_customer();
    let before = fold(&log).get(customer(1)).cloned().unwrap();
    let position = log.next_position();
    log.customer(
        customer(1),
        anonymized(customer(1), broadcaster(1), request(7), t(4, 0)),
    );

    let views = fold(&log);

    let v = view(&views, 1);
    assert!(v.is_tombstone());
    assert!(!v.holds_personal_data());
    assert_eq!(v.profile, None);
    assert!(v.patches.is_empty());
    let mark = v.erasure.as_ref().unwrap();
    assert_eq!(mark.request_id, request(7));
    assert_eq!(mark.broadcaster_id, broadcaster(1));
    assert_eq!((mark.at, mark.position), (t(4, 0), position));
    assert_eq!(v.broadcasters, before.broadcasters);
    assert_eq!(v.subscriptions, before.subscriptions);
    assert_eq!(v.totals, before.totals);
    assert_eq!(
        (v.payment_count, v.refund_count),
        (before.payment_count, before.refund_count)
    );
    assert!(v.visible_to(broadcaster(1)), "a tombstone stays visible");
}

#[test]
fn events_after_erasure_update_totals_but_add_no_personal_data() {
    let (c, b) = (customer(1), broadcaster(1));
    let mut log = busy_customer();
    log.customer(c, anonymized(c, b, request(1), t(4, 0)))
        // Revenue keeps flowing: a refund of an old payment, a capture whose payer
        // block is empty (sealed like any other).
        .customer(
            c,
            refunded(refund(2), pay(2), b, "annual", usd(1000), t(5, 0)),
        )
        .customer(c, captured(pay(3), b, "monthly", eur(300), t(6, 0)))
        // The aggregate refuses these after erasure; should one ever be in the log,
        // the tombstone still takes no personal block from it.
        .customer(c, patched(b, t(7, 0), 9))
        .customer(c, logged_in(b, t(7, 10), 9))
        .customer(c, registered(c, b, t(7, 20), 9))
        // A second erasure decision does not replace the first mark.
        .customer(c, anonymized(c, b, request(2), t(8, 0)));

    let views = fold(&log);

    let v = view(&views, 1);
    assert!(v.is_tombstone() && !v.holds_personal_data());
    assert_eq!(v.erasure.as_ref().unwrap().request_id, request(1));
    assert_eq!((v.payment_count, v.refund_count), (3, 2));
    assert_eq!(
        v.totals[&currency("EUR")],
        Totals {
            captured: 1300,
            refunded: 250,
            net: 1050
        }
    );
    assert_eq!(
        v.totals[&currency("USD")],
        Totals {
            captured: 5000,
            refunded: 1000,
            net: 4000
        }
    );
    assert_eq!(v.updated_at, t(8, 0));
}

#[test]
fn an_event_seen_twice_changes_nothing() {
    let log = busy_customer();
    let mut views = fold(&log);
    let once = views.get(customer(1)).cloned();
    views.take_dirty();

    for p in 1..=log.events.len() as u64 {
        views.apply(&log.at(p));
    }

    assert_eq!(views.get(customer(1)).cloned(), once);
    assert_eq!(views.position(), log.events.len() as u64);
    assert!(views.take_dirty().is_empty(), "nothing to persist again");
}

#[test]
fn open_personal_blocks_are_never_stored() {
    let (c, b) = (customer(1), broadcaster(1));
    let mut log = Log::new();
    log.customer(c, open_profile_registration(c, b, t(0, 0)))
        .customer(c, open_patch(b, t(0, 10)))
        .customer(c, open_login(b, t(0, 20)))
        .customer(c, open_payer_capture(pay(1), b, eur(500), t(0, 30)));

    let views = fold(&log);

    let v = view(&views, 1);
    assert!(!v.holds_personal_data(), "nothing rather than plaintext");
    assert_eq!(v.profile, None);
    assert!(v.patches.is_empty());
    // The non-personal parts still apply.
    assert_eq!(v.payment_count, 1);
    assert_eq!(v.totals[&currency("EUR")].captured, 500);
    let json = serde_json::to_string(v).expect("a view without open blocks serializes");
    for secret in ["ada", "Lovelace", "192.0.2", "198.51.100"] {
        assert!(!json.contains(secret), "{secret} in {json}");
    }
}

#[test]
fn events_of_an_unregistered_customer_and_broadcaster_events_add_no_view() {
    let (c, b) = (customer(1), broadcaster(1));
    let mut log = Log::new();
    log.broadcaster(b, Integration::WhiteLabel)
        .customer(c, linked(b, t(0, 0)))
        .customer(c, captured(pay(1), b, "basic", eur(100), t(0, 1)));

    let mut views = fold(&log);

    assert!(views.is_empty());
    assert_eq!(views.position(), 3, "the position still advances");
    assert!(views.take_dirty().is_empty());
}

#[test]
fn dirty_ids_are_reported_once_and_sorted() {
    let b = broadcaster(1);
    let mut log = Log::new();
    for n in [3, 1, 2] {
        log.customer(
            customer(n),
            registered(customer(n), b, t(0, n as i64), n as u8),
        );
    }
    let mut views = fold(&log);

    assert_eq!(
        views.take_dirty(),
        vec![customer(1), customer(2), customer(3)]
    );
    assert!(views.take_dirty().is_empty());

    log.customer(customer(2), linked(broadcaster(2), t(1, 0)));
    views.apply(&log.at(4));
    assert_eq!(views.take_dirty(), vec![customer(2)]);
}

#[test]
fn a_view_round_trips_through_its_persisted_json_and_debug_hides_the_ciphertext() {
    let mut log = busy_customer();
    log.customer(
        customer(2),
        registered(customer(2), broadcaster(1), t(0, 0), 0x5A),
    );
    let views = fold(&log);
    let v = view(&views, 1).clone();

    let json = serde_json::to_string(&v).unwrap();
    let back: CustomerView = serde_json::from_str(&json).unwrap();
    assert_eq!(back, v);

    let mut loaded = CustomerViews::new();
    loaded.insert(back);
    loaded.set_position(views.position());
    assert_eq!(loaded.get(customer(1)), Some(&v));
    assert!(loaded.take_dirty().is_empty(), "loaded rows are not dirty");

    let debug = format!("{:?}", view(&views, 2));
    assert!(debug.contains("SealedBox(24 bytes)"), "{debug}");
    assert!(!debug.contains("90, 90"), "no ciphertext bytes: {debug}");
}
