//! Revenue, the read model analytics consumers and auditors depend on: totals per
//! broadcaster × currency × UTC day × offer in integer minor units, their
//! documented canonical form (`ledger-revenue-v1`) and its sha256 digest, the one
//! string compared across time and across an erasure.
//!
//! It depends on no other ledger crate but `ledger-types` and `ledger-events`, so
//! an analyst's or an auditor's tool can fold a log export with
//! [`fold_revenue_from`] and compare digests with this crate alone. Pure: no I/O,
//! no clock, no logging; it reads amounts, currencies, offers, broadcasters and
//! times, which live outside personal blocks, and ignores `CustomerAnonymized`, so
//! an erasure cannot change a figure.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use ledger_events::{CustomerEvent, DomainEvent};
use ledger_types::{BroadcasterId, Currency, OfferId, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use ledger_events::Envelope;

pub mod table;

/// The first line of the canonical form, newline included.
pub const CANONICAL_HEADER: &str = "ledger-revenue-v1\n";

/// One revenue bucket. Ordered by broadcaster id (as a UUID, i.e. by its 16 bytes),
/// then currency code, then day, then offer id (bytewise); this is the order of the
/// canonical form.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Debug)]
pub struct RevenueKey {
    /// The broadcaster that captured the payment (for a refund: the one copied into
    /// the `PaymentRefunded` event, i.e. the payment's).
    pub broadcaster_id: BroadcasterId,
    pub currency: Currency,
    /// [`Timestamp::day_number`] of the event time: the capture's day for a payment,
    /// the refund's own day for a refund.
    pub day: i64,
    pub offer_id: OfferId,
}

/// The figures of one bucket (or of a sum of buckets), in minor units.
///
/// Amounts are `i128`: one payment is at most `Money::MAX_AMOUNT` (10^12) and an
/// event holds at most `i64::MAX`, so no sum over fewer than 2^64 events can
/// overflow. (They were `i64` sums that saturated: one capture of `i64::MAX` made
/// every later payment vanish from the totals.) In serde formats a total that fits
/// in `i64` is an integer as before, a larger one a base-10 string
/// ([`crate::amount`]).
#[derive(Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct RevenueTotals {
    /// The sum of the captured amounts.
    #[serde(with = "ledger_types::total")]
    pub gross_captured: i128,
    /// The sum of the refunded amounts.
    #[serde(with = "ledger_types::total")]
    pub refunded: i128,
    /// `gross_captured - refunded`.
    #[serde(with = "ledger_types::total")]
    pub net: i128,
    pub payment_count: u64,
    pub refund_count: u64,
}

impl RevenueTotals {
    /// Adds another bucket's figures (a summary over rows).
    pub fn add(&mut self, other: &RevenueTotals) {
        self.gross_captured = self.gross_captured.saturating_add(other.gross_captured);
        self.refunded = self.refunded.saturating_add(other.refunded);
        self.net = self.gross_captured.saturating_sub(self.refunded);
        self.payment_count = self.payment_count.saturating_add(other.payment_count);
        self.refund_count = self.refund_count.saturating_add(other.refund_count);
    }
}

/// Which rows a query, a digest or a summary covers. Every `None` means "any";
/// the day range is inclusive at both ends.
#[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
pub struct RevenueFilter {
    pub broadcaster_id: Option<BroadcasterId>,
    pub currency: Option<Currency>,
    pub from_day: Option<i64>,
    pub to_day: Option<i64>,
}

impl RevenueFilter {
    /// Every row.
    pub fn all() -> Self {
        Self::default()
    }

    /// Every row of one broadcaster (what an erasure receipt's digests cover).
    pub fn broadcaster(b: BroadcasterId) -> Self {
        Self {
            broadcaster_id: Some(b),
            ..Self::default()
        }
    }

    pub fn matches(&self, k: &RevenueKey) -> bool {
        self.broadcaster_id.is_none_or(|b| b == k.broadcaster_id)
            && self.currency.is_none_or(|c| c == k.currency)
            && self.from_day.is_none_or(|d| k.day >= d)
            && self.to_day.is_none_or(|d| k.day <= d)
    }
}

