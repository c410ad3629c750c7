//! The layer kinds, one module each, behind the [`Layer`] trait.
//!
//! A layer is described by the widths of its input and output rows (features of one sample,
//! channel-major), the parameter tensors it owns ([`ParamEntry`], each with its own
//! [`TensorKind`], so a weight can carry the projector of whatever group constrains it), its
//! initialisation, and its forward and backward passes on a chunk of rows. Nothing in the
//! trait refers to the network's group: a layer that changes the grid (pooling) or whose
//! weight is projected by another group's projector fits the same way.
//!
//! Layers are executed in sequence by [`crate::Sequential`]; [`crate::Network`] builds the
//! sequence from a [`crate::NetworkSpec`] through the crate-private `layers::build`, the one
//! registration point of the config-level layer kinds.
//!
//! The layers' own constructors (`Dense::new`, `LayerNorm::new`, ...) check their arguments
//! and report a bad one as [`NnError::InvalidSpec`] with `layer: 0` (a layer built directly
//! has no index in a spec).
//!
//! | module | layer | parameters |
//! |---|---|---|
//! | [`group_linear`] | [`GroupLinear`]: `rep_in -> rep_out`, projected onto E | `weight` |
//! | [`dense`] | [`Dense`]: between trivial representations | `weight`, optional `bias` |
//! | [`activation`] | [`Pointwise`]: LeakyReLU, smooth LeakyReLU, tanh, sigmoid, softplus | - |
//! | [`softmax`] | [`Softmax`] over each row | - |
//! | [`batch_norm`] | [`BatchNorm`] per mini-batch, affine | `scale`, `shift` |
//! | [`layer_norm`] | [`LayerNorm`] per row, no affine | - |

use std::fmt;
use std::sync::Arc;

use eqaug_groups::{Group, Real, Rep};
use rand::RngCore;

use crate::params::TensorKind;
use crate::{LayerSpec, NnError};

pub mod activation;
pub mod batch_norm;
pub mod dense;
pub mod group_linear;
pub mod layer_norm;
pub mod linear;
mod norm;
pub mod softmax;

pub use activation::{HyperparameterError, Pointwise, PointwiseFn};
pub use batch_norm::BatchNorm;
pub use dense::Dense;
pub use group_linear::GroupLinear;
pub use layer_norm::LayerNorm;
pub use softmax::Softmax;

/// Normalisation epsilon (PyTorch's default for batch and layer norm).
pub const NORM_EPS: f64 = 1e-5;

/// One parameter tensor a layer owns. The executor lays a layer's tensors out consecutively,
/// in the order of [`Layer::params`], and names them `layer{i}.{name}`.
#[derive(Clone, Debug)]
pub struct ParamEntry {
    /// Name within the layer (`weight`, `bias`, `scale`, ...).
    pub name: &'static str,
    /// Shape (row-major).
    pub shape: Vec<usize>,
    /// What the tensor is; [`TensorKind::Group`] carries the projector onto E.
    pub kind: TensorKind,
}

impl ParamEntry {
    /// Number of scalars (product of the shape).
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    /// Whether the tensor has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Buffers a layer keeps from its forward pass to its backward pass (e.g. the normalised
/// values and inverse standard deviations of batch norm). Owned by the [`crate::Workspace`],
/// one per layer; the layer grows them as it needs (they start empty).
#[derive(Clone, Debug, Default)]
pub struct LayerState<T> {
    /// Saved activations (layer-defined layout).
    pub saved: Vec<T>,
    /// Saved statistics (layer-defined layout).
    pub stats: Vec<T>,
}

/// Grows `v` with zeros to at least `n` entries.
pub(crate) fn grow<T: Real>(v: &mut Vec<T>, n: usize) {
    if v.len() < n {
        v.resize(n, T::zero());
    }
}

/// The mini-batches `[b0, b1)` of a chunk of `r` rows: consecutive groups of `mb` rows, the
/// last possibly smaller.
pub(crate) fn batches(r: usize, mb: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..r).step_by(mb).map(move |b0| (b0, (b0 + mb).min(r)))
}

