//! The results on disk, defined once: what `eqaug run` writes and `eqaug report` (and every
//! other reader) reads.
//!
//! ```text
//! OUT/<experiment>/experiment.json                    ExperimentRecord
//! OUT/<experiment>/run-000/run.json                    RunRecord
//! OUT/<experiment>/run-000/metrics.csv                 METRIC_COLUMNS, then per-layer distances
//! OUT/<experiment>/run-000/config.toml                 the resolved config (see config::parse_resolved)
//! OUT/<experiment>/run-000/checkpoints/<strategy>/epoch-NNN/   Params::save_npy
//! ```
//!
//! Only finished runs exist as `run-NNN` folders (a run in progress is `run-NNN.tmp`).
//!
//! Extending the schema: readers accept unknown JSON keys and extra CSV columns, so new
//! results are added without breaking old folders. Add a JSON field with `#[serde(default)]`
//! (and `skip_serializing_if` when it is absent for existing protocols, so their files stay
//! byte-identical); add a metrics column to [`METRIC_COLUMNS`] with a getter that returns
//! `None` where the quantity is not measured (the column is then left out of the file).

use crate::config::{DatasetKind, Precision};
use crate::io::{write_atomic, IoError};
use eqaug_dynamics::{EpochMetrics, Failure, Sampling, StrategyKind};
use eqaug_nn::Loss;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub mod e5;

/// File name of an experiment's description, in the experiment folder.
pub const EXPERIMENT_JSON: &str = "experiment.json";
/// File name of a run's record, in the run folder.
pub const RUN_JSON: &str = "run.json";
/// File name of a run's per-epoch metrics, in the run folder.
pub const METRICS_CSV: &str = "metrics.csv";
/// File name of the resolved config a run was made with, in the run folder.
pub const CONFIG_TOML: &str = "config.toml";
/// Folder of a run's parameter checkpoints, in the run folder.
pub const CHECKPOINTS: &str = "checkpoints";

/// The outputs of `eqaug report` and `eqaug stability` (file names).
pub mod outputs {
    /// Every run's metrics in one table, per experiment.
    pub const RUNS_CSV: &str = "runs.csv";
    /// Medians and quartiles over runs, per experiment.
    pub const SUMMARY_CSV: &str = "summary.csv";
    /// The tables of an experiment.
    pub const TABLE_MD: &str = "table.md";
    /// The paper's figure of an experiment.
    pub const FIGURE_SVG: &str = "figure.svg";
    /// Uniform against the authors' non-uniform rotations (E3, E4 with rotations).
    pub const REFERENCE_SVG: &str = "reference.svg";
    /// The held-out equivariance error per strategy.
    pub const EQUIVARIANCE_SVG: &str = "equivariance.svg";
    /// The regularised strategies' distances.
    pub const REGULARISED_SVG: &str = "regularised.svg";
    /// E5: the distance to E ∩ L per SGD step of the first augmented epoch.
    pub const STEPS_SVG: &str = "steps.svg";
    /// The normalisation ablation.
    pub const ABLATION_NORM_MD: &str = "ablation-norm.md";
    /// The worked instability example.
    pub const WORKED_EXAMPLE_JSON: &str = "worked_example.json";
    /// Every claim, measured against its bound.
    pub const CLAIMS_JSON: &str = "claims.json";
    /// The claims as a table.
    pub const CLAIMS_MD: &str = "claims.md";
    /// The report's front page.
    pub const REPORT_MD: &str = "report.md";
    /// The stability analysis's report.
    pub const STABILITY_MD: &str = "stability.md";
    /// The stability analysis's figure.
    pub const STABILITY_SVG: &str = "stability.svg";
    /// One experiment's stability analysis (`eqaug stability`).
    pub const STABILITY_JSON: &str = "stability.json";
    /// What `eqaug stability` keeps of each run, next to `stability.json` in `run-NNN/`:
    /// the stationary point A* and the unit vectors of the extreme eigenvalues of both blocks,
    /// each a checkpoint folder (`.npy` per tensor and `manifest.json`, the layout of training
    /// checkpoints, loadable with `Params::load_npy`).
    pub const STABILITY_VECTORS: [&str; 5] = ["point", "e-min", "e-max", "perp-min", "perp-max"];
}

