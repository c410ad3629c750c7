//! `eqaug-nn`: the networks of experiments E1-E4 (docs/science.md §3-§4) with hand-written,
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
//! * Computing a gradient ([`Sequential::loss_and_grad`], also called on a [`Network`]) is
//!   separate from applying it ([`Params::axpy`]): the training strategies differ exactly in
//!   between. `loss_and_grad` overwrites the gradient store with one chunk's gradient;
//!   [`Sequential::accumulate_loss_and_grad`] adds into it, to sum over chunks.
//! * A call whose arguments do not fit the network (input width, target shape, parameters of
//!   another network, a mini-batch of 0) returns [`NnError::Input`] naming the argument.
//! * The `ndarray` and `rand` versions of this API are re-exported ([`ndarray`], [`rand`]).
//! * Each layer kind lives in its own module of [`layers`] (group linear, dense, pointwise
//!   activations, softmax, batch norm, layer norm) and implements the [`Layer`] trait: input
//!   and output widths, parameter tensors (each with its own [`TensorKind`], so a weight
//!   carries the projector of whichever group constrains it, optionally with a support mask),
//!   initialisation, forward and backward. [`Sequential`] executes a list of layers with a
//!   loss (layout, initialisation, workspace, forward, loss, gradient); a [`Network`] is a
//!   `Sequential` compiled from a [`NetworkSpec`] over one group, which adds the
//!   representations between the layers.
//!
//! ```
//! use eqaug_nn::ndarray::Array2;
//! use eqaug_nn::rand::SeedableRng;
//! use eqaug_nn::{Group, Loss, Network, NetworkSpec, Normalisation, Rep};
//!
//! // E2 at a reduced size: 2-D translations of a 5 x 5 grid, 4 channels, 3 classes.
//! let group = Group::builtin("trans2d", 5).unwrap();
//! let spec = NetworkSpec::invariant_classifier(5, 4, 3, Normalisation::Batch);
//! let net = Network::<f32>::new(&spec, group, Rep::base(1), Loss::CrossEntropyOnProbabilities)?;
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
//! let mut params = net.init_params(&mut rng); // group layers start in E
//! assert!(params.distance_to_equivariant() < 1e-6);
//!
//! let x = Array2::<f32>::from_shape_fn((50, net.input_width()), |(i, j)| ((i * j) % 7) as f32 / 7.0);
//! let mut t = Array2::<f32>::zeros((50, net.output_width()));
//! t.column_mut(0).fill(1.0);
//! let (mut grads, mut ws) = (net.zeros(), net.workspace(50));
//! let loss_sum = net.loss_and_grad(&params, x.view(), t.view(), 25, &mut grads, &mut ws)?;
//! grads.scale(1.0 / 50.0); // gradient of the mean loss
//! grads.project_group_layers(); // the equivariant strategy's direction
//! params.axpy(-1e-2, &grads); // one plain gradient step
//! assert!(loss_sum.is_finite() && params.distance_to_equivariant() < 1e-6);
//!
//! // a chunk of the wrong width is an error naming the argument
//! let bad = Array2::<f32>::zeros((50, 7));
//! let err = net.loss_and_grad(&params, bad.view(), t.view(), 25, &mut grads, &mut ws);
//! assert!(err.unwrap_err().to_string().starts_with("argument `x` does not fit the network"));
//! # Ok::<(), eqaug_nn::NnError>(())
//! ```
//!
//! A network built from layers directly (any layer implementing [`Layer`] fits, e.g. one of
//! another crate):
//!
//! ```
//! use std::sync::Arc;
//! use eqaug_nn::layers::{Dense, Layer, LayerNorm, Pointwise, PointwiseFn};
//! use eqaug_nn::ndarray::Array2;
//! use eqaug_nn::rand::SeedableRng;
//! use eqaug_nn::{Loss, NormOver, Sequential};
//!
//! // 4 features -> 2 channels x 3 positions, each channel's map layer-normalised -> 3 logits
//! let layers: Vec<Arc<dyn Layer<f64>>> = vec![
//!     Arc::new(Dense::new(4, 6, 0.5, true).unwrap()),
//!     Arc::new(Pointwise::new(PointwiseFn::Tanh, 6).unwrap()),
//!     Arc::new(LayerNorm::new(NormOver::Positions, 2, 3).unwrap()),
//!     Arc::new(Dense::new(6, 3, 0.5, false).unwrap()),
//! ];
//! let seq = Sequential::new(layers, Loss::CrossEntropyLogits, 1).unwrap();
//! let params = seq.init_params(&mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
//! let x = Array2::<f64>::from_shape_fn((8, 4), |(i, j)| (i as f64 - j as f64) / 4.0);
//! let mut t = Array2::<f64>::zeros((8, 3));
//! t.column_mut(1).fill(1.0);
//! let (mut grads, mut ws) = (seq.zeros(), seq.workspace(8));
//! let loss_sum = seq.loss_and_grad(&params, x.view(), t.view(), 8, &mut grads, &mut ws)?;
//! assert!(loss_sum.is_finite() && grads.norm() > 0.0);
//! # Ok::<(), eqaug_nn::NnError>(())
//! ```
#![warn(missing_docs)]

// The README's example is compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub mod conv;
mod error;
pub mod layers;
mod loss;
mod network;
mod params;
mod sequential;
mod spec;
pub mod support_cnn;
mod transform;

pub use eqaug_groups::{Group, Perm, Points, Projector, Real, Rep};
pub use error::NnError;
pub use layers::Layer;
pub use network::Network;
pub use params::{Layout, Params, TensorInfo, TensorKind, TensorView, TensorViewMut};
pub use sequential::{Sequential, Workspace};
pub use spec::{Activation, LayerSpec, Loss, NetworkSpec, NormOver, Normalisation};
pub use transform::act_on_rows;

/// The `ndarray` crate of this API (0.16): chunks are [`ndarray::ArrayView2`].
pub use ndarray;
/// The `rand` crate of this API (0.8): initialisation takes a [`rand::Rng`].
pub use rand;

/// Converts an `f64` constant to `T` (exact for the constants used in this crate).
#[inline]
pub(crate) fn c<T: Real>(x: f64) -> T {
    T::from_f64(x).expect("f64 constant representable in T")
}
