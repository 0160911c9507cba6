//! Given/when/then tests of the erasure request aggregate (one transition per test),
//! of the erasure plan the app follows, and of the operator's erasure; and a property
//! test that no command sequence leaves a request completed without a destroyed key.

mod support;

use ledger_command::{
    Customer, CustomerCommand, Eraser, ErasurePlan, ErasureRequest, Refusal, RequestCommand,
    RequestStatus,
};
use ledger_events::{
    Actor, BlockerCode, CustomerAnonymized, CustomerEvent, ErasureCancelled, ErasureCompleted,
    ErasureDeferred, ErasureExtended, ErasureRefused, ErasureRequestEvent, ErasureRequested,
    ExtensionReason, Precondition,
};
use ledger_types::{KeyId, Reference, Timestamp};
use proptest::prelude::*;
use support::*;

// ------------------------------------------------------------------------ harness

fn key() -> KeyId {
    KeyId::parse("00000009-0000-4000-8000-000000000001").unwrap()
}
fn us() -> Actor {
    Actor::Broadcaster {
        broadcaster_id: ours(),
        key_id: Some(key()),
    }
}
fn them() -> Actor {
    Actor::Broadcaster {
        broadcaster_id: other_tenant(),
        key_id: None,
    }
}
fn received() -> Timestamp {
    at(0)
}
fn due() -> Timestamp {
    received().add_months(1).unwrap()
}
fn requested_by(by: Actor) -> ErasureRequestEvent {
    ErasureRequestEvent::Requested(ErasureRequested {
        request_id: request(1),
        customer_id: customer_id(),
        requested_by: by,
        reference: Some(Reference::parse("ZD-48213").unwrap()),
        received_at: received(),
        due_at: due(),
    })
}
fn requested() -> ErasureRequestEvent {
    requested_by(us())
}
fn deferred_on(subs: &[u64]) -> ErasureRequestEvent {
    ErasureRequestEvent::Deferred(ErasureDeferred {
        blockers: vec![BlockerCode::ActiveSubscription],
        subscriptions: subs.iter().map(|n| sub(*n)).collect(),
        at: at(1),
    })
}
fn completed() -> ErasureRequestEvent {
    ErasureRequestEvent::Completed(ErasureCompleted {
        anonymized_request_id: request(1),
        anonymized_position: 9,
        anonymized_at: at(6),
        data_key_destroyed: true,
        at: at(10),
    })
}
fn refused(code: BlockerCode) -> ErasureRequestEvent {
    ErasureRequestEvent::Refused(ErasureRefused { code, at: at(10) })
}
fn cancelled() -> ErasureRequestEvent {
    ErasureRequestEvent::Cancelled(ErasureCancelled {
        by: us(),
        at: at(10),
    })
}
fn extended(months: u32) -> ErasureRequestEvent {
    ErasureRequestEvent::Extended(ErasureExtended {
        due_at: due().add_months(months).unwrap(),
        reason: ExtensionReason::Complexity,
        by: us(),
        at: at(10),
    })
}

fn receive() -> RequestCommand {
    RequestCommand::Receive {
        request_id: request(1),
        customer_id: customer_id(),
        requested_by: us(),
        reference: Some(Reference::parse("ZD-48213").unwrap()),
        received_at: received(),
        due_at: due(),
    }
}
fn defer(subs: &[u64]) -> RequestCommand {
    RequestCommand::Defer {
        subscriptions: subs.iter().map(|n| sub(*n)).collect(),
        at: at(1),
    }
}
fn complete(destroyed: bool) -> RequestCommand {
    RequestCommand::Complete {
        anonymized: receipt(ours(), request(1), at(6)),
        position: 9,
        data_key_destroyed: destroyed,
        at: at(10),
    }
}
fn refuse(code: BlockerCode) -> RequestCommand {
    RequestCommand::Refuse { code, at: at(10) }
}
fn cancel(by: Actor) -> RequestCommand {
    RequestCommand::Cancel { by, at: at(10) }
}
fn extend_to(due_at: Timestamp, by: Actor) -> RequestCommand {
    RequestCommand::Extend {
        due_at,
        reason: ExtensionReason::Complexity,
        by,
        at: at(10),
    }
}
fn extend(months: u32) -> RequestCommand {
    extend_to(due().add_months(months).unwrap(), us())
}

