//! The `eqaug` command-line tool.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// `println!` that ends the process quietly when its reader has gone (`eqaug list | head`):
/// the standard one panics on a closed pipe. Every subcommand prints through it (the macro is
/// in scope in `cli` and its modules).
macro_rules! println {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($t)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            eprintln!("error: cannot write to standard output: {e}");
            std::process::exit(1);
        }
    }};
}

mod cli;

/// eqaug: optimization dynamics of equivariant and augmented neural networks.
#[derive(Debug, Parser)]
#[command(name = "eqaug", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run an experiment config: every (run, strategy), resumable and shardable.
    Run(cli::run::Args),
    /// List the experiment configs and their profiles.
    List(cli::list::Args),
    /// The worked instability example of docs/science.md §1.4, as claims (JSON).
    WorkedExample(cli::worked_example::Args),
    /// Describe a group: its order and the dimension of the equivariant layer spaces.
    Inspect(cli::inspect::Args),
    /// Export or describe the data sets.
    #[command(subcommand)]
    Data(cli::data::DataCommand),
    /// Aggregate finished runs into tables, SVG figures and checked claims.
    Report(cli::report::Args),
    /// Finished / running / failed / missing runs of an output folder (exit code 0 when all
    /// finished).
    Status(cli::status::Args),
    /// Write the sbatch script of a Slurm job array that runs a config in shards.
    Slurm(cli::slurm::Args),
    /// Stability of the stationary points in E: Hessian spectra on E and E-perp, escapes.
    Stability(cli::stability::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => cli::run::run(args),
        Command::List(args) => cli::list::run(args),
        Command::WorkedExample(args) => cli::worked_example::run(args),
        Command::Inspect(args) => cli::inspect::run(args),
        Command::Data(cmd) => cli::data::run(cmd),
        Command::Report(args) => cli::report::run(args),
        Command::Status(args) => cli::status::run(args),
        Command::Slurm(args) => cli::slurm::run(args),
        Command::Stability(args) => cli::stability::run(args),
    };
    if std::env::var_os("EQAUG_REPORT_PEAK_RSS").is_some() {
        report_peak_rss();
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprint!("{}", error_chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// `error: <message>` and one `caused by: <source>` line per error in the source chain. A
/// cause whose text already ends the line above (an error that prints its source inline) is
/// not repeated.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = format!("error: {e}\n");
    let mut shown = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !shown.ends_with(&text) {
            out.push_str(&format!("caused by: {text}\n"));
        }
        shown = text;
        cause = c.source();
    }
    out
}

/// With `EQAUG_REPORT_PEAK_RSS` set, prints the process's peak resident set size (`VmHWM` of
/// /proc/self/status, Linux) to stderr as `eqaug: peak RSS <kB> kB` (read by `cargo xtask
/// bench`).
fn report_peak_rss() {
    let hwm = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        });
    match hwm {
        Some(kb) => eprintln!("eqaug: peak RSS {kb} kB"),
        None => eprintln!("eqaug: peak RSS unavailable (no /proc/self/status)"),
    }
}
