//! Fixtures and a small given/when/then harness for the Customer aggregate.
//!
//! `given(events).when(command)` decides the command against the state folded from
//! `events`; `then_events`, `then_no_events` and `then_refused` assert the outcome and
//! return what the next assertion needs.

#![allow(dead_code)]

use ledger_command::{BroadcasterRef, Customer, CustomerCommand, Integration, Refusal};
use ledger_events::{
    Actor, Answer, CustomerAnonymized, CustomerEvent, CustomerLinked, CustomerRegistered,
    PaymentCaptured, PaymentData, PaymentRefunded, Personal, PersonalCategory, Precondition,
    Profile, ProfilePatch, SealedBox, SubscriptionStarted, SubscriptionTerminated,
};
use ledger_types::{
    BroadcasterId, Currency, CustomerId, Money, OfferId, PaymentId, RefundId, RequestId,
    SubscriptionId, Timestamp,
};

// ---------------------------------------------------------------------------- ids

fn uuid(kind: u32, n: u64) -> String {
    format!("{kind:08x}-0000-4000-8000-{n:012x}")
}

pub fn customer_id() -> CustomerId {
    CustomerId::parse(&uuid(1, 1)).unwrap()
}
pub fn broadcaster(n: u64) -> BroadcasterId {
    BroadcasterId::parse(&uuid(2, n)).unwrap()
}
/// The white-label broadcaster that registered the customer in most scenarios.
pub fn ours() -> BroadcasterId {
    broadcaster(1)
}
/// Another white-label tenant.
pub fn other_tenant() -> BroadcasterId {
    broadcaster(2)
}
/// A broadcaster with a shared integration.
pub fn shared_broadcaster() -> BroadcasterId {
    broadcaster(3)
}
pub fn white_label(id: BroadcasterId) -> BroadcasterRef {
    BroadcasterRef {
        id,
        integration: Integration::WhiteLabel,
    }
}
pub fn shared(id: BroadcasterId) -> BroadcasterRef {
    BroadcasterRef {
        id,
        integration: Integration::Shared,
    }
}
pub fn sub(n: u64) -> SubscriptionId {
    SubscriptionId::parse(&uuid(3, n)).unwrap()
}
pub fn pay(n: u64) -> PaymentId {
    PaymentId::parse(&uuid(4, n)).unwrap()
}
pub fn refund(n: u64) -> RefundId {
    RefundId::parse(&uuid(5, n)).unwrap()
}
pub fn request(n: u64) -> RequestId {
    RequestId::parse(&uuid(6, n)).unwrap()
}
pub fn offer(s: &str) -> OfferId {
    OfferId::parse(s).unwrap()
}
pub fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::parse("EUR").unwrap())
}
pub fn usd(minor: i64) -> Money {
    Money::new(minor, Currency::parse("USD").unwrap())
}
pub fn at(n: i64) -> Timestamp {
    Timestamp::from_millis(1_767_225_600_000 + n * 1000)
}

pub fn profile() -> Profile {
    Profile {
        email: "ada@example.org".into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        first_name: "Ada".into(),
        last_name: "Lovelace".into(),
        address: Some("12 St James's Square, London".into()),
        company_name: Some("Analytical Engines Ltd".into()),
        phone_number: Some("+44 20 7946 0000".into()),
        custom_answers: vec![Answer {
            question: "Favourite engine?".into(),
            answer: "The analytical one".into(),
        }],
        registration_ip: Some("192.0.2.10".into()),
    }
}

// ------------------------------------------------------------------------- events

