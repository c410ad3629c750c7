//! The crate's error type.

use std::path::PathBuf;

/// Errors of the data loaders and writers. Every message names the file (or parameter)
/// and says what is wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// The file could not be opened, read or written.
    #[error("{}: {action}: {source}", path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// What was being done ("cannot open", "cannot read", ...).
        action: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file does not start with the expected IDX magic number.
    #[error(
        "{}: wrong magic number 0x{found:08x}, expected 0x{expected:08x} ({what}); is this an IDX file of the right kind?",
        path.display()
    )]
    BadMagic {
        /// The file involved.
        path: PathBuf,
        /// The magic number found.
        found: u32,
        /// The magic number expected.
        expected: u32,
        /// What the expected magic number denotes.
        what: &'static str,
    },
    /// The dimensions in the header are invalid (zero where not allowed, or their product
    /// overflows).
    #[error("{}: invalid dimensions {dims:?}: {reason}", path.display())]
    BadDimensions {
        /// The file involved.
        path: PathBuf,
        /// The dimensions read from the header.
        dims: Vec<u64>,
        /// What is wrong with them.
        reason: String,
    },
    /// The file ends before the data its header announces.
    #[error("{}: truncated: the header announces {expected} bytes of {what}, found only {found}", path.display())]
    Truncated {
        /// The file involved.
        path: PathBuf,
        /// What was being read (header or data).
        what: &'static str,
        /// Bytes expected.
        expected: u64,
        /// Bytes found.
        found: u64,
    },
    /// The file holds more bytes than its header announces.
    #[error("{}: {extra_at_least} or more unexpected bytes after the {expected} data bytes announced by the header", path.display())]
    TrailingData {
        /// The file involved.
        path: PathBuf,
        /// Data bytes announced by the header.
        expected: u64,
        /// Lower bound on the number of extra bytes.
        extra_at_least: u64,
    },
    /// The image and label files disagree on the number of samples.
    #[error("{} holds {images} images but {} holds {labels} labels", images_path.display(), labels_path.display())]
    CountMismatch {
        /// The image file.
        images_path: PathBuf,
        /// Number of images.
        images: usize,
        /// The label file.
        labels_path: PathBuf,
        /// Number of labels.
        labels: usize,
    },
    /// A label is outside the allowed range.
    #[error("{}: label {label} at index {index} is not a class in 0..{classes}", path.display())]
    BadLabel {
        /// The label file.
        path: PathBuf,
        /// Index of the offending label.
        index: usize,
        /// The label value.
        label: u8,
        /// Number of classes.
        classes: usize,
    },
    /// Data files were not found.
    #[error("{what} not found in {}: {hint}", dir.display())]
    Missing {
        /// What was looked for.
        what: String,
        /// Where it was looked for.
        dir: PathBuf,
        /// How to get it.
        hint: String,
    },
    /// A generator or loader parameter is out of range.
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParameter {
        /// The parameter's name.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The images have another size than the operation needs.
    #[error(
        "{}: images are {rows} x {cols}, but {what} needs {} x {} images (give the original MNIST files, not resized ones)",
        path.display(), expected.0, expected.1
    )]
    WrongImageSize {
        /// The image file.
        path: PathBuf,
        /// Image height found.
        rows: usize,
        /// Image width found.
        cols: usize,
        /// `(rows, cols)` needed.
        expected: (usize, usize),
        /// The operation.
        what: &'static str,
    },
    /// Writing a `.npy` file failed.
    #[error("{}: cannot write npy: {source}", path.display())]
    Npy {
        /// The file involved.
        path: PathBuf,
        /// The writer's (or the reshape's) error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A data set's arrays do not have consistent shapes.
    #[error("data set `{dataset}`: {reason}")]
    Shapes {
        /// The data set's name.
        dataset: String,
        /// Which shapes disagree.
        reason: String,
    },
}
