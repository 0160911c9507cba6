//! The proof an erasure receipt carries, and its offline check.
//!
//! A receipt names the position of its `CustomerAnonymized` record. To show a data
//! subject or a regulator, without the log, that this erasure is in the log the
//! operator published, the receipt adds:
//!
//! - `leaf_data`: the record's canonical bytes (base64), which hold ids, the erasure's
//!   categories and preconditions, and nothing personal;
//! - `leaf_index` (position − 1), `tree_size` and `inclusion_proof` (hex hashes,
//!   leaf level first, RFC 6962 §2.1.1);
//! - `signed_tree_head`: the signed head of that size.
//!
//! [`verify_receipt`] checks the head's signature with the operator's public key,
//! that the leaf is this receipt's erasure (type, stream, position, ids), and that
//! the proof leads from `SHA-256(0x00 || leaf_data)` to the signed root.

use base64::Engine as _;
use ledger_events::{streams, CustomerEvent, DomainEvent};
use ledger_merkle::{leaf_hash, Hash, InclusionProof};
use ledger_store::chain::parse_canonical;
use serde::{Deserialize, Serialize};

use super::head::{PublicKey, SignedTreeHead};
use crate::audit::Problem;
use crate::export::problem;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// What a receipt adds to prove its erasure is in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptProof {
    pub tree_size: u64,
    pub leaf_index: u64,
    pub inclusion_proof: Vec<Hash>,
    /// The record's canonical bytes (`ledger.record.v1`), base64 (standard, padded).
    pub leaf_data: String,
    pub signed_tree_head: SignedTreeHead,
}

impl ReceiptProof {
    pub fn new(leaf_data: &[u8], proof: InclusionProof, signed_tree_head: SignedTreeHead) -> Self {
        Self {
            tree_size: proof.tree_size,
            leaf_index: proof.leaf_index,
            inclusion_proof: proof.inclusion_path,
            leaf_data: B64.encode(leaf_data),
            signed_tree_head,
        }
    }
}

/// The receipt fields the check reads (others are ignored).
#[derive(Debug, Deserialize)]
struct Claims {
    request_id: Option<String>,
    customer_id: Option<String>,
    broadcaster_id: Option<String>,
    event_position: Option<u64>,
    tree_size: Option<u64>,
    leaf_index: Option<u64>,
    inclusion_proof: Option<Vec<String>>,
    leaf_data: Option<String>,
    signed_tree_head: Option<serde_json::Value>,
}

/// The outcome of [`verify_receipt`]: every check run, and every problem found.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiptVerification {
    pub ok: bool,
    pub event_position: Option<u64>,
    pub tree_size: Option<u64>,
    pub root_hash: Option<String>,
    pub checks: Vec<&'static str>,
    pub problems: Vec<Problem>,
}

/// Checks an erasure receipt (as the API serves it) against the operator's public
/// key, offline. Stops at the first failed check: the later ones would only
/// repeat it.
pub fn verify_receipt(receipt: &serde_json::Value, key: &PublicKey) -> ReceiptVerification {
    let mut v = ReceiptVerification {
        ok: false,
        event_position: None,
        tree_size: None,
        root_hash: None,
        checks: Vec::new(),
        problems: Vec::new(),
    };
    if let Err(p) = run(receipt, key, &mut v) {
        v.problems.push(p);
    }
    v.ok = v.problems.is_empty();
    v
}

fn run(
    receipt: &serde_json::Value,
    key: &PublicKey,
    v: &mut ReceiptVerification,
) -> Result<(), Problem> {
    let c: Claims = serde_json::from_value(receipt.clone())
        .map_err(|_| problem("BAD_RECEIPT", None, "the receipt is not a receipt object"))?;
    v.event_position = c.event_position;
    let (
        Some(position),
        Some(tree_size),
        Some(leaf_index),
        Some(path),
        Some(leaf_b64),
        Some(sth),
        Some(request),
        Some(customer),
        Some(broadcaster),
    ) = (
        c.event_position,
        c.tree_size,
        c.leaf_index,
        c.inclusion_proof,
        c.leaf_data,
        c.signed_tree_head,
        c.request_id,
        c.customer_id,
        c.broadcaster_id,
    )
    else {
        return Err(problem(
            "RECEIPT_WITHOUT_PROOF",
            c.event_position,
            "the receipt lacks its ids, position, leaf, inclusion proof or signed tree head",
        ));
    };
    v.checks
        .push("the receipt carries its leaf, an inclusion proof and a signed tree head");

    let sth: SignedTreeHead = serde_json::from_value(sth).map_err(|_| {
        problem(
            "BAD_SIGNED_HEAD",
            Some(position),
            "the signed tree head is malformed",
        )
    })?;
    let head = sth
        .verify(key)
        .map_err(|e| problem("BAD_SIGNATURE", Some(position), e.to_string()))?;
    v.tree_size = Some(head.size);
    v.root_hash = Some(head.root_hash.to_hex());
    v.checks
        .push("the signed tree head's signature verifies with the public key");

    if tree_size != head.size {
        return Err(problem(
            "HEAD_SIZE_MISMATCH",
            Some(position),
            format!(
                "the proof is for size {tree_size}, the signed head has size {}",
                head.size
            ),
        ));
    }
    v.checks
        .push("the proof's tree size is the signed head's size");

    let data = B64
        .decode(leaf_b64.as_bytes())
        .map_err(|_| problem("BAD_LEAF", Some(position), "leaf_data is not base64"))?;
    let record = parse_canonical(&data).ok_or_else(|| {
        problem(
            "BAD_LEAF",
            Some(position),
            "leaf_data is not one ledger.record.v1 record",
        )
    })?;
    v.checks
        .push("the leaf is a well-formed ledger.record.v1 record");

    let event = DomainEvent::decode(
        &record.stream,
        &record.event_type,
        record.schema_version,
        &record.payload,
    )
    .ok();
    let matches = match &event {
        Some(DomainEvent::Customer(cid, CustomerEvent::Anonymized(a))) => {
            record.position == position
                && leaf_index + 1 == position
                && record.stream == streams::customer(*cid)
                && a.customer_id == *cid
                && a.customer_id.to_string() == customer
                && a.request_id.to_string() == request
                && a.broadcaster_id.to_string() == broadcaster
        }
        _ => false,
    };
    if !matches {
        return Err(problem(
            "LEAF_MISMATCH",
            Some(position),
            "the leaf is not this receipt's CustomerAnonymized record at its position",
        ));
    }
    v.checks.push(
        "the leaf is this receipt's erasure: CustomerAnonymized of its customer, request and broadcaster at its position",
    );

    let path: Vec<Hash> = path
        .iter()
        .map(|h| h.parse())
        .collect::<Result<_, _>>()
        .map_err(|_| {
            problem(
                "BAD_PROOF",
                Some(position),
                "a proof hash is not 64 hex digits",
            )
        })?;
    let proof = InclusionProof {
        leaf_index,
        tree_size,
        inclusion_path: path,
    };
    proof
        .verify(&leaf_hash(&data), &head)
        .map_err(|e| problem("NOT_INCLUDED", Some(position), e.to_string()))?;
    v.checks
        .push("the inclusion proof leads from the leaf's hash to the signed root");
    Ok(())
}
