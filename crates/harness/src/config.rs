//! Experiment configs: `experiments/*.toml`, with profiles (`paper`, `quick`, ...) that
//! override parts of the base sections. Parsed strictly (unknown keys rejected) and validated
//! into a checked [`Experiment`] before anything runs; every error names the file, the key and
//! the reason.

use eqaug_dynamics::{Protocol, Regulariser, Sampling, StrategyKind, StrategySpec};
use eqaug_groups::{Group, ReferenceTask};
use eqaug_nn::{Loss, NetworkSpec, Normalisation};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub mod e5;
pub mod stability;

/// A config problem, with the file and the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{file}: cannot read: {source}")]
    Io {
        /// The config file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TOML syntax error, unknown key, wrong type.
    #[error("{file}{profile}: {source}")]
    Parse {
        /// The config file.
        file: PathBuf,
        /// ` (profile P)` when the error arose after applying a profile.
        profile: String,
        /// toml's error (names the key and, for the base sections, the line).
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A group of `experiment.groups` cannot be built.
    #[error("{file}{profile}: key `experiment.groups`: {source}")]
    Group {
        /// The config file.
        file: PathBuf,
        /// ` (profile P)` when a profile was applied.
        profile: String,
        /// Why.
        #[source]
        source: eqaug_groups::GroupError,
    },
    /// A value out of range or inconsistent.
    #[error("{file}{profile}: key `{key}`: {reason}")]
    Invalid {
        /// The config file.
        file: PathBuf,
        /// ` (profile P)` when a profile was applied.
        profile: String,
        /// The dotted key, e.g. `protocol.learning_rate`.
        key: String,
        /// Why it is rejected.
        reason: String,
    },
    /// The requested profile does not exist.
    #[error("{file}: no profile `{profile}` (the file defines: {available})")]
    NoProfile {
        /// The config file.
        file: PathBuf,
        /// The requested profile.
        profile: String,
        /// The profiles defined.
        available: String,
    },
}

/// The whole file, as written.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentFile {
    /// `[experiment]`: what it is and which group(s).
    pub experiment: ExperimentSection,
    /// `[data]`.
    pub data: DataSection,
    /// `[network]`.
    pub network: NetworkSection,
    /// `[protocol]`.
    pub protocol: ProtocolSection,
    /// `[[strategies]]`.
    pub strategies: Vec<StrategySection>,
    /// `[stability]`: options of `eqaug stability` (see [`crate::stability`]).
    #[serde(default)]
    pub stability: Option<stability::StabilitySection>,
    /// `[profiles.NAME]`: partial copies of the sections above, merged over them, plus `note`.
    #[serde(default)]
    pub profiles: BTreeMap<String, toml::Table>,
}

/// `[experiment]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSection {
    /// Short id used for output folders (`e1`, `e3`, `my-experiment`).
    pub id: String,
    /// Human-readable title for reports.
    pub title: String,
    /// One group, or several (the experiment then runs once per group, in folders
    /// `<id>-<group>`): perm (S_n on adjacency entries), sym (S_n on `size` points), trans2d,
    /// trans1d, rot, rototrans, swap, trivial, or a name from `[experiment.user_groups]`.
    pub groups: Vec<String>,
    /// Grid side or node count.
    pub size: usize,
    /// User-defined groups by name: permutation generators of the base points
    /// (`n*n` for an `n x n` grid), each a list of images.
    #[serde(default)]
    pub user_groups: BTreeMap<String, Vec<Vec<u32>>>,
}

/// Which data set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetKind {
    /// Stochastic block model graphs (E1).
    Sbm,
    /// MNIST resized to 14 x 14 (E2, E4).
    Mnist14,
    /// Synthetic triangles and pentagons with masks (E3).
    Shapes,
    /// A user's own inputs and targets from `.npy` files (`data.inputs`, `data.targets`,
    /// `data.targets_kind`; see eqaug-data's `npy` module for the accepted shapes).
    Npy,
}

/// What an `npy` targets file holds (`data.targets_kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NpyTargetsKind {
    /// One 0/1 label per sample (a sigmoid output with `loss = "bce"`).
    Binary,
    /// One class label per sample in `0..data.classes` (one-hot targets).
    Classes,
    /// Masks that move with the inputs (segmentation).
    Masks,
}

