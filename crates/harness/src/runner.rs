//! Runs every (run, strategy) of an experiment and writes each run's directory atomically:
//! `metrics.csv`, `run.json`, `config.toml` and parameter checkpoints. Finished runs are
//! skipped, so an interrupted reproduction resumes; shards split the runs between processes.

use crate::config::{Experiment, Precision};
use crate::io::IoError;
use crate::lock::{self, RunLock};
use crate::progress::Progress;
use crate::schema::{self, ExperimentRecord, RunRecord, SchemaError, StrategyRecord};
use crate::setup::{RunSetup, SetupError};
use eqaug_dynamics::{
    train_with_held_out, EpochMetrics, Failure, HeldOut, StrategySpec, TrainData,
};
use eqaug_groups::Real;
use eqaug_nn::{Network, Params};
use ndarray::Array2;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use crate::schema::{run_dir_name, write_metrics_csv};
pub use crate::setup::{load_data, split_held_out};

/// Errors of a run, naming the file or the stage at fault and keeping the cause as the
/// error source.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A file or folder could not be written.
    #[error(transparent)]
    Io(#[from] IoError),
    /// A results file could not be read or written.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// The group, data or networks could not be set up.
    #[error(transparent)]
    Setup(Box<SetupError>),
    /// A finished run in the output folder was made with another configuration.
    #[error(
        "{} was made with a different configuration (the config file, profile, seed or \
         precision changed); move {} away or choose another --out",
        path.display(),
        dir.display()
    )]
    ConfigChanged {
        /// The finished run's `run.json`.
        path: PathBuf,
        /// The experiment folder.
        dir: PathBuf,
    },
    /// A finished run's `run.json` cannot be read (truncated or corrupt).
    #[error(
        "{}: finished run {run} cannot be read (truncated or corrupt): move {} away to rerun \
         that run; the other runs are kept",
        path.display(),
        dir.display()
    )]
    CorruptRun {
        /// The run index.
        run: usize,
        /// The run's `run.json`.
        path: PathBuf,
        /// The run's folder.
        dir: PathBuf,
        /// Why.
        #[source]
        source: SchemaError,
    },
    /// The folder's `experiment.json` describes another experiment or configuration.
    #[error(
        "{} describes another configuration (`{key}` differs: {old} there, {new} now); \
         move {} away or choose another --out",
        path.display(),
        dir.display()
    )]
    ExperimentChanged {
        /// The `experiment.json`.
        path: PathBuf,
        /// The experiment folder.
        dir: PathBuf,
        /// The first differing key.
        key: String,
        /// Its value on disk.
        old: String,
        /// Its value now.
        new: String,
    },
    /// The thread pool for parallel runs could not be built.
    #[error("experiment `{experiment}`: cannot start {threads} threads for parallel runs")]
    ThreadPool {
        /// Experiment name.
        experiment: String,
        /// Threads requested (`protocol.parallel_runs`).
        threads: usize,
        /// Why.
        #[source]
        source: rayon::ThreadPoolBuildError,
    },
    /// Training could not start or go on (other than a divergence, which is recorded).
    #[error("experiment `{experiment}`, run {run} (run-{run:03}), strategy `{strategy}`")]
    Train {
        /// Experiment name.
        experiment: String,
        /// Run index.
        run: usize,
        /// Strategy name.
        strategy: String,
        /// Why.
        #[source]
        source: Box<eqaug_dynamics::TrainError>,
    },
    /// A checkpoint could not be written.
    #[error("{}: cannot save the checkpoint", dir.display())]
    Checkpoint {
        /// The checkpoint folder.
        dir: PathBuf,
        /// Why.
        #[source]
        source: eqaug_nn::NnError,
    },
}

