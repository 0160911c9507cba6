//! Given/when/then tests of the bulk erasure job aggregate, one transition per test.

mod support;

use ledger_command::{ErasureJob, ItemState, JobCommand, JobState, Refusal};
use ledger_events::{
    Actor, ErasureJobCancelled, ErasureJobChunkStarted, ErasureJobEvent, ErasureJobFinished,
    ErasureJobItemsSettled, ErasureJobStarted, ErasureJobSubmitted, ErasureJobValidated, ItemCheck,
    ItemFinding, ItemOutcome, JobEnd, MAX_JOB_ITEMS,
};
use ledger_types::{CustomerId, JobId, Reference};
use support::*;

// ------------------------------------------------------------------------ harness

fn job_id() -> JobId {
    JobId::parse("0000000a-0000-4000-8000-000000000001").unwrap()
}
fn customer(n: u64) -> CustomerId {
    CustomerId::parse(&format!("00000001-0000-4000-8000-{n:012x}")).unwrap()
}
fn customers(n: u64) -> Vec<CustomerId> {
    (1..=n).map(customer).collect()
}
fn us() -> Actor {
    Actor::Broadcaster {
        broadcaster_id: ours(),
        key_id: None,
    }
}
fn them() -> Actor {
    Actor::Broadcaster {
        broadcaster_id: other_tenant(),
        key_id: None,
    }
}
fn submit_ids(ids: Vec<CustomerId>) -> JobCommand {
    JobCommand::Submit {
        job_id: job_id(),
        requested_by: us(),
        reference: Some(Reference::parse("ZD-1").unwrap()),
        customer_ids: ids,
        at: at(0),
    }
}
fn submit() -> JobCommand {
    submit_ids(customers(3))
}
fn submitted() -> ErasureJobEvent {
    ErasureJobEvent::Submitted(ErasureJobSubmitted {
        job_id: job_id(),
        requested_by: us(),
        reference: Some(Reference::parse("ZD-1").unwrap()),
        customer_ids: customers(3),
        at: at(0),
    })
}
fn finding() -> ItemFinding {
    ItemFinding {
        index: 2,
        checks: vec![ItemCheck::NotFound],
    }
}
fn validated() -> ErasureJobEvent {
    ErasureJobEvent::Validated(ErasureJobValidated {
        findings: vec![finding()],
        at: at(1),
    })
}
fn started() -> ErasureJobEvent {
    ErasureJobEvent::Started(ErasureJobStarted { at: at(2) })
}
fn chunk(from: u32, to: u32) -> ErasureJobEvent {
    ErasureJobEvent::ChunkStarted(ErasureJobChunkStarted {
        from,
        to,
        at: at(3),
    })
}
fn settled(from: u32, to: u32, outcomes: Vec<ItemOutcome>) -> ErasureJobEvent {
    ErasureJobEvent::ItemsSettled(ErasureJobItemsSettled {
        from,
        to,
        outcomes,
        at: at(4),
    })
}
fn cancelled() -> ErasureJobEvent {
    ErasureJobEvent::Cancelled(ErasureJobCancelled {
        by: us(),
        at: at(5),
    })
}
fn finished(end: JobEnd) -> ErasureJobEvent {
    ErasureJobEvent::Finished(ErasureJobFinished { end, at: at(6) })
}
fn running() -> Vec<ErasureJobEvent> {
    vec![submitted(), validated(), started()]
}
fn all_settled(outcomes: Vec<ItemOutcome>) -> Vec<ErasureJobEvent> {
    let mut h = running();
    h.push(chunk(0, 3));
    h.push(settled(0, 3, outcomes));
    h
}
use ItemOutcome::{Completed, Deferred, NotFound};

struct Then {
    state: ErasureJob,
    result: Result<Vec<ErasureJobEvent>, Refusal>,
}

fn given_when(history: &[ErasureJobEvent], cmd: JobCommand) -> Then {
    let state = ErasureJob::from_events(history);
    let result = state.handle(&cmd);
    assert_eq!(
        state,
        ErasureJob::from_events(history),
        "handle must not change the state"
    );
    Then { state, result }
}

