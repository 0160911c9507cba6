//! The `ledger` binary: everything is in the library (`ledger_cli::main`).

fn main() -> std::process::ExitCode {
    ledger_cli::main()
}