impl From<SetupError> for RunError {
    fn from(e: SetupError) -> Self {
        RunError::Setup(Box::new(e))
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
    /// Runs skipped because they were already finished.
    pub skipped: Vec<usize>,
    /// Runs skipped because another process is training them (their lock is held).
    pub running_elsewhere: Vec<usize>,
    /// Strategies that diverged, per run.
    pub failures: Vec<(usize, Failure)>,
    /// Wall time of this call in seconds.
    pub wall_seconds: f64,
}

/// The runs of `0..runs` that belong to shard `k` of `n` (1-based `k`).
pub fn shard_runs(runs: usize, shard: Option<(usize, usize)>) -> Vec<usize> {
    match shard {
        None => (0..runs).collect(),
        Some((k, n)) => (0..runs).filter(|r| r % n == k - 1).collect(),
    }
}

/// A fingerprint of everything that determines a run's numbers: the resolved config (less
/// the number of runs, how many run at once, and the `[stability]` section, which only the
/// stability command reads) and the command-line overrides.
pub fn config_key(exp: &Experiment) -> String {
    let mut table: toml::Table = toml::from_str(&exp.resolved_toml).unwrap_or_default();
    table.remove("stability");
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
    fnv_hex(&text)
}

/// FNV-1a (64 bit) of `text`, as 16 hex digits: the fingerprints of configs and models.
pub(crate) fn fnv_hex(text: &str) -> String {
    format!("{:016x}", eqaug_dynamics::fnv1a64(text.as_bytes()))
}

/// The experiment with the command-line overrides of `opts` applied.
pub fn with_overrides(exp: &Experiment, opts: &RunOptions) -> Experiment {
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
    exp
}

/// Runs the experiment's runs (those of the shard), skipping finished ones and those another
/// process is training (see [`crate::lock`]); safe to call from many processes at once on one
/// output folder.
pub fn run_experiment(exp: &Experiment, opts: &RunOptions) -> Result<RunSummary, RunError> {
    let start = Instant::now();
    let exp = with_overrides(exp, opts);
    // Everything that can fail on the config or data fails here, before a file is written.
    let setup = RunSetup::new(&exp)?;
    let dir = opts.out.join(&exp.name);
    std::fs::create_dir_all(&dir).map_err(IoError::at(&dir))?;
    let todo: Vec<usize> = shard_runs(exp.protocol.runs, opts.shard);
    {
        let _guard = experiment_lock(&dir)?;
        check_folder(&exp, &dir)?;
        update_experiment_json(&exp, &dir)?;
    }
    let epochs = exp.protocol.epochs;
    let pending = todo
        .iter()
        .filter(|&&r| !schema::run_dir(&dir, r).join(schema::RUN_JSON).exists())
        .count();
    let ticks = (pending * exp.strategies.len() * (epochs + 1)) as u64;
    let progress = Progress::new(&exp.name, ticks);
    let ctx = RunCtx {
        s: &setup,
        dir: &dir,
        progress: &progress,
    };
    let results: Vec<Result<(usize, Outcome), RunError>> = if exp.protocol.parallel_runs > 1 {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(exp.protocol.parallel_runs)
            .build()
            .map_err(|source| RunError::ThreadPool {
                experiment: exp.name.clone(),
                threads: exp.protocol.parallel_runs,
                source,
            })?;
        pool.install(|| todo.par_iter().map(|&r| ctx.one_run(r)).collect())
    } else {
        todo.iter().map(|&r| ctx.one_run(r)).collect()
    };
    progress.finish();
    let mut finished = Vec::new();
    let mut skipped = Vec::new();
    let mut running_elsewhere = Vec::new();
    let mut failures = Vec::new();
    let mut first_err = None;
    for r in results {
        match r {
            Ok((run, Outcome::Finished(f))) => {
                finished.push(run);
                failures.extend(f.into_iter().map(|f| (run, f)));
            }
            Ok((run, Outcome::AlreadyDone)) => skipped.push(run),
            Ok((run, Outcome::RunningElsewhere)) => running_elsewhere.push(run),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if !skipped.is_empty() {
        progress.println(&format!(
            "[{}] {} run(s) already done: {}",
            exp.name,
            skipped.len(),
            names(&skipped)
        ));
    }
    if !running_elsewhere.is_empty() {
        progress.println(&format!(
            "[{}] {} run(s) in progress in another process, left to it: {}",
            exp.name,
            running_elsewhere.len(),
            names(&running_elsewhere)
        ));
    }
    {
        let _guard = experiment_lock(&dir)?;
        update_experiment_json(&exp, &dir)?;
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    Ok(RunSummary {
        experiment: exp.name.clone(),
        finished,
        skipped,
        running_elsewhere,
        failures,
        wall_seconds: start.elapsed().as_secs_f64(),
    })
}

/// `run-000, run-003`.
fn names(runs: &[usize]) -> String {
    runs.iter()
        .map(|&r| run_dir_name(r))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The experiment folder's lock, held while `experiment.json` is checked and updated (a
/// moment; waits for another process that holds it).
fn experiment_lock(dir: &Path) -> Result<RunLock, RunError> {
    let path = lock::lock_path(dir, "experiment");
    RunLock::acquire(&path).map_err(|e| RunError::Io(IoError::new(path, e)))
}

/// Refuses a folder whose finished runs or `experiment.json` come from another
/// configuration, before anything is written. A `run.json` that cannot be read is reported
/// as corrupt (that run alone must be redone), not as another configuration.
fn check_folder(exp: &Experiment, dir: &Path) -> Result<(), RunError> {
    let key = config_key(exp);
    let mut finished = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(IoError::at(dir))? {
        let entry = entry.map_err(IoError::at(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(r) = name
            .strip_prefix("run-")
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        if entry.path().join(schema::RUN_JSON).is_file() {
            finished.push(r);
        }
    }
    finished.sort_unstable();
    for r in finished {
        let run_dir = schema::run_dir(dir, r);
        let path = run_dir.join(schema::RUN_JSON);
        let record = RunRecord::read(&run_dir).map_err(|source| RunError::CorruptRun {
            run: r,
            path: path.clone(),
            dir: run_dir.clone(),
            source,
        })?;
        if record.config_key.as_deref() != Some(key.as_str()) {
            return Err(RunError::ConfigChanged {
                path,
                dir: dir.into(),
            });
        }
    }
    let path = dir.join(schema::EXPERIMENT_JSON);
    if path.is_file() {
        // Unreadable: it is derived from the config and rewritten below.
        if let Ok(old) = ExperimentRecord::read(dir) {
            if let Some((k, o, n)) = record_difference(&old, &experiment_record(exp, 0.0)) {
                return Err(RunError::ExperimentChanged {
                    path,
                    dir: dir.into(),
                    key: k,
                    old: o,
                    new: n,
                });
            }
        }
    }
    Ok(())
}

/// The first key (other than the run count, times and the config file's path) whose value
/// differs between two records, ignoring keys one of them lacks.
fn record_difference(
    old: &ExperimentRecord,
    new: &ExperimentRecord,
) -> Option<(String, String, String)> {
    let (serde_json::Value::Object(o), serde_json::Value::Object(n)) = (
        serde_json::to_value(old).ok()?,
        serde_json::to_value(new).ok()?,
    ) else {
        return None;
    };
    for (k, nv) in &n {
        if ["runs", "wall_seconds", "config_file"].contains(&k.as_str()) {
            continue;
        }
        match o.get(k) {
            Some(ov) if !ov.is_null() && !nv.is_null() && ov != nv => {
                return Some((k.clone(), ov.to_string(), nv.to_string()))
            }
            _ => {}
        }
    }
    None
}

/// Writes `experiment.json` (the experiment lock held): the run count is the largest ever
/// requested for this folder (`--runs 2` on a 4-run folder keeps 4) and the wall time is
/// summed over every finished run on disk.
fn update_experiment_json(exp: &Experiment, dir: &Path) -> Result<(), RunError> {
    let old_runs = ExperimentRecord::read(dir)
        .ok()
        .and_then(|r| r.runs)
        .unwrap_or(0);
    let runs = old_runs.max(exp.protocol.runs);
    let wall: f64 = (0..runs)
        .filter_map(|r| RunRecord::read(&schema::run_dir(dir, r)).ok())
        .map(|r| r.wall_seconds)
        .sum();
    let mut record = experiment_record(exp, wall);
    record.runs = Some(runs);
    if ExperimentRecord::read(dir).ok().as_ref() == Some(&record) {
        return Ok(());
    }
    Ok(record.write(dir)?)
}

/// The [`ExperimentRecord`] of an experiment, with `wall_seconds` the training time summed
/// over the finished runs.
pub fn experiment_record(exp: &Experiment, wall_seconds: f64) -> ExperimentRecord {
    ExperimentRecord {
        experiment: Some(exp.name.clone()),
        title: Some(exp.title.clone()),
        group: Some(exp.group.clone()),
        size: Some(exp.size),
        profile: Some(exp.profile.clone()),
        note: Some(exp.note.clone()),
        precision: Some(exp.protocol.precision),
        epochs: Some(exp.protocol.epochs),
        runs: Some(exp.protocol.runs),
        learning_rate: Some(exp.protocol.learning_rate),
        minibatch: Some(exp.protocol.minibatch),
        dataset: Some(exp.data.dataset),
        count: Some(exp.data.count),
        loss: Some(exp.loss),
        output_softmax: Some(matches!(
            exp.network.layers.last(),
            Some(eqaug_nn::LayerSpec::Softmax)
        )),
        strategies: exp
            .strategies
            .iter()
            .map(|(s, p)| StrategyRecord {
                kind: s.kind,
                name: s.name.clone(),
                passes: s.passes,
                precision: Some(*p),
                sampling: Some(s.sampling),
                regulariser: s.regulariser,
            })
            .collect(),
        wall_seconds: Some(wall_seconds),
        config_file: Some(exp.file.display().to_string()),
    }
}

/// What became of one run.
enum Outcome {
    /// Trained now, with these strategy failures.
    Finished(Vec<Failure>),
    /// Already finished (by another process, since this one started).
    AlreadyDone,
    /// Another process holds its lock.
    RunningElsewhere,
}

/// What one run's strategies share while they train.
struct RunState {
    run_name: String,
    seed: u64,
    protocol: eqaug_dynamics::Protocol,
    tmp: PathBuf,
    checkpoints: Vec<usize>,
    ckpt_err: Option<RunError>,
    eq_err: BTreeMap<String, [f64; 2]>,
}

struct RunCtx<'a> {
    s: &'a RunSetup,
    dir: &'a Path,
    progress: &'a Progress,
}

/// Takes run `name`'s lock, retrying for about a second (`eqaug status` takes a shared lock
/// for an instant); `None` when another process trains the run.
fn lock_run(dir: &Path, name: &str) -> Result<Option<RunLock>, RunError> {
    let path = lock::lock_path(dir, name);
    for attempt in 0..20 {
        if let Some(l) = RunLock::try_acquire(&path).map_err(|e| IoError::new(&path, e))? {
            return Ok(Some(l));
        }
        if attempt < 19 {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(None)
}

impl RunCtx<'_> {
    /// One run in a temporary directory, renamed into place when complete, under the run's
    /// lock: a run another process trains is left to it, never deleted.
    fn one_run(&self, run: usize) -> Result<(usize, Outcome), RunError> {
        let s = self.s;
        let exp = &s.exp;
        let name = run_dir_name(run);
        let final_dir = schema::run_dir(self.dir, run);
        if final_dir.join(schema::RUN_JSON).exists() {
            return Ok((run, Outcome::AlreadyDone));
        }
        let Some(_lock) = lock_run(self.dir, &name)? else {
            return Ok((run, Outcome::RunningElsewhere));
        };
        // Finished by another process between the check above and the lock.
        if final_dir.join(schema::RUN_JSON).exists() {
            return Ok((run, Outcome::AlreadyDone));
        }
        let start = Instant::now();
        let seed = exp.protocol.seed.wrapping_add(run as u64);
        let tmp = self.dir.join(format!("{name}.tmp"));
        // With the lock held, a temporary folder is what a dead process left behind.
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(IoError::at(&tmp))?;
        }
        std::fs::create_dir_all(&tmp).map_err(IoError::at(&tmp))?;
        // One A0 for every strategy, drawn in f64 (and rounded for f32 strategies). The f64
        // copy is kept only when an f64 strategy needs it (for E2/E3 it is twice the size of
        // the f32 parameters).
        let a0_64 = s.net64.init_params(&mut ChaCha8Rng::seed_from_u64(seed));
        let a0_32: Params<f32> = a0_64.cast();
        let needs_f64 = exp.strategies.iter().any(|(_, p)| *p == Precision::F64);
        let a0_64 = needs_f64.then_some(a0_64);
        let mut metrics: Vec<EpochMetrics> = Vec::new();
        let mut failures = Vec::new();
        let mut layers = Vec::new();
        let mut strategy_seconds = Vec::new();
        let mut st = RunState {
            run_name: name.clone(),
            seed,
            protocol: exp.dynamics_protocol(),
            tmp: tmp.clone(),
            checkpoints: exp.checkpoint_epochs(),
            ckpt_err: None,
            eq_err: BTreeMap::new(),
        };
        for (spec, precision) in &exp.strategies {
            let t0 = Instant::now();
            let outcome = match precision {
                Precision::F32 => {
                    let held = (&s.held32, &s.held_targets32);
                    self.train_one(&s.net32, &s.data32, held, &a0_32, spec, &mut st)
                }
                Precision::F64 => self.train_one(
                    &s.net64,
                    &s.data64,
                    (&s.held64, &s.held_targets64),
                    a0_64.as_ref().expect("kept for f64 strategies"),
                    spec,
                    &mut st,
                ),
            }
            .map_err(|source| RunError::Train {
                experiment: exp.name.clone(),
                run,
                strategy: spec.name.clone(),
                source: Box::new(source),
            })?;
            if let Some(e) = st.ckpt_err.take() {
                return Err(e);
            }
            layers = outcome.layer_names;
            metrics.extend(outcome.metrics);
            failures.extend(outcome.failures);
            strategy_seconds.push((spec.name.clone(), t0.elapsed().as_secs_f64()));
        }
        write_metrics_csv(&tmp.join(schema::METRICS_CSV), &layers, &metrics)?;
        crate::io::write_atomic(&tmp.join(schema::CONFIG_TOML), exp.resolved_toml.as_bytes())?;
        let wall = start.elapsed().as_secs_f64();
        let record = RunRecord {
            run: Some(run),
            config_key: Some(config_key(exp)),
            seed: Some(seed),
            experiment: Some(exp.name.clone()),
            profile: Some(exp.profile.clone()),
            wall_seconds: wall,
            strategy_seconds,
            failed: failures.iter().cloned().map(Into::into).collect(),
            layers,
            checkpoints: st.checkpoints,
            equivariance_error: st.eq_err,
            eqaug_version: env!("CARGO_PKG_VERSION").into(),
        };
        record.write(&tmp)?;
        // A folder without run.json is an unfinished leftover (finished runs were skipped
        // above, under the lock): replace it.
        if final_dir.exists() {
            std::fs::remove_dir_all(&final_dir).map_err(IoError::at(&final_dir))?;
        }
        std::fs::rename(&tmp, &final_dir).map_err(IoError::at(&final_dir))?;
        self.progress
            .println(&summary_line(exp, run, wall, &metrics, &failures));
        Ok((run, Outcome::Finished(failures)))
    }

    /// Trains one strategy from `a0`, saving checkpoints, recording the test loss and
    /// accuracy (or mean IoU) on the held-out samples after every step, and measuring the
    /// held-out equivariance error at the last epoch.
    fn train_one<T: Real>(
        &self,
        net: &Network<T>,
        data: &TrainData<T>,
        (held, held_targets): (&Array2<T>, &Array2<T>),
        a0: &Params<T>,
        spec: &StrategySpec,
        st: &mut RunState,
    ) -> Result<eqaug_dynamics::RunOutcome, eqaug_dynamics::TrainError> {
        let progress = self.progress;
        let last = st.protocol.epochs;
        let RunState {
            run_name,
            seed,
            protocol,
            tmp,
            checkpoints,
            ckpt_err,
            eq_err,
        } = st;
        let seed = *seed;
        let mut test = if held.nrows() > 0 {
            Some(HeldOut::new(
                net,
                held.clone(),
                held_targets.clone(),
                protocol.minibatch,
            )?)
        } else {
            None
        };
        train_with_held_out(
            net,
            self.s.group.clone(),
            data,
            protocol,
            std::slice::from_ref(spec),
            a0,
            seed,
            test.as_mut(),
            &mut |m, params| {
                progress.epoch(run_name, &m.strategy, m.epoch, last, m.loss);
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
                    let dir = schema::checkpoint_dir(tmp, &m.strategy, m.epoch);
                    if let Err(source) = params.save_npy(&dir) {
                        *ckpt_err = Some(RunError::Checkpoint { dir, source });
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
        "[{}] {} done in {:.1} s: {}{}",
        exp.name,
        run_dir_name(run),
        wall,
        parts.join("; "),
        fail
    )
}