/// Revenue totals per [`RevenueKey`], the position of the last event folded, and
/// the keys changed since the app last persisted them.
///
/// Only `PaymentCaptured` (adds to `gross_captured`, `payment_count`) and
/// `PaymentRefunded` (adds to `refunded`, `refund_count`, bucketed by the refund's
/// own day and the broadcaster and offer copied into it) change revenue; every other
/// event, `CustomerAnonymized` above all, only advances the position. Sums are
/// `i128` and cannot overflow (see [`RevenueTotals`]).
///
/// # Canonical form (a public contract, `ledger-revenue-v1`)
///
/// [`canonical_bytes`](Self::canonical_bytes) is UTF-8 text (in fact ASCII):
///
/// 1. the header line `ledger-revenue-v1` followed by `\n` ([`CANONICAL_HEADER`]);
/// 2. then one line per row selected by the filter, in [`RevenueKey`] order
///    (broadcaster id by UUID bytes, currency, day, offer id bytewise), each being
///    nine fields separated by one TAB (`\t`) and ended by `\n`:
///
///    ```text
///    {broadcaster_id}\t{currency}\t{day}\t{offer_id}\t{gross_captured}\t{refunded}\t{net}\t{payment_count}\t{refund_count}\n
///    ```
///
///    - `broadcaster_id`: the UUID, lower-case hyphenated (`8-4-4-4-12` hex digits);
///    - `currency`: the three upper-case letters of the ISO 4217 code;
///    - `day`: the UTC date `YYYY-MM-DD` of the day number (days since 1970-01-01,
///      proleptic Gregorian calendar; see [`canonical_day`]);
///    - `offer_id`: as stored (`[a-z0-9_-]{1,64}`);
///    - amounts and counts: base-10 integers in minor units, no padding, no
///      thousands separator, a leading `-` only for a negative value (only `net`
///      can be negative). Amounts are exact however large (sums are `i128`; the
///      text of a figure that fits in `i64` is what it always was).
///
/// There is no trailing data after the last line. A selection with no rows is the
/// header line alone, so its digest is always
/// `sha256("ledger-revenue-v1\n")`. Rows of zero captures and zero refunds cannot
/// exist (a row is created by its first capture or refund). The
/// [digest](Self::digest) is the lower-case hex sha256 of these bytes. The filter
/// itself is not part of the text: two selections with the same rows have the same
/// digest.
///
/// Example (one broadcaster, one capture of 10.00 EUR on 2026-01-01, refunded
/// 2.50 EUR on 2026-01-02), with TAB and newline written as `\t` and `\n`:
///
/// ```text
/// ledger-revenue-v1\n
/// 00000002-0000-4000-8000-000000000001\tEUR\t2026-01-01\tpremium\t1000\t0\t1000\t1\t0\n
/// 00000002-0000-4000-8000-000000000001\tEUR\t2026-01-02\tpremium\t0\t250\t-250\t0\t1\n
/// ```
#[derive(Debug)]
pub struct Revenue {
    rows: BTreeMap<RevenueKey, Row>,
    position: u64,
    /// The keys whose row is marked dirty, each once.
    dirty: Vec<RevenueKey>,
    /// Bumped whenever a row of the broadcaster changes: lets `ledger_projections::ReadModel`
    /// reuse a broadcaster's digest while its rows are unchanged.
    generations: BTreeMap<BroadcasterId, u64>,
    /// Tells this fold's generations from those of any other `Revenue` value (a
    /// replaced or reset one), so a cached digest is never taken for another fold's.
    instance: u64,
}

static INSTANCES: AtomicU64 = AtomicU64::new(0);

impl Default for Revenue {
    fn default() -> Self {
        Revenue {
            rows: BTreeMap::new(),
            position: 0,
            dirty: Vec::new(),
            generations: BTreeMap::new(),
            instance: INSTANCES.fetch_add(1, AtomicOrdering::Relaxed),
        }
    }
}

#[derive(Debug, Default)]
struct Row {
    totals: RevenueTotals,
    dirty: bool,
}

impl Revenue {
    pub fn new() -> Self {
        Self::default()
    }

    /// The position of the last event folded (0 before any).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Sets the position after loading persisted rows: events at or before it are
    /// then ignored.
    pub fn set_position(&mut self, p: u64) {
        self.position = p;
    }

