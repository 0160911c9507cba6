//! Identifiers, money and time: the vocabulary every other crate speaks.
//!
//! This crate owns the newtypes that make invalid values unrepresentable: ids that
//! cannot be confused with one another, [`Money`] as integer minor units plus an ISO
//! 4217 currency (never a float), and [`Timestamp`] as milliseconds since the Unix
//! epoch. It must not do I/O and must not know about events, storage or HTTP.

use std::fmt;
use std::str::FromStr;

use chrono::Datelike as _;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

pub mod total;

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

/// The regular expression of [`is_canonical_uuid`], for the OpenAPI document.
pub const CANONICAL_UUID_PATTERN: &str =
    "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$";

/// Whether `s` is a UUID in its canonical spelling: `8-4-4-4-12` lower-case
/// hexadecimal digits, 36 characters. `uuid` also accepts upper case, braces,
/// `urn:uuid:` and the simple 32-digit form; ids that are equal but spelled apart
/// would then reach logs, idempotency fingerprints and clients' caches as different
/// strings, so the API accepts one spelling, the one it writes.
pub fn is_canonical_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        })
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
            /// Parses the canonical UUID form only: 36 characters, lower-case
            /// hexadecimal, hyphenated `8-4-4-4-12` (what `Display` writes). See
            /// [`is_canonical_uuid`] for why other spellings are refused.
            pub fn parse(s: &str) -> Result<Self, ParseError> {
                if !is_canonical_uuid(s) {
                    return Err(ParseError::invalid(
                        $kind,
                        "expected a UUID in canonical form (36 lower-case hexadecimal characters and hyphens)",
                    ));
                }
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

uuid_id!(
    /// The id of a bulk erasure job (a list of customers, each filed as one erasure
    /// request).
    JobId,
    "job id"
);
uuid_id!(
    /// The id of a broadcaster's API key (the key itself is never stored; see the
    /// api crate's key file). Recorded as the actor of an erasure.
    KeyId,
    "key id"
);

/// A reference attached to an erasure request by whoever files it: a ticket or case
/// number such as `ZD-48213` or `case/2026/0042`, so that the request can be matched
/// with the requester's own records. It must **not** be personal data, and the
/// format makes the usual kinds of personal data impossible to put in: 1 to 64
/// characters of ASCII letters, digits and `.` `_` `-` `:` `/` `#`. No spaces (no
/// full name fits), no `@` (no email address fits), no `+` (no international phone
/// number fits), nothing outside ASCII.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Reference(String);

impl Reference {
    /// Longest accepted reference, in characters.
    pub const MAX_LEN: usize = 64;
    /// The characters a reference may hold, as a regular expression (for the
    /// OpenAPI document).
    pub const PATTERN: &'static str = "^[A-Za-z0-9._:/#-]{1,64}$";

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:/#-".contains(&b));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ParseError::invalid(
                "reference",
                "expected 1-64 characters of A-Z, a-z, 0-9, '.', '_', '-', ':', '/' or '#' (a ticket number, never personal data)",
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Reference {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Reference> for String {
    fn from(r: Reference) -> String {
        r.0
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({})", self.0)
    }
}

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

/// An ISO 4217 currency: one of the codes of the standard's current list (taken
/// from the maintained `iso_currency` crate, whose table is compiled in: no network
/// at build or run time) that has minor units, so that [`exponent`](Self::exponent)
/// says how many digits the minor units have (2 for EUR, 0 for JPY, 3 for BHD).
///
/// Two ways in, on purpose:
/// - [`Currency::parse`] is strict: new input (API bodies, queries, commands) must
///   name a real currency with minor units. `ZZZ`, `XXX` (no currency), `XTS`
///   (testing) and the precious metals (`XAU`, ...) are refused.
/// - [`Currency::from_stored`] (and so `Deserialize`) is tolerant: any three
///   upper-case letters. Events are immutable and were written before the list was
///   enforced; an old event with a code the list no longer accepts must not make the
///   log unreadable (audit, replay and export must still work on it). Such a code
///   has no exponent ([`Currency::is_iso`] is false).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    /// A currency of the ISO 4217 list with minor units; anything else is refused.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let c = Self::from_stored(s)?;
        if c.exponent().is_some() {
            Ok(c)
        } else {
            Err(ParseError::invalid(
                "currency",
                "expected an ISO 4217 currency code with minor units, such as EUR",
            ))
        }
    }

    /// Three upper-case ASCII letters, whether or not the ISO list has them: for
    /// decoding what was stored before the list was enforced (see the type's doc).
    pub fn from_stored(s: &str) -> Result<Self, ParseError> {
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

    /// The number of digits of the minor unit (2: 1999 minor units are 19.99), or
    /// `None` for a stored code that is not an ISO 4217 currency with minor units.
    pub fn exponent(&self) -> Option<u8> {
        iso_currency::Currency::from_code(self.as_str())
            .and_then(|c| c.exponent())
            .and_then(|e| u8::try_from(e).ok())
    }

    /// Whether [`Currency::parse`] accepts this code today.
    pub fn is_iso(&self) -> bool {
        self.exponent().is_some()
    }

    /// Every code [`Currency::parse`] accepts, sorted (for the OpenAPI document).
    pub fn iso_codes() -> Vec<&'static str> {
        // Every three-letter code, asked of the table (17,576 look-ups, done once
        // when the document is built; saves the crate's `strum` iterator feature).
        let mut v = Vec::new();
        for a in b'A'..=b'Z' {
            for b in b'A'..=b'Z' {
                for c in b'A'..=b'Z' {
                    let code = [a, b, c];
                    let code = std::str::from_utf8(&code).unwrap_or("");
                    if let Some(cur) = iso_currency::Currency::from_code(code) {
                        if cur.exponent().is_some() {
                            v.push(cur.code());
                        }
                    }
                }
            }
        }
        v
    }
}

impl TryFrom<String> for Currency {
    type Error = ParseError;
    /// Tolerant, as decoding stored events needs; new input goes through
    /// [`Currency::parse`].
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::from_stored(&s)
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
///
/// A payment or refund is at most [`Money::MAX_AMOUNT`] minor units (10^12, ten
/// billion euros): far above any real payment, and small enough that no sum of them
/// can overflow the `i128` revenue totals, and that each one is exact as a JSON
/// number in every client (below 2^53).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    minor: i64,
    currency: Currency,
}

impl Money {
    /// The largest amount of one payment or refund, in minor units: 10^12.
    pub const MAX_AMOUNT: i64 = 1_000_000_000_000;

    pub fn new(minor: i64, currency: Currency) -> Self {
        Self { minor, currency }
    }
    /// A strictly positive amount of at most [`Money::MAX_AMOUNT`], as payments and
    /// refunds require.
    pub fn positive(minor: i64, currency: Currency) -> Result<Self, ParseError> {
        if minor <= 0 {
            Err(ParseError::invalid(
                "amount",
                "must be a positive integer of minor units",
            ))
        } else if minor > Self::MAX_AMOUNT {
            Err(ParseError::invalid(
                "amount",
                "must not exceed 1000000000000 minor units",
            ))
        } else {
            Ok(Self { minor, currency })
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
    /// RFC 3339 in UTC with the fraction of a second in as few digits as it needs
    /// (none on a whole second), e.g. `2026-11-29T03:16:12Z`,
    /// `2026-11-29T03:16:12.45Z`. This exact form is stored in views and written
    /// in exports; years outside 0000-9999 (which RFC 3339 cannot express) are
    /// written as milliseconds since the epoch. Written field by field rather
    /// than through a strftime pattern, which is parsed on every call: the change
    /// feed formats one or two times per event.
    pub fn to_rfc3339(&self) -> String {
        use chrono::Timelike as _;
        use std::fmt::Write as _;
        let Some(t) = self.datetime().filter(|t| (0..=9999).contains(&t.year())) else {
            return self.0.to_string();
        };
        let mut out = String::with_capacity(24);
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
        let frac = self.0.rem_euclid(1000);
        if frac != 0 {
            let digits = format!("{frac:03}");
            out.push('.');
            out.push_str(digits.trim_end_matches('0'));
        }
        out.push('Z');
        out
    }

    /// This instant plus `months` calendar months, at the same time of day; a day
    /// past the end of the target month is moved back to its last day (one month
    /// after 31 January is 28 or 29 February). `None` if the result is out of
    /// range. Used for GDPR deadlines (Art. 12(3): "within one month of receipt").
    pub fn add_months(&self, months: u32) -> Option<Self> {
        let t = self.datetime()?;
        let moved = t.checked_add_months(chrono::Months::new(months))?;
        Some(Self(moved.timestamp_millis()))
    }

    /// This instant as a chrono UTC date and time.
    pub fn datetime(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        chrono::DateTime::from_timestamp_millis(self.0)
    }

    /// Parses an RFC 3339 timestamp (any offset; digits past the millisecond are
    /// cut off).
    pub fn parse_rfc3339(s: &str) -> Result<Self, ParseError> {
        let t = chrono::DateTime::parse_from_rfc3339(s)
            .map_err(|_| ParseError::invalid("timestamp", "expected RFC 3339"))?;
        let nanos =
            i128::from(t.timestamp()) * 1_000_000_000 + i128::from(t.timestamp_subsec_nanos());
        i64::try_from(nanos / 1_000_000)
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
    fn a_month_later_is_the_same_day_and_time_or_the_last_day_of_a_shorter_month() {
        let t = |s: &str| Timestamp::parse_rfc3339(s).unwrap();
        assert_eq!(
            t("2026-01-15T10:30:00Z").add_months(1),
            Some(t("2026-02-15T10:30:00Z"))
        );
        assert_eq!(
            t("2026-01-31T23:59:59.5Z").add_months(1),
            Some(t("2026-02-28T23:59:59.5Z"))
        );
        assert_eq!(
            t("2028-01-31T00:00:00Z").add_months(1),
            Some(t("2028-02-29T00:00:00Z"))
        );
        assert_eq!(
            t("2026-11-30T08:00:00Z").add_months(3),
            Some(t("2027-02-28T08:00:00Z"))
        );
        assert_eq!(Timestamp::from_millis(i64::MAX).add_months(1), None);
    }

    #[test]
    fn a_reference_is_a_short_ticket_number_and_never_looks_like_personal_data() {
        for ok in ["ZD-48213", "case/2026/0042", "JIRA:GDPR-7", "#123", "a.b_c"] {
            assert_eq!(Reference::parse(ok).map(|r| r.to_string()), Ok(ok.into()));
        }
        let long = "x".repeat(65);
        for bad in [
            "",
            "ada@example.org",
            "Ada Lovelace",
            "+442079460000",
            "Zoë",
            "tab\there",
            long.as_str(),
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
        let e = Reference::parse("ada@example.org").unwrap_err().to_string();
        assert!(!e.contains("ada"), "the error never echoes the value: {e}");
        let back: Result<Reference, _> = serde_json::from_str("\"a b\"");
        assert!(back.is_err());
    }

    #[test]
    fn currency_accepts_iso_codes_and_rejects_the_rest() {
        assert_eq!(
            Currency::parse("EUR").map(|c| c.to_string()),
            Ok("EUR".into())
        );
        for bad in ["eur", "EU", "EURO", "", "E1R", "ZZZ", "XXX", "XTS", "XAU"] {
            assert!(Currency::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn currencies_know_their_minor_unit_digits() {
        let exp = |c: &str| Currency::parse(c).unwrap().exponent();
        assert_eq!(exp("EUR"), Some(2));
        assert_eq!(exp("JPY"), Some(0));
        assert_eq!(exp("BHD"), Some(3));
        let codes = Currency::iso_codes();
        assert!(
            codes.contains(&"NOK") && !codes.contains(&"ZZZ"),
            "{codes:?}"
        );
        assert!(codes.len() > 150, "{}", codes.len());
    }

    #[test]
    fn stored_codes_off_the_list_still_decode_but_have_no_exponent() {
        let c: Currency = serde_json::from_str("\"ZZZ\"").unwrap();
        assert_eq!((c.as_str(), c.exponent(), c.is_iso()), ("ZZZ", None, false));
        assert!(serde_json::from_str::<Currency>("\"zzz\"").is_err());
    }

    #[test]
    fn amounts_above_the_documented_maximum_are_refused() {
        let eur = Currency::parse("EUR").unwrap();
        assert!(Money::positive(Money::MAX_AMOUNT, eur).is_ok());
        assert!(Money::positive(Money::MAX_AMOUNT + 1, eur).is_err());
        assert!(Money::positive(i64::MAX, eur).is_err());
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
    fn ids_accept_only_the_canonical_spelling() {
        let s = "0190a5b4-7c2e-4d3f-8a1b-2c3d4e5f6a7b";
        assert!(CustomerId::parse(s).is_ok());
        for bad in [
            "0190A5B4-7C2E-4D3F-8A1B-2C3D4E5F6A7B".to_owned(),
            format!("{{{s}}}"),
            format!("urn:uuid:{s}"),
            s.replace('-', ""),
            format!(" {s}"),
            format!("{s}\n"),
        ] {
            assert!(CustomerId::parse(&bad).is_err(), "{bad}");
            assert!(!is_canonical_uuid(&bad), "{bad}");
        }
    }

    #[test]
    fn offer_ids_are_restricted_to_a_safe_alphabet() {
        assert!(OfferId::parse("premium-monthly_2").is_ok());
        assert!(OfferId::parse("Premium").is_err());
        assert!(OfferId::parse("").is_err());
        assert!(OfferId::parse(&"a".repeat(65)).is_err());
    }

    /// The form written field by field is exactly the strftime form it replaced,
    /// over edge instants and 40,000 pseudo-random ones.
    #[test]
    fn times_are_written_exactly_as_strftime_writes_them() {
        let strftime = |t: Timestamp| {
            let Some(d) = t.datetime().filter(|d| (0..=9999).contains(&d.year())) else {
                return t.0.to_string();
            };
            let mut out = d.format("%Y-%m-%dT%H:%M:%S").to_string();
            let frac = t.0.rem_euclid(1000);
            if frac != 0 {
                let digits = format!("{frac:03}");
                out.push('.');
                out.push_str(digits.trim_end_matches('0'));
            }
            out.push('Z');
            out
        };
        let mut values = vec![
            0,
            1,
            -1,
            999,
            1_000,
            1_450,
            86_399_999,
            -62_167_219_200_000,
            -62_167_219_200_001,
            253_402_300_799_999,
            253_402_300_800_000,
            i64::MIN,
            i64::MAX,
        ];
        let mut x: i64 = 1_764_500_000_123;
        for _ in 0..20_000 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            values.push(x.rem_euclid(300_000_000_000_000) - 70_000_000_000_000);
            values.push(x.rem_euclid(4_000_000_000_000));
        }
        for v in values {
            let t = Timestamp::from_millis(v);
            assert_eq!(t.to_rfc3339(), strftime(t), "{v}");
        }
    }

    #[test]
    fn timestamps_round_trip_through_rfc3339_and_bucket_by_utc_day() {
        let t = Timestamp::parse_rfc3339("2026-11-29T03:16:12.345Z").unwrap();
        assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()), Ok(t));
        assert_eq!(t.day_number(), 20_786);
    }
}

#[cfg(test)]
mod rfc3339_golden {
    use super::Timestamp;

    /// The RFC 3339 forms of these instants are stored in views and written in
    /// exports: whatever formats them must give exactly these bytes.
    #[test]
    fn rfc3339_forms_are_byte_identical_to_the_stored_ones() {
        let cases = [
            (0, "1970-01-01T00:00:00Z"),
            (1, "1970-01-01T00:00:00.001Z"),
            (10, "1970-01-01T00:00:00.01Z"),
            (100, "1970-01-01T00:00:00.1Z"),
            (123, "1970-01-01T00:00:00.123Z"),
            (1_764_385_000_000, "2025-11-29T02:56:40Z"),
            (1_764_385_000_450, "2025-11-29T02:56:40.45Z"),
            (-1, "1969-12-31T23:59:59.999Z"),
            (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
        ];
        for (ms, want) in cases {
            assert_eq!(Timestamp::from_millis(ms).to_rfc3339(), want, "{ms}");
            assert_eq!(
                Timestamp::parse_rfc3339(want).unwrap().millis(),
                ms,
                "{want}"
            );
        }
    }
}