/// The arguments of [`Layer::forward`] for a chunk of `rows` rows.
#[derive(Debug)]
pub struct Forward<'a, T> {
    /// The layer's parameters: its tensors consecutively, in the order of [`Layer::params`].
    pub params: &'a [T],
    /// Input, `rows x input_width`, row-major.
    pub input: &'a [T],
    /// Output to write, `rows x output_width`, row-major.
    pub output: &'a mut [T],
    /// Rows (samples) of the chunk.
    pub rows: usize,
    /// Mini-batch size: statistics across rows are taken per group of `minibatch`
    /// consecutive rows (the last may be smaller).
    pub minibatch: usize,
    /// The layer's own buffers, kept until [`Layer::backward`].
    pub state: &'a mut LayerState<T>,
    /// Scratch shared by all layers (grow it as needed; contents are not kept).
    pub scratch: &'a mut Vec<T>,
}

/// The arguments of [`Layer::backward`], called after [`Layer::forward`] on the same chunk.
#[derive(Debug)]
pub struct Backward<'a, T> {
    /// The layer's parameters (as in [`Forward::params`]).
    pub params: &'a [T],
    /// The gradient store for the layer's parameters (same layout): ADD into it.
    pub grads: &'a mut [T],
    /// The forward input, `rows x input_width`.
    pub input: &'a [T],
    /// The forward output, `rows x output_width`.
    pub output: &'a [T],
    /// Gradient of the loss w.r.t. the output, `rows x output_width`; a layer with equal
    /// input and output widths may overwrite it with the input gradient ([`GradIn::InDy`]).
    pub dy: &'a mut [T],
    /// Where to write the input gradient (`rows x input_width`), or `None` if it is not
    /// needed (the first layer with parameters).
    pub dx: Option<&'a mut [T]>,
    /// Rows of the chunk.
    pub rows: usize,
    /// Mini-batch size (as in the forward pass).
    pub minibatch: usize,
    /// The layer's buffers from the forward pass.
    pub state: &'a LayerState<T>,
    /// Scratch shared by all layers.
    pub scratch: &'a mut Vec<T>,
    /// Whether the parameter gradient is wanted. When false (the exact Hessian-vector product
    /// from scratch only needs the input gradients), a layer may skip it; [`Backward::grads`]
    /// is then scratch.
    pub param_grads: bool,
}

/// The arguments of [`Layer::forward_tangent`]: the directional derivative of the forward
/// pass along a tangent of the input and of the parameters, called after [`Layer::forward`]
/// on the same chunk (its output and state are the point's).
#[derive(Debug)]
pub struct TangentForward<'a, T> {
    /// The layer's parameters at the point.
    pub params: &'a [T],
    /// The tangent of the parameters (same layout as `params`).
    pub params_dot: &'a [T],
    /// The forward input, `rows x input_width`.
    pub input: &'a [T],
    /// The tangent of the input, or `None` when it is zero (the data, or every layer before
    /// this one is parameter-free).
    pub input_dot: Option<&'a [T]>,
    /// The forward output, `rows x output_width`.
    pub output: &'a [T],
    /// Where to write the output's tangent, `rows x output_width`.
    pub output_dot: &'a mut [T],
    /// Rows of the chunk.
    pub rows: usize,
    /// Mini-batch size (as in the forward pass).
    pub minibatch: usize,
    /// The layer's buffers from the forward pass.
    pub state: &'a LayerState<T>,
    /// The layer's buffers kept from this pass to [`Layer::backward_tangent`].
    pub tstate: &'a mut LayerState<T>,
    /// Scratch shared by all layers.
    pub scratch: &'a mut Vec<T>,
}

