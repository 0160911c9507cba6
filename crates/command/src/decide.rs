//! The decide function ([`Customer::handle`]): one command against the current state
//! gives either the events to append or a [`Refusal`].
//!
//! Every command that names a broadcaster checks, in this order:
//! 1. visibility: the customer exists and the broadcaster is linked to it, else
//!    `NotFound` (so another tenant learns nothing, not even that the input was bad);
//! 2. erasure: a command that would add personal data to an anonymized customer is
//!    `CustomerAnonymized`;
//! 3. input: `InvalidInput` naming the field, never the value;
//! 4. the command's own rules (duplicates, unknown references, amounts).
//!
//! `Register` has no visibility to check: it is `CustomerExists` first, then input.

use ledger_events::{
    Actor, CustomerAnonymized, CustomerEvent, CustomerLinked, CustomerRegistered, LoginData,
    LoginRecorded, PaymentCaptured, PaymentData, PaymentRefunded, Personal, PersonalCategory,
    Precondition, ProfileUpdated, SubscriptionStarted, SubscriptionTerminated,
};
use ledger_types::BroadcasterId;

use crate::{validate, Customer, CustomerCommand, Refusal};

impl Customer {
    /// Decides a command: the events it produces, or why it is refused. Pure: the
    /// state is not changed (apply the returned events for that), and the result
    /// depends on the state and the command only.
    ///
    /// Personal data in the returned events is in [`Personal::Open`] blocks; the app
    /// seals them before storing. `Ok(vec![])` means "accepted, nothing to record"
    /// (a repeated `Anonymize`).
    pub fn handle(&self, cmd: &CustomerCommand) -> Result<Vec<CustomerEvent>, Refusal> {
        match cmd {
            CustomerCommand::Register {
                customer_id,
                broadcaster_id,
                profile,
                at,
            } => {
                if self.exists() {
                    return Err(Refusal::CustomerExists);
                }
                validate::profile(profile)?;
                Ok(vec![CustomerEvent::Registered(CustomerRegistered {
                    customer_id: *customer_id,
                    broadcaster_id: *broadcaster_id,
                    at: *at,
                    profile: Personal::Open(profile.clone()),
                })])
            }

            CustomerCommand::Link { broadcaster_id, at } => {
                // The broadcaster being linked cannot see the customer yet: only
                // existence is checked here.
                if !self.exists() {
                    return Err(Refusal::NotFound);
                }
                if self.is_anonymized() {
                    return Err(Refusal::CustomerAnonymized);
                }
                if self.broadcasters.contains(broadcaster_id) {
                    return Err(Refusal::AlreadyLinked);
                }
                Ok(vec![CustomerEvent::Linked(CustomerLinked {
                    broadcaster_id: *broadcaster_id,
                    at: *at,
                })])
            }

            CustomerCommand::UpdateProfile {
                broadcaster_id,
                patch,
                at,
            } => {
                self.visible(*broadcaster_id)?;
                self.not_anonymized()?;
                validate::patch(patch)?;
                Ok(vec![CustomerEvent::ProfileUpdated(ProfileUpdated {
                    broadcaster_id: *broadcaster_id,
                    at: *at,
                    patch: Personal::Open(patch.clone()),
                })])
            }

            CustomerCommand::RecordLogin {
                broadcaster_id,
                ip,
                at,
            } => {
                self.visible(*broadcaster_id)?;
                self.not_anonymized()?;
                validate::ip("ip", ip)?;
                Ok(vec![CustomerEvent::LoginRecorded(LoginRecorded {
                    broadcaster_id: *broadcaster_id,
                    at: *at,
                    login: Personal::Open(LoginData { ip: ip.clone() }),
                })])
            }

            CustomerCommand::StartSubscription {
                broadcaster_id,
                subscription_id,
                offer_id,
                ends_at,
                at,
            } => {
                self.visible(*broadcaster_id)?;
                // An anonymized customer can no longer log in to use a subscription,
                // and the erasure precondition "no active subscription" must stay true.
                self.not_anonymized()?;
                if ends_at.is_some_and(|e| e <= *at) {
                    return Err(Refusal::EndsAtPassed);
                }
                if self.subscriptions.contains_key(subscription_id) {
                    return Err(Refusal::SubscriptionExists);
                }
                Ok(vec![CustomerEvent::SubscriptionStarted(
                    SubscriptionStarted {
                        subscription_id: *subscription_id,
                        broadcaster_id: *broadcaster_id,
                        offer_id: offer_id.clone(),
                        at: *at,
                        ends_at: *ends_at,
                    },
                )])
            }

            CustomerCommand::TerminateSubscription {
                broadcaster_id,
                subscription_id,
                at,
            } => {
                self.visible(*broadcaster_id)?;
                let sub = self
                    .subscriptions
                    .get(subscription_id)
                    .filter(|s| s.broadcaster_id == *broadcaster_id)
                    .ok_or(Refusal::SubscriptionNotFound)?;
                if !sub.is_active() {
                    return Err(Refusal::SubscriptionNotActive);
                }
                Ok(vec![CustomerEvent::SubscriptionTerminated(
                    SubscriptionTerminated {
                        subscription_id: *subscription_id,
                        at: *at,
                    },
                )])
            }

            CustomerCommand::CapturePayment {
                broadcaster_id,
                payment_id,
                offer_id,
                subscription_id,
                amount,
                payer_ip,
                at,
            } => {
                self.visible(*broadcaster_id)?;
                // Revenue keeps flowing after erasure, but without any personal detail.
                if payer_ip.is_some() {
                    self.not_anonymized()?;
                }
                validate::amount(amount)?;
                if let Some(ip) = payer_ip {
                    validate::ip("payer_ip", ip)?;
                }
                if self.payments.contains_key(payment_id) {
                    return Err(Refusal::PaymentExists);
                }
                if let Some(sid) = subscription_id {
                    let ours = self
                        .subscriptions
                        .get(sid)
                        .is_some_and(|s| s.broadcaster_id == *broadcaster_id);
                    if !ours {
                        return Err(Refusal::SubscriptionNotFound);
                    }
                }
                // One representation whatever the input: `Open(PaymentData { ip })`,
                // which is `Open(PaymentData::default())` when there is no IP (always
                // the case after erasure).
                Ok(vec![CustomerEvent::PaymentCaptured(PaymentCaptured {
                    payment_id: *payment_id,
                    broadcaster_id: *broadcaster_id,
                    offer_id: offer_id.clone(),
                    subscription_id: *subscription_id,
                    amount: *amount,
                    at: *at,
                    payer: Personal::Open(PaymentData {
                        ip: payer_ip.clone(),
                    }),
                })])
            }

            CustomerCommand::RefundPayment {
                broadcaster_id,
                refund_id,
                payment_id,
                amount,
                at,
            } => {
                self.visible(*broadcaster_id)?;
                validate::amount(amount)?;
                let payment = self
                    .payments
                    .get(payment_id)
                    .filter(|p| p.broadcaster_id == *broadcaster_id)
                    .ok_or(Refusal::PaymentNotFound)?;
                if self.refunds.contains_key(refund_id) {
                    return Err(Refusal::RefundExists);
                }
                if payment.amount.currency() != amount.currency() {
                    return Err(Refusal::CurrencyMismatch);
                }
                let refundable = payment.refundable();
                if amount.minor() > refundable.minor() {
                    return Err(Refusal::RefundExceedsPayment { refundable });
                }
                Ok(vec![CustomerEvent::PaymentRefunded(PaymentRefunded {
                    refund_id: *refund_id,
                    payment_id: *payment_id,
                    broadcaster_id: payment.broadcaster_id,
                    offer_id: payment.offer_id.clone(),
                    amount: *amount,
                    at: *at,
                })])
            }

            CustomerCommand::Anonymize {
                request_id,
                broadcaster,
                key_id,
                at,
            } => {
                let blockers = self.erasure_blockers(broadcaster)?;
                if self.is_anonymized() {
                    return Ok(vec![]);
                }
                if let Some(first) = blockers.into_iter().next() {
                    return Err(first);
                }
                let Some(customer_id) = self.id else {
                    // Unreachable: erasure_blockers returned NotFound for a customer
                    // that does not exist. Kept total rather than panicking.
                    return Err(Refusal::NotFound);
                };
                Ok(vec![CustomerEvent::Anonymized(CustomerAnonymized {
                    request_id: *request_id,
                    customer_id,
                    broadcaster_id: broadcaster.id,
                    at: *at,
                    categories: PersonalCategory::ALL.to_vec(),
                    preconditions: Precondition::ALL.to_vec(),
                    actor: Some(Actor::Broadcaster {
                        broadcaster_id: broadcaster.id,
                        key_id: *key_id,
                    }),
                })])
            }

            CustomerCommand::AnonymizeAsOperator { request_id, at } => {
                let blockers = self.operator_erasure_blockers()?;
                if self.is_anonymized() {
                    return Ok(vec![]);
                }
                if let Some(first) = blockers.into_iter().next() {
                    return Err(first);
                }
                let (Some(customer_id), Some(registered_by)) = (self.id, self.registered_by) else {
                    return Err(Refusal::NotFound);
                };
                // The receipt names the registering broadcaster; every linked one
                // sees it (the read side files it under all of them).
                Ok(vec![CustomerEvent::Anonymized(CustomerAnonymized {
                    request_id: *request_id,
                    customer_id,
                    broadcaster_id: registered_by,
                    at: *at,
                    categories: PersonalCategory::ALL.to_vec(),
                    preconditions: vec![
                        Precondition::PlatformOperator,
                        Precondition::NoActiveSubscription,
                    ],
                    actor: Some(Actor::Operator),
                })])
            }

            CustomerCommand::ReapplyErasure {
                request_id,
                broadcaster_id,
                at,
            } => {
                let Some(customer_id) = self.id else {
                    return Err(Refusal::NotFound);
                };
                if self.is_anonymized() {
                    return Ok(vec![]);
                }
                Ok(vec![CustomerEvent::Anonymized(CustomerAnonymized {
                    request_id: *request_id,
                    customer_id,
                    broadcaster_id: *broadcaster_id,
                    at: *at,
                    categories: PersonalCategory::ALL.to_vec(),
                    preconditions: vec![Precondition::OnForgetList],
                    actor: None,
                })])
            }
        }
    }

    fn visible(&self, b: BroadcasterId) -> Result<(), Refusal> {
        if self.is_visible_to(b) {
            Ok(())
        } else {
            Err(Refusal::NotFound)
        }
    }

    fn not_anonymized(&self) -> Result<(), Refusal> {
        if self.is_anonymized() {
            Err(Refusal::CustomerAnonymized)
        } else {
            Ok(())
        }
    }
}
