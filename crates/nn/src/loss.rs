//! The loss kernels (sums over a chunk; docs/science.md §3-§4): values, gradients w.r.t. the
//! network's output and their tangents (the loss's Hessian along an output tangent).

use eqaug_groups::Real;

use crate::{c, Loss};

/// A loss as evaluated on a chunk: the [`Loss`] resolved against the network's last layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Kernel {
    /// Binary cross-entropy of logits (the input of a final sigmoid), `softplus(z) - t z`,
    /// summed and divided by `div`.
    BceLogits { div: f64 },
    /// Binary cross-entropy of probabilities with clamped logs and the clamped function's
    /// exact derivative.
    BceProbabilities { div: f64 },
    /// PyTorch's `BCELoss`: clamped logs, gradient `(p - t) / max(p (1 - p), 1e-12)`.
    BcePytorch { div: f64 },
    /// Cross-entropy of log-softmax of rows of `w`.
    CrossEntropy { w: usize },
    /// Squared error divided by `div`.
    Mse { div: f64 },
}

impl Kernel {
    /// The kernel of `loss` on outputs of width `w` with `positions` per channel; `logits`:
    /// the network ends in a sigmoid whose input the loss may take.
    pub(crate) fn new(loss: Loss, w: usize, positions: usize, logits: bool) -> Kernel {
        let (wf, pf) = (w as f64, positions as f64);
        match loss {
            Loss::Bce if logits => Kernel::BceLogits { div: wf },
            Loss::SegmentationBce if logits => Kernel::BceLogits { div: pf },
            Loss::Bce => Kernel::BceProbabilities { div: wf },
            Loss::SegmentationBce => Kernel::BceProbabilities { div: pf },
            Loss::BceOnProbabilities => Kernel::BcePytorch { div: wf },
            Loss::SegmentationBceOnProbabilities => Kernel::BcePytorch { div: pf },
            // on probabilities this is log-softmax of the softmax output (the double softmax)
            Loss::CrossEntropyLogits | Loss::CrossEntropyOnProbabilities => {
                Kernel::CrossEntropy { w }
            }
            Loss::Mse => Kernel::Mse { div: wf },
        }
    }

    /// Whether the kernel takes the input of the final sigmoid rather than the output.
    pub(crate) fn on_logits(&self) -> bool {
        matches!(self, Kernel::BceLogits { .. })
    }

