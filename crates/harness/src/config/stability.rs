//! `[stability]`: the options of `eqaug stability` in an experiment config, with the
//! library's defaults ([`StabilityOptions::default`]) for every key left out.

use eqaug_dynamics::stability::{self, HvpMethod, StabilityOptions, StationaryOptions};
use serde::{Deserialize, Serialize};

/// `[stability]`: options of the stability analysis (profiles may override them with
/// `stability = { ... }`). Sizes of the network and data come from the usual sections, so the
/// `stability` profile shrinks them there.
///
/// Every key left out takes the library's default ([`StabilityOptions::default`] and
/// [`StationaryOptions::default`], through [`StabilitySection::default`]): the config and the
/// library give the same analysis. The keys keep the names configs already use; where the
/// library's field is named differently it is said below.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StabilitySection {
    /// Independent runs (initialisations `protocol.seed + k`), each analysed (default 1).
    pub runs: usize,
    /// Budget of L-BFGS iterations towards the stationary point in E (library:
    /// `stationary.max_iterations`).
    pub iterations: usize,
    /// Budget of trust-region Newton iterations (Steihaug CG on E) after the L-BFGS stage.
    pub newton_iterations: usize,
    /// Conjugate-gradient steps (Hessian-vector products) per Newton iteration at most.
    pub cg_steps: usize,
    /// The Newton stage builds the whole Hessian on E when `dim E` is at most this (exact
    /// trust-region steps); above it, truncated conjugate gradients.
    pub dense_limit: usize,
    /// Ridge `mu / 2 ||A||^2` added to the risk (0: none). Needed where the data are
    /// separable (cross-entropy on few samples): there the risk has no finite minimiser.
    /// Both Hessian blocks shift by exactly `mu`.
    pub weight_decay: f64,
    /// With an exactly averaged group and `dim E-perp` at most this, H_perp is computed densely
    /// (all its eigenvalues, from dim E-perp HVPs) instead of by Lanczos; 0 (default): never.
    pub perp_dense_limit: usize,
    /// K, samples of the per-sample-draw test at an exactly averaged stationary point: the
    /// lowest eigenvector v of H_perp, and v^T H_k v under K random assignments of a group
    /// element to every sample (batch norm then mixes transformations in its statistics);
    /// 0 (default): none.
    pub per_sample_samples: usize,
    /// Stop when `||Pi_E grad R||` falls below this fraction of its starting value.
    pub rtol: f64,
    /// Lanczos steps per run (memory: steps x parameters x 8 bytes per run).
    pub lanczos_steps: usize,
    /// Lanczos runs (random starts) per block; all of them feed the SLQ density.
    pub lanczos_runs: usize,
    /// Steps of one more Lanczos run per block restarted from the Ritz vector of the lowest
    /// value, to refine the lowest eigenpair (0: none; default: half of `lanczos_steps`).
    pub refine_steps: Option<usize>,
    /// Groups with at most this many elements are averaged exactly; larger ones over a sample
    /// (library: `enumeration_limit`).
    pub exact_limit: usize,
    /// M: group elements per sample when the group is larger than `exact_limit` (two
    /// independent samples measure the sampling error).
    pub sample_elements: usize,
    /// K: further independent samples of M elements under which the lowest Ritz vector of an
    /// estimated H_perp is evaluated (the held-out Rayleigh test; 0: none, else at least 2).
    pub rayleigh_samples: usize,
    /// Steps of each escape run (0 = none).
    pub escape_steps: usize,
    /// `delta / max(1, ||A*||)` of the escape runs.
    pub escape_delta: f64,
    /// Learning rate of the escape runs (default `1 / max |lambda|`; library: `escape_eta`).
    pub escape_learning_rate: Option<f64>,
    /// How Hessian-vector products are taken: `"exact"` (the default; Pearlmutter's
    /// R-operator through every layer) or `"central_differences"` (of the exact gradient, step
    /// `hvp_step`; the test oracle).
    pub hvp: HvpMethod,
    /// Relative step of the central-difference Hessian-vector products.
    pub hvp_step: f64,
}

impl Default for StabilitySection {
    /// The library's defaults ([`StabilityOptions::default`]); `refine_steps` is left unset,
    /// i.e. half of `lanczos_steps` (the library's default is half of its default
    /// `lanczos_steps`, the same number).
    fn default() -> Self {
        let o = StabilityOptions::default();
        let s = &o.stationary;
        StabilitySection {
            runs: 1,
            iterations: s.max_iterations,
            newton_iterations: s.newton_iterations,
            cg_steps: s.cg_steps,
            dense_limit: s.dense_limit,
            weight_decay: o.weight_decay,
            perp_dense_limit: o.perp_dense_limit,
            per_sample_samples: o.per_sample_samples,
            rtol: s.rtol,
            lanczos_steps: o.lanczos_steps,
            lanczos_runs: o.lanczos_runs,
            refine_steps: None,
            exact_limit: o.enumeration_limit,
            sample_elements: o.sample_elements,
            rayleigh_samples: o.rayleigh_samples,
            escape_steps: o.escape_steps,
            escape_delta: o.escape_delta,
            escape_learning_rate: o.escape_eta,
            hvp: o.hvp,
            hvp_step: o.hvp_step,
        }
    }
}

