//! Kernels on contiguous row-major chunks: one GEMM per linear pass, simple loops elsewhere.
//! Shapes: `r` rows (samples); every buffer is `r x width` row-major.

use eqaug_groups::Real;
use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2};

use crate::c;

/// Normalisation epsilon (PyTorch's default for batch and layer norm).
pub(crate) const NORM_EPS: f64 = 1e-5;

fn view<T>(s: &[T], r: usize, w: usize) -> ArrayView2<'_, T> {
    ArrayView2::from_shape((r, w), &s[..r * w]).expect("buffer shape")
}

fn view_mut<T>(s: &mut [T], r: usize, w: usize) -> ArrayViewMut2<'_, T> {
    ArrayViewMut2::from_shape((r, w), &mut s[..r * w]).expect("buffer shape")
}

/// `Y = X W^T (+ b)`; `x: r x inp`, `w: out x inp`, `y: r x out`.
pub(crate) fn linear_forward<T: Real>(
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    y: &mut [T],
    r: usize,
    inp: usize,
    out: usize,
) {
    if r == 0 {
        return;
    }
    let xv = view(x, r, inp);
    let wv = view(w, out, inp);
    let mut yv = view_mut(y, r, out);
    general_mat_mul(T::one(), &xv, &wv.t(), T::zero(), &mut yv);
    if let Some(b) = bias {
        for row in y[..r * out].chunks_exact_mut(out) {
            for (v, &bb) in row.iter_mut().zip(b) {
                *v += bb;
            }
        }
    }
}

/// `dW += dY^T X`, `db += sum_rows dY`, and if asked `dX = dY W`.
pub(crate) fn linear_backward<T: Real>(
    x: &[T],
    w: &[T],
    dy: &[T],
    dw: &mut [T],
    db: Option<&mut [T]>,
    dx: Option<&mut [T]>,
    r: usize,
    inp: usize,
    out: usize,
) {
    if r == 0 {
        return;
    }
    let xv = view(x, r, inp);
    let dyv = view(dy, r, out);
    let mut dwv = view_mut(dw, out, inp);
    general_mat_mul(T::one(), &dyv.t(), &xv, T::one(), &mut dwv);
    if let Some(db) = db {
        for row in dy[..r * out].chunks_exact(out) {
            for (d, &g) in db.iter_mut().zip(row) {
                *d += g;
            }
        }
    }
    if let Some(dx) = dx {
        let wv = view(w, out, inp);
        let mut dxv = view_mut(dx, r, inp);
        general_mat_mul(T::one(), &dyv, &wv, T::zero(), &mut dxv);
    }
}

/// Pointwise non-linearities.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Pointwise<T> {
    LeakyRelu(T),
    Tanh,
    Sigmoid,
    Softplus,
}

#[inline]
fn sigmoid<T: Real>(v: T) -> T {
    // exp(-v) may overflow to +inf for very negative v: 1/(1+inf) = 0, no NaN.
    T::one() / (T::one() + (-v).exp())
}

pub(crate) fn pointwise_forward<T: Real>(f: Pointwise<T>, x: &[T], y: &mut [T]) {
    let y = &mut y[..x.len()];
    match f {
        Pointwise::LeakyRelu(slope) => {
            for (o, &v) in y.iter_mut().zip(x) {
                let m = if v > T::zero() { T::one() } else { slope };
                *o = v * m;
            }
        }
        Pointwise::Tanh => y.iter_mut().zip(x).for_each(|(o, &v)| *o = v.tanh()),
        Pointwise::Sigmoid => y.iter_mut().zip(x).for_each(|(o, &v)| *o = sigmoid(v)),
        Pointwise::Softplus => y.iter_mut().zip(x).for_each(|(o, &v)| {
            *o = v.max(T::zero()) + (-v.abs()).exp().ln_1p();
        }),
    }
}

/// In place: `g <- g * f'(x)`, using the layer input `x` or output `y`.
pub(crate) fn pointwise_backward<T: Real>(f: Pointwise<T>, x: &[T], y: &[T], g: &mut [T]) {
    let g = &mut g[..x.len()];
    match f {
        Pointwise::LeakyRelu(slope) => {
            for (d, &v) in g.iter_mut().zip(x) {
                let m = if v > T::zero() { T::one() } else { slope };
                *d *= m;
            }
        }
        Pointwise::Tanh => g
            .iter_mut()
            .zip(y)
            .for_each(|(d, &v)| *d *= T::one() - v * v),
        Pointwise::Sigmoid => g
            .iter_mut()
            .zip(y)
            .for_each(|(d, &v)| *d = *d * v * (T::one() - v)),
        Pointwise::Softplus => g.iter_mut().zip(x).for_each(|(d, &v)| *d *= sigmoid(v)),
    }
}