/// `[data]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// The data set.
    pub dataset: DatasetKind,
    /// Number of samples.
    pub count: usize,
    /// Seed of the data generator (graphs, shapes). The data are the same for every run.
    #[serde(default)]
    pub seed: u64,
    /// Added to every input value (the paper's "minus 0.5" for graphs and MNIST).
    #[serde(default)]
    pub input_offset: f64,
    /// MNIST: a folder of standard IDX files to use instead of the shipped subset.
    #[serde(default)]
    pub mnist_dir: Option<PathBuf>,
    /// SBM: intra-cluster edge probability (0.5).
    #[serde(default)]
    pub p_intra: Option<f64>,
    /// SBM: inter-cluster edge probability (0.05).
    #[serde(default)]
    pub p_inter: Option<f64>,
    /// npy: the inputs file (`float32`/`float64`, `(N, C*P)`, `(N, C, P)` or `(N, C, h, w)`);
    /// a relative path is taken from the directory the command runs in.
    #[serde(default)]
    pub inputs: Option<PathBuf>,
    /// npy: the targets file.
    #[serde(default)]
    pub targets: Option<PathBuf>,
    /// npy: what the targets file holds: `binary`, `classes` or `masks`.
    #[serde(default)]
    pub targets_kind: Option<NpyTargetsKind>,
    /// npy: input channels `C` (default 1).
    #[serde(default)]
    pub channels: Option<usize>,
    /// npy with class labels: the number of classes (default: the largest label + 1).
    #[serde(default)]
    pub classes: Option<usize>,
}

/// The built-in networks of docs/science.md §4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// E1: `channels = [c1, c2, head]` (paper `[32, 64, 32]`).
    E1,
    /// E2/E4: `channels = [c]` (paper `[32]`), 10 classes.
    E2,
    /// E3: `channels = [c1, c2, c3]` (paper `[32, 32, 16]`).
    E3,
}

/// `[network]`: a preset with its channel counts, or an explicit layer list.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    /// A built-in network (or leave out and give `layers`).
    #[serde(default)]
    pub preset: Option<Preset>,
    /// Channel counts of the preset.
    #[serde(default)]
    pub channels: Vec<usize>,
    /// Batch normalisation (v1, the paper's main text) or layer normalisation (later versions).
    #[serde(default)]
    pub normalisation: Normalisation,
    /// The loss.
    pub loss: Loss,
    /// An explicit network (eqaug-nn's `LayerSpec`s) instead of a preset.
    #[serde(default)]
    pub layers: Option<Vec<eqaug_nn::LayerSpec>>,
    /// The presets' rectifier: `leaky_relu` (the paper's, default) or `smooth_leaky_relu`
    /// (`slope x + (1 - slope) softplus(sharpness x) / sharpness`, no kink: a Hessian exists
    /// everywhere, for `eqaug stability`).
    #[serde(default)]
    pub activation: Activation,
    /// `smooth_leaky_relu` only: the sharpness beta (default 10; LeakyReLU as beta -> inf).
    #[serde(default)]
    pub sharpness: Option<f64>,
}

/// The rectifier of the preset networks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `max(x, 0) + 0.01 min(x, 0)` (the paper's).
    #[default]
    LeakyRelu,
    /// The smooth LeakyReLU with the same slope 0.01 and `network.sharpness`.
    SmoothLeakyRelu,
}

/// Floating-point precision of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// Single precision (the paper's).
    #[default]
    F32,
    /// Double precision (to tell round-off from sampling noise).
    F64,
}

impl Precision {
    /// `f32` or `f64`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F64 => "f64",
        }
    }
}

/// `[protocol]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProtocolSection {
    /// Epochs (full-batch gradient steps).
    pub epochs: usize,
    /// Learning rate.
    pub learning_rate: f64,
    /// Mini-batch size.
    pub minibatch: usize,
    /// Rows per chunk through the network (whole mini-batches; larger = faster GEMMs).
    #[serde(default = "default_chunk")]
    pub chunk_rows: usize,
    /// Independent runs (different initialisations and augmentation draws).
    pub runs: usize,
    /// Base seed: run `k` uses seed `seed + k`.
    #[serde(default)]
    pub seed: u64,
    /// Default precision of the strategies.
    #[serde(default)]
    pub precision: Precision,
    /// Epochs at which to save the parameters of every strategy (default: the last).
    #[serde(default)]
    pub checkpoints: Option<Vec<usize>>,
    /// Runs trained at the same time (each with single-threaded GEMMs); 1 = one run at a
    /// time with all cores in every GEMM, best for large layers.
    #[serde(default = "one")]
    pub parallel_runs: usize,
    /// The authors' distribution that `sampling = "reference"` reproduces.
    #[serde(default = "default_task")]
    pub reference_task: ReferenceTask,
    /// Held-out samples (beyond `data.count`) on which the empirical equivariance error
    /// `|Phi(g x) - g Phi(x)|` of every strategy's final network is measured and written to
    /// `run.json` (0 = off).
    #[serde(default)]
    pub held_out: usize,
    /// A strategy whose loss exceeds this multiple of its starting loss has diverged: it is
    /// failed and stays out of every claim (see `eqaug_dynamics::Divergence`; default 100).
    #[serde(default = "default_loss_factor")]
    pub divergence_loss_factor: f64,
    /// A strategy whose `||A||` exceeds this multiple of `||A0||` has diverged (default 1e4).
    #[serde(default = "default_weight_factor")]
    pub divergence_weight_factor: f64,
}

