//! The config of the two-phase SGD protocol of E5 (docs/science.md §4 and §9), selected in an
//! experiment file by `[experiment] kind = "e5"` (see [`super::load_any`]).
//!
//! Parsed strictly like the full-batch configs (unknown keys rejected, ranges checked, every
//! error naming the file, the profile and the key) and validated into an [`E5Experiment`].
//!
//! ```toml
//! [experiment]
//! kind = "e5"
//! id = "e5"
//! title = "E5: compatibility and unitarity in a CNN"
//!
//! [data]
//! # mnist_dir = "/data/mnist"   # official 60 000 / 10 000 IDX files (default: shipped split)
//! # train = 2000                # first N training digits (default: all of the split)
//! # test = 500                  # first N test digits (default: all)
//!
//! [network]
//! channels = [32, 64, 64]       # conv 1 -> c1 -> c2 -> c3, then linear 7 x 7 x c3 -> 10
//!
//! [phase1]                      # the equivariant model, plain mini-batch SGD
//! epochs = 250
//! learning_rate = 5e-4
//! minibatch = 100
//!
//! [phase2]                      # the model on Omega, on the full C_4 orbit of the training set
//! epochs = 10
//! learning_rate = 2.5e-4
//! minibatch = 100
//!
//! [protocol]
//! runs = 30
//! seed = 5000
//!
//! [[cases]]
//! name = "cross"
//! support = "cross"
//! parametrisation = "unitary"
//! ```

use super::{
    check_name, invalid, merge_profile, parse_as_written, read, ConfigError, Precision, MAX_RUNS,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The value of `experiment.kind` that selects this schema.
pub const KIND: &str = "e5";

/// The whole E5 file, as written.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct E5File {
    /// `[experiment]`.
    pub experiment: ExperimentSection,
    /// `[data]`.
    #[serde(default)]
    pub data: DataSection,
    /// `[network]`.
    pub network: NetworkSection,
    /// `[phase1]`: the equivariant model.
    pub phase1: PhaseSection,
    /// `[phase2]`: the model on Omega, augmented by the full C_4 orbit.
    pub phase2: PhaseSection,
    /// `[protocol]`: runs, seed, precision.
    pub protocol: ProtocolSection,
    /// `[[cases]]`: kernel support and parametrisation of each phase-2 model.
    pub cases: Vec<CaseSection>,
    /// `[profiles.NAME]`: partial copies of the sections above plus `note`.
    #[serde(default)]
    pub profiles: BTreeMap<String, toml::Table>,
}

/// `[experiment]` of an E5 file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSection {
    /// Must be `"e5"`.
    pub kind: String,
    /// Output folder name.
    pub id: String,
    /// Title for reports.
    pub title: String,
}

/// `[data]` of an E5 file: 28 x 28 MNIST, standardised by mean 0.1307 and std 0.3081.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// A folder with the official IDX files (60 000 training, 10 000 test digits); default:
    /// the shipped 10 000 digits split into a fixed training and test part.
    #[serde(default)]
    pub mnist_dir: Option<PathBuf>,
    /// Use the first `train` training digits (default: all of them).
    #[serde(default)]
    pub train: Option<usize>,
    /// Use the first `test` test digits (default: all of them).
    #[serde(default)]
    pub test: Option<usize>,
}

/// `[network]` of an E5 file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    /// Channels of the three convolutions (paper `[32, 64, 64]`).
    pub channels: Vec<usize>,
}

/// `[phase1]` or `[phase2]`: plain mini-batch SGD (no momentum, no weight decay), shuffled
/// every epoch from the run's seed.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseSection {
    /// Epochs (passes over the phase's training set).
    pub epochs: usize,
    /// Learning rate.
    pub learning_rate: f64,
    /// Mini-batch size (one SGD step per mini-batch).
    pub minibatch: usize,
}

