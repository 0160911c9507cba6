//! Request and response bodies: the API's JSON, documented in the OpenAPI document.
//!
//! Requests deny unknown fields. Types that hold personal data have a redacted
//! `Debug`, so a `{:?}` in a span or a panic message cannot print them. Ids are
//! strings on the wire, documented as canonical UUIDs and parsed by the handlers
//! (`INVALID_ID` for anything else). The lengths, counts and amounts documented
//! here are the ones `ledger_command`'s validation enforces; the
//! `documented_limits_are_the_enforced_ones` test keeps the two equal.

use std::fmt;

use ledger_app::read::CustomerSummary;
use ledger_app::ErasureReceipt;
use ledger_command::ErasureRequest;
use ledger_events::{Actor, Answer, PersonalCategory, Precondition, Profile};
use ledger_projections::{ErasureRecord, RevenueTotals, SubscriptionView};
use ledger_types::{BroadcasterId, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::money::Total;

macro_rules! redacted_debug {
    ($($t:ty),*) => {$(
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($t), "(<redacted>)"))
            }
        }
    )*};
}

fn rfc3339(t: Timestamp) -> String {
    t.to_rfc3339()
}

// ------------------------------------------------------------------ requests

/// Request bodies are JSON objects, at every level. serde's derived `Deserialize`
/// also reads a struct from a JSON array of its field values (`[]` for a struct
/// whose fields all have defaults, `["a", "b"]` for an answer), which the schema
/// forbids. So each request type derives its deserializer as an inherent function
/// (`#[serde(remote = "Self")]`) and this macro implements the trait with a visitor
/// that accepts a map only; field errors keep their JSON paths.
macro_rules! objects_only {
    ($($t:ident),* $(,)?) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Object;
                impl<'de> serde::de::Visitor<'de> for Object {
                    type Value = $t;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("a JSON object")
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(
                        self,
                        map: A,
                    ) -> Result<$t, A::Error> {
                        $t::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    }
                }
                d.deserialize_map(Object)
            }
        }
    )*};
}

/// The trait `Serialize` for request types that are also sent (their derived
/// serializer is inherent, see [`objects_only`]).
macro_rules! serialize_inherent {
    ($($t:ident),* $(,)?) => {$(
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                $t::serialize(self, s)
            }
        }
    )*};
}

objects_only!(
    AnswerDto,
    RegisterCustomerRequest,
    UpdateProfileRequest,
    RecordLoginRequest,
    StartSubscriptionRequest,
    MoneyDto,
    CapturePaymentRequest,
    RefundPaymentRequest,
    CreateBroadcasterRequest,
    CreateApiKeyRequest,
    SearchRequest,
    FileErasureRequest,
    TerminateAndEraseRequest,
    ExtendErasureRequest,
    OperatorAnonymizeRequest,
    SubmitErasureJob,
    CreateWebhookEndpoint,
    UpdateWebhookEndpoint,
    RedeliverRequest,
);
serialize_inherent!(AnswerDto, MoneyDto);

/// One custom question answered at registration (both are personal data). No
/// control characters.
#[derive(Clone, Serialize, Deserialize, ToSchema, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
#[serde(deny_unknown_fields, remote = "Self")]
pub struct AnswerDto {
    #[schema(max_length = 2000)]
    pub question: String,
    #[schema(max_length = 2000)]
    pub answer: String,
}

/// A new customer's profile. The customer id is chosen by the server. No text
/// field may hold a control character (U+0000 to U+001F, U+007F to U+009F).
#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, remote = "Self")]
pub struct RegisterCustomerRequest {
    /// One `@` between a non-empty local part and domain; at most 254 characters.
    #[schema(min_length = 3, max_length = 254)]
    pub email: String,
    /// The password as a hash computed by the platform (never a password).
    #[schema(min_length = 1, max_length = 2000)]
    pub password_hash: String,
    /// Not blank.
    #[schema(min_length = 1, max_length = 200)]
    pub first_name: String,
    /// Not blank.
    #[schema(min_length = 1, max_length = 200)]
    pub last_name: String,
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub address: Option<String>,
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub company_name: Option<String>,
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub phone_number: Option<String>,
    /// At most 50.
    #[serde(default)]
    #[schema(max_items = 50)]
    pub custom_answers: Vec<AnswerDto>,
    /// An IPv4 or IPv6 address.
    #[serde(default)]
    #[schema(max_length = 45)]
    pub registration_ip: Option<String>,
}