    /// How the kernel computes a binary cross-entropy, for reports (`None` for other losses).
    pub(crate) fn bce_form(&self) -> Option<&'static str> {
        match self {
            Kernel::BceLogits { .. } => Some("logits"),
            Kernel::BceProbabilities { .. } => Some("probabilities"),
            Kernel::BcePytorch { .. } => Some("probabilities (PyTorch BCELoss gradient)"),
            _ => None,
        }
    }

    /// The loss of outputs `y` (`rows x w`; logits for [`Kernel::BceLogits`]) against targets
    /// `t`, summed over the rows; if `g` is given, its gradient w.r.t. `y` is written there.
    pub(crate) fn evaluate<T: Real>(&self, y: &[T], t: &[T], g: Option<&mut [T]>) -> f64 {
        match *self {
            Kernel::BceLogits { div } => bce_logits(y, t, g, div),
            Kernel::BceProbabilities { div } => bce_probabilities(y, t, g, div, false),
            Kernel::BcePytorch { div } => bce_probabilities(y, t, g, div, true),
            Kernel::CrossEntropy { w } => cross_entropy(y, t, g, w),
            Kernel::Mse { div } => mse(y, t, g, div),
        }
    }

    /// The tangent of the gradient of [`Kernel::evaluate`] along an output tangent `yd`:
    /// `out = (d^2 loss / dy^2) yd`.
    pub(crate) fn hvp<T: Real>(&self, y: &[T], t: &[T], yd: &[T], out: &mut [T]) {
        match *self {
            Kernel::BceLogits { div } => {
                let k: T = c(1.0 / div);
                for ((o, &z), &d) in out.iter_mut().zip(y).zip(yd) {
                    let s = sigmoid(z);
                    *o = k * s * (T::one() - s) * d;
                }
            }
            Kernel::BceProbabilities { div } => {
                let k: T = c(1.0 / div);
                let lo: T = c(-100.0);
                for (((o, &p), &tv), &d) in out.iter_mut().zip(y).zip(t).zip(yd) {
                    let q = T::one() - p;
                    let a = if p.ln() < lo { T::zero() } else { tv / (p * p) };
                    let b = if (-p).ln_1p() < lo {
                        T::zero()
                    } else {
                        (T::one() - tv) / (q * q)
                    };
                    *o = k * (a + b) * d;
                }
            }
            Kernel::BcePytorch { div } => {
                let k: T = c(1.0 / div);
                let tiny: T = c(1e-12);
                for (((o, &p), &tv), &d) in out.iter_mut().zip(y).zip(t).zip(yd) {
                    let den = p * (T::one() - p);
                    *o = if den < tiny {
                        k * d / tiny
                    } else {
                        k * (den - (p - tv) * (T::one() - p - p)) / (den * den) * d
                    };
                }
            }
            Kernel::CrossEntropy { w } => {
                for (((zr, tr), dr), or) in y
                    .chunks_exact(w)
                    .zip(t.chunks_exact(w))
                    .zip(yd.chunks_exact(w))
                    .zip(out.chunks_exact_mut(w))
                {
                    let m = zr.iter().fold(T::neg_infinity(), |a, &b| a.max(b));
                    let se = zr.iter().fold(T::zero(), |a, &v| a + (v - m).exp());
                    let lse = m + se.ln();
                    let ts = tr.iter().fold(T::zero(), |a, &v| a + v);
                    let pd = zr
                        .iter()
                        .zip(dr)
                        .fold(T::zero(), |a, (&z, &d)| a + (z - lse).exp() * d);
                    for ((o, &z), &d) in or.iter_mut().zip(zr).zip(dr) {
                        *o = ts * (z - lse).exp() * (d - pd);
                    }
                }
            }
            Kernel::Mse { div } => {
                let k: T = c(2.0 / div);
                for (o, &d) in out.iter_mut().zip(yd) {
                    *o = k * d;
                }
            }
        }
    }
}

#[inline]
fn sigmoid<T: Real>(v: T) -> T {
    T::one() / (T::one() + (-v).exp())
}

/// Binary cross-entropy of logits, `sum(max(z, 0) - t z + log(1 + exp(-|z|))) / div`; its
/// gradient `(sigmoid(z) - t) / div` into `g`.
fn bce_logits<T: Real>(z: &[T], t: &[T], g: Option<&mut [T]>, div: f64) -> f64 {
    let mut s = 0.0f64;
    for (&zv, &tv) in z.iter().zip(t) {
        let l = zv.max(T::zero()) - tv * zv + (-zv.abs()).exp().ln_1p();
        s += l.to_f64().unwrap_or(f64::NAN);
    }
    if let Some(g) = g {
        let k: T = c(1.0 / div);
        for ((d, &zv), &tv) in g.iter_mut().zip(z).zip(t) {
            *d = k * (sigmoid(zv) - tv);
        }
    }
    s / div
}

