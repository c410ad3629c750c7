//! A run's set-up, rebuilt the same way by every command: from an [`Experiment`] (a parsed
//! config and profile) the group, the data and its held-out split, the networks of both
//! precisions, and shape checks; from a results folder the experiment itself and any
//! checkpoint.
//!
//! ```no_run
//! use eqaug_harness::{config, setup::RunSetup};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let exp = &config::load("experiments/e1.toml".as_ref(), "quick")?[0];
//! let s = RunSetup::new(exp)?;
//! assert_eq!(s.data64.len(), exp.data.count);
//! // The final parameters of run 0's nominal strategy, as written by `eqaug run`:
//! let a = s.load_checkpoint::<f32>("runs/e1/run-000".as_ref(), "nominal", exp.protocol.epochs)?;
//! # Ok(()) }
//! ```

use crate::config::{self, ConfigError, DatasetKind, Experiment, Precision};
use crate::schema::{self, ExperimentRecord, RunRecord, SchemaError};
use eqaug_data::{DataError, Dataset, Targets};
use eqaug_dynamics::TrainData;
use eqaug_groups::{Group, GroupError, Real, Rep};
use eqaug_nn::{Network, NnError, Params};
use ndarray::{s, Array2};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What can stop a run's set-up; every variant names the experiment (or file) and keeps its
/// cause as the error source.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The group cannot be built.
    #[error("experiment `{experiment}`: cannot build group `{group}`")]
    Group {
        /// Experiment name.
        experiment: String,
        /// Group name.
        group: String,
        /// Why.
        #[source]
        source: GroupError,
    },
    /// Loading or generating the data failed.
    #[error("experiment `{experiment}`: cannot load or generate the {dataset:?} data")]
    Data {
        /// Experiment name.
        experiment: String,
        /// The data set.
        dataset: DatasetKind,
        /// Why (names the missing file and how to get it).
        #[source]
        source: DataError,
    },
    /// MNIST holds fewer digits than `data.count + protocol.held_out`.
    #[error(
        "experiment `{experiment}`: data.count = {count} training digits plus protocol.held_out \
         = {held_out} held-out digits are {} MNIST digits, but {} holds only {available}; \
         lower data.count or protocol.held_out, or point data.mnist_dir at a larger MNIST",
        count + held_out,
        path.display()
    )]
    NotEnoughDigits {
        /// Experiment name.
        experiment: String,
        /// `data.count`.
        count: usize,
        /// `protocol.held_out`.
        held_out: usize,
        /// Digits available.
        available: usize,
        /// Where they were read from.
        path: PathBuf,
    },
    /// The data do not fit the group.
    #[error(
        "experiment `{experiment}`: the data have {positions} positions per channel but group \
         `{group}` acts on {degree}"
    )]
    Positions {
        /// Experiment name.
        experiment: String,
        /// Positions per channel of the data.
        positions: usize,
        /// Group name.
        group: String,
        /// Points the group acts on.
        degree: usize,
    },
    /// The network cannot be built.
    #[error("experiment `{experiment}`: cannot build the {} network", precision.name())]
    Network {
        /// Experiment name.
        experiment: String,
        /// Its precision.
        precision: Precision,
        /// Why.
        #[source]
        source: NnError,
    },
    /// The `npy` data files cannot be used (names the file and the mismatch).
    #[error("experiment `{experiment}`: cannot use the npy data set")]
    Npy {
        /// Experiment name.
        experiment: String,
        /// Why.
        #[source]
        source: eqaug_data::npy::NpyError,
    },
    /// The `npy` files hold fewer samples than `data.count + protocol.held_out`.
    #[error(
        "experiment `{experiment}`: data.count = {count} training samples plus \
         protocol.held_out = {held_out} held-out samples are needed, but {} holds only \
         {available}; lower data.count or protocol.held_out",
        path.display()
    )]
    NotEnoughSamples {
        /// Experiment name.
        experiment: String,
        /// `data.count`.
        count: usize,
        /// `protocol.held_out`.
        held_out: usize,
        /// Samples in the files.
        available: usize,
        /// The inputs file.
        path: PathBuf,
    },
    /// The network's output does not fit the targets.
    #[error(
        "experiment `{experiment}`: the network has {outputs} outputs but the targets have \
         {columns} columns"
    )]
    OutputWidth {
        /// Experiment name.
        experiment: String,
        /// Network outputs.
        outputs: usize,
        /// Target columns.
        columns: usize,
    },
    /// A checkpoint cannot be read or does not fit the network.
    #[error("{}: cannot load the checkpoint", dir.display())]
    Checkpoint {
        /// The checkpoint folder.
        dir: PathBuf,
        /// Why.
        #[source]
        source: NnError,
    },
    /// A results folder's config does not parse or validate.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A results file cannot be read.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// A results folder is incomplete.
    #[error("{}: {message}", dir.display())]
    Results {
        /// The experiment folder.
        dir: PathBuf,
        /// What is missing.
        message: String,
    },
}

