//! `eqaug data export | describe`.

/// Subcommands of `eqaug data`.
#[derive(Debug, clap::Subcommand)]
pub enum DataCommand {
    /// Print counts, class balance and value ranges of the data sets.
    Describe,
}

/// Runs `eqaug data ...`.
pub fn run(_cmd: DataCommand) -> super::CliResult {
    Ok(())
}
