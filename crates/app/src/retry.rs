//! Faithful retries of keyed writes whose saved answer was lost.
//!
//! A write sent with an idempotency key is answered from the saved answer on a
//! retry (ADR 0017). That answer is saved after the write commits, so a write can
//! commit without it: the process is killed in between, the server store fails
//! over, or the store settles a lost commit too late and answers 503 although the
//! events are in the log. The client's retry then ran the command again, and a
//! command with a client-chosen id (a payment, a subscription, a refund, a
//! registration whose id derives from the key) was refused with `*_EXISTS`: a 409
//! for a write that had in fact succeeded.
//!
//! So the events of a keyed write get ids derived from the request: the caller
//! (the API's idempotency layer) runs the request inside [`faithfully`] with a
//! [`RetryToken`] (broadcaster, key, fingerprint of method, path, query and body),
//! and [`Ledger::execute`](crate::Ledger::execute) names the `i`-th event of a
//! command `HMAC(customer data key, token, command, target id, i)`. Before it
//! decides, it looks for the first of those ids in the customer's stream: found,
//! the write committed before, and the retry is answered with the positions it was
//! first given, exactly as the saved answer would have said. The same key with
//! another body has another fingerprint, so other ids, and is decided afresh.
//!
//! Why keyed by the customer's data key: the fingerprint is a digest of a body
//! that holds personal data, and event ids stay in the log for good. Under the
//! data key, the id is a pseudorandom value while the customer exists and
//! unlinkable to anything once the key is destroyed by erasure. A customer whose
//! key is gone gets fresh ids (nothing personal can be written for it anyway).

use std::future::Future;

use ledger_command::CustomerCommand;
use ledger_crypto::Keyring;
use ledger_types::{CustomerId, EventId};

/// What identifies one keyed request: who sent it, its idempotency key, and the
/// fingerprint of what it asked.
#[derive(Clone)]
pub struct RetryToken {
    scope: [u8; 16],
    key: String,
    fingerprint: [u8; 32],
}

impl RetryToken {
    pub fn new(scope: [u8; 16], key: &str, fingerprint: [u8; 32]) -> Self {
        RetryToken {
            scope,
            key: key.to_owned(),
            fingerprint,
        }
    }
}

impl std::fmt::Debug for RetryToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RetryToken(<redacted>)")
    }
}

tokio::task_local! {
    static TOKEN: RetryToken;
}

/// Runs `f` (a request's handler) so that the commands it executes get event ids
/// derived from `token`. Work `f` spawns onto other tasks does not see it.
pub async fn faithfully<F: Future>(token: RetryToken, f: F) -> F::Output {
    TOKEN.scope(token, f).await
}

const DOMAIN: &[u8] = b"ledger.retry-event-id.v1";

/// The id of a `kind` of entity (`payment`, `subscription`, `refund`,
/// `erasure-request`) that a keyed request creates when the client chose none:
/// UUID v8 from SHA-256 over a domain tag, the kind, the caller and the key (not
/// the body, which may hold personal data). So a retry after a lost answer names
/// the same payment, which the aggregate already holds, instead of a second one.
/// `None` outside [`faithfully`].
pub fn derived_id(kind: &str) -> Option<uuid::Uuid> {
    use sha2::{Digest, Sha256};
    TOKEN
        .try_with(|t| {
            let mut h = Sha256::new();
            h.update(b"ledger.retry-entity-id.v1\0");
            h.update(kind.as_bytes());
            h.update([0]);
            h.update(t.scope);
            h.update(t.key.as_bytes());
            let digest: [u8; 32] = h.finalize().into();
            let mut b = [0u8; 16];
            b.copy_from_slice(&digest[..16]);
            uuid::Builder::from_custom_bytes(b).into_uuid()
        })
        .ok()
}

/// The id of the `index`-th event `cmd` appends for customer `c`, when running
/// inside [`faithfully`] and the customer's data key is live; `None` otherwise.
pub(crate) fn event_id(
    keyring: &Keyring,
    c: CustomerId,
    cmd: &CustomerCommand,
    index: u32,
) -> Option<EventId> {
    TOKEN
        .try_with(|t| {
            let mut m = Vec::with_capacity(16 + 32 + t.key.len() + 64);
            m.extend_from_slice(&t.scope);
            m.extend_from_slice(&t.fingerprint);
            m.extend_from_slice(&(t.key.len() as u32).to_be_bytes());
            m.extend_from_slice(t.key.as_bytes());
            m.extend_from_slice(cmd.name().as_bytes());
            m.push(0);
            if let Some(target) = target(cmd) {
                m.extend_from_slice(target);
            }
            m.extend_from_slice(&index.to_be_bytes());
            m
        })
        .ok()
        .and_then(|m| keyring.derive_id(c, DOMAIN, &m).ok())
        .map(|b| EventId::from_uuid(uuid::Builder::from_custom_bytes(b).into_uuid()))
}

/// The entity a command acts on, beside the customer: one request may run several
/// commands on one customer (terminate-and-erase terminates each subscription),
/// and a retry may run fewer of them, so each is named by what it acts on, not by
/// its order.
fn target(cmd: &CustomerCommand) -> Option<&[u8; 16]> {
    match cmd {
        CustomerCommand::StartSubscription {
            subscription_id, ..
        }
        | CustomerCommand::TerminateSubscription {
            subscription_id, ..
        } => Some(subscription_id.as_bytes()),
        CustomerCommand::CapturePayment { payment_id, .. } => Some(payment_id.as_bytes()),
        CustomerCommand::RefundPayment { refund_id, .. } => Some(refund_id.as_bytes()),
        CustomerCommand::Register { broadcaster_id, .. }
        | CustomerCommand::Link { broadcaster_id, .. } => Some(broadcaster_id.as_bytes()),
        CustomerCommand::Anonymize { request_id, .. }
        | CustomerCommand::AnonymizeAsOperator { request_id, .. }
        | CustomerCommand::ReapplyErasure { request_id, .. } => Some(request_id.as_bytes()),
        CustomerCommand::UpdateProfile { .. } | CustomerCommand::RecordLogin { .. } => None,
    }
}
