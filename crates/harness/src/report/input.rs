//! Reading the runner's output: `experiment.json`, and `metrics.csv` + `run.json` per run.
//!
//! The layout (written by `eqaug run`):
//!
//! ```text
//! DIR/<experiment>/experiment.json
//! DIR/<experiment>/run-000/metrics.csv   epoch,strategy,loss,dist_from_start,dist_to_e,...
//! DIR/<experiment>/run-000/run.json      {"run": 0, "seed": .., "failed": [..]}
//! ```
//!
//! Only finished runs exist as `run-*` directories; names ending in `.tmp` are runs in progress
//! and are skipped. Unknown JSON keys and extra CSV columns (per-layer distances) are accepted.

use super::ReportError;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One strategy as declared in `experiment.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct StrategyMeta {
    /// Free-form name, the key used in `metrics.csv` (`nominal`, `augmented-exact`, ...).
    pub name: String,
    /// `nominal`, `augmented` or `equivariant`.
    pub kind: String,
    /// Sampling of group elements for augmented strategies (`per-batch`, `exact`, `reference`).
    #[serde(default)]
    pub sampling: Option<String>,
    /// Precision of this strategy if it differs from the experiment's (`f32` or `f64`).
    #[serde(default)]
    pub precision: Option<String>,
}

/// The contents of `experiment.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct ExperimentMeta {
    /// Experiment id (`e1`, `e4-rot`, ...); defaults to the folder name.
    #[serde(default)]
    pub experiment: Option<String>,
    /// Human-readable title.
    #[serde(default)]
    pub title: Option<String>,
    /// Group name.
    #[serde(default)]
    pub group: Option<String>,
    /// Profile (`paper`, `quick`, ...).
    #[serde(default)]
    pub profile: Option<String>,
    /// Default precision of the strategies (`f32` unless stated).
    #[serde(default)]
    pub precision: Option<String>,
    /// Number of epochs requested.
    #[serde(default)]
    pub epochs: Option<usize>,
    /// Number of runs requested.
    #[serde(default)]
    pub runs: Option<usize>,
    /// The strategies, in display order.
    pub strategies: Vec<StrategyMeta>,
    /// Wall-clock time of the whole experiment, if known.
    #[serde(default)]
    pub wall_seconds: Option<f64>,
}

/// A failure recorded in `run.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct RunFailure {
    /// The strategy that failed.
    pub strategy: String,
    /// The epoch at which it failed.
    pub epoch: usize,
    /// What went wrong.
    #[serde(default)]
    pub error: String,
}

#[derive(Debug, Deserialize)]
struct RunJson {
    #[serde(default)]
    run: Option<usize>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    failed: Vec<RunFailure>,
}

/// The recorded metrics of one strategy at one epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochMetrics {
    /// Epoch (0 = the starting point).
    pub epoch: usize,
    /// Mean training loss of the epoch (may be NaN after a divergence).
    pub loss: f64,
    /// ||A - A0|| (Frobenius, over all group layers).
    pub dist_from_start: f64,
    /// ||A - Pi_E A|| (Frobenius, over all group layers).
    pub dist_to_e: f64,
}

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
}

impl Run {
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

    /// Precision (`f32`/`f64`) of a strategy: its own, else the experiment's, else `f32`.
    pub fn precision_of(&self, name: &str) -> &str {
        self.strategy_meta(name)
            .and_then(|s| s.precision.as_deref())
            .or(self.meta.precision.as_deref())
            .unwrap_or("f32")
    }

    /// The last epoch recorded by any run (0 without runs).
    pub fn last_epoch(&self) -> usize {
        self.runs
            .iter()
            .flat_map(|r| r.metrics.values())
            .filter_map(|rows| rows.last().map(|r| r.epoch))
            .max()
            .unwrap_or(0)
    }

    /// The main strategy of a kind (`nominal`, `augmented`, `equivariant`): the strategy named
    /// exactly like the kind, else the first of that kind whose sampling is neither `exact`
    /// nor `reference`.
    pub fn main_strategy(&self, kind: &str) -> Option<&str> {
        if let Some(s) = self.strategies.iter().find(|s| *s == kind) {
            return Some(s);
        }
        self.strategies
            .iter()
            .find(|s| {
                self.strategy_meta(s).is_some_and(|m| {
                    m.kind == kind
                        && !matches!(m.sampling.as_deref(), Some("exact") | Some("reference"))
                })
            })
            .map(String::as_str)
    }

    /// The augmented strategy with the given sampling (`exact` or `reference`), found by
    /// declared sampling or by the conventional name `augmented-<sampling>`.
    pub fn augmented_with_sampling(&self, sampling: &str) -> Option<&str> {
        let conventional = format!("augmented-{sampling}");
        self.strategies
            .iter()
            .find(|s| {
                **s == conventional
                    || self.strategy_meta(s).is_some_and(|m| {
                        m.kind == "augmented" && m.sampling.as_deref() == Some(sampling)
                    })
            })
            .map(String::as_str)
    }

