//! The training of one run of an E5 experiment (two-phase SGD): the phase-1 (equivariant)
//! model of each support the cases need, then every case's phase 2, writing the files of
//! [`crate::schema::e5`] into the run's temporary folder. The lifecycle around it (locks,
//! fingerprints, memory, atomic renames) is [`super`]'s.
//!
//! Resumable inside a run: in the temporary folder an interrupted attempt left (`run-NNN.tmp/`,
//! only ever touched under the run's lock), finished phase-1 models and cases (folders whose
//! JSON record has the current key) are reused, so phase 2 can be redone without phase 1.
//! Every folder is written under a `.tmp` name first and renamed.

use super::{RunError, TrainedRun, Trainer};
use crate::config::e5::{CaseSection, E5Experiment, Support, KIND};
use crate::config::Precision;
use crate::io::IoError;
use crate::progress::Progress;
use crate::schema::e5::{
    self as schema, CaseJson, CaseMeta, EpochRow, ExperimentJson, FailureJson, Phase1Json,
    ProbeJson, StepProbe, StepRow,
};
use crate::schema::{AnyExperimentRecord, RunRecord};
use eqaug_data::mnist_rotations as data5;
use eqaug_dynamics::sgd::{self, ClassData, SgdConfig, SgdModel, StepRecord};
use eqaug_dynamics::{strategy_rng, Failure};
use eqaug_groups::Real;
use eqaug_nn::support_cnn::{SupportCnn, SupportCnnSpec};
use eqaug_nn::{Params, Sequential};
use rand::seq::SliceRandom;
use std::cell::RefCell;
use std::path::Path;
use std::time::Instant;

use super::fnv_hex as fnv;

/// Fingerprint of a phase-1 model: data, channels, phase 1, precision, chunk, seed, support.
fn phase1_key(exp: &E5Experiment, seed: u64, support: &Support) -> String {
    fnv(&format!(
        "{:?}|{:?}|{:?}|{}|chunk {}|{seed}|{}",
        exp.data,
        exp.channels,
        exp.phase1,
        exp.protocol.precision.name(),
        exp.protocol.chunk_rows,
        support
    ))
}

