//! Advisory locks on run folders, so that several `eqaug run` processes (Slurm array tasks,
//! two shells) can write into one output folder without losing runs.
//!
//! Run `r` of an experiment folder `DIR` is guarded by the lock file
//! `DIR/.locks/run-XXX.lock` (an OS file lock, `flock` on Unix): the process that trains the
//! run holds it exclusively until the run's folder is renamed into place. The lock files are
//! never deleted (deleting one while another process waits on it would let two processes
//! hold "the" lock); the OS releases a lock when its holder exits, also when it is killed, so
//! a lock file alone never means a run is in progress. [`is_held`] asks whether a live process
//! holds it (what `eqaug status` shows as "running").

use fs4::{FileExt, TryLockError};
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// The folder of the lock files inside an experiment folder.
pub const LOCK_DIR: &str = ".locks";

/// The lock file of run folder `name` (e.g. `run-003`) in experiment folder `dir`.
pub fn lock_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(LOCK_DIR).join(format!("{name}.lock"))
}

/// An exclusive advisory lock, released when dropped (or when the process ends).
#[derive(Debug)]
pub struct RunLock {
    file: File,
    path: PathBuf,
}

/// Opens (creating it and its folder if needed, never truncating) the lock file at `path`.
fn open_lock_file(path: &Path) -> io::Result<File> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
}

impl RunLock {
    /// Takes the exclusive lock on `path` without waiting, creating the file (and its
    /// folder) if needed. `Ok(None)` when another process holds it.
    pub fn try_acquire(path: &Path) -> io::Result<Option<RunLock>> {
        let file = open_lock_file(path)?;
        // Fully qualified: std's File has inherent lock methods of other signatures.
        match FileExt::try_lock(&file) {
            Ok(()) => Ok(Some(RunLock {
                file,
                path: path.into(),
            })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }

    /// Takes the exclusive lock on `path`, waiting for another holder to release it.
    pub fn acquire(path: &Path) -> io::Result<RunLock> {
        let file = open_lock_file(path)?;
        FileExt::lock(&file)?;
        Ok(RunLock {
            file,
            path: path.into(),
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = FileExt::unlock(&self.file);
    }
}

/// Whether a live process holds the lock file `path` (false when the file does not exist).
///
/// Takes a shared lock for an instant to find out, so a process that tries the exclusive
/// lock at that very instant may see it taken: writers retry briefly (see the runner).
pub fn is_held(path: &Path) -> io::Result<bool> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    match FileExt::try_lock_shared(&file) {
        Ok(()) => {
            let _ = FileExt::unlock(&file);
            Ok(false)
        }
        Err(TryLockError::WouldBlock) => Ok(true),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_within_a_process_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let p = lock_path(dir.path(), "run-000");
        assert!(!is_held(&p).unwrap(), "no file: not held");
        let a = RunLock::try_acquire(&p).unwrap().expect("free");
        assert_eq!(a.path(), p);
        // flock locks belong to the open file description: a second open conflicts even
        // in the same process, as it would in another one.
        assert!(RunLock::try_acquire(&p).unwrap().is_none());
        assert!(is_held(&p).unwrap());
        drop(a);
        assert!(!is_held(&p).unwrap());
        assert!(p.exists(), "lock files are kept");
        let b = RunLock::try_acquire(&p).unwrap();
        assert!(b.is_some());
    }
}
