//! `eqaug stability`: the stability analysis of SPEC section 10 for an experiment config
//! (the `[stability]` section and, usually, the `stability` profile), and for the worked
//! example of SPEC section 1 as a self-test.
//!
//! Per experiment (one per group) and per run (seed), in f64: a stationary point in E from the
//! run's initialisation, the spectra of `Hess R_eqv` on E and of `H_perp` on E-perp, and the
//! predicted against measured escape (see [`eqaug_dynamics::stability`]). Output:
//! `OUT/<experiment>/stability.json` ([`StabilityOutput`]), read by the report
//! ([`crate::report::stability`]).

use crate::config::Experiment;
use eqaug_dynamics::stability::{self, StabilityOptions, StabilityReport, StationaryOptions};
use eqaug_nn::Network;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// `[stability]`: options of the stability analysis (profiles may override them with
/// `stability = { ... }`). Sizes of the network and data come from the usual sections, so the
/// `stability` profile shrinks them there.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StabilitySection {
    /// Independent runs (initialisations `protocol.seed + k`), each analysed.
    #[serde(default = "one")]
    pub runs: usize,
    /// Budget of L-BFGS iterations towards the stationary point in E.
    #[serde(default = "default_iterations")]
    pub iterations: usize,
    /// Budget of trust-region Newton iterations (Steihaug CG on E) after the L-BFGS stage.
    #[serde(default = "default_newton")]
    pub newton_iterations: usize,
    /// Conjugate-gradient steps (Hessian-vector products) per Newton iteration at most.
    #[serde(default = "default_cg_steps")]
    pub cg_steps: usize,
    /// The Newton stage builds the whole Hessian on E when `dim E` is at most this (exact
    /// trust-region steps); above it, truncated conjugate gradients.
    #[serde(default = "default_dense_limit")]
    pub dense_limit: usize,
    /// Ridge `mu / 2 ||A||^2` added to the risk (0: none). Needed where the data are
    /// separable (cross-entropy on few samples): there the risk has no finite minimiser.
    /// Both Hessian blocks shift by exactly `mu`.
    #[serde(default)]
    pub weight_decay: f64,
    /// With an exactly averaged group and `dim E-perp` at most this, H_perp is computed densely
    /// (all its eigenvalues, from dim E-perp HVPs) instead of by Lanczos; 0 (default): never.
    #[serde(default)]
    pub perp_dense_limit: usize,
    /// K, samples of the per-sample-draw test at an exactly averaged stationary point: the
    /// lowest eigenvector v of H_perp, and v^T H_k v under K random assignments of a group
    /// element to every sample (batch norm then mixes transformations in its statistics);
    /// 0 (default): none.
    #[serde(default)]
    pub per_sample_samples: usize,
    /// Stop when `||Pi_E grad R||` falls below this fraction of its starting value.
    #[serde(default = "default_rtol")]
    pub rtol: f64,
    /// Lanczos steps per run (memory: steps x parameters x 8 bytes).
    #[serde(default = "default_steps")]
    pub lanczos_steps: usize,
    /// Lanczos runs (random starts) per block; all of them feed the SLQ density.
    #[serde(default = "default_lanczos_runs")]
    pub lanczos_runs: usize,
    /// Steps of one more Lanczos run per block restarted from the Ritz vector of the lowest
    /// value, to refine the lowest eigenpair (0: none; default: half of `lanczos_steps`).
    #[serde(default)]
    pub refine_steps: Option<usize>,
    /// Groups with at most this many elements are averaged exactly; larger ones over a sample.
    #[serde(default = "default_exact_limit")]
    pub exact_limit: usize,
    /// M: group elements per sample when the group is larger than `exact_limit` (two
    /// independent samples measure the sampling error).
    #[serde(default = "default_sample")]
    pub sample_elements: usize,
    /// K: further independent samples of M elements under which the lowest Ritz vector of an
    /// estimated H_perp is evaluated (the held-out Rayleigh test; 0: none, else at least 2).
    #[serde(default = "default_rayleigh")]
    pub rayleigh_samples: usize,
    /// Steps of each escape run (0 = none).
    #[serde(default = "default_escape_steps")]
    pub escape_steps: usize,
    /// `delta / max(1, ||A*||)` of the escape runs.
    #[serde(default = "default_delta")]
    pub escape_delta: f64,
    /// Learning rate of the escape runs (default `1 / max |lambda|`).
    #[serde(default)]
    pub escape_learning_rate: Option<f64>,
    /// Relative step of the central-difference Hessian-vector products.
    #[serde(default = "default_hvp_step")]
    pub hvp_step: f64,
}