/// The arguments of [`Layer::backward_tangent`]: the directional derivative of the backward
/// pass (Pearlmutter's R-operator), called after [`Layer::forward_tangent`] on the same chunk.
/// With `ybar` the gradient of the loss w.r.t. the output at the point and `ybar_dot` its
/// tangent, the layer ADDS the tangent of its parameter gradient (its block of `H v`) into
/// `grads_dot` and writes the tangent of its input gradient.
#[derive(Debug)]
pub struct TangentBackward<'a, T> {
    /// The layer's parameters at the point.
    pub params: &'a [T],
    /// The tangent of the parameters.
    pub params_dot: &'a [T],
    /// Where to ADD the tangent of the parameter gradient (same layout as `params`).
    pub grads_dot: &'a mut [T],
    /// The forward input.
    pub input: &'a [T],
    /// The input's tangent (`None`: zero).
    pub input_dot: Option<&'a [T]>,
    /// The forward output.
    pub output: &'a [T],
    /// The output's tangent (from [`Layer::forward_tangent`]).
    pub output_dot: &'a [T],
    /// The gradient w.r.t. the output at the point, `rows x output_width`.
    pub ybar: &'a [T],
    /// Its tangent; a layer with equal widths may overwrite it with the input gradient's
    /// tangent ([`GradIn::InDy`]).
    pub ybar_dot: &'a mut [T],
    /// Where to write the tangent of the input gradient, or `None` if not needed.
    pub xbar_dot: Option<&'a mut [T]>,
    /// Rows of the chunk.
    pub rows: usize,
    /// Mini-batch size.
    pub minibatch: usize,
    /// The layer's buffers from the forward pass.
    pub state: &'a LayerState<T>,
    /// The layer's buffers from the tangent forward pass.
    pub tstate: &'a LayerState<T>,
    /// Scratch shared by all layers.
    pub scratch: &'a mut Vec<T>,
}

/// Where [`Layer::backward`] left the input gradient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GradIn {
    /// In place, in [`Backward::dy`] (input and output widths are equal).
    InDy,
    /// In [`Backward::dx`] (when it was given).
    InDx,
}

/// A layer: widths, parameter tensors, initialisation, forward and exact backward on chunks
/// of rows (one sample per row).
///
/// Implement it for a new layer kind and put the layer in a [`crate::Sequential`] (or, for a
/// layer available from a config, add its [`LayerSpec`] variant and one arm in
/// `layers::build`).
/// `T` is `f32` or `f64`; parameters are initialised in `f64` and cast.
///
/// ```
/// use eqaug_nn::layers::{Backward, Forward, GradIn, Layer};
/// use eqaug_nn::{Loss, Real, Sequential};
/// use std::sync::Arc;
///
/// /// `y = 2 x`, no parameters.
/// #[derive(Debug)]
/// struct Double(usize);
///
/// impl<T: Real> Layer<T> for Double {
///     fn kind(&self) -> &'static str { "double" }
///     fn input_width(&self) -> usize { self.0 }
///     fn output_width(&self) -> usize { self.0 }
///     fn forward(&self, f: Forward<'_, T>) {
///         for (o, &x) in f.output.iter_mut().zip(f.input) { *o = x + x; }
///     }
///     fn backward(&self, b: Backward<'_, T>) -> GradIn {
///         b.dy.iter_mut().for_each(|d| *d = *d + *d);
///         GradIn::InDy
///     }
/// }
///
/// let dense = eqaug_nn::layers::Dense::new(3, 2, 0.5, true).unwrap();
/// let layers: Vec<Arc<dyn Layer<f64>>> = vec![Arc::new(Double(3)), Arc::new(dense)];
/// let seq = Sequential::new(layers, Loss::Mse, 1).unwrap();
/// assert_eq!((seq.input_width(), seq.output_width(), seq.num_params()), (3, 2, 8));
/// ```
pub trait Layer<T: Real>: Send + Sync + fmt::Debug {
    /// The layer's type name (as in a config), used in errors.
    fn kind(&self) -> &'static str;
    /// Features per input row.
    fn input_width(&self) -> usize;
    /// Features per output row.
    fn output_width(&self) -> usize;
    /// The parameter tensors, in layout order (none by default).
    fn params(&self) -> Vec<ParamEntry> {
        Vec::new()
    }
    /// Initialises the layer's parameters (all its tensors, consecutively, in `f64`; they
    /// start at zero). Tensors with a projector are projected onto E afterwards by the
    /// executor. Draw from `rng` only, in a fixed order.
    fn init(&self, params: &mut [f64], rng: &mut dyn RngCore) {
        let _ = (params, rng);
    }
    /// Forward pass on a chunk.
    fn forward(&self, f: Forward<'_, T>);
    /// Backward pass on the chunk of the last forward pass: adds the parameter gradient into
    /// [`Backward::grads`] and, unless [`Backward::dx`] is `None` and the layer does not
    /// work in place, writes the input gradient.
    fn backward(&self, b: Backward<'_, T>) -> GradIn;
    /// Floating-point operations (2 x multiply-adds) of the forward pass per sample, for
    /// the GEMM layers (0 by default).
    fn flops_per_sample(&self) -> usize {
        0
    }
    /// Whether the layer implements [`Layer::forward_tangent`] and [`Layer::backward_tangent`]
    /// (false by default), which the exact Hessian-vector product
    /// ([`crate::Sequential::hvp`]) needs of every layer.
    fn has_tangent(&self) -> bool {
        false
    }
    /// The tangent forward pass (see [`TangentForward`]). Only called when
    /// [`Layer::has_tangent`] is true; the default panics.
    fn forward_tangent(&self, t: TangentForward<'_, T>) {
        let _ = t;
        panic!("layer `{}` has no tangent pass", self.kind());
    }
    /// The second-order backward pass (see [`TangentBackward`]). Only called when
    /// [`Layer::has_tangent`] is true; the default panics.
    fn backward_tangent(&self, t: TangentBackward<'_, T>) -> GradIn {
        let _ = t;
        panic!("layer `{}` has no tangent pass", self.kind());
    }
    /// Whether every output row is a probability vector (a softmax): the loss
    /// [`crate::Loss::CrossEntropyOnProbabilities`] needs such a last layer and
    /// [`crate::Loss::CrossEntropyLogits`] refuses one. False by default.
    fn outputs_probabilities(&self) -> bool {
        false
    }
    /// Input values where the layer is not differentiable (`[0]` for LeakyReLU), used by
    /// [`crate::Sequential::min_abs_preactivation`]. None by default.
    fn kinks(&self) -> &[f64] {
        &[]
    }
}

/// What [`build`] needs to compile one [`LayerSpec`] of a network over one group.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BuildCtx<'a> {
    /// Index of the layer in the spec.
    pub index: usize,
    /// The spec being built.
    pub spec: &'a LayerSpec,
    /// The network's group.
    pub group: &'a Group,
    /// The layer's input representation.
    pub rep: Rep,
}

impl BuildCtx<'_> {
    pub(crate) fn shape_err(&self, message: String) -> NnError {
        NnError::Shape {
            layer: self.index,
            kind: self.spec.kind(),
            message,
        }
    }
    pub(crate) fn invalid(&self, message: String) -> NnError {
        NnError::InvalidSpec {
            layer: self.index,
            kind: self.spec.kind(),
            message,
        }
    }
    pub(crate) fn width(&self) -> usize {
        self.rep.dim(self.group)
    }
    pub(crate) fn positions(&self) -> usize {
        self.rep.positions(self.group)
    }
    pub(crate) fn describe(&self) -> String {
        format!(
            "{} channel(s) x {} position(s) ({:?})",
            self.rep.channels,
            self.positions(),
            self.rep.points
        )
    }
}