impl Then {
    #[track_caller]
    fn then_events(self, expected: Vec<ErasureJobEvent>) -> ErasureJob {
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

// ------------------------------------------------------------------------- submit

#[test]
fn submitting_a_job_records_its_customers_in_order_and_it_is_validating() {
    let s = given_when(&[], submit()).then_events(vec![submitted()]);
    assert_eq!(s.state(), Some(JobState::Validating));
    assert_eq!(s.customer_ids(), customers(3).as_slice());
    assert!(s.is_visible_to(&us()));
    assert!(s.is_visible_to(&Actor::Operator));
    assert!(!s.is_visible_to(&them()));
    assert_eq!(s.item_state(0), ItemState::Pending);
}

#[test]
fn submitting_the_same_job_again_is_a_retry_that_records_nothing() {
    given_when(&[submitted()], submit()).then_events(vec![]);
}

#[test]
fn submitting_the_same_job_id_with_other_customers_is_refused_with_job_exists() {
    given_when(&[submitted()], submit_ids(customers(4))).then_refused("JOB_EXISTS");
}

#[test]
fn a_job_of_ten_thousand_and_one_customers_is_refused_whole_with_too_many_ids() {
    let ids: Vec<CustomerId> = (0..=MAX_JOB_ITEMS).map(|_| CustomerId::new()).collect();
    let r = given_when(&[], submit_ids(ids)).then_refused("TOO_MANY_IDS");
    assert_eq!(
        r,
        Refusal::TooManyIds {
            given: MAX_JOB_ITEMS + 1,
            max: MAX_JOB_ITEMS
        }
    );
}

#[test]
fn a_job_of_exactly_ten_thousand_customers_is_accepted() {
    let ids: Vec<CustomerId> = (0..MAX_JOB_ITEMS).map(|_| CustomerId::new()).collect();
    let s = given_when(&[], submit_ids(ids)).then_events_len(1);
    assert_eq!(s.len(), MAX_JOB_ITEMS);
}

impl Then {
    #[track_caller]
    fn then_events_len(self, n: usize) -> ErasureJob {
        let events = self.result.expect("accepted");
        assert_eq!(events.len(), n);
        ErasureJob::from_events(&events)
    }
}

#[test]
fn a_job_naming_a_customer_twice_is_refused_with_the_duplicates_listed() {
    let mut ids = customers(3);
    ids.push(customer(2));
    ids.push(customer(2));
    let r = given_when(&[], submit_ids(ids)).then_refused("DUPLICATE_IDS");
    assert_eq!(
        r,
        Refusal::DuplicateIds {
            ids: vec![customer(2)]
        }
    );
}

#[test]
fn an_empty_job_is_invalid_input() {
    given_when(&[], submit_ids(vec![])).then_refused("INVALID_INPUT");
}

// ----------------------------------------------------------------------- validate

#[test]
fn validating_a_job_records_the_findings_and_it_is_ready() {
    let cmd = JobCommand::Validate {
        findings: vec![finding()],
        at: at(1),
    };
    let s = given_when(&[submitted()], cmd).then_events(vec![validated()]);
    assert_eq!(s.state(), Some(JobState::Ready));
    assert_eq!(s.findings(2), &[ItemCheck::NotFound]);
    assert!(s.findings(0).is_empty());
}

#[test]
fn validating_a_job_twice_records_nothing_the_second_time() {
    let cmd = JobCommand::Validate {
        findings: vec![],
        at: at(1),
    };
    given_when(&[submitted(), validated()], cmd).then_events(vec![]);
}

#[test]
fn a_finding_past_the_jobs_items_is_invalid_input() {
    let cmd = JobCommand::Validate {
        findings: vec![ItemFinding {
            index: 3,
            checks: vec![ItemCheck::NotFound],
        }],
        at: at(1),
    };
    given_when(&[submitted()], cmd).then_refused("INVALID_INPUT");
}

// -------------------------------------------------------------------------- start

#[test]
fn starting_a_ready_job_makes_it_running() {
    let s = given_when(&[submitted(), validated()], JobCommand::Start { at: at(2) })
        .then_events(vec![started()]);
    assert_eq!(s.state(), Some(JobState::Running));
}

#[test]
fn a_job_still_validating_cannot_start() {
    given_when(&[submitted()], JobCommand::Start { at: at(2) }).then_refused("JOB_STATE");
}

// ------------------------------------------------------------------------- chunks

#[test]
fn beginning_a_chunk_at_the_first_unsettled_item_puts_it_in_flight() {
    let cmd = JobCommand::BeginChunk {
        from: 0,
        to: 2,
        at: at(3),
    };
    let s = given_when(&running(), cmd).then_events(vec![chunk(0, 2)]);
    assert_eq!(s.in_flight(), Some((0, 2)));
    assert_eq!(s.item_state(0), ItemState::Pending);
}

#[test]
fn a_chunk_that_skips_items_or_runs_past_the_end_is_invalid_input() {
    let skip = JobCommand::BeginChunk {
        from: 1,
        to: 2,
        at: at(3),
    };
    given_when(&running(), skip).then_refused("INVALID_INPUT");
    let past = JobCommand::BeginChunk {
        from: 0,
        to: 4,
        at: at(3),
    };
    given_when(&running(), past).then_refused("INVALID_INPUT");
}

#[test]
fn a_second_chunk_cannot_begin_while_one_is_in_flight() {
    let mut h = running();
    h.push(chunk(0, 1));
    let cmd = JobCommand::BeginChunk {
        from: 1,
        to: 2,
        at: at(3),
    };
    given_when(&h, cmd).then_refused("INVALID_INPUT");
}

#[test]
fn settling_the_chunk_in_flight_records_each_items_outcome() {
    let mut h = running();
    h.push(chunk(0, 2));
    let cmd = JobCommand::Settle {
        from: 0,
        to: 2,
        outcomes: vec![Completed, Deferred],
        at: at(4),
    };
    let s = given_when(&h, cmd).then_events(vec![settled(0, 2, vec![Completed, Deferred])]);
    assert_eq!(s.in_flight(), None);
    assert_eq!(s.settled(), 2);
    assert_eq!(s.item_state(0), ItemState::Completed);
    assert_eq!(s.item_state(1), ItemState::Deferred);
    assert_eq!(s.item_state(2), ItemState::Pending);
}

#[test]
fn settling_a_chunk_that_is_not_in_flight_or_with_missing_outcomes_is_invalid_input() {
    let settle = |outcomes: Vec<ItemOutcome>| JobCommand::Settle {
        from: 0,
        to: 2,
        outcomes,
        at: at(4),
    };
    given_when(&running(), settle(vec![Completed, Completed])).then_refused("INVALID_INPUT");
    let mut h = running();
    h.push(chunk(0, 2));
    given_when(&h, settle(vec![Completed])).then_refused("INVALID_INPUT");
}

// ------------------------------------------------------------------------- finish

#[test]
fn a_job_whose_items_all_completed_or_deferred_finishes_succeeded() {
    let h = all_settled(vec![Completed, Deferred, Completed]);
    let s = given_when(&h, JobCommand::Finish { at: at(6) })
        .then_events(vec![finished(JobEnd::Succeeded)]);
    assert_eq!(s.state(), Some(JobState::Succeeded));
    let counts = s.counts();
    assert!(counts.contains(&(ItemState::Completed, 2)));
    assert!(counts.contains(&(ItemState::Deferred, 1)));
    assert!(counts.contains(&(ItemState::Pending, 0)));
}

#[test]
fn a_job_with_an_item_not_found_or_refused_finishes_partially_failed() {
    let h = all_settled(vec![Completed, Completed, NotFound]);
    let s = given_when(&h, JobCommand::Finish { at: at(6) })
        .then_events(vec![finished(JobEnd::PartiallyFailed)]);
    assert_eq!(s.state(), Some(JobState::PartiallyFailed));
    assert_eq!(s.item_state(2), ItemState::NotFound);
}

#[test]
fn a_job_cannot_finish_before_every_item_is_settled() {
    let mut h = running();
    h.push(chunk(0, 2));
    h.push(settled(0, 2, vec![Completed, Completed]));
    given_when(&h, JobCommand::Finish { at: at(6) }).then_refused("INVALID_INPUT");
}

// ------------------------------------------------------------------------- cancel

#[test]
fn cancelling_a_running_job_leaves_the_items_never_begun_cancelled() {
    let mut h = running();
    h.push(chunk(0, 1));
    h.push(settled(0, 1, vec![Completed]));
    let s = given_when(
        &h,
        JobCommand::Cancel {
            by: us(),
            at: at(5),
        },
    )
    .then_events(vec![cancelled()]);
    assert_eq!(s.state(), Some(JobState::Cancelled));
    assert_eq!(s.item_state(0), ItemState::Completed);
    assert_eq!(s.item_state(1), ItemState::Cancelled);
}

#[test]
fn cancelling_a_validating_or_ready_job_is_allowed() {
    given_when(
        &[submitted()],
        JobCommand::Cancel {
            by: us(),
            at: at(5),
        },
    )
    .then_events(vec![cancelled()]);
    given_when(
        &[submitted(), validated()],
        JobCommand::Cancel {
            by: us(),
            at: at(5),
        },
    )
    .then_events(vec![cancelled()]);
}

#[test]
fn the_chunk_in_flight_of_a_cancelled_job_is_still_settled_and_no_other_begins() {
    let mut h = running();
    h.push(chunk(0, 2));
    h.push(cancelled());
    let s = ErasureJob::from_events(&h);
    assert_eq!(
        s.item_state(1),
        ItemState::Pending,
        "in flight, not cancelled"
    );
    assert_eq!(s.item_state(2), ItemState::Cancelled);
    let settle = JobCommand::Settle {
        from: 0,
        to: 2,
        outcomes: vec![Completed, Completed],
        at: at(4),
    };
    let s = given_when(&h, settle).then_events(vec![settled(0, 2, vec![Completed, Completed])]);
    assert_eq!(s.state(), Some(JobState::Cancelled));
    assert_eq!(s.item_state(1), ItemState::Completed);
    let begin = JobCommand::BeginChunk {
        from: 2,
        to: 3,
        at: at(6),
    };
    h.push(settled(0, 2, vec![Completed, Completed]));
    given_when(&h, begin).then_refused("JOB_STATE");
}

#[test]
fn cancelling_a_cancelled_job_again_records_nothing() {
    let mut h = running();
    h.push(cancelled());
    given_when(
        &h,
        JobCommand::Cancel {
            by: us(),
            at: at(7),
        },
    )
    .then_events(vec![]);
}

#[test]
fn cancelling_a_finished_job_is_refused_with_job_closed() {
    let mut h = all_settled(vec![Completed, Completed, Completed]);
    h.push(finished(JobEnd::Succeeded));
    let r = given_when(
        &h,
        JobCommand::Cancel {
            by: us(),
            at: at(7),
        },
    )
    .then_refused("JOB_CLOSED");
    assert_eq!(
        r,
        Refusal::JobClosed {
            state: JobState::Succeeded
        }
    );
}

#[test]
fn another_tenant_cannot_cancel_a_job_it_did_not_submit() {
    given_when(
        &running(),
        JobCommand::Cancel {
            by: them(),
            at: at(5),
        },
    )
    .then_refused("NOT_FOUND");
}

#[test]
fn the_operator_can_cancel_any_job() {
    let op = ErasureJobEvent::Cancelled(ErasureJobCancelled {
        by: Actor::Operator,
        at: at(5),
    });
    given_when(
        &running(),
        JobCommand::Cancel {
            by: Actor::Operator,
            at: at(5),
        },
    )
    .then_events(vec![op]);
}

#[test]
fn a_command_on_a_job_never_submitted_is_not_found() {
    given_when(&[], JobCommand::Start { at: at(1) }).then_refused("NOT_FOUND");
}
