//! Runs every (run, strategy) of an experiment and writes each run's directory atomically:
//! `metrics.csv`, `run.json`, `config.toml` and parameter checkpoints. Finished runs are
//! skipped, so an interrupted reproduction resumes; shards split the runs between processes.

use crate::config::{DatasetKind, Experiment, Precision};
use eqaug_data::{Dataset, Targets};
use eqaug_dynamics::{train, EpochMetrics, Failure, StrategySpec, TrainData};
use eqaug_groups::{Group, Real, Rep};
use eqaug_nn::{Network, Params};
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::Array2;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Errors of a run, naming the file or the stage at fault.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Writing results failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Loading or generating the data failed.
    #[error("data for experiment `{experiment}`: {message}")]
    Data {
        /// Experiment name.
        experiment: String,
        /// What went wrong (names the missing file and how to get it).
        message: String,
    },
    /// The network, group or protocol could not be set up.
    #[error("experiment `{experiment}`: {message}")]
    Setup {
        /// Experiment name.
        experiment: String,
        /// What went wrong.
        message: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |source| RunError::Io {
        path: path.into(),
        source,
    }
}

/// Which runs this process does and where results go.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Output root: results go to `out/<experiment>/run-XXX`.
    pub out: PathBuf,
    /// Overrides the number of runs.
    pub runs: Option<usize>,
    /// Overrides the base seed.
    pub seed: Option<u64>,
    /// Overrides the precision of every strategy.
    pub precision: Option<Precision>,
    /// `(k, n)`: run only the runs `r` with `r % n == k - 1`.
    pub shard: Option<(usize, usize)>,
}

/// What a call of [`run_experiment`] did.
#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    /// Experiment name.
    pub experiment: String,
    /// Runs finished now.
    pub finished: Vec<usize>,
    /// Runs skipped because their directory already existed.
    pub skipped: Vec<usize>,
    /// Strategies that diverged, per run.
    pub failures: Vec<(usize, Failure)>,
    /// Wall time of this call in seconds.
    pub wall_seconds: f64,
}

/// Loads or generates the experiment's data, in f64, as eqaug-dynamics training data: the
/// first `data.count` samples, followed by `protocol.held_out` more (see [`split_held_out`]).
pub fn load_data(exp: &Experiment, group: &Group) -> Result<TrainData<f64>, RunError> {
    let err = |message: String| RunError::Data {
        experiment: exp.name.clone(),
        message,
    };
    let d = &exp.data;
    let mut ds: Dataset = match d.dataset {
        DatasetKind::Sbm => {
            let mut p = eqaug_data::sbm::SbmParams {
                nodes_per_cluster: exp.size / 2,
                count: d.count + exp.protocol.held_out,
                ..Default::default()
            };
            if let Some(v) = d.p_intra {
                p.p_intra = v;
            }
            if let Some(v) = d.p_inter {
                p.p_inter = v;
            }
            eqaug_data::sbm::try_generate(&p, d.seed).map_err(|e| err(e.to_string()))?
        }
        DatasetKind::Mnist14 => {
            let m = match &d.mnist_dir {
                Some(dir) => eqaug_data::mnist::load_idx_dir(dir),
                None => eqaug_data::mnist::load_shipped(),
            }
            .map_err(|e| err(e.to_string()))?;
            if m.len() < d.count {
                return Err(err(format!(
                    "{} MNIST images requested, {} available",
                    d.count,
                    m.len()
                )));
            }
            eqaug_data::mnist::mnist14(&m, Some(d.count))
        }
        DatasetKind::Shapes => {
            let p = eqaug_data::shapes::ShapesParams {
                size: exp.size,
                count: d.count + exp.protocol.held_out,
                ..Default::default()
            };
            eqaug_data::shapes::try_generate(&p, d.seed).map_err(|e| err(e.to_string()))?
        }
    };
    if d.input_offset != 0.0 {
        ds.offset_inputs(d.input_offset);
    }
    if ds.positions != group.degree() {
        return Err(err(format!(
            "the data have {} positions per channel but group `{}` acts on {}",
            ds.positions,
            group.name(),
            group.degree()
        )));
    }
    let n = ds.len();
    let (targets, target_rep) = match &ds.targets {
        Targets::Binary(v) => (Array2::from_shape_fn((n, 1), |(i, _)| v[i]), None),
        Targets::Classes { labels, classes } => {
            let mut t = Array2::zeros((n, *classes));
            for (i, &l) in labels.iter().enumerate() {
                t[[i, l]] = 1.0;
            }
            (t, None)
        }
        Targets::Masks { masks, channels } => (masks.clone(), Some(Rep::base(*channels))),
    };
    Ok(TrainData {
        x: ds.x,
        targets,
        input_rep: Rep::base(ds.channels),
        target_rep,
    })
}

