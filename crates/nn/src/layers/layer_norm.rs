//! Layer normalisation without affine parameters, per row (no statistics across rows).

use std::sync::Arc;

use eqaug_groups::Real;

use super::norm::{self, Pattern};
use super::{
    grow, Backward, BuildCtx, Built, Forward, GradIn, Layer, TangentBackward, TangentForward,
    NORM_EPS,
};
use crate::{c, NnError, NormOver};

/// Layer norm of rows of `channels x positions` features (channel-major), eps 1e-5, no
/// affine parameters:
/// * [`NormOver::Features`]: all features of a row;
/// * [`NormOver::Channels`]: the channels at each position of a row;
/// * [`NormOver::Positions`]: the positions of each channel of a row (each channel's map).
///
/// State: the inverse standard deviations (one per row, per row and position, or per row and
/// channel).
#[derive(Clone, Debug)]
pub struct LayerNorm {
    over: NormOver,
    channels: usize,
    positions: usize,
}

impl LayerNorm {
    /// Layer norm of rows of `channels x positions` features. Errors if it would normalise
    /// single values (the output would always be 0).
    pub fn new(over: NormOver, channels: usize, positions: usize) -> Result<Self, NnError> {
        let layer = LayerNorm {
            over,
            channels,
            positions,
        };
        if layer.group_size() < 2 {
            return Err(NnError::InvalidSpec {
                layer: 0,
                kind: "layer_norm",
                message: format!(
                    "layer norm over {over:?} of {channels} channel(s) x {positions} \
                     position(s) normalises a single value (output always 0)"
                ),
            });
        }
        Ok(layer)
    }
    fn width(&self) -> usize {
        self.channels * self.positions
    }
    /// Number of values normalised together.
    fn group_size(&self) -> usize {
        match self.over {
            NormOver::Features => self.width(),
            NormOver::Channels => self.channels,
            NormOver::Positions => self.positions,
        }
    }
}

pub(crate) fn from_spec<T: Real>(ctx: &BuildCtx<'_>, over: NormOver) -> Result<Built<T>, NnError> {
    let layer = LayerNorm {
        over,
        channels: ctx.rep.channels,
        positions: ctx.positions(),
    };
    if layer.group_size() < 2 {
        return Err(ctx.shape_err(format!(
            "layer norm over {over:?} of {} normalises a single value (output always 0)",
            ctx.describe()
        )));
    }
    Ok((Arc::new(layer), ctx.rep))
}

impl<T: Real> Layer<T> for LayerNorm {
    fn kind(&self) -> &'static str {
        "layer_norm"
    }
    fn input_width(&self) -> usize {
        self.width()
    }
    fn output_width(&self) -> usize {
        self.width()
    }
    fn forward(&self, f: Forward<'_, T>) {
        let (r, win, pos) = (f.rows, self.width(), self.positions);
        let st = &mut f.state.stats;
        match self.over {
            NormOver::Features => {
                grow(st, r);
                ln_features_forward(f.input, f.output, &mut st[..r], win);
            }
            NormOver::Positions => {
                // each channel's map is a contiguous run of `pos` features
                let n = r * self.channels;
                grow(st, n);
                ln_features_forward(f.input, f.output, &mut st[..n], pos);
            }
            NormOver::Channels => {
                grow(st, r * pos);
                grow(f.scratch, pos);
                ln_channels_forward(
                    f.input,
                    f.output,
                    &mut st[..r * pos],
                    &mut f.scratch[..pos],
                    self.channels,
                    pos,
                );
            }
        }
    }
    fn backward(&self, b: Backward<'_, T>) -> GradIn {
        let (r, win, pos) = (b.rows, self.width(), self.positions);
        let st = &b.state.stats;
        match self.over {
            NormOver::Features => ln_features_backward(b.output, b.dy, &st[..r], win),
            NormOver::Positions => {
                ln_features_backward(b.output, b.dy, &st[..r * self.channels], pos)
            }
            NormOver::Channels => {
                grow(b.scratch, 2 * pos);
                let (s1, s2) = b.scratch[..2 * pos].split_at_mut(pos);
                ln_channels_backward(b.output, b.dy, &st[..r * pos], s1, s2, self.channels, pos)
            }
        }
        GradIn::InDy
    }
    fn has_tangent(&self) -> bool {
        true
    }
    fn forward_tangent(&self, t: TangentForward<'_, T>) {
        let inv = &t.state.stats;
        let (xh, xd, out) = (t.output, t.input_dot, &mut *t.output_dot);
        self.pattern().for_each(t.rows, t.minibatch, |g| {
            norm::jvp(g.idx, xh, inv[g.stat], xd, out);
        });
    }
    fn backward_tangent(&self, t: TangentBackward<'_, T>) -> GradIn {
        let inv = &t.state.stats;
        let (xh, xd, dxh, ybar) = (t.output, t.input_dot, t.output_dot, t.ybar);
        let gd = &mut *t.ybar_dot;
        let mut tmp = Vec::new();
        self.pattern().for_each(t.rows, t.minibatch, |g| {
            let ds = xd.map_or(T::zero(), |xd| {
                let s = g.idx.iter().fold(T::zero(), |a, &i| a + xh[i] * xd[i]);
                s / T::from_usize(g.idx.len()).expect("size")
            });
            norm::second_order(
                g.idx,
                xh,
                inv[g.stat],
                ds,
                |i| ybar[i],
                |i| gd[i],
                |i| dxh[i],
                &mut tmp,
            );
            for (&i, &v) in g.idx.iter().zip(&tmp) {
                gd[i] = v;
            }
        });
        GradIn::InDy
    }
}