/// The name of run `run`'s folder: `run-007`.
pub fn run_dir_name(run: usize) -> String {
    format!("run-{run:03}")
}

/// Run `run`'s folder in an experiment folder.
pub fn run_dir(experiment_dir: &Path, run: usize) -> PathBuf {
    experiment_dir.join(run_dir_name(run))
}

/// The folder holding a strategy's parameters at `epoch` (as written by `Params::save_npy`)
/// inside a run folder: `<run_dir>/checkpoints/<strategy>/epoch-NNN`.
pub fn checkpoint_dir(run_dir: &Path, strategy: &str, epoch: usize) -> PathBuf {
    run_dir
        .join(CHECKPOINTS)
        .join(strategy)
        .join(format!("epoch-{epoch:03}"))
}

/// One strategy as recorded in `experiment.json` (keys in alphabetical order on disk).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrategyRecord {
    /// The kind of training.
    pub kind: StrategyKind,
    /// Free-form name, the key used in `metrics.csv` (`nominal`, `augmented-exact`, ...).
    pub name: String,
    /// Augmented only: passes per epoch.
    #[serde(default)]
    pub passes: usize,
    /// Precision of this strategy (absent in hand-written files: the experiment's).
    #[serde(default)]
    pub precision: Option<Precision>,
    /// Sampling of group elements (meaningful for augmented strategies).
    #[serde(default)]
    pub sampling: Option<Sampling>,
    /// The regulariser `gamma/2 ||A_Eperp||^2`, for regularised strategies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regulariser: Option<eqaug_dynamics::Regulariser>,
}

/// The contents of a full-batch experiment's `experiment.json`. The runner fills every field;
/// a reader accepts files with any of the optional ones missing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentRecord {
    /// Experiment id (`e1`, `e4-rot`, ...); readers default it to the folder name.
    #[serde(default)]
    pub experiment: Option<String>,
    /// Human-readable title.
    #[serde(default)]
    pub title: Option<String>,
    /// Group name.
    #[serde(default)]
    pub group: Option<String>,
    /// Grid side or node count.
    #[serde(default)]
    pub size: Option<usize>,
    /// Profile (`paper`, `quick`, ...).
    #[serde(default)]
    pub profile: Option<String>,
    /// What the profile changed.
    #[serde(default)]
    pub note: Option<String>,
    /// Default precision of the strategies (`f32` unless stated).
    #[serde(default)]
    pub precision: Option<Precision>,
    /// Number of epochs requested.
    #[serde(default)]
    pub epochs: Option<usize>,
    /// Number of runs requested.
    #[serde(default)]
    pub runs: Option<usize>,
    /// Learning rate.
    #[serde(default)]
    pub learning_rate: Option<f64>,
    /// Mini-batch size.
    #[serde(default)]
    pub minibatch: Option<usize>,
    /// The data set.
    #[serde(default)]
    pub dataset: Option<DatasetKind>,
    /// Number of training samples.
    #[serde(default)]
    pub count: Option<usize>,
    /// The loss (absent in folders written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<Loss>,
    /// Whether the network's last layer is a softmax (so that a cross-entropy loss is applied
    /// to probabilities, the "double softmax"); absent in older folders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_softmax: Option<bool>,
    /// The strategies, in display order.
    pub strategies: Vec<StrategyRecord>,
    /// Wall-clock training time summed over the finished runs, if known.
    #[serde(default)]
    pub wall_seconds: Option<f64>,
    /// The config file the experiment came from.
    #[serde(default)]
    pub config_file: Option<String>,
    /// Fingerprint of the config every run of the folder is made with (see
    /// `runner::any_config_key`); absent in folders written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_key: Option<String>,
}