fn default_loss_factor() -> f64 {
    eqaug_dynamics::Divergence::default().loss_factor
}
fn default_weight_factor() -> f64 {
    eqaug_dynamics::Divergence::default().weight_factor
}

fn default_chunk() -> usize {
    500
}
fn one() -> usize {
    1
}
fn default_task() -> ReferenceTask {
    ReferenceTask::Classification
}
fn default_passes() -> usize {
    25
}

/// `[[strategies]]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StrategySection {
    /// Name in metrics and reports (`nominal`, `augmented`, `equivariant`, ...).
    pub name: String,
    /// nominal, augmented or equivariant.
    pub kind: StrategyKind,
    /// Augmented only: per-batch (default), per-sample, exact, reference.
    #[serde(default)]
    pub sampling: Sampling,
    /// Augmented only: passes per epoch (default 25; the exact mode makes one per element).
    #[serde(default = "default_passes")]
    pub passes: usize,
    /// Overrides the protocol's precision for this strategy.
    #[serde(default)]
    pub precision: Option<Precision>,
    /// In a multi-group file: run this strategy only for these groups (default: all).
    #[serde(default)]
    pub only_groups: Option<Vec<String>>,
    /// Nominal or augmented only: `regulariser = { gamma = ... }` adds the penalty
    /// `gamma/2 ||A_Eperp||^2` to the risk (arXiv 2502.06547).
    #[serde(default)]
    pub regulariser: Option<Regulariser>,
}

/// A validated experiment for one group and one profile: everything a run needs.
#[derive(Clone, Debug, Serialize)]
pub struct Experiment {
    /// Output folder name: the id, or `<id>-<group>` for multi-group files.
    pub name: String,
    /// Title for reports.
    pub title: String,
    /// The profile applied.
    pub profile: String,
    /// What the profile changed (its `note`).
    pub note: String,
    /// The group's name.
    pub group: String,
    /// Grid side / node count.
    pub size: usize,
    /// User generators, when the group is user-defined.
    pub user_generators: Option<Vec<Vec<u32>>>,
    /// `[data]`.
    pub data: DataSection,
    /// The network.
    pub network: NetworkSpec,
    /// The loss.
    pub loss: Loss,
    /// `[protocol]`.
    pub protocol: ProtocolSection,
    /// The strategies with their precisions.
    pub strategies: Vec<(StrategySpec, Precision)>,
    /// `[stability]`, when given.
    pub stability: Option<stability::StabilitySection>,
    /// The config file it came from.
    pub file: PathBuf,
    /// The merged config as TOML (recorded with every run).
    pub resolved_toml: String,
}

impl Experiment {
    /// The group, built.
    pub fn build_group(&self) -> Result<std::sync::Arc<Group>, eqaug_groups::GroupError> {
        match &self.user_generators {
            Some(gens) => Group::new(eqaug_groups::GroupSpec::User {
                name: self.group.clone(),
                points: gens.first().map_or(self.size * self.size, Vec::len),
                generators: gens.clone(),
            }),
            None => Group::builtin(&self.group, self.size),
        }
    }

    /// The protocol for eqaug-dynamics.
    pub fn dynamics_protocol(&self) -> Protocol {
        Protocol::default()
            .with_epochs(self.protocol.epochs)
            .with_learning_rate(self.protocol.learning_rate)
            .with_minibatch(self.protocol.minibatch)
            .with_chunk_rows(self.protocol.chunk_rows)
            .with_reference_task(self.protocol.reference_task)
            .with_divergence(eqaug_dynamics::Divergence::new(
                self.protocol.divergence_loss_factor,
                self.protocol.divergence_weight_factor,
            ))
    }

    /// Epochs at which parameters are saved.
    pub fn checkpoint_epochs(&self) -> Vec<usize> {
        self.protocol
            .checkpoints
            .clone()
            .unwrap_or_else(|| vec![self.protocol.epochs])
    }
}

/// Merges `over` into `base`: tables recursively, every other value replaced.
pub(crate) fn merge(base: &mut toml::Table, over: &toml::Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// The dotted key of the first non-finite float (`inf`, `nan`) in a table, if any.
fn non_finite(t: &toml::Table, prefix: &str) -> Option<String> {
    fn walk(v: &toml::Value, key: String) -> Option<String> {
        match v {
            toml::Value::Float(x) if !x.is_finite() => Some(key),
            toml::Value::Table(t) => non_finite(t, &key),
            toml::Value::Array(a) => a
                .iter()
                .enumerate()
                .find_map(|(i, v)| walk(v, format!("{key}[{i}]"))),
            _ => None,
        }
    }
    t.iter().find_map(|(k, v)| {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        walk(v, key)
    })
}

/// Reads a config file (as text); a missing or unreadable file names the file.
pub(crate) fn read(file: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(file).map_err(|source| ConfigError::Io {
        file: file.into(),
        source,
    })
}

/// Parses config text as written (`file` is used in messages): errors in the base sections
/// come with line numbers.
pub(crate) fn parse_as_written<F: serde::de::DeserializeOwned>(
    text: &str,
    file: &Path,
) -> Result<F, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        file: file.into(),
        profile: String::new(),
        source: Box::new(e),
    })
}

