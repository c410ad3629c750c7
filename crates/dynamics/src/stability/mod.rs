//! Stability of equivariant stationary points for augmented training (docs/science.md §10, the
//! paper's Proposition 3 and its open question).
//!
//! The pipeline, all in f64 on the full-batch, deterministic risks:
//!
//! 1. [`find_stationary_point`]: L-BFGS restricted to E (every iterate, difference and direction
//!    projected onto E) with Armijo backtracking on `R_eqv`, until `||Pi_E grad R||` falls
//!    below a relative tolerance of its starting value or a budget runs out. The residual is
//!    recorded, and so is the distance to the nearest LeakyReLU kink
//!    ([`min_abs_preactivation`]), where no Hessian exists.
//! 2. [`Risk::hvp`]: exact Hessian-vector products by default (Pearlmutter's R-operator through
//!    every layer and loss, [`eqaug_nn::Sequential::hvp`], the point's forward and backward
//!    state kept across products); their error is round-off, measured at each point by
//!    [`Risk::hvp_error`]. Central differences of the exact gradient,
//!    `H v ~ (grad R(A + h v) - grad R(A - h v)) / (2 h)` with `h = hvp_step * max(1, ||A||) /
//!    ||v||` ([`HvpMethod::CentralDifferences`], error `O(h^2 |D^3 R|) + O(u |grad R| / h)`,
//!    about 1e-7 relative at `hvp_step = 1e-6`), remain as the test oracle. Near a LeakyReLU
//!    kink no Hessian exists, which is why the distance to it is reported.
//! 3. [`analyse`]: Lanczos with full reorthogonalisation ([`crate::lanczos`]) of `Hess R_eqv`
//!    on E and of `H_perp`, the Hessian of the exact augmented risk (mean over every group
//!    element, [`Risk`] with all elements; for groups too large to enumerate, a fixed sample of
//!    M elements, labelled an estimate, with a second independent sample to measure the
//!    sampling error) on E-perp; several random starts give both the extremes (with Ritz
//!    residuals) and the SLQ spectral density.
//! 4. [`measure_escape`]: exact-average augmented gradient descent from `A* + delta v`; the
//!    measured per-step factor of `||A_Eperp||` against the linearised prediction
//!    `1 - eta lambda` (docs/science.md §10).
//!
//! The modules, each importing only those listed before it (no cycles):
//!
//! * [`StabilityError`] (defined in the crate's error module, shared with [`crate::lanczos`]); `random`: Gaussian vectors of the random starts;
//! * `options`: [`StabilityOptions`], [`StationaryOptions`], their defaults (the single source
//!   of them; the harness's `[stability]` section takes its defaults from here) and their
//!   validation ([`StabilityOptions::validate`]);
//! * `risk`: [`Risk`] (values, gradients, HVPs through [`crate::hessian::hvp`]), the data
//!   transformation and [`augmentation_elements`];
//! * `basis`: orthonormal bases of E and E-perp from the orbits; `dense`: dense Hessians in
//!   such a basis;
//! * `trust_region`: Steihaug-Toint CG, trust-region Newton, the exact trust-region step and
//!   the ratio test; `stationary`: [`find_stationary_point`] (L-BFGS, then Newton);
//! * `spectra`: [`BlockSpectrum`] (Lanczos or dense) and the Rayleigh tests;
//! * `escape`: [`measure_escape`]; `verdict`: [`Verdict`] and [`StabilityReport`];
//! * this module: [`analyse`], the orchestration of the steps above.

mod basis;
mod dense;
mod escape;
mod options;
mod random;
mod risk;
mod spectra;
mod stationary;
mod trust_region;
mod verdict;

pub use crate::error::StabilityError;
pub use escape::{measure_escape, Escape};
pub use options::{
    HvpMethod, StabilityOptions, StationaryOptions, DEFAULT_LANCZOS_STEPS, MAX_ITERATIONS,
    MAX_SAMPLES, MAX_STEPS,
};
pub use risk::{augmentation_elements, Risk, HVP_CACHE_BYTES};
pub use spectra::{
    held_out_rayleigh, per_sample_rayleigh, BlockSpectrum, HeldOutRayleigh, SamplingError,
    RAYLEIGH_SIGMAS,
};
pub use stationary::{find_stationary_point, min_abs_preactivation, StationaryPoint};
pub use verdict::{StabilityReport, Verdict};