impl RegisterCustomerRequest {
    pub fn into_profile(self) -> Profile {
        Profile {
            email: self.email,
            password_hash: self.password_hash,
            first_name: self.first_name,
            last_name: self.last_name,
            address: self.address,
            company_name: self.company_name,
            phone_number: self.phone_number,
            custom_answers: self
                .custom_answers
                .into_iter()
                .map(|a| Answer {
                    question: a.question.clone(),
                    answer: a.answer.clone(),
                })
                .collect(),
            registration_ip: self.registration_ip,
        }
    }
}

/// A change of profile: absent fields stay as they are; at least one must be
/// given. The limits of [`RegisterCustomerRequest`] apply.
#[derive(Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, remote = "Self")]
pub struct UpdateProfileRequest {
    #[schema(min_length = 3, max_length = 254)]
    pub email: Option<String>,
    #[schema(min_length = 1, max_length = 2000)]
    pub password_hash: Option<String>,
    #[schema(min_length = 1, max_length = 200)]
    pub first_name: Option<String>,
    #[schema(min_length = 1, max_length = 200)]
    pub last_name: Option<String>,
    #[schema(max_length = 2000)]
    pub address: Option<String>,
    #[schema(max_length = 2000)]
    pub company_name: Option<String>,
    #[schema(max_length = 2000)]
    pub phone_number: Option<String>,
}

#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, remote = "Self")]
pub struct RecordLoginRequest {
    /// The IP address (v4 or v6) the customer logged in from.
    #[schema(min_length = 2, max_length = 45)]
    pub ip: String,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, remote = "Self")]
pub struct StartSubscriptionRequest {
    /// Client-chosen id (canonical UUID) to make retries safe; a new one if absent.
    #[serde(default)]
    #[schema(schema_with = crate::money::optional_uuid_schema)]
    pub subscription_id: Option<String>,
    #[schema(pattern = "^[a-z0-9_-]{1,64}$", min_length = 1, max_length = 64)]
    pub offer_id: String,
    /// When the subscription ends by itself (RFC 3339, after now): it is then
    /// terminated, and an erasure waiting for it goes ahead.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ends_at: Option<String>,
}

/// An amount in integer minor units (cents, pence, yen) and an ISO 4217 currency.
/// Responses give each currency's `exponent` (minor-unit digits) beside totals.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, remote = "Self")]
pub struct MoneyDto {
    #[serde(deserialize_with = "crate::money::whole_i64")]
    #[schema(schema_with = crate::money::amount_schema)]
    pub minor: i64,
    #[schema(schema_with = crate::money::currency_schema)]
    pub currency: String,
}

#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, remote = "Self")]
pub struct CapturePaymentRequest {
    /// Client-chosen id (canonical UUID) to make retries safe; a new one if absent.
    #[serde(default)]
    #[schema(schema_with = crate::money::optional_uuid_schema)]
    pub payment_id: Option<String>,
    #[schema(pattern = "^[a-z0-9_-]{1,64}$", min_length = 1, max_length = 64)]
    pub offer_id: String,
    #[serde(default)]
    #[schema(schema_with = crate::money::optional_uuid_schema)]
    pub subscription_id: Option<String>,
    pub amount: MoneyDto,
    /// The payer's IP address (personal data; sealed).
    #[serde(default)]
    #[schema(max_length = 45)]
    pub payer_ip: Option<String>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, remote = "Self")]
pub struct RefundPaymentRequest {
    /// Client-chosen id (canonical UUID) to make retries safe; a new one if absent.
    #[serde(default)]
    #[schema(schema_with = crate::money::optional_uuid_schema)]
    pub refund_id: Option<String>,
    pub amount: MoneyDto,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, remote = "Self")]
pub struct CreateBroadcasterRequest {
    /// A canonical UUID; a new one if absent.
    #[serde(default)]
    #[schema(schema_with = crate::money::optional_uuid_schema)]
    pub broadcaster_id: Option<String>,
    /// The broadcaster's business name: not blank, no control characters.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// `white_label` or `shared`.
    #[schema(pattern = "^(white_label|shared)$")]
    pub integration: String,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, remote = "Self")]
pub struct CreateApiKeyRequest {
    /// A note for operators (not secret, not personal); no control characters.
    #[serde(default)]
    #[schema(max_length = 200)]
    pub label: Option<String>,
}

