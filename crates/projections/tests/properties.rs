//! Property tests over random valid histories: random commands for a few customers
//! and broadcasters are decided by the real aggregate (`Customer::handle` +
//! `apply`), so the log holds only what the write side can produce, including
//! erasures by white-label broadcasters and revenue after erasure. Personal blocks
//! are sealed (opaque bytes) before the projections see them, as in the store.

mod support;

use std::collections::BTreeMap;

use ledger_command::{BroadcasterRef, Customer, CustomerCommand, Integration};
use ledger_events::{
    BroadcasterRegistered, CustomerEvent, DomainEvent, Personal, Profile, ProfilePatch, SealedBox,
};
use ledger_projections::{
    fold_read_model, fold_revenue_from, Envelope, ReadModel, RevenueFilter, Totals,
};
use ledger_types::{BroadcasterId, Currency, Money, Timestamp};
use proptest::prelude::*;
use support::*;

const CUSTOMERS: usize = 3;
const BROADCASTERS: usize = 3;

/// Broadcasters 0 and 1 are white-label, 2 is shared.
fn b(i: usize) -> BroadcasterId {
    broadcaster(i as u64 + 1)
}
fn bref(i: usize) -> BroadcasterRef {
    BroadcasterRef {
        id: b(i),
        integration: if i == 2 {
            Integration::Shared
        } else {
            Integration::WhiteLabel
        },
    }
}

#[derive(Debug, Clone)]
enum Op {
    Register(usize),
    Link(usize),
    Update(usize),
    Login(usize),
    Start(usize, u64),
    Terminate(usize, u64),
    Capture {
        b: usize,
        p: u64,
        minor: i64,
        usd: bool,
        ip: bool,
        annual: bool,
    },
    Refund {
        b: usize,
        r: u64,
        p: u64,
        minor: i64,
    },
    Anonymize(usize, u64),
}

fn broadcaster_index() -> impl Strategy<Value = usize> {
    prop_oneof![4 => Just(0usize), 2 => Just(1usize), 1 => Just(2usize)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => broadcaster_index().prop_map(Op::Register),
        2 => broadcaster_index().prop_map(Op::Link),
        2 => broadcaster_index().prop_map(Op::Update),
        1 => broadcaster_index().prop_map(Op::Login),
        4 => (broadcaster_index(), 0u64..4).prop_map(|(b, s)| Op::Start(b, s)),
        5 => (broadcaster_index(), 0u64..4).prop_map(|(b, s)| Op::Terminate(b, s)),
        6 => (broadcaster_index(), 0u64..4, 1i64..2000, prop::bool::weighted(0.25), any::<bool>(), any::<bool>())
            .prop_map(|(b, p, minor, usd, ip, annual)| Op::Capture { b, p, minor, usd, ip, annual }),
        6 => (broadcaster_index(), 0u64..8, 0u64..4, 1i64..400)
            .prop_map(|(b, r, p, minor)| Op::Refund { b, r, p, minor }),
        4 => (broadcaster_index(), 0u64..3).prop_map(|(b, r)| Op::Anonymize(b, r)),
    ]
}

/// (customer, op, milliseconds since the previous step): steps of up to 30 hours,
/// so histories span days and revenue lands in several day buckets.
fn history() -> impl Strategy<Value = (Vec<(usize, Op)>, usize)> {
    (
        prop::collection::vec(broadcaster_index(), CUSTOMERS),
        prop::collection::vec((0..CUSTOMERS, op()), 0..90),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(registrations, ops, split)| {
            let mut all: Vec<(usize, Op)> = registrations
                .into_iter()
                .enumerate()
                .map(|(c, b)| (c, Op::Register(b)))
                .collect();
            all.extend(ops);
            let len = all.len() + BROADCASTERS + 1;
            (all, split.index(len))
        })
}

fn money(minor: i64, usd: bool) -> Money {
    Money::new(
        minor,
        Currency::parse(if usd { "USD" } else { "EUR" }).unwrap(),
    )
}

