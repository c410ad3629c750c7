//! The verdict on a stationary point ([`Verdict`]) and everything measured there
//! ([`StabilityReport`]).

use super::escape::Escape;
use super::options::HvpMethod;
use super::spectra::{BlockSpectrum, HeldOutRayleigh, SamplingError};
use serde::{Deserialize, Serialize};

/// Verdict on a stationary point for augmented training.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The stationary-point search did not reach its tolerance: the point is not stationary
    /// and its spectra say nothing about stability.
    NotStationary,
    /// No eigenvalue of either block below `-noise`, both lowest Ritz values converged: stable
    /// (to second order).
    Stable,
    /// `H_perp` vanishes (every Ritz value 0, or `mu` with a ridge, to the noise level): a
    /// flat point, e.g. a saturated or collapsed network whose group layers receive no
    /// gradient; no second-order information.
    Flat,
    /// `H_perp` has an eigenvalue below `-noise` while the E block has none: a minimum for
    /// equivariant training that augmented training leaves (Proposition 3).
    UnstableOffE,
    /// The E block has an eigenvalue below `-noise`: not a minimum even within E.
    UnstableInE,
    /// A minimum within E whose sampled estimate of `H_perp` (M of the group's elements) has a
    /// negative eigenvalue. Not a verdict: the mean over M elements is biased towards the
    /// single-element (nominal) Hessian, whose E-perp spectrum reaches far lower than the
    /// group average's (E4-rototrans: exact lambda_min -1.2e-4, M = 8 estimate -1.0e-1), and
    /// two samples agree with each other, so their difference does not reveal the bias.
    EstimateOnly,
    /// A minimum within E whose `H_perp` is estimated from samples, with a held-out Rayleigh
    /// quotient ([`HeldOutRayleigh`]) significantly below `-noise`: the exact group average
    /// has a negative eigenvalue, at most that quotient (a statistical proof, p < 0.001).
    UnstableOffESampled,
    /// A* is stationary, but the lowest Ritz value of a block that decides the verdict is
    /// non-negative and not converged (Ritz residual above a tenth of its size and the
    /// noise): Lanczos bounds lambda_min only from above, so nothing is proven (more
    /// `lanczos_steps`).
    Unresolved,
}

impl Verdict {
    /// The verdict at a point (`converged`: the stationary-point search met its tolerance)
    /// from both blocks, the noise level, whether `H_perp` is exact, the held-out Rayleigh
    /// test of a sampled one, and the ridge `mu` (a flat `H_perp` equals `mu`).
    ///
    /// A Ritz value is an upper bound of the block's lambda_min (Cauchy interlacing): a
    /// negative one proves a negative eigenvalue, a non-negative one proves nothing until it
    /// has converged (Ritz residual at most a tenth of its size, or below the noise).
    pub fn decide(
        converged: bool,
        e_block: &BlockSpectrum,
        perp_block: &BlockSpectrum,
        exact: bool,
        rayleigh: Option<&HeldOutRayleigh>,
        noise: f64,
        weight_decay: f64,
    ) -> Verdict {
        let settled = |b: &BlockSpectrum| b.min_residual <= 0.1 * b.min.abs() + noise;
        if !converged {
            Verdict::NotStationary
        } else if e_block.min < -noise {
            Verdict::UnstableInE
        } else if !settled(e_block) {
            Verdict::Unresolved
        } else if perp_block.min < -noise && !exact {
            if rayleigh.is_some_and(|r| r.significantly_negative(noise)) {
                Verdict::UnstableOffESampled
            } else {
                Verdict::EstimateOnly
            }
        } else if perp_block.min < -noise {
            Verdict::UnstableOffE
        } else if (perp_block.min - weight_decay).abs() <= noise
            && (perp_block.max - weight_decay).abs() <= noise
        {
            Verdict::Flat
        } else if !settled(perp_block) {
            Verdict::Unresolved
        } else {
            Verdict::Stable
        }
    }
}

