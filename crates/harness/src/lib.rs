//! eqaug-harness: experiment configs, runner, reports and the `eqaug` binary.
#![warn(missing_docs)]

pub mod report;