/// `[protocol]` of an E5 file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProtocolSection {
    /// Independent runs per case; each run trains its own phase-1 model(s).
    pub runs: usize,
    /// Base seed: run `k` uses `seed + k`.
    #[serde(default)]
    pub seed: u64,
    /// Precision of training (f32, the paper's, or f64).
    #[serde(default)]
    pub precision: Precision,
    /// Rows per forward pass when evaluating losses and accuracies (whole mini-batches).
    #[serde(default = "default_eval_rows")]
    pub eval_rows: usize,
    /// Rows per forward and backward pass of an SGD step: each mini-batch is processed in
    /// chunks of at most this many images and their gradients summed (the same step up to the
    /// order of the f32 summation: the networks' layer norm acts per image). 50 keeps the
    /// first convolution's output and its gradient (100 KB each per image) in this kind of
    /// machine's last-level cache, where a chunk of 100 does not.
    #[serde(default = "default_chunk_rows")]
    pub chunk_rows: usize,
    /// Digits of the one-step probe at the start of phase 2: one SGD step on these digits
    /// with their four rotations (a batch closed under C_4) against one step on a shuffled
    /// batch of the same size; 0 = no probe.
    #[serde(default = "default_probe")]
    pub probe_digits: usize,
}

fn default_eval_rows() -> usize {
    1000
}
fn default_chunk_rows() -> usize {
    50
}
fn default_probe() -> usize {
    25
}

/// The kernel support Omega and the parametrisation of a case: eqaug-nn's types (defined
/// once). A case takes the supports `cross` and `skew` and the parametrisations `unitary` and
/// `nonunitary` (checked at validation).
pub use eqaug_nn::conv::{Parametrisation, Support};

/// `[[cases]]`: one phase-2 model.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CaseSection {
    /// Name in outputs and reports (`cross`, `skew`, `cross-nonunitary`).
    pub name: String,
    /// Kernel support Omega.
    pub support: Support,
    /// Basis of the kernels on Omega in phase 2.
    pub parametrisation: Parametrisation,
}

/// A validated E5 experiment: everything a run needs.
#[derive(Clone, Debug, Serialize)]
pub struct E5Experiment {
    /// Output folder name.
    pub name: String,
    /// Title for reports.
    pub title: String,
    /// The profile applied.
    pub profile: String,
    /// What the profile changed (its `note`).
    pub note: String,
    /// `[data]`.
    pub data: DataSection,
    /// Channels of the three convolutions.
    pub channels: [usize; 3],
    /// `[phase1]`.
    pub phase1: PhaseSection,
    /// `[phase2]`.
    pub phase2: PhaseSection,
    /// `[protocol]`.
    pub protocol: ProtocolSection,
    /// The cases, in file order.
    pub cases: Vec<CaseSection>,
    /// The config file.
    pub file: PathBuf,
    /// The merged config as TOML (recorded with every run).
    pub resolved_toml: String,
}

impl E5Experiment {
    /// The supports whose phase-1 (equivariant) models the cases need, in a fixed order.
    /// Cases with the same support share the run's phase-1 model (E ∩ L_Omega depends only on
    /// Omega), so `cross` and `cross-nonunitary` start phase 2 from the same weights.
    pub fn supports(&self) -> Vec<Support> {
        let mut s: Vec<Support> = self.cases.iter().map(|c| c.support.clone()).collect();
        s.sort();
        s.dedup();
        s
    }

    /// The seed of run `run`.
    pub fn seed_of(&self, run: usize) -> u64 {
        self.protocol.seed.wrapping_add(run as u64)
    }
}

/// The profiles an E5 config text defines.
pub fn profiles_of(text: &str, file: &Path) -> Result<Vec<String>, ConfigError> {
    let parsed: E5File = parse_as_written(text, file)?;
    Ok(parsed.profiles.keys().cloned().collect())
}

/// Reads an E5 config file and resolves one profile.
pub fn load(file: &Path, profile: &str) -> Result<E5Experiment, ConfigError> {
    parse(&read(file)?, file, profile)
}

/// The sections a profile of an E5 config may set (besides `note`).
const SECTIONS: [&str; 7] = [
    "experiment",
    "data",
    "network",
    "phase1",
    "phase2",
    "protocol",
    "cases",
];

/// Parses E5 config text (`file` is used in messages) and resolves `profile`.
pub fn parse(text: &str, file: &Path, profile: &str) -> Result<E5Experiment, ConfigError> {
    let m = merge_profile(text, file, profile, &SECTIONS, |f: &E5File| &f.profiles)?;
    validate(m.merged, file, profile, &m.ptag, m.note, m.resolved_toml)
}

