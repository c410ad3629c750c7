#![doc = include_str!("../README.md")]
//!
//! ## Overview
//!
//! * [`Trainer`] computes one strategy's full-batch gradient: the mean-loss gradient
//!   accumulated over mini-batches, for [`StrategyKind::Augmented`] averaged over its passes of
//!   transformed data, for [`StrategyKind::Equivariant`] projected onto E. Chunks of many
//!   mini-batches go through the network together (the weights do not change within an epoch);
//!   normalisation statistics stay per mini-batch.
//! * [`train`] runs every strategy from one shared `A0` for a number of epochs, recording the
//!   metrics of SPEC section 3 ([`EpochMetrics`]) after every step, and stops a strategy that
//!   produces a non-finite loss or weight without losing what was recorded.
#![warn(missing_docs)]

mod error;
mod hash;
pub mod hessian;
mod metrics;
mod strategy;
mod train;
pub mod worked_example;

pub use error::TrainError;
pub use hash::fnv1a64;
pub use metrics::{equivariance_error, EpochMetrics, EquivarianceError};
pub use strategy::{Protocol, Sampling, StrategyKind, StrategySpec};
pub use train::{strategy_rng, train, Failure, RunOutcome, TrainData, Trainer};
