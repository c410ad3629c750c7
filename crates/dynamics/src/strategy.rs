//! Strategies and the protocol's hyperparameters.

use eqaug_groups::{Real, ReferenceTask};
use eqaug_nn::{Params, TensorKind};
use serde::{Deserialize, Serialize};

/// The three ways of training of the paper (docs/science.md §1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StrategyKind {
    /// `A <- A - eta grad R(A)`.
    Nominal,
    /// `A <- A - eta grad R_aug(A)`, the expectation over the group sampled or exact.
    Augmented,
    /// `A <- A - eta Pi_E grad R(A)`, started in E.
    Equivariant,
}

/// How the augmented strategy draws group elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Sampling {
    /// One uniform element per mini-batch (the paper's protocol).
    #[default]
    PerBatch,
    /// One uniform element per sample.
    PerSample,
    /// The exact average over all group elements: one pass per element, every mini-batch
    /// transformed by it (Corollary 1); only for enumerable groups.
    Exact,
    /// One element per mini-batch from the non-uniform distributions of the authors' code
    /// (docs/science.md §7), to measure their effect.
    Reference,
}

/// The penalty `gamma/2 ||A_Eperp||^2` (summed over the group layers) of regularised training
/// (Nordenfors and Flinth, arXiv 2502.06547; docs/science.md §10), added to the risk of a nominal
/// or augmented strategy. Its gradient `gamma (A - Pi_E A)` on the group layers is exact and
/// costs one projection; on E-perp it adds exactly `gamma` to every Hessian eigenvalue, on E
/// nothing.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Regulariser {
    /// The strength `gamma >= 0` (`0` is plain training, bit for bit).
    pub gamma: f64,
}

impl Regulariser {
    /// `gamma/2 ||A_Eperp||^2` at `params`, accumulated in f64.
    pub fn penalty<T: Real>(&self, params: &Params<T>) -> f64 {
        if self.gamma == 0.0 {
            return 0.0;
        }
        let sq: f64 = params
            .group_layers()
            .map(|t| match t.kind {
                TensorKind::Group { projector, .. } => {
                    let d = projector
                        .distance_to_equivariant_f64(t.data)
                        .expect("the layout gives every tensor its length");
                    d * d
                }
                _ => 0.0,
            })
            .sum();
        0.5 * self.gamma * sq
    }

    /// Adds the penalty's gradient `gamma (W_k - Pi_E W_k)` to every group layer of `grads`;
    /// `scratch` (same layout, overwritten) holds the projection. Nothing happens for
    /// `gamma = 0`, so the unregularised strategy is reproduced bit for bit.
    pub fn add_gradient<T: Real>(
        &self,
        params: &Params<T>,
        grads: &mut Params<T>,
        scratch: &mut Params<T>,
    ) {
        if self.gamma == 0.0 {
            return;
        }
        let gamma = T::from_f64_lossy(self.gamma);
        scratch.copy_from(params);
        scratch.project_group_layers();
        for i in 0..params.num_tensors() {
            let a = params.tensor(i);
            if !a.is_group() {
                continue;
            }
            let pa = scratch.tensor(i);
            let g = grads.tensor_mut(i).data;
            for ((g, &a), &pa) in g.iter_mut().zip(a.data).zip(pa.data) {
                *g += gamma * (a - pa);
            }
        }
    }

    /// Checks that `gamma` is finite and `>= 0`; the message names `strategy`.
    pub fn validate(&self, strategy: &str) -> Result<(), crate::TrainError> {
        if self.gamma.is_finite() && self.gamma >= 0.0 {
            Ok(())
        } else {
            Err(crate::TrainError::Invalid(format!(
                "strategy `{strategy}`: the regulariser's gamma must be finite and >= 0, got {}",
                self.gamma
            )))
        }
    }
}

/// One strategy of a run: a name (the `strategy` column of the metrics), its kind, for
/// augmentation the sampling mode and the number of passes per epoch, and an optional
/// [`Regulariser`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StrategySpec {
    /// Name used in metrics and reports (`nominal`, `augmented`, `augmented-exact`, ...).
    pub name: String,
    /// The kind of training.
    pub kind: StrategyKind,
    /// Sampling of group elements (augmented only).
    pub sampling: Sampling,
    /// Passes over the data per epoch (augmented only; `L` = 25 in the paper; ignored by the
    /// exact mode, which makes one pass per group element).
    pub passes: usize,
    /// The penalty `gamma/2 ||A_Eperp||^2` added to the risk (nominal and augmented only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regulariser: Option<Regulariser>,
}