redacted_debug!(
    AnswerDto,
    RegisterCustomerRequest,
    UpdateProfileRequest,
    RecordLoginRequest,
    CapturePaymentRequest
);

// ------------------------------------------------------------------ responses

/// What a write did. Holds ids and positions only.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct WriteResult {
    pub customer_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refund_id: Option<String>,
    /// Events appended (0 when the command changed nothing).
    pub events_appended: usize,
    /// Log position of the last event appended, if any.
    pub position: Option<u64>,
    /// The customer stream's version after the write.
    pub stream_version: u64,
}

impl WriteResult {
    /// The result of a command on customer `c`; add the ids it created with
    /// struct update syntax.
    pub fn of(c: ledger_types::CustomerId, ex: &ledger_app::Executed) -> Self {
        Self {
            customer_id: c.to_string(),
            subscription_id: None,
            payment_id: None,
            refund_id: None,
            events_appended: ex.appended,
            position: ex.last_position,
            stream_version: ex.stream_version,
        }
    }
}

/// The opened profile, as served to the customer's broadcaster. The password hash
/// is never served. Zeroized when dropped, like every opened value.
#[derive(Clone, Serialize, ToSchema, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
pub struct ProfileDto {
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub address: Option<String>,
    pub company_name: Option<String>,
    pub phone_number: Option<String>,
    pub custom_answers: Vec<AnswerDto>,
    pub registration_ip: Option<String>,
}

redacted_debug!(ProfileDto);
redacted_debug!(SearchRequest);

impl From<&Profile> for ProfileDto {
    fn from(p: &Profile) -> Self {
        Self {
            email: p.email.clone(),
            first_name: p.first_name.clone(),
            last_name: p.last_name.clone(),
            address: p.address.clone(),
            company_name: p.company_name.clone(),
            phone_number: p.phone_number.clone(),
            custom_answers: p
                .custom_answers
                .iter()
                .map(|a| AnswerDto {
                    question: a.question.clone(),
                    answer: a.answer.clone(),
                })
                .collect(),
            registration_ip: p.registration_ip.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SubscriptionDto {
    pub subscription_id: String,
    pub offer_id: String,
    pub active: bool,
    pub started_at: String,
    pub terminated_at: Option<String>,
    /// Whether the calling broadcaster started it (only it can terminate it).
    pub yours: bool,
}

impl SubscriptionDto {
    pub fn of(s: &SubscriptionView, caller: BroadcasterId) -> Self {
        Self {
            subscription_id: s.subscription_id.to_string(),
            offer_id: s.offer_id.to_string(),
            active: s.active,
            started_at: rfc3339(s.started_at),
            terminated_at: s.terminated_at.map(rfc3339),
            yours: s.broadcaster_id == caller,
        }
    }
}

/// One currency's totals, in minor units; `exponent` says how many of their digits
/// are the minor unit.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CurrencyTotalsDto {
    pub currency: String,
    #[schema(schema_with = crate::money::exponent_schema)]
    pub exponent: Option<u8>,
    pub captured: Total,
    pub refunded: Total,
    pub net: Total,
}

/// Where and when the customer was erased (a tombstone).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TombstoneDto {
    pub erased_at: String,
    pub request_id: String,
    pub position: u64,
}

/// The customer summary panel. `profile` is null on a tombstone.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CustomerSummaryDto {
    pub customer_id: String,
    /// `active` or `erased`.
    pub status: &'static str,
    /// Whether the account is linked to more than one broadcaster.
    pub shared: bool,
    pub created_at: String,
    pub updated_at: String,
    pub profile: Option<ProfileDto>,
    pub subscriptions: Vec<SubscriptionDto>,
    pub payment_count: u64,
    pub refund_count: u64,
    pub totals: Vec<CurrencyTotalsDto>,
    pub tombstone: Option<TombstoneDto>,
}