use crate::hessian::{project_onto, Subspace};
use crate::lanczos;
use crate::TrainData;
use eqaug_groups::Perm;
use eqaug_nn::{Network, Params};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use basis::{e_basis, perp_basis};
use dense::check_dense_memory;
use escape::escapes;
use random::gaussian;
use risk::configured_risk;
use spectra::{block_spectrum, dense_block, sampling_error, Extremes};

/// The stability analysis of docs/science.md §10 for one network and data set, from `a0`:
/// stationary point in E, spectra of both blocks, escapes, verdict (module docs).
///
/// The noise level of an eigenvalue is `max(residual, hvp_error)`: negative Ritz values above
/// `-noise` are not counted as instability (docs/science.md §10(b): at a residual `r` the
/// landscape is only known to `O(r)`, and the HVPs to their error level, round-off for the
/// exact ones ([`Risk::hvp_error`]), about 1e-7 relative for central differences).
pub fn analyse(
    net: &Network<f64>,
    data: &TrainData<f64>,
    a0: &Params<f64>,
    opts: &StabilityOptions,
) -> Result<(StabilityReport, Params<f64>), StabilityError> {
    let r = analyse_point(net, data, a0, opts)?;
    Ok((r.report, r.point))
}

/// What [`analyse_point`] found: the report, the stationary point A* and the unit Ritz (or
/// eigen-) vectors of the extreme values of both blocks, so that the point can be saved,
/// checked with other tools, or trained from.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Analysis {
    /// The report (as [`analyse`]).
    pub report: StabilityReport,
    /// The stationary point in E.
    pub point: Params<f64>,
    /// The vectors of `lambda_min` and `lambda_max` of `Hess R_eqv` on E.
    pub e_min: Params<f64>,
    /// See [`Analysis::e_min`].
    pub e_max: Params<f64>,
    /// The vectors of `lambda_min` and `lambda_max` of `H_perp` on E-perp.
    pub perp_min: Params<f64>,
    /// See [`Analysis::perp_min`].
    pub perp_max: Params<f64>,
}

/// [`analyse`], keeping the point and the extreme vectors ([`Analysis`]).
pub fn analyse_point(
    net: &Network<f64>,
    data: &TrainData<f64>,
    a0: &Params<f64>,
    opts: &StabilityOptions,
) -> Result<Analysis, StabilityError> {
    opts.validate()?;
    let dim_perp = check_memory(net, opts)?;
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    // 1. The stationary point in E, on the nominal risk.
    let mut nominal = configured_risk(net, data, opts, None)?;
    let sp = find_stationary_point(&mut nominal, a0, &opts.stationary)?;
    let a = sp.params.clone();
    let kink_distance = min_abs_preactivation(net, &a, data, opts.minibatch)?;
    // 2. Hess R_eqv on E (the noise is not known yet: the residual first).
    let (mut e_block, e_vectors) = e_spectrum(&mut nominal, &a, opts, &mut rng, sp.residual)?;
    let mut count = nominal.gradient_count();
    // 3. H_perp on E-perp, of the augmented risk (every element, or a sample).
    let (elements, exact) = augmentation_elements(
        net.group(),
        opts.enumeration_limit,
        opts.sample_elements,
        &mut rng,
    )?;
    let n_el = elements.len();
    let group_elements = if exact { elements.clone() } else { Vec::new() };
    let mut aug = configured_risk(net, data, opts, Some(elements))?;
    let dense_perp = exact && dim_perp <= opts.perp_dense_limit;
    let (mut perp_block, perp_vectors) =
        perp_spectrum(&mut aug, &a, dense_perp, opts, &mut rng, sp.residual)?;
    // 4. The noise level, from both blocks' scale.
    let scale = e_block
        .max
        .abs()
        .max(perp_block.max.abs())
        .max(e_block.min.abs());
    // The HVPs' error level (round-off for exact products, measured; 1e-7 relative for
    // central differences), the larger of the two risks'.
    let hvp_error = nominal
        .hvp_error(&a, scale, 3, &mut rng)?
        .max(aug.hvp_error(&a, scale, 3, &mut rng)?);
    let noise = sp.residual.max(hvp_error);
    for b in [&mut e_block, &mut perp_block] {
        b.set_noise(noise, hvp_error);
    }
    // 5. Checks of a sampled H_perp, or the off-diagonal block, escapes and per-sample test
    // of an exact one.
    let vmin = Params::from_vec(a.layout().clone(), perp_vectors.min.clone())?;
    let checks = if exact {
        let point = Point {
            a: &a,
            vmin: &vmin,
            perp_block: &perp_block,
            scale,
            converged: sp.converged,
            hvp_error,
        };
        exact_checks(net, data, &mut aug, &point, &group_elements, opts, &mut rng)?
    } else {
        sampled_checks(net, data, &a, &vmin, &perp_block, noise, opts, &mut rng)?
    };
    count += checks.gradients + aug.gradient_count();
    // 6. The verdict.
    let verdict = Verdict::decide(
        sp.converged,
        &e_block,
        &perp_block,
        exact,
        checks.held_out_rayleigh.as_ref(),
        noise,
        opts.weight_decay,
    );
    let report = StabilityReport {
        num_params: a.len(),
        dim_perp,
        iterations: sp.iterations,
        newton_iterations: sp.newton_iterations,
        newton_hvps: sp.newton_hvps,
        weight_decay: opts.weight_decay,
        converged: sp.converged,
        stop_reason: sp.stop_reason.clone(),
        loss_start: sp.loss_start,
        loss: sp.loss,
        residual_start: sp.residual_start,
        residual: sp.residual,
        norm_a_star: a.norm(),
        kink_distance,
        e_block,
        perp_block,
        perp_exact: exact,
        perp_elements: n_el,
        sampling_error: checks.sampling_error,
        held_out_rayleigh: checks.held_out_rayleigh,
        per_sample_rayleigh: checks.per_sample_rayleigh,
        off_diagonal: checks.off_diagonal,
        off_diagonal_bound: checks.off_diagonal_bound,
        escape_min: checks.escape_min,
        escape_random: checks.escape_random,
        verdict,
        gradient_evaluations: count,
        hvp: opts.hvp,
        hvp_error,
        hvp_count: nominal.hvp_count() + aug.hvp_count(),
        loss_form: net.bce_form().map(str::to_owned),
    };
    let vector = |v: Vec<f64>| Params::from_vec(a.layout().clone(), v);
    Ok(Analysis {
        report,
        e_min: vector(e_vectors.min)?,
        e_max: vector(e_vectors.max)?,
        perp_min: vector(perp_vectors.min)?,
        perp_max: vector(perp_vectors.max)?,
        point: a,
    })
}

