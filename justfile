# Compliance ledger. `just` lists the recipes; `just ready` runs exactly what CI runs.

default:
    @just --list

# What CI runs: format check, clippy (warnings are errors), all tests.
ready:
    bash .ci/run

# The README's test command (every store backend built in, as CI does).
test:
    cargo test --workspace --all-features

# Fill ./ledger-data with the demo data set.
demo:
    cargo run --release --bin ledger -- demo

# Audit the embedded store in ./ledger-data.
verify:
    cargo run --release --bin ledger -- audit verify

# `ledger bench` and the Python eventsourcing peer, in one run.
bench *ARGS:
    scripts/bench-vs-peer.sh {{ARGS}}

fmt:
    cargo fmt --all

# Rerun every benchmark the README quotes and print its tables (with date and machine).
figures:
    scripts/readme-figures.sh
