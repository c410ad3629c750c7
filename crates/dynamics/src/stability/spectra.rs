//! Spectra of the two Hessian blocks ([`BlockSpectrum`]: Lanczos runs with SLQ densities,
//! or the dense spectrum on a basis) and the Rayleigh tests of a sampled or per-sample
//! `H_perp` ([`HeldOutRayleigh`], [`held_out_rayleigh`], [`per_sample_rayleigh`],
//! [`SamplingError`]).

use super::basis::SparseVector;
use super::dense::dense_hessian_in;
use super::options::StabilityOptions;
use super::random::gaussian;
use super::risk::{configure, Risk};
use crate::error::StabilityError;
use crate::hessian::{project_onto, Subspace};
use crate::lanczos::{self, LanczosRun, SpectralDensity};
use crate::TrainData;
use eqaug_groups::Perm;
use eqaug_nn::{Network, Params};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// The whole spectrum of `Hess R` on the span of the orthonormal `basis` (E in the orbit
/// basis when `dim E` is at most [`StationaryOptions::dense_limit`]; E-perp in
/// [`perp_basis`] when `dim E-perp` is at most [`StabilityOptions::perp_dense_limit`]): every
/// eigenvalue, exact up to the central differences' error, which is estimated by the asymmetry
/// they leave and reported in place of the Ritz residuals. The density is the exact one
/// (weight `1 / dim` per value). Also returns the unit eigenvectors of the lowest and the
/// highest eigenvalue in parameter space.
pub(super) fn dense_block(
    risk: &mut Risk<'_>,
    a: &Params<f64>,
    basis: &[SparseVector],
    noise: f64,
) -> Result<(BlockSpectrum, Extremes), StabilityError> {
    let (h, asym) = dense_hessian_in(risk, a, basis)?;
    let n = h.len();
    let (values, vectors) = crate::lanczos::symmetric_eigen(&h);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
    let in_parameters = |k: usize| {
        let mut v = vec![0.0; a.len()];
        for (bj, row) in basis.iter().zip(&vectors) {
            let y = row[k];
            for &(i, x) in bj {
                v[i] += y * x;
            }
        }
        v
    };
    let vmin = in_parameters(order[0]);
    let vmax = in_parameters(order[n - 1]);
    let values: Vec<f64> = order.iter().map(|&i| values[i]).collect();
    Ok((
        BlockSpectrum {
            min: values[0],
            min_residual: asym,
            max: values[n - 1],
            max_residual: asym,
            min_error: asym,
            max_error: asym,
            negative: values.iter().filter(|&&x| x < 0.0).count(),
            negative_beyond_noise: values.iter().filter(|&&x| x < -noise).count(),
            noise,
            steps: n,
            runs: 1,
            density: SpectralDensity {
                nodes: vec![values.clone()],
                weights: vec![vec![1.0 / n as f64; n]],
            },
            ritz_values: values,
            dense: true,
        },
        Extremes {
            min: vmin,
            max: vmax,
        },
    ))
}

/// The unit (Ritz or eigen-) vectors of a block's lowest and highest values, in parameter
/// space.
#[derive(Clone, Debug)]
pub(super) struct Extremes {
    pub min: Vec<f64>,
    pub max: Vec<f64>,
}

