//! The report's errors, each naming the file involved, and writing its files.

use crate::io::{write_atomic, IoError};
use crate::schema::SchemaError;
use std::path::{Path, PathBuf};

/// Errors of the report, each naming the file involved.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file or folder could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A results file (JSON, CSV) is malformed or invalid.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// `DIR` holds no experiment folder.
    #[error(
        "{}: no experiment found (expected sub-folders holding an experiment.json)",
        dir.display()
    )]
    NoExperiments {
        /// The folder given to `report`.
        dir: PathBuf,
    },
    /// A figure could not be drawn.
    #[error("{}: cannot draw the figure: {message}", path.display())]
    Figure {
        /// The figure file.
        path: PathBuf,
        /// plotters' error.
        message: String,
    },
}

impl From<IoError> for ReportError {
    fn from(e: IoError) -> Self {
        ReportError::Io {
            path: e.path,
            source: e.source,
        }
    }
}

/// Writes a file atomically, recording it in `written`.
pub(crate) fn write_file(
    path: &Path,
    contents: &str,
    written: &mut Vec<PathBuf>,
) -> Result<(), ReportError> {
    write_atomic(path, contents.as_bytes())?;
    written.push(path.to_path_buf());
    Ok(())
}
