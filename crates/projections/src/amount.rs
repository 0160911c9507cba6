//! Sums of money as `i128`, and how they are written in JSON.
//!
//! One payment is at most `Money::MAX_AMOUNT` (10^12) minor units, but a sum of
//! them is not bounded by `i64`: a platform-wide total passes 9.2 * 10^18 after
//! 9.2 million payments of the maximum. Totals are therefore `i128` (no sum of
//! `i64` amounts over fewer than 2^64 events can overflow it), and the canonical
//! revenue text prints them in base 10 exactly as it printed the `i64` values.
//!
//! In serde formats a total that fits in `i64` is written as that integer (so every
//! document stored before the change reads, and writes, byte for byte as before); a
//! larger one is written as a base-10 string, because `serde_json::Value` (and
//! many JSON readers) cannot hold an integer beyond 64 bits. Both forms read back.

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};

/// `#[serde(with = "crate::amount")]` for an `i128` total.
pub fn serialize<S: Serializer>(v: &i128, s: S) -> Result<S::Ok, S::Error> {
    match i64::try_from(*v) {
        Ok(small) => s.serialize_i64(small),
        Err(_) => s.serialize_str(&v.to_string()),
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i128, D::Error> {
    d.deserialize_any(Total)
}

struct Total;

impl Visitor<'_> for Total {
    type Value = i128;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an integer, or a base-10 integer string")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i128, E> {
        Ok(i128::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i128, E> {
        Ok(i128::from(v))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<i128, E> {
        Ok(v)
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<i128, E> {
        i128::try_from(v).map_err(|_| E::custom("total out of range"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<i128, E> {
        let digits = v.strip_prefix('-').unwrap_or(v);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(E::custom("not a base-10 integer"));
        }
        v.parse().map_err(|_| E::custom("total out of range"))
    }
}