fn command(c: usize, op: &Op, at: Timestamp, step: usize) -> CustomerCommand {
    // Ids are per customer, so two customers never share a payment or refund id.
    let n = |x: u64| (c as u64 + 1) * 1000 + x;
    match *op {
        Op::Register(i) => CustomerCommand::Register {
            customer_id: customer(c as u64 + 1),
            broadcaster_id: b(i),
            profile: {
                let mut v = Profile::default();
                v.email = format!("person{c}@example.org");
                v.password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into();
                v.first_name = "Ada".into();
                v.last_name = "Lovelace".into();
                v
            },
            at,
        },
        Op::Link(i) => CustomerCommand::Link {
            broadcaster_id: b(i),
            at,
        },
        Op::Update(i) => CustomerCommand::UpdateProfile {
            broadcaster_id: b(i),
            patch: {
                let mut v = ProfilePatch::default();
                v.phone_number = Some(format!("+44 20 7946 {step:04}"));
                v
            },
            at,
        },
        Op::Login(i) => CustomerCommand::RecordLogin {
            broadcaster_id: b(i),
            ip: format!("192.0.2.{}", step % 250),
            at,
        },
        Op::Start(i, s) => CustomerCommand::StartSubscription {
            broadcaster_id: b(i),
            subscription_id: sub(n(s)),
            offer_id: offer("monthly"),
            ends_at: None,
            at,
        },
        Op::Terminate(i, s) => CustomerCommand::TerminateSubscription {
            broadcaster_id: b(i),
            subscription_id: sub(n(s)),
            at,
        },
        Op::Capture {
            b: i,
            p,
            minor,
            usd,
            ip,
            annual,
        } => CustomerCommand::CapturePayment {
            broadcaster_id: b(i),
            payment_id: pay(n(p)),
            offer_id: offer(if annual { "annual" } else { "monthly" }),
            subscription_id: None,
            amount: money(minor, usd),
            payer_ip: ip.then(|| "198.51.100.9".to_owned()),
            at,
        },
        Op::Refund { b: i, r, p, minor } => CustomerCommand::RefundPayment {
            broadcaster_id: b(i),
            refund_id: refund(n(r)),
            payment_id: pay(n(p)),
            // Refunds are in EUR; a USD payment refuses them (CurrencyMismatch).
            amount: money(minor, false),
            at,
        },
        Op::Anonymize(i, r) => CustomerCommand::Anonymize {
            request_id: request(n(r)),
            broadcaster: bref(i),
            key_id: None,
            at,
        },
    }
}

/// Replaces every open personal block by opaque "ciphertext", as the app does before
/// the store.
fn seal(e: CustomerEvent, position: u64) -> CustomerEvent {
    let boxed = || SealedBox::from_bytes(position.to_le_bytes().repeat(3));
    match e {
        CustomerEvent::Registered(mut x) => {
            x.profile = Personal::Sealed(boxed());
            CustomerEvent::Registered(x)
        }
        CustomerEvent::ProfileUpdated(mut x) => {
            x.patch = Personal::Sealed(boxed());
            CustomerEvent::ProfileUpdated(x)
        }
        CustomerEvent::LoginRecorded(mut x) => {
            x.login = Personal::Sealed(boxed());
            CustomerEvent::LoginRecorded(x)
        }
        CustomerEvent::PaymentCaptured(mut x) => {
            x.payer = Personal::Sealed(boxed());
            CustomerEvent::PaymentCaptured(x)
        }
        other => other,
    }
}

struct World {
    log: Vec<DomainEvent>,
    customers: Vec<Customer>,
}

fn run(ops: &[(usize, Op)]) -> World {
    let mut log: Vec<DomainEvent> = (0..BROADCASTERS)
        .map(|i| {
            DomainEvent::Broadcaster(
                b(i),
                BroadcasterRegistered {
                    broadcaster_id: b(i),
                    name: format!("Broadcaster {i}"),
                    integration: bref(i).integration,
                    at: t(0, 0),
                },
            )
        })
        .collect();
    let mut customers = vec![Customer::default(); CUSTOMERS];
    let mut now = t(0, 0).millis();
    for (step, (c, op)) in ops.iter().enumerate() {
        now += (step as i64 * 7_919_993) % (30 * 3_600_000);
        let cmd = command(*c, op, Timestamp::from_millis(now), step);
        if let Ok(events) = customers[*c].handle(&cmd) {
            for e in events {
                customers[*c].apply(&e);
                let position = log.len() as u64 + 1;
                log.push(DomainEvent::Customer(
                    customer(*c as u64 + 1),
                    seal(e, position),
                ));
            }
        }
    }
    World { log, customers }
}

