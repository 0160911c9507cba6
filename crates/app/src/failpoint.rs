//! Failpoints for crash tests: `LEDGER_FAILPOINT=<name>` makes the process announce
//! `failpoint <name> reached` on stderr and stop there until it is killed, so a test
//! can `kill -9` it at an exact step. Unset in production, it costs one env lookup.

/// Between appending `CustomerAnonymized` and destroying the data key.
pub const AFTER_ANONYMIZE_APPEND: &str = "after-anonymize-append";

/// Parks the process here forever if the failpoint `name` is armed.
pub fn hit(name: &str) {
    if std::env::var("LEDGER_FAILPOINT").is_ok_and(|v| v == name) {
        eprintln!("failpoint {name} reached");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}
