//! What can stop a stability analysis.

use crate::TrainError;

/// What can stop a stability analysis.
#[derive(Debug, thiserror::Error)]
pub enum StabilityError {
    /// A training-side error (set-up, network).
    #[error(transparent)]
    Train(#[from] TrainError),
    /// A network error.
    #[error(transparent)]
    Nn(#[from] eqaug_nn::NnError),
    /// A group error (e.g. enumerating a group that is too large).
    #[error(transparent)]
    Group(#[from] eqaug_groups::GroupError),
    /// The request would not fit in memory.
    #[error(
        "{what} needs {needed_mib} MiB but only {available_mib} MiB are available \
         (MemAvailable in /proc/meminfo); lower `{key}` or use a smaller network",
        needed_mib = needed / (1 << 20),
        available_mib = available / (1 << 20)
    )]
    OutOfMemory {
        /// The config key that sets the size.
        key: String,
        /// What needs the memory.
        what: String,
        /// Bytes needed.
        needed: u128,
        /// Bytes available.
        available: u128,
    },
    /// A value out of range or an inconsistent request.
    #[error("stability analysis: {0}")]
    Invalid(String),
}