impl ExperimentRecord {
    /// Reads `<dir>/experiment.json`.
    pub fn read(dir: &Path) -> Result<Self, SchemaError> {
        read_json(&dir.join(EXPERIMENT_JSON))
    }

    /// Writes `<dir>/experiment.json` atomically (pretty JSON, no trailing newline).
    pub fn write(&self, dir: &Path) -> Result<(), SchemaError> {
        write_json(&dir.join(EXPERIMENT_JSON), self)
    }
}

/// `experiment.json` of either kind, told apart by its `kind` key (absent: full batch).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum AnyExperimentRecord {
    /// A full-batch experiment.
    FullBatch(ExperimentRecord),
    /// An E5 (two-phase SGD) experiment.
    E5(e5::ExperimentJson),
}

impl AnyExperimentRecord {
    /// Reads `<dir>/experiment.json` of either kind.
    pub fn read(dir: &Path) -> Result<Self, SchemaError> {
        let path = dir.join(EXPERIMENT_JSON);
        let value: serde_json::Value = read_json(&path)?;
        let parse = |source| SchemaError::Json {
            path: path.clone(),
            source,
        };
        let record = if value.get("kind").and_then(|k| k.as_str()) == Some(crate::config::e5::KIND)
        {
            AnyExperimentRecord::E5(serde_json::from_value(value).map_err(parse)?)
        } else {
            AnyExperimentRecord::FullBatch(serde_json::from_value(value).map_err(parse)?)
        };
        if let Some(runs) = record.runs() {
            if runs > crate::config::MAX_RUNS {
                return Err(SchemaError::Invalid {
                    path,
                    message: format!(
                        "`runs` = {runs} is more than the {} an experiment may have",
                        crate::config::MAX_RUNS
                    ),
                });
            }
        }
        Ok(record)
    }

    /// Writes `<dir>/experiment.json` atomically (pretty JSON, no trailing newline).
    pub fn write(&self, dir: &Path) -> Result<(), SchemaError> {
        write_json(&dir.join(EXPERIMENT_JSON), self)
    }

    /// The experiment's id, if recorded.
    pub fn name(&self) -> Option<&str> {
        match self {
            AnyExperimentRecord::FullBatch(r) => r.experiment.as_deref(),
            AnyExperimentRecord::E5(r) => Some(&r.experiment),
        }
    }

    /// The profile, if recorded.
    pub fn profile(&self) -> Option<&str> {
        match self {
            AnyExperimentRecord::FullBatch(r) => r.profile.as_deref(),
            AnyExperimentRecord::E5(r) => Some(&r.profile),
        }
    }

    /// The number of runs requested, if recorded.
    pub fn runs(&self) -> Option<usize> {
        match self {
            AnyExperimentRecord::FullBatch(r) => r.runs,
            AnyExperimentRecord::E5(r) => Some(r.runs),
        }
    }

    /// Sets the number of runs.
    pub fn set_runs(&mut self, runs: usize) {
        match self {
            AnyExperimentRecord::FullBatch(r) => r.runs = Some(runs),
            AnyExperimentRecord::E5(r) => r.runs = runs,
        }
    }

    /// The fingerprint of the folder's config, if recorded.
    pub fn config_key(&self) -> Option<&str> {
        match self {
            AnyExperimentRecord::FullBatch(r) => r.config_key.as_deref(),
            AnyExperimentRecord::E5(r) => r.config_key.as_deref(),
        }
    }

    /// Sets the fingerprint of the folder's config.
    pub fn set_config_key(&mut self, key: &str) {
        match self {
            AnyExperimentRecord::FullBatch(r) => r.config_key = Some(key.into()),
            AnyExperimentRecord::E5(r) => r.config_key = Some(key.into()),
        }
    }

    /// Sets the training time summed over the finished runs.
    pub fn set_wall_seconds(&mut self, wall: f64) {
        match self {
            AnyExperimentRecord::FullBatch(r) => r.wall_seconds = Some(wall),
            AnyExperimentRecord::E5(r) => r.wall_seconds = wall,
        }
    }