/// Refuses, before any work, what would not fit in memory: the Lanczos basis, and the dense
/// blocks (dim E within `dense_limit`: Newton and the E block; dim E-perp within
/// `perp_dense_limit` with an enumerable group). Returns dim E-perp.
fn check_memory(net: &Network<f64>, opts: &StabilityOptions) -> Result<usize, StabilityError> {
    let basis = lanczos::basis_bytes(opts.lanczos_steps + 4, net.num_params());
    lanczos::check_memory(basis, &opts.memory_key, "the Lanczos basis", None)?;
    let dim_e = lanczos::subspace_dim(net.layout(), Subspace::Equivariant);
    if dim_e <= opts.stationary.dense_limit {
        check_dense_memory(dim_e, "stability.dense_limit", "the dense Hessian on E")?;
    }
    let dim_perp = lanczos::subspace_dim(net.layout(), Subspace::Orthogonal);
    if dim_perp <= opts.perp_dense_limit && net.group().order() <= opts.enumeration_limit as u128 {
        check_dense_memory(dim_perp, "stability.perp_dense_limit", "the dense H_perp")?;
    }
    Ok(dim_perp)
}

/// The spectrum of `Hess R_eqv` on E: dense in the orbit basis when `dim E` is at most
/// [`StationaryOptions::dense_limit`], Lanczos otherwise.
fn e_spectrum(
    nominal: &mut Risk<'_>,
    a: &Params<f64>,
    opts: &StabilityOptions,
    rng: &mut ChaCha8Rng,
    noise: f64,
) -> Result<(BlockSpectrum, Extremes), StabilityError> {
    let basis_e = e_basis(a.layout());
    Ok(if basis_e.len() <= opts.stationary.dense_limit {
        let sparse: Vec<_> = basis_e
            .iter()
            .map(|(idx, val)| idx.iter().map(|&i| (i, *val)).collect())
            .collect();
        dense_block(nominal, a, &sparse, noise)?
    } else {
        block_spectrum(nominal, a, Subspace::Equivariant, opts, rng, noise)?
    })
}

