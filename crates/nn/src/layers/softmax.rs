//! Softmax over all features of each row.

use std::sync::Arc;

use eqaug_groups::Real;

use super::{Backward, BuildCtx, Built, Forward, GradIn, Layer};
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
}
