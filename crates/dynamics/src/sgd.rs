//! Plain mini-batch SGD, the protocol of experiment E5 (docs/science.md §4 and §9), beside the
//! full-batch protocol of E1-E4 ([`crate::train`]).
//!
//! # API summary (for the E5 runner)
//!
//! * Networks: [`eqaug_nn::support_cnn::SupportCnn`] built from an [`eqaug_nn::support_cnn::SupportCnnSpec`]
//!   (`SupportCnnSpec::paper(Support::Cross | Skew, Parametrisation::Equivariant | Unitary |
//!   NonUnitary)`; `SupportCnn::<f32>::new(&spec, &mut rng)`, the rng drawn only for the
//!   non-unitary bases), `init_params(&mut rng)`, and for phase 2
//!   `net_on_omega.load_from_equivariant(&eq_net, &eq_params) -> (Params, LoadReport)`
//!   (unitary: exact copy; non-unitary: f64 least squares, residuals in the report).
//! * Data: [`ClassData`] (`x: N x 784` standardised rows, labels, classes), e.g. from
//!   `eqaug_data::mnist_rotations::load(..)` (train/test) and `eqaug_data::mnist_rotations::with_rotations(&train)`
//!   (phase 2's C_4 orbit), converted with [`ClassData::new`].
//! * Protocol: [`SgdConfig`] (`learning_rate`, `batch_size`, `epochs`,
//!   `record_step_distances`, `eval_chunk`); [`sgd`]`(model, &mut params, &train,
//!   Some(&test), &cfg, &mut rng, on_step, on_epoch) -> SgdOutcome`. Phase 1:
//!   `SgdConfig::phase1(epochs)` (lr 5e-4, batch 100) on the equivariant model and the
//!   training set; phase 2: `SgdConfig::phase2(epochs)` (lr 2.5e-4, batch 100, distances
//!   every step) on the model on Omega and the C_4 orbit of the training set. Use one seeded
//!   `ChaCha8Rng` per phase (e.g. [`crate::strategy_rng`]`(seed, "e5-phase1")`).
//! * Per step ([`StepRecord`], passed to `on_step`): epoch (1-based), step within the epoch
//!   and overall (1-based), the batch's mean loss before the step, the gradient norm over the
//!   parameters (basis coefficients) and in kernel space (`||g_theta B||` per convolution,
//!   plus the final layer), and, when `record_step_distances`, the distance of every layer
//!   (`conv1`, `conv2`, `conv3`, `linear`) to `E ∩ L` after the step (kernel space).
//! * Per epoch ([`EpochRecord`], passed to `on_epoch` with the parameters): epoch 0 is the
//!   start (losses and accuracies by a full evaluation pass over the training set), epochs
//!   `e >= 1` carry the running mean loss and accuracy of the epoch's mini-batches (each
//!   measured before its step, as the authors' code does), the test loss and accuracy of the
//!   parameters at the end of the epoch, and the distances to `E ∩ L` then.
//! * Losses are MSE against one-hot targets averaged over the samples and the classes.
//! * Divergence: a non-finite loss or weight stops training; [`SgdOutcome::failure`] holds
//!   the epoch and step ([`SgdFailure`]); what was recorded before is kept.
//! * Checkpoints: `params.save_npy(dir)` / `net.zeros().load_npy(dir)` (eqaug-nn's
//!   [`eqaug_nn::Params`]), e.g. phase 1's final parameters, so phase 2 can be rerun alone
//!   (the equivariant network itself is rebuilt from its spec: it draws nothing). The
//!   non-unitary basis is part of the phase-2 model: rebuild it from the same seeded RNG
//!   (it is the first thing `SupportCnn::new` draws), or keep `conv.basis().matrix()`.
//! * Deterministic: the shuffles come from the given RNG only; the gradient of a mini-batch
//!   is one call of the layer executor, whose reductions have a fixed order.

use eqaug_groups::Real;
use eqaug_nn::support_cnn::{SupportCnn, SUPPORT_CNN_LAYERS};
use eqaug_nn::{Params, Sequential};
use ndarray::{Array2, ArrayView2};
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// A model the SGD protocol can train: a layer sequence plus the E5 metrics.
pub trait SgdModel<T: Real> {
    /// The layer sequence (forward, loss and gradient).
    fn sequential(&self) -> &Sequential<T>;
    /// Names of the layers whose distance to `E ∩ L` is recorded.
    fn layer_names(&self) -> Vec<String>;
    /// Changes the gradient before the step (e.g. projects an equivariant layer's).
    fn constrain_gradient(&self, grads: &mut Params<T>);
    /// Distance of every layer to `E ∩ L`, in [`SgdModel::layer_names`] order.
    fn distances_to_e(&self, params: &Params<T>) -> Vec<f64>;
    /// Kernel-space norm of a gradient, per layer.
    fn kernel_space_norms(&self, grads: &Params<T>) -> Vec<f64>;
}

