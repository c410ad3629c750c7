//! Softmax over all features of each row.

use std::sync::Arc;

use eqaug_groups::Real;

use super::{Backward, BuildCtx, Built, Forward, GradIn, Layer, TangentBackward, TangentForward};
use crate::NnError;

/// `y = exp(x - max x) / sum exp(x - max x)` over each row of `width` features.
#[derive(Clone, Debug)]
pub struct Softmax {
    width: usize,
}

impl Softmax {
    /// Softmax over rows of `width` features.
    pub fn new(width: usize) -> Self {
        Softmax { width }
    }
}

pub(crate) fn from_spec<T: Real>(ctx: &BuildCtx<'_>) -> Result<Built<T>, NnError> {
    Ok((Arc::new(Softmax::new(ctx.width())), ctx.rep))
}

impl<T: Real> Layer<T> for Softmax {
    fn kind(&self) -> &'static str {
        "softmax"
    }
    fn outputs_probabilities(&self) -> bool {
        true
    }
    fn input_width(&self) -> usize {
        self.width
    }
    fn output_width(&self) -> usize {
        self.width
    }
    fn forward(&self, f: Forward<'_, T>) {
        let w = self.width;
        for (xr, yr) in f.input.chunks_exact(w).zip(f.output.chunks_exact_mut(w)) {
            let m = xr.iter().fold(T::neg_infinity(), |a, &b| a.max(b));
            let mut s = T::zero();
            for (o, &v) in yr.iter_mut().zip(xr) {
                *o = (v - m).exp();
                s += *o;
            }
            let inv = T::one() / s;
            yr.iter_mut().for_each(|o| *o *= inv);
        }
    }
    /// In place: `g <- y * (g - <g, y>)` per row.
    fn backward(&self, b: Backward<'_, T>) -> GradIn {
        let w = self.width;
        for (yr, gr) in b.output.chunks_exact(w).zip(b.dy.chunks_exact_mut(w)) {
            let s = yr
                .iter()
                .zip(gr.iter())
                .fold(T::zero(), |a, (&p, &d)| a + p * d);
            for (d, &p) in gr.iter_mut().zip(yr) {
                *d = p * (*d - s);
            }
        }
        GradIn::InDy
    }
    fn has_tangent(&self) -> bool {
        true
    }
    /// `dy = y (dx - <y, dx>)` per row.
    fn forward_tangent(&self, t: TangentForward<'_, T>) {
        let w = self.width;
        let n = t.output.len();
        let Some(xd) = t.input_dot else {
            t.output_dot[..n].fill(T::zero());
            return;
        };
        for ((yr, xr), or) in t
            .output
            .chunks_exact(w)
            .zip(xd.chunks_exact(w))
            .zip(t.output_dot.chunks_exact_mut(w))
        {
            let s = dot(yr, xr);
            for ((o, &p), &d) in or.iter_mut().zip(yr).zip(xr) {
                *o = p * (d - s);
            }
        }
    }
    /// With `xbar = y (g - <y, g>)`: `xbar' = dy (g - <y, g>) + y (g' - <dy, g> - <y, g'>)`.
    fn backward_tangent(&self, t: TangentBackward<'_, T>) -> GradIn {
        let w = self.width;
        for (((yr, ydr), gr), gdr) in t
            .output
            .chunks_exact(w)
            .zip(t.output_dot.chunks_exact(w))
            .zip(t.ybar.chunks_exact(w))
            .zip(t.ybar_dot.chunks_exact_mut(w))
        {
            let s = dot(yr, gr);
            let sd = dot(ydr, gr) + dot(yr, gdr);
            for (((d, &p), &pd), &g) in gdr.iter_mut().zip(yr).zip(ydr).zip(gr) {
                *d = pd * (g - s) + p * (*d - sd);
            }
        }
        GradIn::InDy
    }
}

fn dot<T: Real>(a: &[T], b: &[T]) -> T {
    a.iter().zip(b).fold(T::zero(), |s, (&x, &y)| s + x * y)
}
