//! The `ledger` program, built as this package's own binary so that `cargo test`
//! builds it before the suites that run it (see the package's README.md).

fn main() -> std::process::ExitCode {
    ledger_cli::main()
}
