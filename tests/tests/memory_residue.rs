//! After an erasure, the server's own memory holds none of the customer's opened
//! personal data: the profile opened for the summary, the search index's terms,
//! the Art. 15 export, the response bodies that carried them. The test reads the
//! child's memory through `/proc/<pid>/mem` (Linux; root or the same user).
//!
//! The customer is registered by an earlier server process, so the only copies in
//! the process under test are the ones it opened itself.

use std::io::{Read as _, Seek as _, SeekFrom};

use serde_json::json;

use ledger_system_tests as common;

use common::server::{call, free_port, start, stop, tenant, try_call_with};

/// The customer's personal values, by field. Long and distinctive, so that a hit
/// is the value and not a coincidence.
const FIELDS: &[(&str, &str)] = &[
    ("email", "kunigunde.memscan.4711@example.com"),
    (
        "password_hash",
        "argon2id$v=19$memscan$c2FsdHNhbHQ$aGFzaGhhc2g",
    ),
    ("first_name", "Kunigunde"),
    ("last_name", "Memscanowska"),
    ("address", "Zwoelf Memscanweg 42, Berlin"),
    ("company_name", "Memscan Residue GmbH"),
    ("phone_number", "+49 30 4711 0815 99"),
    ("answer", "Memscanblau-Antwort"),
    ("question", "Lieblingsfarbe-Memscan?"),
    ("registration_ip", "198.51.100.211"),
];

/// (field, what was found) for every value (or its lower-case form, as the search
/// index keeps it) that occurs in the process's writable or readable memory.
fn scan(pid: u32) -> Vec<(String, usize)> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).expect("mem");
    let mut needles: Vec<(String, Vec<u8>)> = Vec::new();
    for (field, value) in FIELDS {
        needles.push((field.to_string(), value.as_bytes().to_vec()));
        let lower = value.to_lowercase();
        if lower != *value {
            needles.push((format!("{field} (lower case)"), lower.into_bytes()));
        }
    }
    let finder: Vec<_> = needles
        .iter()
        .map(|(f, n)| (f.clone(), memchr_find(n)))
        .collect();
    let mut hits: std::collections::BTreeMap<String, usize> = Default::default();
    for line in maps.lines() {
        let mut parts = line.split_whitespace();
        let (Some(range), Some(perms)) = (parts.next(), parts.next()) else {
            continue;
        };
        let path = parts.nth(3).unwrap_or("");
        // The binary's own text and read-only data cannot hold what it opened.
        if !perms.starts_with('r') || path.starts_with('/') && !perms.contains('w') {
            continue;
        }
        if path == "[vvar]" || path == "[vsyscall]" {
            continue;
        }
        let (a, b) = range.split_once('-').unwrap();
        let (a, b) = (
            u64::from_str_radix(a, 16).unwrap(),
            u64::from_str_radix(b, 16).unwrap(),
        );
        let mut buf = vec![0u8; (b - a) as usize];
        if mem.seek(SeekFrom::Start(a)).is_err() || mem.read_exact(&mut buf).is_err() {
            continue;
        }
        for (field, find) in &finder {
            let n = find(&buf);
            if n > 0 {
                *hits
                    .entry(format!(
                        "{field} in {}",
                        if path.is_empty() { "anon" } else { path }
                    ))
                    .or_default() += n;
            }
        }
    }
    hits.into_iter().collect()
}

/// A counter of the occurrences of `needle` in a haystack.
fn memchr_find(needle: &[u8]) -> impl Fn(&[u8]) -> usize {
    let needle = needle.to_vec();
    move |hay: &[u8]| {
        hay.windows(needle.len())
            .filter(|w| *w == needle.as_slice())
            .count()
    }
}

#[test]
fn after_erasure_the_servers_memory_holds_none_of_the_customers_opened_values() {
    if std::fs::metadata("/proc/self/mem").is_err() {
        eprintln!("skipped: no /proc/<pid>/mem on this system");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let port = free_port();

    // An earlier process registers the customer.
    let s = start(&data, port, None);
    let (_, key) = tenant(&s.base, "Memscan Stream");
    let v = |f: &str| FIELDS.iter().find(|(n, _)| *n == f).unwrap().1;
    let (st, r) = call(
        "POST",
        &format!("{}/v1/customers", s.base),
        &key,
        Some(json!({
            "email": v("email"), "password_hash": v("password_hash"),
            "first_name": v("first_name"), "last_name": v("last_name"),
            "address": v("address"), "company_name": v("company_name"),
            "phone_number": v("phone_number"),
            "custom_answers": [{"question": v("question"), "answer": v("answer")}],
            "registration_ip": v("registration_ip"),
        })),
    );
    assert_eq!(st, 201, "{r}");
    let c = r["customer_id"].as_str().unwrap().to_owned();
    stop(s);

    // The process under test opens the customer's data: at start (the search
    // index), for the summary, a name search (the query is a prefix only, so the
    // request itself holds no whole value) and the right-of-access export. The
    // client accepts compressed answers: these must come uncompressed (an encoder's
    // buffers are freed without being cleared; ADR 0020), and so parse as JSON.
    let s = start(&data, port, None);
    let pid = s.child.id();
    let open = |method: &str, path: String, body: Option<serde_json::Value>| {
        let enc = [("Accept-Encoding", "gzip, br")];
        let r = try_call_with(method, &format!("{}{path}", s.base), &key, body, &enc).unwrap();
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        r.body
    };
    let summary = open("GET", format!("/v1/customers/{c}"), None);
    assert_eq!(
        summary["profile"]["email"],
        v("email"),
        "the profile was opened"
    );
    let found = open(
        "POST",
        "/v1/customers/search".into(),
        Some(json!({"q": "Kunig"})),
    );
    assert_eq!(found["items"].as_array().unwrap().len(), 1, "{found}");
    let export = open("GET", format!("/v1/customers/{c}/export"), None);
    assert!(export.is_object(), "{export}");
    let opened = scan(pid);
    assert!(
        opened.iter().any(|(f, _)| f.starts_with("email")),
        "the scan finds the values while the customer exists: {opened:?}"
    );

    // The erasure; then nothing of the customer is left in memory.
    let (st, r) = call(
        "POST",
        &format!("{}/v1/customers/{c}/anonymize", s.base),
        &key,
        None,
    );
    assert_eq!(st, 200, "{r}");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let left = scan(pid);
    stop(s);
    assert!(
        left.is_empty(),
        "after erasure the server's memory still holds: {left:?}"
    );
}
