//! The group linear layer: a weight `(c_out * s_out) x (c_in * s_in)` between two permutation
//! representations, kept in (or projected onto) the equivariant layers E by its projector.

use std::sync::Arc;

use eqaug_groups::{Projector, Real, Rep};
use rand::{Rng, RngCore};
use rand_distr::StandardNormal;

use super::linear::{
    linear_backward, linear_backward_tangent, linear_forward, linear_forward_tangent,
};
use super::{
    Backward, BuildCtx, Built, Forward, GradIn, Layer, ParamEntry, TangentBackward, TangentForward,
};
use crate::params::TensorKind;
use crate::{NnError, Points};

/// A linear layer `rep_in -> rep_out` of some group, without bias: `y = W x` with `W` of shape
/// `(c_out * s_out) x (c_in * s_in)` (features channel-major). Initialised i.i.d.
/// `N(0, init_std^2)` (or one Gaussian per channel pair broadcast over all positions) and then
/// projected onto E by the weight's [`TensorKind::Group`] projector (docs/science.md §3).
///
/// The projector may come from any group (it need not be the network's), and the weight may
/// carry a support mask ([`GroupLinear::with_support`]).
#[derive(Clone, Debug)]
pub struct GroupLinear {
    kind: TensorKind,
    s_out: usize,
    s_in: usize,
    rep_out: Rep,
    rep_in: Rep,
    init_std: f64,
    constant_over_positions: bool,
}

impl GroupLinear {
    /// The layer whose weight is constrained by `projector` (its shape gives the widths).
    /// Errors if `init_std` is not finite and `>= 0`.
    pub fn new(
        projector: Projector,
        init_std: f64,
        constant_over_positions: bool,
    ) -> Result<Self, NnError> {
        Self::with_kind(
            TensorKind::group(projector),
            init_std,
            constant_over_positions,
        )
    }

    /// As [`GroupLinear::new`], with the weight also restricted to `support` (row-major over
    /// the weight, `true` = may be non-zero); see [`TensorKind::group_with_support`].
    pub fn with_support(
        projector: Projector,
        support: Arc<[bool]>,
        init_std: f64,
        constant_over_positions: bool,
    ) -> Result<Self, NnError> {
        Self::with_kind(
            TensorKind::group_with_support(projector, support)?,
            init_std,
            constant_over_positions,
        )
    }

    fn with_kind(
        kind: TensorKind,
        init_std: f64,
        constant_over_positions: bool,
    ) -> Result<Self, NnError> {
        let TensorKind::Group {
            projector,
            rep_out,
            rep_in,
            ..
        } = &kind
        else {
            unreachable!("a group kind")
        };
        if !(init_std.is_finite() && init_std >= 0.0) {
            return Err(NnError::InvalidSpec {
                layer: 0,
                kind: "group",
                message: format!("init_std must be finite and >= 0, got {init_std}"),
            });
        }
        let map = projector.orbit_map();
        Ok(GroupLinear {
            s_out: map.s_out(),
            s_in: map.s_in(),
            rep_out: *rep_out,
            rep_in: *rep_in,
            kind,
            init_std,
            constant_over_positions,
        })
    }

    /// Output features `c_out * s_out`.
    pub fn out(&self) -> usize {
        self.rep_out.channels * self.s_out
    }
    /// Input features `c_in * s_in`.
    pub fn inp(&self) -> usize {
        self.rep_in.channels * self.s_in
    }
    /// The weight's kind (with its projector).
    pub fn tensor_kind(&self) -> &TensorKind {
        &self.kind
    }
}

pub(crate) fn from_spec<T: Real>(
    ctx: &BuildCtx<'_>,
    channels: usize,
    points: Points,
    init_std: f64,
    constant_over_positions: bool,
) -> Result<Built<T>, NnError> {
    if channels == 0 {
        return Err(ctx.invalid("channels must be at least 1".into()));
    }
    if !(init_std.is_finite() && init_std >= 0.0) {
        return Err(ctx.invalid(format!("init_std must be finite and >= 0, got {init_std}")));
    }
    let rep_out = Rep { channels, points };
    let projector =
        Projector::between(ctx.group, ctx.rep, rep_out).map_err(|source| NnError::Group {
            layer: ctx.index,
            source,
        })?;
    let layer = GroupLinear::new(projector, init_std, constant_over_positions)?;
    debug_assert_eq!(
        (layer.out(), layer.inp()),
        (rep_out.dim(ctx.group), ctx.width())
    );
    Ok((Arc::new(layer), rep_out))
}

impl<T: Real> Layer<T> for GroupLinear {
    fn kind(&self) -> &'static str {
        "group"
    }
    fn input_width(&self) -> usize {
        self.inp()
    }
    fn output_width(&self) -> usize {
        self.out()
    }
    fn params(&self) -> Vec<ParamEntry> {
        vec![ParamEntry {
            name: "weight",
            shape: vec![self.out(), self.inp()],
            kind: self.kind.clone(),
        }]
    }
    fn init(&self, data: &mut [f64], rng: &mut dyn RngCore) {
        let std = self.init_std;
        if self.constant_over_positions {
            let (so, si) = (self.s_out, self.s_in);
            let cols = self.rep_in.channels * si;
            for co in 0..self.rep_out.channels {
                for ci in 0..self.rep_in.channels {
                    let v: f64 = rng.sample::<f64, _>(StandardNormal) * std;
                    for r in co * so..(co + 1) * so {
                        data[r * cols + ci * si..r * cols + (ci + 1) * si].fill(v);
                    }
                }
            }
        } else {
            for x in data.iter_mut() {
                *x = rng.sample::<f64, _>(StandardNormal) * std;
            }
        }
    }
    fn forward(&self, f: Forward<'_, T>) {
        linear_forward(
            f.input,
            f.params,
            None,
            f.output,
            f.rows,
            self.inp(),
            self.out(),
        );
    }
    fn backward(&self, b: Backward<'_, T>) -> GradIn {
        linear_backward(
            b.input,
            b.params,
            b.dy,
            b.param_grads.then_some(b.grads),
            None,
            b.dx,
            b.rows,
            self.inp(),
            self.out(),
        );
        GradIn::InDx
    }
    fn flops_per_sample(&self) -> usize {
        2 * self.out() * self.inp()
    }
    fn has_tangent(&self) -> bool {
        true
    }
    fn forward_tangent(&self, t: TangentForward<'_, T>) {
        linear_forward_tangent(
            t.input,
            t.input_dot,
            t.params,
            t.params_dot,
            None,
            t.output_dot,
            t.rows,
            self.inp(),
            self.out(),
        );
    }
    fn backward_tangent(&self, t: TangentBackward<'_, T>) -> GradIn {
        linear_backward_tangent(
            t.input,
            t.input_dot,
            t.params,
            t.params_dot,
            t.ybar,
            t.ybar_dot,
            t.grads_dot,
            None,
            t.xbar_dot,
            t.rows,
            self.inp(),
            self.out(),
        );
        GradIn::InDx
    }
}
