//! `eqaug worked-example`: the instability example of docs/science.md §1.4, as claims.

use std::path::PathBuf;

/// Arguments of `eqaug worked-example`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write the claims as JSON here (e.g. reports/worked_example.json) instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Runs `eqaug worked-example`.
pub fn run(args: Args) -> super::CliResult {
    let w = eqaug_dynamics::worked_example::run()?;
    let mut claims = eqaug_harness::worked_example_claims(&w);
    // The regulariser's exact +gamma shift on E-perp (docs/science.md §10), a claim of the same kind.
    let shift = eqaug_dynamics::regularised::eigenvalue_shift_check(0.5)?;
    claims.extend(eqaug_harness::report::regularised::shift_claims(&shift));
    let text = serde_json::to_string_pretty(&claims)?;
    match args.out {
        Some(p) => {
            eqaug_harness::io::write_atomic(&p, text.as_bytes())?;
            eprintln!("wrote {}", p.display());
        }
        None => println!("{text}"),
    }
    Ok(())
}
