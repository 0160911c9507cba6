//! Normalisation for the app's in-memory search index (rebuilt at start from opened
//! profiles and never persisted): the same function is applied to what is indexed
//! and to what is typed in the search box, so "Søren Ærø" finds "soren aero".
//!
//! Transliteration uses the `deunicode` tables (é→e, ø→o, ł→l, ß→ss, å→a, æ→ae,
//! and non-Latin scripts to their usual Latin spelling); a character it has no
//! spelling for is kept as is (lower-cased), never dropped.

use zeroize::Zeroize as _;

/// Lower-case, accents and ligatures spelled out in ASCII, runs of whitespace
/// collapsed to one space, no leading or trailing space.
pub fn normalize_name(s: &str) -> String {
    let mut ascii = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii() {
            ascii.push(c);
        } else {
            match deunicode::deunicode_char(c) {
                Some(t) => ascii.push_str(t),
                None => ascii.push(c),
            }
        }
    }
    let mut out = String::with_capacity(ascii.len());
    for word in ascii.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        for c in word.chars() {
            out.extend(c.to_lowercase());
        }
    }
    // Names are personal data: the intermediate copy does not stay in freed memory.
    ascii.zeroize();
    out
}

/// An email address as the index keys it: surrounding whitespace trimmed,
/// lower-cased.
pub fn normalize_email(s: &str) -> String {
    s.trim().to_lowercase()
}
