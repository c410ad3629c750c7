//! One module per subcommand of the `eqaug` binary.

pub mod data;
pub mod inspect;
pub mod report;

/// Errors of the command-line layer: a message for the user.
pub type CliResult = Result<(), Box<dyn std::error::Error>>;
