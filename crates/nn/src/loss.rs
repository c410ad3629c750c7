//! The loss kernels (sums over a chunk; docs/science.md §3-§4).

use eqaug_groups::Real;

use crate::{c, Loss};

/// The loss of outputs `y` (`rows x w`) against targets `t`, summed over the rows (each row's
/// loss as in [`Loss`]); if `g` is given, its gradient w.r.t. `y` is written there.
/// `positions` is the number of positions per output channel (for
/// [`Loss::SegmentationBce`]).
pub(crate) fn evaluate<T: Real>(
    loss: Loss,
    y: &[T],
    t: &[T],
    g: Option<&mut [T]>,
    w: usize,
    positions: usize,
) -> f64 {
    match loss {
        Loss::Bce => bce(y, t, g, w as f64),
        Loss::SegmentationBce => bce(y, t, g, positions as f64),
        // on probabilities this is log-softmax of the softmax output (the double softmax)
        Loss::CrossEntropyLogits | Loss::CrossEntropyOnProbabilities => cross_entropy(y, t, g, w),
        Loss::Mse => mse(y, t, g, w as f64),
    }
}

/// Binary cross-entropy summed over all entries and divided by `div`; gradient (of that sum)
/// written into `g` if given. Logs are clamped at -100 (PyTorch), NaN propagates.
fn bce<T: Real>(p: &[T], t: &[T], g: Option<&mut [T]>, div: f64) -> f64 {
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
fn cross_entropy<T: Real>(z: &[T], t: &[T], g: Option<&mut [T]>, w: usize) -> f64 {
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
fn mse<T: Real>(p: &[T], t: &[T], g: Option<&mut [T]>, div: f64) -> f64 {
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
