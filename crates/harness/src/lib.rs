#![doc = include_str!("../README.md")]
//!
//! ## Modules
//!
//! - [`config`]: experiment configs and profiles, validated into an [`config::Experiment`];
//! - [`setup`]: a run's group, data, held-out split and networks, rebuilt from a config or a
//!   results folder ([`setup::RunSetup`]), and its checkpoints;
//! - [`runner`]: runs every (run, strategy) of an experiment of any kind, resumable and
//!   shardable, many processes to one folder;
//! - [`schema`]: the results on disk (`experiment.json`, `run.json`, `metrics.csv`,
//!   checkpoints), written by the runner and read by the report;
//! - [`report`]: tables, figures and claims;
//! - [`io`]: atomic writes.
#![warn(missing_docs)]

pub mod config;
pub mod io;
pub mod lock;
pub mod memory;
pub mod progress;
pub mod report;
pub mod runner;
pub mod schema;
pub mod setup;
pub mod stability;

pub use report::claims::worked_example_claims;
