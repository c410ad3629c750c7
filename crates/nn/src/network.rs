//! A network compiled from a [`NetworkSpec`] over one group: the layers of [`crate::layers`]
//! in a [`Sequential`], plus the representations between them.

use std::fmt;
use std::sync::Arc;

use eqaug_groups::{Group, Real, Rep};
use ndarray::ArrayView2;
use rand::Rng;

use crate::layers::{self, BuildCtx};
use crate::params::{Layout, Params};
use crate::sequential::{Sequential, Workspace};
use crate::{Loss, NetworkSpec, NnError};

/// A network: the compiled structure (layers, representations, parameter layout with the
/// projectors of its group layers). It holds no weights; see [`Params`].
///
/// Inputs are chunks `x: rows x input_width`, one sample per row, features channel-major
/// `(c, s)`; targets are `rows x output_width` (0/1 for BCE, one-hot rows for the
/// cross-entropies, masks channel-major for segmentation, values for MSE).
#[derive(Clone)]
pub struct Network<T> {
    spec: NetworkSpec,
    group: Arc<Group>,
    input: Rep,
    /// `reps[0]` input, `reps[i + 1]` output representation of layer `i`.
    reps: Vec<Rep>,
    seq: Sequential<T>,
}

impl<T: Real> fmt::Debug for Network<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Network")
            .field("group", &self.group.name())
            .field("input", &self.input)
            .field("loss", &self.seq.loss_kind())
            .field("widths", &self.seq.widths())
            .field("params", &self.seq.layout().len())
            .finish()
    }
}

impl<T: Real> Network<T> {
    /// Compiles `spec` for `group` and the input representation `input`, with `loss`.
    ///
    /// Errors name the layer index and the shapes that do not fit (e.g. a dense layer after a
    /// non-trivial representation), an out-of-range hyperparameter, or an empty E.
    pub fn new(
        spec: &NetworkSpec,
        group: Arc<Group>,
        input: Rep,
        loss: Loss,
    ) -> Result<Self, NnError> {
        if spec.layers.is_empty() {
            return Err(NnError::EmptyNetwork);
        }
        if input.channels == 0 {
            return Err(NnError::Shape {
                layer: 0,
                kind: spec.layers[0].kind(),
                message: "the input representation has 0 channels".into(),
            });
        }
        let mut rep = input;
        let mut reps = vec![input];
        let mut built = Vec::with_capacity(spec.layers.len());
        for (index, ls) in spec.layers.iter().enumerate() {
            let ctx = BuildCtx {
                index,
                spec: ls,
                group: &group,
                rep,
            };
            let (layer, out) = layers::build::<T>(&ctx)?;
            rep = out;
            reps.push(rep);
            built.push(layer);
        }
        let positions = rep.positions(&group);
        let seq = Sequential::new(built, loss, positions)?;
        Ok(Network {
            spec: spec.clone(),
            group,
            input,
            reps,
            seq,
        })
    }

    /// The spec it was built from.
    pub fn spec(&self) -> &NetworkSpec {
        &self.spec
    }
    /// The layer sequence (layers, widths, parameter ranges) this network executes.
    pub fn sequential(&self) -> &Sequential<T> {
        &self.seq
    }
    /// The group.
    pub fn group(&self) -> &Arc<Group> {
        &self.group
    }
    /// The loss.
    pub fn loss_kind(&self) -> Loss {
        self.seq.loss_kind()
    }
    /// The parameter layout (shared by all parameter and gradient sets of this network).
    pub fn layout(&self) -> &Arc<Layout> {
        self.seq.layout()
    }
    /// Number of scalar parameters.
    pub fn num_params(&self) -> usize {
        self.seq.num_params()
    }
    /// Number of layers.
    pub fn num_layers(&self) -> usize {
        self.seq.num_layers()
    }
    /// Width of an input row (`input_rep().dim(group)`).
    pub fn input_width(&self) -> usize {
        self.seq.input_width()
    }
    /// Width of an output row.
    pub fn output_width(&self) -> usize {
        self.seq.output_width()
    }
    /// The input representation.
    pub fn input_rep(&self) -> Rep {
        self.input
    }
    /// The output representation (the last layer's; non-linearities keep it).
    pub fn output_rep(&self) -> Rep {
        *self.reps.last().expect("non-empty")
    }
    /// The representation after each layer (`[0]` is the input).
    pub fn reps(&self) -> &[Rep] {
        &self.reps
    }
    /// Floating-point operations (2 x multiply-adds) of the linear layers for one sample's
    /// forward pass; forward + backward is about 3x this.
    pub fn linear_flops_per_sample(&self) -> usize {
        self.seq.linear_flops_per_sample()
    }

    /// All-zero parameters (also a gradient store).
    pub fn zeros(&self) -> Params<T> {
        self.seq.zeros()
    }

