#![doc = include_str!("../README.md")]
//!
//! ## Overview
//!
//! * [`Trainer`] computes one strategy's full-batch gradient: the mean-loss gradient
//!   accumulated over mini-batches, for [`StrategyKind::Augmented`] averaged over its passes of
//!   transformed data, for [`StrategyKind::Equivariant`] projected onto E. Chunks of many
//!   mini-batches go through the network together (the weights do not change within an epoch);
//!   normalisation statistics stay per mini-batch.
//! * [`stability`] (with [`lanczos`] and [`hessian`]): the stability analysis of
//!   docs/science.md §10 at equivariant stationary points (Hessian spectra on E and E-perp, escapes).
//! * [`train`] runs every strategy from one shared `A0` for a number of epochs, recording the
//!   metrics of docs/science.md §3 ([`EpochMetrics`]) after every step, and stops a strategy that
//!   produces a non-finite loss or weight without losing what was recorded.
//! * [`sgd`]: the plain mini-batch SGD protocol of E5 (two phases: equivariant model, then the
//!   model on a kernel support on the C_4 orbit of the data), with per-step and per-epoch
//!   records of the distances to `E ∩ L`.
#![warn(missing_docs)]

mod error;
mod hash;
mod heldout;
pub mod hessian;
pub mod lanczos;
mod metrics;
pub mod regularised;
pub mod sgd;
pub mod stability;
mod strategy;
mod train;
pub mod worked_example;

pub use error::TrainError;
pub use hash::fnv1a64;
pub use heldout::{score, HeldOut, TestMetrics};
pub use metrics::{equivariance_error, EpochMetrics, EquivarianceError};
pub use strategy::{Divergence, Protocol, Regulariser, Sampling, StrategyKind, StrategySpec};
pub use train::{
    strategy_rng, train, train_with_held_out, Failure, RunOutcome, TrainData, Trainer,
};

/// The `ndarray` crate of this API (0.16): [`TrainData`] holds [`ndarray::Array2`]s.
pub use eqaug_nn::ndarray;
/// The `rand` crate of this API (0.8).
pub use eqaug_nn::rand;
/// The `rand_chacha` crate of this API (0.3): [`Trainer::gradient`] takes its `ChaCha8Rng`.
pub use rand_chacha;