impl StrategySpec {
    /// Nominal training.
    pub fn nominal() -> Self {
        StrategySpec {
            name: "nominal".into(),
            kind: StrategyKind::Nominal,
            sampling: Sampling::PerBatch,
            passes: 1,
            regulariser: None,
        }
    }

    /// Equivariant training.
    pub fn equivariant() -> Self {
        StrategySpec {
            name: "equivariant".into(),
            kind: StrategyKind::Equivariant,
            sampling: Sampling::PerBatch,
            passes: 1,
            regulariser: None,
        }
    }

    /// Augmented training with `passes` passes per epoch and the given sampling.
    pub fn augmented(passes: usize, sampling: Sampling) -> Self {
        let name = match sampling {
            Sampling::PerBatch => "augmented",
            Sampling::PerSample => "augmented-per-sample",
            Sampling::Exact => "augmented-exact",
            Sampling::Reference => "augmented-reference",
        };
        StrategySpec {
            name: name.into(),
            kind: StrategyKind::Augmented,
            sampling,
            passes,
            regulariser: None,
        }
    }

    /// The same strategy with the penalty `gamma/2 ||A_Eperp||^2` added to its risk (the name
    /// is kept: choose one that says so, e.g. `nominal-reg-1e-2`).
    pub fn with_regulariser(mut self, gamma: f64) -> Self {
        self.regulariser = Some(Regulariser { gamma });
        self
    }

    /// The penalty `gamma/2 ||A_Eperp||^2` of its regulariser at `params` (0 without one).
    pub fn penalty<T: Real>(&self, params: &Params<T>) -> f64 {
        self.regulariser.map_or(0.0, |r| r.penalty(params))
    }

    /// Checks the combination: a regulariser only on nominal or augmented training, with a
    /// finite `gamma >= 0`.
    pub fn validate(&self) -> Result<(), crate::TrainError> {
        if let Some(r) = &self.regulariser {
            if self.kind == StrategyKind::Equivariant {
                return Err(crate::TrainError::Invalid(format!(
                    "strategy `{}`: a regulariser applies to nominal or augmented training; \
                     equivariant training stays in E, where the penalty is zero",
                    self.name
                )));
            }
            r.validate(&self.name)?;
        }
        Ok(())
    }
}

/// When a strategy counts as diverged, beyond a non-finite loss or weight.
///
/// Full-batch gradient descent with a step below `2 / L` (L the Lipschitz constant of the
/// gradient) never increases the risk (the descent lemma), and the augmented strategies add a
/// bounded per-epoch noise to that; every run of the shipped configs keeps its loss at or below
/// its starting value and its weights within a few per cent of `||A0||`. A loss that climbs two
/// orders of magnitude above its start (or sits at a loss's clamp, e.g. the binary
/// cross-entropy's 100 against a start near 0.7) or weights that grow by orders of magnitude
/// mean a step far beyond the stable range: the strategy's numbers describe the overflow, not
/// the dynamics, and must not count.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct Divergence {
    /// Diverged when the loss exceeds this multiple of its value at epoch 0 (default 100).
    pub loss_factor: f64,
    /// Diverged when `||A||` exceeds this multiple of `||A0||` (default 1e4).
    pub weight_factor: f64,
}

impl Default for Divergence {
    fn default() -> Self {
        Divergence {
            loss_factor: 100.0,
            weight_factor: 1e4,
        }
    }
}

impl Divergence {
    /// With both factors given.
    pub fn new(loss_factor: f64, weight_factor: f64) -> Self {
        Divergence {
            loss_factor,
            weight_factor,
        }
    }

    /// Why `loss` (at a later epoch) has diverged from `loss0` (at epoch 0), if it has.
    pub fn loss(&self, loss0: f64, loss: f64) -> Option<String> {
        if !loss.is_finite() {
            return Some("the loss is not finite".into());
        }
        (loss0.is_finite() && loss > self.loss_factor * loss0.abs().max(f64::MIN_POSITIVE)).then(
            || {
                format!(
                    "the loss {loss:.4e} is more than {} times its start {loss0:.4e}",
                    self.loss_factor
                )
            },
        )
    }

