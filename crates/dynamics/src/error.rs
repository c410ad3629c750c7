//! Errors of eqaug-dynamics.

/// What can stop training.
#[derive(Debug, thiserror::Error)]
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
