//! Measured escapes from a stationary point under exact-average augmented gradient descent
//! ([`measure_escape`], [`Escape`]).

use super::options::StabilityOptions;
use super::random::gaussian;
use super::risk::Risk;
use super::spectra::BlockSpectrum;
use crate::error::StabilityError;
use crate::hessian::{project_onto, Subspace};
use eqaug_nn::Params;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// A measured escape from `A* + delta v` under exact-average augmented gradient descent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Escape {
    /// What `v` is (`ritz-min` or `random`).
    pub direction: String,
    /// The learning rate.
    pub eta: f64,
    /// `||A_Eperp||` at steps `0..=steps`.
    pub norms: Vec<f64>,
    /// Measured per-step factor `(norms[T] / norms[0])^(1/T)`.
    pub measured_factor: f64,
    /// Predicted factor `1 - eta lambda` (for a Ritz direction).
    pub predicted_factor: Option<f64>,
    /// Bracket `[1 - eta lambda_max, 1 - eta lambda_min]` (for a random direction).
    pub predicted_range: Option<(f64, f64)>,
    /// `|(measured - 1) - (predicted - 1)| / |predicted - 1|`: the relative error of the rate.
    pub rate_relative_error: Option<f64>,
}

/// Exact-average augmented gradient descent with learning rate `eta` from
/// `a_star + delta * v / ||v||` (`v` projected onto E-perp), for `steps` steps or until
/// `||A_Eperp||` exceeds `10 delta` or falls below `1e-6 delta`; returns the norms of the E-perp
/// component per step.
pub fn measure_escape(
    risk_aug: &mut Risk<'_>,
    a_star: &Params<f64>,
    v: &Params<f64>,
    delta: f64,
    eta: f64,
    steps: usize,
) -> Result<Vec<f64>, StabilityError> {
    let mut dir = v.clone();
    project_onto(&mut dir, Subspace::Orthogonal);
    let nv = dir.norm();
    if nv == 0.0 {
        return Err(StabilityError::Invalid(
            "the escape direction has no E-perp component".into(),
        ));
    }
    let mut a = a_star.clone();
    a.axpy(delta / nv, &dir);
    let perp = |a: &Params<f64>| {
        let mut p = a.clone();
        project_onto(&mut p, Subspace::Orthogonal);
        p.norm()
    };
    let mut norms = vec![perp(&a)];
    let mut g = a.zeros_like();
    for _ in 0..steps {
        risk_aug.loss_and_gradient(&a, &mut g)?;
        a.axpy(-eta, &g);
        let n = perp(&a);
        norms.push(n);
        // Growth beyond the linear regime, or a decay to a millionth of delta (further on,
        // round-off in A* (about 1e-16 ||A*||) would bias the measured factor).
        if n > 10.0 * delta || n < 1e-6 * delta {
            break;
        }
    }
    Ok(norms)
}

/// The measured per-step factor `(norms[T] / norms[0])^(1/T)`.
pub(super) fn factor(norms: &[f64]) -> f64 {
    let t = (norms.len() - 1).max(1) as f64;
    (norms[norms.len() - 1] / norms[0]).powf(1.0 / t)
}

/// The two escape runs at `a` (learning rate `opts.escape_eta`, by default `1 / scale`): along
/// `vmin`, the eigen- or Ritz vector of `lambda_min(H_perp)` (predicted factor
/// `1 - eta lambda_min`), then along a random E-perp direction drawn from `rng` (predicted
/// bracket `[1 - eta lambda_max, 1 - eta lambda_min]`).
pub(super) fn escapes(
    aug: &mut Risk<'_>,
    a: &Params<f64>,
    vmin: &Params<f64>,
    perp_block: &BlockSpectrum,
    scale: f64,
    opts: &StabilityOptions,
    rng: &mut ChaCha8Rng,
) -> Result<(Escape, Escape), StabilityError> {
    let eta = opts
        .escape_eta
        .unwrap_or(1.0 / scale.max(f64::MIN_POSITIVE));
    let delta = opts.escape_delta * a.norm().max(1.0);
    let norms = measure_escape(aug, a, vmin, delta, eta, opts.escape_steps)?;
    let m = factor(&norms);
    let p = 1.0 - eta * perp_block.min;
    let escape_min = Escape {
        direction: "ritz-min".into(),
        eta,
        measured_factor: m,
        predicted_factor: Some(p),
        predicted_range: None,
        rate_relative_error: Some(((m - 1.0) - (p - 1.0)).abs() / (p - 1.0).abs()),
        norms,
    };
    let r = Params::from_vec(a.layout().clone(), gaussian(a.len(), rng))?;
    let norms = measure_escape(aug, a, &r, delta, eta, opts.escape_steps)?;
    let escape_random = Escape {
        direction: "random".into(),
        eta,
        measured_factor: factor(&norms),
        predicted_factor: None,
        predicted_range: Some((1.0 - eta * perp_block.max, 1.0 - eta * perp_block.min)),
        rate_relative_error: None,
        norms,
    };
    Ok((escape_min, escape_random))
}
