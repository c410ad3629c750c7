//! Strategies and the protocol's hyperparameters.

use eqaug_groups::ReferenceTask;
use serde::{Deserialize, Serialize};

/// The three ways of training of the paper (SPEC section 1).
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
    /// (SPEC section 7), to measure their effect.
    Reference,
}

/// One strategy of a run: a name (the `strategy` column of the metrics), its kind, and for
/// augmentation the sampling mode and the number of passes per epoch.
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
}

impl StrategySpec {
    /// Nominal training.
    pub fn nominal() -> Self {
        StrategySpec {
            name: "nominal".into(),
            kind: StrategyKind::Nominal,
            sampling: Sampling::PerBatch,
            passes: 1,
        }
    }

    /// Equivariant training.
    pub fn equivariant() -> Self {
        StrategySpec {
            name: "equivariant".into(),
            kind: StrategyKind::Equivariant,
            sampling: Sampling::PerBatch,
            passes: 1,
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
        }
    }
}

/// The full-batch protocol of SPEC section 3.
#[derive(Clone, Debug, PartialEq)]
pub struct Protocol {
    /// Number of epochs (= gradient steps).
    pub epochs: usize,
    /// Learning rate of the plain gradient step.
    pub learning_rate: f64,
    /// Mini-batch size (statistics of normalisation layers are per mini-batch).
    pub minibatch: usize,
    /// Rows per chunk pushed through the network at once (rounded down to whole
    /// mini-batches, at least one). Larger chunks mean larger, faster GEMMs.
    pub chunk_rows: usize,
    /// Which distribution `Sampling::Reference` reproduces.
    pub reference_task: ReferenceTask,
}

impl Protocol {
    /// Rows per chunk: a whole number of mini-batches, at least one.
    pub fn rows_per_chunk(&self) -> usize {
        let mb = self.minibatch.max(1);
        (self.chunk_rows / mb).max(1) * mb
    }

    pub(crate) fn validate(&self) -> Result<(), crate::TrainError> {
        let bad = |m: String| Err(crate::TrainError::Invalid(m));
        if self.minibatch == 0 {
            return bad("the mini-batch size must be at least 1".into());
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad(format!(
                "the learning rate must be positive, got {}",
                self.learning_rate
            ));
        }
        Ok(())
    }
}