impl<T: Real> SgdModel<T> for SupportCnn<T> {
    fn sequential(&self) -> &Sequential<T> {
        SupportCnn::sequential(self)
    }
    fn layer_names(&self) -> Vec<String> {
        SUPPORT_CNN_LAYERS.iter().map(|s| s.to_string()).collect()
    }
    fn constrain_gradient(&self, grads: &mut Params<T>) {
        SupportCnn::constrain_gradient(self, grads)
    }
    fn distances_to_e(&self, params: &Params<T>) -> Vec<f64> {
        SupportCnn::distances_to_e(self, params)
    }
    fn kernel_space_norms(&self, grads: &Params<T>) -> Vec<f64> {
        SupportCnn::kernel_space_norms(self, grads)
    }
}

/// A classification data set in the network's precision.
#[derive(Clone, Debug)]
pub struct ClassData<T> {
    /// Inputs, `N x input width`.
    pub x: Array2<T>,
    /// Labels in `0..classes`, one per row.
    pub labels: Vec<usize>,
    /// Number of classes (the one-hot width).
    pub classes: usize,
}

impl<T: Real> ClassData<T> {
    /// Checks the labels against `x` and `classes`; `x` is cast from f64.
    pub fn new(
        x: ArrayView2<'_, f64>,
        labels: Vec<usize>,
        classes: usize,
    ) -> Result<Self, TrainError> {
        if labels.len() != x.nrows() {
            return Err(TrainError::Invalid(format!(
                "{} input rows but {} labels",
                x.nrows(),
                labels.len()
            )));
        }
        if let Some((i, &l)) = labels.iter().enumerate().find(|(_, &l)| l >= classes) {
            return Err(TrainError::Invalid(format!(
                "label {l} of sample {i} is not a class in 0..{classes}"
            )));
        }
        Ok(ClassData {
            x: x.mapv(T::from_f64_lossy),
            labels,
            classes,
        })
    }
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Hyperparameters of one SGD phase.
///
/// Built from [`SgdConfig::default`] (phase 1 of E5 for 10 epochs), [`SgdConfig::phase1`] or
/// [`SgdConfig::phase2`] and the `with_*` methods (fields may be added in minor releases,
/// hence `#[non_exhaustive]`):
///
/// ```
/// use eqaug_dynamics::sgd::SgdConfig;
/// let c = SgdConfig::default().with_learning_rate(1e-3).with_batch_size(50).with_epochs(3);
/// assert_eq!((c.batch_size, c.epochs, c.chunk_rows), (50, 3, None));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SgdConfig {
    /// Learning rate (> 0).
    pub learning_rate: f64,
    /// Mini-batch size (the last mini-batch of an epoch may be smaller).
    pub batch_size: usize,
    /// Epochs (full passes over the shuffled data).
    pub epochs: usize,
    /// Record the distance of every layer to `E ∩ L` after every step (else only per epoch).
    pub record_step_distances: bool,
    /// Rows per forward pass when evaluating (test set, epoch 0).
    pub eval_chunk: usize,
    /// Rows per forward and backward pass of a training step: each mini-batch is processed in
    /// consecutive chunks of at most this many rows and their gradients are summed (`None`:
    /// the whole mini-batch in one pass). The result is the same up to the order of the
    /// summation, except that normalisation statistics are per chunk: networks with batch
    /// norm need chunks of whole mini-batches (E5's layer norm acts per sample). Smaller
    /// chunks keep the activations of a pass in the last-level cache.
    #[serde(default)]
    pub chunk_rows: Option<usize>,
}

impl Default for SgdConfig {
    /// [`SgdConfig::phase1`] for 10 epochs.
    fn default() -> Self {
        SgdConfig::phase1(10)
    }
}

