//! The on-disk results of E5 (the two-phase SGD protocol), shared by the E5 runner (writer) and the E5 report (reader).
//!
//! ```text
//! OUT/<id>/experiment.json                 ExperimentJson (kind = "e5")
//! OUT/<id>/run-000/phase1-<support>/       one phase-1 (equivariant) model, written as a unit:
//!     phase1.json                          Phase1Json (config key, seed, wall time, failure)
//!     epochs.csv                           EpochRow per phase-1 epoch (0 = the start)
//!     params/                              the trained weights (Params::save_npy)
//! OUT/<id>/run-000/<case>/                 one phase-2 model, written as a unit:
//!     case.json                            CaseJson (config key, probe, wall time, failure)
//!     steps.csv                            StepRow per phase-2 SGD step (0 = the loaded start)
//!     epochs.csv                           EpochRow per phase-2 epoch (0 = the loaded start)
//!     params/                              the final weights
//! OUT/<id>/run-000/run.json                super::RunRecord (with `cases`), written last:
//!                                          the run is finished
//! ```
//!
//! Folders are built under a `.tmp` name and renamed into place, so a folder that exists is
//! complete; an interrupted run reuses its finished phase-1 models and cases. Distances are
//! Frobenius norms in kernel space (3 x 3 kernels of the convolutions; the final linear
//! layer's weights), the distance to E ∩ L_Omega being `||K - Pi(K)||` with `Pi` the orbit mean
//! over the rotations of the kernel offsets followed by the mask of Omega (docs/science.md §9).

use super::SchemaError;
use crate::config::e5::{Parametrisation, PhaseSection, Support};
use crate::io::{write_atomic, IoError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The names of the four layers whose distances are recorded, in order.
pub const LAYERS: [&str; 4] = ["conv1", "conv2", "conv3", "linear"];

/// `experiment.json` ([`ExperimentJson`]) and `run.json` (`super::RunRecord`): the names
/// every kind shares.
pub use super::{EXPERIMENT_JSON, RUN_JSON};

/// `experiment.json` of an E5 experiment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExperimentJson {
    /// Always `"e5"`: tells the report which reader to use.
    pub kind: String,
    /// Experiment id (folder name).
    pub experiment: String,
    /// Title.
    pub title: String,
    /// Profile.
    pub profile: String,
    /// The profile's note.
    pub note: String,
    /// `f32` or `f64`.
    pub precision: String,
    /// Runs requested.
    pub runs: usize,
    /// Channels of the convolutions.
    pub channels: [usize; 3],
    /// Phase 1 hyperparameters.
    pub phase1: PhaseSection,
    /// Phase 2 hyperparameters.
    pub phase2: PhaseSection,
    /// The cases, in config order.
    pub cases: Vec<CaseMeta>,
    /// Where the digits came from, e.g. `shipped (8000 / 2000 split)`.
    pub data_source: String,
    /// Training digits used (phase 2 trains on 4 x as many).
    pub train: usize,
    /// Test digits used.
    pub test: usize,
    /// Digits of the one-step probe (0 = none).
    pub probe_digits: usize,
    /// Training time summed over the finished runs.
    pub wall_seconds: f64,
    /// The config file.
    pub config_file: String,
    /// Fingerprint of the config every run of the folder is made with; absent in folders
    /// written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_key: Option<String>,
}

/// One case in `experiment.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CaseMeta {
    /// Name (folder name in each run).
    pub name: String,
    /// Kernel support.
    pub support: Support,
    /// Basis on the support.
    pub parametrisation: Parametrisation,
}

/// A divergence or error of one phase, recorded instead of its results.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FailureJson {
    /// Epoch in which it happened (1-based).
    pub epoch: usize,
    /// SGD step (1-based, counted over the phase), if known.
    pub step: Option<usize>,
    /// What went wrong.
    pub error: String,
}

/// `phase1.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Phase1Json {
    /// Fingerprint of everything that determines the phase-1 model (data, network, phase 1,
    /// seed, support): a rerun reuses this folder only if the key matches.
    pub key: String,
    /// The run's seed.
    pub seed: u64,
    /// Support of the equivariant model.
    pub support: Support,
    /// dim(E ∩ L_Omega) per channel pair of the kernels.
    pub dim_per_channel_pair: usize,
    /// Parameters of the equivariant model.
    pub parameters: usize,
    /// Wall time of phase 1.
    pub wall_seconds: f64,
    /// Set if phase 1 diverged (its cases are then not run).
    pub failure: Option<FailureJson>,
}