impl LayerNorm {
    fn pattern(&self) -> Pattern {
        Pattern::Layer {
            over: self.over,
            channels: self.channels,
            positions: self.positions,
        }
    }
}

/// Layer norm over each run of `w` consecutive features (no affine). `inv`: one entry per run.
fn ln_features_forward<T: Real>(x: &[T], y: &mut [T], inv: &mut [T], w: usize) {
    let wf: T = c(w as f64);
    let eps: T = c(NORM_EPS);
    for ((xr, yr), iv) in x.chunks_exact(w).zip(y.chunks_exact_mut(w)).zip(inv) {
        let mean = xr.iter().fold(T::zero(), |a, &v| a + v) / wf;
        let mut v2 = T::zero();
        for (o, &v) in yr.iter_mut().zip(xr) {
            let d = v - mean;
            *o = d;
            v2 += d * d;
        }
        let k = T::one() / (v2 / wf + eps).sqrt();
        *iv = k;
        yr.iter_mut().for_each(|o| *o *= k);
    }
}

/// Backward of [`ln_features_forward`], in place on `g`: `g <- inv (g - mean g - y mean(g y))`.
fn ln_features_backward<T: Real>(y: &[T], g: &mut [T], inv: &[T], w: usize) {
    let wf: T = c(w as f64);
    for ((yr, gr), &k) in y.chunks_exact(w).zip(g.chunks_exact_mut(w)).zip(inv) {
        let (mut s1, mut s2) = (T::zero(), T::zero());
        for (&p, &d) in yr.iter().zip(gr.iter()) {
            s1 += d;
            s2 += d * p;
        }
        let (b1, b2) = (s1 / wf, s2 / wf);
        for (d, &p) in gr.iter_mut().zip(yr) {
            *d = k * (*d - b1 - p * b2);
        }
    }
}

/// Layer norm over the `ch` channels at each of the `pos` positions of each row (no affine).
/// `inv`: `pos` entries per row; `mean` scratch of length `pos`.
fn ln_channels_forward<T: Real>(
    x: &[T],
    y: &mut [T],
    inv: &mut [T],
    mean: &mut [T],
    ch: usize,
    pos: usize,
) {
    let w = ch * pos;
    let cf: T = c(ch as f64);
    let eps: T = c(NORM_EPS);
    for ((xr, yr), iv) in x
        .chunks_exact(w)
        .zip(y.chunks_exact_mut(w))
        .zip(inv.chunks_exact_mut(pos))
    {
        mean.iter_mut().for_each(|v| *v = T::zero());
        for xc in xr.chunks_exact(pos) {
            mean.iter_mut().zip(xc).for_each(|(a, &v)| *a += v);
        }
        mean.iter_mut().for_each(|a| *a /= cf);
        iv.iter_mut().for_each(|v| *v = T::zero());
        for (xc, yc) in xr.chunks_exact(pos).zip(yr.chunks_exact_mut(pos)) {
            for s in 0..pos {
                let d = xc[s] - mean[s];
                yc[s] = d;
                iv[s] += d * d;
            }
        }
        iv.iter_mut()
            .for_each(|v| *v = T::one() / (*v / cf + eps).sqrt());
        for yc in yr.chunks_exact_mut(pos) {
            yc.iter_mut().zip(iv.iter()).for_each(|(o, &k)| *o *= k);
        }
    }
}

/// Backward of [`ln_channels_forward`], in place on `g`; `s1`, `s2` scratch of length `pos`.
fn ln_channels_backward<T: Real>(
    y: &[T],
    g: &mut [T],
    inv: &[T],
    s1: &mut [T],
    s2: &mut [T],
    ch: usize,
    pos: usize,
) {
    let w = ch * pos;
    let cf: T = c(ch as f64);
    for ((yr, gr), iv) in y
        .chunks_exact(w)
        .zip(g.chunks_exact_mut(w))
        .zip(inv.chunks_exact(pos))
    {
        s1.iter_mut().for_each(|v| *v = T::zero());
        s2.iter_mut().for_each(|v| *v = T::zero());
        for (yc, gc) in yr.chunks_exact(pos).zip(gr.chunks_exact(pos)) {
            for s in 0..pos {
                s1[s] += gc[s];
                s2[s] += gc[s] * yc[s];
            }
        }
        for s in 0..pos {
            s1[s] /= cf;
            s2[s] /= cf;
        }
        for (yc, gc) in yr.chunks_exact(pos).zip(gr.chunks_exact_mut(pos)) {
            for s in 0..pos {
                gc[s] = iv[s] * (gc[s] - s1[s] - yc[s] * s2[s]);
            }
        }
    }
}
