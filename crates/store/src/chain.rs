//! The hash chains over stored records.
//!
//! Canonical bytes of a record (all integers big-endian, strings and payload
//! length-prefixed with a u32):
//!
//! ```text
//! "ledger.record.v1" | u64 position | str stream | u64 version | 16 bytes event id
//! | str event_type | u16 schema_version | i64 recorded_at_ms | bytes payload
//! ```
//!
//! `hash = sha256(prev_stream_hash || canonical)` where the first event of a stream
//! uses 32 zero bytes, and `log_hash = sha256(prev_log_hash || canonical)` where
//! position 1 uses 32 zero bytes. Both are over the sealed payload, so they still
//! verify after a customer's data key is destroyed.

use sha2::{Digest, Sha256};

use crate::{RecordedEvent, Version};

pub type Hash32 = [u8; 32];
pub const ZERO_HASH: Hash32 = [0u8; 32];

const DOMAIN: &[u8] = b"ledger.record.v1";

/// The fields a record's hashes cover.
#[derive(Debug, Clone, Copy)]
pub struct RecordFields<'a> {
    pub position: u64,
    pub stream: &'a str,
    pub version: Version,
    pub event_id: &'a [u8; 16],
    pub event_type: &'a str,
    pub schema_version: u16,
    pub recorded_at_ms: i64,
    pub payload: &'a [u8],
}

impl<'a> RecordFields<'a> {
    pub fn of(e: &'a RecordedEvent) -> Self {
        Self {
            position: e.position,
            stream: &e.stream,
            version: e.version,
            event_id: e.event_id.as_bytes(),
            event_type: &e.event_type,
            schema_version: e.schema_version,
            recorded_at_ms: e.recorded_at.millis(),
            payload: &e.payload,
        }
    }

    fn feed(&self, h: &mut Sha256) {
        fn bytes(h: &mut Sha256, b: &[u8]) {
            // Lengths are bounded by the store's limits, far below u32::MAX.
            h.update((b.len() as u32).to_be_bytes());
            h.update(b);
        }
        h.update(DOMAIN);
        h.update(self.position.to_be_bytes());
        bytes(h, self.stream.as_bytes());
        h.update(self.version.to_be_bytes());
        h.update(self.event_id);
        bytes(h, self.event_type.as_bytes());
        h.update(self.schema_version.to_be_bytes());
        h.update(self.recorded_at_ms.to_be_bytes());
        bytes(h, self.payload);
    }

    /// `sha256(prev || canonical bytes)`.
    pub fn chain(&self, prev: &Hash32) -> Hash32 {
        let mut h = Sha256::new();
        h.update(prev);
        self.feed(&mut h);
        h.finalize().into()
    }
}

/// Checks a record's stream hash against the previous hash of its stream.
pub fn stream_link_ok(e: &RecordedEvent, prev_stream_hash: &Hash32) -> bool {
    RecordFields::of(e).chain(prev_stream_hash) == e.hash
}

/// Checks a record's log hash against the previous record's log hash.
pub fn log_link_ok(e: &RecordedEvent, prev_log_hash: &Hash32) -> bool {
    RecordFields::of(e).chain(prev_log_hash) == e.log_hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_field_change_changes_the_hash() {
        let id = [1u8; 16];
        let base = RecordFields {
            position: 1,
            stream: "s",
            version: 1,
            event_id: &id,
            event_type: "T",
            schema_version: 1,
            recorded_at_ms: 5,
            payload: b"{}",
        };
        let h = base.chain(&ZERO_HASH);
        let other_id = [2u8; 16];
        let variants = [
            RecordFields {
                position: 2,
                ..base
            },
            RecordFields {
                stream: "t",
                ..base
            },
            RecordFields { version: 2, ..base },
            RecordFields {
                event_id: &other_id,
                ..base
            },
            RecordFields {
                event_type: "U",
                ..base
            },
            RecordFields {
                schema_version: 2,
                ..base
            },
            RecordFields {
                recorded_at_ms: 6,
                ..base
            },
            RecordFields {
                payload: b"{ }",
                ..base
            },
        ];
        for v in variants {
            assert_ne!(v.chain(&ZERO_HASH), h);
        }
        assert_ne!(base.chain(&[1u8; 32]), h);
    }

    #[test]
    fn length_prefixes_prevent_field_boundary_shifts() {
        let id = [1u8; 16];
        let a = RecordFields {
            position: 1,
            stream: "ab",
            version: 1,
            event_id: &id,
            event_type: "c",
            schema_version: 1,
            recorded_at_ms: 0,
            payload: b"",
        };
        let b = RecordFields {
            stream: "a",
            event_type: "bc",
            ..a
        };
        assert_ne!(a.chain(&ZERO_HASH), b.chain(&ZERO_HASH));
    }
}