    /// Folds one event. An event at or before [`position`](Self::position) is
    /// ignored, so seeing an event twice changes nothing.
    pub fn apply(&mut self, e: &Envelope<'_>) {
        if e.position <= self.position {
            return;
        }
        self.position = e.position;
        let DomainEvent::Customer(_, event) = e.event else {
            return;
        };
        match event {
            CustomerEvent::PaymentCaptured(p) => {
                let minor = p.amount.minor();
                self.bump(
                    p.broadcaster_id,
                    p.amount.currency(),
                    p.at,
                    &p.offer_id,
                    |t| {
                        t.gross_captured = t.gross_captured.saturating_add(i128::from(minor));
                        t.payment_count += 1;
                    },
                );
            }
            CustomerEvent::PaymentRefunded(r) => {
                let minor = r.amount.minor();
                self.bump(
                    r.broadcaster_id,
                    r.amount.currency(),
                    r.at,
                    &r.offer_id,
                    |t| {
                        t.refunded = t.refunded.saturating_add(i128::from(minor));
                        t.refund_count += 1;
                    },
                );
            }
            _ => {}
        }
    }

    /// Changes one row without allocating when the row exists and is already dirty
    /// (the common case during a rebuild): lookups borrow the key's parts.
    fn bump(
        &mut self,
        broadcaster_id: BroadcasterId,
        currency: Currency,
        at: Timestamp,
        offer_id: &OfferId,
        change: impl FnOnce(&mut RevenueTotals),
    ) {
        let day = at.day_number();
        let probe = KeyRef {
            broadcaster_id,
            currency: currency.as_str(),
            day,
            offer_id: offer_id.as_str(),
        };
        let owned = || RevenueKey {
            broadcaster_id,
            currency,
            day,
            offer_id: offer_id.clone(),
        };
        let row = match self.rows.get_mut(&probe as &dyn KeyParts) {
            Some(row) => row,
            None => self.rows.entry(owned()).or_default(),
        };
        change(&mut row.totals);
        row.totals.net = row
            .totals
            .gross_captured
            .saturating_sub(row.totals.refunded);
        if !row.dirty {
            row.dirty = true;
            self.dirty.push(owned());
        }
        *self.generations.entry(broadcaster_id).or_default() += 1;
    }

    /// Puts a persisted row back (when loading at start). Not marked dirty.
    pub fn insert(&mut self, key: RevenueKey, totals: RevenueTotals) {
        *self.generations.entry(key.broadcaster_id).or_default() += 1;
        let row = Row {
            totals,
            dirty: false,
        };
        if let Some(old) = self.rows.insert(key.clone(), row) {
            if old.dirty {
                self.dirty.retain(|d| *d != key);
            }
        }
    }

    pub fn get(&self, key: &RevenueKey) -> Option<&RevenueTotals> {
        self.rows.get(key).map(|r| &r.totals)
    }

