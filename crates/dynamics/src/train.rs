//! The full-batch protocol: one gradient step per epoch and strategy (docs/science.md §3).

use crate::metrics::EpochMetrics;
use crate::{HeldOut, Protocol, Sampling, StrategyKind, StrategySpec, TrainError};
use eqaug_data::batching;
use eqaug_groups::{act_on_sample, Group, Perm, Points, Real, Rep};
use eqaug_nn::{Network, Params, Workspace};
use ndarray::{s, Array2};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

/// A training set: inputs and targets as dense matrices, one row per sample.
#[derive(Clone, Debug)]
pub struct TrainData<T: Real> {
    /// Inputs, `N x input_rep.dim()`, channel-major features.
    pub x: Array2<T>,
    /// Targets, `N x output width` (0/1 column, one-hot rows or masks; see eqaug-nn).
    pub targets: Array2<T>,
    /// How the group acts on an input row.
    pub input_rep: Rep,
    /// `Some(rep)` when the targets transform with the inputs (segmentation masks), `None` for
    /// invariant targets (labels).
    pub target_rep: Option<Rep>,
}

impl<T: Real> TrainData<T> {
    /// Why these data do not fit `net` (input or target width), or `None` if they do.
    pub fn mismatch<U: Real>(&self, net: &Network<U>) -> Option<String> {
        (self.x.ncols() != net.input_width() || self.targets.ncols() != net.output_width()).then(
            || {
                format!(
                    "data of shape {} x {} -> {} does not fit the network ({} -> {})",
                    self.len(),
                    self.x.ncols(),
                    self.targets.ncols(),
                    net.input_width(),
                    net.output_width()
                )
            },
        )
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.x.nrows()
    }

    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.x.nrows() == 0
    }
}

/// Computes the full-batch gradient of one strategy, reusing its buffers across epochs.
#[derive(Debug)]
pub struct Trainer<'a, T: Real> {
    net: &'a Network<T>,
    group: Arc<Group>,
    data: &'a TrainData<T>,
    protocol: Protocol,
    ws: Workspace<T>,
    grads: Params<T>,
    /// Scratch parameters for the regulariser's projection.
    scratch: Params<T>,
    xbuf: Array2<T>,
    ybuf: Array2<T>,
    elements: Option<Vec<Perm>>,
}

impl<'a, T: Real> Trainer<'a, T> {
    /// A trainer for `net` on `data` under `protocol`. The network's group
    /// ([`Network::group`]) acts on the data: augmentation draws from it and the equivariant
    /// strategy projects onto its E.
    ///
    /// # Errors
    /// [`TrainError::Invalid`] for an invalid protocol, an empty training set, or data that
    /// do not fit the network (widths, or an input representation other than the network's).
    pub fn new(
        net: &'a Network<T>,
        data: &'a TrainData<T>,
        protocol: Protocol,
    ) -> Result<Self, TrainError> {
        protocol.validate()?;
        let group = net.group().clone();
        if data.is_empty() {
            return Err(TrainError::Invalid("the training set is empty".into()));
        }
        if let Some(m) = data.mismatch(net) {
            return Err(TrainError::Invalid(m));
        }
        if data.input_rep != net.input_rep() {
            return Err(TrainError::Invalid(format!(
                "the data's input representation ({}) is not the network's ({})",
                data.input_rep,
                net.input_rep()
            )));
        }
        if data.x.ncols() != data.input_rep.dim(&group) {
            return Err(TrainError::Invalid(format!(
                "input rows have {} features but the input representation ({}) of group `{}` \
                 has {}",
                data.x.ncols(),
                data.input_rep,
                group.name(),
                data.input_rep.dim(&group)
            )));
        }
        if let Some(rep) = data.target_rep {
            if data.targets.ncols() != rep.dim(&group) {
                return Err(TrainError::Invalid(format!(
                    "target rows have {} features but the target representation ({rep}) of \
                     group `{}` has {}",
                    data.targets.ncols(),
                    group.name(),
                    rep.dim(&group)
                )));
            }
        }
        let rows = protocol
            .rows_per_chunk()
            .min(data.len().div_ceil(protocol.minibatch) * protocol.minibatch);
        Ok(Trainer {
            ws: net.workspace(rows),
            grads: net.zeros(),
            scratch: net.zeros(),
            xbuf: Array2::zeros((rows, data.x.ncols())),
            ybuf: Array2::zeros((rows, data.targets.ncols())),
            net,
            group,
            data,
            protocol,
            elements: None,
        })
    }