/// Everything a run of an experiment needs besides its seed: the group, the training data
/// and held-out inputs in both precisions, and the networks in both precisions (checked to fit
/// the data).
#[derive(Debug)]
pub struct RunSetup {
    /// The experiment.
    pub exp: Experiment,
    /// Its group.
    pub group: Arc<Group>,
    /// The training set (the first `data.count` samples), f64: `count x input width`.
    pub data64: TrainData<f64>,
    /// The training set rounded to f32.
    pub data32: TrainData<f32>,
    /// The held-out inputs (the `protocol.held_out` samples after the training set), f64:
    /// `held_out x input width`.
    pub held64: Array2<f64>,
    /// The held-out inputs rounded to f32.
    pub held32: Array2<f32>,
    /// The held-out targets (encoded as the training targets), f64: `held_out x outputs`.
    pub held_targets64: Array2<f64>,
    /// The held-out targets rounded to f32.
    pub held_targets32: Array2<f32>,
    /// The network in f64.
    pub net64: Network<f64>,
    /// The network in f32.
    pub net32: Network<f32>,
}

impl RunSetup {
    /// Builds the group, loads or generates the data, splits off the held-out samples and
    /// builds and checks both networks.
    pub fn new(exp: &Experiment) -> Result<Self, SetupError> {
        let group = build_group(exp)?;
        let (data64, held64, held_targets64) =
            split_held_out_with_targets(load_data(exp, &group)?, exp.protocol.held_out);
        let network = |precision, source| SetupError::Network {
            experiment: exp.name.clone(),
            precision,
            source,
        };
        let net64 = Network::<f64>::new(&exp.network, group.clone(), data64.input_rep, exp.loss)
            .map_err(|e| network(Precision::F64, e))?;
        let net32 = Network::<f32>::new(&exp.network, group.clone(), data64.input_rep, exp.loss)
            .map_err(|e| network(Precision::F32, e))?;
        if net64.output_width() != data64.targets.ncols() {
            return Err(SetupError::OutputWidth {
                experiment: exp.name.clone(),
                outputs: net64.output_width(),
                columns: data64.targets.ncols(),
            });
        }
        Ok(RunSetup {
            exp: exp.clone(),
            data32: cast_data(&data64),
            held32: held64.mapv(|v| v as f32),
            held_targets32: held_targets64.mapv(|v| v as f32),
            held_targets64,
            group,
            data64,
            held64,
            net64,
            net32,
        })
    }

    /// Rebuilds the set-up of a results folder written by `eqaug run` (see
    /// [`experiment_from_dir`]).
    pub fn from_dir(experiment_dir: &Path) -> Result<Self, SetupError> {
        RunSetup::new(&experiment_from_dir(experiment_dir)?)
    }

    /// The network of precision `T` (f32 or f64).
    pub fn network<T: Real>(&self) -> &Network<T> {
        use std::any::Any;
        let (a, b): (&dyn Any, &dyn Any) = (&self.net32, &self.net64);
        a.downcast_ref()
            .or_else(|| b.downcast_ref())
            .expect("Real is implemented for f32 and f64 only")
    }