/// Splits the last `held_out` rows off the data: `(training set, held-out inputs)`.
pub fn split_held_out(mut d: TrainData<f64>, held_out: usize) -> (TrainData<f64>, Array2<f64>) {
    let n = d.x.nrows() - held_out;
    let held = d.x.slice(ndarray::s![n.., ..]).to_owned();
    d.x = d.x.slice(ndarray::s![..n, ..]).to_owned();
    d.targets = d.targets.slice(ndarray::s![..n, ..]).to_owned();
    (d, held)
}

fn cast_data<T: Real>(d: &TrainData<f64>) -> TrainData<T> {
    TrainData {
        x: d.x.mapv(T::from_f64_lossy),
        targets: d.targets.mapv(T::from_f64_lossy),
        input_rep: d.input_rep,
        target_rep: d.target_rep,
    }
}

/// The experiment description the report reads (`<out>/<experiment>/experiment.json`).
#[derive(Serialize)]
struct ExperimentJson<'a> {
    experiment: &'a str,
    title: &'a str,
    group: &'a str,
    size: usize,
    profile: &'a str,
    note: &'a str,
    precision: &'a str,
    epochs: usize,
    runs: usize,
    learning_rate: f64,
    minibatch: usize,
    dataset: DatasetKind,
    count: usize,
    strategies: Vec<serde_json::Value>,
    wall_seconds: f64,
    config_file: String,
}

