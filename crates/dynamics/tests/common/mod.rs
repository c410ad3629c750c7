//! Helpers shared by the integration tests.
#![allow(dead_code)]

use eqaug_dynamics::{Protocol, TrainData};
use eqaug_groups::{Group, ReferenceTask};
use eqaug_nn::Network;
use std::sync::Arc;

/// A test case: a network over its group and the training data.
pub struct Case {
    pub net: Network<f64>,
    pub group: Arc<Group>,
    pub data: TrainData<f64>,
}

/// A full-batch-style protocol of `epochs` epochs, learning rate `lr`, mini-batches of
/// `minibatch` rows in chunks of four mini-batches, classification reference sampling.
pub fn protocol(epochs: usize, lr: f64, minibatch: usize) -> Protocol {
    Protocol::default()
        .with_epochs(epochs)
        .with_learning_rate(lr)
        .with_minibatch(minibatch)
        .with_chunk_rows(4 * minibatch)
        .with_reference_task(ReferenceTask::Classification)
}

/// The smallest and largest Ritz value of `Hess R` of `strategy` at `a` on `sub` after `steps`
/// Lanczos steps from `start`: the crate's Lanczos ([`eqaug_dynamics::lanczos::lanczos_on_block`])
/// on the crate's HVP ([`eqaug_dynamics::hessian::hvp`], central differences of the trainer's
/// gradient, step `1e-5` absolute for unit vectors).
pub fn extreme_eigenvalues(
    trainer: &mut eqaug_dynamics::Trainer<'_, f64>,
    a: &eqaug_nn::Params<f64>,
    strategy: &eqaug_dynamics::StrategySpec,
    start: &eqaug_nn::Params<f64>,
    sub: eqaug_dynamics::hessian::Subspace,
    steps: usize,
) -> (f64, f64) {
    use eqaug_dynamics::{hessian, lanczos};
    let (mut p, mut gm) = (a.zeros_like(), a.zeros_like());
    let step = 1e-5 / a.norm().max(1.0);
    let run = lanczos::lanczos_on_block(a.layout(), sub, start.as_slice(), steps, |v, out| {
        hessian::hvp(a, v, step, out, &mut p, &mut gm, |x, g| {
            g.copy_from(&hessian::gradient(trainer, x, strategy)?);
            Ok::<f64, eqaug_dynamics::stability::StabilityError>(0.0)
        })
    })
    .unwrap();
    (run.min(), run.max())
}
