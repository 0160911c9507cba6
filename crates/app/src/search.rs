//! Customer search within one broadcaster: by id, by email (exact, case-insensitive)
//! and by name prefix (case- and accent-insensitive).
//!
//! The index is in memory only and rebuilt at start by opening the sealed profiles
//! in the customer views (ADR 0005): no plaintext, and no blind index that could
//! outlive an erasure, is ever written to disk. An anonymized customer has no
//! profile to open, so it is found by id only.

use std::collections::{BTreeSet, HashMap};

use ledger_events::Profile;
use ledger_projections::search::{normalize_email, normalize_name};
use ledger_types::{BroadcasterId, CustomerId};
use zeroize::{Zeroize, Zeroizing};

/// A normalised email or name the index is keyed by: personal data, so its bytes
/// are zeroized when it is dropped (an erasure removes the customer's terms, and
/// nothing of them may stay in freed memory).
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Term(String);

impl Drop for Term {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::fmt::Debug for Term {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Term(<redacted>)")
    }
}

/// `a b`, built in a buffer that is zeroized when dropped.
fn joined(a: &str, b: &str) -> Zeroizing<String> {
    let mut s = Zeroizing::new(String::with_capacity(a.len() + b.len() + 1));
    s.push_str(a);
    s.push(' ');
    s.push_str(b);
    s
}

/// Index keys of one customer, kept to remove them when the profile changes.
#[derive(Debug, Clone, Default)]
struct Keys {
    email: Term,
    names: Vec<Term>,
    broadcasters: Vec<BroadcasterId>,
}

#[derive(Debug, Default)]
pub struct SearchIndex {
    emails: HashMap<(BroadcasterId, Term), BTreeSet<CustomerId>>,
    names: BTreeSet<(BroadcasterId, Term, CustomerId)>,
    keys: HashMap<CustomerId, Keys>,
}

/// One customer's index keys, computed apart from the index (see
/// [`SearchIndex::from_entries`]) so that many can be computed in parallel.
#[derive(Debug, Clone)]
pub struct Entry {
    customer: CustomerId,
    keys: Keys,
}

impl Entry {
    /// The keys of `c` with this profile, for these broadcasters: its normalised
    /// email, and its first, last, full and reversed full names.
    pub fn new(c: CustomerId, profile: &Profile, broadcasters: &[BroadcasterId]) -> Self {
        let first = Term(normalize_name(&profile.first_name));
        let last = Term(normalize_name(&profile.last_name));
        let full = Term(normalize_name(&joined(
            &profile.first_name,
            &profile.last_name,
        )));
        let reversed = Term(normalize_name(&joined(
            &profile.last_name,
            &profile.first_name,
        )));
        let mut names = vec![first, last, full, reversed];
        names.retain(|n| !n.0.is_empty());
        names.sort();
        names.dedup();
        Self {
            customer: c,
            keys: Keys {
                email: Term(normalize_email(&profile.email)),
                names,
                broadcasters: broadcasters.to_vec(),
            },
        }
    }
}

/// Where a search hit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKind {
    Id,
    Email,
    Name,
}

impl SearchIndex {
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Removes a customer (profile changed, or erased).
    pub fn remove(&mut self, c: CustomerId) {
        let Some(k) = self.keys.remove(&c) else {
            return;
        };
        for b in &k.broadcasters {
            if let Some(set) = self.emails.get_mut(&(*b, k.email.clone())) {
                set.remove(&c);
                if set.is_empty() {
                    self.emails.remove(&(*b, k.email.clone()));
                }
            }
            for n in &k.names {
                self.names.remove(&(*b, n.clone(), c));
            }
        }
    }

    /// Indexes (or re-indexes) a customer's current profile for its broadcasters.
    pub fn upsert(&mut self, c: CustomerId, profile: &Profile, broadcasters: &[BroadcasterId]) {
        self.insert(Entry::new(c, profile, broadcasters));
    }

    /// Indexes (or re-indexes) one customer's entry.
    pub fn insert(&mut self, entry: Entry) {
        let Entry { customer, keys } = entry;
        self.remove(customer);
        for b in &keys.broadcasters {
            self.emails
                .entry((*b, keys.email.clone()))
                .or_default()
                .insert(customer);
            for n in &keys.names {
                self.names.insert((*b, n.clone(), customer));
            }
        }
        self.keys.insert(customer, keys);
    }

