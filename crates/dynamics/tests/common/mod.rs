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
    Protocol {
        epochs,
        learning_rate: lr,
        minibatch,
        chunk_rows: 4 * minibatch,
        reference_task: ReferenceTask::Classification,
        divergence: Default::default(),
    }
}
