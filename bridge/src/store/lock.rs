//! One process per store: the relay holds an exclusive lock on `<store>.lock` for its whole
//! life (the kernel drops it when the process dies, however it dies). Two relays started on one
//! store — the same replica started twice — are refused with a named error; and a process that
//! holds the lock knows no other process of this replica is alive *at this place*.
//!
//! The place is the [`holder`](StoreLock::holder) identity: the host's boot id and the lock
//! file's device and inode. A store copied to another host or another directory, or restored
//! from a backup, carries the records of the original but not its place, so it never passes for
//! the process that wrote them.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

/// Why the store could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum StoreLockError {
    /// Another process holds the lock.
    #[error(
        "another relay process holds the store {0} (the same replica started twice?); stop it, or give this one its own store.path"
    )]
    InUse(PathBuf),
    /// The lock file cannot be created or locked.
    #[error("cannot lock the store at {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The exclusive lock on a store, held until dropped.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
    holder: Option<String>,
}

impl StoreLock {
    /// Lock the store at `store_path` (its `.lock` sibling), without waiting.
    pub fn acquire(store_path: &Path) -> Result<Self, StoreLockError> {
        let path = lock_path(store_path);
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let io = |source| StoreLockError::Io {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(StoreLockError::InUse(store_path.into())),
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let holder = place(&file);
        Ok(Self {
            _file: file,
            holder,
        })
    }

    /// Who holds the store, as a place: the same string only for a process of this host's
    /// current boot holding this very lock file (`None` where the platform does not say; then
    /// nothing is ever resumed).
    pub fn holder(&self) -> Option<&str> {
        self.holder.as_deref()
    }
}

fn lock_path(store_path: &Path) -> PathBuf {
    let mut name = store_path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

#[cfg(unix)]
fn place(file: &File) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let boot = boot.trim();
    if boot.is_empty() {
        return None;
    }
    let meta = file.metadata().ok()?;
    Some(format!("{boot}/{}/{}", meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn place(_file: &File) -> Option<String> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("relay.sqlite");
        let first = StoreLock::acquire(&store).unwrap();
        let err = StoreLock::acquire(&store).unwrap_err();
        assert!(matches!(err, StoreLockError::InUse(_)), "{err}");
        assert!(err.to_string().contains("started twice"), "{err}");
        let place = first.holder().map(str::to_owned);
        drop(first);
        let again = StoreLock::acquire(&store).unwrap();
        assert_eq!(
            again.holder().map(str::to_owned),
            place,
            "the same lock file is the same place"
        );
    }

    #[test]
    fn a_copied_store_is_another_place() {
        let dir = tempfile::tempdir().unwrap();
        let a = StoreLock::acquire(&dir.path().join("a/relay.sqlite")).unwrap();
        std::fs::create_dir_all(dir.path().join("b")).unwrap();
        std::fs::copy(
            dir.path().join("a/relay.sqlite.lock"),
            dir.path().join("b/relay.sqlite.lock"),
        )
        .unwrap();
        let b = StoreLock::acquire(&dir.path().join("b/relay.sqlite")).unwrap();
        assert!(a.holder().is_some(), "Linux names the place");
        assert_ne!(a.holder(), b.holder());
    }
}
