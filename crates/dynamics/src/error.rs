//! Errors of eqaug-dynamics.

/// What can stop training.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// The loss or a weight became NaN or infinite.
    #[error("strategy `{strategy}` diverged at epoch {epoch}: {what} is not finite")]
    NonFinite {
        /// Strategy name.
        strategy: String,
        /// The epoch whose step produced the non-finite value (1-based; 0 = at the start).
        epoch: usize,
        /// `loss` or `weights`.
        what: &'static str,
    },
    /// The loss or the weights grew beyond [`crate::Divergence`]'s bounds.
    #[error("strategy `{strategy}` diverged at epoch {epoch}: {why}")]
    Diverged {
        /// Strategy name.
        strategy: String,
        /// The epoch at which it was detected.
        epoch: usize,
        /// What grew, and by how much.
        why: String,
    },
    /// The protocol or strategy is not usable as given.
    #[error("invalid training set-up: {0}")]
    Invalid(String),
    /// A group error (e.g. exact augmentation over a group too large to enumerate).
    #[error(transparent)]
    Group(#[from] eqaug_groups::GroupError),
    /// A network error.
    #[error(transparent)]
    Nn(#[from] eqaug_nn::NnError),
}

/// What can stop a stability analysis.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
