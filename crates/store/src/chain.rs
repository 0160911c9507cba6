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

    fn feed(&self, h: &mut impl Sink) {
        fn bytes(h: &mut impl Sink, b: &[u8]) {
            // Lengths are bounded by the store's limits, far below u32::MAX.
            h.put(&(b.len() as u32).to_be_bytes());
            h.put(b);
        }
        h.put(DOMAIN);
        h.put(&self.position.to_be_bytes());
        bytes(h, self.stream.as_bytes());
        h.put(&self.version.to_be_bytes());
        h.put(self.event_id);
        bytes(h, self.event_type.as_bytes());
        h.put(&self.schema_version.to_be_bytes());
        h.put(&self.recorded_at_ms.to_be_bytes());
        bytes(h, self.payload);
    }

    /// The canonical bytes themselves: what both chains hash after the previous
    /// hash, and the leaf data of the Merkle tree over the log (ADR 0014).
    pub fn canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.canonical_len());
        self.write_canonical(&mut out);
        out
    }

    /// Appends the canonical bytes to `out` (reusing its allocation).
    pub fn write_canonical(&self, out: &mut Vec<u8>) {
        self.feed(out);
    }

    /// The length of the canonical bytes.
    pub fn canonical_len(&self) -> usize {
        DOMAIN.len()
            + 8
            + 4
            + self.stream.len()
            + 8
            + 16
            + 4
            + self.event_type.len()
            + 2
            + 8
            + 4
            + self.payload.len()
    }

    /// `sha256(prev || canonical bytes)`.
    pub fn chain(&self, prev: &Hash32) -> Hash32 {
        let mut h = Sha256::new();
        h.update(prev);
        self.feed(&mut h);
        h.finalize().into()
    }
}

/// Where canonical bytes go: a hasher, or a buffer.
trait Sink {
    fn put(&mut self, b: &[u8]);
}

impl Sink for Sha256 {
    fn put(&mut self, b: &[u8]) {
        self.update(b);
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, b: &[u8]) {
        self.extend_from_slice(b);
    }
}

/// The fields of a record read back from its canonical bytes (a receipt's leaf).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedRecord {
    pub position: u64,
    pub stream: String,
    pub version: Version,
    pub event_id: [u8; 16],
    pub event_type: String,
    pub schema_version: u16,
    pub recorded_at_ms: i64,
    pub payload: Vec<u8>,
}

impl ParsedRecord {
    pub fn fields(&self) -> RecordFields<'_> {
        RecordFields {
            position: self.position,
            stream: &self.stream,
            version: self.version,
            event_id: &self.event_id,
            event_type: &self.event_type,
            schema_version: self.schema_version,
            recorded_at_ms: self.recorded_at_ms,
            payload: &self.payload,
        }
    }
}

/// Reads canonical bytes back into their fields; `None` unless they are exactly
/// one well-formed `ledger.record.v1` encoding (strings UTF-8, nothing left over).
pub fn parse_canonical(bytes: &[u8]) -> Option<ParsedRecord> {
    struct Reader<'a>(&'a [u8]);
    impl<'a> Reader<'a> {
        fn take(&mut self, n: usize) -> Option<&'a [u8]> {
            if self.0.len() < n {
                return None;
            }
            let (head, rest) = self.0.split_at(n);
            self.0 = rest;
            Some(head)
        }
        fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
            self.take(N)?.try_into().ok()
        }
        fn bytes(&mut self) -> Option<&'a [u8]> {
            let n = u32::from_be_bytes(self.array()?) as usize;
            self.take(n)
        }
        fn text(&mut self) -> Option<String> {
            String::from_utf8(self.bytes()?.to_vec()).ok()
        }
    }
    let mut r = Reader(bytes);
    if r.take(DOMAIN.len())? != DOMAIN {
        return None;
    }
    let parsed = ParsedRecord {
        position: u64::from_be_bytes(r.array()?),
        stream: r.text()?,
        version: u64::from_be_bytes(r.array()?),
        event_id: r.array()?,
        event_type: r.text()?,
        schema_version: u16::from_be_bytes(r.array()?),
        recorded_at_ms: i64::from_be_bytes(r.array()?),
        payload: r.bytes()?.to_vec(),
    };
    r.0.is_empty().then_some(parsed)
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
    fn canonical_bytes_are_what_the_chain_hashes_and_parse_back() {
        let id = [7u8; 16];
        let f = RecordFields {
            position: 42,
            stream: "customer-x",
            version: 3,
            event_id: &id,
            event_type: "CustomerAnonymized",
            schema_version: 1,
            recorded_at_ms: -5,
            payload: b"{\"a\":1}",
        };
        let bytes = f.canonical();
        assert_eq!(bytes.len(), f.canonical_len());
        let mut h = Sha256::new();
        h.update(ZERO_HASH);
        h.update(&bytes);
        assert_eq!(<Hash32>::from(h.finalize()), f.chain(&ZERO_HASH));
        let back = parse_canonical(&bytes).expect("parses");
        assert_eq!(back.fields().chain(&ZERO_HASH), f.chain(&ZERO_HASH));
        assert_eq!(back.position, 42);
        assert_eq!(back.stream, "customer-x");
        for cut in 0..bytes.len() {
            assert!(parse_canonical(&bytes[..cut]).is_none(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(parse_canonical(&longer).is_none());
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
