//! `eqaug list`: the experiment configs and their profiles.

use eqaug_harness::config::{self, AnyExperiment};
use std::path::PathBuf;

/// Arguments of `eqaug list`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Folder of experiment configs.
    #[arg(default_value = "experiments")]
    pub dir: PathBuf,
}

/// Runs `eqaug list`.
pub fn run(args: Args) -> super::CliResult {
    let mut files: Vec<PathBuf> = std::fs::read_dir(&args.dir)
        .map_err(eqaug_harness::io::IoError::at(&args.dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    for f in files {
        for profile in config::profiles(&f)? {
            for exp in config::load_any(&f, &profile)? {
                println!("{:<28} {:<8} {}", f.display(), profile, describe(&exp));
            }
        }
    }
    Ok(())
}

/// One line of `eqaug list` (after the file and profile).
fn describe(exp: &AnyExperiment) -> String {
    match exp {
        AnyExperiment::FullBatch(e) => format!(
            "{:<14} group {:<10} runs {:>3} epochs {:>3} data {:>5}  {}",
            e.name, e.group, e.protocol.runs, e.protocol.epochs, e.data.count, e.note
        ),
        AnyExperiment::E5(e) => format!(
            "{:<14} cases {:<10} runs {:>3} epochs {:>3}+{:<3} {}",
            e.name,
            e.cases.len(),
            e.protocol.runs,
            e.phase1.epochs,
            e.phase2.epochs,
            e.note
        ),
    }
}
