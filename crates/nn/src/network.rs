//! A network compiled from a [`NetworkSpec`] over one group: the layers of [`crate::layers`]
//! in a [`Sequential`], plus the representations between them.

use std::fmt;
use std::sync::Arc;

use eqaug_groups::{Group, Real, Rep};
use ndarray::ArrayView2;

use crate::layers::{self, BuildCtx};
use crate::params::Params;
use crate::sequential::{Sequential, Workspace};
use crate::transform::Deviation;
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

/// A network is its layer sequence plus the representations between the layers: every
/// [`Sequential`] method (`forward`, `loss`, `loss_and_grad`, `init_params`, `zeros`,
/// `workspace`, `layout`, `num_params`, `input_width`, `output_width`, ...) is called on it
/// directly.
impl<T> std::ops::Deref for Network<T> {
    type Target = Sequential<T>;

    fn deref(&self) -> &Sequential<T> {
        &self.seq
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
    ) -> Result<f64, NnError> {
        let fx = self.forward(params, x, minibatch, ws)?.to_owned();
        let mut dev = Deviation::new(fx.view());
        let mut gx = x.to_owned();
        let mut gfx = fx.clone();
        for g in elements {
            crate::act_on_rows(&self.group, self.input, g, x, gx.view_mut())?;
            crate::act_on_rows(&self.group, self.output_rep(), g, fx.view(), gfx.view_mut())?;
            dev.add(self.forward(params, gx.view(), minibatch, ws)?, gfx.view());
        }
        Ok(dev.relative())
    }
}
