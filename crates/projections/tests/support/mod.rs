//! Fixtures for the projection tests: readable ids, sealed blocks, event builders and
//! a [`Log`] that hands out envelopes with positions and event ids as a store would.

#![allow(dead_code)]

use ledger_events::{
    BroadcasterRegistered, CustomerAnonymized, CustomerEvent, CustomerLinked, CustomerRegistered,
    DomainEvent, Integration, LoginData, LoginRecorded, PaymentCaptured, PaymentData,
    PaymentRefunded, Personal, PersonalCategory, Precondition, Profile, ProfilePatch,
    ProfileUpdated, SealedBox, SubscriptionStarted, SubscriptionTerminated,
};
use ledger_projections::Envelope;
use ledger_types::{
    BroadcasterId, Currency, CustomerId, EventId, Money, OfferId, PaymentId, RefundId, RequestId,
    SubscriptionId, Timestamp,
};

// ---------------------------------------------------------------------------- ids

fn uuid(kind: u32, n: u64) -> String {
    format!("{kind:08x}-0000-4000-8000-{n:012x}")
}

pub fn customer(n: u64) -> CustomerId {
    CustomerId::parse(&uuid(1, n)).unwrap()
}
pub fn broadcaster(n: u64) -> BroadcasterId {
    BroadcasterId::parse(&uuid(2, n)).unwrap()
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
pub fn event_id(position: u64) -> EventId {
    EventId::parse(&uuid(7, position)).unwrap()
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
pub fn currency(code: &str) -> Currency {
    Currency::parse(code).unwrap()
}

/// 2026-01-01T00:00:00Z, UTC day number 20454.
pub const DAY0: i64 = 20_454;

/// `day` days after 2026-01-01, plus `secs` seconds.
pub fn t(day: i64, secs: i64) -> Timestamp {
    Timestamp::from_millis((DAY0 + day) * 86_400_000 + secs * 1000)
}

/// A sealed block whose bytes say where it came from (never plaintext).
pub fn sealed(tag: u8) -> SealedBox {
    SealedBox::from_bytes(vec![tag; 24])
}

pub fn profile() -> Profile {
    Profile {
        email: "ada@example.org".into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        first_name: "Ada".into(),
        last_name: "Lovelace".into(),
        address: Some("12 St James's Square, London".into()),
        company_name: None,
        phone_number: Some("+44 20 7946 0000".into()),
        custom_answers: vec![],
        registration_ip: Some("192.0.2.10".into()),
    }
}

// ------------------------------------------------------------------------- events

pub fn registered(c: CustomerId, b: BroadcasterId, at: Timestamp, tag: u8) -> CustomerEvent {
    CustomerEvent::Registered(CustomerRegistered {
        customer_id: c,
        broadcaster_id: b,
        at,
        profile: Personal::Sealed(sealed(tag)),
    })
}
pub fn linked(b: BroadcasterId, at: Timestamp) -> CustomerEvent {
    CustomerEvent::Linked(CustomerLinked {
        broadcaster_id: b,
        at,
    })
}
pub fn patched(b: BroadcasterId, at: Timestamp, tag: u8) -> CustomerEvent {
    CustomerEvent::ProfileUpdated(ProfileUpdated {
        broadcaster_id: b,
        at,
        patch: Personal::Sealed(sealed(tag)),
    })
}
pub fn logged_in(b: BroadcasterId, at: Timestamp, tag: u8) -> CustomerEvent {
    CustomerEvent::LoginRecorded(LoginRecorded {
        broadcaster_id: b,
        at,
        login: Personal::Sealed(sealed(tag)),
    })
}
pub fn started(s: SubscriptionId, b: BroadcasterId, o: &str, at: Timestamp) -> CustomerEvent {
    CustomerEvent::SubscriptionStarted(SubscriptionStarted {
        subscription_id: s,
        broadcaster_id: b,
        offer_id: offer(o),
        at,
        ends_at: None,
    })
}
pub fn terminated(s: SubscriptionId, at: Timestamp) -> CustomerEvent {
    CustomerEvent::SubscriptionTerminated(SubscriptionTerminated {
        subscription_id: s,
        at,
    })
}
pub fn captured(
    p: PaymentId,
    b: BroadcasterId,
    o: &str,
    amount: Money,
    at: Timestamp,
) -> CustomerEvent {
    CustomerEvent::PaymentCaptured(PaymentCaptured {
        payment_id: p,
        broadcaster_id: b,
        offer_id: offer(o),
        subscription_id: None,
        amount,
        at,
        payer: Personal::Sealed(sealed(0xAA)),
    })
}
pub fn refunded(
    r: RefundId,
    p: PaymentId,
    b: BroadcasterId,
    o: &str,
    amount: Money,
    at: Timestamp,
) -> CustomerEvent {
    CustomerEvent::PaymentRefunded(PaymentRefunded {
        refund_id: r,
        payment_id: p,
        broadcaster_id: b,
        offer_id: offer(o),
        amount,
        at,
    })
}
pub fn anonymized(c: CustomerId, b: BroadcasterId, req: RequestId, at: Timestamp) -> CustomerEvent {
    CustomerEvent::Anonymized(CustomerAnonymized {
        request_id: req,
        customer_id: c,
        broadcaster_id: b,
        at,
        categories: PersonalCategory::ALL.to_vec(),
        preconditions: Precondition::ALL.to_vec(),
        actor: None,
    })
}
pub fn open_profile_registration(c: CustomerId, b: BroadcasterId, at: Timestamp) -> CustomerEvent {
    CustomerEvent::Registered(CustomerRegistered {
        customer_id: c,
        broadcaster_id: b,
        at,
        profile: Personal::Open(profile()),
    })
}
pub fn open_patch(b: BroadcasterId, at: Timestamp) -> CustomerEvent {
    CustomerEvent::ProfileUpdated(ProfileUpdated {
        broadcaster_id: b,
        at,
        patch: Personal::Open({
            let mut v = ProfilePatch::default();
            v.email = Some("ada@new.example".into());
            v
        }),
    })
}
pub fn open_login(b: BroadcasterId, at: Timestamp) -> CustomerEvent {
    CustomerEvent::LoginRecorded(LoginRecorded {
        broadcaster_id: b,
        at,
        login: Personal::Open(LoginData {
            ip: "192.0.2.99".into(),
        }),
    })
}
pub fn open_payer_capture(
    p: PaymentId,
    b: BroadcasterId,
    amount: Money,
    at: Timestamp,
) -> CustomerEvent {
    CustomerEvent::PaymentCaptured(PaymentCaptured {
        payment_id: p,
        broadcaster_id: b,
        offer_id: offer("basic"),
        subscription_id: None,
        amount,
        at,
        payer: Personal::Open(PaymentData {
            ip: Some("198.51.100.7".into()),
        }),
    })
}

// ---------------------------------------------------------------------------- log

/// A log as the store would hand it out: positions from 1, one event id each.
#[derive(Debug, Default, Clone)]
pub struct Log {
    pub events: Vec<DomainEvent>,
}

impl Log {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn customer(&mut self, c: CustomerId, e: CustomerEvent) -> &mut Self {
        self.events.push(DomainEvent::Customer(c, e));
        self
    }

    pub fn broadcaster(&mut self, b: BroadcasterId, integration: Integration) -> &mut Self {
        self.events.push(DomainEvent::Broadcaster(
            b,
            BroadcasterRegistered {
                broadcaster_id: b,
                name: "Example Broadcasting".into(),
                integration,
                at: t(0, 0),
            },
        ));
        self
    }

    /// The position the next event will get.
    pub fn next_position(&self) -> u64 {
        self.events.len() as u64 + 1
    }

    pub fn envelopes(&self) -> impl Iterator<Item = Envelope<'_>> + '_ {
        self.events
            .iter()
            .enumerate()
            .map(|(i, e)| envelope(i as u64 + 1, e))
    }

    /// The envelope of the event at `position` (1-based).
    pub fn at(&self, position: u64) -> Envelope<'_> {
        envelope(position, &self.events[position as usize - 1])
    }
}

pub fn envelope(position: u64, event: &DomainEvent) -> Envelope<'_> {
    Envelope {
        position,
        event_id: event_id(position),
        recorded_at: Timestamp::from_millis(DAY0 * 86_400_000 + position as i64),
        event,
    }
}
