//! Batch normalisation with per-mini-batch statistics and a learnable scale and shift.

use std::sync::Arc;

use eqaug_groups::Real;
use rand::RngCore;

use super::norm::{self, Pattern};
use super::{
    batches, grow, Backward, BuildCtx, Built, Forward, GradIn, Layer, ParamEntry, TangentBackward,
    TangentForward, NORM_EPS,
};
use crate::params::TensorKind;
use crate::{c, NnError, NormOver};

/// Batch norm over rows of `channels x positions` features (channel-major), statistics per
/// mini-batch, eps 1e-5, learnable `scale` (init 1) and `shift` (init 0), both
/// [`TensorKind::Norm`]:
/// * [`NormOver::Features`]: each feature over the mini-batch (`n = channels * positions`
///   scales and shifts);
/// * [`NormOver::Channels`]: each channel over mini-batch x positions (`n = channels`).
///
/// State: the normalised values (`rows x width`) and one inverse standard deviation per
/// mini-batch and normalised group.
#[derive(Clone, Debug)]
pub struct BatchNorm {
    over: NormOver,
    channels: usize,
    positions: usize,
}

impl BatchNorm {
    /// Batch norm of rows of `channels x positions` features. Errors for
    /// [`NormOver::Positions`] (use layer norm) or an empty width.
    pub fn new(over: NormOver, channels: usize, positions: usize) -> Result<Self, NnError> {
        let err = |message: String| NnError::InvalidSpec {
            layer: 0,
            kind: "batch_norm",
            message,
        };
        if over == NormOver::Positions {
            return Err(err(
                "over = \"positions\" is only for layer norm; batch norm per channel over \
                 mini-batch x positions is over = \"channels\""
                    .into(),
            ));
        }
        if channels * positions == 0 {
            return Err(err("the input has no features".into()));
        }
        Ok(BatchNorm {
            over,
            channels,
            positions,
        })
    }
    fn width(&self) -> usize {
        self.channels * self.positions
    }
    /// Number of scales (and of shifts).
    fn n(&self) -> usize {
        match self.over {
            NormOver::Channels => self.channels,
            _ => self.width(),
        }
    }
}

pub(crate) fn from_spec<T: Real>(ctx: &BuildCtx<'_>, over: NormOver) -> Result<Built<T>, NnError> {
    if over == NormOver::Positions {
        return Err(ctx.invalid(
            "over = \"positions\" is only for layer norm; batch norm per channel over \
             mini-batch x positions is over = \"channels\""
                .into(),
        ));
    }
    let layer = BatchNorm {
        over,
        channels: ctx.rep.channels,
        positions: ctx.positions(),
    };
    Ok((Arc::new(layer), ctx.rep))
}