    /// What a run trains, in order: the strategies (full batch) or the cases (E5).
    pub fn units(&self) -> Vec<String> {
        match self {
            AnyExperimentRecord::FullBatch(r) => {
                r.strategies.iter().map(|s| s.name.clone()).collect()
            }
            AnyExperimentRecord::E5(r) => r.cases.iter().map(|c| c.name.clone()).collect(),
        }
    }

    /// `strategy` or `case`: what [`Self::units`] are.
    pub fn unit_name(&self) -> &'static str {
        match self {
            AnyExperimentRecord::FullBatch(_) => "strategy",
            AnyExperimentRecord::E5(_) => "case",
        }
    }

    /// Whether the files of finished run `run_dir` (whose `run.json` is `run`) are all there
    /// and readable: the one definition of a usable run. Full batch: `metrics.csv` has one row
    /// per epoch for every strategy that did not fail. E5: every phase-1 model and case folder
    /// has its record and tables (and its weights unless it failed). `Err` says what is
    /// missing or damaged, naming the file.
    pub fn check_run(&self, run_dir: &Path, run: &RunRecord) -> Result<(), String> {
        match self {
            AnyExperimentRecord::FullBatch(r) => check_metrics(run_dir, r, run),
            AnyExperimentRecord::E5(r) => e5::check_run(run_dir, r),
        }
    }
}

/// The metrics of a finished full-batch run, checked: the one definition of a usable run that
/// `eqaug report`, `eqaug status` and resuming share. `metrics.csv` parses (every number, no
/// duplicate rows); every strategy has the consecutive epochs `0, 1, ...` up to the last
/// (`exp.epochs` unless it failed, in which case no further than its failure); every
/// checkpoint `run.json` lists is there for every strategy that reached it, with a manifest
/// that parses and weight files of the size it states.
pub fn check_full_batch_run(
    run_dir: &Path,
    exp: &ExperimentRecord,
    run: &RunRecord,
) -> Result<BTreeMap<String, Vec<MetricsRow>>, SchemaError> {
    let path = run_dir.join(METRICS_CSV);
    let metrics = read_metrics(&path)?;
    let invalid = |message: String| SchemaError::Invalid {
        path: path.clone(),
        message,
    };
    for s in &exp.strategies {
        let failed = run.failed.iter().find(|f| f.strategy == s.name);
        let rows = metrics.get(&s.name).map_or(&[][..], Vec::as_slice);
        if let Some(r) = rows.iter().enumerate().find(|(i, r)| r.epoch != *i) {
            return Err(invalid(format!(
                "strategy `{}` has no row for epoch {} (rows must be consecutive from 0): \
                 damaged; move {} away and rerun that run",
                s.name,
                r.0,
                run_dir.display()
            )));
        }
        let last = rows.last().map(|r| r.epoch);
        let complete = match (failed, exp.epochs) {
            (Some(f), _) => last.is_none_or(|l| l <= f.epoch),
            (None, Some(epochs)) => last == Some(epochs),
            (None, None) => last.is_some(),
        };
        if !complete {
            return Err(invalid(format!(
                "truncated: strategy `{}` has {} row(s), the last at epoch {}, but the run {} \
                 and the experiment has {} epochs; move {} away and rerun that run",
                s.name,
                rows.len(),
                last.map_or("none".to_string(), |e| e.to_string()),
                if failed.is_some() {
                    "failed earlier"
                } else {
                    "did not fail"
                },
                exp.epochs.map_or("?".to_string(), |e| e.to_string()),
                run_dir.display()
            )));
        }
        for &e in &run.checkpoints {
            if last.is_some_and(|l| e <= l) && failed.is_none_or(|f| e < f.epoch) {
                check_checkpoint(&checkpoint_dir(run_dir, &s.name, e))?;
            }
        }
    }
    Ok(metrics)
}

