//! Options of the analysis ([`StabilityOptions`]) and of the stationary-point search
//! ([`StationaryOptions`]): their defaults (the single source of them: the harness's
//! `[stability]` section takes its defaults from here) and their validation.

use crate::error::StabilityError;
use serde::{Deserialize, Serialize};

/// How [`super::Risk::hvp`] computes Hessian-vector products.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HvpMethod {
    /// Exact: a tangent forward and a second-order backward pass through every layer
    /// (Pearlmutter's R-operator, [`eqaug_nn::Sequential::hvp`]); the error is round-off. At a fixed
    /// point the forward and backward state of every work item is kept (up to
    /// [`super::HVP_CACHE_BYTES`]), so each further product costs the tangent passes only.
    #[default]
    Exact,
    /// Central differences of the exact gradient ([`crate::hessian::hvp`]), error
    /// `O(h^2) + O(u / h)`, about 1e-7 relative at the default step.
    CentralDifferences,
}

impl HvpMethod {
    /// The method's name in configs and reports.
    pub fn name(&self) -> &'static str {
        match self {
            HvpMethod::Exact => "exact",
            HvpMethod::CentralDifferences => "central_differences",
        }
    }
}

/// Options of [`super::find_stationary_point`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StationaryOptions {
    /// Stop when `||Pi_E grad R|| <= rtol * ||Pi_E grad R(A0)||`.
    pub rtol: f64,
    /// Budget of iterations.
    pub max_iterations: usize,
    /// L-BFGS memory (pairs kept).
    pub memory: usize,
    /// Longest step, relative to `max(1, ||A0||)`.
    pub max_step: f64,
    /// Budget of trust-region Newton iterations after the L-BFGS stage (0: none).
    pub newton_iterations: usize,
    /// Conjugate-gradient steps (Hessian-vector products) per Newton iteration at most.
    pub cg_steps: usize,
    /// When `dim E` is at most this, the Newton stage builds the whole Hessian on E (`dim E`
    /// HVPs in an orthonormal orbit basis) and solves the trust-region subproblem exactly
    /// (eigen-decomposition); above it, Steihaug-Toint CG.
    pub dense_limit: usize,
}

impl Default for StationaryOptions {
    fn default() -> Self {
        StationaryOptions {
            rtol: 1e-6,
            max_iterations: 300,
            memory: 10,
            max_step: 0.1,
            newton_iterations: 50,
            cg_steps: 100,
            dense_limit: 500,
        }
    }
}

/// The default of [`StabilityOptions::lanczos_steps`] (its half is the default of
/// [`StabilityOptions::refine_steps`]).
pub const DEFAULT_LANCZOS_STEPS: usize = 20;

/// Options of [`super::analyse`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StabilityOptions {
    /// Mini-batch size of the normalisation statistics.
    pub minibatch: usize,
    /// The stationary-point search.
    pub stationary: StationaryOptions,
    /// Lanczos steps per run.
    pub lanczos_steps: usize,
    /// Lanczos runs (random starts) per block; all feed the SLQ density.
    pub lanczos_runs: usize,
    /// Steps of one more Lanczos run per block, restarted from the Ritz vector of the lowest
    /// value (0: none): refines the lowest eigenpair.
    pub refine_steps: usize,
    /// Groups with more elements are averaged over a sample of `sample_elements` (an estimate).
    pub enumeration_limit: usize,
    /// M, the sample size for groups too large to enumerate.
    pub sample_elements: usize,
    /// How Hessian-vector products are taken (default exact).
    pub hvp: HvpMethod,
    /// Relative step of the central-difference HVPs (with [`HvpMethod::CentralDifferences`]).
    pub hvp_step: f64,
    /// Ridge `mu / 2 ||A||^2` added to every risk of the analysis ([`super::Risk::set_weight_decay`]).
    pub weight_decay: f64,
    /// K, samples of the per-sample-draw Rayleigh test at an exactly averaged point
    /// ([`super::per_sample_rayleigh`]; 0: none).
    pub per_sample_samples: usize,
    /// With an exact group average and `dim E-perp` at most this, `H_perp` is the dense one
    /// (every eigenvalue, from `dim E-perp` HVPs) instead of Lanczos (0: never).
    pub perp_dense_limit: usize,
    /// `delta / max(1, ||A*||)` of the escape runs.
    pub escape_delta: f64,
    /// Steps of each escape run (0: no escape runs).
    pub escape_steps: usize,
    /// Learning rate of the escape runs; `None`: `1 / max(|lambda|)` over both blocks.
    pub escape_eta: Option<f64>,
    /// Seed of the random starts and samples.
    pub seed: u64,
    /// K, the held-out samples of the Rayleigh test of an estimated `H_perp`
    /// ([`super::HeldOutRayleigh`]; 0: none).
    pub rayleigh_samples: usize,
    /// Config key named when the Lanczos basis does not fit in memory.
    pub memory_key: String,
}