/// A config file with one profile merged over its base sections.
pub(crate) struct ProfileMerge<F> {
    /// The merged file (`[profiles]` removed).
    pub(crate) merged: F,
    /// The profile's `note` (empty if none).
    pub(crate) note: String,
    /// `" (profile NAME)"`, appended to messages.
    pub(crate) ptag: String,
    /// The merged file as TOML text (what a run records as `config.toml`).
    pub(crate) resolved_toml: String,
}

/// Resolves `profile` of config text: looks the profile up in the base file's `[profiles]`
/// (as `profiles` returns them), checks that it sets only `note` and the named `sections`,
/// merges it over the base sections and parses the result.
pub(crate) fn merge_profile<F: serde::de::DeserializeOwned>(
    text: &str,
    file: &Path,
    profile: &str,
    sections: &[&str],
    profiles: impl Fn(&F) -> &BTreeMap<String, toml::Table>,
) -> Result<ProfileMerge<F>, ConfigError> {
    let base: F = parse_as_written(text, file)?;
    let Some(over) = profiles(&base).get(profile) else {
        return Err(ConfigError::NoProfile {
            file: file.into(),
            profile: profile.into(),
            available: profiles(&base)
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    let ptag = format!(" (profile {profile})");
    let mut over = over.clone();
    let note = match over.remove("note") {
        Some(toml::Value::String(s)) => s,
        Some(_) => {
            return Err(invalid(
                file,
                &ptag,
                &format!("profiles.{profile}.note"),
                "must be a string",
            ))
        }
        None => String::new(),
    };
    if let Some(k) = over.keys().find(|k| !sections.contains(&k.as_str())) {
        return Err(invalid(
            file,
            &ptag,
            &format!("profiles.{profile}.{k}"),
            &format!(
                "unknown key: a profile may set note, {}",
                sections.join(", ")
            ),
        ));
    }
    let mut table: toml::Table = parse_as_written(text, file)?;
    table.remove("profiles");
    merge(&mut table, &over);
    if let Some(key) = non_finite(&table, "") {
        return Err(invalid(
            file,
            &ptag,
            &key,
            "must be a finite number (inf and nan are not values of any key)",
        ));
    }
    let resolved_toml = toml::to_string(&table).unwrap_or_default();
    let merged: F = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Parse {
            file: file.into(),
            profile: ptag.clone(),
            source: Box::new(e),
        })?;
    Ok(ProfileMerge {
        merged,
        note,
        ptag,
        resolved_toml,
    })
}

/// Reads a full-batch config file (E1-E4 and the like) and resolves one profile into
/// validated experiments (one per group). A config of another kind is refused naming
/// `experiment.kind`; [`load_any`] takes every kind.
pub fn load(file: &Path, profile: &str) -> Result<Vec<Experiment>, ConfigError> {
    let text = read(file)?;
    match kind_of(&text, file)? {
        Kind::FullBatch => parse(&text, file, profile),
        k => Err(invalid(
            file,
            "",
            "experiment.kind",
            &format!(
                "this command takes full-batch experiments (no `kind` key), not kind = \"{}\"",
                k.name()
            ),
        )),
    }
}

/// The most runs an experiment may have (`protocol.runs`, `--runs`): far beyond any study,
/// small enough that per-run bookkeeping never becomes an allocation that fails.
pub const MAX_RUNS: usize = 1_000_000;

/// The training protocol of an experiment, named by `[experiment] kind` in its config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Kind {
    /// Full-batch gradient descent of MLPs with group layers, one folder per group (E1-E4,
    /// the ablations): no `kind` key.
    #[serde(rename = "full-batch")]
    FullBatch,
    /// The two-phase SGD protocol of E5 (an equivariant CNN, then a CNN on a kernel support
    /// trained on the C_4 orbit of the data): `kind = "e5"`.
    #[serde(rename = "e5")]
    E5,
}

impl Kind {
    /// The value of `experiment.kind` (`full-batch` for files without one).
    pub fn name(self) -> &'static str {
        match self {
            Kind::FullBatch => "full-batch",
            Kind::E5 => e5::KIND,
        }
    }
}

