//! Reading the runner's output (the layout and file formats are defined once, in
//! [`crate::schema`]): `experiment.json`, and `metrics.csv` + `run.json` per finished run.
//!
//! Only finished runs exist as `run-*` directories; names ending in `.tmp` are runs in progress
//! and are skipped. Unknown JSON keys and extra CSV columns (per-layer distances) are accepted.

use super::error::ReportError;
use crate::config::Precision;
use crate::schema::{self, ExperimentRecord, RunRecord};
use eqaug_dynamics::{Sampling, StrategyKind};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use crate::schema::{
    read_metrics, ExperimentRecord as ExperimentMeta, MetricsRow as EpochMetrics, RunFailure,
    StrategyRecord as StrategyMeta,
};

/// One finished run: its metrics per strategy, in epoch order.
#[derive(Debug, Clone)]
pub struct Run {
    /// Run index (from `run.json`, else from the folder name).
    pub index: usize,
    /// Seed, if recorded.
    pub seed: Option<u64>,
    /// The run's folder.
    pub dir: PathBuf,
    /// Metrics per strategy name, sorted by epoch.
    pub metrics: BTreeMap<String, Vec<EpochMetrics>>,
    /// Failures recorded in `run.json`.
    pub failed: Vec<RunFailure>,
    /// Per strategy: `[max, mean]` of `|Phi(g x) - g Phi(x)|` on the held-out samples at the
    /// last epoch (from `run.json`; empty when not recorded).
    pub equivariance_error: BTreeMap<String, [f64; 2]>,
}

impl Run {
    /// Whether `strategy` failed (diverged) in this run: it then enters no claim.
    pub fn failed(&self, strategy: &str) -> bool {
        self.failed.iter().any(|f| f.strategy == strategy)
    }

    /// The metrics of `strategy` at `epoch`, if the run has them.
    pub fn at(&self, strategy: &str, epoch: usize) -> Option<&EpochMetrics> {
        let rows = self.metrics.get(strategy)?;
        rows.binary_search_by_key(&epoch, |r| r.epoch)
            .ok()
            .map(|i| &rows[i])
    }
}

/// One experiment folder, read in full.
#[derive(Debug, Clone)]
pub struct Experiment {
    /// Experiment id.
    pub id: String,
    /// The folder.
    pub dir: PathBuf,
    /// `experiment.json`.
    pub meta: ExperimentMeta,
    /// Strategy names in display order: those of `experiment.json`, then any others found in
    /// the metrics.
    pub strategies: Vec<String>,
    /// The finished runs, by folder name.
    pub runs: Vec<Run>,
}

impl Experiment {
    /// Declared metadata of a strategy, if `experiment.json` lists it.
    pub fn strategy_meta(&self, name: &str) -> Option<&StrategyMeta> {
        self.meta.strategies.iter().find(|s| s.name == name)
    }

    /// Precision of a strategy: its own, else the experiment's, else f32.
    pub fn precision_of(&self, name: &str) -> Precision {
        self.strategy_meta(name)
            .and_then(|s| s.precision)
            .or(self.meta.precision)
            .unwrap_or_default()
    }

    /// The last epoch: the one `experiment.json` declares, else the last recorded by any run
    /// (0 without runs). A strategy that diverged stops before it, so it does not shorten
    /// the experiment.
    pub fn last_epoch(&self) -> usize {
        if let Some(e) = self.meta.epochs {
            return e;
        }
        self.runs
            .iter()
            .flat_map(|r| r.metrics.values())
            .filter_map(|rows| rows.last().map(|r| r.epoch))
            .max()
            .unwrap_or(0)
    }

    /// Whether a strategy is declared of `kind` with a sampling in `samplings` (any sampling
    /// if `samplings` is empty; a missing sampling counts as per-batch).
    fn declared(&self, name: &str, kind: StrategyKind, samplings: &[Sampling]) -> bool {
        self.strategy_meta(name).is_some_and(|m| {
            m.kind == kind
                && (samplings.is_empty() || samplings.contains(&m.sampling.unwrap_or_default()))
        })
    }

    /// The main strategy of a kind: the strategy named like the kind (`nominal`,
    /// `augmented`, `equivariant`), else the first of that kind whose sampling is uniform
    /// (neither exact nor reference).
    pub fn main_strategy(&self, kind: StrategyKind) -> Option<&str> {
        let conventional = kind_name(kind);
        if let Some(s) = self.strategies.iter().find(|s| *s == conventional) {
            return Some(s);
        }
        self.strategies
            .iter()
            .find(|s| self.declared(s, kind, &[Sampling::PerBatch, Sampling::PerSample]))
            .map(String::as_str)
    }