/// The spectrum of `H_perp` on E-perp and the unit vector of its lowest value: dense in the
/// Helmert basis when `dense` (an exact average and `dim E-perp` within
/// [`StabilityOptions::perp_dense_limit`]), Lanczos otherwise.
fn perp_spectrum(
    aug: &mut Risk<'_>,
    a: &Params<f64>,
    dense: bool,
    opts: &StabilityOptions,
    rng: &mut ChaCha8Rng,
    noise: f64,
) -> Result<(BlockSpectrum, Extremes), StabilityError> {
    if dense {
        dense_block(aug, a, &perp_basis(a.layout()), noise)
    } else {
        block_spectrum(aug, a, Subspace::Orthogonal, opts, rng, noise)
    }
}

/// What step 5 of [`analyse`] measured beyond the two spectra.
#[derive(Default)]
struct Checks {
    sampling_error: Option<SamplingError>,
    held_out_rayleigh: Option<HeldOutRayleigh>,
    per_sample_rayleigh: Option<HeldOutRayleigh>,
    off_diagonal: Option<f64>,
    off_diagonal_bound: Option<f64>,
    escape_min: Option<Escape>,
    escape_random: Option<Escape>,
    /// Gradients spent on risks other than the augmented one.
    gradients: usize,
}

/// The stationary point and what the spectra found there.
struct Point<'p> {
    a: &'p Params<f64>,
    /// The unit eigen- or Ritz vector of `lambda_min(H_perp)`.
    vmin: &'p Params<f64>,
    perp_block: &'p BlockSpectrum,
    /// `max |lambda|` over both blocks.
    scale: f64,
    converged: bool,
    /// The HVPs' error level per unit vector.
    hvp_error: f64,
}

/// A sampled `H_perp`: a second, independent sample (the sampling error) and the held-out
/// Rayleigh test of the lowest Ritz vector.
#[allow(clippy::too_many_arguments)]
fn sampled_checks(
    net: &Network<f64>,
    data: &TrainData<f64>,
    a: &Params<f64>,
    vmin: &Params<f64>,
    perp_block: &BlockSpectrum,
    noise: f64,
    opts: &StabilityOptions,
    rng: &mut ChaCha8Rng,
) -> Result<Checks, StabilityError> {
    let mut out = Checks::default();
    let (second, _) = augmentation_elements(
        net.group(),
        opts.enumeration_limit,
        opts.sample_elements,
        rng,
    )?;
    let n_el = second.len();
    let mut aug2 = configured_risk(net, data, opts, Some(second))?;
    let (b2, _) = block_spectrum(&mut aug2, a, Subspace::Orthogonal, opts, rng, noise)?;
    out.gradients += aug2.gradient_count();
    out.sampling_error = Some(sampling_error(n_el, perp_block, &b2));
    if opts.rayleigh_samples >= 2 {
        let (q, grads) = held_out_rayleigh(net, data, a, vmin, opts, rng)?;
        out.gradients += grads;
        out.held_out_rayleigh = q;
    }
    Ok(out)
}

/// An exact `H_perp`: the off-diagonal block at `A*` (a random `v` in E, the E-perp part of
/// `Hess R_aug v`), the escapes, and the per-sample-draw Rayleigh test.
fn exact_checks(
    net: &Network<f64>,
    data: &TrainData<f64>,
    aug: &mut Risk<'_>,
    point: &Point<'_>,
    elements: &[Perm],
    opts: &StabilityOptions,
    rng: &mut ChaCha8Rng,
) -> Result<Checks, StabilityError> {
    let a = point.a;
    let mut out = Checks::default();
    let mut v = Params::from_vec(a.layout().clone(), gaussian(a.len(), rng))?;
    project_onto(&mut v, Subspace::Equivariant);
    let mut hv = a.zeros_like();
    aug.hvp(a, &v, &mut hv)?;
    let mut perp = hv.clone();
    project_onto(&mut perp, Subspace::Orthogonal);
    out.off_diagonal = Some(perp.norm() / hv.norm().max(f64::MIN_POSITIVE));
    // Proposition 2: zero in exact arithmetic; what the products' error allows
    out.off_diagonal_bound = Some(point.hvp_error * v.norm() / hv.norm().max(f64::MIN_POSITIVE));
    if opts.escape_steps > 0 {
        let (min, random) = escapes(aug, a, point.vmin, point.perp_block, point.scale, opts, rng)?;
        out.escape_min = Some(min);
        out.escape_random = Some(random);
    }
    if opts.per_sample_samples >= 2 && point.converged {
        let (q, grads) = per_sample_rayleigh(
            net,
            data,
            a,
            point.vmin,
            elements,
            opts,
            opts.per_sample_samples,
            rng,
        )?;
        out.gradients += grads;
        out.per_sample_rayleigh = q;
    }
    Ok(out)
}
