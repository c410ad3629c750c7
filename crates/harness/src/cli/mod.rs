//! One module per subcommand of the `eqaug` binary.

pub mod data;
pub mod inspect;
pub mod list;
pub mod report;
pub mod run;
pub mod slurm;
pub mod stability;
pub mod status;
pub mod worked_example;

/// Errors of the command-line layer: a message for the user.
pub type CliResult = Result<(), Box<dyn std::error::Error>>;