impl SgdConfig {
    /// With learning rate `learning_rate`.
    pub fn with_learning_rate(mut self, learning_rate: f64) -> Self {
        self.learning_rate = learning_rate;
        self
    }
    /// With mini-batches of `batch_size` samples.
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }
    /// With `epochs` epochs.
    pub fn with_epochs(mut self, epochs: usize) -> Self {
        self.epochs = epochs;
        self
    }
    /// Recording the distances to `E ∩ L` after every step (`true`) or only per epoch.
    pub fn with_step_distances(mut self, record: bool) -> Self {
        self.record_step_distances = record;
        self
    }
    /// With `eval_chunk` rows per evaluation pass.
    pub fn with_eval_chunk(mut self, eval_chunk: usize) -> Self {
        self.eval_chunk = eval_chunk;
        self
    }
    /// With training passes of at most `chunk_rows` rows (`None`: whole mini-batches).
    pub fn with_chunk_rows(mut self, chunk_rows: Option<usize>) -> Self {
        self.chunk_rows = chunk_rows;
        self
    }

    /// Phase 1 of E5: lr 5e-4, mini-batch 100, no per-step distances.
    pub fn phase1(epochs: usize) -> Self {
        SgdConfig {
            learning_rate: 5e-4,
            batch_size: 100,
            epochs,
            record_step_distances: false,
            eval_chunk: 500,
            chunk_rows: None,
        }
    }
    /// Phase 2 of E5: lr 2.5e-4, mini-batch 100, distances after every step.
    pub fn phase2(epochs: usize) -> Self {
        SgdConfig {
            learning_rate: 2.5e-4,
            batch_size: 100,
            epochs,
            record_step_distances: true,
            eval_chunk: 500,
            chunk_rows: None,
        }
    }
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), TrainError> {
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(TrainError::Invalid(format!(
                "learning_rate must be finite and > 0, got {}",
                self.learning_rate
            )));
        }
        if self.chunk_rows == Some(0) {
            return Err(TrainError::Invalid("chunk_rows must be at least 1".into()));
        }
        if self.batch_size == 0 || self.eval_chunk == 0 {
            return Err(TrainError::Invalid(format!(
                "batch_size ({}) and eval_chunk ({}) must be at least 1",
                self.batch_size, self.eval_chunk
            )));
        }
        Ok(())
    }
}

/// What one SGD step did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Epoch (1-based).
    pub epoch: usize,
    /// Step within the epoch (1-based).
    pub step: usize,
    /// Step since the start (1-based).
    pub global_step: usize,
    /// Mean loss of the mini-batch, before the step.
    pub loss: f64,
    /// Fraction of the mini-batch classified correctly, before the step.
    pub accuracy: f64,
    /// `||g||` over all parameters (basis coefficients and the final layer).
    pub grad_norm: f64,
    /// `||g||` in kernel space: `sqrt(sum over layers of kernel_space_norms^2)`.
    pub grad_norm_kernel: f64,
    /// Distance of every layer to `E ∩ L` after the step (empty unless
    /// [`SgdConfig::record_step_distances`]).
    pub distances: Vec<f64>,
}

/// The state at the end of an epoch (epoch 0: the start).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epoch (0 = before training).
    pub epoch: usize,
    /// Training loss: epoch 0, a full pass; later, the mean over the epoch's mini-batches.
    pub train_loss: f64,
    /// Training accuracy, likewise.
    pub train_accuracy: f64,
    /// Test loss at the end of the epoch (NaN without a test set).
    pub test_loss: f64,
    /// Test accuracy at the end of the epoch (NaN without a test set).
    pub test_accuracy: f64,
    /// Distance of every layer to `E ∩ L` at the end of the epoch.
    pub distances: Vec<f64>,
    /// Steps taken so far.
    pub steps: usize,
}

/// Where training stopped on a non-finite value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SgdFailure {
    /// Epoch (1-based).
    pub epoch: usize,
    /// Step within the epoch (1-based).
    pub step: usize,
    /// `loss` or `weights`.
    pub what: String,
}

impl std::fmt::Display for SgdFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.what.as_str() {
            "loss" | "weights" => write!(
                f,
                "SGD diverged at epoch {}, step {}: the {} became non-finite",
                self.epoch, self.step, self.what
            ),
            why => write!(
                f,
                "SGD diverged at epoch {}, step {}: {why}",
                self.epoch, self.step
            ),
        }
    }
}

/// What a phase produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SgdOutcome {
    /// Epochs completed.
    pub epochs: usize,
    /// Steps taken.
    pub steps: usize,
    /// Set if training stopped on a non-finite loss or weight.
    pub failure: Option<SgdFailure>,
}