fn one() -> usize {
    1
}
fn default_iterations() -> usize {
    300
}
fn default_newton() -> usize {
    50
}
fn default_cg_steps() -> usize {
    100
}
fn default_dense_limit() -> usize {
    500
}
fn default_rtol() -> f64 {
    1e-6
}
fn default_steps() -> usize {
    20
}
fn default_lanczos_runs() -> usize {
    2
}
fn default_exact_limit() -> usize {
    1000
}
fn default_sample() -> usize {
    16
}
fn default_rayleigh() -> usize {
    16
}
fn default_escape_steps() -> usize {
    20
}
fn default_delta() -> f64 {
    1e-4
}
fn default_hvp_step() -> f64 {
    1e-6
}

impl Default for StabilitySection {
    fn default() -> Self {
        StabilitySection {
            runs: 1,
            iterations: default_iterations(),
            newton_iterations: default_newton(),
            cg_steps: default_cg_steps(),
            dense_limit: default_dense_limit(),
            weight_decay: 0.0,
            perp_dense_limit: 0,
            per_sample_samples: 0,
            rtol: default_rtol(),
            lanczos_steps: default_steps(),
            lanczos_runs: default_lanczos_runs(),
            refine_steps: None,
            exact_limit: default_exact_limit(),
            sample_elements: default_sample(),
            rayleigh_samples: default_rayleigh(),
            escape_steps: default_escape_steps(),
            escape_delta: default_delta(),
            escape_learning_rate: None,
            hvp_step: default_hvp_step(),
        }
    }
}

impl StabilitySection {
    /// Checks ranges; `Err((key, reason))` names the key under `stability.`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |k: &str, r: String| Err((format!("stability.{k}"), r));
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
                memory: 10,
                max_step: 0.1,
                newton_iterations: self.newton_iterations,
                cg_steps: self.cg_steps,
                dense_limit: self.dense_limit,
            },
            lanczos_steps: self.lanczos_steps,
            lanczos_runs: self.lanczos_runs,
            refine_steps: self.refine_steps.unwrap_or(self.lanczos_steps / 2),
            enumeration_limit: self.exact_limit,
            sample_elements: self.sample_elements,
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

/// Errors of `eqaug stability`, naming the experiment.
// The set-up error is kept as a message: the analysis may run before or after the runner
// changes its error types.
#[derive(Debug, thiserror::Error)]
pub enum StabilityRunError {
    /// The analysis failed.
    #[error("{experiment}: {source}")]
    Analysis {
        /// The experiment.
        experiment: String,
        /// What failed.
        #[source]
        source: stability::StabilityError,
    },
    /// Building the group, network or data failed.
    #[error("{experiment}: {message}")]
    Setup {
        /// The experiment.
        experiment: String,
        /// What failed.
        message: String,
    },
    /// Writing the output failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// One analysed run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunStability {
    /// Run index (`seed = protocol.seed + run`).
    pub run: usize,
    /// Seed of the initialisation and of the random starts.
    pub seed: u64,
    /// What was measured.
    pub report: StabilityReport,
    /// Wall time of the analysis, seconds.
    pub wall_seconds: f64,
}

/// The file of one experiment's analysis ([`StabilityOutput`]), in its folder.
pub const STABILITY_JSON: &str = "stability.json";