/// Softmax over each row of width `w`.
pub(crate) fn softmax_forward<T: Real>(x: &[T], y: &mut [T], w: usize) {
    for (xr, yr) in x.chunks_exact(w).zip(y.chunks_exact_mut(w)) {
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
pub(crate) fn softmax_backward<T: Real>(y: &[T], g: &mut [T], w: usize) {
    for (yr, gr) in y.chunks_exact(w).zip(g.chunks_exact_mut(w)) {
        let s = yr
            .iter()
            .zip(gr.iter())
            .fold(T::zero(), |a, (&p, &d)| a + p * d);
        for (d, &p) in gr.iter_mut().zip(yr) {
            *d = p * (*d - s);
        }
    }
}

/// Iterates over the mini-batches `[b0, b1)` of a chunk of `r` rows.
pub(crate) fn batches(r: usize, mb: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..r).step_by(mb).map(move |b0| (b0, (b0 + mb).min(r)))
}

/// Batch norm over features (each column over the rows of a mini-batch), one batch.
/// Writes `xhat` and `y = gamma * xhat + beta`, and the inverse std per feature into `inv`.
pub(crate) fn bn_features_forward<T: Real>(
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
pub(crate) fn bn_features_backward<T: Real>(
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
pub(crate) fn bn_channels_forward<T: Real>(
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
pub(crate) fn bn_channels_backward<T: Real>(
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

/// Layer norm over all `w` features of each row (no affine). `inv`: one entry per row.
pub(crate) fn ln_features_forward<T: Real>(x: &[T], y: &mut [T], inv: &mut [T], w: usize) {
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
pub(crate) fn ln_features_backward<T: Real>(y: &[T], g: &mut [T], inv: &[T], w: usize) {
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
pub(crate) fn ln_channels_forward<T: Real>(
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
pub(crate) fn ln_channels_backward<T: Real>(
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

/// Binary cross-entropy summed over all entries and divided by `div`; gradient (of that sum)
/// written into `g` if given. Logs are clamped at -100 (PyTorch), NaN propagates.
pub(crate) fn bce<T: Real>(p: &[T], t: &[T], g: Option<&mut [T]>, div: f64) -> f64 {
    let lo: T = c(-100.0);
    let tiny: T = c(1e-12);
    let mut s = 0.0f64;
    for (&pv, &tv) in p.iter().zip(t) {
        let a = pv.ln();
        let b = (T::one() - pv).ln();
        let a = if a < lo { lo } else { a };
        let b = if b < lo { lo } else { b };
        s -= (tv * a + (T::one() - tv) * b).to_f64().unwrap_or(f64::NAN);
    }
    if let Some(g) = g {
        let k: T = c(1.0 / div);
        for ((d, &pv), &tv) in g.iter_mut().zip(p).zip(t) {
            let den = pv * (T::one() - pv);
            let den = if den < tiny { tiny } else { den };
            *d = k * (pv - tv) / den;
        }
    }
    s / div
}

/// Cross-entropy of log-softmax(z) against target rows (one-hot or probabilities), summed
/// over rows; gradient `sum(t) softmax(z) - t` into `g`.
pub(crate) fn cross_entropy<T: Real>(z: &[T], t: &[T], g: Option<&mut [T]>, w: usize) -> f64 {
    let mut s = 0.0f64;
    let mut g = g;
    for (row, (zr, tr)) in z.chunks_exact(w).zip(t.chunks_exact(w)).enumerate() {
        let m = zr.iter().fold(T::neg_infinity(), |a, &b| a.max(b));
        let se = zr.iter().fold(T::zero(), |a, &v| a + (v - m).exp());
        let lse = m + se.ln();
        let mut ts = T::zero();
        let mut l = T::zero();
        for (&zv, &tv) in zr.iter().zip(tr) {
            l += tv * (lse - zv);
            ts += tv;
        }
        s += l.to_f64().unwrap_or(f64::NAN);
        if let Some(g) = g.as_deref_mut() {
            let gr = &mut g[row * w..(row + 1) * w];
            for ((d, &zv), &tv) in gr.iter_mut().zip(zr).zip(tr) {
                *d = ts * (zv - lse).exp() - tv;
            }
        }
    }
    s
}

/// Squared error summed over all entries and divided by `div`; gradient into `g`.
pub(crate) fn mse<T: Real>(p: &[T], t: &[T], g: Option<&mut [T]>, div: f64) -> f64 {
    let mut s = 0.0f64;
    for (&pv, &tv) in p.iter().zip(t) {
        let d = (pv - tv).to_f64().unwrap_or(f64::NAN);
        s += d * d;
    }
    if let Some(g) = g {
        let k: T = c(2.0 / div);
        for ((d, &pv), &tv) in g.iter_mut().zip(p).zip(t) {
            *d = k * (pv - tv);
        }
    }
    s / div
}