    /// The gradient of the last [`Trainer::gradient`] call.
    pub fn grads(&self) -> &Params<T> {
        &self.grads
    }

    /// The protocol.
    pub fn protocol(&self) -> &Protocol {
        &self.protocol
    }

    /// Fills [`Trainer::grads`] with the strategy's full-batch gradient at `params` and returns
    /// the mean training loss (for augmentation, over all passes). Nominal: `grad R`;
    /// augmented: the average over its passes of the gradient on transformed data;
    /// equivariant: `Pi_E grad R`. A [`crate::Regulariser`] adds `gamma (A - Pi_E A)` on the
    /// group layers to the accumulated gradient (so the Hessian tools, which difference this
    /// gradient, see the regularised risk); the returned loss is the data loss alone, see
    /// [`StrategySpec::penalty`] for the penalty.
    pub fn gradient(
        &mut self,
        params: &Params<T>,
        strategy: &StrategySpec,
        rng: &mut ChaCha8Rng,
    ) -> Result<f64, TrainError> {
        strategy.validate()?;
        self.grads.fill_zero();
        let loss = self.pass(params, strategy, rng, true)?;
        if strategy.kind == StrategyKind::Equivariant {
            self.grads.project_group_layers();
        }
        if let Some(r) = &strategy.regulariser {
            r.add_gradient(params, &mut self.grads, &mut self.scratch);
        }
        Ok(loss)
    }

    /// The strategy's mean training loss at `params`, without a gradient.
    pub fn loss(
        &mut self,
        params: &Params<T>,
        strategy: &StrategySpec,
        rng: &mut ChaCha8Rng,
    ) -> Result<f64, TrainError> {
        self.pass(params, strategy, rng, false)
    }

    /// One epoch's passes over the data; accumulates the gradient of the mean loss when
    /// `with_grad`, and returns the mean loss.
    fn pass(
        &mut self,
        params: &Params<T>,
        strategy: &StrategySpec,
        rng: &mut ChaCha8Rng,
        with_grad: bool,
    ) -> Result<f64, TrainError> {
        let n = self.data.len();
        let mb = self.protocol.minibatch;
        let rows = self.xbuf.nrows();
        let augment = strategy.kind == StrategyKind::Augmented;
        let passes = if !augment {
            1
        } else if strategy.sampling == Sampling::Exact {
            if self.elements.is_none() {
                self.elements = Some(
                    self.group
                        .elements(eqaug_groups::DEFAULT_ENUMERATION_LIMIT)?,
                );
            }
            self.elements.as_ref().map_or(1, Vec::len)
        } else {
            if strategy.passes == 0 {
                return Err(TrainError::Invalid(format!(
                    "strategy `{}` needs at least one pass",
                    strategy.name
                )));
            }
            strategy.passes
        };
        let mut total_f64 = 0.0f64;
        for p in 0..passes {
            for chunk in batching::chunks(n, mb, rows / mb) {
                let (start, end) = (chunk.rows.start, chunk.rows.end);
                let x = self.data.x.slice(s![start..end, ..]);
                let t = self.data.targets.slice(s![start..end, ..]);
                let chunk_loss = if augment {
                    self.transform_chunk(start, end, strategy.sampling, p, rng);
                    let xb = self.xbuf.slice(s![..end - start, ..]);
                    let tb = if self.data.target_rep.is_some() {
                        self.ybuf.slice(s![..end - start, ..])
                    } else {
                        t
                    };
                    if with_grad {
                        self.net.accumulate_loss_and_grad(
                            params,
                            xb,
                            tb,
                            mb,
                            &mut self.grads,
                            &mut self.ws,
                        )?
                    } else {
                        self.net.loss(params, xb, tb, mb, &mut self.ws)?
                    }
                } else if with_grad {
                    self.net.accumulate_loss_and_grad(
                        params,
                        x,
                        t,
                        mb,
                        &mut self.grads,
                        &mut self.ws,
                    )?
                } else {
                    self.net.loss(params, x, t, mb, &mut self.ws)?
                };
                total_f64 += chunk_loss.to_f64_exact();
            }
        }
        let count = (n * passes) as f64;
        if with_grad {
            self.grads.scale(T::from_f64_lossy(1.0 / count));
        }
        Ok(total_f64 / count)
    }