impl StabilitySection {
    /// Checks ranges; `Err((key, reason))` names the key under `stability.`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |k: &str, r: String| Err((format!("stability.{k}"), r));
        // Upper bounds first: an absurd budget would otherwise hang the analysis.
        let bounds: [(&str, usize, usize); 11] = [
            ("runs", self.runs, stability::MAX_SAMPLES),
            ("iterations", self.iterations, stability::MAX_ITERATIONS),
            (
                "newton_iterations",
                self.newton_iterations,
                stability::MAX_ITERATIONS,
            ),
            ("escape_steps", self.escape_steps, stability::MAX_ITERATIONS),
            ("cg_steps", self.cg_steps, stability::MAX_STEPS),
            ("lanczos_steps", self.lanczos_steps, stability::MAX_STEPS),
            (
                "refine_steps",
                self.refine_steps.unwrap_or(0),
                stability::MAX_STEPS,
            ),
            ("lanczos_runs", self.lanczos_runs, stability::MAX_SAMPLES),
            (
                "sample_elements",
                self.sample_elements,
                stability::MAX_SAMPLES,
            ),
            (
                "rayleigh_samples",
                self.rayleigh_samples,
                stability::MAX_SAMPLES,
            ),
            (
                "per_sample_samples",
                self.per_sample_samples,
                stability::MAX_SAMPLES,
            ),
        ];
        for (key, value, max) in bounds {
            if value > max {
                return bad(key, format!("must be at most {max}, got {value}"));
            }
        }
        if self.runs == 0 {
            return bad("runs", "must be at least 1".into());
        }
        if self.lanczos_steps == 0 {
            return bad("lanczos_steps", "must be at least 1".into());
        }
        if self.lanczos_runs == 0 {
            return bad("lanczos_runs", "must be at least 1".into());
        }
        if !(self.rtol > 0.0 && self.rtol < 1.0) {
            return bad("rtol", format!("must be in (0, 1), got {}", self.rtol));
        }
        if self.cg_steps == 0 {
            return bad("cg_steps", "must be at least 1".into());
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(
                "weight_decay",
                format!("must be finite and at least 0, got {}", self.weight_decay),
            );
        }
        if self.sample_elements == 0 {
            return bad("sample_elements", "must be at least 1".into());
        }
        if self.rayleigh_samples == 1 {
            return bad(
                "rayleigh_samples",
                "must be 0 (no test) or at least 2 (a standard error needs two samples)".into(),
            );
        }
        if self.per_sample_samples == 1 {
            return bad(
                "per_sample_samples",
                "must be 0 (no test) or at least 2 (a standard error needs two samples)".into(),
            );
        }
        if !(self.escape_delta > 0.0 && self.escape_delta < 1.0) {
            return bad(
                "escape_delta",
                format!("must be in (0, 1), got {}", self.escape_delta),
            );
        }
        if let Some(eta) = self.escape_learning_rate {
            if !(eta.is_finite() && eta > 0.0) {
                return bad(
                    "escape_learning_rate",
                    format!("must be positive, got {eta}"),
                );
            }
        }
        if !(self.hvp_step > 0.0 && self.hvp_step < 1e-2) {
            return bad(
                "hvp_step",
                format!("must be in (0, 0.01), got {}", self.hvp_step),
            );
        }
        Ok(())
    }

    /// The options of [`eqaug_dynamics::stability::analyse`] for a run with `seed`.
    pub fn options(&self, minibatch: usize, seed: u64) -> StabilityOptions {
        StabilityOptions {
            minibatch,
            stationary: StationaryOptions {
                rtol: self.rtol,
                max_iterations: self.iterations,
                newton_iterations: self.newton_iterations,
                cg_steps: self.cg_steps,
                dense_limit: self.dense_limit,
                ..StationaryOptions::default()
            },
            lanczos_steps: self.lanczos_steps,
            lanczos_runs: self.lanczos_runs,
            refine_steps: self.refine_steps.unwrap_or(self.lanczos_steps / 2),
            enumeration_limit: self.exact_limit,
            sample_elements: self.sample_elements,
            hvp: self.hvp,
            hvp_step: self.hvp_step,
            weight_decay: self.weight_decay,
            perp_dense_limit: self.perp_dense_limit,
            per_sample_samples: self.per_sample_samples,
            escape_delta: self.escape_delta,
            escape_steps: self.escape_steps,
            escape_eta: self.escape_learning_rate,
            seed,
            rayleigh_samples: self.rayleigh_samples,
            memory_key: "stability.lanczos_steps".into(),
        }
    }
}
