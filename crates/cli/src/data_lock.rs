//! One serving process per data directory: an advisory lock on `DIR/trove.lock`, held for the
//! process's lifetime, that also names its holder (pid, command, addresses) to whoever is refused.
//!
//! `trove up` and `trove server` take it: two of them on one SQLite data directory overwrite
//! each other's state. `trove admin` does not: it works on a running installation on purpose
//! (SQLite's own locking keeps its writes safe). Several server nodes sharing one database (the
//! Data Center shape in ARCHITECTURE.md) would each have a data directory of their own.
//!
//! The lock is flock(2) (`File::try_lock`), so the kernel drops it when the process ends, however
//! it ends: no stale lock to clean up after a crash. The file itself is left in place.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

pub const LOCK_FILE: &str = "trove.lock";

/// The held lock; dropping it (or exiting) releases it.
pub struct DataLock {
    file: File,
    path: PathBuf,
    command: String,
}

impl DataLock {
    /// Takes the data directory's lock for `command` (like `trove up`), or says who holds it.
    /// The directory must exist.
    pub fn acquire(data: &Path, command: &str) -> anyhow::Result<DataLock> {
        let path = data.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open the lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                let holder = holder.trim();
                let holder = if holder.is_empty() { "another process, still starting".to_string() } else { holder.to_string() };
                bail!(
                    "the data directory {} is in use by {holder}; stop that one first, or give this one its own --data directory \
                     (two processes on one data directory overwrite each other's state; `trove admin --data` works while it runs)",
                    data.display()
                );
            }
            Err(TryLockError::Error(e)) => return Err(e).with_context(|| format!("cannot lock {}", path.display())),
        }
        let mut lock = DataLock { file, path, command: command.to_string() };
        lock.record(&[])?;
        Ok(lock)
    }

    /// Writes who holds the lock: pid, command and the addresses it serves (`("https", addr)`),
    /// for the message a second process shows.
    pub fn record(&mut self, addrs: &[(&str, String)]) -> anyhow::Result<()> {
        let mut line = format!("`{}` (pid {})", self.command, std::process::id());
        if !addrs.is_empty() {
            let list: Vec<String> = addrs.iter().map(|(what, a)| format!("{what} {a}")).collect();
            line.push_str(&format!(" serving {}", list.join(", ")));
        }
        line.push('\n');
        let write = |f: &mut File| -> std::io::Result<()> {
            f.set_len(0)?;
            f.seek(SeekFrom::Start(0))?;
            f.write_all(line.as_bytes())?;
            f.flush()
        };
        write(&mut self.file).with_context(|| format!("cannot write {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_naming_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = DataLock::acquire(dir.path(), "trove up").unwrap();
        first.record(&[("https", "127.0.0.1:8443".into())]).unwrap();
        let err = DataLock::acquire(dir.path(), "trove server").err().expect("second lock must fail").to_string();
        assert!(err.contains(&format!("`trove up` (pid {}) serving https 127.0.0.1:8443", std::process::id())), "{err}");
        drop(first);
        DataLock::acquire(dir.path(), "trove server").expect("free again once the first is dropped");
    }
}
