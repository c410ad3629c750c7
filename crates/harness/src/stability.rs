//! `eqaug stability`: the stability analysis of docs/science.md §10 for an experiment config
//! (the `[stability]` section and, usually, the `stability` profile), and for the worked
//! example of docs/science.md §1.4 as a self-test.
//!
//! Per experiment (one per group) and per run (seed), in f64: a stationary point in E from the
//! run's initialisation, the spectra of `Hess R_eqv` on E and of `H_perp` on E-perp, and the
//! predicted against measured escape (see [`eqaug_dynamics::stability`]). Output:
//! `OUT/<experiment>/stability.json` ([`StabilityOutput`]), read by the report
//! ([`crate::report::stability`]).

use crate::config::Experiment;
use crate::memory::{self, Estimate, MemoryError, Part};
pub use crate::schema::outputs::STABILITY_JSON;
use eqaug_dynamics::hessian::Subspace;
use eqaug_dynamics::lanczos::subspace_dim;
use eqaug_dynamics::stability::{self, StabilityReport};
use eqaug_nn::Network;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub use crate::config::stability::StabilitySection;

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
    /// The analysis would not fit in memory (refused before allocating it).
    #[error("{experiment}: {source}")]
    Memory {
        /// The experiment.
        experiment: String,
        /// The estimate against the limit.
        #[source]
        source: MemoryError,
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
    /// The HVP method of the analysis (`exact` or `central_differences`).
    #[serde(default)]
    pub hvp_method: String,
    /// The cost of an exact HVP computed from scratch (no kept point), nominal and augmented,
    /// in gradients (`None`: not measured, or central differences).
    #[serde(default)]
    pub hvp_cost_from_scratch: Option<(f64, f64)>,
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
/// `out/<experiment>/stability.json`, within the memory available now
/// ([`run_stability_within`] with [`memory::limit`]`(None)`).
pub fn run_stability(exp: &Experiment, out: &Path) -> Result<StabilityOutput, StabilityRunError> {
    run_stability_within(exp, out, memory::limit(None))
}

/// [`run_stability`] with a memory `limit` (bytes and where it comes from, as from
/// [`memory::limit`]; `None`: no check): the experiment's estimate
/// ([`memory::estimate_experiment`]) is checked before the data and network are built, and
/// the analysis' ([`estimate_stability`]) before it allocates anything large, so that a huge
/// size is refused with the key responsible instead of aborting on a failed allocation.
pub fn run_stability_within(
    exp: &Experiment,
    out: &Path,
    limit: Option<(u64, String)>,
) -> Result<StabilityOutput, StabilityRunError> {
    let t0 = Instant::now();
    let opts = exp.stability.clone().unwrap_or_default();
    let memory_err = |source| StabilityRunError::Memory {
        experiment: exp.name.clone(),
        source,
    };
    memory::estimate_experiment(exp)
        .and_then(|e| e.check(limit.clone()))
        .map_err(memory_err)?;
    let setup = crate::setup::RunSetup::new(exp).map_err(|e| setup_err(exp, e))?;
    let (group, data, net) = (&setup.group, &setup.data64, &setup.net64);
    estimate_stability(exp, net, data.len())
        .and_then(|e| e.check(limit))
        .map_err(memory_err)?;
    let analysis_err = |source| StabilityRunError::Analysis {
        experiment: exp.name.clone(),
        source,
    };
    let mut runs = Vec::new();
    let (mut hvp_cost, mut hvp_cost_aug, mut scratch_cost) = (None, None, None);
    let analysis_opts = opts.options(exp.protocol.minibatch, exp.protocol.seed);
    for run in 0..opts.runs {
        let seed = exp.protocol.seed + run as u64;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let a0 = net.init_params(&mut rng);
        if run == 0 {
            let (c, c0) = hvp_cost_in_gradients(net, data, &analysis_opts, &a0, None)
                .map_err(analysis_err)?;
            hvp_cost = Some(c);
            let (elements, _) = stability::augmentation_elements(
                group,
                opts.exact_limit,
                opts.sample_elements,
                &mut rand_chacha::ChaCha8Rng::seed_from_u64(seed),
            )
            .map_err(analysis_err)?;
            let (ca, ca0) = hvp_cost_in_gradients(net, data, &analysis_opts, &a0, Some(elements))
                .map_err(analysis_err)?;
            hvp_cost_aug = Some(ca);
            scratch_cost = c0.zip(ca0);
        }
        let t = Instant::now();
        let analysis =
            stability::analyse_point(net, data, &a0, &opts.options(exp.protocol.minibatch, seed))
                .map_err(analysis_err)?;
        let wall_seconds = t.elapsed().as_secs_f64();
        save_vectors(
            &analysis,
            &out.join(&exp.name).join(crate::schema::run_dir_name(run)),
        )?;
        let report = analysis.report;
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
        hvp_method: analysis_opts.hvp.name().into(),
        hvp_cost_from_scratch: scratch_cost,
        wall_seconds: t0.elapsed().as_secs_f64(),
    };
    write_output(&output, &out.join(&exp.name))?;
    Ok(output)
}

/// Rows per work item of the analysis' risks (`CHUNK_ROWS` of
/// [`eqaug_dynamics::stability::Risk`]: whole mini-batches, several group elements stacked up
/// to this many rows).
const RISK_CHUNK_ROWS: u128 = 512;
/// Work blocks of a risk, each with its own workspace, gradient and transformed batch.
const RISK_BLOCKS: u128 = 4;
/// Parameter-sized vectors the analysis holds besides the Lanczos bases (point, gradients,
/// HVP scratch, L-BFGS memory of 10 pairs, trial points, Ritz vectors, escape iterates).
const ANALYSIS_VECTORS: u128 = 40;
/// `n x n` f64 matrices of a dense eigenproblem (as the library's memory check counts them).
const DENSE_MATRICES: u128 = 5;

/// The estimate of `eqaug stability` for one experiment: [`memory::estimate_experiment`]
/// (data, network, orbit maps, one chunk's activations) and the parts of the analysis at the
/// built network `net` on `samples` data rows:
///
/// * the Lanczos bases: per block, `lanczos_runs` runs of `lanczos_steps` vectors (at most the
///   parameter count) kept together, and the refinement run of `refine_steps` vectors, plus
///   the analysis' other parameter-sized vectors;
/// * the dense blocks: five `dim x dim` f64 matrices for the Hessian on E when `dim E` is at
///   most `dense_limit`, and for `H_perp` when `dim E-perp` is at most `perp_dense_limit` and
///   the group is averaged exactly;
/// * the augmented risk: its group elements (every one up to `exact_limit`, else a sample of
///   `sample_elements`), its work units, and its four work blocks (workspace, gradient and
///   transformed batch of up to 512 rows each).
pub fn estimate_stability(
    exp: &Experiment,
    net: &Network<f64>,
    samples: usize,
) -> Result<Estimate, MemoryError> {
    let mut estimate = memory::estimate_experiment(exp)?;
    estimate.what = format!("stability analysis of {}", estimate.what);
    let o = exp.stability.clone().unwrap_or_default();
    let sat = |x: u128| u64::try_from(x).unwrap_or(u64::MAX);
    let p = net.num_params() as u128;
    let refine = o.refine_steps.unwrap_or(o.lanczos_steps / 2) as u128;
    let per_block = (o.lanczos_runs as u128)
        .saturating_mul((o.lanczos_steps as u128).min(p))
        .saturating_add(refine.min(p));
    estimate.parts.push(Part {
        key: format!(
            "stability.lanczos_steps = {}, stability.lanczos_runs = {}, \
             stability.refine_steps = {refine} ({p} parameters)",
            o.lanczos_steps, o.lanczos_runs
        ),
        what: "the Lanczos bases of one block".into(),
        reduce: "`stability.lanczos_steps`, `stability.lanczos_runs` or \
                 `stability.refine_steps`"
            .into(),
        bytes: sat(per_block
            .saturating_add(ANALYSIS_VECTORS)
            .saturating_mul(p * 8)),
    });
    let dense = |n: usize| sat(DENSE_MATRICES * 8 * (n as u128) * (n as u128));
    let dim_e = subspace_dim(net.layout(), Subspace::Equivariant);
    if dim_e <= o.dense_limit {
        estimate.parts.push(Part {
            key: format!(
                "stability.dense_limit = {} (dim E = {dim_e})",
                o.dense_limit
            ),
            what: "the dense Hessian on E".into(),
            reduce: "`stability.dense_limit`".into(),
            bytes: dense(dim_e),
        });
    }
    let group = net.group();
    let exact = group.order() <= o.exact_limit as u128;
    let dim_perp = subspace_dim(net.layout(), Subspace::Orthogonal);
    if exact && dim_perp <= o.perp_dense_limit {
        estimate.parts.push(Part {
            key: format!(
                "stability.perp_dense_limit = {} (dim E-perp = {dim_perp})",
                o.perp_dense_limit
            ),
            what: "the dense H_perp".into(),
            reduce: "`stability.perp_dense_limit`".into(),
            bytes: dense(dim_perp),
        });
    }
    // The elements (kept twice: the risk's list and a copy for the per-sample test), and the
    // risk's work units (one per element and chunk of rows).
    let (elements, key) = if exact {
        (
            group.order(),
            format!(
                "stability.exact_limit = {} (group order {})",
                o.exact_limit,
                group.order()
            ),
        )
    } else {
        (
            o.sample_elements as u128,
            format!("stability.sample_elements = {}", o.sample_elements),
        )
    };
    let n = samples.max(1) as u128;
    let mb = exp.protocol.minibatch.max(1) as u128;
    let rows = ((RISK_CHUNK_ROWS / mb).max(1) * mb).min(n.div_ceil(mb) * mb);
    let units = elements.saturating_mul(n.div_ceil(rows));
    estimate.parts.push(Part {
        key,
        what: format!("the augmented risk's {elements} group elements and {units} work units"),
        reduce: "`stability.exact_limit` or `stability.sample_elements`".into(),
        bytes: sat(elements
            .saturating_mul(2 * 8 * group.degree() as u128)
            .saturating_add(units.saturating_mul(32))),
    });
    let item_rows = rows.max(RISK_CHUNK_ROWS);
    let widths = net.sequential().widths();
    let max_width = widths.iter().copied().max().unwrap_or(0) as u128;
    let per_row = 2 * widths.iter().map(|&w| w as u128).sum::<u128>()
        + 2 * max_width
        + (net.sequential().input_width() + net.sequential().output_width()) as u128;
    estimate.parts.push(Part {
        key: format!(
            "protocol.minibatch = {} and the network's widths (network.channels / \
             network.layers)",
            exp.protocol.minibatch
        ),
        what: format!("the risks' {RISK_BLOCKS} work blocks of {item_rows} rows"),
        reduce: "the channel counts (`network.channels` or `network.layers`)".into(),
        bytes: sat(RISK_BLOCKS
            .saturating_mul(item_rows.saturating_mul(per_row).saturating_add(p))
            .saturating_mul(8)),
    });
    if o.hvp == stability::HvpMethod::Exact {
        // The exact products keep each risk's point (every work item's activations, tangents,
        // output gradients and data), at most HVP_CACHE_BYTES each: the nominal risk's n rows
        // and the augmented risk's n rows per element.
        let cols = (net.sequential().input_width() + net.sequential().output_width()) as u128;
        // per row: activations, their tangents, the output gradients and normalisation
        // states (at most one more of each width), two gradient buffers, the data
        let row = (4 * widths.iter().map(|&w| w as u128).sum::<u128>() + 2 * max_width + cols)
            .saturating_mul(8);
        let cap = stability::HVP_CACHE_BYTES as u128;
        let bytes = n
            .saturating_mul(row)
            .min(cap)
            .saturating_add(n.saturating_mul(elements).saturating_mul(row).min(cap));
        estimate.parts.push(Part {
            key:
                "stability.hvp = \"exact\" (the kept points of the nominal and the augmented risk)"
                    .into(),
            what: "the exact Hessian-vector products' kept points".into(),
            reduce: "the data or the widths, or `stability.hvp = \"central_differences\"`".into(),
            bytes: sat(bytes),
        });
    }
    Ok(estimate)
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

/// Wall time of one HVP (the analysis' method; exact ones at a kept point) over that of one
/// gradient of the risk at `a` (nominal, or averaged over `elements`): the ratio of the
/// medians of 15 interleaved repetitions of each. Medians, not minima: the minimum of a sum of
/// two noisy gradient times lies above twice the minimum of one, which biases a ratio of minima
/// upwards by about the timing jitter. For exact HVPs also the ratio without the kept point
/// (every product from scratch), interleaved in the same loop.
pub fn hvp_cost_in_gradients(
    net: &Network<f64>,
    data: &eqaug_dynamics::TrainData<f64>,
    opts: &stability::StabilityOptions,
    a: &eqaug_nn::Params<f64>,
    elements: Option<Vec<eqaug_groups::Perm>>,
) -> Result<(f64, Option<f64>), stability::StabilityError> {
    let minibatch = opts.minibatch;
    let exact = opts.hvp == stability::HvpMethod::Exact;
    let mut scratch = if exact {
        let mut r = stability::Risk::new(net, data, minibatch, elements.clone())?;
        r.set_keep_point(false);
        Some(r)
    } else {
        None
    };
    let mut risk = stability::Risk::new(net, data, minibatch, elements)?;
    risk.set_hvp_method(opts.hvp)?;
    risk.set_hvp_step(opts.hvp_step);
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
    let mut ts = Vec::new();
    for _ in 0..15 {
        let t = Instant::now();
        risk.loss_and_gradient(a, &mut g)?;
        tg.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        risk.hvp(a, &v, &mut hv)?;
        th.push(t.elapsed().as_secs_f64());
        if let Some(r) = scratch.as_mut() {
            let t = Instant::now();
            r.hvp(a, &v, &mut hv)?;
            ts.push(t.elapsed().as_secs_f64());
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mg = median(&mut tg).max(1e-12);
    let from_scratch = (!ts.is_empty()).then(|| median(&mut ts) / mg);
    Ok((median(&mut th) / mg, from_scratch))
}

/// Saves the stationary point and the extreme vectors of a run as checkpoint folders in `dir`
/// ([`crate::schema::outputs::STABILITY_VECTORS`]).
fn save_vectors(a: &stability::Analysis, dir: &Path) -> Result<(), StabilityRunError> {
    let [point, e_min, e_max, perp_min, perp_max] = crate::schema::outputs::STABILITY_VECTORS;
    for (name, p) in [
        (point, &a.point),
        (e_min, &a.e_min),
        (e_max, &a.e_max),
        (perp_min, &a.perp_min),
        (perp_max, &a.perp_max),
    ] {
        let d = dir.join(name);
        p.save_npy(&d).map_err(|e| StabilityRunError::Io {
            path: d.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
    }
    Ok(())
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

/// The worked example of docs/science.md §1.4 through the same analysis (the self-test): writes
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
        title: "The worked example of docs/science.md §1.4 (softplus on R^2, G = Z_2 swap; MSE = twice the example's risk)".into(),
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
        hvp_method: String::new(),
        hvp_cost_from_scratch: None,
        wall_seconds: t0.elapsed().as_secs_f64(),
    };
    write_output(&output, &out.join("worked-example"))?;
    Ok(output)
}