/// The kind of config text: its `[experiment] kind` (absent: full batch). Text that is not
/// TOML is reported here, with the line.
pub fn kind_of(text: &str, file: &Path) -> Result<Kind, ConfigError> {
    let table: toml::Table = parse_as_written(text, file)?;
    match table.get("experiment").and_then(|e| e.get("kind")) {
        None => Ok(Kind::FullBatch),
        Some(toml::Value::String(k)) if k == e5::KIND => Ok(Kind::E5),
        Some(toml::Value::String(k)) if k == Kind::FullBatch.name() => Ok(Kind::FullBatch),
        Some(v) => Err(invalid(
            file,
            "",
            "experiment.kind",
            &format!(
                "unknown kind {v}: use \"{}\", or leave the key out for a full-batch experiment",
                e5::KIND
            ),
        )),
    }
}

/// A validated experiment of any kind: what `eqaug run`, `status`, `slurm`, `list` and the
/// runner take. Each kind keeps its own validated type; the lifecycle of runs (folders,
/// locks, fingerprints, memory) is shared (see [`crate::runner`]).
#[derive(Clone, Debug)]
pub enum AnyExperiment {
    /// A full-batch experiment (one group).
    FullBatch(Box<Experiment>),
    /// A two-phase SGD experiment.
    E5(Box<e5::E5Experiment>),
}

impl AnyExperiment {
    /// Its kind.
    pub fn kind(&self) -> Kind {
        match self {
            AnyExperiment::FullBatch(_) => Kind::FullBatch,
            AnyExperiment::E5(_) => Kind::E5,
        }
    }
    /// Output folder name.
    pub fn name(&self) -> &str {
        match self {
            AnyExperiment::FullBatch(e) => &e.name,
            AnyExperiment::E5(e) => &e.name,
        }
    }
    /// The profile applied.
    pub fn profile(&self) -> &str {
        match self {
            AnyExperiment::FullBatch(e) => &e.profile,
            AnyExperiment::E5(e) => &e.profile,
        }
    }
    /// What the profile changed.
    pub fn note(&self) -> &str {
        match self {
            AnyExperiment::FullBatch(e) => &e.note,
            AnyExperiment::E5(e) => &e.note,
        }
    }
    /// The config file.
    pub fn file(&self) -> &Path {
        match self {
            AnyExperiment::FullBatch(e) => &e.file,
            AnyExperiment::E5(e) => &e.file,
        }
    }
    /// Number of runs.
    pub fn runs(&self) -> usize {
        match self {
            AnyExperiment::FullBatch(e) => e.protocol.runs,
            AnyExperiment::E5(e) => e.protocol.runs,
        }
    }
    /// Base seed (run `k` uses `seed + k`).
    pub fn seed(&self) -> u64 {
        match self {
            AnyExperiment::FullBatch(e) => e.protocol.seed,
            AnyExperiment::E5(e) => e.protocol.seed,
        }
    }
    /// Runs trained at once by one process.
    pub fn parallel_runs(&self) -> usize {
        match self {
            AnyExperiment::FullBatch(e) => e.protocol.parallel_runs.max(1),
            AnyExperiment::E5(_) => 1,
        }
    }
    /// The full-batch experiment, if it is one.
    pub fn as_full_batch(&self) -> Option<&Experiment> {
        match self {
            AnyExperiment::FullBatch(e) => Some(e),
            AnyExperiment::E5(_) => None,
        }
    }
}

/// Reads a config file of any kind and resolves one profile into validated experiments (a
/// full-batch file gives one per group).
pub fn load_any(file: &Path, profile: &str) -> Result<Vec<AnyExperiment>, ConfigError> {
    parse_any(&read(file)?, file, profile)
}

/// Parses config text of any kind (`file` is used in messages) and resolves `profile`.
pub fn parse_any(
    text: &str,
    file: &Path,
    profile: &str,
) -> Result<Vec<AnyExperiment>, ConfigError> {
    Ok(match kind_of(text, file)? {
        Kind::FullBatch => parse(text, file, profile)?
            .into_iter()
            .map(|e| AnyExperiment::FullBatch(Box::new(e)))
            .collect(),
        Kind::E5 => vec![AnyExperiment::E5(Box::new(e5::parse(text, file, profile)?))],
    })
}

/// The profiles a config file (of any kind) defines.
pub fn profiles(file: &Path) -> Result<Vec<String>, ConfigError> {
    let text = read(file)?;
    match kind_of(&text, file)? {
        Kind::FullBatch => {
            let parsed: ExperimentFile = parse_as_written(&text, file)?;
            Ok(parsed.profiles.keys().cloned().collect())
        }
        Kind::E5 => e5::profiles_of(&text, file),
    }
}

/// The sections a profile of a full-batch config may set (besides `note`).
const SECTIONS: [&str; 6] = [
    "experiment",
    "data",
    "network",
    "protocol",
    "strategies",
    "stability",
];