    /// The initialisation of SPEC sections 3-4: group layers i.i.d. `N(0, init_std^2)` (or one
    /// Gaussian per channel pair broadcast over positions), dense weights `N(0,1) init_scale`,
    /// biases 0, batch-norm scale 1 and shift 0; drawn in f64 (so f32 and f64 runs start from
    /// the same A0 up to rounding), group layers then projected onto E, then cast to `T`.
    pub fn init_params(&self, rng: &mut impl Rng) -> Params<T> {
        self.seq.init_params(rng)
    }

    /// A workspace for chunks of up to `rows` rows (it grows if given a larger chunk).
    pub fn workspace(&self, rows: usize) -> Workspace<T> {
        self.seq.workspace(rows)
    }

    /// Network outputs (`rows x output_width`) for a chunk; normalisation statistics per
    /// mini-batch of `minibatch` consecutive rows (the last may be smaller).
    ///
    /// # Panics
    /// If `minibatch == 0`, the input width is wrong, or `params` is from another network.
    pub fn forward<'w>(
        &self,
        params: &Params<T>,
        x: ArrayView2<'_, T>,
        minibatch: usize,
        ws: &'w mut Workspace<T>,
    ) -> ArrayView2<'w, T> {
        self.seq.forward(params, x, minibatch, ws)
    }

    /// [`Network::loss`] and [`Network::forward`] from one forward pass: the sum of per-sample
    /// losses and the outputs (`rows x output_width`). No gradient.
    ///
    /// # Panics
    /// If `minibatch == 0`, the shapes of `x` / `targets` are wrong, or `params` is from
    /// another network.
    pub fn forward_and_loss<'w>(
        &self,
        params: &Params<T>,
        x: ArrayView2<'_, T>,
        targets: ArrayView2<'_, T>,
        minibatch: usize,
        ws: &'w mut Workspace<T>,
    ) -> (T, ArrayView2<'w, T>) {
        self.seq.forward_and_loss(params, x, targets, minibatch, ws)
    }

    /// The sum over mini-batches of (rows in batch x mean loss of the batch), i.e. the sum of
    /// per-sample losses; divide by the number of rows for the mean. No gradient.
    pub fn loss(
        &self,
        params: &Params<T>,
        x: ArrayView2<'_, T>,
        targets: ArrayView2<'_, T>,
        minibatch: usize,
        ws: &mut Workspace<T>,
    ) -> T {
        self.seq.loss(params, x, targets, minibatch, ws)
    }

    /// Forward and backward on a chunk; see [`Sequential::loss_and_grad`]. Returns the sum of
    /// per-sample losses and ADDS its gradient into `grads`.
    ///
    /// # Panics
    /// If `minibatch == 0`, the shapes of `x` / `targets` are wrong, or `params` / `grads`
    /// are not laid out for this network.
    pub fn loss_and_grad(
        &self,
        params: &Params<T>,
        x: ArrayView2<'_, T>,
        targets: ArrayView2<'_, T>,
        minibatch: usize,
        grads: &mut Params<T>,
        ws: &mut Workspace<T>,
    ) -> T {
        self.seq
            .loss_and_grad(params, x, targets, minibatch, grads, ws)
    }

    /// The smallest |pre-activation| at the inputs of every LeakyReLU (the distance of the
    /// data to the nearest kink) over a chunk; see [`Sequential::min_abs_preactivation`].
    pub fn min_abs_preactivation(
        &self,
        params: &Params<T>,
        x: ArrayView2<'_, T>,
        minibatch: usize,
        ws: &mut Workspace<T>,
    ) -> f64 {
        self.seq.min_abs_preactivation(params, x, minibatch, ws)
    }

    /// Checks the network's own equivariance on a chunk: the largest `|f(g x) - g f(x)|` over
    /// the given group elements (all rows of the chunk transformed by the same `g`, so
    /// per-mini-batch statistics transform with it), divided by `max |f(x)|`. Near round-off
    /// (about 1e-15 in f64, 1e-6 in f32) when every group layer is in E; an invariant output
    /// (trivial representation) is compared with `f(x)` itself. Allocates: a check, not a
    /// hot path.
    pub fn equivariance_error(
        &self,
        params: &Params<T>,
        x: ArrayView2<'_, T>,
        elements: &[eqaug_groups::Perm],
        minibatch: usize,
        ws: &mut Workspace<T>,
    ) -> f64 {
        let fx = self.forward(params, x, minibatch, ws).to_owned();
        let scale = fx.iter().fold(0.0f64, |a, v| a.max(v.to_f64_exact().abs()));
        let mut gx = x.to_owned();
        let mut gfx = fx.clone();
        let mut worst = 0.0f64;
        for g in elements {
            crate::act_on_rows(&self.group, self.input, g, x, gx.view_mut());
            crate::act_on_rows(&self.group, self.output_rep(), g, fx.view(), gfx.view_mut());
            let fgx = self.forward(params, gx.view(), minibatch, ws);
            let e = fgx.iter().zip(gfx.iter()).fold(0.0f64, |a, (u, v)| {
                a.max((u.to_f64_exact() - v.to_f64_exact()).abs())
            });
            worst = worst.max(e);
        }
        if scale > 0.0 {
            worst / scale
        } else {
            worst
        }
    }
}