/// `run.json` of one run.
#[derive(Serialize)]
struct RunJson<'a> {
    run: usize,
    config_key: String,
    seed: u64,
    experiment: &'a str,
    profile: &'a str,
    wall_seconds: f64,
    strategy_seconds: Vec<(String, f64)>,
    failed: &'a [Failure],
    layers: &'a [String],
    checkpoints: Vec<usize>,
    /// Per strategy: max and mean of |Phi(g x) - g Phi(x)| on the held-out samples at the end.
    equivariance_error: BTreeMap<String, [f64; 2]>,
    eqaug_version: &'static str,
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RunError> {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// The runs of `0..runs` that belong to shard `k` of `n` (1-based `k`).
pub fn shard_runs(runs: usize, shard: Option<(usize, usize)>) -> Vec<usize> {
    match shard {
        None => (0..runs).collect(),
        Some((k, n)) => (0..runs).filter(|r| r % n == k - 1).collect(),
    }
}

/// A fingerprint of everything that determines a run's numbers: the resolved config (less
/// the number of runs and how many run at once) and the command-line overrides.
pub fn config_key(exp: &Experiment) -> String {
    let mut table: toml::Table = toml::from_str(&exp.resolved_toml).unwrap_or_default();
    if let Some(toml::Value::Table(p)) = table.get_mut("protocol") {
        p.remove("runs");
        p.remove("parallel_runs");
    }
    let text = format!(
        "{}\nname={} profile={} seed={} precisions={:?}",
        toml::to_string(&table).unwrap_or_default(),
        exp.name,
        exp.profile,
        exp.protocol.seed,
        exp.strategies
            .iter()
            .map(|(s, p)| (&s.name, p.name()))
            .collect::<Vec<_>>()
    );
    // FNV-1a, 64 bit: stable across platforms and versions.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The name of run `r`'s directory.
pub fn run_dir_name(r: usize) -> String {
    format!("run-{r:03}")
}

/// Runs the experiment's runs (those of the shard, skipping finished ones).
pub fn run_experiment(exp: &Experiment, opts: &RunOptions) -> Result<RunSummary, RunError> {
    let start = Instant::now();
    let setup = |message: String| RunError::Setup {
        experiment: exp.name.clone(),
        message,
    };
    let mut exp = exp.clone();
    if let Some(r) = opts.runs {
        exp.protocol.runs = r;
    }
    if let Some(s) = opts.seed {
        exp.protocol.seed = s;
    }
    if let Some(p) = opts.precision {
        exp.protocol.precision = p;
        for s in &mut exp.strategies {
            s.1 = p;
        }
    }
    let group = exp.build_group().map_err(|e| setup(e.to_string()))?;
    let (data64, held64) = split_held_out(load_data(&exp, &group)?, exp.protocol.held_out);
    let dir = opts.out.join(&exp.name);
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    write_experiment_json(&exp, &dir)?;

    let todo: Vec<usize> = shard_runs(exp.protocol.runs, opts.shard);
    let key = config_key(&exp);
    let (skipped, todo): (Vec<usize>, Vec<usize>) = todo
        .into_iter()
        .partition(|&r| dir.join(run_dir_name(r)).join("run.json").exists());
    // A finished run made with another config must not be mixed with new ones.
    for &r in &skipped {
        let path = dir.join(run_dir_name(r)).join("run.json");
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let old = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["config_key"].as_str().map(str::to_string));
        if old.as_deref() != Some(key.as_str()) {
            return Err(setup(format!(
                "{} was made with a different configuration (the config file, profile, seed or \
                 precision changed); move {} away or choose another --out",
                path.display(),
                dir.display()
            )));
        }
    }
    let epochs = exp.protocol.epochs;
    let ticks = (todo.len() * exp.strategies.len() * (epochs + 1)) as u64;
    let terminal = std::io::stderr().is_terminal();
    let bar = if terminal {
        let b = ProgressBar::new(ticks);
        b.set_style(
            ProgressStyle::with_template(
                "{prefix:>12} [{elapsed_precise}] {wide_bar} {pos}/{len} epochs (eta {eta}) {msg}",
            )
            .expect("valid template"),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    bar.set_prefix(exp.name.clone());
    if !skipped.is_empty() {
        let line = format!(
            "[{}] skipping {} finished run(s): {:?}",
            exp.name,
            skipped.len(),
            skipped
        );
        bar.println(&line);
        if !terminal {
            eprintln!("{line}");
        }
    }
    let data32 = cast_data::<f32>(&data64);
    let net64 = Network::<f64>::new(&exp.network, group.clone(), data64.input_rep, exp.loss)
        .map_err(|e| setup(e.to_string()))?;
    let net32 = Network::<f32>::new(&exp.network, group.clone(), data64.input_rep, exp.loss)
        .map_err(|e| setup(e.to_string()))?;
    if net64.output_width() != data64.targets.ncols() {
        return Err(setup(format!(
            "the network has {} outputs but the targets have {} columns",
            net64.output_width(),
            data64.targets.ncols()
        )));
    }
    let ctx = RunCtx {
        exp: &exp,
        group: &group,
        dir: &dir,
        data64: &data64,
        data32: &data32,
        net64: &net64,
        net32: &net32,
        held64: &held64,
        held32: &held64.mapv(|v| v as f32),
        bar: &bar,
        terminal,
    };
    let results: Vec<Result<(usize, Vec<Failure>), RunError>> = if exp.protocol.parallel_runs > 1 {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(exp.protocol.parallel_runs)
            .build()
            .map_err(|e| setup(e.to_string()))?;
        pool.install(|| todo.par_iter().map(|&r| ctx.one_run(r)).collect())
    } else {
        todo.iter().map(|&r| ctx.one_run(r)).collect()
    };
    bar.finish_and_clear();
    let mut finished = Vec::new();
    let mut failures = Vec::new();
    for r in results {
        let (run, f) = r?;
        finished.push(run);
        failures.extend(f.into_iter().map(|f| (run, f)));
    }
    write_experiment_json(&exp, &dir)?;
    Ok(RunSummary {
        experiment: exp.name.clone(),
        finished,
        skipped,
        failures,
        wall_seconds: start.elapsed().as_secs_f64(),
    })
}

/// Writes `experiment.json`, with the wall time summed over the finished runs on disk.
fn write_experiment_json(exp: &Experiment, dir: &Path) -> Result<(), RunError> {
    let mut wall = 0.0;
    for r in 0..exp.protocol.runs {
        let p = dir.join(run_dir_name(r)).join("run.json");
        if let Ok(text) = std::fs::read_to_string(&p) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                wall += v["wall_seconds"].as_f64().unwrap_or(0.0);
            }
        }
    }
    let strategies = exp
        .strategies
        .iter()
        .map(|(s, p)| {
            serde_json::json!({
                "name": s.name, "kind": s.kind, "sampling": s.sampling,
                "passes": s.passes, "precision": p.name(),
            })
        })
        .collect();
    let j = ExperimentJson {
        experiment: &exp.name,
        title: &exp.title,
        group: &exp.group,
        size: exp.size,
        profile: &exp.profile,
        note: &exp.note,
        precision: exp.protocol.precision.name(),
        epochs: exp.protocol.epochs,
        runs: exp.protocol.runs,
        learning_rate: exp.protocol.learning_rate,
        minibatch: exp.protocol.minibatch,
        dataset: exp.data.dataset,
        count: exp.data.count,
        strategies,
        wall_seconds: wall,
        config_file: exp.file.display().to_string(),
    };
    let text = serde_json::to_string_pretty(&j).expect("serialises");
    write_atomic(&dir.join("experiment.json"), text.as_bytes())
}

/// What one run's strategies share while they train.
struct RunState {
    seed: u64,
    protocol: eqaug_dynamics::Protocol,
    tmp: PathBuf,
    checkpoints: Vec<usize>,
    ckpt_err: Option<RunError>,
    eq_err: BTreeMap<String, [f64; 2]>,
}

struct RunCtx<'a> {
    exp: &'a Experiment,
    group: &'a Arc<Group>,
    dir: &'a Path,
    data64: &'a TrainData<f64>,
    data32: &'a TrainData<f32>,
    net64: &'a Network<f64>,
    net32: &'a Network<f32>,
    held64: &'a Array2<f64>,
    held32: &'a Array2<f32>,
    bar: &'a ProgressBar,
    terminal: bool,
}

