//! # eqaug-dynamics
//!
//! The three training strategies of the paper under its full-batch protocol (SPEC sections 1
//! and 3), the dynamics metrics, and numerical tools for the theory (Hessian-vector products,
//! Lanczos, the worked example of SPEC section 1).
//!
//! * [`Trainer`] computes one strategy's full-batch gradient: the mean-loss gradient
//!   accumulated over mini-batches, for [`StrategyKind::Augmented`] averaged over its passes of
//!   transformed data, for [`StrategyKind::Equivariant`] projected onto E. Chunks of many
//!   mini-batches go through the network together (the weights do not change within an epoch);
//!   normalisation statistics stay per mini-batch.
//! * [`stability`] (with [`lanczos`] and [`hessian`]): the stability analysis of SPEC
//!   section 10 at equivariant stationary points (Hessian spectra on E and E-perp, escapes).
//! * [`train`] runs every strategy from one shared `A0` for a number of epochs, recording the
//!   metrics of SPEC section 3 ([`EpochMetrics`]) after every step, and stops a strategy that
//!   produces a non-finite loss or weight without losing what was recorded.
#![warn(missing_docs)]

mod error;
mod hash;
mod heldout;
pub mod hessian;
pub mod lanczos;
mod metrics;
pub mod regularised;
pub mod stability;
mod strategy;
mod train;
pub mod worked_example;

pub use error::TrainError;
pub use hash::fnv1a64;
pub use heldout::{score, HeldOut, TestMetrics};
pub use metrics::{equivariance_error, EpochMetrics, EquivarianceError};
pub use strategy::{Protocol, Regulariser, Sampling, StrategyKind, StrategySpec};
pub use train::{
    strategy_rng, train, train_with_held_out, Failure, RunOutcome, TrainData, Trainer,
};
