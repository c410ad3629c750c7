//! `eqaug report DIR`: tables, figures and checked claims from finished runs.

use eqaug_harness::report::report_into;
use std::path::PathBuf;

/// Arguments of `eqaug report`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The results folder written by `eqaug run` (one sub-folder per experiment).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Where to write the report (default: DIR itself).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Runs `eqaug report`: writes the report and prints where, with a one-line claims summary
/// and every failing claim. Failing claims are not an error; an unreadable or malformed DIR is.
pub fn run(args: Args) -> super::CliResult {
    let out = args.out.clone().unwrap_or_else(|| args.dir.clone());
    let summary = report_into(&args.dir, &out)?;
    for f in &summary.run_failures {
        println!("FAILED run: {f}");
    }
    println!(
        "report of {} experiment(s) [{}]: wrote {} files; see {}",
        summary.experiments.len(),
        summary.experiments.join(", "),
        summary.files_written.len(),
        out.join(eqaug_harness::schema::outputs::REPORT_MD)
            .display()
    );
    for path in &summary.files_written {
        println!("  {}", path.display());
    }
    println!(
        "claims: {} passed, {} failed, {} with too few runs, {} without data (of {}); see {}",
        summary.claims_passed,
        summary.claims_failed,
        summary.claims_too_few_runs,
        summary.claims_no_data,
        summary.claims.len(),
        out.join(eqaug_harness::schema::outputs::CLAIMS_MD)
            .display()
    );
    for c in summary.claims.iter().filter(|c| !c.pass) {
        if c.no_data {
            println!("  NO DATA {} {}", c.experiment, c.id);
        } else if c.status == eqaug_harness::report::claims::Status::TooFewRuns {
            println!(
                "  TOO FEW RUNS {} {}: {} (an interval needs {})",
                c.experiment,
                c.id,
                eqaug_harness::report::runs_text(c.n),
                eqaug_harness::report::interval::MIN_RUNS
            );
        } else {
            println!(
                "  FAIL {} {}: measured {:e}, bound {}",
                c.experiment, c.id, c.measured, c.bound
            );
        }
    }
    Ok(())
}