/// Spectrum of one block (E or E-perp) from several Lanczos runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlockSpectrum {
    /// Smallest Ritz value over the runs.
    pub min: f64,
    /// Its Ritz residual `||H x - theta x||`.
    pub min_residual: f64,
    /// Largest Ritz value over the runs.
    pub max: f64,
    /// Its Ritz residual.
    pub max_residual: f64,
    /// A bound on the error of `min` (the "+-" of the reports): a Lanczos value's Ritz
    /// residual plus the HVP's error level (an eigenvalue of the Hessian lies within
    /// `||H x - theta x||` of theta, and the computed residual is off by at most the HVP's
    /// error); a dense block's asymmetry plus `sqrt(dim)` times the HVP's error level (Weyl: the
    /// eigenvalues move by at most the error matrix's norm, at most its Frobenius norm).
    #[serde(default)]
    pub min_error: f64,
    /// The same for `max`.
    #[serde(default)]
    pub max_error: f64,
    /// Ritz values below zero (of the run that found the lowest value).
    pub negative: usize,
    /// Ritz values below `-noise` (same run): the negatives that are not convergence noise.
    pub negative_beyond_noise: usize,
    /// The noise level used (see [`super::analyse`]).
    pub noise: f64,
    /// Lanczos steps per run.
    pub steps: usize,
    /// Number of runs (random starts).
    pub runs: usize,
    /// Ritz values of the run that found the lowest value (the refinement run when it lowered
    /// it), ascending.
    pub ritz_values: Vec<f64>,
    /// The SLQ density (nodes and weights of every run).
    pub density: SpectralDensity,
    /// Whether the spectrum is the dense one (every eigenvalue of the Hessian on E in the orbit
    /// basis; `steps` is then `dim E`, the residuals the central differences' asymmetry).
    #[serde(default)]
    pub dense: bool,
}

impl BlockSpectrum {
    /// Sets the noise level, recounts the Ritz values below `-noise`, and sets the error
    /// bounds from the HVP's error level `hvp_error` (see [`BlockSpectrum::min_error`]).
    pub(super) fn set_noise(&mut self, noise: f64, hvp_error: f64) {
        if self.dense {
            let e = (self.steps as f64).sqrt() * hvp_error;
            self.min_error = self.min_residual + e;
            self.max_error = self.max_residual + e;
        } else {
            self.min_error = self.min_residual + hvp_error;
            self.max_error = self.max_residual + hvp_error;
        }
        self.noise = noise;
        self.negative_beyond_noise = self.ritz_values.iter().filter(|&&x| x < -noise).count();
    }
}

/// The sampling error of an estimated `H_perp` (groups too large to enumerate).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SamplingError {
    /// Group elements per sample (M).
    pub sample_size: usize,
    /// `lambda_min` of the second, independent sample.
    pub min_second: f64,
    /// `lambda_max` of the second sample.
    pub max_second: f64,
    /// `|lambda_min(1) - lambda_min(2)|`.
    pub min_difference: f64,
    /// `|lambda_max(1) - lambda_max(2)|`.
    pub max_difference: f64,
}

/// The held-out Rayleigh quotient of an estimated `H_perp`'s lowest Ritz vector `v` (from the
/// first sample): `q_k = v^T H_k v` under `K` further independent samples `H_k` of M elements
/// each. Each `q_k` is an unbiased estimate of `v^T H_perp v` for the exact group average, and
/// `lambda_min(H_perp) <= v^T H_perp v` for a unit `v` in E-perp: unlike the sample's own lowest
/// eigenvalue (biased downwards, being a minimum over the sample's noise), a mean of the `q_k`
/// significantly below zero proves a negative eigenvalue of the exact `H_perp`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeldOutRayleigh {
    /// Group elements per sample (M).
    pub sample_size: usize,
    /// `q_k`, one per held-out sample.
    pub values: Vec<f64>,
    /// Their mean.
    pub mean: f64,
    /// Its standard error (sample standard deviation / sqrt K).
    pub standard_error: f64,
}

impl HeldOutRayleigh {
    /// From the quotients of `K >= 2` samples of `m` elements.
    pub fn from_values(sample_size: usize, values: Vec<f64>) -> Self {
        let k = values.len() as f64;
        let mean = values.iter().sum::<f64>() / k;
        let var = values.iter().map(|q| (q - mean).powi(2)).sum::<f64>() / (k - 1.0).max(1.0);
        HeldOutRayleigh {
            sample_size,
            mean,
            standard_error: (var / k).sqrt(),
            values,
        }
    }

