//! The OS lock on `<data_dir>/deploy.lock` that serializes every job changing the filesystem,
//! whichever process runs it.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

use anyhow::Context;

/// Held while a job changes the filesystem; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct DeployLock {
    _file: File,
}

impl DeployLock {
    /// Takes the lock if no other process holds it.
    pub fn try_acquire(path: &Path) -> anyhow::Result<Option<DeployLock>> {
        let file = open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(DeployLock { _file: file })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
    }

    /// Takes the lock, calling `waiting` once first if another process holds it.
    pub fn acquire(path: &Path, waiting: impl FnOnce()) -> anyhow::Result<DeployLock> {
        let file = open(path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                waiting();
                file.lock()
                    .with_context(|| format!("cannot lock {}", path.display()))?;
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
        Ok(DeployLock { _file: file })
    }
}

fn open(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))
}