    /// The keys changed since the last call, in key order; the app persists those
    /// rows with [`position`](Self::position).
    pub fn take_dirty(&mut self) -> Vec<RevenueKey> {
        let mut keys = std::mem::take(&mut self.dirty);
        for k in &keys {
            if let Some(row) = self.rows.get_mut(k) {
                row.dirty = false;
            }
        }
        keys.sort_unstable();
        keys
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The rows the filter selects, in key order.
    pub fn rows<'s>(
        &'s self,
        filter: &RevenueFilter,
    ) -> impl Iterator<Item = (&'s RevenueKey, &'s RevenueTotals)> + 's {
        let filter = *filter;
        let range: Box<dyn Iterator<Item = (&'s RevenueKey, &'s Row)> + 's> =
            match filter.broadcaster_id {
                // An empty day range (`BTreeMap::range` would panic on it).
                _ if matches!((filter.from_day, filter.to_day), (Some(f), Some(t)) if f > t) => {
                    Box::new(std::iter::empty())
                }
                // Keys sort by broadcaster first: scan its rows only.
                Some(b) => {
                    let bound = |day, high| KeyBound {
                        broadcaster_id: b,
                        currency: filter.currency,
                        day,
                        high,
                    };
                    let lower = Bound::Included(bound(filter.from_day, false));
                    let upper = Bound::Included(bound(filter.to_day, true));
                    Box::new(
                        self.rows
                            .range::<dyn KeyParts, _>((as_dyn(&lower), as_dyn(&upper))),
                    )
                }
                None => Box::new(self.rows.iter()),
            };
        range
            .filter(move |(k, _)| filter.matches(k))
            .map(|(k, r)| (k, &r.totals))
    }

    /// The canonical form of the selected rows (see the type's documentation).
    pub fn canonical_bytes(&self, filter: &RevenueFilter) -> Vec<u8> {
        let mut out = String::from(CANONICAL_HEADER);
        for (k, t) in self.rows(filter) {
            write_line(&mut out, k, t);
        }
        out.into_bytes()
    }

    /// The lower-case hex sha256 of [`canonical_bytes`](Self::canonical_bytes),
    /// computed without materialising the whole text.
    pub fn digest(&self, filter: &RevenueFilter) -> String {
        let mut hasher = Sha256::new();
        hasher.update(CANONICAL_HEADER.as_bytes());
        let mut line = String::with_capacity(128);
        for (k, t) in self.rows(filter) {
            line.clear();
            write_line(&mut line, k, t);
            hasher.update(line.as_bytes());
        }
        hex::encode(hasher.finalize())
    }

    /// The selected rows summed per currency.
    pub fn summary(&self, filter: &RevenueFilter) -> BTreeMap<Currency, RevenueTotals> {
        let mut out: BTreeMap<Currency, RevenueTotals> = BTreeMap::new();
        for (k, t) in self.rows(filter) {
            out.entry(k.currency).or_default().add(t);
        }
        out
    }

    /// Which fold this is, and how many times the broadcaster's rows changed in it:
    /// equal values mean equal rows.
    pub fn generation(&self, b: BroadcasterId) -> (u64, u64) {
        (
            self.instance,
            self.generations.get(&b).copied().unwrap_or(0),
        )
    }
}

fn write_line(out: &mut String, k: &RevenueKey, t: &RevenueTotals) {
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
        k.broadcaster_id,
        k.currency,
        DayFmt(k.day),
        k.offer_id,
        t.gross_captured,
        t.refunded,
        t.net,
        t.payment_count,
        t.refund_count
    );
}

/// The canonical text of a day number: `YYYY-MM-DD` in the proleptic Gregorian
/// calendar, UTC; the year has at least four digits and, before year 0, a leading
/// `-` (astronomical numbering). For every day a `Timestamp` can express this is the
/// date part of [`Timestamp::to_rfc3339`] where that one is defined.
pub fn canonical_day(day: i64) -> String {
    DayFmt(day).to_string()
}

struct DayFmt(i64);

impl std::fmt::Display for DayFmt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (y, m, d) = civil_from_days(self.0);
        if y < 0 {
            write!(f, "-{:04}-{m:02}-{d:02}", -y)
        } else {
            write!(f, "{y:04}-{m:02}-{d:02}")
        }
    }
}

/// Howard Hinnant's `civil_from_days`, in i128 so that it is total over i64.
fn civil_from_days(days: i64) -> (i128, u32, u32) {
    let z = i128::from(days) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i128::from(m <= 2);
    // 1 <= m <= 12 and 1 <= d <= 31.
    (y, m as u32, d as u32)
}

// ---------------------------------------------------------------- borrowed keys
//
// `BTreeMap<RevenueKey, _>` looked up by `&dyn KeyParts`, so that folding a payment
// into an existing row does not clone its offer id. `KeyParts::parts` orders exactly
// like the derived `Ord` of `RevenueKey` (currency codes and offer ids compare
// bytewise as their `str`), as `Borrow` requires.

trait KeyParts {
    fn parts(&self) -> (BroadcasterId, &[u8], i64, &[u8]);
}

impl KeyParts for RevenueKey {
    fn parts(&self) -> (BroadcasterId, &[u8], i64, &[u8]) {
        (
            self.broadcaster_id,
            self.currency.as_str().as_bytes(),
            self.day,
            self.offer_id.as_str().as_bytes(),
        )
    }
}

struct KeyRef<'a> {
    broadcaster_id: BroadcasterId,
    currency: &'a str,
    day: i64,
    offer_id: &'a str,
}