    /// Why weights of norm `norm` have diverged from a start of norm `norm0`, if they have.
    pub fn weights(&self, norm0: f64, norm: f64) -> Option<String> {
        if !norm.is_finite() {
            return Some("the weights are not finite".into());
        }
        (norm > self.weight_factor * norm0.max(f64::MIN_POSITIVE)).then(|| {
            format!(
                "||A|| = {norm:.4e} is more than {} times ||A0|| = {norm0:.4e}",
                self.weight_factor
            )
        })
    }
}

/// The full-batch protocol of docs/science.md §3.
///
/// Built from [`Protocol::default`] with the `with_*` methods (fields may be added in minor
/// releases, hence `#[non_exhaustive]`):
///
/// ```
/// use eqaug_dynamics::Protocol;
/// let p = Protocol::default().with_epochs(20).with_learning_rate(1e-3).with_minibatch(25);
/// assert_eq!((p.epochs, p.minibatch, p.rows_per_chunk()), (20, 25, 500));
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Protocol {
    /// Number of epochs (= gradient steps); default 10.
    pub epochs: usize,
    /// Learning rate of the plain gradient step; default 0.01.
    pub learning_rate: f64,
    /// Mini-batch size (statistics of normalisation layers are per mini-batch); default 25.
    pub minibatch: usize,
    /// Rows per chunk pushed through the network at once (rounded down to whole
    /// mini-batches, at least one). Larger chunks mean larger, faster GEMMs; default 500.
    pub chunk_rows: usize,
    /// Which distribution `Sampling::Reference` reproduces; default classification.
    pub reference_task: ReferenceTask,
    /// When a strategy counts as diverged; default [`Divergence::default`].
    pub divergence: Divergence,
}

impl Default for Protocol {
    fn default() -> Self {
        Protocol {
            epochs: 10,
            learning_rate: 0.01,
            minibatch: 25,
            chunk_rows: 500,
            reference_task: ReferenceTask::Classification,
            divergence: Divergence::default(),
        }
    }
}

impl Protocol {
    /// With `epochs` epochs (gradient steps).
    pub fn with_epochs(mut self, epochs: usize) -> Self {
        self.epochs = epochs;
        self
    }
    /// With learning rate `learning_rate` (checked when training starts: finite, > 0).
    pub fn with_learning_rate(mut self, learning_rate: f64) -> Self {
        self.learning_rate = learning_rate;
        self
    }
    /// With mini-batches of `minibatch` rows (checked when training starts: at least 1).
    pub fn with_minibatch(mut self, minibatch: usize) -> Self {
        self.minibatch = minibatch;
        self
    }
    /// With chunks of `chunk_rows` rows (rounded down to whole mini-batches, at least one).
    pub fn with_chunk_rows(mut self, chunk_rows: usize) -> Self {
        self.chunk_rows = chunk_rows;
        self
    }
    /// With the reference distribution `task` for `Sampling::Reference`.
    pub fn with_reference_task(mut self, task: ReferenceTask) -> Self {
        self.reference_task = task;
        self
    }
    /// With the divergence rule `divergence`.
    pub fn with_divergence(mut self, divergence: Divergence) -> Self {
        self.divergence = divergence;
        self
    }

    /// Rows per chunk: a whole number of mini-batches, at least one.
    pub fn rows_per_chunk(&self) -> usize {
        let mb = self.minibatch.max(1);
        (self.chunk_rows / mb).max(1) * mb
    }

    pub(crate) fn validate(&self) -> Result<(), crate::TrainError> {
        let bad = |m: String| Err(crate::TrainError::Invalid(m));
        if self.minibatch == 0 {
            return bad("protocol: `minibatch` must be at least 1, got 0".into());
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad(format!(
                "protocol: `learning_rate` must be finite and positive, got {}",
                self.learning_rate
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Divergence;

    #[test]
    fn divergence_rules() {
        let d = Divergence::default();
        // The binary cross-entropy's clamp (100) against a start near ln 2.
        assert!(d.loss(0.693, 100.0).is_some());
        assert!(
            d.loss(0.693, 0.70).is_none(),
            "a small rise is not a divergence"
        );
        assert!(d.loss(0.693, f64::NAN).is_some());
        assert!(d.weights(3.0, 3.0e3).is_none());
        assert!(d.weights(3.0, 8e31).is_some());
        assert!(d.weights(3.0, f64::INFINITY).is_some());
    }
}
