//! Property tests: random command sequences, over white-label and shared
//! broadcasters, driven through `handle` + `apply`, with the erasure and revenue
//! invariants checked after every step.

mod support;

use std::collections::BTreeMap;

use ledger_command::{BroadcasterRef, Customer, CustomerCommand, Refusal};
use ledger_events::{CustomerEvent, PaymentData, Personal, ProfilePatch};
use ledger_types::{BroadcasterId, Money, PaymentId, RefundId};
use proptest::prelude::*;
use support::*;

/// Broadcaster 0 and 1 are white-label, 2 has a shared integration.
fn b(i: usize) -> BroadcasterId {
    broadcaster(i as u64 + 1)
}
fn bref(i: usize) -> BroadcasterRef {
    if i == 2 {
        shared(b(i))
    } else {
        white_label(b(i))
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
        s: Option<u64>,
        minor: i64,
        usd: bool,
        ip: bool,
    },
    Refund {
        b: usize,
        r: u64,
        p: u64,
        minor: i64,
        usd: bool,
    },
    Anonymize(usize, u64),
}

fn amount() -> impl Strategy<Value = i64> {
    prop_oneof![12 => 1i64..1000, 1 => -3i64..=0]
}

/// Mostly broadcaster 0 (where the customer is usually registered), so that
/// sequences get deep enough to reach refunds and erasures.
fn broadcaster_index() -> impl Strategy<Value = usize> {
    prop_oneof![4 => Just(0usize), 1 => Just(1usize), 1 => Just(2usize)]
}

fn refund_amount() -> impl Strategy<Value = i64> {
    prop_oneof![12 => 1i64..500, 1 => -3i64..=0]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => broadcaster_index().prop_map(Op::Register),
        3 => broadcaster_index().prop_map(Op::Link),
        2 => broadcaster_index().prop_map(Op::Update),
        2 => broadcaster_index().prop_map(Op::Login),
        5 => (broadcaster_index(), 0u64..5).prop_map(|(b, s)| Op::Start(b, s)),
        5 => (broadcaster_index(), 0u64..5).prop_map(|(b, s)| Op::Terminate(b, s)),
        5 => (broadcaster_index(), 0u64..5, proptest::option::of(0u64..5), amount(), prop::bool::weighted(0.15), any::<bool>())
            .prop_map(|(b, p, s, minor, usd, ip)| Op::Capture { b, p, s, minor, usd, ip }),
        6 => (broadcaster_index(), 0u64..8, 0u64..5, refund_amount(), prop::bool::weighted(0.1))
            .prop_map(|(b, r, p, minor, usd)| Op::Refund { b, r, p, minor, usd }),
        4 => (broadcaster_index(), 0u64..3).prop_map(|(b, r)| Op::Anonymize(b, r)),
    ]
}

fn money(minor: i64, usd: bool) -> Money {
    if usd {
        support::usd(minor)
    } else {
        eur(minor)
    }
}

fn to_command(op: &Op, step: i64) -> CustomerCommand {
    let when = at(step);
    match *op {
        Op::Register(i) => CustomerCommand::Register {
            customer_id: customer_id(),
            broadcaster_id: b(i),
            profile: profile(),
            at: when,
        },
        Op::Link(i) => CustomerCommand::Link {
            broadcaster_id: b(i),
            at: when,
        },
        Op::Update(i) => CustomerCommand::UpdateProfile {
            broadcaster_id: b(i),
            patch: {
                let mut v = ProfilePatch::default();
                v.phone_number = Some(format!("+44 20 7946 {step:04}"));
                v
            },
            at: when,
        },
        Op::Login(i) => CustomerCommand::RecordLogin {
            broadcaster_id: b(i),
            ip: format!("192.0.2.{}", step % 250),
            at: when,
        },
        Op::Start(i, s) => CustomerCommand::StartSubscription {
            broadcaster_id: b(i),
            subscription_id: sub(s),
            offer_id: offer("monthly"),
            ends_at: None,
            at: when,
        },
        Op::Terminate(i, s) => CustomerCommand::TerminateSubscription {
            broadcaster_id: b(i),
            subscription_id: sub(s),
            at: when,
        },
        Op::Capture {
            b: i,
            p,
            s,
            minor,
            usd,
            ip,
        } => CustomerCommand::CapturePayment {
            broadcaster_id: b(i),
            payment_id: pay(p),
            offer_id: offer(if p.is_multiple_of(2) {
                "monthly"
            } else {
                "annual"
            }),
            subscription_id: s.map(sub),
            amount: money(minor, usd),
            payer_ip: ip.then(|| "198.51.100.9".to_owned()),
            at: when,
        },
        Op::Refund {
            b: i,
            r,
            p,
            minor,
            usd,
        } => CustomerCommand::RefundPayment {
            broadcaster_id: b(i),
            refund_id: refund(r),
            payment_id: pay(p),
            amount: money(minor, usd),
            at: when,
        },
        Op::Anonymize(i, r) => CustomerCommand::Anonymize {
            request_id: request(r),
            broadcaster: bref(i),
            key_id: None,
            at: when,
        },
    }
}

