//! The dense layer: unconstrained weights between trivial representations (the head).

use std::sync::Arc;

use eqaug_groups::{Points, Real, Rep};
use rand::{Rng, RngCore};
use rand_distr::StandardNormal;

use super::linear::{
    linear_backward, linear_backward_tangent, linear_forward, linear_forward_tangent,
};
use super::{
    Backward, BuildCtx, Built, Forward, GradIn, Layer, ParamEntry, TangentBackward, TangentForward,
};
use crate::params::TensorKind;
use crate::NnError;

/// `y = W x (+ b)` with `W: out x inp` initialised `N(0,1) * init_scale` and the optional bias
/// `b: out` starting at zero. Tensors `weight` `[out, inp]` and `bias` `[out]`, both
/// [`TensorKind::Dense`].
#[derive(Clone, Debug)]
pub struct Dense {
    inp: usize,
    out: usize,
    init_scale: f64,
    bias: bool,
}

impl Dense {
    /// A dense layer `inp -> out`. Errors if a width is 0 or `init_scale` is not finite.
    pub fn new(inp: usize, out: usize, init_scale: f64, bias: bool) -> Result<Self, NnError> {
        let err = |message: String| NnError::InvalidSpec {
            layer: 0,
            kind: "dense",
            message,
        };
        if out == 0 || inp == 0 {
            return Err(err(format!(
                "widths must be at least 1, got {inp} -> {out}"
            )));
        }
        if !init_scale.is_finite() {
            return Err(err(format!("init_scale is {init_scale}")));
        }
        Ok(Dense {
            inp,
            out,
            init_scale,
            bias,
        })
    }
}

pub(crate) fn from_spec<T: Real>(
    ctx: &BuildCtx<'_>,
    out: usize,
    init_scale: f64,
    bias: bool,
) -> Result<Built<T>, NnError> {
    if ctx.rep.points != Points::Trivial {
        return Err(ctx.shape_err(format!(
            "a dense layer maps between trivial representations, but its input is {}; put a \
             group layer with points = \"trivial\" (an invariant layer) before it",
            ctx.describe()
        )));
    }
    if out == 0 {
        return Err(ctx.invalid("out must be at least 1".into()));
    }
    if !init_scale.is_finite() {
        return Err(ctx.invalid(format!("init_scale is {init_scale}")));
    }
    let layer = Dense {
        inp: ctx.rep.channels,
        out,
        init_scale,
        bias,
    };
    Ok((Arc::new(layer), Rep::trivial(out)))
}

impl<T: Real> Layer<T> for Dense {
    fn kind(&self) -> &'static str {
        "dense"
    }
    fn input_width(&self) -> usize {
        self.inp
    }
    fn output_width(&self) -> usize {
        self.out
    }
    fn params(&self) -> Vec<ParamEntry> {
        let mut v = vec![ParamEntry {
            name: "weight",
            shape: vec![self.out, self.inp],
            kind: TensorKind::Dense,
        }];
        if self.bias {
            v.push(ParamEntry {
                name: "bias",
                shape: vec![self.out],
                kind: TensorKind::Dense,
            });
        }
        v
    }
    fn init(&self, data: &mut [f64], rng: &mut dyn RngCore) {
        // the weight only; the bias stays 0
        for x in data[..self.out * self.inp].iter_mut() {
            *x = rng.sample::<f64, _>(StandardNormal) * self.init_scale;
        }
    }
    fn forward(&self, f: Forward<'_, T>) {
        let (w, b) = f.params.split_at(self.out * self.inp);
        let bias = self.bias.then_some(b);
        linear_forward(f.input, w, bias, f.output, f.rows, self.inp, self.out);
    }
    fn backward(&self, b: Backward<'_, T>) -> GradIn {
        let nw = self.out * self.inp;
        let (dw, db) = b.grads.split_at_mut(nw);
        let (dw, db) = if b.param_grads {
            (Some(dw), self.bias.then_some(db))
        } else {
            (None, None)
        };
        linear_backward(
            b.input,
            &b.params[..nw],
            b.dy,
            dw,
            db,
            b.dx,
            b.rows,
            self.inp,
            self.out,
        );
        GradIn::InDx
    }
    fn flops_per_sample(&self) -> usize {
        2 * self.out * self.inp
    }
    fn has_tangent(&self) -> bool {
        true
    }
    fn forward_tangent(&self, t: TangentForward<'_, T>) {
        let nw = self.out * self.inp;
        let (w, _) = t.params.split_at(nw);
        let (wd, bd) = t.params_dot.split_at(nw);
        let bd = self.bias.then_some(bd);
        linear_forward_tangent(
            t.input,
            t.input_dot,
            w,
            wd,
            bd,
            t.output_dot,
            t.rows,
            self.inp,
            self.out,
        );
    }
    fn backward_tangent(&self, t: TangentBackward<'_, T>) -> GradIn {
        let nw = self.out * self.inp;
        let (gw, gb) = t.grads_dot.split_at_mut(nw);
        linear_backward_tangent(
            t.input,
            t.input_dot,
            &t.params[..nw],
            &t.params_dot[..nw],
            t.ybar,
            t.ybar_dot,
            gw,
            self.bias.then_some(gb),
            t.xbar_dot,
            t.rows,
            self.inp,
            self.out,
        );
        GradIn::InDx
    }
}