struct Then {
    state: ErasureRequest,
    result: Result<Vec<ErasureRequestEvent>, Refusal>,
}

fn given_when(history: &[ErasureRequestEvent], cmd: RequestCommand) -> Then {
    let state = ErasureRequest::from_events(history);
    let result = state.handle(&cmd);
    assert_eq!(
        state,
        ErasureRequest::from_events(history),
        "handle must not change the state"
    );
    Then { state, result }
}

impl Then {
    #[track_caller]
    fn then_events(self, expected: Vec<ErasureRequestEvent>) -> ErasureRequest {
        match self.result {
            Ok(events) => {
                assert_eq!(events, expected);
                let mut s = self.state;
                for e in &events {
                    s.apply(e);
                }
                s
            }
            Err(r) => panic!("expected events, was refused with {} ({r})", r.code()),
        }
    }
    #[track_caller]
    fn then_refused(self, code: &str) -> Refusal {
        match self.result {
            Ok(events) => panic!("expected {code}, got {events:?}"),
            Err(r) => {
                assert_eq!(r.code(), code, "{r:?}");
                r
            }
        }
    }
}

// ------------------------------------------------------------------------ receive

#[test]
fn receiving_a_request_records_who_asked_when_and_when_it_is_due() {
    let s = given_when(&[], receive()).then_events(vec![requested()]);
    assert_eq!(s.status(), Some(RequestStatus::Open));
    assert_eq!(s.due_at(), Some(due()));
    assert!(s.is_visible_to(&us()));
    assert!(s.is_visible_to(&Actor::Operator));
    assert!(!s.is_visible_to(&them()));
    assert!(!s.is_overdue(due()));
    assert!(s.is_overdue(Timestamp::from_millis(due().millis() + 1)));
}

#[test]
fn receiving_a_request_id_twice_is_refused_with_request_exists() {
    given_when(&[requested()], receive()).then_refused("REQUEST_EXISTS");
}

#[test]
fn a_request_due_before_it_was_received_is_invalid_input() {
    let cmd = RequestCommand::Receive {
        request_id: request(1),
        customer_id: customer_id(),
        requested_by: us(),
        reference: None,
        received_at: received(),
        due_at: received(),
    };
    let r = given_when(&[], cmd).then_refused("INVALID_INPUT");
    assert_eq!(
        r,
        Refusal::InvalidInput {
            field: "due_at",
            reason: "must be after received_at"
        }
    );
}

#[test]
fn every_command_on_a_request_never_received_is_not_found() {
    for cmd in [
        defer(&[1]),
        complete(true),
        refuse(BlockerCode::NotWhiteLabel),
        cancel(us()),
        extend(1),
    ] {
        given_when(&[], cmd).then_refused("NOT_FOUND");
    }
}

// ------------------------------------------------------------------------- defer

#[test]
fn an_open_request_blocked_by_active_subscriptions_is_deferred() {
    let s = given_when(&[requested()], defer(&[2, 1, 2])).then_events(vec![deferred_on(&[1, 2])]);
    assert_eq!(s.status(), Some(RequestStatus::Deferred));
    assert_eq!(s.deferred().map(|d| d.subscriptions.len()), Some(2));
}

#[test]
fn deferring_again_on_the_same_subscriptions_records_nothing() {
    given_when(&[requested(), deferred_on(&[1])], defer(&[1])).then_events(vec![]);
}

#[test]
fn deferring_again_on_other_subscriptions_records_the_new_list() {
    given_when(&[requested(), deferred_on(&[1])], defer(&[2])).then_events(vec![deferred_on(&[2])]);
}

#[test]
fn a_deferral_without_subscriptions_is_invalid_input() {
    given_when(&[requested()], defer(&[])).then_refused("INVALID_INPUT");
}

#[test]
fn an_ended_request_cannot_be_deferred() {
    for end in [
        completed(),
        refused(BlockerCode::NotWhiteLabel),
        cancelled(),
    ] {
        given_when(&[requested(), end], defer(&[1])).then_refused("REQUEST_CLOSED");
    }
}

// ---------------------------------------------------------------------- complete