impl Default for StabilityOptions {
    fn default() -> Self {
        StabilityOptions {
            minibatch: 25,
            stationary: StationaryOptions::default(),
            lanczos_steps: DEFAULT_LANCZOS_STEPS,
            lanczos_runs: 2,
            refine_steps: DEFAULT_LANCZOS_STEPS / 2,
            enumeration_limit: 1000,
            sample_elements: 16,
            hvp: HvpMethod::Exact,
            hvp_step: 1e-6,
            weight_decay: 0.0,
            perp_dense_limit: 0,
            per_sample_samples: 0,
            escape_delta: 1e-4,
            escape_steps: 20,
            escape_eta: None,
            seed: 0,
            rayleigh_samples: 16,
            memory_key: "stability.lanczos_steps".into(),
        }
    }
}

/// Upper bound of the iteration budgets (`stationary.max_iterations`,
/// `stationary.newton_iterations`, `escape_steps`): beyond it a run would not end in any
/// useful time (each iteration costs at least one full-batch gradient).
pub const MAX_ITERATIONS: usize = 1_000_000;
/// Upper bound of the per-run step counts (`lanczos_steps`, `refine_steps`,
/// `stationary.cg_steps`): each step is one Hessian-vector product (two gradients), and a
/// Lanczos step also keeps one basis vector.
pub const MAX_STEPS: usize = 100_000;
/// Upper bound of the repetition and sample counts (`lanczos_runs`, `sample_elements`,
/// `rayleigh_samples`, `per_sample_samples`).
pub const MAX_SAMPLES: usize = 100_000;

impl StabilityOptions {
    /// Checks the iteration-like options against their upper bounds ([`MAX_ITERATIONS`],
    /// [`MAX_STEPS`], [`MAX_SAMPLES`]), so that an absurd request fails at once, naming the
    /// option, instead of hanging.
    pub fn validate(&self) -> Result<(), StabilityError> {
        let s = &self.stationary;
        let checks: [(&str, usize, usize); 10] = [
            (
                "stationary.max_iterations",
                s.max_iterations,
                MAX_ITERATIONS,
            ),
            (
                "stationary.newton_iterations",
                s.newton_iterations,
                MAX_ITERATIONS,
            ),
            ("stationary.cg_steps", s.cg_steps, MAX_STEPS),
            ("escape_steps", self.escape_steps, MAX_ITERATIONS),
            ("lanczos_steps", self.lanczos_steps, MAX_STEPS),
            ("refine_steps", self.refine_steps, MAX_STEPS),
            ("lanczos_runs", self.lanczos_runs, MAX_SAMPLES),
            ("sample_elements", self.sample_elements, MAX_SAMPLES),
            ("rayleigh_samples", self.rayleigh_samples, MAX_SAMPLES),
            ("per_sample_samples", self.per_sample_samples, MAX_SAMPLES),
        ];
        for (key, value, max) in checks {
            if value > max {
                return Err(StabilityError::Invalid(format!(
                    "`{key}` = {value} is above its limit {max}"
                )));
            }
        }
        Ok(())
    }
}