/// One SGD step on a given batch from the loaded phase-2 start (docs/science.md §9's one-step check).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct StepProbe {
    /// Distance to E ∩ L after the step.
    #[serde(deserialize_with = "super::f64_or_nan")]
    pub dist_to_e: f64,
    /// Distance moved by the step (kernel space).
    #[serde(deserialize_with = "super::f64_or_nan")]
    pub dist_moved: f64,
    /// Norm of the parameters after the step (kernel space): the scale of their round-off.
    #[serde(default, deserialize_with = "super::f64_or_nan")]
    pub norm_after: f64,
}

/// The one-step probe of a case (see `protocol.probe_digits`).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct ProbeJson {
    /// Digits used.
    pub digits: usize,
    /// Distance to E ∩ L at the loaded start (before any step).
    #[serde(deserialize_with = "super::f64_or_nan")]
    pub start_dist_to_e: f64,
    /// One step on the digits and their four rotations (closed under C_4).
    pub closed: StepProbe,
    /// One step on as many shuffled samples of the augmented set (not closed under C_4).
    pub shuffled: StepProbe,
}

/// `case.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CaseJson {
    /// Fingerprint of everything that determines this case's numbers.
    pub key: String,
    /// Case name.
    pub case: String,
    /// The run's seed.
    pub seed: u64,
    /// Support.
    pub support: Support,
    /// Parametrisation.
    pub parametrisation: Parametrisation,
    /// Parameters of the phase-2 model.
    pub parameters: usize,
    /// Largest residual of loading the equivariant weights (Frobenius, per convolution: the
    /// least-squares residual in f64 and the kernel mismatch in the training precision).
    #[serde(deserialize_with = "super::f64_or_nan")]
    pub load_residual: f64,
    /// The one-step probe, if made.
    pub probe: Option<ProbeJson>,
    /// Wall time of phase 2.
    pub wall_seconds: f64,
    /// Set if phase 2 diverged.
    pub failure: Option<FailureJson>,
}

/// One row of `epochs.csv` (both phases).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EpochRow {
    /// 1 or 2.
    pub phase: u8,
    /// Epoch of the phase (0 = its start).
    pub epoch: usize,
    /// Mean loss over the training set of the phase (phase 2: the augmented set).
    pub train_loss: f64,
    /// Accuracy over the training set of the phase.
    pub train_accuracy: f64,
    /// Mean loss over the test digits.
    pub test_loss: f64,
    /// Accuracy over the test digits.
    pub test_accuracy: f64,
    /// Distance to E ∩ L (all four layers).
    pub dist_to_e: f64,
    /// Distance from the phase's start (all four layers, kernel space).
    pub dist_from_start: f64,
    /// Distance to E ∩ L of conv1.
    #[serde(rename = "dist_to_e.conv1")]
    pub dist_to_e_conv1: f64,
    /// Distance to E ∩ L of conv2.
    #[serde(rename = "dist_to_e.conv2")]
    pub dist_to_e_conv2: f64,
    /// Distance to E ∩ L of conv3.
    #[serde(rename = "dist_to_e.conv3")]
    pub dist_to_e_conv3: f64,
    /// Distance of the final linear layer to its rot90-invariant part.
    #[serde(rename = "dist_to_e.linear")]
    pub dist_to_e_linear: f64,
}

/// One row of `steps.csv` (phase 2).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StepRow {
    /// Steps taken so far in phase 2 (0 = the loaded start).
    pub step: usize,
    /// Phase-2 epoch of the step (1-based; 0 for the start).
    pub epoch: usize,
    /// Mini-batch loss before the step (NaN at step 0).
    pub loss: f64,
    /// Norm of the mini-batch gradient over the parameters (basis coefficients).
    pub grad_norm: f64,
    /// Norm of the mini-batch gradient in kernel space (equal to `grad_norm` for unitary
    /// parametrisations).
    pub grad_norm_kernel: f64,
    /// Distance to E ∩ L after the step.
    pub dist_to_e: f64,
    /// Distance from the phase-2 start.
    pub dist_from_start: f64,
    /// `||Pi_perp(A_k - A_{k-1})||`: the part of this step that leaves E ∩ L.
    pub kick: f64,
    /// Distance to E ∩ L of conv1.
    #[serde(rename = "dist_to_e.conv1")]
    pub dist_to_e_conv1: f64,
    /// Distance to E ∩ L of conv2.
    #[serde(rename = "dist_to_e.conv2")]
    pub dist_to_e_conv2: f64,
    /// Distance to E ∩ L of conv3.
    #[serde(rename = "dist_to_e.conv3")]
    pub dist_to_e_conv3: f64,
    /// Distance of the final linear layer to its rot90-invariant part.
    #[serde(rename = "dist_to_e.linear")]
    pub dist_to_e_linear: f64,
}