    /// Whether the mean lies more than [`RAYLEIGH_SIGMAS`] standard errors below `-noise`.
    pub fn significantly_negative(&self, noise: f64) -> bool {
        self.values.len() >= 2 && self.mean + RAYLEIGH_SIGMAS * self.standard_error < -noise
    }
}

/// The sampling error of `first` (a sample of `sample_size` elements) measured by `second`
/// (another, independent one).
pub(super) fn sampling_error(
    sample_size: usize,
    first: &BlockSpectrum,
    second: &BlockSpectrum,
) -> SamplingError {
    SamplingError {
        sample_size,
        min_second: second.min,
        max_second: second.max,
        min_difference: (second.min - first.min).abs(),
        max_difference: (second.max - first.max).abs(),
    }
}

/// Standard errors a held-out Rayleigh quotient must lie below `-noise` to count: 4 (a
/// one-sided t-test with K - 1 = 15 degrees of freedom then has p < 0.001).
pub const RAYLEIGH_SIGMAS: f64 = 4.0;

/// The held-out Rayleigh test ([`HeldOutRayleigh`]): `v` projected onto E-perp and normalised,
/// then `q_k = v^T H_k v` at `a` for `opts.rayleigh_samples` fresh samples of
/// `opts.sample_elements` group elements drawn from `rng` (each `H_k` the Hessian of the risk
/// averaged over its sample, with the ridge). Returns `None` when `v` has no E-perp part, and
/// the gradients spent.
pub fn held_out_rayleigh(
    net: &Network<f64>,
    data: &TrainData<f64>,
    a: &Params<f64>,
    v: &Params<f64>,
    opts: &StabilityOptions,
    rng: &mut ChaCha8Rng,
) -> Result<(Option<HeldOutRayleigh>, usize), StabilityError> {
    let mut v = v.clone();
    project_onto(&mut v, Subspace::Orthogonal);
    let nv = v.norm();
    if nv == 0.0 {
        return Ok((None, 0));
    }
    v.scale(1.0 / nv);
    let mut hv = a.zeros_like();
    let mut values = Vec::with_capacity(opts.rayleigh_samples);
    let mut grads = 0;
    for _ in 0..opts.rayleigh_samples {
        let sample = (0..opts.sample_elements.max(1))
            .map(|_| net.group().sample(rng))
            .collect();
        let mut r = configure(Risk::new(net, data, opts.minibatch, Some(sample))?, opts)?;
        r.hvp(a, &v, &mut hv)?;
        values.push(v.dot(&hv));
        grads += r.gradient_count();
    }
    Ok((
        Some(HeldOutRayleigh::from_values(
            opts.sample_elements.max(1),
            values,
        )),
        grads,
    ))
}

/// The per-sample-draw Rayleigh test (issue 15): `v` projected onto E-perp and normalised,
/// then `q_k = v^T H_k v` at `a` for `samples` independent assignments of a uniform group
/// element to every data row, `H_k` the Hessian of [`Risk::new_per_sample`] with that one
/// assignment (with the ridge). Each `q_k` is unbiased for `v^T H_ps v`, `H_ps` the Hessian of
/// the expected per-sample-augmented risk. Where the normalisation acts per sample (layer norm,
/// none) the expected risk equals the per-batch one, so the mean estimates `v^T H_perp v`; with
/// batch norm the mini-batch statistics mix the rows' transformations and the two may differ.
/// At a point of E both expected risks are stationary (the joint law of the draws is invariant
/// under one global element, and an equivariant network's batch statistics do not see per-row
/// permutations of the positions). Returns `None` when `v` has no E-perp part or `samples < 2`,
/// and the gradients spent.
#[allow(clippy::too_many_arguments)]
pub fn per_sample_rayleigh(
    net: &Network<f64>,
    data: &TrainData<f64>,
    a: &Params<f64>,
    v: &Params<f64>,
    elements: &[Perm],
    opts: &StabilityOptions,
    samples: usize,
    rng: &mut ChaCha8Rng,
) -> Result<(Option<HeldOutRayleigh>, usize), StabilityError> {
    let mut v = v.clone();
    project_onto(&mut v, Subspace::Orthogonal);
    let nv = v.norm();
    if nv == 0.0 || samples < 2 || elements.is_empty() {
        return Ok((None, 0));
    }
    v.scale(1.0 / nv);
    let mut hv = a.zeros_like();
    let mut values = Vec::with_capacity(samples);
    let mut grads = 0;
    for _ in 0..samples {
        let col: Vec<usize> = (0..data.len())
            .map(|_| rng.gen_range(0..elements.len()))
            .collect();
        let r = Risk::new_per_sample(net, data, opts.minibatch, elements.to_vec(), vec![col])?;
        let mut r = configure(r, opts)?;
        r.hvp(a, &v, &mut hv)?;
        values.push(v.dot(&hv));
        grads += r.gradient_count();
    }
    Ok((Some(HeldOutRayleigh::from_values(1, values)), grads))
}