pub fn registered_with(b: BroadcasterId) -> CustomerEvent {
    CustomerEvent::Registered(CustomerRegistered {
        customer_id: customer_id(),
        broadcaster_id: b,
        at: at(0),
        profile: Personal::Open(profile()),
    })
}
pub fn linked(b: BroadcasterId) -> CustomerEvent {
    CustomerEvent::Linked(CustomerLinked {
        broadcaster_id: b,
        at: at(1),
    })
}
pub fn started(s: SubscriptionId, b: BroadcasterId) -> CustomerEvent {
    CustomerEvent::SubscriptionStarted(SubscriptionStarted {
        subscription_id: s,
        broadcaster_id: b,
        offer_id: offer("premium-monthly"),
        at: at(2),
        ends_at: None,
    })
}
pub fn terminated(s: SubscriptionId) -> CustomerEvent {
    CustomerEvent::SubscriptionTerminated(SubscriptionTerminated {
        subscription_id: s,
        at: at(3),
    })
}
pub fn captured(p: PaymentId, b: BroadcasterId, amount: Money) -> CustomerEvent {
    CustomerEvent::PaymentCaptured(PaymentCaptured {
        payment_id: p,
        broadcaster_id: b,
        offer_id: offer("premium-monthly"),
        subscription_id: None,
        amount,
        at: at(4),
        payer: Personal::Open(PaymentData {
            ip: Some("198.51.100.7".into()),
        }),
    })
}
pub fn refunded(r: RefundId, p: PaymentId, b: BroadcasterId, amount: Money) -> CustomerEvent {
    CustomerEvent::PaymentRefunded(PaymentRefunded {
        refund_id: r,
        payment_id: p,
        broadcaster_id: b,
        offer_id: offer("premium-monthly"),
        amount,
        at: at(5),
    })
}
pub fn receipt(b: BroadcasterId, req: RequestId, when: Timestamp) -> CustomerAnonymized {
    CustomerAnonymized {
        request_id: req,
        customer_id: customer_id(),
        broadcaster_id: b,
        at: when,
        categories: PersonalCategory::ALL.to_vec(),
        preconditions: Precondition::ALL.to_vec(),
        actor: None,
    }
}
/// The receipt `anonymize(white_label(ours()), req)` decides: it names the actor.
pub fn receipt_by_us(req: RequestId) -> CustomerAnonymized {
    CustomerAnonymized {
        actor: Some(Actor::Broadcaster {
            broadcaster_id: ours(),
            key_id: None,
        }),
        ..receipt(ours(), req, at(10))
    }
}
pub fn anonymized_by(b: BroadcasterId) -> CustomerEvent {
    CustomerEvent::Anonymized(receipt(b, request(1), at(6)))
}

// ----------------------------------------------------------------------- commands

pub fn register(b: BroadcasterId, profile: Profile) -> CustomerCommand {
    CustomerCommand::Register {
        customer_id: customer_id(),
        broadcaster_id: b,
        profile,
        at: at(10),
    }
}
pub fn link(b: BroadcasterId) -> CustomerCommand {
    CustomerCommand::Link {
        broadcaster_id: b,
        at: at(10),
    }
}
pub fn update(b: BroadcasterId, patch: ProfilePatch) -> CustomerCommand {
    CustomerCommand::UpdateProfile {
        broadcaster_id: b,
        patch,
        at: at(10),
    }
}
pub fn new_email() -> ProfilePatch {
    {
        let mut v = ProfilePatch::default();
        v.email = Some("ada@new.example".into());
        v
    }
}
pub fn login(b: BroadcasterId, ip: &str) -> CustomerCommand {
    CustomerCommand::RecordLogin {
        broadcaster_id: b,
        ip: ip.into(),
        at: at(10),
    }
}
pub fn start(b: BroadcasterId, s: SubscriptionId) -> CustomerCommand {
    CustomerCommand::StartSubscription {
        broadcaster_id: b,
        subscription_id: s,
        offer_id: offer("premium-monthly"),
        ends_at: None,
        at: at(10),
    }
}
pub fn terminate(b: BroadcasterId, s: SubscriptionId) -> CustomerCommand {
    CustomerCommand::TerminateSubscription {
        broadcaster_id: b,
        subscription_id: s,
        at: at(10),
    }
}
pub fn capture(
    b: BroadcasterId,
    p: PaymentId,
    subscription: Option<SubscriptionId>,
    amount: Money,
    payer_ip: Option<&str>,
) -> CustomerCommand {
    CustomerCommand::CapturePayment {
        broadcaster_id: b,
        payment_id: p,
        offer_id: offer("premium-monthly"),
        subscription_id: subscription,
        amount,
        payer_ip: payer_ip.map(Into::into),
        at: at(10),
    }
}
pub fn refund_of(b: BroadcasterId, r: RefundId, p: PaymentId, amount: Money) -> CustomerCommand {
    CustomerCommand::RefundPayment {
        broadcaster_id: b,
        refund_id: r,
        payment_id: p,
        amount,
        at: at(10),
    }
}
pub fn anonymize(b: BroadcasterRef, req: RequestId) -> CustomerCommand {
    CustomerCommand::Anonymize {
        request_id: req,
        broadcaster: b,
        key_id: None,
        at: at(10),
    }
}