/// The folder of run `r`.
pub fn run_dir(exp_dir: &Path, r: usize) -> PathBuf {
    super::run_dir(exp_dir, r)
}

/// The phase-1 folder of a support in a run folder.
pub fn phase1_dir(run_dir: &Path, support: &Support) -> PathBuf {
    run_dir.join(phase1_name(support))
}

/// The folder name of a run's phase-1 model of `support`: `phase1-cross`.
pub fn phase1_name(support: &Support) -> String {
    format!("phase1-{support}")
}

/// A phase-1 model's record, in its folder.
pub const PHASE1_JSON: &str = "phase1.json";
/// A case's record, in its folder.
pub const CASE_JSON: &str = "case.json";
/// Per-epoch rows ([`EpochRow`]), in a phase-1 or case folder.
pub const EPOCHS_CSV: &str = "epochs.csv";
/// Per-step rows ([`StepRow`]), in a case folder.
pub const STEPS_CSV: &str = "steps.csv";
/// The trained weights (`Params::save_npy`), in a phase-1 or case folder.
pub const PARAMS: &str = "params";

/// Whether finished run `run_dir` of `exp` holds every phase-1 model and case it should,
/// each with its record and tables, and its weights unless it failed (see
/// [`super::AnyExperimentRecord::check_run`]).
pub fn check_run(run_dir: &Path, exp: &ExperimentJson) -> Result<(), String> {
    let mut supports: Vec<&Support> = exp.cases.iter().map(|c| &c.support).collect();
    supports.sort();
    supports.dedup();
    for s in supports {
        let dir = phase1_dir(run_dir, s);
        let record: Phase1Json = read_json(&dir.join(PHASE1_JSON)).map_err(|e| error_chain(&e))?;
        check_unit(&dir, record.failure.is_some(), &[EPOCHS_CSV])?;
        if record.failure.is_some() {
            // Its cases never ran.
            continue;
        }
        for c in exp.cases.iter().filter(|c| &c.support == s) {
            let dir = case_dir(run_dir, &c.name);
            let record: CaseJson = read_json(&dir.join(CASE_JSON)).map_err(|e| error_chain(&e))?;
            check_unit(&dir, record.failure.is_some(), &[EPOCHS_CSV, STEPS_CSV])?;
        }
    }
    Ok(())
}

/// The tables of a phase-1 or case folder parse, and its weights are there unless it failed.
fn check_unit(dir: &Path, failed: bool, tables: &[&str]) -> Result<(), String> {
    for t in tables {
        let path = dir.join(t);
        let rows = if *t == STEPS_CSV {
            read_csv::<StepRow>(&path).map(|r| r.len())
        } else {
            read_csv::<EpochRow>(&path).map(|r| r.len())
        }
        .map_err(|e| error_chain(&e))?;
        if rows == 0 {
            return Err(format!("{}: no rows", path.display()));
        }
    }
    let params = dir.join(PARAMS);
    if !failed && !params.join("manifest.json").is_file() {
        return Err(format!("{}: the weights are missing", params.display()));
    }
    Ok(())
}

/// An error and its causes, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// A case's folder in a run folder.
pub fn case_dir(run_dir: &Path, case: &str) -> PathBuf {
    run_dir.join(case)
}

/// Writes rows as CSV with a header, atomically. Non-finite numbers are written as `NaN`,
/// `inf`, `-inf`.
pub fn write_csv<T: Serialize>(path: &Path, rows: &[T]) -> Result<(), SchemaError> {
    let err = |source| SchemaError::Csv {
        path: path.into(),
        source,
    };
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r).map_err(err)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| IoError::new(path, std::io::Error::other(e.to_string())))?;
    Ok(write_atomic(path, &bytes)?)
}

/// Reads a CSV file written by [`write_csv`].
pub fn read_csv<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, SchemaError> {
    let file = std::fs::File::open(path).map_err(IoError::at(path))?;
    let mut r = csv::Reader::from_reader(file);
    r.deserialize()
        .collect::<Result<Vec<T>, _>>()
        .map_err(|source| SchemaError::Csv {
            path: path.into(),
            source,
        })
}

pub use super::{read_json, write_json};