impl CustomerSummaryDto {
    pub fn of(s: &CustomerSummary, caller: BroadcasterId) -> Self {
        let v = &s.view;
        Self {
            customer_id: v.customer_id.to_string(),
            status: if v.is_tombstone() { "erased" } else { "active" },
            shared: v.broadcasters.len() > 1,
            created_at: rfc3339(v.created_at),
            updated_at: rfc3339(v.updated_at),
            profile: if v.is_tombstone() {
                None
            } else {
                s.profile.as_ref().map(ProfileDto::from)
            },
            subscriptions: v
                .subscriptions
                .iter()
                .map(|x| SubscriptionDto::of(x, caller))
                .collect(),
            payment_count: v.payment_count,
            refund_count: v.refund_count,
            totals: v
                .totals
                .iter()
                .map(|(c, t)| CurrencyTotalsDto {
                    currency: c.to_string(),
                    exponent: c.exponent(),
                    captured: Total::new(t.captured),
                    refunded: Total::new(t.refunded),
                    net: Total::new(t.net),
                })
                .collect(),
            tombstone: v.erasure.as_ref().map(|e| TombstoneDto {
                erased_at: rfc3339(e.at),
                request_id: e.request_id.to_string(),
                position: e.position,
            }),
        }
    }
}

/// A search sent in the body, so that the query (often an email address or a name)
/// stays out of URLs, and with them out of proxy logs and browser history. Its
/// `Debug` is redacted: the query is personal data.
#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, remote = "Self")]
pub struct SearchRequest {
    /// A customer id, an email address (exact, case-insensitive) or a name prefix:
    /// not blank, no control characters.
    #[schema(min_length = 1, max_length = 254)]
    pub q: String,
    /// Page size, 1 to 100 (default 20).
    #[serde(default, deserialize_with = "crate::money::whole_u64_opt")]
    #[schema(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
    /// `next_cursor` of the previous page.
    #[schema(pattern = "^o(10000|[0-9]{1,4})$")]
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CustomerPage {
    pub items: Vec<CustomerSummaryDto>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SubscriptionList {
    pub items: Vec<SubscriptionDto>,
}

/// One reason an erasure would be refused.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BlockerDto {
    /// `NOT_WHITE_LABEL`, `SHARED_ACROSS_BROADCASTERS` or `ACTIVE_SUBSCRIPTION`.
    pub code: String,
    pub message: String,
    /// For `ACTIVE_SUBSCRIPTION`: the subscriptions to terminate first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscriptions: Option<Vec<String>>,
}

impl BlockerDto {
    pub fn of(r: &ledger_command::Refusal) -> Self {
        Self {
            code: r.code().to_owned(),
            message: r.to_string(),
            subscriptions: match r {
                ledger_command::Refusal::ActiveSubscription { subscriptions } => {
                    Some(subscriptions.iter().map(ToString::to_string).collect())
                }
                _ => None,
            },
        }
    }
}

fn category_names(c: &[PersonalCategory]) -> Vec<String> {
    c.iter()
        .map(|c| {
            serde_json::to_value(c)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        })
        .collect()
}

fn precondition_names(p: &[Precondition]) -> Vec<String> {
    p.iter()
        .map(|c| {
            serde_json::to_value(c)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        })
        .collect()
}

/// A dry run of an erasure: what would be erased and what blocks it. Changes nothing.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErasurePreview {
    pub customer_id: String,
    /// True when an erasure request now would succeed.
    pub erasable: bool,
    /// True when the customer was erased already (a request returns the receipt).
    pub already_erased: bool,
    /// The categories of personal data an erasure removes.
    pub categories: Vec<String>,
    pub blockers: Vec<BlockerDto>,
}

impl ErasurePreview {
    pub fn new(
        customer_id: String,
        already_erased: bool,
        blockers: &[ledger_command::Refusal],
    ) -> Self {
        Self {
            customer_id,
            erasable: !already_erased && blockers.is_empty(),
            already_erased,
            categories: category_names(&PersonalCategory::ALL),
            blockers: blockers.iter().map(BlockerDto::of).collect(),
        }
    }
}