/// A checkpoint folder (`Params::save_npy`): its manifest parses and every weight file it
/// lists is there with at least the bytes its shape and type need.
fn check_checkpoint(dir: &Path) -> Result<(), SchemaError> {
    let path = dir.join("manifest.json");
    let manifest: serde_json::Value = read_json(&path)?;
    let invalid = |message: String| SchemaError::Invalid {
        path: path.clone(),
        message,
    };
    let bytes = match manifest["dtype"].as_str() {
        Some("f32") => 4u64,
        Some("f64") => 8,
        other => return Err(invalid(format!("unknown dtype {other:?}"))),
    };
    let tensors = manifest["tensors"]
        .as_array()
        .ok_or_else(|| invalid("no `tensors` list".into()))?;
    for t in tensors {
        let file = t["file"]
            .as_str()
            .filter(|f| !f.contains('/') && !f.contains('\\') && !f.starts_with('.'))
            .ok_or_else(|| invalid(format!("a tensor without a plain file name: {t}")))?;
        let count = t["shape"]
            .as_array()
            .and_then(|s| {
                s.iter()
                    .try_fold(1u64, |a, d| d.as_u64().and_then(|d| a.checked_mul(d)))
            })
            .ok_or_else(|| invalid(format!("{file}: no valid shape")))?;
        let npy = dir.join(file);
        let len = std::fs::metadata(&npy)
            .map_err(|e| IoError::new(&npy, e))?
            .len();
        let need = npy_data_offset(&npy)?.saturating_add(count.saturating_mul(bytes));
        if len < need {
            return Err(SchemaError::Invalid {
                path: npy,
                message: format!(
                    "{len} bytes, fewer than the {count} values of the manifest need: truncated"
                ),
            });
        }
    }
    Ok(())
}

/// Where the data of a `.npy` file start: after the magic string, the version, the header
/// length and the header.
fn npy_data_offset(path: &Path) -> Result<u64, SchemaError> {
    use std::io::Read;
    let mut head = [0u8; 12];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .map_err(|e| IoError::new(path, e))?;
    if &head[..6] != b"\x93NUMPY" {
        return Err(SchemaError::Invalid {
            path: path.into(),
            message: "not a .npy file".into(),
        });
    }
    Ok(match head[6] {
        1 => 10 + u16::from_le_bytes([head[8], head[9]]) as u64,
        _ => 12 + u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as u64,
    })
}

/// Every strategy that did not fail has one row per epoch `0..=epochs` in `metrics.csv`, and
/// its checkpoints are there (see [`check_full_batch_run`]).
fn check_metrics(run_dir: &Path, exp: &ExperimentRecord, run: &RunRecord) -> Result<(), String> {
    check_full_batch_run(run_dir, exp, run)
        .map(drop)
        .map_err(|e| match &e {
            SchemaError::Invalid { path, message } => format!("{}: {message}", path.display()),
            other => {
                let mut s = other.to_string();
                let mut cur = std::error::Error::source(other);
                while let Some(c) = cur {
                    s.push_str(": ");
                    s.push_str(&c.to_string());
                    cur = c.source();
                }
                s
            }
        })
}

/// The contents of `run.json`. Readers accept files with only some of the fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Run index (readers fall back to the folder name).
    #[serde(default)]
    pub run: Option<usize>,
    /// Fingerprint of the config the run was made with (see `runner::config_key`).
    #[serde(default)]
    pub config_key: Option<String>,
    /// The run's seed (`protocol.seed + run`).
    #[serde(default)]
    pub seed: Option<u64>,
    /// Experiment id.
    #[serde(default)]
    pub experiment: Option<String>,
    /// Profile.
    #[serde(default)]
    pub profile: Option<String>,
    /// Wall time of the run in seconds.
    #[serde(default)]
    pub wall_seconds: f64,
    /// Wall time per strategy, in training order.
    #[serde(default)]
    pub strategy_seconds: Vec<(String, f64)>,
    /// Strategies stopped by a non-finite loss or weight.
    #[serde(default)]
    pub failed: Vec<RunFailure>,
    /// Names of the group layers (the per-layer metric columns).
    #[serde(default)]
    pub layers: Vec<String>,
    /// Epochs whose parameters were saved (see [`checkpoint_dir`]).
    #[serde(default)]
    pub checkpoints: Vec<usize>,
    /// Per strategy: max and mean of |Phi(g x) - g Phi(x)| on the held-out samples at the end
    /// (a non-finite value, written as JSON `null`, reads back as NaN).
    #[serde(default, deserialize_with = "pairs_with_nan")]
    pub equivariance_error: BTreeMap<String, [f64; 2]>,
    /// Version of eqaug that wrote the run.
    #[serde(default)]
    pub eqaug_version: String,
    /// E5: the cases of the run, in config order (each a folder of the run; see [`e5`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cases: Vec<String>,
}

