//! The data folder as the operator sees it: who may write to it, what must exist
//! before a command runs, and the permissions of what is in it.
//!
//! # Why it is shaped this way
//!
//! - **One writer per data folder.** Two processes writing the same SQLite files
//!   each keep their own idea of the log's end; the second one's writes fail, or
//!   worse. So `serve` and every writing command take an exclusive lock on
//!   `DATA/ledger.lock` (`flock`, released by the kernel when the process dies, so
//!   a crash never leaves a stale lock) and write their pid into it; a second
//!   writer is refused with that pid and what to do instead. Read-only commands
//!   take no lock and open every store read-only.
//! - **Nothing is created by mistake.** A mistyped `--data` or `--kek-file` must
//!   not make an empty store (or a new KEK) and report "OK": only `serve` and
//!   `demo` create the folder and the KEK, and say so.
//! - **Files only the service user can read.** The data folder is 0700 and every
//!   file in it 0600, like the KEK: the stores hold sealed data only, but the
//!   wrapped keys and hashes of API keys are nobody else's business either.
//!   SQLite gives its `-wal` and `-shm` files the mode of the database file, so
//!   creating the database files 0600 before SQLite opens them covers those too.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, Write as _};
use std::path::Path;

use anyhow::{bail, Context, Result};

const LOCK_FILE: &str = "ledger.lock";

/// How a command uses the data folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `serve` and `demo`: create the folder and the KEK if missing (and say so),
    /// take the writer lock.
    Create,
    /// Other writing commands: the folder must exist; take the writer lock.
    Write,
    /// Read-only commands: the folder must exist; no lock, nothing written.
    Read,
}

/// The held writer lock; released when dropped or when the process exits.
#[derive(Debug)]
pub struct WriterLock {
    _file: File,
}

/// Makes sure the folder is there as `access` requires, with private
/// permissions when this command may write.
pub fn prepare(data: &Path, access: Access) -> Result<()> {
    if !data.is_dir() {
        if access != Access::Create {
            bail!(
                "no data folder at {} (check --data or LEDGER_DATA; only `ledger serve` and `ledger demo` create one)",
                data.display()
            );
        }
        create_private_dir(data)?;
        eprintln!("created the data folder {} (mode 0700)", data.display());
    }
    if access != Access::Read {
        make_private(data)?;
    }
    Ok(())
}

fn create_private_dir(dir: &Path) -> Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        b.mode(0o700);
    }
    b.create(dir)
        .with_context(|| format!("cannot create data folder {}", dir.display()))
}

/// Creates an empty SQLite database file with mode 0600 if it is missing, before
/// SQLite opens it (SQLite gives its `-wal` and `-shm` files the same mode).
pub fn precreate_private(path: &Path) -> Result<()> {
    if !path.exists() {
        private_options()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
    }
    Ok(())
}

/// Sets 0600 on every file already in the folder, and 0700 on the folder.
fn make_private(data: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let set = |p: &Path, mode: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
                .with_context(|| format!("cannot set the permissions of {}", p.display()))
        };
        set(data, 0o700)?;
        for entry in std::fs::read_dir(data)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                set(&entry.path(), 0o600)?;
            }
        }
    }
    Ok(())
}

fn private_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        o.mode(0o600);
    }
    o
}

/// For a read-only command: takes the writer lock if it is free, so that no
/// writer starts while the command reads (it may then read the files as
/// immutable, creating nothing); `None` if a writer holds it, or if the folder
/// has no lock file (this never creates one), and then the command reads beside
/// the writer. Nothing is written to the lock file.
pub fn try_lock_quietly(data: &Path) -> Option<WriterLock> {
    let file = OpenOptions::new()
        .read(true)
        .open(data.join(LOCK_FILE))
        .ok()?;
    file.try_lock().ok()?;
    Some(WriterLock { _file: file })
}

/// Takes the exclusive writer lock on the data folder, or explains who holds it.
/// `what` names the command, for the holder's record.
pub fn lock(data: &Path, what: &str) -> Result<WriterLock> {
    let path = data.join(LOCK_FILE);
    let mut file = private_options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() {
                "another ledger process".to_owned()
            } else {
                format!("another ledger process ({holder})")
            };
            bail!(
                "{who} is writing to {}: only one process may write to a data folder. \
                 Use the running server's HTTP API instead, or stop it first (read-only \
                 commands such as `audit verify`, `revenue` and `erasures` work beside it)",
                data.display()
            );
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "pid {} ({what})", std::process::id())?;
    file.sync_all()?;
    Ok(WriterLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_with_the_holders_pid_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock(dir.path(), "serve").unwrap();
        let e = lock(dir.path(), "anonymize").unwrap_err().to_string();
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        assert!(e.contains("serve") && e.contains("HTTP API"), "{e}");
        drop(first);
        lock(dir.path(), "anonymize").unwrap();
    }

    #[test]
    fn only_create_makes_a_missing_folder_and_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("a").join("b");
        assert!(prepare(&data, Access::Read).is_err());
        assert!(prepare(&data, Access::Write).is_err());
        assert!(!data.exists(), "nothing created");
        prepare(&data, Access::Create).unwrap();
        precreate_private(&data.join("events.sqlite")).unwrap();
        std::fs::write(data.join("loose.txt"), "x").unwrap();
        prepare(&data, Access::Write).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&data), 0o700);
            assert_eq!(mode(&data.join("events.sqlite")), 0o600);
            assert_eq!(mode(&data.join("loose.txt")), 0o600);
        }
    }
}