/// The proof of an erasure. Holds no personal data.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReceiptDto {
    pub request_id: String,
    pub customer_id: String,
    pub broadcaster_id: String,
    pub at: String,
    pub categories_erased: Vec<String>,
    pub preconditions_checked: Vec<String>,
    /// Log position of the `CustomerAnonymized` event.
    pub event_position: u64,
    /// Who erased: the broadcaster (with its API key's id), or the platform
    /// operator (`kind: operator`, "erased by the platform operator").
    pub erased_by: ActorDto,
    pub data_key_destroyed: bool,
    /// The erasing broadcaster's revenue digest just before and just after the
    /// erasure; equal, which proves no revenue figure changed.
    pub revenue_digest_before: Option<String>,
    pub revenue_digest_after: Option<String>,
    /// The proof that the erasure is in the log (ADR 0014), checkable offline with
    /// the operator's public key (`ledger audit verify-receipt`): the tree size of
    /// `signed_tree_head`, ...
    pub tree_size: Option<u64>,
    /// ... the record's leaf index (`event_position - 1`), ...
    pub leaf_index: Option<u64>,
    /// ... its RFC 6962 audit path (hex, leaf level first), ...
    pub inclusion_proof: Option<Vec<String>>,
    /// ... its canonical bytes (`ledger.record.v1`, base64; ids only, no personal
    /// data), whose leaf hash is `SHA-256(0x00 || bytes)`, ...
    pub leaf_data: Option<String>,
    /// ... and the signed tree head the proof leads to. All null only if the
    /// proof could not be made at the time (the erasure itself is committed).
    pub signed_tree_head: Option<crate::transparency::SignedTreeHeadDto>,
}

impl ReceiptDto {
    /// Adds the Merkle proof of the erasure record to the receipt.
    pub fn with_proof(mut self, p: &ledger_app::transparency::ReceiptProof) -> Self {
        self.tree_size = Some(p.tree_size);
        self.leaf_index = Some(p.leaf_index);
        self.inclusion_proof = Some(p.inclusion_proof.iter().map(|h| h.to_hex()).collect());
        self.leaf_data = Some(p.leaf_data.clone());
        self.signed_tree_head = Some((&p.signed_tree_head).into());
        self
    }

    pub fn of(r: &ErasureReceipt, record: Option<&ErasureRecord>) -> Self {
        Self {
            request_id: r.request_id.to_string(),
            customer_id: r.customer_id.to_string(),
            broadcaster_id: r.broadcaster_id.to_string(),
            at: r.at.clone(),
            categories_erased: category_names(&r.categories_erased),
            preconditions_checked: precondition_names(&r.preconditions_checked),
            event_position: r.event_position,
            erased_by: ActorDto::from(r.actor),
            data_key_destroyed: r.data_key_destroyed,
            revenue_digest_before: record.map(|x| x.revenue_digest_before.clone()),
            revenue_digest_after: record.map(|x| x.revenue_digest_after.clone()),
            tree_size: None,
            leaf_index: None,
            inclusion_proof: None,
            leaf_data: None,
            signed_tree_head: None,
        }
    }
}

/// One erasure as the erasures projection records it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErasureRecordDto {
    pub request_id: String,
    pub customer_id: String,
    pub at: String,
    pub categories_erased: Vec<String>,
    pub preconditions_checked: Vec<String>,
    pub position: u64,
    pub revenue_digest_before: String,
    pub revenue_digest_after: String,
    /// Who erased. A receipt of an erasure by the platform operator is listed for
    /// every broadcaster the account was linked to.
    pub erased_by: ActorDto,
}