#[test]
fn an_open_request_completes_with_the_receipt_once_the_key_is_destroyed() {
    let s = given_when(&[requested()], complete(true)).then_events(vec![completed()]);
    assert_eq!(s.status(), Some(RequestStatus::Completed));
    assert_eq!(s.ended_at(), Some(at(10)));
    assert!(!s.is_overdue(Timestamp::from_millis(i64::MAX)));
}

#[test]
fn a_deferred_request_completes_once_the_key_is_destroyed() {
    given_when(&[requested(), deferred_on(&[1])], complete(true)).then_events(vec![completed()]);
}

#[test]
fn a_request_does_not_complete_while_the_data_key_survives() {
    given_when(&[requested()], complete(false)).then_refused("KEY_NOT_DESTROYED");
    given_when(&[requested(), deferred_on(&[1])], complete(false))
        .then_refused("KEY_NOT_DESTROYED");
}

#[test]
fn completing_a_completed_request_again_records_nothing() {
    given_when(&[requested(), completed()], complete(true)).then_events(vec![]);
}

#[test]
fn a_request_completed_by_an_earlier_erasure_names_the_first_receipt() {
    let cmd = RequestCommand::Complete {
        anonymized: receipt(ours(), request(5), at(3)),
        position: 4,
        data_key_destroyed: true,
        at: at(10),
    };
    let s = given_when(&[requested()], cmd).then_events(vec![ErasureRequestEvent::Completed(
        ErasureCompleted {
            anonymized_request_id: request(5),
            anonymized_position: 4,
            anonymized_at: at(3),
            data_key_destroyed: true,
            at: at(10),
        },
    )]);
    assert_eq!(s.status(), Some(RequestStatus::Completed));
}

#[test]
fn a_receipt_of_another_customer_cannot_complete_a_request() {
    let mut other = receipt(ours(), request(1), at(6));
    other.customer_id = ledger_types::CustomerId::new();
    let cmd = RequestCommand::Complete {
        anonymized: other,
        position: 9,
        data_key_destroyed: true,
        at: at(10),
    };
    given_when(&[requested()], cmd).then_refused("INVALID_INPUT");
}

#[test]
fn a_refused_or_cancelled_request_cannot_complete() {
    for end in [refused(BlockerCode::SharedAcrossBroadcasters), cancelled()] {
        let r = given_when(&[requested(), end], complete(true)).then_refused("REQUEST_CLOSED");
        assert!(matches!(r, Refusal::RequestClosed { .. }));
    }
}

// ------------------------------------------------------------------------ refuse

#[test]
fn a_permanent_blocker_refuses_an_open_or_deferred_request() {
    for history in [vec![requested()], vec![requested(), deferred_on(&[1])]] {
        let s = given_when(&history, refuse(BlockerCode::NotWhiteLabel))
            .then_events(vec![refused(BlockerCode::NotWhiteLabel)]);
        assert_eq!(s.status(), Some(RequestStatus::Refused));
    }
}

#[test]
fn an_active_subscription_never_refuses_a_request() {
    given_when(&[requested()], refuse(BlockerCode::ActiveSubscription))
        .then_refused("INVALID_INPUT");
}

#[test]
fn refusing_again_for_the_same_reason_records_nothing() {
    given_when(
        &[requested(), refused(BlockerCode::NotWhiteLabel)],
        refuse(BlockerCode::NotWhiteLabel),
    )
    .then_events(vec![]);
}

#[test]
fn a_completed_request_cannot_be_refused() {
    given_when(
        &[requested(), completed()],
        refuse(BlockerCode::NotWhiteLabel),
    )
    .then_refused("REQUEST_CLOSED");
}

// ------------------------------------------------------------------------ cancel

#[test]
fn the_requester_can_cancel_an_open_or_deferred_request() {
    for history in [vec![requested()], vec![requested(), deferred_on(&[1])]] {
        let s = given_when(&history, cancel(us())).then_events(vec![cancelled()]);
        assert_eq!(s.status(), Some(RequestStatus::Cancelled));
    }
}