impl RunCtx<'_> {
    /// One run in a temporary directory, renamed into place when complete.
    fn one_run(&self, run: usize) -> Result<(usize, Vec<Failure>), RunError> {
        let exp = self.exp;
        let start = Instant::now();
        let seed = exp.protocol.seed.wrapping_add(run as u64);
        let final_dir = self.dir.join(run_dir_name(run));
        let tmp = self.dir.join(format!("{}.tmp", run_dir_name(run)));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
        }
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        // One A0 for every strategy, drawn in f64 (and rounded for f32 strategies). The f64
        // copy is kept only when an f64 strategy needs it (for E2/E3 it is twice the size of
        // the f32 parameters).
        let a0_64 = self.net64.init_params(&mut ChaCha8Rng::seed_from_u64(seed));
        let a0_32: Params<f32> = a0_64.cast();
        let needs_f64 = exp.strategies.iter().any(|(_, p)| *p == Precision::F64);
        let a0_64 = needs_f64.then_some(a0_64);
        let mut metrics: Vec<EpochMetrics> = Vec::new();
        let mut failures = Vec::new();
        let mut layers = Vec::new();
        let mut strategy_seconds = Vec::new();
        let mut st = RunState {
            seed,
            protocol: exp.dynamics_protocol(),
            tmp: tmp.clone(),
            checkpoints: exp.checkpoint_epochs(),
            ckpt_err: None,
            eq_err: BTreeMap::new(),
        };
        for (spec, precision) in &exp.strategies {
            let t0 = Instant::now();
            self.bar.set_message(format!("run {run} {}", spec.name));
            let outcome = match precision {
                Precision::F32 => {
                    self.train_one(self.net32, self.data32, self.held32, &a0_32, spec, &mut st)
                }
                Precision::F64 => self.train_one(
                    self.net64,
                    self.data64,
                    self.held64,
                    a0_64.as_ref().expect("kept for f64 strategies"),
                    spec,
                    &mut st,
                ),
            }
            .map_err(|e| RunError::Setup {
                experiment: exp.name.clone(),
                message: format!("run {run}, strategy {}: {e}", spec.name),
            })?;
            if let Some(e) = st.ckpt_err.take() {
                return Err(e);
            }
            layers = outcome.layer_names;
            metrics.extend(outcome.metrics);
            failures.extend(outcome.failures);
            strategy_seconds.push((spec.name.clone(), t0.elapsed().as_secs_f64()));
        }
        write_metrics_csv(&tmp.join("metrics.csv"), &layers, &metrics)?;
        write_atomic(&tmp.join("config.toml"), exp.resolved_toml.as_bytes())?;
        let wall = start.elapsed().as_secs_f64();
        let rj = RunJson {
            run,
            config_key: config_key(exp),
            seed,
            experiment: &exp.name,
            profile: &exp.profile,
            wall_seconds: wall,
            strategy_seconds,
            failed: &failures,
            layers: &layers,
            checkpoints: st.checkpoints,
            equivariance_error: st.eq_err,
            eqaug_version: env!("CARGO_PKG_VERSION"),
        };
        let text = serde_json::to_string_pretty(&rj).expect("serialises");
        write_atomic(&tmp.join("run.json"), text.as_bytes())?;
        if final_dir.exists() {
            std::fs::remove_dir_all(&final_dir).map_err(io(&final_dir))?;
        }
        std::fs::rename(&tmp, &final_dir).map_err(io(&final_dir))?;
        let line = summary_line(exp, run, wall, &metrics, &failures);
        if self.terminal {
            self.bar.println(line);
        } else {
            let mut e = std::io::stderr().lock();
            let _ = writeln!(e, "{line}");
        }
        Ok((run, failures))
    }

    /// Trains one strategy from `a0`, saving checkpoints and measuring the held-out
    /// equivariance error at the last epoch.
    fn train_one<T: Real>(
        &self,
        net: &Network<T>,
        data: &TrainData<T>,
        held: &Array2<T>,
        a0: &Params<T>,
        spec: &StrategySpec,
        st: &mut RunState,
    ) -> Result<eqaug_dynamics::RunOutcome, eqaug_dynamics::TrainError> {
        let bar = self.bar;
        let last = st.protocol.epochs;
        let RunState {
            seed,
            protocol,
            tmp,
            checkpoints,
            ckpt_err,
            eq_err,
        } = st;
        let seed = *seed;
        train(
            net,
            self.group.clone(),
            data,
            protocol,
            std::slice::from_ref(spec),
            a0,
            seed,
            &mut |m, params| {
                bar.inc(1);
                if m.epoch == last && held.nrows() > 0 {
                    let mut rng = eqaug_dynamics::strategy_rng(seed, "equivariance-error");
                    let e = eqaug_dynamics::equivariance_error(
                        net,
                        params,
                        held.view(),
                        protocol.minibatch,
                        8,
                        &mut rng,
                    );
                    eq_err.insert(m.strategy.clone(), [e.max, e.mean]);
                }
                if checkpoints.contains(&m.epoch) && ckpt_err.is_none() {
                    let d = tmp
                        .join("checkpoints")
                        .join(&m.strategy)
                        .join(format!("epoch-{:03}", m.epoch));
                    if let Err(e) = params.save_npy(&d) {
                        *ckpt_err = Some(RunError::Io {
                            path: d,
                            source: std::io::Error::other(e.to_string()),
                        });
                    }
                }
            },
        )
    }
}