    /// The augmented strategy with the given sampling, found by declared sampling or by the
    /// conventional name `augmented-<sampling>`.
    pub fn augmented_with_sampling(&self, sampling: Sampling) -> Option<&str> {
        let conventional = format!("augmented-{}", sampling_name(sampling));
        self.strategies
            .iter()
            .find(|s| **s == conventional || self.declared(s, StrategyKind::Augmented, &[sampling]))
            .map(String::as_str)
    }

    /// The exact-average augmented strategy run in `precision`.
    pub fn exact_in(&self, precision: Precision) -> Option<&str> {
        self.strategies
            .iter()
            .find(|s| {
                self.declared(s, StrategyKind::Augmented, &[Sampling::Exact])
                    && self.precision_of(s) == precision
            })
            .map(String::as_str)
    }
}

/// The name of a strategy kind as in configs (`nominal`, `augmented`, `equivariant`).
pub fn kind_name(kind: StrategyKind) -> &'static str {
    match kind {
        StrategyKind::Nominal => "nominal",
        StrategyKind::Augmented => "augmented",
        StrategyKind::Equivariant => "equivariant",
    }
}

/// The name of a sampling mode as in configs (`per-batch`, `exact`, ...).
pub fn sampling_name(sampling: Sampling) -> &'static str {
    match sampling {
        Sampling::PerBatch => "per-batch",
        Sampling::PerSample => "per-sample",
        Sampling::Exact => "exact",
        Sampling::Reference => "reference",
    }
}

pub(crate) fn io_err(path: &Path, source: std::io::Error) -> ReportError {
    ReportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The experiment folders of `dir` (sub-folders holding an `experiment.json`), sorted by name.
pub fn find_experiments(dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let path = entry.path();
        if path.is_dir() && path.join(schema::EXPERIMENT_JSON).is_file() {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

/// Reads one experiment folder: `experiment.json` and every finished `run-*` directory.
pub fn load_experiment(dir: &Path) -> Result<Experiment, ReportError> {
    let meta = ExperimentRecord::read(dir)?;
    let folder_name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let id = meta.experiment.clone().unwrap_or(folder_name);

    let mut run_dirs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("run-") && !name.ends_with(".tmp") && entry.path().is_dir() {
            run_dirs.push((name, entry.path()));
        }
    }
    run_dirs.sort();

    let mut runs = Vec::with_capacity(run_dirs.len());
    for (name, path) in run_dirs {
        runs.push(load_run(&name, &path, &meta)?);
    }

    let mut meta = meta;
    if meta.loss.is_none() {
        meta.loss = runs.iter().find_map(|r| recorded_loss(&r.dir));
    }
    let mut strategies: Vec<String> = meta.strategies.iter().map(|s| s.name.clone()).collect();
    for run in &runs {
        for name in run.metrics.keys() {
            if !strategies.contains(name) {
                strategies.push(name.clone());
            }
        }
    }
    Ok(Experiment {
        id,
        dir: dir.to_path_buf(),
        meta,
        strategies,
        runs,
    })
}

fn load_run(name: &str, dir: &Path, meta: &ExperimentMeta) -> Result<Run, ReportError> {
    let info = RunRecord::read(dir)?;
    let index = info
        .run
        .or_else(|| name.trim_start_matches("run-").parse().ok())
        .unwrap_or(0);
    // The one definition of a usable run (the same as `eqaug status`).
    let metrics = schema::check_full_batch_run(dir, meta, &info)?;
    Ok(Run {
        index,
        seed: info.seed,
        dir: dir.to_path_buf(),
        metrics,
        failed: info.failed,
        equivariance_error: info.equivariance_error,
    })
}

/// The loss in a run's `config.toml` (`[network] loss`), for folders written before
/// `experiment.json` recorded it.
fn recorded_loss(run_dir: &Path) -> Option<eqaug_nn::Loss> {
    let text = std::fs::read_to_string(run_dir.join(schema::CONFIG_TOML)).ok()?;
    let table: toml::Table = toml::from_str(&text).ok()?;
    table.get("network")?.get("loss")?.clone().try_into().ok()
}