impl<T: Real> Layer<T> for BatchNorm {
    fn kind(&self) -> &'static str {
        "batch_norm"
    }
    fn input_width(&self) -> usize {
        self.width()
    }
    fn output_width(&self) -> usize {
        self.width()
    }
    fn params(&self) -> Vec<ParamEntry> {
        let n = self.n();
        vec![
            ParamEntry {
                name: "scale",
                shape: vec![n],
                kind: TensorKind::Norm,
            },
            ParamEntry {
                name: "shift",
                shape: vec![n],
                kind: TensorKind::Norm,
            },
        ]
    }
    fn init(&self, data: &mut [f64], _rng: &mut dyn RngCore) {
        data[..self.n()].fill(1.0);
    }
    fn forward(&self, f: Forward<'_, T>) {
        let (win, nper, r) = (self.width(), self.n(), f.rows);
        let (scale, shift) = f.params.split_at(nper);
        let st = &mut f.state.stats;
        grow(st, r.div_ceil(f.minibatch) * nper);
        grow(&mut f.state.saved, r * win);
        let xhat = &mut f.state.saved[..r * win];
        for (b, (b0, b1)) in batches(r, f.minibatch).enumerate() {
            let rng = b0 * win..b1 * win;
            let inv = &mut st[b * nper..(b + 1) * nper];
            match self.over {
                NormOver::Channels => bn_channels_forward(
                    &f.input[rng.clone()],
                    &mut xhat[rng.clone()],
                    &mut f.output[rng],
                    inv,
                    scale,
                    shift,
                    self.channels,
                    self.positions,
                ),
                _ => bn_features_forward(
                    &f.input[rng.clone()],
                    &mut xhat[rng.clone()],
                    &mut f.output[rng],
                    inv,
                    scale,
                    shift,
                    win,
                ),
            }
        }
    }
    fn backward(&self, b: Backward<'_, T>) -> GradIn {
        let (win, nper, r) = (self.width(), self.n(), b.rows);
        let scale = &b.params[..nper];
        let (dgamma, dbeta) = b.grads.split_at_mut(nper);
        let xhat = &b.state.saved[..r * win];
        let st = &b.state.stats;
        grow(b.scratch, 2 * nper);
        let (s1, s2) = b.scratch[..2 * nper].split_at_mut(nper);
        for (k, (b0, b1)) in batches(r, b.minibatch).enumerate() {
            let rng = b0 * win..b1 * win;
            let inv = &st[k * nper..(k + 1) * nper];
            match self.over {
                NormOver::Channels => bn_channels_backward(
                    &xhat[rng.clone()],
                    &mut b.dy[rng],
                    inv,
                    scale,
                    dgamma,
                    dbeta,
                    self.channels,
                    self.positions,
                ),
                _ => bn_features_backward(
                    &xhat[rng.clone()],
                    &mut b.dy[rng],
                    inv,
                    scale,
                    dgamma,
                    dbeta,
                    s1,
                    s2,
                    win,
                ),
            }
        }
        GradIn::InDy
    }
    fn has_tangent(&self) -> bool {
        true
    }
    /// `dy = dgamma xh + gamma J dx + dbeta`; keeps `J dx` and `ds` for the backward pass.
    fn forward_tangent(&self, t: TangentForward<'_, T>) {
        let (win, nper, r) = (self.width(), self.n(), t.rows);
        let (gamma, _) = t.params.split_at(nper);
        let (dgamma, dbeta) = t.params_dot.split_at(nper);
        let xh = &t.state.saved[..r * win];
        let inv = &t.state.stats;
        let ts = &mut *t.tstate;
        grow(&mut ts.saved, r * win);
        grow(&mut ts.stats, r.div_ceil(t.minibatch) * nper);
        let (dxh, dss) = (&mut ts.saved, &mut ts.stats);
        let (xd, out) = (t.input_dot, &mut *t.output_dot);
        self.pattern().for_each(r, t.minibatch, |g| {
            dss[g.stat] = norm::jvp(g.idx, xh, inv[g.stat], xd, dxh);
            let (ga, dga, dbe) = (gamma[g.param], dgamma[g.param], dbeta[g.param]);
            for &i in g.idx {
                out[i] = ga * dxh[i] + dga * xh[i] + dbe;
            }
        });
    }
    /// `dgamma' += sum (ybar' xh + ybar dxh)`, `dbeta' += sum ybar'`, and the normalisation's
    /// second-order pass on `gamma ybar` with tangent `dgamma ybar + gamma ybar'`.
    fn backward_tangent(&self, t: TangentBackward<'_, T>) -> GradIn {
        let (win, nper, r) = (self.width(), self.n(), t.rows);
        let gamma = &t.params[..nper];
        let dgamma = &t.params_dot[..nper];
        let (hg, hb) = t.grads_dot.split_at_mut(nper);
        let xh = &t.state.saved[..r * win];
        let inv = &t.state.stats;
        let (dxh, dss) = (&t.tstate.saved, &t.tstate.stats);
        let ybar = t.ybar;
        let gd = &mut *t.ybar_dot;
        let mut tmp = Vec::new();
        self.pattern().for_each(r, t.minibatch, |g| {
            let p = g.param;
            let (mut sg, mut sb) = (T::zero(), T::zero());
            for &i in g.idx {
                sg += gd[i] * xh[i] + ybar[i] * dxh[i];
                sb += gd[i];
            }
            hg[p] += sg;
            hb[p] += sb;
            let (ga, dga) = (gamma[p], dgamma[p]);
            norm::second_order(
                g.idx,
                xh,
                inv[g.stat],
                dss[g.stat],
                |i| ga * ybar[i],
                |i| dga * ybar[i] + ga * gd[i],
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

impl BatchNorm {
    fn pattern(&self) -> Pattern {
        Pattern::Batch {
            over: self.over,
            channels: self.channels,
            positions: self.positions,
        }
    }
}

/// Batch norm over features (each column over the rows of a mini-batch), one batch.
/// Writes `xhat` and `y = gamma * xhat + beta`, and the inverse std per feature into `inv`.
fn bn_features_forward<T: Real>(
    x: &[T],
    xhat: &mut [T],
    y: &mut [T],
    inv: &mut [T],
    gamma: &[T],
    beta: &[T],
    f: usize,
) {
    let m = x.len() / f;
    let mf: T = c(m as f64);
    let mean = &mut y[..f]; // first output row is scratch until the last pass
    mean.iter_mut().for_each(|v| *v = T::zero());
    for row in x.chunks_exact(f) {
        mean.iter_mut().zip(row).for_each(|(a, &v)| *a += v);
    }
    mean.iter_mut().for_each(|a| *a /= mf);
    inv.iter_mut().for_each(|v| *v = T::zero());
    for (row, hrow) in x.chunks_exact(f).zip(xhat.chunks_exact_mut(f)) {
        for j in 0..f {
            let d = row[j] - mean[j];
            hrow[j] = d;
            inv[j] += d * d;
        }
    }
    let eps: T = c(NORM_EPS);
    inv.iter_mut()
        .for_each(|v| *v = T::one() / (*v / mf + eps).sqrt());
    for (hrow, yrow) in xhat.chunks_exact_mut(f).zip(y.chunks_exact_mut(f)) {
        for j in 0..f {
            let h = hrow[j] * inv[j];
            hrow[j] = h;
            yrow[j] = gamma[j] * h + beta[j];
        }
    }
}

/// Backward of [`bn_features_forward`] for one batch, in place on `g`; accumulates into
/// `dgamma`, `dbeta`. `s1`, `s2` are scratch of length `f`.
fn bn_features_backward<T: Real>(
    xhat: &[T],
    g: &mut [T],
    inv: &[T],
    gamma: &[T],
    dgamma: &mut [T],
    dbeta: &mut [T],
    s1: &mut [T],
    s2: &mut [T],
    f: usize,
) {
    let m = xhat.len() / f;
    let mf: T = c(m as f64);
    s1.iter_mut().for_each(|v| *v = T::zero());
    s2.iter_mut().for_each(|v| *v = T::zero());
    for (hrow, grow) in xhat.chunks_exact(f).zip(g.chunks_exact(f)) {
        for j in 0..f {
            s1[j] += grow[j];
            s2[j] += grow[j] * hrow[j];
        }
    }
    for j in 0..f {
        dgamma[j] += s2[j];
        dbeta[j] += s1[j];
        // reuse s1/s2 as the per-feature coefficients
        let k = gamma[j] * inv[j] / mf;
        s1[j] = k * s1[j];
        s2[j] = k * s2[j];
    }
    for (hrow, grow) in xhat.chunks_exact(f).zip(g.chunks_exact_mut(f)) {
        for j in 0..f {
            grow[j] = gamma[j] * inv[j] * grow[j] - s1[j] - hrow[j] * s2[j];
        }
    }
}

/// Batch norm per channel over the rows of a mini-batch x positions, one batch. Rows are
/// `ch x pos` channel-major. `inv` has one entry per channel.
fn bn_channels_forward<T: Real>(
    x: &[T],
    xhat: &mut [T],
    y: &mut [T],
    inv: &mut [T],
    gamma: &[T],
    beta: &[T],
    ch: usize,
    pos: usize,
) {
    let w = ch * pos;
    let m = x.len() / w;
    let nf: T = c((m * pos) as f64);
    let eps: T = c(NORM_EPS);
    for k in 0..ch {
        let mut s = T::zero();
        for row in x.chunks_exact(w) {
            s = row[k * pos..(k + 1) * pos].iter().fold(s, |a, &v| a + v);
        }
        let mean = s / nf;
        let mut v2 = T::zero();
        for (row, hrow) in x.chunks_exact(w).zip(xhat.chunks_exact_mut(w)) {
            for (h, &v) in hrow[k * pos..(k + 1) * pos]
                .iter_mut()
                .zip(&row[k * pos..(k + 1) * pos])
            {
                let d = v - mean;
                *h = d;
                v2 += d * d;
            }
        }
        let iv = T::one() / (v2 / nf + eps).sqrt();
        inv[k] = iv;
        for (hrow, yrow) in xhat.chunks_exact_mut(w).zip(y.chunks_exact_mut(w)) {
            for (h, o) in hrow[k * pos..(k + 1) * pos]
                .iter_mut()
                .zip(&mut yrow[k * pos..(k + 1) * pos])
            {
                *h *= iv;
                *o = gamma[k] * *h + beta[k];
            }
        }
    }
}

/// Backward of [`bn_channels_forward`] for one batch, in place on `g`.
fn bn_channels_backward<T: Real>(
    xhat: &[T],
    g: &mut [T],
    inv: &[T],
    gamma: &[T],
    dgamma: &mut [T],
    dbeta: &mut [T],
    ch: usize,
    pos: usize,
) {
    let w = ch * pos;
    let m = xhat.len() / w;
    let nf: T = c((m * pos) as f64);
    for k in 0..ch {
        let (mut s1, mut s2) = (T::zero(), T::zero());
        for (hrow, grow) in xhat.chunks_exact(w).zip(g.chunks_exact(w)) {
            for (&h, &d) in hrow[k * pos..(k + 1) * pos]
                .iter()
                .zip(&grow[k * pos..(k + 1) * pos])
            {
                s1 += d;
                s2 += d * h;
            }
        }
        dgamma[k] += s2;
        dbeta[k] += s1;
        let a = gamma[k] * inv[k];
        let (b1, b2) = (a * s1 / nf, a * s2 / nf);
        for (hrow, grow) in xhat.chunks_exact(w).zip(g.chunks_exact_mut(w)) {
            for (&h, d) in hrow[k * pos..(k + 1) * pos]
                .iter()
                .zip(&mut grow[k * pos..(k + 1) * pos])
            {
                *d = a * *d - b1 - h * b2;
            }
        }
    }
}