    /// The parameters of `strategy` at `epoch` saved in a run folder (see
    /// [`schema::checkpoint_dir`]), in precision `T` whatever precision they were saved in.
    pub fn load_checkpoint<T: Real>(
        &self,
        run_dir: &Path,
        strategy: &str,
        epoch: usize,
    ) -> Result<Params<T>, SetupError> {
        let dir = schema::checkpoint_dir(run_dir, strategy, epoch);
        self.network::<T>()
            .zeros()
            .load_npy(&dir)
            .map_err(|source| SetupError::Checkpoint { dir, source })
    }
}

/// The experiment's group.
pub fn build_group(exp: &Experiment) -> Result<Arc<Group>, SetupError> {
    exp.build_group().map_err(|source| SetupError::Group {
        experiment: exp.name.clone(),
        group: exp.group.clone(),
        source,
    })
}

/// Loads or generates the experiment's data set: `data.count` training samples followed by
/// `protocol.held_out` held-out ones, with `data.input_offset` applied.
pub fn load_dataset(exp: &Experiment) -> Result<Dataset, SetupError> {
    let d = &exp.data;
    let total = d.count + exp.protocol.held_out;
    let data_err = |source| SetupError::Data {
        experiment: exp.name.clone(),
        dataset: d.dataset,
        source,
    };
    let mut ds: Dataset = match d.dataset {
        DatasetKind::Sbm => {
            let mut p = eqaug_data::sbm::SbmParams {
                nodes_per_cluster: exp.size / 2,
                count: total,
                ..Default::default()
            };
            if let Some(v) = d.p_intra {
                p.p_intra = v;
            }
            if let Some(v) = d.p_inter {
                p.p_inter = v;
            }
            eqaug_data::sbm::try_generate(&p, d.seed).map_err(data_err)?
        }
        DatasetKind::Mnist14 => {
            let m = match &d.mnist_dir {
                Some(dir) => eqaug_data::mnist::load_idx_dir(dir),
                None => eqaug_data::mnist::load_shipped(),
            }
            .map_err(data_err)?;
            if m.len() < total {
                return Err(SetupError::NotEnoughDigits {
                    experiment: exp.name.clone(),
                    count: d.count,
                    held_out: exp.protocol.held_out,
                    available: m.len(),
                    path: m.source.clone(),
                });
            }
            eqaug_data::mnist::try_mnist14(&m, Some(total)).map_err(data_err)?
        }
        DatasetKind::Shapes => {
            let p = eqaug_data::shapes::ShapesParams {
                size: exp.size,
                count: total,
                ..Default::default()
            };
            eqaug_data::shapes::try_generate(&p, d.seed).map_err(data_err)?
        }
        DatasetKind::Npy => {
            let group = build_group(exp)?;
            let npy_err = |source| SetupError::Npy {
                experiment: exp.name.clone(),
                source,
            };
            let missing = |key: &str| {
                npy_err(eqaug_data::npy::NpyError::Spec(format!(
                    "data.{key} is required"
                )))
            };
            let target_kind = match d.targets_kind.ok_or_else(|| missing("targets_kind"))? {
                config::NpyTargetsKind::Binary => eqaug_data::npy::NpyTargets::Binary,
                config::NpyTargetsKind::Classes => {
                    eqaug_data::npy::NpyTargets::Classes { classes: d.classes }
                }
                config::NpyTargetsKind::Masks => {
                    eqaug_data::npy::NpyTargets::Masks { channels: None }
                }
            };
            let spec = eqaug_data::npy::NpySpec {
                inputs: d.inputs.clone().ok_or_else(|| missing("inputs"))?,
                targets: d.targets.clone().ok_or_else(|| missing("targets"))?,
                target_kind,
                channels: d.channels.unwrap_or(1),
                positions: group.degree(),
            };
            let ds = eqaug_data::npy::load(&spec).map_err(npy_err)?;
            if ds.len() < total {
                return Err(SetupError::NotEnoughSamples {
                    experiment: exp.name.clone(),
                    count: d.count,
                    held_out: exp.protocol.held_out,
                    available: ds.len(),
                    path: spec.inputs,
                });
            }
            ds.subset(total)
        }
    };
    if d.input_offset != 0.0 {
        ds.offset_inputs(d.input_offset);
    }
    Ok(ds)
}