fn envelopes(log: &[DomainEvent]) -> impl Iterator<Item = Envelope<'_>> {
    log.iter()
        .enumerate()
        .map(|(i, e)| envelope(i as u64 + 1, e))
}

fn is_erasure(e: &Envelope<'_>) -> bool {
    matches!(
        e.event,
        DomainEvent::Customer(_, CustomerEvent::Anonymized(_))
    )
}

fn filters() -> Vec<RevenueFilter> {
    let mut f = vec![RevenueFilter::all()];
    f.extend((0..BROADCASTERS).map(|i| RevenueFilter::broadcaster(b(i))));
    f.push(RevenueFilter {
        currency: Some(Currency::parse("EUR").unwrap()),
        from_day: Some(DAY0 + 1),
        to_day: Some(DAY0 + 3),
        ..RevenueFilter::default()
    });
    f
}

fn check(world: &World, split: usize) -> Result<(), TestCaseError> {
    let model = fold_read_model(envelopes(&world.log));

    // (1) Revenue is exactly that of the same history without its erasures.
    let without = fold_revenue_from(envelopes(&world.log).filter(|e| !is_erasure(e)));
    for f in filters() {
        prop_assert!(model.revenue.rows(&f).eq(without.rows(&f)));
        prop_assert_eq!(model.revenue.digest(&f), without.digest(&f));
        prop_assert_eq!(model.revenue.summary(&f), without.summary(&f));
    }
    let alone = fold_revenue_from(envelopes(&world.log));
    prop_assert_eq!(
        alone.digest(&RevenueFilter::all()),
        model.revenue.digest(&RevenueFilter::all()),
        "revenue folds the same alone or in the read model"
    );

    let mut erased = 0;
    for (i, state) in world.customers.iter().enumerate() {
        let id = customer(i as u64 + 1);
        let Some(view) = model.customers.get(id) else {
            prop_assert!(!state.exists());
            continue;
        };
        prop_assert!(state.exists());

        // (2) An erased customer's view is a tombstone without personal blocks, and
        // only an erased one is.
        match state.anonymized() {
            Some(receipt) => {
                erased += 1;
                prop_assert!(view.is_tombstone());
                prop_assert!(!view.holds_personal_data());
                let mark = view.erasure.as_ref().unwrap();
                prop_assert_eq!(mark.request_id, receipt.request_id);
                prop_assert_eq!(mark.broadcaster_id, receipt.broadcaster_id);
                // (3) Its erasure record proves revenue unchanged.
                let record = model.erasures.get(id).expect("a record per erasure");
                prop_assert_eq!(record.request_id, receipt.request_id);
                prop_assert_eq!(record.position, mark.position);
                prop_assert_eq!(&record.revenue_digest_before, &record.revenue_digest_after);
                prop_assert_eq!(record.revenue_digest_before.len(), 64);
            }
            None => {
                prop_assert!(!view.is_tombstone());
                prop_assert!(
                    view.profile.is_some(),
                    "a live customer keeps its sealed profile"
                );
                prop_assert!(model.erasures.get(id).is_none());
            }
        }
        for block in view.profile.iter().map(|p| &p.block) {
            prop_assert!(block.as_sealed().is_some());
        }
        for block in view.patches.iter().map(|p| &p.block) {
            prop_assert!(block.as_sealed().is_some());
        }

        // The read side agrees with the aggregate on links, subscriptions, payments
        // and refunds.
        prop_assert_eq!(&view.broadcasters, state.broadcasters());
        prop_assert_eq!(Some(view.registered_by), state.registered_by());
        let mut subs: Vec<_> = view
            .subscriptions
            .iter()
            .map(|s| {
                (
                    s.subscription_id,
                    s.broadcaster_id,
                    s.offer_id.clone(),
                    s.started_at,
                    s.terminated_at,
                    s.active,
                )
            })
            .collect();
        subs.sort();
        let expected: Vec<_> = state
            .subscriptions()
            .map(|s| {
                (
                    s.subscription_id,
                    s.broadcaster_id,
                    s.offer_id.clone(),
                    s.started_at,
                    s.terminated_at,
                    s.is_active(),
                )
            })
            .collect();
        prop_assert_eq!(subs, expected);
        prop_assert_eq!(view.payment_count, state.payments().count() as u64);
        prop_assert_eq!(view.refund_count, state.refunds().count() as u64);
        let mut totals: BTreeMap<Currency, Totals> = BTreeMap::new();
        for p in state.payments() {
            let t = totals.entry(p.amount.currency()).or_default();
            t.captured += i128::from(p.amount.minor());
            t.refunded += i128::from(p.refunded.minor());
            t.net = t.captured - t.refunded;
        }
        prop_assert_eq!(&view.totals, &totals);
    }
    prop_assert_eq!(model.erasures.len(), erased);
    for r in model.erasures.iter() {
        prop_assert_eq!(&r.revenue_digest_before, &r.revenue_digest_after);
    }

    // A restart from a checkpoint at `split` folds to the same model.
    let first = fold_read_model(envelopes(&world.log).take(split));
    let mut resumed = ReadModel::new();
    for v in first.customers.iter() {
        resumed.customers.insert(v.clone());
    }
    for (k, v) in first.revenue.rows(&RevenueFilter::all()) {
        resumed.revenue.insert(k.clone(), *v);
    }
    for r in first.erasures.iter() {
        resumed.erasures.insert(r.clone());
    }
    resumed.set_position(first.position());
    for e in envelopes(&world.log).skip(split) {
        resumed.apply(&e);
    }
    for v in model.customers.iter() {
        prop_assert_eq!(resumed.customers.get(v.customer_id), Some(v));
    }
    prop_assert_eq!(resumed.customers.len(), model.customers.len());
    prop_assert!(resumed
        .revenue
        .rows(&RevenueFilter::all())
        .eq(model.revenue.rows(&RevenueFilter::all())));
    prop_assert!(resumed.erasures.iter().eq(model.erasures.iter()));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn erasures_never_change_revenue_and_leave_tombstones_without_personal_data(
        (ops, split) in history()
    ) {
        let world = run(&ops);
        check(&world, split.min(world.log.len()))?;
    }
}