/// Everything [`super::analyse`] measured at one stationary point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StabilityReport {
    /// Parameters of the network.
    pub num_params: usize,
    /// Dimension of E-perp (group-layer weights orthogonal to E).
    pub dim_perp: usize,
    /// L-BFGS iterations of the stationary-point search.
    pub iterations: usize,
    /// Trust-region Newton iterations after them.
    #[serde(default)]
    pub newton_iterations: usize,
    /// Hessian-vector products of the Newton stage.
    #[serde(default)]
    pub newton_hvps: usize,
    /// The ridge coefficient `mu` of every risk (both Hessian blocks include `mu`).
    #[serde(default)]
    pub weight_decay: f64,
    /// Whether it met its relative tolerance.
    pub converged: bool,
    /// Why it stopped.
    pub stop_reason: String,
    /// `R` at the start and at `A*`.
    pub loss_start: f64,
    /// `R(A*)`.
    pub loss: f64,
    /// `||Pi_E grad R||` at the start.
    pub residual_start: f64,
    /// `||Pi_E grad R(A*)||`.
    pub residual: f64,
    /// `||A*||`.
    pub norm_a_star: f64,
    /// Smallest `|pre-activation|` at LeakyReLU inputs (`None`: no LeakyReLU).
    pub kink_distance: Option<f64>,
    /// `Hess R_eqv` on E.
    pub e_block: BlockSpectrum,
    /// `H_perp` on E-perp.
    pub perp_block: BlockSpectrum,
    /// Whether `H_perp` is exact (all group elements) or an estimate from a sample.
    pub perp_exact: bool,
    /// Group elements averaged over.
    pub perp_elements: usize,
    /// Sampling error of the estimate (two independent samples), when not exact.
    pub sampling_error: Option<SamplingError>,
    /// The held-out Rayleigh test of the estimate's lowest Ritz vector, when not exact.
    #[serde(default)]
    pub held_out_rayleigh: Option<HeldOutRayleigh>,
    /// Per-sample draws at `A*` (exact only, with `per_sample_samples`): `v^T H_k v` of the
    /// lowest eigenvector `v` of `H_perp` under K independent per-sample assignments
    /// ([`super::per_sample_rayleigh`]); compare with [`StabilityReport::perp_block`]'s `min`, which
    /// is `v^T H_perp v` under the per-batch (exact) average.
    #[serde(default)]
    pub per_sample_rayleigh: Option<HeldOutRayleigh>,
    /// `||Pi_perp Hess R_aug v|| / ||Hess R_aug v||` for a random `v` in E (exact only):
    /// the off-diagonal block, zero at an equivariant point (docs/science.md §10(d)).
    pub off_diagonal: Option<f64>,
    /// What the HVPs' error level allows `off_diagonal` to be (Proposition 2 makes it zero):
    /// the error level times `||v|| / ||H v||`.
    #[serde(default)]
    pub off_diagonal_bound: Option<f64>,
    /// Escape along the Ritz vector of `lambda_min(H_perp)` (exact only).
    pub escape_min: Option<Escape>,
    /// Escape along a random E-perp direction (exact only).
    pub escape_random: Option<Escape>,
    /// The verdict.
    pub verdict: Verdict,
    /// Gradient evaluations of the whole analysis (one HVP = two).
    pub gradient_evaluations: usize,
    /// How the Hessian-vector products were taken.
    #[serde(default = "central_differences")]
    pub hvp: HvpMethod,
    /// The HVPs' error level per unit vector ([`super::Risk::hvp_error`]).
    #[serde(default)]
    pub hvp_error: f64,
    /// Hessian-vector products of the analysis.
    #[serde(default)]
    pub hvp_count: usize,
    /// How the binary cross-entropy of the risk is computed (`logits`, `probabilities`, ...;
    /// `None` for other losses), see [`eqaug_nn::Sequential::bce_form`].
    #[serde(default)]
    pub loss_form: Option<String>,
}

fn central_differences() -> HvpMethod {
    HvpMethod::CentralDifferences
}