/// Loads or generates the experiment's data (see [`load_dataset`]), checks it against the
/// group and converts it, in f64, to eqaug-dynamics training data (one-hot classes, masks as
/// targets that move with the inputs). The first `data.count` rows are the training set, the
/// `protocol.held_out` rows after them the held-out samples (see [`split_held_out`]).
pub fn load_data(exp: &Experiment, group: &Group) -> Result<TrainData<f64>, SetupError> {
    let ds = load_dataset(exp)?;
    if ds.positions != group.degree() {
        return Err(SetupError::Positions {
            experiment: exp.name.clone(),
            positions: ds.positions,
            group: group.name().to_string(),
            degree: group.degree(),
        });
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
///
/// # Panics
/// If `held_out` exceeds the number of rows.
pub fn split_held_out(mut d: TrainData<f64>, held_out: usize) -> (TrainData<f64>, Array2<f64>) {
    let n = d.x.nrows() - held_out;
    let held = d.x.slice(s![n.., ..]).to_owned();
    d.x = d.x.slice(s![..n, ..]).to_owned();
    d.targets = d.targets.slice(s![..n, ..]).to_owned();
    (d, held)
}

/// As [`split_held_out`], also returning the held-out targets:
/// `(training set, held-out inputs, held-out targets)`.
///
/// # Panics
/// If `held_out` exceeds the number of rows.
pub fn split_held_out_with_targets(
    d: TrainData<f64>,
    held_out: usize,
) -> (TrainData<f64>, Array2<f64>, Array2<f64>) {
    let n = d.x.nrows() - held_out;
    let held_targets = d.targets.slice(s![n.., ..]).to_owned();
    let (d, held) = split_held_out(d, held_out);
    (d, held, held_targets)
}

/// The data rounded to another precision.
pub fn cast_data<T: Real>(d: &TrainData<f64>) -> TrainData<T> {
    TrainData {
        x: d.x.mapv(T::from_f64_lossy),
        targets: d.targets.mapv(T::from_f64_lossy),
        input_rep: d.input_rep,
        target_rep: d.target_rep,
    }
}

/// Rebuilds the [`Experiment`] of a results folder written by `eqaug run`: the resolved
/// config of its first finished run (`run-NNN/config.toml`), with the run count, base seed
/// and per-strategy precisions of `experiment.json` and `run.json` (which record the
/// command-line overrides).
pub fn experiment_from_dir(experiment_dir: &Path) -> Result<Experiment, SetupError> {
    let record = ExperimentRecord::read(experiment_dir)?;
    let results = |message: String| SetupError::Results {
        dir: experiment_dir.to_path_buf(),
        message,
    };
    let runs = record.runs.unwrap_or(0);
    let run_dir = (0..runs.max(1))
        .map(|r| schema::run_dir(experiment_dir, r))
        .find(|d| d.join(schema::RUN_JSON).is_file())
        .ok_or_else(|| results("no finished run (run-NNN/run.json) to rebuild from".into()))?;
    let config_path = run_dir.join(schema::CONFIG_TOML);
    let text = std::fs::read_to_string(&config_path)
        .map_err(|e| SchemaError::Io(crate::io::IoError::new(&config_path, e)))?;
    let profile = record.profile.clone().unwrap_or_default();
    let name = record.experiment.clone().unwrap_or_else(|| {
        experiment_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let mut exp = config::parse_resolved(&text, &config_path, &profile)?
        .into_iter()
        .find(|e| e.name == name)
        .ok_or_else(|| {
            results(format!(
                "{} defines no experiment `{name}`",
                config_path.display()
            ))
        })?;
    if runs > 0 {
        exp.protocol.runs = runs;
    }
    if let Some(p) = record.precision {
        exp.protocol.precision = p;
    }
    for (spec, precision) in &mut exp.strategies {
        if let Some(p) = record
            .strategies
            .iter()
            .find(|s| s.name == spec.name)
            .and_then(|s| s.precision)
        {
            *precision = p;
        }
    }
    let run = RunRecord::read(&run_dir)?;
    if let (Some(r), Some(seed)) = (run.run, run.seed) {
        exp.protocol.seed = seed.wrapping_sub(r as u64);
    }
    Ok(exp)
}