/// The broadcaster a command acts for, when it must be able to see the customer.
fn acting(cmd: &CustomerCommand) -> Option<BroadcasterId> {
    match cmd {
        // A repair by the operator after a restore, not a tenant's command.
        CustomerCommand::Register { .. }
        | CustomerCommand::Link { .. }
        | CustomerCommand::ReapplyErasure { .. } => None,
        CustomerCommand::UpdateProfile { broadcaster_id, .. }
        | CustomerCommand::RecordLogin { broadcaster_id, .. }
        | CustomerCommand::StartSubscription { broadcaster_id, .. }
        | CustomerCommand::TerminateSubscription { broadcaster_id, .. }
        | CustomerCommand::CapturePayment { broadcaster_id, .. }
        | CustomerCommand::RefundPayment { broadcaster_id, .. } => Some(*broadcaster_id),
        CustomerCommand::Anonymize { broadcaster, .. } => Some(broadcaster.id),
        CustomerCommand::AnonymizeAsOperator { .. } => None,
    }
}

/// Whether the command would add personal data to the account.
fn writes_personal_data(cmd: &CustomerCommand) -> bool {
    match cmd {
        CustomerCommand::Link { .. }
        | CustomerCommand::UpdateProfile { .. }
        | CustomerCommand::RecordLogin { .. }
        | CustomerCommand::StartSubscription { .. } => true,
        CustomerCommand::CapturePayment { payer_ip, .. } => payer_ip.is_some(),
        _ => false,
    }
}

/// (id, amount) of every capture and refund, folded from the events alone.
type Ledger = (Vec<(PaymentId, Money)>, Vec<(RefundId, Money)>);

fn fold_ledger(events: &[CustomerEvent]) -> Ledger {
    let mut captures = Vec::new();
    let mut refunds = Vec::new();
    for e in events {
        match e {
            CustomerEvent::PaymentCaptured(p) => captures.push((p.payment_id, p.amount)),
            CustomerEvent::PaymentRefunded(r) => refunds.push((r.refund_id, r.amount)),
            _ => {}
        }
    }
    (captures, refunds)
}

