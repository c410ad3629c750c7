//! File-system helpers shared by the runner and the report: one atomic write, one I/O error.

use std::path::{Path, PathBuf};

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

/// Writes `bytes` to `path` atomically: to `<path>.tmp` first, then renamed over `path`, so
/// that a reader never sees a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(IoError::at(&tmp))?;
    std::fs::rename(&tmp, path).map_err(IoError::at(path))
}