/// `stability.json`: one experiment's analysis.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StabilityOutput {
    /// Experiment folder name (`e1`, `e4-rot`, `worked-example`).
    pub experiment: String,
    /// Title.
    pub title: String,
    /// Profile applied.
    pub profile: String,
    /// Group name.
    pub group: String,
    /// Group order (as a string: S_10 has 3 628 800 elements).
    pub group_order: String,
    /// Samples in the data set.
    pub samples: usize,
    /// Network parameters.
    pub params: usize,
    /// Activation note (`leaky_relu` networks have kinks: see `kink_distance`).
    pub activations: Vec<String>,
    /// The options used.
    pub options: StabilitySection,
    /// The runs.
    pub runs: Vec<RunStability>,
    /// Cost of one HVP in gradients: wall time of an HVP over that of a gradient (nominal
    /// risk, ratio of medians of 15 at `A0`; `None` when not measured).
    pub hvp_cost_in_gradients: Option<f64>,
    /// The same for the augmented risk whose `H_perp` the analysis computes (all elements, or
    /// a sample of M): the HVPs of the Lanczos runs on E-perp.
    #[serde(default)]
    pub hvp_cost_augmented: Option<f64>,
    /// Wall time of the whole command for this experiment, seconds.
    pub wall_seconds: f64,
}

fn setup_err(exp: &Experiment, message: impl ToString) -> StabilityRunError {
    StabilityRunError::Setup {
        experiment: exp.name.clone(),
        message: message.to_string(),
    }
}

/// Analyses one experiment (every run of `[stability]`) and writes
/// `out/<experiment>/stability.json`.
pub fn run_stability(exp: &Experiment, out: &Path) -> Result<StabilityOutput, StabilityRunError> {
    let t0 = Instant::now();
    let opts = exp.stability.clone().unwrap_or_default();
    let setup = crate::setup::RunSetup::new(exp).map_err(|e| setup_err(exp, e))?;
    let (group, data, net) = (&setup.group, &setup.data64, &setup.net64);
    let analysis_err = |source| StabilityRunError::Analysis {
        experiment: exp.name.clone(),
        source,
    };
    let mut runs = Vec::new();
    let (mut hvp_cost, mut hvp_cost_aug) = (None, None);
    for run in 0..opts.runs {
        let seed = exp.protocol.seed + run as u64;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let a0 = net.init_params(&mut rng);
        if run == 0 {
            hvp_cost = Some(
                hvp_cost_in_gradients(net, data, exp.protocol.minibatch, &a0, None)
                    .map_err(analysis_err)?,
            );
            let (elements, _) = stability::augmentation_elements(
                group,
                opts.exact_limit,
                opts.sample_elements,
                &mut rand_chacha::ChaCha8Rng::seed_from_u64(seed),
            )
            .map_err(analysis_err)?;
            hvp_cost_aug = Some(
                hvp_cost_in_gradients(net, data, exp.protocol.minibatch, &a0, Some(elements))
                    .map_err(analysis_err)?,
            );
        }
        let t = Instant::now();
        let (report, _) =
            stability::analyse(net, data, &a0, &opts.options(exp.protocol.minibatch, seed))
                .map_err(analysis_err)?;
        let wall_seconds = t.elapsed().as_secs_f64();
        eprintln!(
            "[{}] run {run}: residual {:.1e} (x{:.1e} of start), E [{:.3e}, {:.3e}], E-perp [{:.3e}, {:.3e}], {:?}, {wall_seconds:.1} s",
            exp.name,
            report.residual,
            report.residual / report.residual_start.max(f64::MIN_POSITIVE),
            report.e_block.min,
            report.e_block.max,
            report.perp_block.min,
            report.perp_block.max,
            report.verdict
        );
        runs.push(RunStability {
            run,
            seed,
            report,
            wall_seconds,
        });
    }
    let output = StabilityOutput {
        experiment: exp.name.clone(),
        title: exp.title.clone(),
        profile: exp.profile.clone(),
        group: group.name().to_string(),
        group_order: group.order().to_string(),
        samples: data.len(),
        params: net.num_params(),
        activations: activations(&exp.network),
        options: opts,
        runs,
        hvp_cost_in_gradients: hvp_cost,
        hvp_cost_augmented: hvp_cost_aug,
        wall_seconds: t0.elapsed().as_secs_f64(),
    };
    write_output(&output, &out.join(&exp.name))?;
    Ok(output)
}