fn summary_line(
    exp: &Experiment,
    run: usize,
    wall: f64,
    metrics: &[EpochMetrics],
    failures: &[Failure],
) -> String {
    let mut parts = Vec::new();
    for (s, _) in &exp.strategies {
        if let Some(m) = metrics.iter().rfind(|m| m.strategy == s.name) {
            parts.push(format!(
                "{} loss {:.4} |A-A0| {:.3e} |A_Eperp| {:.3e}",
                s.name, m.loss, m.dist_from_start, m.dist_to_e
            ));
        }
    }
    let fail = if failures.is_empty() {
        String::new()
    } else {
        format!(
            " FAILED: {}",
            failures
                .iter()
                .map(|f| f.error.clone())
                .collect::<Vec<_>>()
                .join("; ")
        )
    };
    format!(
        "[{}] run {}/{} done in {:.1} s: {}{}",
        exp.name,
        run + 1,
        exp.protocol.runs,
        wall,
        parts.join("; "),
        fail
    )
}

/// Writes `metrics.csv`: epoch, strategy, loss, totals, then per-layer distances.
pub fn write_metrics_csv(
    path: &Path,
    layers: &[String],
    metrics: &[EpochMetrics],
) -> Result<(), RunError> {
    let short: Vec<String> = layers
        .iter()
        .map(|l| l.strip_suffix(".weight").unwrap_or(l).to_string())
        .collect();
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec![
        "epoch".to_string(),
        "strategy".into(),
        "loss".into(),
        "dist_from_start".into(),
        "dist_to_e".into(),
    ];
    header.extend(short.iter().map(|l| format!("dist_from_start.{l}")));
    header.extend(short.iter().map(|l| format!("dist_to_e.{l}")));
    let csv_err = |e: csv::Error| RunError::Io {
        path: path.into(),
        source: std::io::Error::other(e.to_string()),
    };
    w.write_record(&header).map_err(csv_err)?;
    for m in metrics {
        let mut rec = vec![
            m.epoch.to_string(),
            m.strategy.clone(),
            m.loss.to_string(),
            m.dist_from_start.to_string(),
            m.dist_to_e.to_string(),
        ];
        rec.extend(m.dist_from_start_per_layer.iter().map(f64::to_string));
        rec.extend(m.dist_to_e_per_layer.iter().map(f64::to_string));
        w.write_record(&rec).map_err(csv_err)?;
    }
    let bytes = w.into_inner().map_err(|e| RunError::Io {
        path: path.into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    write_atomic(path, &bytes)
}