#[test]
fn the_operator_can_cancel_any_request() {
    given_when(&[requested()], cancel(Actor::Operator)).then_events(vec![
        ErasureRequestEvent::Cancelled(ErasureCancelled {
            by: Actor::Operator,
            at: at(10),
        }),
    ]);
}

#[test]
fn another_tenant_cannot_see_let_alone_cancel_a_request() {
    given_when(&[requested()], cancel(them())).then_refused("NOT_FOUND");
    // Not even one that ended: no existence oracle.
    given_when(&[requested(), completed()], cancel(them())).then_refused("NOT_FOUND");
}

#[test]
fn cancelling_a_completed_request_is_refused_with_its_status() {
    let r = given_when(&[requested(), completed()], cancel(us())).then_refused("REQUEST_CLOSED");
    assert_eq!(
        r,
        Refusal::RequestClosed {
            status: RequestStatus::Completed
        }
    );
    let body = serde_json::to_value(&r).unwrap();
    assert_eq!(body["status"], "completed");
}

#[test]
fn cancelling_a_cancelled_request_again_records_nothing() {
    given_when(&[requested(), cancelled()], cancel(us())).then_events(vec![]);
}

// ------------------------------------------------------------------------ extend

#[test]
fn an_open_request_can_be_extended_once_by_up_to_two_months() {
    let s = given_when(&[requested()], extend(2)).then_events(vec![extended(2)]);
    assert_eq!(s.due_at(), due().add_months(2));
    assert_eq!(s.status(), Some(RequestStatus::Open));
    given_when(&[requested(), deferred_on(&[1])], extend(1)).then_events(vec![extended(1)]);
}

#[test]
fn an_extension_past_two_months_after_the_original_due_date_is_refused() {
    let past = Timestamp::from_millis(due().add_months(2).unwrap().millis() + 1);
    let r = given_when(&[requested()], extend_to(past, us())).then_refused("EXTENSION_TOO_LONG");
    assert_eq!(
        r,
        Refusal::ExtensionTooLong {
            latest: due().add_months(2).unwrap()
        }
    );
    // Three months past receipt plus a day: the same.
    let too_far = received().add_months(3).unwrap().millis() + 86_400_000;
    given_when(
        &[requested()],
        extend_to(Timestamp::from_millis(too_far), us()),
    )
    .then_refused("EXTENSION_TOO_LONG");
}

#[test]
fn a_second_extension_is_refused() {
    given_when(&[requested(), extended(1)], extend(2)).then_refused("ALREADY_EXTENDED");
}

#[test]
fn an_extension_must_move_the_due_date_later() {
    let r = given_when(&[requested()], extend_to(due(), us())).then_refused("DUE_DATE_NOT_LATER");
    assert_eq!(r, Refusal::DueDateNotLater { current: due() });
}

#[test]
fn an_ended_request_cannot_be_extended_and_another_tenant_cannot_see_it() {
    given_when(&[requested(), completed()], extend(1)).then_refused("REQUEST_CLOSED");
    given_when(
        &[requested()],
        extend_to(due().add_months(1).unwrap(), them()),
    )
    .then_refused("NOT_FOUND");
}

#[test]
fn nothing_after_the_end_changes_a_folded_request() {
    let s = ErasureRequest::from_events(&[
        requested(),
        completed(),
        cancelled(),
        extended(1),
        deferred_on(&[1]),
    ]);
    assert_eq!(s.status(), Some(RequestStatus::Completed));
    assert_eq!(s.due_at(), Some(due()));
}

// ------------------------------------------------------------------ erasure plan

fn plan(history: Vec<CustomerEvent>, eraser: Eraser) -> Result<ErasurePlan, Refusal> {
    Customer::from_events(&history).erasure_plan(&eraser)
}

#[test]
fn the_plan_erases_a_white_label_broadcasters_exclusive_customer_without_subscriptions() {
    let p = plan(
        vec![registered_with(ours())],
        Eraser::Broadcaster(white_label(ours())),
    );
    assert_eq!(p, Ok(ErasurePlan::Erase));
}

#[test]
fn the_plan_defers_when_active_subscriptions_are_the_only_blocker() {
    let p = plan(
        vec![
            registered_with(ours()),
            started(sub(2), ours()),
            started(sub(1), ours()),
        ],
        Eraser::Broadcaster(white_label(ours())),
    );
    assert_eq!(p, Ok(ErasurePlan::Defer(vec![sub(1), sub(2)])));
}