impl SgdOutcome {
    /// Training stopped at `step` of `epoch` (after `steps` steps in all) on a non-finite
    /// `what` (`loss` or `weights`): the epochs before it completed.
    fn failed(epoch: usize, step: usize, steps: usize, what: &str) -> Self {
        SgdOutcome {
            epochs: epoch - 1,
            steps,
            failure: Some(SgdFailure {
                epoch,
                step,
                what: what.into(),
            }),
        }
    }
}

fn argmax<T: Real>(row: &[T]) -> usize {
    let mut best = 0;
    for (j, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = j;
        }
    }
    best
}

fn fill_batch<T: Real>(data: &ClassData<T>, rows: &[usize], x: &mut Array2<T>, t: &mut Array2<T>) {
    t.fill(T::zero());
    for (i, &r) in rows.iter().enumerate() {
        x.row_mut(i).assign(&data.x.row(r));
        t[[i, data.labels[r]]] = T::one();
    }
}

/// Mean loss and accuracy of `params` on `data`, in chunks of `chunk` rows (no gradient).
///
/// # Errors
/// [`eqaug_nn::NnError::Input`] if `data` or `params` do not fit `seq`.
pub fn evaluate<T: Real>(
    seq: &Sequential<T>,
    params: &Params<T>,
    data: &ClassData<T>,
    chunk: usize,
) -> Result<(f64, f64), eqaug_nn::NnError> {
    if data.is_empty() {
        return Ok((f64::NAN, f64::NAN));
    }
    let chunk = chunk.max(1).min(data.len());
    let mut ws = seq.workspace(chunk);
    let mut t = Array2::<T>::zeros((chunk, data.classes));
    let (mut loss, mut correct) = (0.0f64, 0usize);
    let mut r0 = 0;
    while r0 < data.len() {
        let r1 = (r0 + chunk).min(data.len());
        let n = r1 - r0;
        let x = data.x.slice(ndarray::s![r0..r1, ..]);
        let mut tv = t.slice_mut(ndarray::s![..n, ..]);
        tv.fill(T::zero());
        for i in 0..n {
            tv[[i, data.labels[r0 + i]]] = T::one();
        }
        loss += seq
            .loss(params, x, t.slice(ndarray::s![..n, ..]), n, &mut ws)?
            .to_f64_exact();
        let out = seq.output(&ws)?;
        for i in 0..n {
            let row = out.row(i);
            if argmax(row.as_slice().expect("row-major")) == data.labels[r0 + i] {
                correct += 1;
            }
        }
        r0 = r1;
    }
    let n = data.len() as f64;
    Ok((loss / n, correct as f64 / n))
}