/// Runs the history and checks every invariant after every step.
fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut state = Customer::default();
    let mut emitted: Vec<CustomerEvent> = Vec::new();
    // What the accepted commands asked for, independently of the events.
    let mut asked: Ledger = (Vec::new(), Vec::new());

    for (step, op) in ops.iter().enumerate() {
        let cmd = to_command(op, step as i64);
        let before = state.clone();

        // (d) the dry run agrees with the decision, for every broadcaster.
        for i in 0..3 {
            let preview = before.erasure_blockers(&bref(i));
            let decided = before.handle(&to_command(&Op::Anonymize(i, 0), step as i64));
            match preview {
                Err(r) => prop_assert_eq!(decided, Err(r)),
                Ok(blockers) if blockers.is_empty() => prop_assert!(decided.is_ok()),
                Ok(blockers) => prop_assert_eq!(decided, Err(blockers[0].clone())),
            }
        }

        let result = state.handle(&cmd);
        prop_assert_eq!(&state, &before, "handle must be pure");

        // Tenant isolation: a broadcaster that cannot see the customer gets NotFound.
        if let Some(actor) = acting(&cmd) {
            if !before.is_visible_to(actor) {
                prop_assert_eq!(&result, &Err(Refusal::NotFound));
            }
        }
        // No personal data can be added after erasure.
        if before.anonymized().is_some() && writes_personal_data(&cmd) {
            let visible = acting(&cmd).is_none_or(|a| before.is_visible_to(a));
            if visible {
                prop_assert_eq!(&result, &Err(Refusal::CustomerAnonymized));
            }
        }

        if let Ok(events) = result {
            prop_assert!(events.len() <= 1);
            for e in &events {
                match e {
                    // (a) an erasure is only ever decided with no active subscription.
                    CustomerEvent::Anonymized(_) => {
                        prop_assert!(state.active_subscriptions().is_empty());
                        prop_assert!(state.anonymized().is_none(), "decided twice");
                    }
                    // (b) amounts in events are the amounts of the commands.
                    CustomerEvent::PaymentCaptured(p) => {
                        let CustomerCommand::CapturePayment {
                            payment_id, amount, ..
                        } = &cmd
                        else {
                            return Err(TestCaseError::fail("capture from another command"));
                        };
                        prop_assert_eq!((p.payment_id, p.amount), (*payment_id, *amount));
                        asked.0.push((*payment_id, *amount));
                    }
                    CustomerEvent::PaymentRefunded(r) => {
                        let CustomerCommand::RefundPayment {
                            refund_id, amount, ..
                        } = &cmd
                        else {
                            return Err(TestCaseError::fail("refund from another command"));
                        };
                        prop_assert_eq!((r.refund_id, r.amount), (*refund_id, *amount));
                        asked.1.push((*refund_id, *amount));
                    }
                    _ => {}
                }
                // (c) nothing personal is emitted after erasure; a capture's payer
                // block is then always the empty `Open(PaymentData::default())`.
                if state.anonymized().is_some() {
                    match e {
                        CustomerEvent::PaymentCaptured(p) => {
                            prop_assert_eq!(&p.payer, &Personal::Open(PaymentData::default()));
                        }
                        other => prop_assert!(
                            !other.carries_personal_data(),
                            "{} after erasure",
                            other.event_type()
                        ),
                    }
                }
                state.apply(e);
                emitted.push(e.clone());
            }
        }

        // (a) never anonymized while a subscription is active.
        if state.anonymized().is_some() {
            prop_assert!(state.active_subscriptions().is_empty());
        }

        // (b) the log's captures and refunds are exactly what was asked for, each id
        // once, and the aggregate agrees with a plain fold over the events.
        let (captures, refunds) = fold_ledger(&emitted);
        prop_assert_eq!(&captures, &asked.0);
        prop_assert_eq!(&refunds, &asked.1);
        let capture_ids: BTreeMap<_, _> = captures.iter().copied().collect();
        let refund_ids: BTreeMap<_, _> = refunds.iter().copied().collect();
        prop_assert_eq!(capture_ids.len(), captures.len(), "a payment id was reused");
        prop_assert_eq!(refund_ids.len(), refunds.len(), "a refund id was reused");
        prop_assert_eq!(state.payments().count(), captures.len());
        prop_assert_eq!(state.refunds().count(), refunds.len());
        for p in state.payments() {
            prop_assert_eq!(Some(&p.amount), capture_ids.get(&p.payment_id));
            let refunded: i64 = state
                .refunds()
                .filter(|r| r.payment_id == p.payment_id)
                .map(|r| r.amount.minor())
                .sum();
            prop_assert_eq!(p.refunded, Money::new(refunded, p.amount.currency()));
            prop_assert!(refunded <= p.amount.minor(), "refunded more than captured");
        }
        for r in state.refunds() {
            prop_assert_eq!(Some(&r.amount), refund_ids.get(&r.refund_id));
        }

        // Replaying the log, open or sealed, gives the same state.
        prop_assert_eq!(&Customer::from_events(&emitted), &state);
        let sealed: Vec<_> = emitted.iter().map(seal).collect();
        prop_assert_eq!(&Customer::from_events(&sealed), &state);
    }
    Ok(())
}

fn history() -> impl Strategy<Value = Vec<Op>> {
    (
        prop::bool::weighted(0.9),
        broadcaster_index(),
        prop::collection::vec(op(), 0..60),
    )
        .prop_map(|(register_first, i, mut ops)| {
            if register_first {
                ops.insert(0, Op::Register(i));
            }
            ops
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_histories_keep_the_erasure_and_revenue_invariants(ops in history()) {
        run(&ops)?;
    }
}

/// The generator does reach the interesting states; otherwise the property above
/// would pass vacuously.
#[test]
fn the_generator_reaches_erasures_refunds_and_refusals() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let (mut erased, mut refunds, mut blocked, mut after) = (0, 0, 0, 0);
    for _ in 0..256 {
        let ops = history().new_tree(&mut runner).unwrap().current();
        let mut state = Customer::default();
        for (step, op) in ops.iter().enumerate() {
            let cmd = to_command(op, step as i64);
            match state.handle(&cmd) {
                Ok(events) => {
                    for e in &events {
                        match e {
                            CustomerEvent::Anonymized(_) => erased += 1,
                            CustomerEvent::PaymentRefunded(_) => refunds += 1,
                            _ => {}
                        }
                        if state.anonymized().is_some() && !events.is_empty() {
                            after += 1;
                        }
                        state.apply(e);
                    }
                }
                Err(Refusal::ActiveSubscription { .. }) => blocked += 1,
                Err(_) => {}
            }
        }
    }
    println!("erased {erased}, refunds {refunds}, blocked {blocked}, after {after}");
    assert!(erased > 20, "erasures: {erased}");
    assert!(refunds > 20, "refunds: {refunds}");
    assert!(blocked > 20, "blocked by a subscription: {blocked}");
    assert!(after > 20, "events after erasure: {after}");
}