#[test]
fn the_plan_refuses_on_a_permanent_blocker_even_with_subscriptions_active() {
    let p = plan(
        vec![registered_with(ours()), started(sub(1), ours())],
        Eraser::Broadcaster(shared(ours())),
    );
    assert_eq!(p, Ok(ErasurePlan::Refuse(BlockerCode::NotWhiteLabel)));
    let p = plan(
        vec![registered_with(ours()), linked(other_tenant())],
        Eraser::Broadcaster(white_label(ours())),
    );
    assert_eq!(
        p,
        Ok(ErasurePlan::Refuse(BlockerCode::SharedAcrossBroadcasters))
    );
}

#[test]
fn the_plan_completes_with_the_first_receipt_when_already_erased() {
    let p = plan(
        vec![registered_with(ours()), anonymized_by(ours())],
        Eraser::Broadcaster(white_label(ours())),
    );
    assert_eq!(p, Ok(ErasurePlan::AlreadyErased));
}

#[test]
fn the_plan_for_another_tenants_customer_is_not_found() {
    let p = plan(
        vec![registered_with(ours())],
        Eraser::Broadcaster(white_label(other_tenant())),
    );
    assert_eq!(p, Err(Refusal::NotFound));
    assert_eq!(plan(vec![], Eraser::Operator), Err(Refusal::NotFound));
}

#[test]
fn for_the_operator_only_active_subscriptions_of_any_broadcaster_block() {
    let shared_account = vec![
        registered_with(shared_broadcaster()),
        linked(ours()),
        started(sub(1), shared_broadcaster()),
        started(sub(2), ours()),
    ];
    assert_eq!(
        plan(shared_account.clone(), Eraser::Operator),
        Ok(ErasurePlan::Defer(vec![sub(1), sub(2)]))
    );
    let mut ended = shared_account;
    ended.push(terminated(sub(1)));
    ended.push(terminated(sub(2)));
    assert_eq!(plan(ended, Eraser::Operator), Ok(ErasurePlan::Erase));
}

// -------------------------------------------------------------- operator erasure

fn as_operator() -> CustomerCommand {
    CustomerCommand::AnonymizeAsOperator {
        request_id: request(3),
        at: at(10),
    }
}

#[test]
fn the_operator_erases_a_shared_account_naming_itself_as_the_actor() {
    let state = given([
        registered_with(shared_broadcaster()),
        linked(ours()),
        started(sub(1), ours()),
        terminated(sub(1)),
    ])
    .when(as_operator())
    .then_events(vec![CustomerEvent::Anonymized(CustomerAnonymized {
        preconditions: vec![
            Precondition::PlatformOperator,
            Precondition::NoActiveSubscription,
        ],
        actor: Some(Actor::Operator),
        ..receipt(shared_broadcaster(), request(3), at(10))
    })]);
    assert!(state.is_anonymized());
    assert_eq!(state.anonymized().map(|a| a.actor()), Some(Actor::Operator));
}

#[test]
fn the_operator_is_refused_while_any_broadcaster_has_an_active_subscription() {
    let r = given([
        registered_with(shared_broadcaster()),
        linked(ours()),
        started(sub(1), shared_broadcaster()),
        started(sub(2), ours()),
    ])
    .when(as_operator())
    .then_refused("ACTIVE_SUBSCRIPTION");
    assert_eq!(
        r,
        Refusal::ActiveSubscription {
            subscriptions: vec![sub(1), sub(2)]
        }
    );
}

#[test]
fn the_operator_erasing_an_erased_or_unknown_customer() {
    given([registered_with(ours()), anonymized_by(ours())])
        .when(as_operator())
        .then_no_events();
    given([]).when(as_operator()).then_refused("NOT_FOUND");
}

// ------------------------------------------------------------------- property