/// A layer built from a spec and its output representation.
pub(crate) type Built<T> = (Arc<dyn Layer<T>>, Rep);

/// Compiles one layer of a [`crate::NetworkSpec`]: the registration point of the config-level
/// layer kinds (one arm per kind; the checks live in each layer's module).
pub(crate) fn build<T: Real>(ctx: &BuildCtx<'_>) -> Result<Built<T>, NnError> {
    match *ctx.spec {
        LayerSpec::Group {
            channels,
            points,
            init_std,
            constant_over_positions,
        } => group_linear::from_spec(ctx, channels, points, init_std, constant_over_positions),
        LayerSpec::Dense {
            out,
            init_scale,
            bias,
        } => dense::from_spec(ctx, out, init_scale, bias),
        LayerSpec::LeakyRelu { slope } => {
            activation::from_spec(ctx, PointwiseFn::LeakyRelu { slope })
        }
        LayerSpec::SmoothLeakyRelu { slope, sharpness } => {
            activation::from_spec(ctx, PointwiseFn::SmoothLeakyRelu { slope, sharpness })
        }
        LayerSpec::Tanh => activation::from_spec(ctx, PointwiseFn::Tanh),
        LayerSpec::Sigmoid => activation::from_spec(ctx, PointwiseFn::Sigmoid),
        LayerSpec::Softplus => activation::from_spec(ctx, PointwiseFn::Softplus),
        LayerSpec::Softmax => softmax::from_spec(ctx),
        LayerSpec::BatchNorm { over } => batch_norm::from_spec(ctx, over),
        LayerSpec::LayerNorm { over } => layer_norm::from_spec(ctx, over),
    }
}