/// Trains `params` by plain mini-batch SGD (no momentum, no weight decay): every epoch the
/// training set is shuffled with `rng` and cut into mini-batches of `cfg.batch_size`; each
/// mini-batch's mean-loss gradient is computed, constrained by the model (the equivariant
/// model projects its final layer's gradient), and stepped: `A <- A - lr g`.
///
/// Calls `on_epoch` for epoch 0 (the start) and after every epoch, and `on_step` after every
/// step (see the module docs for what they contain). A non-finite loss or weight, or weights
/// grown beyond [`crate::Divergence`]'s bound, stops training and is reported in
/// [`SgdOutcome::failure`], not as an error; errors are for inputs that do not fit.
pub fn sgd<T: Real, M: SgdModel<T> + ?Sized>(
    model: &M,
    params: &mut Params<T>,
    train: &ClassData<T>,
    test: Option<&ClassData<T>>,
    cfg: &SgdConfig,
    rng: &mut ChaCha8Rng,
    on_step: &mut dyn FnMut(&StepRecord),
    on_epoch: &mut dyn FnMut(&EpochRecord, &Params<T>),
) -> Result<SgdOutcome, TrainError> {
    cfg.validate()?;
    let seq = model.sequential();
    if train.is_empty() {
        return Err(TrainError::Invalid("the training set is empty".into()));
    }
    for (name, d) in std::iter::once(("training", train)).chain(test.map(|t| ("test", t))) {
        if d.x.ncols() != seq.input_width() || d.classes != seq.output_width() {
            return Err(TrainError::Invalid(format!(
                "the {name} set ({} features, {} classes) does not fit the network ({} -> {})",
                d.x.ncols(),
                d.classes,
                seq.input_width(),
                seq.output_width()
            )));
        }
    }
    let eval_test = |p: &Params<T>| match test {
        Some(t) => evaluate(seq, p, t, cfg.eval_chunk),
        None => Ok((f64::NAN, f64::NAN)),
    };
    // Weights grown four orders of magnitude beyond their start are a divergence even while
    // they stay finite (see [`crate::Divergence`]).
    let divergence = crate::Divergence::default();
    let norm0 = params.norm().to_f64_exact();
    let (train_loss, train_accuracy) = evaluate(seq, params, train, cfg.eval_chunk)?;
    let (test_loss, test_accuracy) = eval_test(params)?;
    on_epoch(
        &EpochRecord {
            epoch: 0,
            train_loss,
            train_accuracy,
            test_loss,
            test_accuracy,
            distances: model.distances_to_e(params),
            steps: 0,
        },
        params,
    );
    let b = cfg.batch_size.min(train.len());
    let chunk = cfg.chunk_rows.unwrap_or(b).min(b);
    let mut ws = seq.workspace(chunk);
    let mut grads = seq.zeros();
    let mut xb = Array2::<T>::zeros((b, train.x.ncols()));
    let mut tb = Array2::<T>::zeros((b, train.classes));
    let mut order: Vec<usize> = (0..train.len()).collect();
    let lr = T::from_f64_lossy(cfg.learning_rate);
    let mut global = 0usize;
    for epoch in 1..=cfg.epochs {
        order.shuffle(rng);
        let (mut loss_sum, mut correct) = (0.0f64, 0usize);
        for (step0, rows) in order.chunks(b).enumerate() {
            let step = step0 + 1;
            let n = rows.len();
            fill_batch(train, rows, &mut xb, &mut tb);
            let (x, t) = (
                xb.slice(ndarray::s![..n, ..]),
                tb.slice(ndarray::s![..n, ..]),
            );
            grads.fill_zero();
            let (mut l, mut right) = (0.0f64, 0usize);
            for (c, sub) in rows.chunks(chunk).enumerate() {
                let (lo, hi) = (c * chunk, c * chunk + sub.len());
                let (xc, tc) = (
                    x.slice(ndarray::s![lo..hi, ..]),
                    t.slice(ndarray::s![lo..hi, ..]),
                );
                l += seq
                    .accumulate_loss_and_grad(params, xc, tc, hi - lo, &mut grads, &mut ws)?
                    .to_f64_exact();
                let out = seq.output(&ws)?;
                right += (0..sub.len())
                    .filter(|&i| {
                        argmax(out.row(i).as_slice().expect("row-major")) == train.labels[sub[i]]
                    })
                    .count();
            }
            let loss = l / n as f64;
            if !loss.is_finite() {
                return Ok(SgdOutcome::failed(epoch, step, global, "loss"));
            }
            grads.scale(T::one() / T::from_f64_lossy(n as f64));
            model.constrain_gradient(&mut grads);
            let grad_norm = grads.norm().to_f64_exact();
            let grad_norm_kernel = model
                .kernel_space_norms(&grads)
                .iter()
                .map(|v| v * v)
                .sum::<f64>()
                .sqrt();
            params.axpy(-lr, &grads);
            global += 1;
            if !params.is_finite() {
                return Ok(SgdOutcome::failed(epoch, step, global, "weights"));
            }
            if let Some(why) = divergence.weights(norm0, params.norm().to_f64_exact()) {
                return Ok(SgdOutcome::failed(epoch, step, global, &why));
            }
            loss_sum += loss * n as f64;
            correct += right;
            on_step(&StepRecord {
                epoch,
                step,
                global_step: global,
                loss,
                accuracy: right as f64 / n as f64,
                grad_norm,
                grad_norm_kernel,
                distances: if cfg.record_step_distances {
                    model.distances_to_e(params)
                } else {
                    Vec::new()
                },
            });
        }
        let (test_loss, test_accuracy) = eval_test(params)?;
        on_epoch(
            &EpochRecord {
                epoch,
                train_loss: loss_sum / train.len() as f64,
                train_accuracy: correct as f64 / train.len() as f64,
                test_loss,
                test_accuracy,
                distances: model.distances_to_e(params),
                steps: global,
            },
            params,
        );
    }
    Ok(SgdOutcome {
        epochs: cfg.epochs,
        steps: global,
        failure: None,
    })
}