/// One step of a world with one customer, its data key and one erasure request,
/// run the way the app runs them: the request's `Complete` is given the customer
/// stream's erasure (if any) and whether the key store holds the key.
#[derive(Debug, Clone)]
enum Step {
    Start(u64),
    Terminate(u64),
    Anonymize,
    DestroyKey,
    Defer,
    Complete,
    Refuse(bool),
    Cancel,
    Extend(u32),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (1u64..4).prop_map(Step::Start),
        (1u64..4).prop_map(Step::Terminate),
        Just(Step::Anonymize),
        Just(Step::DestroyKey),
        Just(Step::Defer),
        Just(Step::Complete),
        any::<bool>().prop_map(Step::Refuse),
        Just(Step::Cancel),
        (0u32..4).prop_map(Step::Extend),
    ]
}

struct World {
    customer: Vec<CustomerEvent>,
    key_destroyed: bool,
    request: Vec<ErasureRequestEvent>,
}

impl World {
    fn customer(&self) -> Customer {
        Customer::from_events(&self.customer)
    }
    fn decide(&mut self, cmd: RequestCommand) {
        if let Ok(events) = ErasureRequest::from_events(&self.request).handle(&cmd) {
            self.request.extend(events);
        }
    }
    fn run(&mut self, s: &Step) {
        let customer = self.customer();
        let wl = white_label(ours());
        let customer_cmd = match s {
            Step::Start(n) => Some(CustomerCommand::StartSubscription {
                broadcaster_id: ours(),
                subscription_id: sub(*n),
                offer_id: offer("basic"),
                ends_at: None,
                at: at(20),
            }),
            Step::Terminate(n) => Some(CustomerCommand::TerminateSubscription {
                broadcaster_id: ours(),
                subscription_id: sub(*n),
                at: at(20),
            }),
            Step::Anonymize => Some(anonymize(wl, request(1))),
            _ => None,
        };
        if let Some(cmd) = customer_cmd {
            if let Ok(events) = customer.handle(&cmd) {
                self.customer.extend(events);
            }
            return;
        }
        let complete = |destroyed| {
            customer.anonymized().map(|a| RequestCommand::Complete {
                anonymized: a.clone(),
                position: 1,
                data_key_destroyed: destroyed,
                at: at(30),
            })
        };
        match s {
            // The app destroys a key only after the erasure is in the log.
            Step::DestroyKey if customer.is_anonymized() => self.key_destroyed = true,
            Step::Defer => self.decide(RequestCommand::Defer {
                subscriptions: customer.active_subscriptions(),
                at: at(20),
            }),
            Step::Complete => {
                if let Some(cmd) = complete(self.key_destroyed) {
                    self.decide(cmd)
                }
            }
            Step::Refuse(shared) => self.decide(refuse(if *shared {
                BlockerCode::SharedAcrossBroadcasters
            } else {
                BlockerCode::ActiveSubscription
            })),
            Step::Cancel => self.decide(cancel(us())),
            Step::Extend(m) => self.decide(extend_to(due().add_months(*m).unwrap_or(due()), us())),
            _ => {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn no_command_sequence_leaves_a_request_completed_without_a_destroyed_key(
        steps in proptest::collection::vec(step(), 0..40)
    ) {
        let mut world = World {
            customer: vec![registered_with(ours())],
            key_destroyed: false,
            request: Vec::new(),
        };
        world.decide(receive());
        let mut ended: Option<ErasureRequest> = None;
        for s in &steps {
            world.run(s);
            let request = ErasureRequest::from_events(&world.request);
            if let Some(e) = &ended {
                prop_assert_eq!(e, &request, "an ended request changed");
            } else if request.status().is_some_and(|s| s.is_ended()) {
                ended = Some(request.clone());
            }
            if request.status() == Some(RequestStatus::Completed) {
                prop_assert!(world.customer().is_anonymized(), "completed without CustomerAnonymized");
                prop_assert!(world.key_destroyed, "completed with the data key alive");
                prop_assert!(request.completed().is_some_and(|c| c.data_key_destroyed));
            }
            // A due date never passes the original plus two months.
            if let Some(d) = request.due_at() {
                prop_assert!(d <= due().add_months(2).unwrap());
            }
        }
        // Every event sequence the aggregate produced folds back to the same state
        // one event at a time.
        let mut folded = ErasureRequest::default();
        for e in &world.request {
            folded.apply(e);
        }
        prop_assert_eq!(folded, ErasureRequest::from_events(&world.request));
    }
}
