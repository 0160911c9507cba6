//! README truth: the endpoint table in README.md lists every operation of the
//! OpenAPI document (which documents every route of the router: the API's own
//! tests and Schemathesis hold the two together), and nothing else.

use std::collections::BTreeSet;

use serde_json::Value;

/// An operation: its method (upper case; `*` for a row that names no method) and
/// its path with every parameter written `{}`.
type Operation = (String, String);

/// `/v1/customers/{id}?q=` → `/v1/customers/{}` (no query, no optional part).
fn normalise(path: &str) -> String {
    let path = path.split(['?', '[']).next().unwrap_or_default();
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push_str("{}");
            }
            '}' => in_param = false,
            _ if in_param => {}
            _ => out.push(c),
        }
    }
    out
}

/// The operations in README.md's endpoint table: each code span of a row's first
/// cell, e.g. `GET/POST /v1/customers/{id}/subscriptions` or `/healthz`.
fn readme_operations(readme: &str) -> BTreeSet<Operation> {
    let table = readme
        .split("| method and path | what |")
        .nth(1)
        .expect("README.md has the endpoint table");
    let mut ops = BTreeSet::new();
    for row in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
        let first = row.split(" | ").next().unwrap_or_default();
        for span in first.split('`').skip(1).step_by(2) {
            match span.split_once(' ') {
                Some((methods, path))
                    if methods.chars().all(|c| c.is_ascii_uppercase() || c == '/') =>
                {
                    for m in methods.split('/') {
                        ops.insert((m.to_owned(), normalise(path)));
                    }
                }
                _ => {
                    ops.insert(("*".to_owned(), normalise(span)));
                }
            }
        }
    }
    ops
}

/// Every operation of the OpenAPI document.
fn documented_operations() -> BTreeSet<Operation> {
    let doc: Value = serde_json::from_str(&ledger_api::openapi_json()).expect("OpenAPI JSON");
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                ops.insert((method.to_uppercase(), normalise(path)));
            }
        }
    }
    ops
}

fn readme() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    std::fs::read_to_string(path).expect("README.md")
}

#[test]
fn the_readme_lists_every_documented_operation() {
    let listed = readme_operations(&readme());
    let missing: Vec<_> = documented_operations()
        .into_iter()
        .filter(|(m, p)| {
            !listed.contains(&(m.clone(), p.clone())) && !listed.contains(&("*".into(), p.clone()))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "not in README.md's endpoint table: {missing:?}"
    );
}

#[test]
fn the_readme_lists_no_operation_the_api_lacks() {
    let documented = documented_operations();
    let paths: BTreeSet<&String> = documented.iter().map(|(_, p)| p).collect();
    let stale: Vec<_> = readme_operations(&readme())
        .into_iter()
        .filter(|(m, p)| {
            if m == "*" {
                !paths.contains(p)
            } else {
                !documented.contains(&(m.clone(), p.clone()))
            }
        })
        .collect();
    assert!(
        stale.is_empty(),
        "in README.md's endpoint table, not in the API: {stale:?}"
    );
}

#[test]
fn the_table_parser_reads_methods_paths_and_bare_paths() {
    let readme = "x\n| method and path | what |\n| --- | --- |\n\
        | `GET/POST /v1/c/{id}/s?q=` | a |\n| `/healthz`, `DELETE /v1/k/{key_id}[?x]` | b |\n\nafter\n| `PUT /v1/no` | c |\n";
    let ops: Vec<_> = readme_operations(readme).into_iter().collect();
    let op = |m: &str, p: &str| (m.to_owned(), p.to_owned());
    assert_eq!(
        ops,
        [
            op("*", "/healthz"),
            op("DELETE", "/v1/k/{}"),
            op("GET", "/v1/c/{}/s"),
            op("POST", "/v1/c/{}/s")
        ]
    );
}
