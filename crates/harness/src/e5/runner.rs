//! Runs an E5 experiment: for every run of the shard, the phase-1 (equivariant) model of each
//! support the cases need, then every case's phase 2, writing the files of
//! [`super::schema`].
//!
//! Resumable at three levels: a finished run (`run-NNN/run.json`) is skipped; inside an
//! unfinished run (`run-NNN.tmp/`), finished phase-1 models and cases (folders whose JSON
//! record has the current key) are reused, so phase 2 can be rerun without phase 1 (delete a
//! case folder, or change only `[phase2]` and rerun into a fresh `--out` after copying the
//! `phase1-*` folders). Everything is written to a `.tmp` name first and renamed.

use super::config::{CaseSection, E5Experiment, Parametrisation, Support};
use super::schema::{
    self, CaseJson, CaseMeta, EpochRow, ExperimentJson, FailureJson, Phase1Json, ProbeJson,
    RunJson, StepProbe, StepRow,
};
use crate::config::Precision;
use crate::runner::{fnv_hex as fnv, shard_runs, RunOptions};
use crate::schema::SchemaError;
use eqaug_data::mnist_rotations as data5;
use eqaug_dynamics::sgd::{self, ClassData, SgdConfig, SgdModel, StepRecord};
use eqaug_dynamics::strategy_rng;
use eqaug_groups::Real;
use eqaug_nn::support_cnn::{SupportCnn, SupportCnnSpec};
use eqaug_nn::{Params, Sequential};
use rand::seq::SliceRandom;
use std::cell::RefCell;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Errors of an E5 run, naming the file or the stage at fault.
#[derive(Debug, thiserror::Error)]
pub enum E5RunError {
    /// Reading or writing results.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// Writing a file.
    #[error(transparent)]
    Io(#[from] crate::io::IoError),
    /// Loading the digits.
    #[error("E5 data: {0}")]
    Data(#[from] eqaug_data::DataError),
    /// Building a network or loading weights.
    #[error("E5 network ({what}): {source}")]
    Network {
        /// Which network.
        what: String,
        /// The error.
        #[source]
        source: eqaug_nn::NnError,
    },
    /// Training refused its inputs.
    #[error("E5 training ({what}): {source}")]
    Train {
        /// Which phase and model.
        what: String,
        /// The error.
        #[source]
        source: eqaug_dynamics::TrainError,
    },
    /// A finished run was made with another configuration.
    #[error(
        "{}: made with a different configuration (the config file, profile, seed or \
         precision changed); move {} away or choose another --out",
        path.display(), dir.display()
    )]
    ConfigChanged {
        /// The run.json at fault.
        path: PathBuf,
        /// The experiment folder.
        dir: PathBuf,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> E5RunError + '_ {
    move |source| E5RunError::Schema(SchemaError::Io(crate::io::IoError::new(path, source)))
}

/// What [`run_e5`] did.
#[derive(Clone, Debug)]
pub struct E5Summary {
    /// Experiment name.
    pub experiment: String,
    /// Runs finished now.
    pub finished: Vec<usize>,
    /// Runs skipped because they were finished before.
    pub skipped: Vec<usize>,
    /// Divergences: `run r, <model>: <error>`.
    pub failures: Vec<String>,
    /// Wall time of this call.
    pub wall_seconds: f64,
}

/// Fingerprint of a phase-1 model: data, channels, phase 1, precision, chunk, seed, support.
fn phase1_key(exp: &E5Experiment, seed: u64, support: Support) -> String {
    fnv(&format!(
        "{:?}|{:?}|{:?}|{}|chunk {}|{seed}|{}",
        exp.data,
        exp.channels,
        exp.phase1,
        exp.protocol.precision.name(),
        exp.protocol.chunk_rows,
        support.name()
    ))
}

/// Fingerprint of a case: its phase-1 model's key, phase 2, the probe, the case.
fn case_key(exp: &E5Experiment, seed: u64, case: &CaseSection) -> String {
    fnv(&format!(
        "{}|{:?}|{}|{}|{}|{}",
        phase1_key(exp, seed, case.support),
        exp.phase2,
        exp.protocol.probe_digits,
        case.name,
        case.support.name(),
        case.parametrisation.name()
    ))
}

/// Fingerprint of the whole config less the number of runs.
pub fn config_key(exp: &E5Experiment) -> String {
    let mut table: toml::Table = toml::from_str(&exp.resolved_toml).unwrap_or_default();
    if let Some(toml::Value::Table(p)) = table.get_mut("protocol") {
        p.remove("runs");
    }
    fnv(&format!(
        "{}\nname={} profile={} seed={} precision={}",
        toml::to_string(&table).unwrap_or_default(),
        exp.name,
        exp.profile,
        exp.protocol.seed,
        exp.protocol.precision.name()
    ))
}

/// The data of every run, in the training precision.
struct Data<T> {
    train: ClassData<T>,
    test: ClassData<T>,
    aug: ClassData<T>,
    /// The probe's closed batch: the first `probe_digits` training digits and their rotations.
    closed: Option<ClassData<T>>,
    source: String,
}

fn class_data<T: Real>(d: &eqaug_data::Dataset, what: &str) -> Result<ClassData<T>, E5RunError> {
    let (labels, classes) = match &d.targets {
        eqaug_data::Targets::Classes { labels, classes } => (labels.clone(), *classes),
        _ => unreachable!("E5 data are labelled digits"),
    };
    ClassData::new(d.x.view(), labels, classes).map_err(|source| E5RunError::Train {
        what: format!("{what} set"),
        source,
    })
}

fn load_data<T: Real>(exp: &E5Experiment) -> Result<Data<T>, E5RunError> {
    let d = data5::load(
        exp.data.mnist_dir.as_deref(),
        exp.data.train,
        exp.data.test,
        data5::Standardisation::Fixed,
    )?;
    let aug = data5::with_rotations(&d.train)?;
    let k = exp.protocol.probe_digits;
    let closed = if k > 0 {
        Some(class_data(
            &data5::with_rotations(&d.train.subset(k))?,
            "probe",
        )?)
    } else {
        None
    };
    Ok(Data {
        train: class_data(&d.train, "training")?,
        test: class_data(&d.test, "test")?,
        aug: class_data(&aug, "augmented training")?,
        closed,
        source: d.source,
    })
}

/// Runs the experiment's runs (those of the shard, skipping finished ones).
pub fn run_e5(exp: &E5Experiment, opts: &RunOptions) -> Result<E5Summary, E5RunError> {
    let mut exp = exp.clone();
    if let Some(r) = opts.runs {
        exp.protocol.runs = r;
    }
    if let Some(s) = opts.seed {
        exp.protocol.seed = s;
    }
    if let Some(p) = opts.precision {
        exp.protocol.precision = p;
    }
    match exp.protocol.precision {
        Precision::F32 => run_typed::<f32>(&exp, opts),
        Precision::F64 => run_typed::<f64>(&exp, opts),
    }
}

fn run_typed<T: Real>(exp: &E5Experiment, opts: &RunOptions) -> Result<E5Summary, E5RunError> {
    let start = Instant::now();
    let data = load_data::<T>(exp)?;
    let dir = opts.out.join(&exp.name);
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    write_experiment_json(exp, &dir, &data)?;
    let key = config_key(exp);
    let mut summary = E5Summary {
        experiment: exp.name.clone(),
        finished: Vec::new(),
        skipped: Vec::new(),
        failures: Vec::new(),
        wall_seconds: 0.0,
    };
    for r in shard_runs(exp.protocol.runs, opts.shard) {
        let done = schema::run_dir(&dir, r).join("run.json");
        if done.is_file() {
            let old: RunJson = schema::read_json(&done)?;
            if old.config_key != key {
                return Err(E5RunError::ConfigChanged { path: done, dir });
            }
            summary.skipped.push(r);
            continue;
        }
        let failures = one_run(exp, &dir, r, &data, &key)?;
        summary.failures.extend(failures);
        summary.finished.push(r);
    }
    write_experiment_json(exp, &dir, &data)?;
    summary.wall_seconds = start.elapsed().as_secs_f64();
    Ok(summary)
}

fn write_experiment_json<T: Real>(
    exp: &E5Experiment,
    dir: &Path,
    data: &Data<T>,
) -> Result<(), E5RunError> {
    let mut wall = 0.0;
    for r in 0..exp.protocol.runs {
        if let Ok(j) = schema::read_json::<RunJson>(&schema::run_dir(dir, r).join("run.json")) {
            wall += j.wall_seconds;
        }
    }
    let j = ExperimentJson {
        kind: super::config::KIND.into(),
        experiment: exp.name.clone(),
        title: exp.title.clone(),
        profile: exp.profile.clone(),
        note: exp.note.clone(),
        precision: exp.protocol.precision.name().into(),
        runs: exp.protocol.runs,
        channels: exp.channels,
        phase1: exp.phase1.clone(),
        phase2: exp.phase2.clone(),
        cases: exp
            .cases
            .iter()
            .map(|c| CaseMeta {
                name: c.name.clone(),
                support: c.support,
                parametrisation: c.parametrisation,
            })
            .collect(),
        data_source: data.source.clone(),
        train: data.train.len(),
        test: data.test.len(),
        probe_digits: exp.protocol.probe_digits,
        wall_seconds: wall,
        config_file: exp.file.display().to_string(),
    };
    Ok(schema::write_json(&dir.join("experiment.json"), &j)?)
}

fn nn_support(s: Support) -> eqaug_nn::conv::Support {
    match s {
        Support::Cross => eqaug_nn::conv::Support::Cross,
        Support::Skew => eqaug_nn::conv::Support::Skew,
    }
}

fn spec(exp: &E5Experiment, s: Support, p: eqaug_nn::conv::Parametrisation) -> SupportCnnSpec {
    SupportCnnSpec {
        channels: exp.channels,
        ..SupportCnnSpec::paper(nn_support(s), p)
    }
}

fn sgd_config(
    p: &super::config::PhaseSection,
    protocol: &super::config::ProtocolSection,
    per_step: bool,
) -> SgdConfig {
    SgdConfig {
        learning_rate: p.learning_rate,
        batch_size: p.minibatch,
        epochs: p.epochs,
        record_step_distances: per_step,
        eval_chunk: protocol.eval_rows,
        chunk_rows: Some(protocol.chunk_rows),
    }
}

/// `sqrt(sum of squares)`.
fn total(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// Distance in kernel space between two parameter vectors of `net`.
fn kernel_distance<T: Real>(net: &SupportCnn<T>, a: &Params<T>, b: &Params<T>) -> f64 {
    let mut d = a.clone();
    d.axpy(-T::one(), b);
    total(&net.kernel_space_norms(&d))
}

fn epoch_row(phase: u8, rec: &sgd::EpochRecord, dist_from_start: f64) -> EpochRow {
    let d = |i: usize| rec.distances.get(i).copied().unwrap_or(f64::NAN);
    EpochRow {
        phase,
        epoch: rec.epoch,
        train_loss: rec.train_loss,
        train_accuracy: rec.train_accuracy,
        test_loss: rec.test_loss,
        test_accuracy: rec.test_accuracy,
        dist_to_e: total(&rec.distances),
        dist_from_start,
        dist_to_e_conv1: d(0),
        dist_to_e_conv2: d(1),
        dist_to_e_conv3: d(2),
        dist_to_e_linear: d(3),
    }
}

/// Removes a folder left by an interrupted write.
/// The failure of a phase's training, if any; otherwise saves its final parameters to
/// `dir/params`.
fn save_unless_failed<T: Real>(
    outcome: &sgd::SgdOutcome,
    params: &Params<T>,
    dir: &Path,
    net_err: impl FnOnce(eqaug_nn::NnError) -> E5RunError,
) -> Result<Option<FailureJson>, E5RunError> {
    let failure = outcome.failure.as_ref().map(|f| FailureJson {
        epoch: f.epoch,
        step: Some(f.step),
        error: f.to_string(),
    });
    if failure.is_none() {
        params.save_npy(&dir.join("params")).map_err(net_err)?;
    }
    Ok(failure)
}

fn clear(path: &Path) -> Result<(), E5RunError> {
    if path.exists() {
        std::fs::remove_dir_all(path).map_err(io(path))?;
    }
    Ok(())
}

fn log(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// A trained phase-1 model and its parameters.
type Trained<T> = (SupportCnn<T>, Params<T>);

/// One run: phase-1 models, then the cases; returns the divergences.
fn one_run<T: Real>(
    exp: &E5Experiment,
    dir: &Path,
    run: usize,
    data: &Data<T>,
    key: &str,
) -> Result<Vec<String>, E5RunError> {
    let t0 = Instant::now();
    let seed = exp.seed_of(run);
    let final_dir = schema::run_dir(dir, run);
    let tmp = dir.join(format!("run-{run:03}.tmp"));
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let mut failures = Vec::new();
    let mut phase1: Vec<(Support, Option<Trained<T>>)> = Vec::new();
    for s in exp.supports() {
        let p = phase1_model(exp, &tmp, run, seed, s, data)?;
        if p.is_none() {
            failures.push(format!("run {run}, phase1-{}: diverged", s.name()));
        }
        phase1.push((s, p));
    }
    for case in &exp.cases {
        let eq = phase1
            .iter()
            .find(|(s, _)| *s == case.support)
            .and_then(|(_, p)| p.as_ref());
        let Some((eq_net, eq_params)) = eq else {
            continue; // its phase-1 model diverged: recorded above
        };
        if let Some(f) = phase2_case(exp, &tmp, run, seed, case, eq_net, eq_params, data)? {
            failures.push(format!("run {run}, {}: {f}", case.name));
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    schema::write_json(
        &tmp.join("run.json"),
        &RunJson {
            run,
            seed,
            config_key: key.into(),
            cases: exp.cases.iter().map(|c| c.name.clone()).collect(),
            wall_seconds: wall,
            eqaug_version: env!("CARGO_PKG_VERSION").into(),
        },
    )?;
    clear(&final_dir)?;
    std::fs::rename(&tmp, &final_dir).map_err(io(&final_dir))?;
    log(&format!(
        "[{}] run {}/{} done in {:.1} s{}",
        exp.name,
        run + 1,
        exp.protocol.runs,
        wall,
        if failures.is_empty() {
            String::new()
        } else {
            format!(" ({})", failures.join("; "))
        }
    ));
    Ok(failures)
}

/// The phase-1 model of `support` for a run: reused from `run_tmp` if finished with the same
/// key, else trained and saved. `None` if it diverged.
fn phase1_model<T: Real>(
    exp: &E5Experiment,
    run_tmp: &Path,
    run: usize,
    seed: u64,
    support: Support,
    data: &Data<T>,
) -> Result<Option<Trained<T>>, E5RunError> {
    let s = spec(exp, support, eqaug_nn::conv::Parametrisation::Equivariant);
    let net_err = |source| E5RunError::Network {
        what: format!("equivariant, {}", support.name()),
        source,
    };
    let net = SupportCnn::<T>::new(&s, &mut strategy_rng(seed, "e5-basis")).map_err(net_err)?;
    let key = phase1_key(exp, seed, support);
    let dir = schema::phase1_dir(run_tmp, support);
    if let Ok(j) = schema::read_json::<Phase1Json>(&dir.join("phase1.json")) {
        if j.key == key {
            if j.failure.is_some() {
                return Ok(None);
            }
            let p = net.zeros().load_npy(&dir.join("params")).map_err(net_err)?;
            log(&format!(
                "[{}] run {run}: reusing phase1-{}",
                exp.name,
                support.name()
            ));
            return Ok(Some((net, p)));
        }
    }
    clear(&dir)?;
    let tmp = run_tmp.join(format!("phase1-{}.tmp", support.name()));
    clear(&tmp)?;
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let t0 = Instant::now();
    let mut params = net.init_params(&mut strategy_rng(
        seed,
        &format!("e5-init-{}", support.name()),
    ));
    let start = params.clone();
    let mut rows = Vec::new();
    let cfg = sgd_config(&exp.phase1, &exp.protocol, false);
    let outcome = sgd::sgd(
        &net,
        &mut params,
        &data.train,
        Some(&data.test),
        &cfg,
        &mut strategy_rng(seed, &format!("e5-phase1-{}", support.name())),
        &mut |_| {},
        &mut |rec, p| rows.push(epoch_row(1, rec, kernel_distance(&net, p, &start))),
    )
    .map_err(|source| E5RunError::Train {
        what: format!("phase 1, {}", support.name()),
        source,
    })?;
    schema::write_csv(&tmp.join("epochs.csv"), &rows)?;
    let failure = save_unless_failed(&outcome, &params, &tmp, net_err)?;
    schema::write_json(
        &tmp.join("phase1.json"),
        &Phase1Json {
            key,
            seed,
            support,
            dim_per_channel_pair: match support {
                Support::Cross => 2,
                Support::Skew => 1,
            },
            parameters: params.len(),
            wall_seconds: t0.elapsed().as_secs_f64(),
            failure: failure.clone(),
        },
    )?;
    std::fs::rename(&tmp, &dir).map_err(io(&dir))?;
    Ok(failure.is_none().then_some((net, params)))
}

/// The model on Omega, wrapped so that every distance measurement after a step also records
/// the step's kick off E ∩ L (`||Pi_perp(A_k - A_{k-1})||`) and the distance from the phase-2
/// start: the SGD loop measures distances right after each step, with the new parameters.
struct Recorder<'a, T: Real> {
    net: &'a SupportCnn<T>,
    start: Params<T>,
    prev: RefCell<Params<T>>,
    /// (kick, distance from start) of the last measurement.
    last: RefCell<(f64, f64)>,
}

impl<T: Real> SgdModel<T> for Recorder<'_, T> {
    fn sequential(&self) -> &Sequential<T> {
        self.net.sequential()
    }
    fn layer_names(&self) -> Vec<String> {
        SgdModel::layer_names(self.net)
    }
    fn constrain_gradient(&self, grads: &mut Params<T>) {
        self.net.constrain_gradient(grads)
    }
    fn distances_to_e(&self, params: &Params<T>) -> Vec<f64> {
        let mut prev = self.prev.borrow_mut();
        let mut step = params.clone();
        step.axpy(-T::one(), &prev);
        let kick = total(&self.net.distances_to_e(&step));
        *self.last.borrow_mut() = (kick, kernel_distance(self.net, params, &self.start));
        prev.copy_from(params);
        self.net.distances_to_e(params)
    }
    fn kernel_space_norms(&self, grads: &Params<T>) -> Vec<f64> {
        self.net.kernel_space_norms(grads)
    }
}

/// One SGD step of `net` from `start` on all of `batch`: the distance to E ∩ L after it and
/// the distance moved.
fn probe_step<T: Real>(
    net: &SupportCnn<T>,
    start: &Params<T>,
    batch: &ClassData<T>,
    lr: f64,
    eval_rows: usize,
) -> Result<StepProbe, eqaug_dynamics::TrainError> {
    let mut p = start.clone();
    let cfg = SgdConfig {
        learning_rate: lr,
        batch_size: batch.len(),
        epochs: 1,
        record_step_distances: false,
        eval_chunk: eval_rows,
        chunk_rows: None,
    };
    sgd::sgd(
        net,
        &mut p,
        batch,
        None,
        &cfg,
        &mut strategy_rng(0, "e5-probe-order"),
        &mut |_| {},
        &mut |_, _| {},
    )?;
    Ok(StepProbe {
        dist_to_e: total(&net.distances_to_e(&p)),
        dist_moved: kernel_distance(net, &p, start),
        norm_after: total(&net.kernel_space_norms(&p)),
    })
}

/// Rows `rows` of a data set.
fn pick<T: Real>(d: &ClassData<T>, rows: &[usize]) -> ClassData<T> {
    ClassData {
        x: d.x.select(ndarray::Axis(0), rows),
        labels: rows.iter().map(|&r| d.labels[r]).collect(),
        classes: d.classes,
    }
}

/// Phase 2 of one case; returns the divergence, if any.
#[allow(clippy::too_many_arguments)]
fn phase2_case<T: Real>(
    exp: &E5Experiment,
    run_tmp: &Path,
    run: usize,
    seed: u64,
    case: &CaseSection,
    eq_net: &SupportCnn<T>,
    eq_params: &Params<T>,
    data: &Data<T>,
) -> Result<Option<String>, E5RunError> {
    let key = case_key(exp, seed, case);
    let dir = schema::case_dir(run_tmp, &case.name);
    if let Ok(j) = schema::read_json::<CaseJson>(&dir.join("case.json")) {
        if j.key == key {
            return Ok(j.failure.map(|f| f.error));
        }
    }
    clear(&dir)?;
    let tmp = run_tmp.join(format!("{}.tmp", case.name));
    clear(&tmp)?;
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let t0 = Instant::now();
    let p = match case.parametrisation {
        Parametrisation::Unitary => eqaug_nn::conv::Parametrisation::Unitary,
        Parametrisation::Nonunitary => eqaug_nn::conv::Parametrisation::NonUnitary,
    };
    let net_err = |source| E5RunError::Network {
        what: case.name.clone(),
        source,
    };
    let net = SupportCnn::<T>::new(
        &spec(exp, case.support, p),
        &mut strategy_rng(seed, &format!("e5-basis-{}", case.name)),
    )
    .map_err(net_err)?;
    let (start, load) = net
        .load_from_equivariant(eq_net, eq_params)
        .map_err(net_err)?;
    let load_residual = load
        .least_squares_residuals
        .iter()
        .chain(&load.kernel_mismatch)
        .fold(0.0f64, |a, &b| a.max(b));
    let train_err = |what: &str| {
        let what = format!("{what}, {}", case.name);
        move |source| E5RunError::Train { what, source }
    };

    // The one-step probe: a batch closed under C_4 against a shuffled one of the same size.
    let probe = match &data.closed {
        Some(closed) => {
            let mut order: Vec<usize> = (0..data.aug.len()).collect();
            order.shuffle(&mut strategy_rng(seed, "e5-probe"));
            let shuffled = pick(&data.aug, &order[..closed.len().min(order.len())]);
            let lr = exp.phase2.learning_rate;
            let ev = exp.protocol.eval_rows;
            Some(ProbeJson {
                digits: exp.protocol.probe_digits,
                start_dist_to_e: total(&net.distances_to_e(&start)),
                closed: probe_step(&net, &start, closed, lr, ev).map_err(train_err("probe"))?,
                shuffled: probe_step(&net, &start, &shuffled, lr, ev)
                    .map_err(train_err("probe"))?,
            })
        }
        None => None,
    };

    let rec = Recorder {
        net: &net,
        start: start.clone(),
        prev: RefCell::new(start.clone()),
        last: RefCell::new((0.0, 0.0)),
    };
    let d0 = net.distances_to_e(&start);
    let layer = |v: &[f64], i: usize| v.get(i).copied().unwrap_or(f64::NAN);
    let mut steps = vec![StepRow {
        step: 0,
        epoch: 0,
        loss: f64::NAN,
        grad_norm: f64::NAN,
        grad_norm_kernel: f64::NAN,
        dist_to_e: total(&d0),
        dist_from_start: 0.0,
        kick: 0.0,
        dist_to_e_conv1: layer(&d0, 0),
        dist_to_e_conv2: layer(&d0, 1),
        dist_to_e_conv3: layer(&d0, 2),
        dist_to_e_linear: layer(&d0, 3),
    }];
    let mut epochs = Vec::new();
    let mut params = start.clone();
    let cfg = sgd_config(&exp.phase2, &exp.protocol, true);
    let outcome = sgd::sgd(
        &rec,
        &mut params,
        &data.aug,
        Some(&data.test),
        &cfg,
        // The same shuffles for every case of a run: the cases differ only in the model.
        &mut strategy_rng(seed, "e5-phase2"),
        &mut |s: &StepRecord| {
            let (kick, from_start) = *rec.last.borrow();
            let d = &s.distances;
            steps.push(StepRow {
                step: s.global_step,
                epoch: s.epoch,
                loss: s.loss,
                grad_norm: s.grad_norm,
                grad_norm_kernel: s.grad_norm_kernel,
                dist_to_e: total(d),
                dist_from_start: from_start,
                kick,
                dist_to_e_conv1: layer(d, 0),
                dist_to_e_conv2: layer(d, 1),
                dist_to_e_conv3: layer(d, 2),
                dist_to_e_linear: layer(d, 3),
            });
        },
        &mut |e, p| epochs.push(epoch_row(2, e, kernel_distance(&net, p, &start))),
    )
    .map_err(train_err("phase 2"))?;
    schema::write_csv(&tmp.join("steps.csv"), &steps)?;
    schema::write_csv(&tmp.join("epochs.csv"), &epochs)?;
    let failure = save_unless_failed(&outcome, &params, &tmp, net_err)?;
    schema::write_json(
        &tmp.join("case.json"),
        &CaseJson {
            key,
            case: case.name.clone(),
            seed,
            support: case.support,
            parametrisation: case.parametrisation,
            parameters: params.len(),
            load_residual,
            probe,
            wall_seconds: t0.elapsed().as_secs_f64(),
            failure: failure.clone(),
        },
    )?;
    std::fs::rename(&tmp, &dir).map_err(io(&dir))?;
    let _ = run;
    Ok(failure.map(|f| f.error))
}