/// Binary cross-entropy of probabilities summed over all entries and divided by `div`; logs
/// clamped at -100 (PyTorch), NaN propagates. The gradient into `g`: with `pytorch`,
/// PyTorch's `(p - t) / max(p (1 - p), 1e-12)`; otherwise the exact derivative of the
/// clamped loss (`-t / p` where `log p` is not clamped, 0 where it is; likewise for `1 - p`).
fn bce_probabilities<T: Real>(
    p: &[T],
    t: &[T],
    g: Option<&mut [T]>,
    div: f64,
    pytorch: bool,
) -> f64 {
    let lo: T = c(-100.0);
    let tiny: T = c(1e-12);
    let mut s = 0.0f64;
    for (&pv, &tv) in p.iter().zip(t) {
        let a = pv.ln();
        // log(1 - p): PyTorch's rounding of 1 - p, or log1p(-p), exact for tiny p
        let b = if pytorch {
            (T::one() - pv).ln()
        } else {
            (-pv).ln_1p()
        };
        let a = if a < lo { lo } else { a };
        let b = if b < lo { lo } else { b };
        s -= (tv * a + (T::one() - tv) * b).to_f64().unwrap_or(f64::NAN);
    }
    if let Some(g) = g {
        let k: T = c(1.0 / div);
        for ((d, &pv), &tv) in g.iter_mut().zip(p).zip(t) {
            let q = T::one() - pv;
            *d = if pytorch {
                let den = pv * q;
                let den = if den < tiny { tiny } else { den };
                k * (pv - tv) / den
            } else {
                let a = if pv.ln() < lo { T::zero() } else { -tv / pv };
                let b = if (-pv).ln_1p() < lo {
                    T::zero()
                } else {
                    (T::one() - tv) / q
                };
                k * (a + b)
            };
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The probability form's gradient is the derivative of its reported (clamped) value at
    /// saturated probabilities, 1e-60 (log clamped at -100) and 1e-30 (not clamped) among
    /// them, for both targets, and its Hessian the derivative of the gradient: central
    /// differences with a relative step.
    #[test]
    fn probability_form_is_differentiated_exactly_at_saturation() {
        let k = Kernel::BceProbabilities { div: 1.0 };
        for &p in &[1e-60f64, 1e-30, 1e-8, 0.3, 0.9, 1.0 - 1e-9] {
            for &t in &[0.0, 1.0] {
                let (pv, tv) = ([p], [t]);
                let mut g = [0.0];
                k.evaluate(&pv, &tv, Some(&mut g[..]));
                // a step of 1e-3 of the distance to the nearer end, taken as stored
                let (pp, pm) = (p + 1e-3 * p.min(1.0 - p), p - 1e-3 * p.min(1.0 - p));
                let h = 0.5 * (pp - pm);
                let f = |q: f64| k.evaluate(&[q], &tv, None);
                let fd = (f(pp) - f(pm)) / (pp - pm);
                // truncation (1e-6 relative) and the loss's rounding over the step
                let budget = 1e-5 * g[0].abs() + 4.0 * f64::EPSILON * f(p).abs() / h;
                assert!(
                    (g[0] - fd).abs() <= budget || (g[0] == 0.0 && fd == 0.0),
                    "p {p:e} t {t}: gradient {} vs {fd}",
                    g[0]
                );
                let mut hv = [0.0];
                k.hvp(&pv, &tv, &[1.0], &mut hv);
                let gat = |q: f64| {
                    let mut g = [0.0];
                    k.evaluate(&[q], &tv, Some(&mut g[..]));
                    g[0]
                };
                let fd2 = (gat(pp) - gat(pm)) / (pp - pm);
                // the difference's budget: truncation, and the gradient's rounding over 2h
                let budget = 1e-5 * hv[0].abs() + 4.0 * f64::EPSILON * g[0].abs() / h;
                assert!(
                    (hv[0] - fd2).abs() <= budget || (hv[0] == 0.0 && fd2 == 0.0),
                    "p {p:e} t {t}: second derivative {} vs {fd2}",
                    hv[0]
                );
            }
        }
        // clamped: log(1e-60) < -100, so the t = 1 term is constant there
        let mut g = [0.0];
        k.evaluate(&[1e-60], &[1.0], Some(&mut g[..]));
        assert_eq!(g[0], 0.0);
    }

    /// The logits form equals the probability form of `sigmoid(z)` where neither saturates,
    /// and its gradient is `sigmoid(z) - t`.
    #[test]
    fn logits_form_matches_probabilities_away_from_saturation() {
        let (kl, kp) = (
            Kernel::BceLogits { div: 2.0 },
            Kernel::BceProbabilities { div: 2.0 },
        );
        let z = [-3.0, 0.5, 2.0, -0.1];
        let t = [0.0, 1.0, 1.0, 0.0];
        let p: Vec<f64> = z.iter().map(|&v| sigmoid(v)).collect();
        let (a, b) = (kl.evaluate(&z, &t, None), kp.evaluate(&p, &t, None));
        assert!((a - b).abs() < 1e-14 * a.abs(), "{a} vs {b}");
        let mut g = [0.0; 4];
        kl.evaluate(&z, &t, Some(&mut g[..]));
        for i in 0..4 {
            assert!((g[i] - (p[i] - t[i]) / 2.0).abs() < 1e-16);
        }
        // at z = -800 the probability would be 0; the logits form stays exact
        let mut g = [0.0];
        let l = kl.evaluate(&[-800.0], &[1.0], Some(&mut g[..]));
        assert_eq!(l, 400.0);
        assert_eq!(g[0], -0.5);
    }
}