impl RunRecord {
    /// Reads `<run_dir>/run.json`.
    pub fn read(run_dir: &Path) -> Result<Self, SchemaError> {
        read_json(&run_dir.join(RUN_JSON))
    }

    /// Writes `<run_dir>/run.json` atomically (pretty JSON, no trailing newline).
    pub fn write(&self, run_dir: &Path) -> Result<(), SchemaError> {
        write_json(&run_dir.join(RUN_JSON), self)
    }
}

/// Reads `{"name": [a, b]}` where JSON `null` (what serde_json writes for a non-finite
/// float) stands for NaN: a record eqaug writes is always one it can read.
fn pairs_with_nan<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, [f64; 2]>, D::Error> {
    let m: BTreeMap<String, [Option<f64>; 2]> = Deserialize::deserialize(d)?;
    Ok(m.into_iter()
        .map(|(k, [a, b])| (k, [a.unwrap_or(f64::NAN), b.unwrap_or(f64::NAN)]))
        .collect())
}

/// Reads a number where JSON `null` (a non-finite float as serde_json writes it) is NaN.
pub(crate) fn f64_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// A failure recorded in `run.json` (eqaug-dynamics' [`Failure`]; `error` may be missing in
/// hand-written files).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunFailure {
    /// The strategy that failed.
    pub strategy: String,
    /// The epoch at which it failed.
    pub epoch: usize,
    /// What went wrong.
    #[serde(default)]
    pub error: String,
}

impl From<Failure> for RunFailure {
    fn from(f: Failure) -> Self {
        RunFailure {
            strategy: f.strategy,
            epoch: f.epoch,
            error: f.error,
        }
    }
}

/// Errors reading or writing the results files, each naming the file.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The file could not be read or written.
    #[error(transparent)]
    Io(#[from] IoError),
    /// A JSON file could not be parsed.
    #[error("{}: malformed JSON", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's error (with line and column).
        #[source]
        source: serde_json::Error,
    },
    /// A CSV file could not be parsed or written.
    #[error("{}: malformed CSV", path.display())]
    Csv {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: csv::Error,
    },
    /// A file parsed but its content is invalid.
    #[error("{}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line where known.
        message: String,
    },
}

