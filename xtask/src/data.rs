//! `cargo xtask data`.

/// Arguments of `cargo xtask data`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `cargo xtask data`.
pub fn run(_args: Args) -> Result<(), String> {
    Ok(())
}
