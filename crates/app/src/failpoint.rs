//! Failpoints for crash tests: `LEDGER_FAILPOINT=<name>` makes the process announce
//! `failpoint <name> reached` on stderr and stop there until it is killed, so a test
//! can `kill -9` it at an exact step. Unset in production, it costs one env lookup.

/// Between appending `CustomerAnonymized` and destroying the data key.
pub const AFTER_ANONYMIZE_APPEND: &str = "after-anonymize-append";

/// In an erasure job's chunk: after filing its requests and appending its
/// erasures, before destroying the keys.
pub const JOB_AFTER_FILE: &str = "job-after-file";

/// In an erasure job's chunk: after destroying the keys, before completing the
/// requests and settling the chunk.
pub const JOB_AFTER_DESTROY: &str = "job-after-destroy";

/// Parks the process here forever if the failpoint `name` is armed.
pub fn hit(name: &str) {
    if std::env::var("LEDGER_FAILPOINT").is_ok_and(|v| v == name) {
        eprintln!("failpoint {name} reached");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}
