//! Identifiers, money and time: the vocabulary every other crate speaks.
//!
//! This crate owns the newtypes that make invalid values unrepresentable: ids that
//! cannot be confused with one another, [`Money`] as integer minor units plus an ISO
//! 4217 currency (never a float), and [`Timestamp`] as milliseconds since the Unix
//! epoch. It must not do I/O and must not know about events, storage or HTTP.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

/// Why a value given from outside could not be parsed. Holds no input text, so it
/// is safe to log and to return in an error body.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    #[error("invalid {kind}: {reason}")]
    Invalid {
        kind: &'static str,
        reason: &'static str,
    },
}

impl ParseError {
    fn invalid(kind: &'static str, reason: &'static str) -> Self {
        ParseError::Invalid { kind, reason }
    }
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        uuid_id!($(#[$doc])* $name, $kind, Uuid::new_v4, "A fresh random id (UUID v4).");
    };
    ($(#[$doc:meta])* $name:ident, $kind:literal, $gen:path, $gen_doc:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            #[doc = $gen_doc]
            pub fn new() -> Self {
                Self($gen())
            }
            /// Wraps an existing UUID (e.g. one derived deterministically in a test or the demo).
            pub fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }
            pub fn as_uuid(&self) -> &Uuid {
                &self.0
            }
            pub fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }
            /// Parses the hyphenated UUID form.
            pub fn parse(s: &str) -> Result<Self, ParseError> {
                Uuid::parse_str(s)
                    .map(Self)
                    .map_err(|_| ParseError::invalid($kind, "expected a UUID"))
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }

        impl FromStr for $name {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
    };
}

uuid_id!(
    /// A customer's global id (one account, possibly linked to several broadcasters).
    CustomerId,
    "customer id"
);
uuid_id!(
    /// A broadcaster (tenant).
    BroadcasterId,
    "broadcaster id"
);
uuid_id!(
    /// One subscription of a customer to an offer.
    SubscriptionId,
    "subscription id"
);
uuid_id!(
    /// One captured payment.
    PaymentId,
    "payment id"
);
uuid_id!(
    /// One refund of (part of) a payment.
    RefundId,
    "refund id"
);
uuid_id!(
    /// The id of a stored event; appends are idempotent by it. New ids are
    /// time-ordered (UUID v7) so the store's unique index grows at its right edge
    /// instead of dirtying a random page per insert.
    EventId,
    "event id",
    Uuid::now_v7,
    "A fresh time-ordered id (UUID v7)."
);
uuid_id!(
    /// The id of an erasure request; a receipt is filed under it.
    RequestId,
    "request id"
);

/// An offer (product) id such as `premium-monthly`: 1 to 64 characters of
/// `[a-z0-9_-]`. Offer ids are catalogue identifiers, never personal data.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OfferId(String);

impl OfferId {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ParseError::invalid(
                "offer id",
                "expected 1-64 characters of a-z, 0-9, '-' or '_'",
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for OfferId {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<OfferId> for String {
    fn from(o: OfferId) -> String {
        o.0
    }
}

impl fmt::Display for OfferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for OfferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OfferId({})", self.0)
    }
}

/// An ISO 4217 currency code: three upper-case ASCII letters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let b = s.as_bytes();
        if b.len() == 3 && b.iter().all(u8::is_ascii_uppercase) {
            Ok(Self([b[0], b[1], b[2]]))
        } else {
            Err(ParseError::invalid(
                "currency",
                "expected an ISO 4217 code of three upper-case letters",
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        // Constructed only from ASCII upper-case letters.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl TryFrom<String> for Currency {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.as_str().to_owned()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.as_str())
    }
}

/// An amount of money: integer minor units (cents, pence, yen) plus a currency.
/// Never a float. Amounts in events are strictly positive; signs live in the
/// event type (capture vs refund).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    minor: i64,
    currency: Currency,
}

impl Money {
    pub fn new(minor: i64, currency: Currency) -> Self {
        Self { minor, currency }
    }
    /// A strictly positive amount, as payments and refunds require.
    pub fn positive(minor: i64, currency: Currency) -> Result<Self, ParseError> {
        if minor > 0 {
            Ok(Self { minor, currency })
        } else {
            Err(ParseError::invalid(
                "amount",
                "must be a positive integer of minor units",
            ))
        }
    }
    pub fn minor(&self) -> i64 {
        self.minor
    }
    pub fn currency(&self) -> Currency {
        self.currency
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} (minor units)", self.minor, self.currency)
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Money({} {})", self.minor, self.currency)
    }
}

/// A point in time: milliseconds since the Unix epoch, UTC.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    pub fn from_millis(ms: i64) -> Self {
        Self(ms)
    }
    pub fn now() -> Self {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
    pub fn millis(&self) -> i64 {
        self.0
    }
    /// The UTC day, as days since 1970-01-01 (revenue is bucketed by it).
    pub fn day_number(&self) -> i64 {
        self.0.div_euclid(86_400_000)
    }
    /// RFC 3339, e.g. `2026-11-29T03:16:12.000Z`.
    pub fn to_rfc3339(&self) -> String {
        let nanos = i128::from(self.0) * 1_000_000;
        match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
            Ok(t) => t
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|_| self.0.to_string()),
            Err(_) => self.0.to_string(),
        }
    }
    /// Parses an RFC 3339 timestamp.
    pub fn parse_rfc3339(s: &str) -> Result<Self, ParseError> {
        let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map_err(|_| ParseError::invalid("timestamp", "expected RFC 3339"))?;
        let ms = t.unix_timestamp_nanos() / 1_000_000;
        i64::try_from(ms)
            .map(Self)
            .map_err(|_| ParseError::invalid("timestamp", "out of range"))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({})", self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_accepts_iso_codes_and_rejects_the_rest() {
        assert_eq!(
            Currency::parse("EUR").map(|c| c.to_string()),
            Ok("EUR".into())
        );
        for bad in ["eur", "EU", "EURO", "", "E1R"] {
            assert!(Currency::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn money_serializes_as_integer_minor_units() {
        let m = Money::positive(1999, Currency::parse("USD").unwrap()).unwrap();
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"minor":1999,"currency":"USD"}"#
        );
        assert!(Money::positive(0, m.currency()).is_err());
        assert!(Money::positive(-5, m.currency()).is_err());
    }

    #[test]
    fn ids_parse_their_own_display_and_reject_garbage() {
        let c = CustomerId::new();
        assert_eq!(CustomerId::parse(&c.to_string()), Ok(c));
        assert!(CustomerId::parse("not-a-uuid").is_err());
    }

    #[test]
    fn offer_ids_are_restricted_to_a_safe_alphabet() {
        assert!(OfferId::parse("premium-monthly_2").is_ok());
        assert!(OfferId::parse("Premium").is_err());
        assert!(OfferId::parse("").is_err());
        assert!(OfferId::parse(&"a".repeat(65)).is_err());
    }

    #[test]
    fn timestamps_round_trip_through_rfc3339_and_bucket_by_utc_day() {
        let t = Timestamp::parse_rfc3339("2026-11-29T03:16:12.345Z").unwrap();
        assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()), Ok(t));
        assert_eq!(t.day_number(), 20_786);
    }
}