/// Parses config text (`file` is used in messages) and resolves `profile`.
pub fn parse(text: &str, file: &Path, profile: &str) -> Result<Vec<Experiment>, ConfigError> {
    let m = merge_profile(text, file, profile, &SECTIONS, |f: &ExperimentFile| {
        &f.profiles
    })?;
    validate(m.merged, file, profile, &m.ptag, m.note, m.resolved_toml)
}

/// Parses the resolved config a run records (`run-NNN/config.toml`: the file with the profile
/// already merged in and `[profiles]` removed) into validated experiments, naming `profile`
/// as the profile that was applied.
pub fn parse_resolved(
    text: &str,
    file: &Path,
    profile: &str,
) -> Result<Vec<Experiment>, ConfigError> {
    let parsed: ExperimentFile = parse_as_written(text, file)?;
    let table: toml::Table = toml::from_str(text).expect("parsed above");
    let resolved_toml = toml::to_string(&table).unwrap_or_default();
    let ptag = format!(" (profile {profile})");
    validate(parsed, file, profile, &ptag, String::new(), resolved_toml)
}

pub(crate) fn invalid(file: &Path, ptag: &str, key: &str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        file: file.into(),
        profile: ptag.into(),
        key: key.into(),
        reason: reason.into(),
    }
}

/// `Err(key, reason)` of a section check; [`validate`] adds the file and profile.
type Check = Result<(), (String, String)>;

fn fail(key: &str, reason: impl Into<String>) -> Check {
    Err((key.into(), reason.into()))
}

fn validate(
    f: ExperimentFile,
    file: &Path,
    profile: &str,
    ptag: &str,
    note: String,
    resolved_toml: String,
) -> Result<Vec<Experiment>, ConfigError> {
    let at = |(key, reason): (String, String)| invalid(file, ptag, &key, &reason);
    check_protocol(&f.protocol).map_err(at)?;
    check_data(&f.data, &f.protocol).map_err(at)?;
    check_experiment(&f.experiment).map_err(at)?;
    check_strategies(&f).map_err(at)?;
    let network = network_spec(&f.network, f.experiment.size).map_err(at)?;
    if let Some(st) = &f.stability {
        st.validate().map_err(at)?;
    }
    let multi = f.experiment.groups.len() > 1;
    let mut out = Vec::new();
    for gname in &f.experiment.groups {
        // Indices into the file's list, so that errors name the entry as written.
        let chosen: Vec<(usize, &StrategySection)> = f
            .strategies
            .iter()
            .enumerate()
            .filter(|(_, s)| s.only_groups.as_ref().is_none_or(|g| g.contains(gname)))
            .collect();
        if chosen.is_empty() {
            return Err(invalid(
                file,
                ptag,
                "strategies.only_groups",
                &format!("no strategy runs for group `{gname}` (every strategy's only_groups leaves it out)"),
            ));
        }
        let exp = Experiment {
            name: if multi {
                format!("{}-{gname}", f.experiment.id)
            } else {
                f.experiment.id.clone()
            },
            title: f.experiment.title.clone(),
            profile: profile.into(),
            note: note.clone(),
            group: gname.clone(),
            size: f.experiment.size,
            user_generators: f.experiment.user_groups.get(gname).cloned(),
            data: f.data.clone(),
            network: network.clone(),
            loss: f.network.loss,
            protocol: f.protocol.clone(),
            strategies: chosen
                .iter()
                .map(|(_, s)| {
                    (
                        StrategySpec {
                            name: s.name.clone(),
                            kind: s.kind,
                            sampling: s.sampling,
                            passes: s.passes,
                            regulariser: s.regulariser,
                        },
                        s.precision.unwrap_or(f.protocol.precision),
                    )
                })
                .collect(),
            stability: f.stability.clone(),
            file: file.into(),
            resolved_toml: resolved_toml.clone(),
        };
        let group = exp.build_group().map_err(|source| ConfigError::Group {
            file: file.into(),
            profile: ptag.into(),
            source,
        })?;
        check_group_fit(&f, &group, &chosen).map_err(at)?;
        out.push(exp);
    }
    Ok(out)
}

