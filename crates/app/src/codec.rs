//! From domain events to stored records and back: sealing on the way in, decoding
//! (still sealed) on the way out.

use ledger_crypto::{seal_block, CryptoError, DataKey, Keyring};
use ledger_events::{CustomerEvent, DomainEvent, PaymentData, Personal, SCHEMA_VERSION};
use ledger_store::{NewEvent, RecordedEvent};
use ledger_types::{CustomerId, EventId, Timestamp};
use serde::Serialize;

use crate::AppError;

/// Decodes a stored record by its stream and type.
pub fn decode_record(r: &RecordedEvent) -> Result<DomainEvent, AppError> {
    Ok(DomainEvent::decode(
        &r.stream,
        &r.event_type,
        r.schema_version,
        &r.payload,
    )?)
}

fn seal_in_place<T: Serialize>(
    keyring: &Keyring,
    c: CustomerId,
    id: EventId,
    block: &mut Personal<T>,
    empty_allowed_after_erasure: bool,
) -> Result<(), AppError> {
    let Personal::Open(value) = block else {
        return Ok(());
    };
    let sealed = match keyring.seal(c, id, value) {
        Ok(s) => s,
        // A revenue event of an erased customer holds an empty personal block; it is
        // sealed under a throwaway key so it reads as erased like everything else.
        Err(CryptoError::KeyDestroyed(_)) if empty_allowed_after_erasure => {
            seal_block(&DataKey::generate(), c, id, value)?
        }
        Err(e) => return Err(e.into()),
    };
    *block = Personal::Sealed(sealed);
    Ok(())
}

/// Seals every personal block of `event` for customer `c` and encodes it as a new
/// record. The customer's data key must exist (see `Keyring::ensure_keys`).
pub fn encode_customer_event(
    keyring: &Keyring,
    c: CustomerId,
    event: CustomerEvent,
    at: Timestamp,
) -> Result<NewEvent, AppError> {
    encode_customer_event_as(keyring, c, EventId::new(), event, at)
}

/// [`encode_customer_event`] under a given event id (the id is the sealed blocks'
/// associated data, so it is chosen before sealing).
pub(crate) fn encode_customer_event_as(
    keyring: &Keyring,
    c: CustomerId,
    id: EventId,
    mut event: CustomerEvent,
    at: Timestamp,
) -> Result<NewEvent, AppError> {
    match &mut event {
        CustomerEvent::Registered(e) => seal_in_place(keyring, c, id, &mut e.profile, false)?,
        CustomerEvent::ProfileUpdated(e) => seal_in_place(keyring, c, id, &mut e.patch, false)?,
        CustomerEvent::LoginRecorded(e) => seal_in_place(keyring, c, id, &mut e.login, false)?,
        CustomerEvent::PaymentCaptured(e) => {
            let empty = e.payer.as_open() == Some(&PaymentData::default());
            seal_in_place(keyring, c, id, &mut e.payer, empty)?
        }
        _ => {}
    }
    Ok(NewEvent {
        event_id: id,
        event_type: event.event_type().to_owned(),
        schema_version: SCHEMA_VERSION,
        payload: event.encode()?,
        recorded_at: at,
    })
}