impl From<&ErasureRecord> for ErasureRecordDto {
    fn from(r: &ErasureRecord) -> Self {
        Self {
            request_id: r.request_id.to_string(),
            customer_id: r.customer_id.to_string(),
            at: rfc3339(r.at),
            categories_erased: category_names(&r.categories),
            preconditions_checked: precondition_names(&r.preconditions),
            position: r.position,
            revenue_digest_before: r.revenue_digest_before.clone(),
            revenue_digest_after: r.revenue_digest_after.clone(),
            erased_by: ActorDto::from(r.actor.unwrap_or(Actor::Broadcaster {
                broadcaster_id: r.broadcaster_id,
                key_id: None,
            })),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErasureList {
    pub items: Vec<ErasureRecordDto>,
    /// The cursor of the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Who acted on an erasure or an erasure request.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ActorDto {
    /// `broadcaster` or `operator` (the platform operator, with the admin key).
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broadcaster_id: Option<String>,
    /// The id of the broadcaster's API key (absent when the operator's CLI acted
    /// for the broadcaster).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
}

impl From<Actor> for ActorDto {
    fn from(a: Actor) -> Self {
        match a {
            Actor::Broadcaster {
                broadcaster_id,
                key_id,
            } => Self {
                kind: "broadcaster".into(),
                broadcaster_id: Some(broadcaster_id.to_string()),
                key_id: key_id.map(|k| k.to_string()),
            },
            Actor::Operator => Self {
                kind: "operator".into(),
                broadcaster_id: None,
                key_id: None,
            },
        }
    }
}

/// File an erasure request for a customer (GDPR Art. 17). The request is due one
/// month after receipt: now, or `received_at` when the data subject asked
/// earlier (a letter or an email to support entered later).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, remote = "Self")]
pub struct FileErasureRequest {
    #[schema(schema_with = crate::money::uuid_schema)]
    pub customer_id: String,
    /// Client-chosen id (canonical UUID) to make retries safe; a new one if absent.
    #[serde(default)]
    #[schema(schema_with = crate::money::optional_uuid_schema)]
    pub request_id: Option<String>,
    /// A ticket or case number to match the request with your records: 1 to 64
    /// characters of `A-Z a-z 0-9 . _ - : / #`. Never personal data: no spaces,
    /// `@` or `+`, so no name, email address or phone number fits.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9._:/#-]{1,64}$", min_length = 1, max_length = 64)]
    pub reference: Option<String>,
    /// When the data subject's request reached you (RFC 3339), if before now: the
    /// due date counts from it, so a request entered late may be due soon or
    /// overdue at once. At most a year ago; a time up to 5 minutes ahead of the
    /// server's clock is taken as now. Absent: now.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub received_at: Option<String>,
}

/// Submit a bulk erasure job: every customer becomes an erasure request of its
/// own (due one month after receipt), filed by the runner in the background.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, remote = "Self")]
pub struct SubmitErasureJob {
    /// 1 to 10,000 distinct customer ids (canonical UUIDs). More, a duplicate or a
    /// malformed id refuses the whole job, with nothing recorded.
    #[schema(schema_with = crate::jobs::customer_ids_schema)]
    pub customer_ids: Vec<String>,
    /// Client-chosen id (canonical UUID) to make retries safe: the same id with the
    /// same customers answers the same job; a new one if absent.
    #[serde(default)]
    #[schema(schema_with = crate::money::optional_uuid_schema)]
    pub job_id: Option<String>,
    /// A ticket or case number, as for an erasure request: 1 to 64 characters of
    /// `A-Z a-z 0-9 . _ - : / #`, never personal data. Every request of the job
    /// carries it.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9._:/#-]{1,64}$", min_length = 1, max_length = 64)]
    pub reference: Option<String>,
}

/// "Terminate and erase": the optional request id and reference of the erasure
/// request it files.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, remote = "Self")]
pub struct TerminateAndEraseRequest {
    #[serde(default)]
    #[schema(schema_with = crate::money::optional_uuid_schema)]
    pub request_id: Option<String>,
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9._:/#-]{1,64}$", min_length = 1, max_length = 64)]
    pub reference: Option<String>,
}

/// Move a request's due date (once, at most two months past the original one).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, remote = "Self")]
pub struct ExtendErasureRequest {
    /// The new due date (RFC 3339), after the current one and at most two months
    /// after the original one.
    #[schema(format = DateTime)]
    pub due_at: String,
    /// `COMPLEXITY` or `NUMBER_OF_REQUESTS` (GDPR Art. 12(3)).
    #[schema(pattern = "^(COMPLEXITY|NUMBER_OF_REQUESTS)$")]
    pub reason: String,
}

/// The platform operator's erasure of any customer.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, remote = "Self")]
pub struct OperatorAnonymizeRequest {
    /// The operator's ticket or case number (required; never personal data, see
    /// `FileErasureRequest.reference`).
    #[schema(pattern = "^[A-Za-z0-9._:/#-]{1,64}$", min_length = 1, max_length = 64)]
    pub reference: String,
    /// Client-chosen request id (canonical UUID); a new one if absent.
    #[serde(default)]
    #[schema(schema_with = crate::money::optional_uuid_schema)]
    pub request_id: Option<String>,
}

/// An erasure request and where it stands.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErasureRequestDto {
    pub request_id: String,
    pub customer_id: String,
    /// `open`, `deferred`, `completed`, `refused` or `cancelled`.
    pub status: String,
    pub requested_by: ActorDto,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub received_at: String,
    /// The due date now (the extended one, if extended).
    pub due_at: String,
    /// Past its due date and not ended.
    pub overdue: bool,
    /// The extension's reason (`COMPLEXITY` or `NUMBER_OF_REQUESTS`), if extended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extension_reason: Option<String>,
    /// While deferred: the blocker codes (`ACTIVE_SUBSCRIPTION`) ...
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blockers: Vec<String>,
    /// ... and the subscriptions the erasure waits for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub waiting_for: Vec<String>,
    /// When refused: the permanent reason (`NOT_WHITE_LABEL`,
    /// `SHARED_ACROSS_BROADCASTERS`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    /// When completed: the log position of the `CustomerAnonymized` event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anonymized_position: Option<u64>,
    /// The erasure receipt, on the answer that completed the request or when it is
    /// asked for alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<ReceiptDto>,
}

impl ErasureRequestDto {
    /// `None` for a request that was never received.
    pub fn of(r: &ErasureRequest, now: Timestamp) -> Option<Self> {
        let q = r.requested()?;
        let deferred = r
            .deferred()
            .filter(|_| r.status() == Some(ledger_command::RequestStatus::Deferred));
        Some(Self {
            request_id: q.request_id.to_string(),
            customer_id: q.customer_id.to_string(),
            status: r.status().map(|s| s.as_str()).unwrap_or("open").to_owned(),
            requested_by: ActorDto::from(q.requested_by),
            reference: q.reference.as_ref().map(ToString::to_string),
            received_at: rfc3339(q.received_at),
            due_at: rfc3339(r.due_at().unwrap_or(q.due_at)),
            overdue: r.is_overdue(now),
            extension_reason: r.extended().map(|e| code_name(&e.reason)),
            blockers: deferred
                .map(|d| d.blockers.iter().map(|b| b.code().to_owned()).collect())
                .unwrap_or_default(),
            waiting_for: deferred
                .map(|d| d.subscriptions.iter().map(ToString::to_string).collect())
                .unwrap_or_default(),
            refusal_code: r.refused().map(|e| e.code.code().to_owned()),
            ended_at: r.ended_at().map(rfc3339),
            anonymized_position: r.completed().map(|c| c.anonymized_position),
            receipt: None,
        })
    }
}

fn code_name<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// One page of erasure requests, oldest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErasureRequestPage {
    pub items: Vec<ErasureRequestDto>,
    /// The cursor of the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RevenueRow {
    /// UTC day `YYYY-MM-DD` (when grouped by day).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub day: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offer_id: Option<String>,
    pub currency: String,
    #[schema(schema_with = crate::money::exponent_schema)]
    pub exponent: Option<u8>,
    pub gross_captured: Total,
    pub refunded: Total,
    pub net: Total,
    pub payment_count: u64,
    pub refund_count: u64,
}

impl RevenueRow {
    pub fn of(
        day: Option<String>,
        offer_id: Option<String>,
        currency: ledger_types::Currency,
        t: &RevenueTotals,
    ) -> Self {
        Self {
            day,
            offer_id,
            currency: currency.to_string(),
            exponent: currency.exponent(),
            gross_captured: Total::new(t.gross_captured),
            refunded: Total::new(t.refunded),
            net: Total::new(t.net),
            payment_count: t.payment_count,
            refund_count: t.refund_count,
        }
    }
}

/// The caller's revenue for a selection, with the digest of its canonical form.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RevenueResponse {
    /// sha256 of the canonical revenue rows of the selection.
    pub digest: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub currency: Option<String>,
    pub group_by: String,
    /// One row per currency.
    pub totals: Vec<RevenueRow>,
    /// One row per group (empty when `group_by` is `none`).
    pub groups: Vec<RevenueRow>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BroadcasterDto {
    pub broadcaster_id: String,
    pub name: String,
    pub integration: String,
}

/// A new API key. `token` is shown once and never stored.
#[derive(Clone, Serialize, ToSchema)]
pub struct ApiKeyCreated {
    pub key_id: String,
    pub broadcaster_id: String,
    pub issued_at: String,
    pub token: String,
}

impl fmt::Debug for ApiKeyCreated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyCreated")
            .field("key_id", &self.key_id)
            .field("broadcaster_id", &self.broadcaster_id)
            .field("token", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApiKeyDto {
    pub key_id: String,
    pub broadcaster_id: String,
    pub issued_at: String,
    pub revoked: bool,
    pub label: Option<String>,
}

impl From<&crate::auth::KeyInfo> for ApiKeyDto {
    fn from(k: &crate::auth::KeyInfo) -> Self {
        Self {
            key_id: k.key_id.to_string(),
            broadcaster_id: k.broadcaster_id.to_string(),
            issued_at: rfc3339(k.issued_at),
            revoked: k.revoked,
            label: k.label.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    pub status: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: String,
    pub log_head: u64,
    pub read_model_position: u64,
    pub lag: u64,
    /// Erasures whose data key destruction has not completed yet.
    pub pending_destructions: u64,
    /// Seconds the oldest pending destruction has waited (0 if none).
    pub oldest_pending_destruction_seconds: f64,
    /// Every part that is failing now; empty when ready.
    pub failing: Vec<FailingPart>,
    /// The JetStream publisher (`serve --publish`), when one runs. Its state never
    /// makes the service not ready: it catches up from its checkpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publisher: Option<PublisherStatus>,
}

/// How the outbound publisher is doing.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PublisherStatus {
    /// `connecting`, `publishing` (or waiting for commits) or `retrying`.
    pub state: String,
    /// The last position the destination acknowledged (its durable checkpoint).
    pub position: u64,
    /// Events of the log not yet acknowledged: `log_head - position`.
    pub lag: u64,
    /// The code of the last failure while not publishing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A part of the service that makes it not ready.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FailingPart {
    /// `event_store`, `key_store`, `projector`, `reconciler`, `writes`, `storage`,
    /// `read_model` (too far behind) or `destructions` (one pending too long).
    pub part: String,
    /// The error code, e.g. `STORE_UNAVAILABLE`, `STORAGE_FULL`.
    pub code: String,
    /// How long it has failed, in seconds (0 for a probe made just now).
    pub seconds: f64,
}

/// A JSON document whose shape is described in prose (export, audit report).
pub type Document = Value;

/// A field that may be absent (leave as is), `null` (clear) or a value.
fn double_option<'de, T: Deserialize<'de>, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A new webhook endpoint. Its signing secret is in the answer, and only there.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, remote = "Self")]
pub struct CreateWebhookEndpoint {
    /// Where to POST: an absolute `https` URL of at most 2,048 characters, without
    /// credentials or fragment, whose host is public. A URL of this form that the
    /// server still refuses is `409`: `WEBHOOK_URL_NOT_HTTPS` (`http` is taken
    /// only when the server runs with `--allow-private-webhooks`),
    /// `WEBHOOK_URL_NOT_PUBLIC` (loopback, private, link-local, ... addresses,
    /// likewise), `INVALID_WEBHOOK_URL` (credentials, a fragment, a bad host).
    #[schema(pattern = "^https?://[^\\s/?#]+[^\\s]*$", max_length = 2048)]
    pub url: String,
    /// Only these event types (docs/events.md), 1 to 15 of them (a type named
    /// twice counts once); absent or null: every type, those added later included.
    #[serde(default)]
    #[schema(value_type = Option<Vec<ledger_public_events::EventType>>, min_items = 1, max_items = 15)]
    pub event_types: Option<Vec<String>>,
    /// A note for yourself (at most 200 characters, no control characters; not
    /// personal data).
    #[serde(default)]
    #[schema(pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$", max_length = 200)]
    pub description: Option<String>,
}

/// A change to a webhook endpoint: absent fields stay as they are.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, remote = "Self")]
pub struct UpdateWebhookEndpoint {
    /// As at creation (`409` for a URL of the right form the server refuses).
    #[serde(default)]
    #[schema(pattern = "^https?://[^\\s/?#]+[^\\s]*$", max_length = 2048)]
    pub url: Option<String>,
    /// `null`: every event type.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Vec<ledger_public_events::EventType>>, min_items = 1, max_items = 15)]
    pub event_types: Option<Option<Vec<String>>>,
    /// `null`: no description.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$", max_length = 200)]
    pub description: Option<Option<String>>,
    /// `true` re-enables an endpoint (one the ledger disabled after failing too
    /// long resumes from where it stopped); `false` pauses its deliveries.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// What to deliver again. Messages keep their `webhook-id`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, remote = "Self")]
pub struct RedeliverRequest {
    /// A log position (each message's body carries its own).
    #[serde(deserialize_with = "crate::money::whole_u64")]
    #[schema(minimum = 0, maximum = 9_007_199_254_740_991_u64)]
    pub position: u64,
    /// `one` (default): the message at `position`, once more; `after`: every
    /// message after `position` again (the endpoint's checkpoint moves back
    /// there), then on as before. A position the log does not hold yet (or 0 with
    /// `one`) is `409 POSITION_NOT_IN_LOG`.
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = "^(one|after)$")]
    pub mode: Option<String>,
}
