//! `eqaug inspect`.

/// Arguments of `eqaug inspect`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `eqaug inspect`.
pub fn run(_args: Args) -> super::CliResult {
    Ok(())
}
