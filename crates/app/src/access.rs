//! Right of access and portability (GDPR Art. 15 and 20): everything the ledger
//! holds on one customer, opened, as one JSON document.
//!
//! It reads the customer's own stream, which is the complete record: every personal
//! block ever written (registration, profile changes, login and payment IP
//! addresses) plus subscriptions, payments and refunds. After erasure the personal
//! blocks cannot be opened, and the document says so.

use ledger_command::Refusal;
use ledger_crypto::Opened;
use ledger_events::{streams, CustomerEvent, LoginData, PaymentData, Profile, ProfilePatch};
use ledger_types::{BroadcasterId, CustomerId};
use serde::Serialize;
use serde_json::{json, Value};

use crate::{AppError, Ledger};

#[derive(Debug, Serialize)]
pub struct AccessExport {
    pub customer_id: CustomerId,
    pub exported_at: String,
    /// True once the customer was anonymized: no personal data remains to export.
    pub erased: bool,
    /// The current profile (registration with later changes applied).
    pub profile: Option<Value>,
    /// Every record in the customer's history, oldest first.
    pub history: Vec<Value>,
}

/// The export holds opened personal data: its strings are zeroized when it is
/// dropped (after it was written out), like every opened value.
impl Drop for AccessExport {
    fn drop(&mut self) {
        if let Some(p) = self.profile.as_mut() {
            zeroize_json(p);
        }
        for h in &mut self.history {
            zeroize_json(h);
        }
    }
}

/// Zeroizes every string in a JSON document (keys are field names, not data).
pub fn zeroize_json(v: &mut Value) {
    use zeroize::Zeroize as _;
    match v {
        Value::String(s) => s.zeroize(),
        Value::Array(a) => a.iter_mut().for_each(zeroize_json),
        Value::Object(m) => m.values_mut().for_each(zeroize_json),
        _ => {}
    }
}

fn opened<T>(o: Opened<T>) -> Option<T> {
    match o {
        Opened::Open(t) => Some(t),
        Opened::Erased => None,
    }
}

/// Everything held on customer `c`, as broadcaster `b` may see it.
pub async fn export_customer(
    ledger: &Ledger,
    b: BroadcasterId,
    c: CustomerId,
) -> Result<AccessExport, AppError> {
    let customer = ledger.customer(c).await?;
    if !customer.is_visible_to(b) {
        return Err(Refusal::NotFound.into());
    }
    let records = ledger.store().read_stream(&streams::customer(c), 1).await?;
    let kr = ledger.keyring();
    let mut profile: Option<Profile> = None;
    let mut history = Vec::with_capacity(records.len());
    let erased = customer.is_anonymized();
    for r in &records {
        let e = CustomerEvent::decode(&r.event_type, r.schema_version, &r.payload)?;
        let id = r.event_id;
        let entry = match &e {
            CustomerEvent::Registered(x) => {
                let p = match x.profile.as_sealed() {
                    Some(s) if !erased => opened(kr.open::<Profile>(c, id, s)?),
                    _ => None,
                };
                profile.clone_from(&p);
                json!({"type": "registered", "at": x.at.to_rfc3339(), "broadcaster_id": x.broadcaster_id,
                       "profile": p.as_ref().map(PlainProfile::from)})
            }
            CustomerEvent::ProfileUpdated(x) => {
                let p = match x.patch.as_sealed() {
                    Some(s) if !erased => opened(kr.open::<ProfilePatch>(c, id, s)?),
                    _ => None,
                };
                if let (Some(prof), Some(patch)) = (profile.as_mut(), p.as_ref()) {
                    patch.apply_to(prof);
                }
                json!({"type": "profile_updated", "at": x.at.to_rfc3339(), "broadcaster_id": x.broadcaster_id,
                       "changes": p.map(|p| without_password(serde_json::to_value(p).unwrap_or(Value::Null)))})
            }
            CustomerEvent::LoginRecorded(x) => {
                let l = match x.login.as_sealed() {
                    Some(s) if !erased => opened(kr.open::<LoginData>(c, id, s)?),
                    _ => None,
                };
                json!({"type": "login", "at": x.at.to_rfc3339(), "broadcaster_id": x.broadcaster_id, "ip_address": l.map(|l| l.ip.clone())})
            }
            CustomerEvent::PaymentCaptured(x) => {
                let d = match x.payer.as_sealed() {
                    Some(s) if !erased => opened(kr.open::<PaymentData>(c, id, s)?),
                    _ => None,
                };
                json!({"type": "payment", "at": x.at.to_rfc3339(), "payment_id": x.payment_id, "broadcaster_id": x.broadcaster_id,
                       "offer_id": x.offer_id, "subscription_id": x.subscription_id, "amount": x.amount,
                       "ip_address": d.and_then(|d| d.ip.clone())})
            }
            CustomerEvent::PaymentRefunded(x) => {
                json!({"type": "refund", "at": x.at.to_rfc3339(), "refund_id": x.refund_id,
                "payment_id": x.payment_id, "amount": x.amount})
            }
            CustomerEvent::SubscriptionStarted(x) => {
                json!({"type": "subscription_started", "at": x.at.to_rfc3339(),
                "subscription_id": x.subscription_id, "broadcaster_id": x.broadcaster_id, "offer_id": x.offer_id})
            }
            CustomerEvent::SubscriptionTerminated(x) => {
                json!({"type": "subscription_terminated", "at": x.at.to_rfc3339(),
                "subscription_id": x.subscription_id})
            }
            CustomerEvent::Linked(x) => {
                json!({"type": "linked", "at": x.at.to_rfc3339(), "broadcaster_id": x.broadcaster_id})
            }
            CustomerEvent::Anonymized(x) => {
                json!({"type": "anonymized", "at": x.at.to_rfc3339(), "request_id": x.request_id,
                "broadcaster_id": x.broadcaster_id, "categories_erased": x.categories})
            }
        };
        history.push(entry);
    }
    Ok(AccessExport {
        customer_id: c,
        exported_at: ledger_types::Timestamp::now().to_rfc3339(),
        erased,
        profile: profile
            .filter(|_| !erased)
            .map(|p| serde_json::to_value(PlainProfile::from(&p)).unwrap_or(Value::Null)),
        history,
    })
}

/// Password hashes are held but never exported: they are security material, and the
/// export says only that one is held.
fn without_password(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        if o.remove("password_hash").is_some_and(|h| !h.is_null()) {
            o.insert(
                "password".into(),
                json!("changed (hash held, not exported)"),
            );
        }
    }
    v
}

/// The profile as exported to its owner (the only place plaintext is serialized,
/// for the data subject's own copy).
#[derive(Serialize)]
struct PlainProfile<'a> {
    email: &'a str,
    first_name: &'a str,
    last_name: &'a str,
    address: Option<&'a str>,
    company_name: Option<&'a str>,
    phone_number: Option<&'a str>,
    custom_answers: Vec<(&'a str, &'a str)>,
    registration_ip: Option<&'a str>,
    password: &'static str,
}

impl<'a> From<&'a Profile> for PlainProfile<'a> {
    fn from(p: &'a Profile) -> Self {
        Self {
            email: &p.email,
            first_name: &p.first_name,
            last_name: &p.last_name,
            address: p.address.as_deref(),
            company_name: p.company_name.as_deref(),
            phone_number: p.phone_number.as_deref(),
            custom_answers: p
                .custom_answers
                .iter()
                .map(|a| (a.question.as_str(), a.answer.as_str()))
                .collect(),
            registration_ip: p.registration_ip.as_deref(),
            password: "a password hash is held (not exported)",
        }
    }
}