/// `[protocol]` on its own.
fn check_protocol(p: &ProtocolSection) -> Check {
    if !(p.learning_rate.is_finite() && p.learning_rate > 0.0) {
        return fail(
            "protocol.learning_rate",
            format!("must be positive, got {}", p.learning_rate),
        );
    }
    for (key, v) in [
        ("protocol.epochs", p.epochs),
        ("protocol.runs", p.runs),
        ("protocol.minibatch", p.minibatch),
        ("protocol.parallel_runs", p.parallel_runs),
    ] {
        if v == 0 {
            return fail(key, "must be at least 1");
        }
    }
    for (key, v) in [
        ("protocol.divergence_loss_factor", p.divergence_loss_factor),
        (
            "protocol.divergence_weight_factor",
            p.divergence_weight_factor,
        ),
    ] {
        if !(v.is_finite() && v > 1.0) {
            return fail(key, format!("must be a finite number above 1, got {v}"));
        }
    }
    if p.runs > MAX_RUNS {
        return fail(
            "protocol.runs",
            format!("must be at most {MAX_RUNS}, got {}", p.runs),
        );
    }
    if p.chunk_rows < p.minibatch {
        return fail(
            "protocol.chunk_rows",
            format!("must be at least the mini-batch size {}", p.minibatch),
        );
    }
    if let Some(e) = p.checkpoints.iter().flatten().find(|&&e| e > p.epochs) {
        return fail(
            "protocol.checkpoints",
            format!("epoch {e} is after the last epoch {}", p.epochs),
        );
    }
    Ok(())
}

/// `[data]`, and its fit with the mini-batch size.
fn check_data(d: &DataSection, p: &ProtocolSection) -> Check {
    if d.count < p.minibatch {
        return fail(
            "data.count",
            format!(
                "{} samples are fewer than one mini-batch of {}",
                d.count, p.minibatch
            ),
        );
    }
    for (key, v) in [("data.p_intra", d.p_intra), ("data.p_inter", d.p_inter)] {
        if let Some(v) = v.filter(|v| !(0.0..=1.0).contains(v)) {
            return fail(key, format!("a probability must be in [0, 1], got {v}"));
        }
    }
    if d.dataset != DatasetKind::Sbm && (d.p_intra.is_some() || d.p_inter.is_some()) {
        return fail(
            "data.p_intra",
            "only the sbm data set has edge probabilities",
        );
    }
    let npy_keys = [
        ("data.inputs", d.inputs.is_some()),
        ("data.targets", d.targets.is_some()),
        ("data.targets_kind", d.targets_kind.is_some()),
        ("data.channels", d.channels.is_some()),
        ("data.classes", d.classes.is_some()),
    ];
    if d.dataset == DatasetKind::Npy {
        for (key, given) in &npy_keys[..3] {
            if !given {
                return fail(
                    key,
                    "the npy data set needs data.inputs, data.targets and data.targets_kind",
                );
            }
        }
        if d.channels == Some(0) {
            return fail("data.channels", "must be at least 1");
        }
        if let Some(k) = d.classes {
            if d.targets_kind != Some(NpyTargetsKind::Classes) {
                return fail(
                    "data.classes",
                    "only class labels (targets_kind = \"classes\") have a number of classes",
                );
            }
            if k < 2 {
                return fail("data.classes", format!("must be at least 2, got {k}"));
            }
        }
        if d.mnist_dir.is_some() {
            return fail(
                "data.mnist_dir",
                "only the mnist14 data set reads IDX files",
            );
        }
    } else if let Some((key, _)) = npy_keys.iter().find(|(_, given)| *given) {
        return fail(key, "only the npy data set reads .npy files");
    }
    Ok(())
}

/// `[experiment]` on its own.
fn check_experiment(e: &ExperimentSection) -> Check {
    if e.groups.is_empty() {
        return fail("experiment.groups", "give at least one group");
    }
    check_name("experiment.id", &e.id)?;
    if e.groups.len() > 1 {
        // Each group names a folder `<id>-<group>`.
        for (i, g) in e.groups.iter().enumerate() {
            check_name(&format!("experiment.groups[{i}]"), g)?;
        }
    }
    Ok(())
}

/// The one rule for names that become folder or file names (experiment ids, strategy and
/// case names, the groups of a multi-group file): 1 to [`NAME_MAX`] characters, ASCII letters,
/// digits, `-`, `_` and `.`, starting with a letter or a digit (so never `..`, a hidden
/// file, a path or an empty name).
pub fn check_name(key: &str, name: &str) -> Result<(), (String, String)> {
    let ok = !name.is_empty()
        && name.len() <= NAME_MAX
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        return Ok(());
    }
    Err((
        key.into(),
        format!(
            "{name:?} cannot be a folder name: use 1 to {NAME_MAX} ASCII letters, digits, `-`, \
             `_` and `.`, starting with a letter or digit"
        ),
    ))
}

/// The longest name [`check_name`] accepts.
pub const NAME_MAX: usize = 64;