/// Reads and parses a JSON file, naming the file in any error.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, SchemaError> {
    let text = std::fs::read_to_string(path).map_err(|e| IoError::new(path, e))?;
    serde_json::from_str(&text).map_err(|source| SchemaError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes pretty JSON atomically (no trailing newline).
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), SchemaError> {
    let text = serde_json::to_string_pretty(value).map_err(|source| SchemaError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(write_atomic(path, text.as_bytes())?)
}

/// A per-epoch quantity of `metrics.csv` after `epoch` and `strategy`: its column name and
/// how to read it from eqaug-dynamics' [`EpochMetrics`] (`None`: not measured, the column is
/// left out when no row has it).
#[derive(Debug, Clone, Copy)]
pub struct MetricColumn {
    /// Column name in the header.
    pub name: &'static str,
    /// The value of a row.
    pub get: fn(&EpochMetrics) -> Option<f64>,
}

/// The per-epoch quantities of `metrics.csv`, in column order (after `epoch, strategy`, before
/// the per-layer distances).
pub const METRIC_COLUMNS: &[MetricColumn] = &[
    MetricColumn {
        name: "loss",
        get: |m| Some(m.loss),
    },
    MetricColumn {
        name: "dist_from_start",
        get: |m| Some(m.dist_from_start),
    },
    MetricColumn {
        name: "dist_to_e",
        get: |m| Some(m.dist_to_e),
    },
    MetricColumn {
        name: "penalty",
        get: |m| m.penalty,
    },
    MetricColumn {
        name: "test_loss",
        get: |m| m.test_loss,
    },
    MetricColumn {
        name: "test_accuracy",
        get: |m| m.test_accuracy,
    },
    MetricColumn {
        name: "test_mean_iou",
        get: |m| m.test_mean_iou,
    },
];

/// Prefix of the per-layer `||A - A0||` columns (`dist_from_start.<layer>`).
pub const LAYER_DIST_FROM_START: &str = "dist_from_start.";
/// Prefix of the per-layer `||A_Eperp||` columns (`dist_to_e.<layer>`).
pub const LAYER_DIST_TO_E: &str = "dist_to_e.";

/// The short name of a group layer in the per-layer columns (`layer0.weight` -> `layer0`).
pub fn layer_column_name(layer: &str) -> &str {
    layer.strip_suffix(".weight").unwrap_or(layer)
}

/// Renders `metrics.csv`: `epoch, strategy`, the [`METRIC_COLUMNS`] measured in any row, then
/// the per-layer distances from the start and to E for `layers` (the group layers' names).
pub fn metrics_csv(layers: &[String], metrics: &[EpochMetrics]) -> Result<Vec<u8>, csv::Error> {
    let columns: Vec<&MetricColumn> = METRIC_COLUMNS
        .iter()
        .filter(|c| metrics.iter().any(|m| (c.get)(m).is_some()) || metrics.is_empty())
        .collect();
    let mut header = vec!["epoch".to_string(), "strategy".into()];
    header.extend(columns.iter().map(|c| c.name.to_string()));
    for prefix in [LAYER_DIST_FROM_START, LAYER_DIST_TO_E] {
        header.extend(
            layers
                .iter()
                .map(|l| format!("{prefix}{}", layer_column_name(l))),
        );
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(&header)?;
    for m in metrics {
        let mut rec = vec![m.epoch.to_string(), m.strategy.clone()];
        rec.extend(
            columns
                .iter()
                .map(|c| (c.get)(m).map_or_else(String::new, |v| v.to_string())),
        );
        rec.extend(m.dist_from_start_per_layer.iter().map(f64::to_string));
        rec.extend(m.dist_to_e_per_layer.iter().map(f64::to_string));
        w.write_record(&rec)?;
    }
    w.into_inner().map_err(|e| e.into_error().into())
}

/// Writes `metrics.csv` atomically (see [`metrics_csv`]).
pub fn write_metrics_csv(
    path: &Path,
    layers: &[String],
    metrics: &[EpochMetrics],
) -> Result<(), SchemaError> {
    let bytes = metrics_csv(layers, metrics).map_err(|source| SchemaError::Csv {
        path: path.into(),
        source,
    })?;
    Ok(write_atomic(path, &bytes)?)
}

/// The recorded metrics of one strategy at one epoch, as read back from `metrics.csv`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricsRow {
    /// Epoch (0 = the starting point).
    pub epoch: usize,
    /// Mean training loss of the epoch (may be NaN after a divergence).
    pub loss: f64,
    /// ||A - A0|| (Frobenius, over all group layers).
    pub dist_from_start: f64,
    /// ||A - Pi_E A|| (Frobenius, over all group layers).
    pub dist_to_e: f64,
    /// The regulariser's penalty `gamma/2 ||A_Eperp||^2` (regularised strategies only).
    pub penalty: Option<f64>,
    /// Mean loss on the held-out samples (when recorded).
    pub test_loss: Option<f64>,
    /// Accuracy on the held-out samples (pixel accuracy for segmentation).
    pub test_accuracy: Option<f64>,
    /// Mean IoU of the predicted masks on the held-out samples (segmentation).
    pub test_mean_iou: Option<f64>,
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

/// Reads a run's `metrics.csv` into rows per strategy, sorted by epoch. Extra columns are
/// ignored; a missing required column, a malformed number or a duplicate (strategy, epoch)
/// is an error naming the file and line.
pub fn read_metrics(path: &Path) -> Result<BTreeMap<String, Vec<MetricsRow>>, SchemaError> {
    let file = std::fs::File::open(path).map_err(|e| IoError::new(path, e))?;
    let invalid = |message: String| SchemaError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let csv_err = |source| SchemaError::Csv {
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
            .ok_or_else(|| invalid(format!("missing column `{name}` in the header")))
    };
    let (c_epoch, c_strategy, c_loss, c_from, c_to) = (
        column("epoch")?,
        column("strategy")?,
        column("loss")?,
        column("dist_from_start")?,
        column("dist_to_e")?,
    );
    let optional = |name: &str| headers.iter().position(|h| h == name);
    let (c_penalty, c_test_loss, c_test_acc, c_test_iou) = (
        optional("penalty"),
        optional("test_loss"),
        optional("test_accuracy"),
        optional("test_mean_iou"),
    );

    let mut out: BTreeMap<String, Vec<MetricsRow>> = BTreeMap::new();
    for record in reader.records() {
        let record = record.map_err(csv_err)?;
        let line = record.position().map_or(0, |p| p.line());
        let field = |i: usize| record.get(i).unwrap_or("");
        let number = |i: usize| {
            parse_number(field(i)).ok_or_else(|| {
                invalid(format!(
                    "line {line}: column `{}` is not a number: {:?}",
                    &headers[i],
                    field(i)
                ))
            })
        };
        let epoch: usize = field(c_epoch).parse().map_err(|_| {
            invalid(format!(
                "line {line}: epoch is not a non-negative integer: {:?}",
                field(c_epoch)
            ))
        })?;
        let strategy = field(c_strategy);
        if strategy.is_empty() {
            return Err(invalid(format!("line {line}: empty strategy")));
        }
        // Optional columns: an empty cell means "not measured in this row".
        let maybe = |c: Option<usize>| -> Result<Option<f64>, SchemaError> {
            match c {
                Some(i) if !field(i).is_empty() => number(i).map(Some),
                _ => Ok(None),
            }
        };
        let row = MetricsRow {
            epoch,
            loss: number(c_loss)?,
            dist_from_start: number(c_from)?,
            dist_to_e: number(c_to)?,
            penalty: maybe(c_penalty)?,
            test_loss: maybe(c_test_loss)?,
            test_accuracy: maybe(c_test_acc)?,
            test_mean_iou: maybe(c_test_iou)?,
        };
        let rows = out.entry(strategy.to_string()).or_default();
        if rows.iter().any(|r| r.epoch == epoch) {
            return Err(invalid(format!(
                "line {line}: duplicate row for strategy `{strategy}` at epoch {epoch}"
            )));
        }
        rows.push(row);
    }
    for rows in out.values_mut() {
        rows.sort_by_key(|r| r.epoch);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record eqaug writes is one it reads: serde_json writes a non-finite number as
    /// `null` (a diverged strategy's equivariance error, a probe after a blow-up), and the
    /// readers take it back as NaN instead of refusing the whole folder.
    #[test]
    fn non_finite_numbers_round_trip_through_null() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = RunRecord {
            run: Some(0),
            ..RunRecord::default()
        };
        r.equivariance_error
            .insert("nominal".into(), [0.0, f64::NAN]);
        r.write(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join(RUN_JSON)).unwrap();
        assert!(text.contains("null"), "{text}");
        let back = RunRecord::read(dir.path()).unwrap();
        let e = back.equivariance_error["nominal"];
        assert_eq!(e[0], 0.0);
        assert!(e[1].is_nan());
        let probe: e5::StepProbe =
            serde_json::from_str(r#"{"dist_to_e": null, "dist_moved": 1.0, "norm_after": null}"#)
                .unwrap();
        assert!(probe.dist_to_e.is_nan() && probe.norm_after.is_nan());
    }
}