/// Fingerprint of a case: its phase-1 model's key, phase 2, the probe, the case.
fn case_key(exp: &E5Experiment, seed: u64, case: &CaseSection) -> String {
    fnv(&format!(
        "{}|{:?}|{}|{}|{}|{}",
        phase1_key(exp, seed, &case.support),
        exp.phase2,
        exp.protocol.probe_digits,
        case.name,
        case.support,
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

fn class_data<T: Real>(
    exp: &E5Experiment,
    d: &eqaug_data::Dataset,
    what: &str,
) -> Result<ClassData<T>, RunError> {
    let (labels, classes) = match &d.targets {
        eqaug_data::Targets::Classes { labels, classes } => (labels.clone(), *classes),
        _ => unreachable!("E5 data are labelled digits"),
    };
    ClassData::new(d.x.view(), labels, classes).map_err(|source| RunError::Train {
        experiment: exp.name.clone(),
        run: 0,
        strategy: format!("({what} set)"),
        source: Box::new(source),
    })
}

fn load_data<T: Real>(exp: &E5Experiment) -> Result<Data<T>, RunError> {
    let data_err = |what: &str| {
        let what = what.to_string();
        move |source| RunError::Data {
            experiment: exp.name.clone(),
            what,
            source: Box::new(source),
        }
    };
    let d = data5::load(
        exp.data.mnist_dir.as_deref(),
        exp.data.train,
        exp.data.test,
        data5::Standardisation::Fixed,
    )
    .map_err(data_err("the digits"))?;
    // More digits than the source holds: refused, as for the full-batch data sets.
    for (key, asked, got) in [
        ("data.train", exp.data.train, d.train.len()),
        ("data.test", exp.data.test, d.test.len()),
    ] {
        if let Some(n) = asked.filter(|&n| n > got) {
            return Err(crate::config::invalid(
                &exp.file,
                &format!(" (profile {})", exp.profile),
                key,
                &format!("{n} digits asked for, but {} holds only {got}", d.source),
            )
            .into());
        }
    }
    let aug = data5::with_rotations(&d.train).map_err(data_err("the rotated digits"))?;
    let k = exp.protocol.probe_digits;
    let closed = if k > 0 {
        let rotated =
            data5::with_rotations(&d.train.subset(k)).map_err(data_err("the probe digits"))?;
        Some(class_data(exp, &rotated, "probe")?)
    } else {
        None
    };
    Ok(Data {
        train: class_data(exp, &d.train, "training")?,
        test: class_data(exp, &d.test, "test")?,
        aug: class_data(exp, &aug, "augmented training")?,
        closed,
        source: d.source,
    })
}

fn spec(exp: &E5Experiment, s: &Support, p: eqaug_nn::conv::Parametrisation) -> SupportCnnSpec {
    SupportCnnSpec {
        channels: exp.channels,
        ..SupportCnnSpec::paper(s.clone(), p)
    }
}

fn sgd_config(
    p: &crate::config::e5::PhaseSection,
    protocol: &crate::config::e5::ProtocolSection,
    per_step: bool,
) -> SgdConfig {
    SgdConfig::default()
        .with_learning_rate(p.learning_rate)
        .with_batch_size(p.minibatch)
        .with_epochs(p.epochs)
        .with_step_distances(per_step)
        .with_eval_chunk(protocol.eval_rows)
        .with_chunk_rows(Some(protocol.chunk_rows))
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

/// The failure of a phase's training, if any; otherwise saves its final parameters to
/// `dir/params`.
fn save_unless_failed<T: Real>(
    outcome: &sgd::SgdOutcome,
    params: &Params<T>,
    dir: &Path,
    net_err: impl FnOnce(eqaug_nn::NnError) -> RunError,
) -> Result<Option<FailureJson>, RunError> {
    let failure = outcome.failure.as_ref().map(|f| FailureJson {
        epoch: f.epoch,
        step: Some(f.step),
        error: f.to_string(),
    });
    if failure.is_none() {
        params
            .save_npy(&dir.join(schema::PARAMS))
            .map_err(net_err)?;
    }
    Ok(failure)
}

fn clear(path: &Path) -> Result<(), RunError> {
    if path.exists() {
        std::fs::remove_dir_all(path).map_err(IoError::at(path))?;
    }
    Ok(())
}

/// Renames a finished folder into place.
fn rename(from: &Path, to: &Path) -> Result<(), RunError> {
    Ok(std::fs::rename(from, to).map_err(IoError::at(to))?)
}

/// A trained phase-1 model and its parameters.
type Trained<T> = (SupportCnn<T>, Params<T>);

/// An E5 experiment's trainer: the digits, loaded once in the training precision.
struct E5Trainer<T> {
    exp: E5Experiment,
    data: Data<T>,
}

/// The trainer of `exp` in its precision, with its data loaded (and checked against the
/// config) before anything is written.
pub(crate) fn trainer(exp: &E5Experiment) -> Result<Box<dyn Trainer>, RunError> {
    Ok(match exp.protocol.precision {
        Precision::F32 => Box::new(E5Trainer::<f32> {
            exp: exp.clone(),
            data: load_data(exp)?,
        }),
        Precision::F64 => Box::new(E5Trainer::<f64> {
            exp: exp.clone(),
            data: load_data(exp)?,
        }),
    })
}

impl<T: Real> Trainer for E5Trainer<T> {
    fn record(&self, wall_seconds: f64) -> AnyExperimentRecord {
        let exp = &self.exp;
        AnyExperimentRecord::E5(ExperimentJson {
            kind: KIND.into(),
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
                    support: c.support.clone(),
                    parametrisation: c.parametrisation,
                })
                .collect(),
            data_source: self.data.source.clone(),
            train: self.data.train.len(),
            test: self.data.test.len(),
            probe_digits: exp.protocol.probe_digits,
            wall_seconds,
            config_file: exp.file.display().to_string(),
            config_key: None,
        })
    }

    fn ticks_per_run(&self) -> u64 {
        let e = &self.exp;
        // A phase-2 epoch passes over the four rotations of the data: four phase-1 epochs.
        (e.supports().len() * (e.phase1.epochs + 1) + 4 * e.cases.len() * (e.phase2.epochs + 1))
            as u64
    }

    fn resumes_inside_run(&self) -> bool {
        true
    }

    fn train_run(
        &self,
        run: usize,
        seed: u64,
        tmp: &Path,
        progress: &Progress,
    ) -> Result<TrainedRun, RunError> {
        let exp = &self.exp;
        let mut failures = Vec::new();
        let mut phase1: Vec<(Support, Option<Trained<T>>)> = Vec::new();
        for s in exp.supports() {
            let p = self.phase1_model(tmp, run, seed, &s, progress)?;
            if let Err(f) = &p {
                failures.push(failure(schema::phase1_name(&s), f));
            }
            phase1.push((s, p.ok()));
        }
        for case in &exp.cases {
            let eq = phase1
                .iter()
                .find(|(s, _)| *s == case.support)
                .and_then(|(_, p)| p.as_ref());
            let Some((eq_net, eq_params)) = eq else {
                continue; // its phase-1 model diverged: recorded above
            };
            let f = self.phase2_case(tmp, run, seed, case, eq_net, eq_params, progress)?;
            if let Some(f) = f {
                failures.push(failure(case.name.clone(), &f));
            }
        }
        Ok(TrainedRun {
            record: RunRecord {
                cases: exp.cases.iter().map(|c| c.name.clone()).collect(),
                ..RunRecord::default()
            },
            failures,
            summary: format!(
                "{} case(s): {}",
                exp.cases.len(),
                exp.cases
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
    }
}

/// A diverged phase-1 model or case as a run failure.
fn failure(unit: String, f: &FailureJson) -> Failure {
    Failure {
        strategy: unit,
        epoch: f.epoch,
        error: f.error.clone(),
    }
}

impl<T: Real> E5Trainer<T> {
    /// Building a network (`what`) failed.
    fn net_err(&self, what: String) -> impl FnOnce(eqaug_nn::NnError) -> RunError + '_ {
        move |source| RunError::Network {
            experiment: self.exp.name.clone(),
            what,
            source: Box::new(source),
        }
    }

    /// Training `unit` of run `run` could not start or go on.
    fn train_err(
        &self,
        run: usize,
        unit: String,
    ) -> impl FnOnce(eqaug_dynamics::TrainError) -> RunError + '_ {
        move |source| RunError::Train {
            experiment: self.exp.name.clone(),
            run,
            strategy: unit,
            source: Box::new(source),
        }
    }

    /// The phase-1 model of `support` for a run: reused from `run_tmp` if finished with the
    /// same key, else trained and saved. `Err` (inside `Ok`) if it diverged.
    fn phase1_model(
        &self,
        run_tmp: &Path,
        run: usize,
        seed: u64,
        support: &Support,
        progress: &Progress,
    ) -> Result<Result<Trained<T>, FailureJson>, RunError> {
        let (exp, data) = (&self.exp, &self.data);
        let unit = schema::phase1_name(support);
        let s = spec(exp, support, eqaug_nn::conv::Parametrisation::Equivariant);
        let net = SupportCnn::<T>::new(&s, &mut strategy_rng(seed, "e5-basis"))
            .map_err(self.net_err(format!("equivariant, {}", support)))?;
        let key = phase1_key(exp, seed, support);
        let dir = schema::phase1_dir(run_tmp, support);
        if let Ok(j) = schema::read_json::<Phase1Json>(&dir.join(schema::PHASE1_JSON)) {
            if j.key == key {
                if let Some(f) = j.failure {
                    return Ok(Err(f));
                }
                let p = net
                    .zeros()
                    .load_npy(&dir.join(schema::PARAMS))
                    .map_err(self.net_err(format!("equivariant, {}", support)))?;
                progress.println(&format!(
                    "[{}] {}: reusing {unit}",
                    exp.name,
                    crate::schema::run_dir_name(run)
                ));
                return Ok(Ok((net, p)));
            }
        }
        clear(&dir)?;
        let tmp = run_tmp.join(format!("{unit}.tmp"));
        clear(&tmp)?;
        std::fs::create_dir_all(&tmp).map_err(IoError::at(&tmp))?;
        let t0 = Instant::now();
        let mut params = net.init_params(&mut strategy_rng(seed, &format!("e5-init-{}", support)));
        let start = params.clone();
        let mut rows = Vec::new();
        let cfg = sgd_config(&exp.phase1, &exp.protocol, false);
        let run_name = crate::schema::run_dir_name(run);
        let outcome = sgd::sgd(
            &net,
            &mut params,
            &data.train,
            Some(&data.test),
            &cfg,
            &mut strategy_rng(seed, &format!("e5-phase1-{}", support)),
            &mut |_| {},
            &mut |rec, p| {
                progress.epoch(
                    &run_name,
                    &unit,
                    rec.epoch,
                    exp.phase1.epochs,
                    rec.train_loss,
                );
                rows.push(epoch_row(1, rec, kernel_distance(&net, p, &start)))
            },
        )
        .map_err(self.train_err(run, unit.clone()))?;
        schema::write_csv(&tmp.join(schema::EPOCHS_CSV), &rows)?;
        let failure = save_unless_failed(
            &outcome,
            &params,
            &tmp,
            self.net_err(format!("equivariant, {}", support)),
        )?;
        schema::write_json(
            &tmp.join(schema::PHASE1_JSON),
            &Phase1Json {
                key,
                seed,
                support: support.clone(),
                // dim(E ∩ L_Omega) per channel pair: the rot90 orbits inside Omega.
                dim_per_channel_pair: match support {
                    Support::Cross => 2,
                    _ => 1,
                },
                parameters: params.len(),
                wall_seconds: t0.elapsed().as_secs_f64(),
                failure: failure.clone(),
            },
        )?;
        rename(&tmp, &dir)?;
        Ok(match failure {
            Some(f) => Err(f),
            None => Ok((net, params)),
        })
    }
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
    let cfg = SgdConfig::default()
        .with_learning_rate(lr)
        .with_batch_size(batch.len())
        .with_epochs(1)
        .with_step_distances(false)
        .with_eval_chunk(eval_rows)
        .with_chunk_rows(None);
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

impl<T: Real> E5Trainer<T> {
    /// Phase 2 of one case; returns the divergence, if any.
    #[allow(clippy::too_many_arguments)]
    fn phase2_case(
        &self,
        run_tmp: &Path,
        run: usize,
        seed: u64,
        case: &CaseSection,
        eq_net: &SupportCnn<T>,
        eq_params: &Params<T>,
        progress: &Progress,
    ) -> Result<Option<FailureJson>, RunError> {
        let (exp, data) = (&self.exp, &self.data);
        let key = case_key(exp, seed, case);
        let dir = schema::case_dir(run_tmp, &case.name);
        if let Ok(j) = schema::read_json::<CaseJson>(&dir.join(schema::CASE_JSON)) {
            if j.key == key {
                return Ok(j.failure);
            }
        }
        clear(&dir)?;
        let tmp = run_tmp.join(format!("{}.tmp", case.name));
        clear(&tmp)?;
        std::fs::create_dir_all(&tmp).map_err(IoError::at(&tmp))?;
        let t0 = Instant::now();
        let p = case.parametrisation;
        let net = SupportCnn::<T>::new(
            &spec(exp, &case.support, p),
            &mut strategy_rng(seed, &format!("e5-basis-{}", case.name)),
        )
        .map_err(self.net_err(case.name.clone()))?;
        let (start, load) = net
            .load_from_equivariant(eq_net, eq_params)
            .map_err(self.net_err(case.name.clone()))?;
        let load_residual = load
            .least_squares_residuals
            .iter()
            .chain(&load.kernel_mismatch)
            .fold(0.0f64, |a, &b| a.max(b));
        let probe = self
            .probe(&net, &start, seed)
            .map_err(self.train_err(run, format!("{} (probe)", case.name)))?;

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
        let run_name = crate::schema::run_dir_name(run);
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
            &mut |e, p| {
                progress.epoch_weighted(
                    &run_name,
                    &case.name,
                    e.epoch,
                    exp.phase2.epochs,
                    e.train_loss,
                    4,
                );
                epochs.push(epoch_row(2, e, kernel_distance(&net, p, &start)))
            },
        )
        .map_err(self.train_err(run, case.name.clone()))?;
        schema::write_csv(&tmp.join(schema::STEPS_CSV), &steps)?;
        schema::write_csv(&tmp.join(schema::EPOCHS_CSV), &epochs)?;
        let failure = save_unless_failed(&outcome, &params, &tmp, self.net_err(case.name.clone()))?;
        schema::write_json(
            &tmp.join(schema::CASE_JSON),
            &CaseJson {
                key,
                case: case.name.clone(),
                seed,
                support: case.support.clone(),
                parametrisation: case.parametrisation,
                parameters: params.len(),
                load_residual,
                probe,
                wall_seconds: t0.elapsed().as_secs_f64(),
                failure: failure.clone(),
            },
        )?;
        rename(&tmp, &dir)?;
        Ok(failure)
    }

    /// The one-step probe at the start of phase 2: one SGD step on a batch closed under C_4
    /// (the first `probe_digits` digits and their rotations) against one on a shuffled batch
    /// of the same size; `None` without probe digits.
    fn probe(
        &self,
        net: &SupportCnn<T>,
        start: &Params<T>,
        seed: u64,
    ) -> Result<Option<ProbeJson>, eqaug_dynamics::TrainError> {
        let (exp, data) = (&self.exp, &self.data);
        let Some(closed) = &data.closed else {
            return Ok(None);
        };
        let mut order: Vec<usize> = (0..data.aug.len()).collect();
        order.shuffle(&mut strategy_rng(seed, "e5-probe"));
        let shuffled = pick(&data.aug, &order[..closed.len().min(order.len())]);
        let lr = exp.phase2.learning_rate;
        let ev = exp.protocol.eval_rows;
        Ok(Some(ProbeJson {
            digits: exp.protocol.probe_digits,
            start_dist_to_e: total(&net.distances_to_e(start)),
            closed: probe_step(net, start, closed, lr, ev)?,
            shuffled: probe_step(net, start, &shuffled, lr, ev)?,
        }))
    }
}