/// Runs `lanczos_runs` Lanczos runs of `hvp` restricted to `sub`, returning the block
/// spectrum and the Ritz vectors of the smallest and the largest value.
pub(super) fn block_spectrum(
    risk: &mut Risk<'_>,
    a: &Params<f64>,
    sub: Subspace,
    opts: &StabilityOptions,
    rng: &mut ChaCha8Rng,
    noise: f64,
) -> Result<(BlockSpectrum, Extremes), StabilityError> {
    let layout = a.layout().clone();
    let mut runs: Vec<LanczosRun> = Vec::new();
    for _ in 0..opts.lanczos_runs.max(1) {
        let start = gaussian(a.len(), rng);
        let run = lanczos::lanczos_on_block(&layout, sub, &start, opts.lanczos_steps, |v, o| {
            risk.hvp(a, v, o)
        })?;
        runs.push(run);
    }
    let (mut imin, mut imax) = (0, 0);
    for (i, r) in runs.iter().enumerate() {
        if r.min() < runs[imin].min() {
            imin = i;
        }
        if r.max() > runs[imax].max() {
            imax = i;
        }
    }
    // Restart from the best Ritz vector of the lowest value: a Lanczos run that starts close to
    // an eigenvector converges to it much faster than from a random start, and its lowest Ritz
    // value is at most the start's Rayleigh quotient. Not part of the SLQ density (not a random
    // start); kept when it lowers the value or its residual.
    let (mut min, mut min_residual, mut v) = (
        runs[imin].min(),
        runs[imin].ritz_residuals[0],
        runs[imin].ritz_vector(0),
    );
    let mut values = runs[imin].ritz_values.clone();
    if opts.refine_steps > 0 {
        let refined = lanczos::lanczos_on_block(&layout, sub, &v, opts.refine_steps, |x, o| {
            risk.hvp(a, x, o)
        })?;
        if refined.min() <= min || refined.ritz_residuals[0] < min_residual {
            min = refined.min();
            min_residual = refined.ritz_residuals[0];
            v = refined.ritz_vector(0);
            values = refined.ritz_values.clone();
        }
    }
    let spectrum = BlockSpectrum {
        min,
        min_residual,
        min_error: min_residual,
        max: runs[imax].max(),
        max_residual: *runs[imax].ritz_residuals.last().expect("non-empty"),
        max_error: *runs[imax].ritz_residuals.last().expect("non-empty"),
        negative: values.iter().filter(|&&x| x < 0.0).count(),
        negative_beyond_noise: values.iter().filter(|&&x| x < -noise).count(),
        noise,
        steps: opts.lanczos_steps,
        runs: runs.len(),
        ritz_values: values,
        density: SpectralDensity {
            nodes: runs.iter().map(|r| r.ritz_values.clone()).collect(),
            weights: runs.iter().map(|r| r.weights.clone()).collect(),
        },
        dense: false,
    };
    let top = runs[imax].ritz_values.len() - 1;
    Ok((
        spectrum,
        Extremes {
            min: v,
            max: runs[imax].ritz_vector(top),
        },
    ))
}