    /// Writes rows `start..end` of the data, transformed by group elements, into the buffers.
    fn transform_chunk(
        &mut self,
        start: usize,
        end: usize,
        sampling: Sampling,
        pass: usize,
        rng: &mut ChaCha8Rng,
    ) {
        let mb = self.protocol.minibatch;
        let move_x = self.data.input_rep.points == Points::Base;
        let move_t = matches!(self.data.target_rep, Some(r) if r.points == Points::Base);
        let mut g = Perm::identity(self.group.degree());
        for i in start..end {
            let first_of_batch = (i - start).is_multiple_of(mb);
            match sampling {
                Sampling::PerSample => g = self.group.sample(rng),
                Sampling::PerBatch if first_of_batch => g = self.group.sample(rng),
                Sampling::Reference if first_of_batch => {
                    g = self
                        .group
                        .sample_reference(rng, self.protocol.reference_task)
                }
                Sampling::Exact if i == start => {
                    g = self.elements.as_ref().expect("enumerated")[pass].clone()
                }
                _ => {}
            }
            let r = i - start;
            let xs = self.data.x.row(i);
            let xs = xs.as_slice().expect("standard layout");
            let xo = self.xbuf.row_mut(r).into_slice().expect("standard layout");
            if move_x {
                act_on_sample(&g, xs, xo);
            } else {
                xo.copy_from_slice(xs);
            }
            if self.data.target_rep.is_some() {
                let ts = self.data.targets.row(i);
                let ts = ts.as_slice().expect("standard layout");
                let to = self.ybuf.row_mut(r).into_slice().expect("standard layout");
                if move_t {
                    act_on_sample(&g, ts, to);
                } else {
                    to.copy_from_slice(ts);
                }
            }
        }
    }
}

/// A strategy stopped by a non-finite loss or weight.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Failure {
    /// Strategy name.
    pub strategy: String,
    /// The epoch at which it was detected.
    pub epoch: usize,
    /// The error message.
    pub error: String,
}

/// Everything a run produced.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    /// Names of the group layers, in order (the per-layer metric columns).
    pub layer_names: Vec<String>,
    /// One row per strategy and epoch, epochs `0..=epochs` (fewer for a failed strategy).
    pub metrics: Vec<EpochMetrics>,
    /// Strategies that stopped early.
    pub failures: Vec<Failure>,
}

/// A per-strategy random stream: the run's seed, and a stream number from the strategy's
/// name, so that adding or reordering strategies does not change the others' draws (the
/// stream [`train`] uses; public for the workspace's runner).
#[doc(hidden)]
pub fn strategy_rng(seed: u64, name: &str) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(crate::fnv1a64(name.as_bytes()));
    rng
}

/// Trains every strategy from the same `a0` (which should lie in E) for `protocol.epochs`
/// epochs and records the metrics of docs/science.md §3 at epochs `0..=epochs`; as
/// [`train_with_held_out`] without a held-out split. The network's group acts on the data.
pub fn train<T: Real>(
    net: &Network<T>,
    data: &TrainData<T>,
    protocol: &Protocol,
    strategies: &[StrategySpec],
    a0: &Params<T>,
    seed: u64,
    on_epoch: &mut dyn FnMut(&EpochMetrics, &Params<T>),
) -> Result<RunOutcome, TrainError> {
    train_with_held_out(net, data, protocol, strategies, a0, seed, None, on_epoch)
}

