//! File-system helpers shared by the runner and the report: one atomic write, one I/O error.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// An I/O error on a named file or folder.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct IoError {
    /// The file or folder.
    pub path: PathBuf,
    /// The underlying error.
    pub source: std::io::Error,
}

impl IoError {
    /// Wraps `source`, naming `path`.
    pub fn new(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        IoError {
            path: path.into(),
            source,
        }
    }

    /// A closure for `map_err` naming `path`.
    pub fn at(path: &Path) -> impl FnOnce(std::io::Error) -> IoError + '_ {
        move |source| IoError::new(path, source)
    }
}

/// A temporary name beside `path` that no other writer uses: `<path>.tmp-<pid>-<n>`, with
/// `n` counting the calls of this process (so concurrent writers of the same file, in other
/// processes or threads, never share a temporary file).
pub fn temp_name(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}-{n}", std::process::id()));
    PathBuf::from(tmp)
}

/// Writes `bytes` to `path` atomically: to a [`temp_name`] first, then renamed over `path`,
/// so that a reader never sees a half-written file and concurrent writers do not collide
/// (the last rename wins, whole).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    let tmp = temp_name(path);
    if let Err(e) = std::fs::write(&tmp, bytes) {
        let _ = std::fs::remove_file(&tmp);
        return Err(IoError::new(tmp, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        IoError::new(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Eight threads writing the same file at once: every write succeeds, the result is one
    /// of the contents whole, and no temporary file is left.
    #[test]
    fn concurrent_atomic_writes_do_not_collide() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("experiment.json");
        std::thread::scope(|s| {
            for t in 0..8u8 {
                let path = &path;
                s.spawn(move || {
                    for _ in 0..50 {
                        write_atomic(path, &vec![b'a' + t; 1000]).unwrap();
                    }
                });
            }
        });
        let got = std::fs::read(&path).unwrap();
        assert_eq!(got.len(), 1000);
        assert!(got.iter().all(|&b| b == got[0]));
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert_ne!(temp_name(&path), temp_name(&path));
    }
}