/// One valid command of every kind that names `b` as the acting broadcaster.
pub fn every_command_naming(b: BroadcasterId) -> Vec<CustomerCommand> {
    vec![
        update(b, new_email()),
        login(b, "203.0.113.5"),
        start(b, sub(9)),
        terminate(b, sub(1)),
        capture(b, pay(9), None, eur(100), Some("203.0.113.5")),
        refund_of(b, refund(9), pay(1), eur(100)),
        anonymize(white_label(b), request(9)),
    ]
}

/// The same event with every personal block replaced by (dummy) ciphertext, as the
/// app stores it and as a reader without the data key sees it.
pub fn seal(e: &CustomerEvent) -> CustomerEvent {
    fn sealed<T>() -> Personal<T> {
        Personal::Sealed(SealedBox::from_bytes(vec![0xA5; 48]))
    }
    let mut e = e.clone();
    match &mut e {
        CustomerEvent::Registered(x) => x.profile = sealed(),
        CustomerEvent::ProfileUpdated(x) => x.patch = sealed(),
        CustomerEvent::LoginRecorded(x) => x.login = sealed(),
        CustomerEvent::PaymentCaptured(x) => x.payer = sealed(),
        _ => {}
    }
    e
}

// ------------------------------------------------------------ given / when / then

pub fn given(events: impl IntoIterator<Item = CustomerEvent>) -> Given {
    Given {
        history: events.into_iter().collect(),
    }
}

pub struct Given {
    history: Vec<CustomerEvent>,
}

impl Given {
    pub fn state(&self) -> Customer {
        Customer::from_events(&self.history)
    }

    pub fn when(self, cmd: CustomerCommand) -> Then {
        let state = self.state();
        let result = state.handle(&cmd);
        // Deciding is pure: the state is untouched whatever the outcome.
        assert_eq!(state, self.state(), "handle must not change the state");
        Then { state, result }
    }
}

pub struct Then {
    state: Customer,
    result: Result<Vec<CustomerEvent>, Refusal>,
}

impl Then {
    /// Asserts the exact events and returns the state after applying them.
    #[track_caller]
    pub fn then_events(self, expected: Vec<CustomerEvent>) -> Customer {
        match self.result {
            Ok(events) => {
                assert_eq!(events, expected);
                let mut state = self.state;
                for e in &events {
                    state.apply(e);
                }
                state
            }
            Err(r) => panic!("expected events, was refused with {} ({r})", r.code()),
        }
    }

    /// Asserts acceptance with nothing to record; returns the unchanged state.
    #[track_caller]
    pub fn then_no_events(self) -> Customer {
        self.then_events(vec![])
    }

    /// Asserts a refusal with the given code and returns it for closer inspection.
    #[track_caller]
    pub fn then_refused(self, code: &str) -> Refusal {
        match self.result {
            Ok(events) => panic!("expected {code}, got {} event(s): {events:?}", events.len()),
            Err(r) => {
                assert_eq!(r.code(), code, "refused with {r:?}");
                r
            }
        }
    }

    /// Asserts acceptance and returns the events, for assertions on their shape.
    #[track_caller]
    pub fn then_accepted(self) -> Vec<CustomerEvent> {
        match self.result {
            Ok(events) => events,
            Err(r) => panic!("expected acceptance, was refused with {} ({r})", r.code()),
        }
    }
}