/// Trains every strategy from the same `a0` (which should lie in E) for `protocol.epochs`
/// epochs and records the metrics of docs/science.md §3 at epochs `0..=epochs`, with the
/// regulariser's penalty, and, given a `held_out` split, the test loss and accuracy (or mean
/// IoU) of every row (one evaluation per row; no effect on training or on the random draws).
///
/// Row `e` holds the parameters after `e` steps, `A_e`: the strategy's mean training loss at
/// `A_e` (computed in the pass of step `e + 1`, or by a final loss-only pass), and the distances
/// of `A_e` from `A0` and to E. `on_epoch` sees every row with the parameters it describes (for
/// checkpoints and progress). Strategies run one after the other, sharing one gradient store.
/// A non-finite loss or weight, or a loss or weights grown beyond `protocol.divergence`,
/// stops that strategy (recorded in [`RunOutcome::failures`]); the others go on.
///
/// The network's group ([`Network::group`]) acts on the data. `a0` must be laid out for `net`
/// (e.g. from [`eqaug_nn::Sequential::init_params`]); `seed` and each strategy's name choose
/// its random stream, so adding or reordering strategies does not change the others' draws.
pub fn train_with_held_out<T: Real>(
    net: &Network<T>,
    data: &TrainData<T>,
    protocol: &Protocol,
    strategies: &[StrategySpec],
    a0: &Params<T>,
    seed: u64,
    mut held_out: Option<&mut HeldOut<T>>,
    on_epoch: &mut dyn FnMut(&EpochMetrics, &Params<T>),
) -> Result<RunOutcome, TrainError> {
    for s in strategies {
        s.validate()?;
    }
    if !a0.layout().compatible(net.layout()) {
        return Err(TrainError::Invalid(format!(
            "`a0` is not laid out for this network: {} values, the network has {}",
            a0.len(),
            net.num_params()
        )));
    }
    let mut trainer = Trainer::new(net, data, protocol.clone())?;
    let layer_names = a0.group_layers().map(|t| t.name.to_string()).collect();
    let mut metrics = Vec::new();
    let mut failures = Vec::new();
    let lr = T::from_f64_lossy(protocol.learning_rate);
    let norm0 = a0.norm().to_f64_exact();
    let div = protocol.divergence;
    for strategy in strategies {
        let mut rng = strategy_rng(seed, &strategy.name);
        let mut params = a0.clone();
        let mut loss0 = f64::NAN;
        for epoch in 0..=protocol.epochs {
            let loss = if epoch < protocol.epochs {
                trainer.gradient(&params, strategy, &mut rng)?
            } else {
                trainer.loss(&params, strategy, &mut rng)?
            };
            let mut row = EpochMetrics::measure(epoch, &strategy.name, loss, &params, a0);
            row.penalty = strategy.regulariser.map(|r| r.penalty(&params));
            if let Some(h) = held_out.as_deref_mut() {
                row.set_test(&h.evaluate(net, &params)?);
            }
            on_epoch(&row, &params);
            metrics.push(row);
            if !loss.is_finite() {
                failures.push(failure(strategy, epoch, "loss"));
                break;
            }
            if epoch == 0 {
                loss0 = loss;
            } else if let Some(why) = div.loss(loss0, loss) {
                failures.push(diverged(strategy, epoch, why));
                break;
            }
            if epoch < protocol.epochs {
                params.axpy(-lr, trainer.grads());
                if !params.is_finite() {
                    failures.push(failure(strategy, epoch + 1, "weights"));
                    break;
                }
                if let Some(why) = div.weights(norm0, params.norm().to_f64_exact()) {
                    failures.push(diverged(strategy, epoch + 1, why));
                    break;
                }
            }
        }
    }
    Ok(RunOutcome {
        layer_names,
        metrics,
        failures,
    })
}

fn diverged(strategy: &StrategySpec, epoch: usize, why: String) -> Failure {
    let err = TrainError::Diverged {
        strategy: strategy.name.clone(),
        epoch,
        why,
    };
    Failure {
        strategy: strategy.name.clone(),
        epoch,
        error: err.to_string(),
    }
}

fn failure(strategy: &StrategySpec, epoch: usize, what: &'static str) -> Failure {
    let err = TrainError::NonFinite {
        strategy: strategy.name.clone(),
        epoch,
        what,
    };
    Failure {
        strategy: strategy.name.clone(),
        epoch,
        error: err.to_string(),
    }
}
