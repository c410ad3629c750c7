//! `eqaug-nn`: the networks of experiments E1-E4 (SPEC sections 3-4) with hand-written,
//! exact gradients, generic over `f32` and `f64`.
//!
//! * A network is described declaratively by a [`NetworkSpec`] (serde, so a TOML config can
//!   embed it) and compiled against a group and an input representation into a [`Network`].
//!   The network holds only structure; weights live in [`Params`], one flat vector viewed per
//!   tensor, which also serves as the gradient store (same layout).
//! * Activations of a chunk are a 2-D row-major array, one row per sample, features
//!   channel-major `(c, s)`. Every linear layer is one GEMM forward (`Y = X W^T`) and at most
//!   two backward (`dX = dY W`, `dW += dY^T X`); group structure only enters through the
//!   projection [`Params::project_group_layers`], never in the hot loop.
//! * Normalisation statistics are taken per mini-batch (consecutive groups of rows inside a
//!   chunk), so a chunk of 500 rows with mini-batches of 25 gives the same loss and gradient as
//!   20 chunks of 25.
//! * Computing a gradient ([`Network::loss_and_grad`]) is separate from applying it
//!   ([`Params::axpy`]): the training strategies differ exactly in between.
#![warn(missing_docs)]

mod error;
mod network;
mod ops;
mod params;
mod spec;
mod transform;

pub use eqaug_groups::{Group, Perm, Points, Projector, Real, Rep};
pub use error::NnError;
pub use network::{Network, Workspace};
pub use params::{Layout, Params, TensorInfo, TensorKind, TensorView, TensorViewMut};
pub use spec::{LayerSpec, Loss, NetworkSpec, NormOver, Normalisation, PointsSpec};
pub use transform::act_on_rows;

/// Converts an `f64` constant to `T` (exact for the constants used in this crate).
#[inline]
pub(crate) fn c<T: Real>(x: f64) -> T {
    T::from_f64(x).expect("f64 constant representable in T")
}