fn validate_phase(p: &PhaseSection, section: &str) -> Result<(), (String, String)> {
    if !(p.learning_rate.is_finite() && p.learning_rate > 0.0) {
        return Err((
            format!("{section}.learning_rate"),
            format!("must be positive, got {}", p.learning_rate),
        ));
    }
    if p.minibatch == 0 {
        return Err((format!("{section}.minibatch"), "must be at least 1".into()));
    }
    Ok(())
}

fn validate(
    f: E5File,
    file: &Path,
    profile: &str,
    ptag: &str,
    note: String,
    resolved_toml: String,
) -> Result<E5Experiment, ConfigError> {
    let bad = |key: &str, reason: String| Err(invalid(file, ptag, key, &reason));
    if f.experiment.kind != KIND {
        return bad(
            "experiment.kind",
            format!(
                "an E5 file has kind = \"{KIND}\", got {:?}",
                f.experiment.kind
            ),
        );
    }
    if let Err((key, reason)) = check_name("experiment.id", &f.experiment.id) {
        return bad(&key, reason);
    }
    let c = &f.network.channels;
    if c.len() != 3 || c.contains(&0) {
        return bad(
            "network.channels",
            format!("give the 3 positive channel counts of the convolutions, got {c:?}"),
        );
    }
    for (p, s) in [(&f.phase1, "phase1"), (&f.phase2, "phase2")] {
        if let Err((key, reason)) = validate_phase(p, s) {
            return bad(&key, reason);
        }
    }
    if f.phase2.epochs == 0 {
        return bad(
            "phase2.epochs",
            "must be at least 1 (phase 2 is what E5 measures)".into(),
        );
    }
    let p = &f.protocol;
    if p.runs == 0 || p.runs > MAX_RUNS {
        return bad(
            "protocol.runs",
            format!("must be between 1 and {MAX_RUNS}, got {}", p.runs),
        );
    }
    if p.eval_rows == 0 {
        return bad("protocol.eval_rows", "must be at least 1".into());
    }
    if p.chunk_rows == 0 {
        return bad("protocol.chunk_rows", "must be at least 1".into());
    }
    for (key, n, need) in [
        (
            "data.train",
            f.data.train,
            f.phase1.minibatch.max(p.probe_digits),
        ),
        ("data.test", f.data.test, 1),
    ] {
        if let Some(n) = n {
            if n < need {
                return bad(
                    key,
                    format!(
                        "{n} digits are fewer than the {need} needed (a mini-batch, the probe)"
                    ),
                );
            }
        }
    }
    if f.data.train.is_some_and(|n| 4 * n < f.phase2.minibatch) {
        return bad(
            "phase2.minibatch",
            format!(
                "larger than the augmented training set (4 x {} digits)",
                f.data.train.unwrap_or(0)
            ),
        );
    }
    if f.cases.is_empty() {
        return bad("cases", "give at least one case".into());
    }
    let mut names = std::collections::HashSet::new();
    for (i, case) in f.cases.iter().enumerate() {
        if let Err((key, reason)) = check_name(&format!("cases[{i}].name"), &case.name) {
            return bad(&key, reason);
        }
        if !matches!(case.support, Support::Cross | Support::Skew) {
            return bad(
                &format!("cases[{i}].support"),
                format!("{}: a case takes \"cross\" or \"skew\"", case.support),
            );
        }
        if case.parametrisation == Parametrisation::Equivariant {
            return bad(
                &format!("cases[{i}].parametrisation"),
                "a case takes \"unitary\" or \"nonunitary\" (the equivariant model is phase 1)"
                    .into(),
            );
        }
        if case.name.starts_with("phase1") {
            return bad(
                &format!("cases[{i}].name"),
                "names starting with `phase1` are reserved for the phase-1 folders".into(),
            );
        }
        if !names.insert(case.name.clone()) {
            return bad(
                &format!("cases[{i}].name"),
                format!("`{}` appears twice", case.name),
            );
        }
    }
    Ok(E5Experiment {
        name: f.experiment.id.clone(),
        title: f.experiment.title.clone(),
        profile: profile.into(),
        note,
        data: f.data,
        channels: [c[0], c[1], c[2]],
        phase1: f.phase1,
        phase2: f.phase2,
        protocol: f.protocol,
        cases: f.cases,
        file: file.into(),
        resolved_toml,
    })
}