fn activations(spec: &eqaug_nn::NetworkSpec) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for l in &spec.layers {
        let k = l.kind();
        if !matches!(k, "group" | "dense" | "batch_norm" | "layer_norm")
            && !v.iter().any(|x| x == k)
        {
            v.push(k.to_string());
        }
    }
    v
}

/// Wall time of one HVP over that of one gradient of the risk at `a` (nominal, or averaged over
/// `elements`): the ratio of the medians of 15 interleaved repetitions of each. Medians, not
/// minima: the minimum of a sum of two noisy gradient times lies above twice the minimum of one,
/// which biases a ratio of minima upwards by about the timing jitter.
pub fn hvp_cost_in_gradients(
    net: &Network<f64>,
    data: &eqaug_dynamics::TrainData<f64>,
    minibatch: usize,
    a: &eqaug_nn::Params<f64>,
    elements: Option<Vec<eqaug_groups::Perm>>,
) -> Result<f64, stability::StabilityError> {
    let mut risk = stability::Risk::new(net, data, minibatch, elements)?;
    let mut g = a.zeros_like();
    let mut hv = a.zeros_like();
    let v = {
        let mut v = a.clone();
        v.scale(0.5);
        v
    };
    risk.loss_and_gradient(a, &mut g)?; // warm-up
    risk.hvp(a, &v, &mut hv)?;
    let mut tg = Vec::new();
    let mut th = Vec::new();
    for _ in 0..15 {
        let t = Instant::now();
        risk.loss_and_gradient(a, &mut g)?;
        tg.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        risk.hvp(a, &v, &mut hv)?;
        th.push(t.elapsed().as_secs_f64());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Ok(median(&mut th) / median(&mut tg).max(1e-12))
}

/// Writes `dir/stability.json` atomically.
pub fn write_output(output: &StabilityOutput, dir: &Path) -> Result<(), StabilityRunError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StabilityRunError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let path = dir.join(STABILITY_JSON);
    let tmp = dir.join("stability.json.tmp");
    let text = serde_json::to_string_pretty(output).expect("serialises");
    std::fs::write(&tmp, text + "\n").map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    Ok(())
}

/// The worked example of SPEC section 1 through the same analysis (the self-test): writes
/// `out/worked-example/stability.json`.
pub fn run_worked_example(out: &Path) -> Result<StabilityOutput, StabilityRunError> {
    let t0 = Instant::now();
    let opts = StabilitySection {
        lanczos_steps: 4,
        escape_steps: 30,
        ..StabilitySection::default()
    };
    let err = |source| StabilityRunError::Analysis {
        experiment: "worked-example".into(),
        source,
    };
    let t = Instant::now();
    let report = eqaug_dynamics::worked_example::stability(&opts.options(2, 0)).map_err(err)?;
    let wall_seconds = t.elapsed().as_secs_f64();
    let output = StabilityOutput {
        experiment: "worked-example".into(),
        title: "The worked example of SPEC section 1 (softplus on R^2, G = Z_2 swap; MSE = twice the example's risk)".into(),
        profile: "-".into(),
        group: "swap".into(),
        group_order: "2".into(),
        samples: 2,
        params: 2,
        activations: vec!["softplus".into()],
        options: opts,
        runs: vec![RunStability {
            run: 0,
            seed: 0,
            report,
            wall_seconds,
        }],
        hvp_cost_in_gradients: None,
        hvp_cost_augmented: None,
        wall_seconds: t0.elapsed().as_secs_f64(),
    };
    write_output(&output, &out.join("worked-example"))?;
    Ok(output)
}