    /// Builds the index of many customers at once (one entry per customer): the
    /// name keys are sorted once and bulk-loaded, instead of inserted one by one.
    pub fn from_entries(entries: Vec<Entry>) -> Self {
        let mut emails: HashMap<(BroadcasterId, Term), BTreeSet<CustomerId>> =
            HashMap::with_capacity(entries.len());
        let mut names = Vec::with_capacity(entries.len() * 4);
        let mut keys = HashMap::with_capacity(entries.len());
        for Entry { customer, keys: k } in entries {
            for b in &k.broadcasters {
                emails
                    .entry((*b, k.email.clone()))
                    .or_default()
                    .insert(customer);
                names.extend(k.names.iter().map(|n| (*b, n.clone(), customer)));
            }
            keys.insert(customer, k);
        }
        names.sort_unstable();
        Self {
            emails,
            // From a sorted iterator, a BTreeSet is built in one pass.
            names: names.into_iter().collect(),
            keys,
        }
    }

    /// Customers of `b` whose email is exactly `q` (case-insensitive).
    pub fn by_email(&self, b: BroadcasterId, q: &str) -> Vec<CustomerId> {
        self.emails
            .get(&(b, Term(normalize_email(q))))
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Customers of `b` with a first name, last name or full name starting with `q`
    /// (case- and accent-insensitive), in name order, at most `limit`.
    pub fn by_name_prefix(&self, b: BroadcasterId, q: &str, limit: usize) -> Vec<CustomerId> {
        let prefix = Term(normalize_name(q));
        if prefix.0.is_empty() {
            return vec![];
        }
        let start = (b, prefix.clone(), CustomerId::from_uuid(uuid::Uuid::nil()));
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for (kb, name, c) in self.names.range(start..) {
            if *kb != b || !name.0.starts_with(&prefix.0) {
                break;
            }
            if seen.insert(*c) {
                out.push(*c);
                if out.len() >= limit {
                    break;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(first: &str, last: &str, email: &str) -> Profile {
        {
            let mut v = Profile::default();
            v.email = email.into();
            v.first_name = first.into();
            v.last_name = last.into();
            v
        }
    }

    #[test]
    fn search_is_case_and_accent_insensitive_and_scoped_to_the_broadcaster() {
        let (b1, b2) = (BroadcasterId::new(), BroadcasterId::new());
        let (zoe, emile) = (CustomerId::new(), CustomerId::new());
        let mut ix = SearchIndex::default();
        ix.upsert(zoe, &profile("Zoë", "Nørgaard", "Zoe.N@Example.com"), &[b1]);
        ix.upsert(
            emile,
            &profile("Émile", "Dąbrowski", "emile@example.com"),
            &[b1, b2],
        );
        assert_eq!(ix.by_email(b1, "zoe.n@example.COM"), vec![zoe]);
        assert!(ix.by_email(b2, "zoe.n@example.com").is_empty());
        assert_eq!(ix.by_name_prefix(b1, "NORG", 10), vec![zoe]);
        assert_eq!(ix.by_name_prefix(b1, "zoe nor", 10), vec![zoe]);
        assert_eq!(ix.by_name_prefix(b2, "emile", 10), vec![emile]);
        assert_eq!(ix.by_name_prefix(b2, "dabro", 10), vec![emile]);
        assert!(ix.by_name_prefix(b2, "zoe", 10).is_empty());
        let bulk = SearchIndex::from_entries(vec![
            Entry::new(zoe, &profile("Zoë", "Nørgaard", "Zoe.N@Example.com"), &[b1]),
            Entry::new(
                emile,
                &profile("Émile", "Dąbrowski", "emile@example.com"),
                &[b1, b2],
            ),
        ]);
        assert_eq!(bulk.names, ix.names, "bulk build and upserts agree");
        assert_eq!(bulk.emails, ix.emails);
        assert_eq!(bulk.len(), 2);
        ix.remove(zoe);
        assert!(ix.by_email(b1, "zoe.n@example.com").is_empty());
        assert!(ix.by_name_prefix(b1, "zo", 10).is_empty());
        assert_eq!(ix.len(), 1);
    }
}
