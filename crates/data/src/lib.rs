#![doc = include_str!("../README.md")]
//!
//! ## Modules
//!
//! - [`sbm`]: two-block stochastic block model graphs, labelled by connectivity (E1);
//! - [`mnist`]: an IDX reader/writer, the shipped 10 000-digit MNIST subset, the
//!   28 x 28 -> 14 x 14 antialiased resize (E2, E4) and standardisation (E5);
//! - [`mnist_rotations`]: 28 x 28 standardised MNIST with a fixed train/test split and the C_4 orbit of
//!   the training set (E5);
//! - [`shapes`]: synthetic triangle/pentagon segmentation images (E3);
//! - [`batching`]: mini-batches and chunks of mini-batches as row ranges;
//! - [`export`]: `.npy` export and a summary for `eqaug data describe`;
//! - [`npy`]: the `npy` dataset kind, a user's own inputs and targets from `.npy` files.
//!
//! Every data set is a [`Dataset`]: inputs stored as `f64`, one row per sample, features
//! channel-major `(channel, position)`, positions row-major `s = n * row + col`.
//! Synthetic data are generated deterministically from a seed with
//! `ChaCha8Rng::seed_from_u64(seed)`; nothing is ever downloaded.
#![warn(missing_docs)]

pub mod batching;
mod dataset;
mod error;
pub mod export;
pub mod idx;
pub mod mnist;
pub mod mnist_rotations;
pub mod npy;
pub mod sbm;
pub mod shapes;

pub use dataset::{Dataset, Targets};
pub use error::DataError;