/// The generator reaches what the properties are about; otherwise they would pass
/// vacuously.
#[test]
fn the_generator_reaches_erasures_refunds_and_revenue_after_erasure() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let (mut erasures, mut refunds, mut after, mut usd) = (0, 0, 0, 0);
    for _ in 0..128 {
        let (ops, _) = history().new_tree(&mut runner).unwrap().current();
        let world = run(&ops);
        let mut erased = std::collections::BTreeSet::new();
        for e in &world.log {
            let DomainEvent::Customer(c, e) = e else {
                continue;
            };
            match e {
                CustomerEvent::Anonymized(_) => {
                    erasures += 1;
                    erased.insert(*c);
                }
                CustomerEvent::PaymentRefunded(_) => refunds += 1,
                CustomerEvent::PaymentCaptured(p) if p.amount.currency().as_str() == "USD" => {
                    usd += 1
                }
                _ => {}
            }
            if erased.contains(c)
                && matches!(
                    e,
                    CustomerEvent::PaymentCaptured(_) | CustomerEvent::PaymentRefunded(_)
                )
            {
                after += 1;
            }
        }
    }
    println!("erasures {erasures}, refunds {refunds}, after {after}, usd {usd}");
    assert!(erasures > 40, "erasures: {erasures}");
    assert!(refunds > 40, "refunds: {refunds}");
    assert!(after > 10, "revenue events after erasure: {after}");
    assert!(usd > 10, "USD captures: {usd}");
}