/// `[[strategies]]`: names unique, groups known, passes positive.
fn check_strategies(f: &ExperimentFile) -> Check {
    if f.strategies.is_empty() {
        return fail("strategies", "give at least one strategy");
    }
    let mut names = std::collections::HashSet::new();
    for (i, s) in f.strategies.iter().enumerate() {
        check_name(&format!("strategies[{i}].name"), &s.name)?;
        if !names.insert(s.name.as_str()) {
            return fail(
                &format!("strategies[{i}].name"),
                format!("`{}` appears twice", s.name),
            );
        }
        if let Some(g) = s
            .only_groups
            .iter()
            .flatten()
            .find(|g| !f.experiment.groups.contains(g))
        {
            return fail(
                &format!("strategies[{i}].only_groups"),
                format!("`{g}` is not one of experiment.groups"),
            );
        }
        if s.kind == StrategyKind::Augmented && s.passes == 0 {
            return fail(&format!("strategies[{i}].passes"), "must be at least 1");
        }
        if let Some(r) = &s.regulariser {
            if s.kind == StrategyKind::Equivariant {
                return fail(
                    &format!("strategies[{i}].regulariser"),
                    "applies to nominal or augmented strategies; equivariant training stays in \
                     E, where the penalty is zero",
                );
            }
            if !(r.gamma.is_finite() && r.gamma >= 0.0) {
                return fail(
                    &format!("strategies[{i}].regulariser.gamma"),
                    format!("must be finite and >= 0, got {}", r.gamma),
                );
            }
        }
    }
    Ok(())
}

/// `[network]`: the preset with its channel counts, or the explicit layers.
fn network_spec(n: &NetworkSection, size: usize) -> Result<NetworkSpec, (String, String)> {
    let err = |key: &str, reason: String| Err((key.to_string(), reason));
    match (&n.preset, &n.layers) {
        (Some(_), Some(_)) => err(
            "network.layers",
            "give either a preset or layers, not both".into(),
        ),
        (None, None) => err(
            "network.preset",
            "give a preset (e1, e2, e3) or layers".into(),
        ),
        (None, Some(_)) if n.activation != Activation::LeakyRelu || n.sharpness.is_some() => err(
            "network.activation",
            "applies to presets only; write the activation into network.layers".into(),
        ),
        (None, Some(layers)) => Ok(NetworkSpec {
            layers: layers.clone(),
        }),
        (Some(preset), None) => {
            let c = &n.channels;
            let need = match preset {
                Preset::E1 | Preset::E3 => 3,
                Preset::E2 => 1,
            };
            if c.len() != need || c.contains(&0) {
                return err(
                    "network.channels",
                    format!("preset {preset:?} needs {need} positive channel counts, got {c:?}"),
                );
            }
            let norm = n.normalisation;
            let mut spec = match preset {
                Preset::E1 => {
                    NetworkSpec::invariant_binary_classifier(size, c[0], c[1], c[2], norm)
                }
                Preset::E2 => NetworkSpec::invariant_classifier_with(
                    size,
                    c[0],
                    10,
                    norm,
                    n.loss,
                    Default::default(),
                ),
                Preset::E3 => NetworkSpec::equivariant_segmenter(size, [c[0], c[1], c[2]], norm),
            };
            match (n.activation, n.sharpness) {
                (Activation::LeakyRelu, Some(_)) => {
                    return err(
                        "network.sharpness",
                        "only for network.activation = \"smooth_leaky_relu\"".into(),
                    )
                }
                (Activation::LeakyRelu, None) => {}
                (Activation::SmoothLeakyRelu, sharpness) => {
                    let sharpness = sharpness.unwrap_or(10.0);
                    if !(sharpness.is_finite() && sharpness > 0.0) {
                        return err(
                            "network.sharpness",
                            format!("must be finite and > 0, got {sharpness}"),
                        );
                    }
                    for l in &mut spec.layers {
                        if let eqaug_nn::LayerSpec::LeakyRelu { slope } = *l {
                            *l = eqaug_nn::LayerSpec::SmoothLeakyRelu { slope, sharpness };
                        }
                    }
                }
            }
            Ok(spec)
        }
    }
}

/// The built group against the strategies chosen for it (`(index in the file, strategy)`)
/// and the data set.
fn check_group_fit(
    f: &ExperimentFile,
    group: &Group,
    chosen: &[(usize, &StrategySection)],
) -> Check {
    for (i, s) in chosen {
        if s.kind == StrategyKind::Augmented
            && s.sampling == Sampling::Exact
            && !group.is_enumerable()
        {
            return fail(
                &format!("strategies[{i}].sampling"),
                format!(
                    "exact averaging needs an enumerable group; `{}` has order {}",
                    group.name(),
                    group.order()
                ),
            );
        }
    }
    let n = f.experiment.size;
    let need = match f.data.dataset {
        DatasetKind::Sbm if n % 2 == 1 => Some("an even node count (two equal clusters)"),
        DatasetKind::Mnist14 if n != 14 => Some("14 (MNIST is resized to 14 x 14)"),
        _ => None,
    };
    match need {
        Some(need) => fail(
            "experiment.size",
            format!("{:?} data need {need}, got {n}", f.data.dataset),
        ),
        None => Ok(()),
    }
}
