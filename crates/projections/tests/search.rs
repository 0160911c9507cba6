//! Search normalisation: what is indexed and what is typed meet in one form.

use ledger_projections::search::{normalize_email, normalize_name};

#[test]
fn names_are_lower_cased_with_accents_and_ligatures_spelled_out() {
    assert_eq!(normalize_name("Élodie Ménard"), "elodie menard");
    assert_eq!(normalize_name("Søren Ærø"), "soren aero");
    assert_eq!(normalize_name("Łukasz Wróbel"), "lukasz wrobel");
    assert_eq!(normalize_name("Straße"), "strasse");
    assert_eq!(normalize_name("Åsa Öberg"), "asa oberg");
    assert_eq!(normalize_name("José Núñez"), "jose nunez");
}

#[test]
fn whitespace_runs_collapse_to_one_space_and_ends_are_trimmed() {
    assert_eq!(normalize_name("  Ada \t\n  Lovelace  "), "ada lovelace");
    assert_eq!(normalize_name("Ada\u{00A0}Lovelace"), "ada lovelace");
    assert_eq!(normalize_name("   "), "");
}

#[test]
fn a_query_and_the_indexed_name_normalise_to_the_same_text() {
    for (indexed, typed) in [("Zoë O'Brien", "zoe o'brien"), ("MÜLLER", "muller")] {
        assert_eq!(normalize_name(indexed), normalize_name(typed));
    }
}

#[test]
fn characters_without_a_latin_spelling_are_kept_not_dropped() {
    let n = normalize_name("Ada \u{E000}");
    assert!(n.starts_with("ada"), "{n}");
    assert!(
        n.len() > 3,
        "the private-use character is not dropped: {n:?}"
    );
}

#[test]
fn emails_are_trimmed_and_lower_cased() {
    assert_eq!(
        normalize_email("  Ada.Lovelace@Example.ORG \n"),
        "ada.lovelace@example.org"
    );
    assert_eq!(normalize_email("ada@example.org"), "ada@example.org");
}