    /// The exact-average augmented strategy run in `precision` (`f32` or `f64`).
    pub fn exact_in(&self, precision: &str) -> Option<&str> {
        self.strategies
            .iter()
            .find(|s| {
                self.strategy_meta(s).is_some_and(|m| {
                    m.kind == "augmented" && m.sampling.as_deref() == Some("exact")
                }) && self.precision_of(s) == precision
            })
            .map(String::as_str)
    }
}

pub(crate) fn io_err(path: &Path, source: std::io::Error) -> ReportError {
    ReportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn invalid(path: &Path, message: impl Into<String>) -> ReportError {
    ReportError::Invalid {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Reads and parses a JSON file, naming the file in any error.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ReportError> {
    let text = std::fs::read_to_string(path).map_err(|e| io_err(path, e))?;
    serde_json::from_str(&text).map_err(|source| ReportError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// The experiment folders of `dir` (sub-folders holding an `experiment.json`), sorted by name.
pub fn find_experiments(dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let path = entry.path();
        if path.is_dir() && path.join("experiment.json").is_file() {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

/// Reads one experiment folder: `experiment.json` and every finished `run-*` directory.
pub fn load_experiment(dir: &Path) -> Result<Experiment, ReportError> {
    let meta_path = dir.join("experiment.json");
    let meta: ExperimentMeta = read_json(&meta_path)?;
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
        runs.push(load_run(&name, &path)?);
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

fn load_run(name: &str, dir: &Path) -> Result<Run, ReportError> {
    let json_path = dir.join("run.json");
    let info: RunJson = read_json(&json_path)?;
    let index = info
        .run
        .or_else(|| name.trim_start_matches("run-").parse().ok())
        .unwrap_or(0);
    let metrics = read_metrics(&dir.join("metrics.csv"))?;
    Ok(Run {
        index,
        seed: info.seed,
        dir: dir.to_path_buf(),
        metrics,
        failed: info.failed,
    })
}

/// Parses a number as the runner writes it; `NaN`, `inf` and `-inf` are accepted.
fn parse_number(text: &str) -> Option<f64> {
    let t = text.trim();
    match t.to_ascii_lowercase().as_str() {
        "nan" => Some(f64::NAN),
        "inf" | "+inf" | "infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        _ => t.parse().ok(),
    }
}

/// Reads a run's `metrics.csv` into rows per strategy, sorted by epoch.
pub fn read_metrics(path: &Path) -> Result<BTreeMap<String, Vec<EpochMetrics>>, ReportError> {
    let file = std::fs::File::open(path).map_err(|e| io_err(path, e))?;
    let csv_err = |source| ReportError::Csv {
        path: path.to_path_buf(),
        source,
    };
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(file);
    let headers = reader.headers().map_err(csv_err)?.clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| invalid(path, format!("missing column `{name}` in the header")))
    };
    let (c_epoch, c_strategy, c_loss, c_from, c_to) = (
        column("epoch")?,
        column("strategy")?,
        column("loss")?,
        column("dist_from_start")?,
        column("dist_to_e")?,
    );

    let mut out: BTreeMap<String, Vec<EpochMetrics>> = BTreeMap::new();
    for record in reader.records() {
        let record = record.map_err(csv_err)?;
        let line = record.position().map_or(0, |p| p.line());
        let field = |i: usize| record.get(i).unwrap_or("");
        let number = |i: usize| {
            parse_number(field(i)).ok_or_else(|| {
                invalid(
                    path,
                    format!(
                        "line {line}: column `{}` is not a number: {:?}",
                        &headers[i],
                        field(i)
                    ),
                )
            })
        };
        let epoch: usize = field(c_epoch).parse().map_err(|_| {
            invalid(
                path,
                format!(
                    "line {line}: epoch is not a non-negative integer: {:?}",
                    field(c_epoch)
                ),
            )
        })?;
        let strategy = field(c_strategy);
        if strategy.is_empty() {
            return Err(invalid(path, format!("line {line}: empty strategy")));
        }
        let row = EpochMetrics {
            epoch,
            loss: number(c_loss)?,
            dist_from_start: number(c_from)?,
            dist_to_e: number(c_to)?,
        };
        let rows = out.entry(strategy.to_string()).or_default();
        if rows.iter().any(|r| r.epoch == epoch) {
            return Err(invalid(
                path,
                format!("line {line}: duplicate row for strategy `{strategy}` at epoch {epoch}"),
            ));
        }
        rows.push(row);
    }
    for rows in out.values_mut() {
        rows.sort_by_key(|r| r.epoch);
    }
    Ok(out)
}
