//! The training of one run of a full-batch experiment (E1-E4, the ablations): every strategy
//! from one shared `A0`, with `metrics.csv`, `config.toml`, checkpoints and the held-out
//! equivariance error written into the run's temporary folder. The lifecycle around it
//! (locks, fingerprints, atomic renames) is [`super`]'s.

use super::{RunError, TrainedRun, Trainer};
use crate::config::{Experiment, Precision};
use crate::progress::Progress;
use crate::schema::{self, AnyExperimentRecord, ExperimentRecord, RunRecord, StrategyRecord};
use crate::setup::RunSetup;
use eqaug_dynamics::{train_with_held_out, EpochMetrics, HeldOut, StrategySpec, TrainData};
use eqaug_groups::Real;
use eqaug_nn::{Network, Params};
use ndarray::Array2;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A full-batch experiment's trainer: its group, data and networks, built once.
pub(crate) struct FullBatch {
    s: RunSetup,
}

impl FullBatch {
    /// Builds the group, data and networks (everything that can fail on the config or the
    /// data fails here, before a file is written).
    pub(crate) fn new(exp: &Experiment) -> Result<Self, RunError> {
        Ok(FullBatch {
            s: RunSetup::new(exp)?,
        })
    }
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

impl Trainer for FullBatch {
    fn record(&self, wall_seconds: f64) -> AnyExperimentRecord {
        AnyExperimentRecord::FullBatch(experiment_record(&self.s.exp, wall_seconds))
    }

    fn ticks_per_run(&self) -> u64 {
        let epochs = self.s.exp.protocol.epochs as u64 + 1;
        self.s
            .exp
            .strategies
            .iter()
            .map(|(spec, _)| epochs.saturating_mul(self.epoch_cost(spec)))
            .fold(0u64, u64::saturating_add)
    }

    fn train_run(
        &self,
        run: usize,
        seed: u64,
        tmp: &Path,
        progress: &Progress,
    ) -> Result<TrainedRun, RunError> {
        let s = &self.s;
        let exp = &s.exp;
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
            run_name: schema::run_dir_name(run),
            seed,
            protocol: exp.dynamics_protocol(),
            tmp: tmp.to_path_buf(),
            checkpoints: exp.checkpoint_epochs(),
            ckpt_err: None,
            eq_err: BTreeMap::new(),
        };
        for (spec, precision) in &exp.strategies {
            let t0 = Instant::now();
            let outcome = match precision {
                Precision::F32 => {
                    let held = (&s.held32, &s.held_targets32);
                    self.train_one(&s.net32, &s.data32, held, &a0_32, spec, &mut st, progress)
                }
                Precision::F64 => self.train_one(
                    &s.net64,
                    &s.data64,
                    (&s.held64, &s.held_targets64),
                    a0_64.as_ref().expect("kept for f64 strategies"),
                    spec,
                    &mut st,
                    progress,
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
        schema::write_metrics_csv(&tmp.join(schema::METRICS_CSV), &layers, &metrics)?;
        crate::io::write_atomic(&tmp.join(schema::CONFIG_TOML), exp.resolved_toml.as_bytes())?;
        let summary = summary(exp, &metrics);
        Ok(TrainedRun {
            record: RunRecord {
                strategy_seconds,
                layers,
                checkpoints: st.checkpoints,
                equivariance_error: st.eq_err,
                ..RunRecord::default()
            },
            failures,
            summary,
        })
    }
}

impl FullBatch {
    /// What an epoch of `spec` costs against a nominal epoch (for the progress ETA): the
    /// passes over the data of an augmented strategy, every group element for the exact
    /// average.
    fn epoch_cost(&self, spec: &StrategySpec) -> u64 {
        match (spec.kind, spec.sampling) {
            (eqaug_dynamics::StrategyKind::Augmented, eqaug_dynamics::Sampling::Exact) => {
                u64::try_from(self.s.group.order()).unwrap_or(u64::MAX)
            }
            (eqaug_dynamics::StrategyKind::Augmented, _) => spec.passes.max(1) as u64,
            _ => 1,
        }
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
        progress: &Progress,
    ) -> Result<eqaug_dynamics::RunOutcome, eqaug_dynamics::TrainError> {
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
        let cost = self.epoch_cost(spec);
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
            data,
            protocol,
            std::slice::from_ref(spec),
            a0,
            seed,
            test.as_mut(),
            &mut |m, params| {
                progress.epoch_weighted(run_name, &m.strategy, m.epoch, last, m.loss, cost);
                if m.epoch == last && held.nrows() > 0 {
                    let mut rng = eqaug_dynamics::strategy_rng(seed, "equivariance-error");
                    let e = eqaug_dynamics::equivariance_error(
                        net,
                        params,
                        held.view(),
                        protocol.minibatch,
                        8,
                        &mut rng,
                    )
                    .expect("the held-out split was checked against the network");
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

/// The last loss and distances of every strategy, for the run's log line.
fn summary(exp: &Experiment, metrics: &[EpochMetrics]) -> String {
    let mut parts = Vec::new();
    for (s, _) in &exp.strategies {
        if let Some(m) = metrics.iter().rfind(|m| m.strategy == s.name) {
            parts.push(format!(
                "{} loss {:.4} |A-A0| {:.3e} |A_Eperp| {:.3e}",
                s.name, m.loss, m.dist_from_start, m.dist_to_e
            ));
        }
    }
    parts.join("; ")
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
        config_key: None,
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
    super::fnv_hex(&text)
}
