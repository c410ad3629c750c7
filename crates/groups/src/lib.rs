//! # eqaug-groups
//!
//! Finite groups acting on finite index sets by permutations, and the orthogonal projection
//! onto equivariant linear layers as an orbit mean (docs/science.md §1.1).
//!
//! A layer between two permutation representations is a block matrix
//! `W[(c_out, s_out), (c_in, s_in)]` (row-major, channel-major features). It is equivariant iff
//! `W` is constant on every orbit of the index pairs `(s_out, s_in)` under the diagonal action
//! `g.(s_out, s_in) = (g s_out, g s_in)`, per channel pair. The projection `Pi_E` is the mean
//! over each orbit, which equals the Reynolds average `(1/|G|) sum_g rho_out(g) W rho_in(g)^-1`
//! and costs O(#weights) whatever the order of the group.
//!
//! ```
//! use eqaug_groups::{Group, Projector, Rep};
//! let g = Group::builtin("rot", 6).unwrap();
//! // 3 input channels of pixels -> 2 output channels
//! let proj = Projector::between(&g, Rep::base(3), Rep::base(2)).unwrap();
//! assert_eq!(proj.dim_per_channel_pair(), 6usize.pow(4) / 4);
//! let mut w = vec![1.0f64; proj.rows() * proj.cols()];
//! w[0] = 5.0;
//! proj.project_in_place(&mut w).unwrap();
//! assert!(proj.distance_to_equivariant(&w).unwrap() < 1e-12);
//! // a slice of the wrong length is an error, not a panic
//! let err = proj.project(&w[1..]).unwrap_err();
//! assert!(err.to_string().contains("does not match the layer shape 72 x 108"));
//! ```
#![warn(missing_docs)]

// The README's example is compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

mod error;
mod group;
mod orbit;
mod perm;
mod points;
mod projector;
mod real;

pub use error::{GroupError, PermError};
pub use group::{Group, GroupSpec, ReferenceTask, DEFAULT_ENUMERATION_LIMIT};
pub use orbit::OrbitMap;
pub use perm::{act_on_sample, act_on_sample_inverse, Perm};
pub use points::Points;
pub use projector::{reynolds_average, Projector, Rep};
pub use real::Real;

/// The `rand` crate of this API (0.8): [`Group::sample`] takes its [`rand::Rng`].
pub use rand;
