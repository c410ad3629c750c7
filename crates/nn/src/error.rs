//! The crate's error type.

use std::path::PathBuf;

/// Errors of `eqaug-nn`: building a network from a spec, calling it with arguments of the
/// wrong shape, and saving / loading parameters.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NnError {
    /// The spec has no layers.
    #[error("the network spec has no layers")]
    EmptyNetwork,
    /// A layer does not fit the representation it receives.
    #[error("layer {layer} ({kind}): {message}")]
    Shape {
        /// Index of the layer in the spec.
        layer: usize,
        /// The layer's type, as in the spec.
        kind: &'static str,
        /// What does not fit, with the shapes involved.
        message: String,
    },
    /// A hyperparameter of a layer is out of range.
    #[error("layer {layer} ({kind}): invalid parameter: {message}")]
    InvalidSpec {
        /// Index of the layer in the spec.
        layer: usize,
        /// The layer's type, as in the spec.
        kind: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The group projector for a group layer could not be built (e.g. an empty E).
    #[error("layer {layer} (group): cannot build the projection onto E")]
    Group {
        /// Index of the layer in the spec.
        layer: usize,
        /// The cause.
        #[source]
        source: eqaug_groups::GroupError,
    },
    /// The loss does not fit the network's output.
    #[error("loss {loss}: {message}")]
    Loss {
        /// The loss, as in the config.
        loss: &'static str,
        /// What does not fit.
        message: String,
    },
    /// A layer has no second-order pass ([`crate::Layer::has_tangent`] is false), so the
    /// exact Hessian-vector product of the network cannot be taken.
    #[error("layer {layer} ({kind}) has no second-order (tangent) pass, so the exact Hessian-vector product is not available; use central differences of the gradient")]
    NoSecondOrder {
        /// Index of the layer.
        layer: usize,
        /// The layer's type.
        kind: &'static str,
    },
    /// A workspace does not hold what the call needs (e.g. no prepared point).
    #[error("workspace: {message}")]
    Workspace {
        /// What is missing.
        message: String,
    },
    /// An argument of a call (input chunk, targets, parameters, workspace, mini-batch size)
    /// does not fit the network.
    #[error("argument `{argument}` does not fit the network: expected {expected}, got {got}")]
    Input {
        /// The argument's name (`x`, `targets`, `params`, `grads`, `minibatch`, `ws`).
        argument: &'static str,
        /// What the network expects.
        expected: String,
        /// What was given.
        got: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A saved parameter set does not match the expected layout or is malformed.
    #[error("{path}: {message}")]
    Format {
        /// The file (manifest or .npy) at fault.
        path: PathBuf,
        /// What does not match.
        message: String,
    },
}

impl NnError {
    pub(crate) fn input(
        argument: &'static str,
        expected: impl std::fmt::Display,
        got: impl std::fmt::Display,
    ) -> Self {
        NnError::Input {
            argument,
            expected: expected.to_string(),
            got: got.to_string(),
        }
    }
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        NnError::Io {
            path: path.into(),
            source,
        }
    }
    pub(crate) fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        NnError::Format {
            path: path.into(),
            message: message.into(),
        }
    }
}