impl KeyParts for KeyRef<'_> {
    fn parts(&self) -> (BroadcasterId, &[u8], i64, &[u8]) {
        (
            self.broadcaster_id,
            self.currency.as_bytes(),
            self.day,
            self.offer_id.as_bytes(),
        )
    }
}

/// A range bound: the smallest (`high == false`) or largest key of a broadcaster,
/// or of a broadcaster and currency within a day range. Currency codes are three
/// upper-case letters and offer ids are non-empty ASCII, so `""` sorts before and
/// `[0xff]` after every real one.
struct KeyBound {
    broadcaster_id: BroadcasterId,
    currency: Option<Currency>,
    day: Option<i64>,
    high: bool,
}

impl KeyParts for KeyBound {
    fn parts(&self) -> (BroadcasterId, &[u8], i64, &[u8]) {
        const MAX: &[u8] = &[0xff, 0xff, 0xff];
        let (currency, day): (&[u8], i64) = match (self.currency.as_ref(), self.high) {
            (Some(c), false) => (c.as_str().as_bytes(), self.day.unwrap_or(i64::MIN)),
            (Some(c), true) => (c.as_str().as_bytes(), self.day.unwrap_or(i64::MAX)),
            (None, false) => (b"", i64::MIN),
            (None, true) => (MAX, i64::MAX),
        };
        let offer: &[u8] = if self.high { MAX } else { b"" };
        (self.broadcaster_id, currency, day, offer)
    }
}

fn as_dyn(b: &Bound<KeyBound>) -> Bound<&dyn KeyParts> {
    match b {
        Bound::Included(k) => Bound::Included(k as &dyn KeyParts),
        Bound::Excluded(k) => Bound::Excluded(k as &dyn KeyParts),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl<'a> Borrow<dyn KeyParts + 'a> for RevenueKey {
    fn borrow(&self) -> &(dyn KeyParts + 'a) {
        self
    }
}

impl PartialEq for dyn KeyParts + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn KeyParts + '_ {}

impl PartialOrd for dyn KeyParts + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for dyn KeyParts + '_ {
    fn cmp(&self, other: &Self) -> Ordering {
        self.parts().cmp(&other.parts())
    }
}

/// Folds a log (oldest first) into revenue totals: what an auditor or an analytics
/// consumer runs to recompute [`Revenue::digest`] from the log alone.
pub fn fold_revenue_from<'a>(events: impl IntoIterator<Item = Envelope<'a>>) -> Revenue {
    let mut revenue = Revenue::new();
    for e in events {
        revenue.apply(&e);
    }
    revenue
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_days_match_the_rfc3339_date_of_the_timestamp() {
        // RFC 3339 (and so `to_rfc3339`) covers the years 0000 to 9999.
        let mut day = -719_528i64;
        while day <= 2_932_896 {
            let ts = Timestamp::from_millis(day * 86_400_000);
            assert_eq!(canonical_day(day), ts.to_rfc3339()[..10], "day {day}");
            day += 997;
        }
        for day in [-1, 0, 1, 20_454, 20_820, 11_016, -719_528, 2_932_896] {
            let ts = Timestamp::from_millis(day * 86_400_000);
            assert_eq!(canonical_day(day), ts.to_rfc3339()[..10], "day {day}");
        }
        assert_eq!(canonical_day(0), "1970-01-01");
        assert_eq!(canonical_day(-719_529), "-0001-12-31");
    }

    #[test]
    fn borrowed_key_order_agrees_with_the_derived_order() {
        let b1 = BroadcasterId::from_uuid(Default::default());
        let b2 = BroadcasterId::parse("00000000-0000-4000-8000-000000000001").unwrap();
        let mut keys = Vec::new();
        for b in [b1, b2] {
            for c in ["EUR", "USD", "CHF"] {
                for d in [-1, 0, 5] {
                    for o in ["a", "a-b", "ab", "b_"] {
                        keys.push(RevenueKey {
                            broadcaster_id: b,
                            currency: Currency::parse(c).unwrap(),
                            day: d,
                            offer_id: OfferId::parse(o).unwrap(),
                        });
                    }
                }
            }
        }
        for x in &keys {
            for y in &keys {
                let dx: &dyn KeyParts = x;
                let dy: &dyn KeyParts = y;
                assert_eq!(x.cmp(y), dx.cmp(dy));
            }
        }
    }
}
