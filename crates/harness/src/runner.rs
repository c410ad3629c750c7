//! Runs every (run, strategy) of an experiment of any kind and writes each run's folder
//! atomically. The lifecycle is shared by every kind ([`crate::config::Kind`]): the memory
//! estimate before anything is allocated, the fingerprint check of the folder before anything
//! is written (under the experiment lock), one lock per run so that many processes (shards,
//! Slurm array tasks, a duplicated shard) can write one folder, a temporary folder renamed into
//! place when the run is complete, `experiment.json` whose run count is never lowered. Only the
//! training of one run differs per kind: [`full_batch`] (E1-E4) and [`e5`] (two-phase SGD).
//! Finished runs are skipped, so an interrupted reproduction resumes; shards split the runs
//! between processes.

use crate::config::{AnyExperiment, Precision};
use crate::io::IoError;
use crate::lock::{self, RunLock};
use crate::progress::Progress;
use crate::schema::{self, AnyExperimentRecord, RunRecord, SchemaError};
use crate::setup::SetupError;
use eqaug_dynamics::Failure;
use rayon::prelude::*;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub mod e5;
pub mod full_batch;

pub use crate::schema::{run_dir_name, write_metrics_csv};
pub use crate::setup::{load_data, split_held_out};
pub use full_batch::{config_key, experiment_record};

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
    /// A finished run's files are missing or damaged.
    #[error(
        "{why}: finished run {run} is damaged: move {} away to rerun that run; the other runs \
         are kept",
        dir.display()
    )]
    DamagedRun {
        /// The run index.
        run: usize,
        /// What is missing or damaged, naming the file.
        why: String,
        /// The run's folder.
        dir: PathBuf,
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
    /// The config (or a command-line override) is invalid for this run.
    #[error(transparent)]
    Config(Box<crate::config::ConfigError>),
    /// The run would not fit in memory: refused before allocating.
    #[error(transparent)]
    Memory(#[from] crate::memory::MemoryError),
    /// The data could not be loaded.
    #[error("experiment `{experiment}`: {what}")]
    Data {
        /// Experiment name.
        experiment: String,
        /// Which data.
        what: String,
        /// Why.
        #[source]
        source: Box<eqaug_data::DataError>,
    },
    /// A network could not be built or its weights loaded.
    #[error("experiment `{experiment}`, network {what}")]
    Network {
        /// Experiment name.
        experiment: String,
        /// Which network.
        what: String,
        /// Why.
        #[source]
        source: Box<eqaug_nn::NnError>,
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

impl From<crate::config::ConfigError> for RunError {
    fn from(e: crate::config::ConfigError) -> Self {
        RunError::Config(Box::new(e))
    }
}

impl From<SetupError> for RunError {
    fn from(e: SetupError) -> Self {
        RunError::Setup(Box::new(e))
    }
}

/// Which runs this process does and where results go.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RunOptions {
    /// Output root: results go to `out/<experiment>/run-XXX`.
    pub out: PathBuf,
    /// Overrides the number of runs.
    pub runs: Option<usize>,
    /// Overrides the base seed.
    pub seed: Option<u64>,
    /// Overrides the precision of every strategy (E5: of training).
    pub precision: Option<Precision>,
    /// `(k, n)`: run only the runs `r` with `r % n == k - 1`.
    pub shard: Option<(usize, usize)>,
    /// Refuse experiments whose estimated memory exceeds this many bytes; `None`: the
    /// memory available now (see [`crate::memory::limit`]).
    pub max_memory: Option<u64>,
}

impl RunOptions {
    /// Every run, into `out`, as configured (no overrides, no shard).
    pub fn new(out: impl Into<PathBuf>) -> Self {
        RunOptions {
            out: out.into(),
            runs: None,
            seed: None,
            precision: None,
            shard: None,
            max_memory: None,
        }
    }
}

/// What a call of [`run`] did.
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
    /// Strategies (E5: phase-1 models and cases) that diverged, per run.
    pub failures: Vec<(usize, Failure)>,
    /// Skipped runs (finished earlier) that have a failed strategy: resuming does not make
    /// them count (move them away to redo them).
    pub failed_before: Vec<usize>,
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

/// FNV-1a (64 bit) of `text`, as 16 hex digits: the fingerprints of configs and models.
pub(crate) fn fnv_hex(text: &str) -> String {
    format!("{:016x}", eqaug_dynamics::fnv1a64(text.as_bytes()))
}

/// The experiment with the command-line overrides of `opts` applied; an override out of
/// range is refused naming the flag.
pub fn with_overrides(exp: &AnyExperiment, opts: &RunOptions) -> Result<AnyExperiment, RunError> {
    if let Some(r) = opts.runs {
        if r == 0 || r > crate::config::MAX_RUNS {
            return Err(crate::config::invalid(
                exp.file(),
                "",
                "--runs",
                &format!("must be between 1 and {}, got {r}", crate::config::MAX_RUNS),
            )
            .into());
        }
    }
    let mut exp = exp.clone();
    let (runs, seed, precision) = match &mut exp {
        AnyExperiment::FullBatch(e) => {
            let p = &mut e.protocol;
            (&mut p.runs, &mut p.seed, &mut p.precision)
        }
        AnyExperiment::E5(e) => {
            let p = &mut e.protocol;
            (&mut p.runs, &mut p.seed, &mut p.precision)
        }
    };
    *runs = opts.runs.unwrap_or(*runs);
    *seed = opts.seed.unwrap_or(*seed);
    *precision = opts.precision.unwrap_or(*precision);
    if let (Some(p), AnyExperiment::FullBatch(e)) = (opts.precision, &mut exp) {
        for s in &mut e.strategies {
            s.1 = p;
        }
    }
    Ok(exp)
}

/// The fingerprint of everything that determines a run's numbers (less the run count): a
/// finished run whose `run.json` has another key was made with another configuration.
pub fn any_config_key(exp: &AnyExperiment) -> String {
    match exp {
        AnyExperiment::FullBatch(e) => full_batch::config_key(e),
        AnyExperiment::E5(e) => e5::config_key(e),
    }
}

/// What differs between experiment kinds: the training of one run. Everything around it is
/// [`run`]'s.
pub(crate) trait Trainer: Sync {
    /// The experiment's `experiment.json`, with `wall_seconds` summed over finished runs.
    fn record(&self, wall_seconds: f64) -> AnyExperimentRecord;
    /// Progress ticks (epochs) of one run.
    fn ticks_per_run(&self) -> u64;
    /// Whether the temporary folder an interrupted attempt left holds parts that the next
    /// attempt reuses (checking their own fingerprints); otherwise it is cleared first.
    fn resumes_inside_run(&self) -> bool {
        false
    }
    /// Trains run `run` with `seed`, writing its files into `tmp` (which exists), and returns
    /// its record's kind-specific fields, its failures and the tail of its log line.
    fn train_run(
        &self,
        run: usize,
        seed: u64,
        tmp: &Path,
        progress: &Progress,
    ) -> Result<TrainedRun, RunError>;
}

/// What [`Trainer::train_run`] returns.
pub(crate) struct TrainedRun {
    /// `run.json` with the kind-specific fields set (the lifecycle sets the rest).
    pub(crate) record: RunRecord,
    /// Strategies (phase-1 models, cases) that diverged.
    pub(crate) failures: Vec<Failure>,
    /// What the run reached, for its log line.
    pub(crate) summary: String,
}

/// Runs a full-batch experiment's runs (see [`run`]).
pub fn run_experiment(
    exp: &crate::config::Experiment,
    opts: &RunOptions,
) -> Result<RunSummary, RunError> {
    run(&AnyExperiment::FullBatch(Box::new(exp.clone())), opts)
}

/// Runs the experiment's runs (those of the shard), skipping finished ones and those another
/// process is training (see [`crate::lock`]); safe to call from many processes at once on one
/// output folder. The memory estimate, the config, the data and the folder's fingerprints
/// are all checked before anything is written.
pub fn run(exp: &AnyExperiment, opts: &RunOptions) -> Result<RunSummary, RunError> {
    let start = Instant::now();
    let exp = with_overrides(exp, opts)?;
    crate::memory::estimate(&exp)?.check(crate::memory::limit(opts.max_memory))?;
    let trainer: Box<dyn Trainer> = match &exp {
        AnyExperiment::FullBatch(e) => Box::new(full_batch::FullBatch::new(e)?),
        AnyExperiment::E5(e) => e5::trainer(e)?,
    };
    let name = exp.name().to_string();
    let dir = opts.out.join(&name);
    std::fs::create_dir_all(&dir).map_err(IoError::at(&dir))?;
    let key = any_config_key(&exp);
    {
        // The check and the write under one lock: two configs started at once into one
        // folder cannot both pass (the second sees the first's fingerprint).
        let _guard = experiment_lock(&dir)?;
        check_folder(&key, &trainer.record(0.0), &dir)?;
        update_experiment_json(trainer.as_ref(), &key, exp.runs(), &dir)?;
    }
    let todo: Vec<usize> = shard_runs(exp.runs(), opts.shard);
    let pending = todo
        .iter()
        .filter(|&&r| !schema::run_dir(&dir, r).join(schema::RUN_JSON).exists())
        .count() as u64;
    let progress = Progress::new(&name, pending.saturating_mul(trainer.ticks_per_run()));
    let record = trainer.record(0.0);
    let ctx = RunCtx {
        exp: &exp,
        record: &record,
        trainer: trainer.as_ref(),
        key: &key,
        dir: &dir,
        progress: &progress,
    };
    let results: Vec<Result<(usize, Outcome), RunError>> = if exp.parallel_runs() > 1 {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(exp.parallel_runs())
            .build()
            .map_err(|source| RunError::ThreadPool {
                experiment: name.clone(),
                threads: exp.parallel_runs(),
                source,
            })?;
        pool.install(|| todo.par_iter().map(|&r| ctx.one_run(r)).collect())
    } else {
        todo.iter().map(|&r| ctx.one_run(r)).collect()
    };
    progress.finish();
    let mut summary = RunSummary {
        experiment: name.clone(),
        finished: Vec::new(),
        skipped: Vec::new(),
        running_elsewhere: Vec::new(),
        failures: Vec::new(),
        failed_before: Vec::new(),
        wall_seconds: 0.0,
    };
    let mut first_err = None;
    for r in results {
        match r {
            Ok((run, Outcome::Finished(f))) => {
                summary.finished.push(run);
                summary.failures.extend(f.into_iter().map(|f| (run, f)));
            }
            Ok((run, Outcome::AlreadyDone(f))) => {
                if !f.is_empty() {
                    summary.failed_before.push(run);
                }
                summary.skipped.push(run)
            }
            Ok((run, Outcome::RunningElsewhere)) => summary.running_elsewhere.push(run),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if !summary.skipped.is_empty() {
        progress.println(&format!(
            "[{name}] {} run(s) already done: {}",
            summary.skipped.len(),
            names(&summary.skipped)
        ));
    }
    if !summary.running_elsewhere.is_empty() {
        progress.println(&format!(
            "[{name}] {} run(s) in progress in another process, left to it: {}",
            summary.running_elsewhere.len(),
            names(&summary.running_elsewhere)
        ));
    }
    {
        let _guard = experiment_lock(&dir)?;
        update_experiment_json(trainer.as_ref(), &key, exp.runs(), &dir)?;
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    summary.wall_seconds = start.elapsed().as_secs_f64();
    Ok(summary)
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

/// The finished runs of an experiment folder (those with a `run.json`), in order.
fn finished_runs(dir: &Path) -> Result<Vec<usize>, RunError> {
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
    Ok(finished)
}

/// The failures a finished run recorded.
fn failures_of(r: &RunRecord) -> Vec<Failure> {
    r.failed
        .iter()
        .map(|f| Failure {
            strategy: f.strategy.clone(),
            epoch: f.epoch,
            error: f.error.clone(),
        })
        .collect()
}

/// Reads finished run `r`'s record and checks that it was made with config `key` and that its
/// files are all there ([`AnyExperimentRecord::check_run`], the same check as `eqaug status`
/// and `eqaug report`).
fn read_finished(
    dir: &Path,
    r: usize,
    key: &str,
    exp: &AnyExperimentRecord,
) -> Result<RunRecord, RunError> {
    let run_dir = schema::run_dir(dir, r);
    let path = run_dir.join(schema::RUN_JSON);
    let record = RunRecord::read(&run_dir).map_err(|source| RunError::CorruptRun {
        run: r,
        path: path.clone(),
        dir: run_dir.clone(),
        source,
    })?;
    if record.config_key.as_deref() != Some(key) {
        return Err(RunError::ConfigChanged {
            path,
            dir: dir.into(),
        });
    }
    exp.check_run(&run_dir, &record)
        .map_err(|why| RunError::DamagedRun {
            run: r,
            why,
            dir: run_dir.clone(),
        })?;
    Ok(record)
}

/// Refuses a folder whose finished runs or `experiment.json` come from another
/// configuration (or another kind of experiment), before anything is written. A `run.json`
/// that cannot be read is reported as corrupt (that run alone must be redone), not as
/// another configuration.
fn check_folder(key: &str, new: &AnyExperimentRecord, dir: &Path) -> Result<(), RunError> {
    for r in finished_runs(dir)? {
        read_finished(dir, r, key, new)?;
    }
    let path = dir.join(schema::EXPERIMENT_JSON);
    if path.is_file() {
        // Unreadable: it is derived from the config and rewritten below.
        if let Ok(old) = AnyExperimentRecord::read(dir) {
            if old.config_key().is_some_and(|k| k != key) {
                return Err(RunError::ConfigChanged {
                    path,
                    dir: dir.into(),
                });
            }
            if let Some((k, o, n)) = record_difference(&old, new) {
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
/// differs between two records, ignoring keys one of them lacks; records of two kinds differ
/// in `kind`.
fn record_difference(
    old: &AnyExperimentRecord,
    new: &AnyExperimentRecord,
) -> Option<(String, String, String)> {
    let kind = |r: &AnyExperimentRecord| match r {
        AnyExperimentRecord::FullBatch(_) => crate::config::Kind::FullBatch.name(),
        AnyExperimentRecord::E5(_) => crate::config::Kind::E5.name(),
    };
    if kind(old) != kind(new) {
        return Some(("kind".into(), kind(old).into(), kind(new).into()));
    }
    let (serde_json::Value::Object(o), serde_json::Value::Object(n)) = (
        serde_json::to_value(old).ok()?,
        serde_json::to_value(new).ok()?,
    ) else {
        return None;
    };
    for (k, nv) in &n {
        if ["runs", "wall_seconds", "config_file", "config_key"].contains(&k.as_str()) {
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
fn update_experiment_json(
    trainer: &dyn Trainer,
    key: &str,
    runs: usize,
    dir: &Path,
) -> Result<(), RunError> {
    let old = AnyExperimentRecord::read(dir).ok();
    let runs = old.as_ref().and_then(|r| r.runs()).unwrap_or(0).max(runs);
    let wall: f64 = finished_runs(dir)?
        .into_iter()
        .filter(|&r| r < runs)
        .filter_map(|r| RunRecord::read(&schema::run_dir(dir, r)).ok())
        .map(|r| r.wall_seconds)
        .sum();
    let mut record = trainer.record(wall);
    record.set_runs(runs);
    record.set_config_key(key);
    if old.as_ref() == Some(&record) {
        return Ok(());
    }
    Ok(record.write(dir)?)
}

/// What became of one run.
enum Outcome {
    /// Trained now, with these strategy failures.
    Finished(Vec<Failure>),
    /// Already finished (earlier, or by another process since this one started), with the
    /// failures it recorded.
    AlreadyDone(Vec<Failure>),
    /// Another process holds its lock.
    RunningElsewhere,
}

struct RunCtx<'a> {
    exp: &'a AnyExperiment,
    record: &'a AnyExperimentRecord,
    trainer: &'a dyn Trainer,
    key: &'a str,
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
    /// lock: a run another process trains is left to it, never deleted. A run that another
    /// process finished meanwhile is skipped after checking its fingerprint.
    fn one_run(&self, run: usize) -> Result<(usize, Outcome), RunError> {
        let name = run_dir_name(run);
        let final_dir = schema::run_dir(self.dir, run);
        if final_dir.join(schema::RUN_JSON).exists() {
            let done = read_finished(self.dir, run, self.key, self.record)?;
            return Ok((run, Outcome::AlreadyDone(failures_of(&done))));
        }
        let Some(_lock) = lock_run(self.dir, &name)? else {
            return Ok((run, Outcome::RunningElsewhere));
        };
        // Finished by another process between the check above and the lock.
        if final_dir.join(schema::RUN_JSON).exists() {
            let done = read_finished(self.dir, run, self.key, self.record)?;
            return Ok((run, Outcome::AlreadyDone(failures_of(&done))));
        }
        let start = Instant::now();
        let seed = self.exp.seed().wrapping_add(run as u64);
        let tmp = self.dir.join(format!("{name}.tmp"));
        // With the lock held, a temporary folder is what a dead process left behind.
        if tmp.exists() && !self.trainer.resumes_inside_run() {
            std::fs::remove_dir_all(&tmp).map_err(IoError::at(&tmp))?;
        }
        std::fs::create_dir_all(&tmp).map_err(IoError::at(&tmp))?;
        let trained = self.trainer.train_run(run, seed, &tmp, self.progress)?;
        let wall = start.elapsed().as_secs_f64();
        let record = RunRecord {
            run: Some(run),
            config_key: Some(self.key.to_string()),
            seed: Some(seed),
            experiment: Some(self.exp.name().to_string()),
            profile: Some(self.exp.profile().to_string()),
            wall_seconds: wall,
            failed: trained.failures.iter().cloned().map(Into::into).collect(),
            eqaug_version: env!("CARGO_PKG_VERSION").into(),
            ..trained.record
        };
        record.write(&tmp)?;
        // A folder without run.json is an unfinished leftover (finished runs were skipped
        // above, under the lock): replace it.
        if final_dir.exists() {
            std::fs::remove_dir_all(&final_dir).map_err(IoError::at(&final_dir))?;
        }
        std::fs::rename(&tmp, &final_dir).map_err(IoError::at(&final_dir))?;
        let failed = if trained.failures.is_empty() {
            String::new()
        } else {
            format!(
                " FAILED: {}",
                trained
                    .failures
                    .iter()
                    .map(|f| format!("{}: {}", f.strategy, f.error))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        };
        self.progress.println(&format!(
            "[{}] {name} done in {wall:.1} s: {}{failed}",
            self.exp.name(),
            trained.summary
        ));
        Ok((run, Outcome::Finished(trained.failures)))
    }
}
