//! `eqaug list`: the experiment configs and their profiles.

use eqaug_harness::config;
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
        if eqaug_harness::e5::config::is_e5_file(&f)? {
            let text = std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
            for profile in eqaug_harness::e5::config::profiles_of(&text, &f)? {
                let e = eqaug_harness::e5::config::load(&f, &profile)?;
                println!(
                    "{:<28} {:<8} {:<14} cases {:<10} runs {:>3} epochs {:>3}+{:<3} {}",
                    f.display(),
                    profile,
                    e.name,
                    e.cases.len(),
                    e.protocol.runs,
                    e.phase1.epochs,
                    e.phase2.epochs,
                    e.note
                );
            }
            continue;
        }
        for profile in config::profiles(&f)? {
            for exp in config::load(&f, &profile)? {
                println!(
                    "{:<28} {:<8} {:<14} group {:<10} runs {:>3} epochs {:>3} data {:>5}  {}",
                    f.display(),
                    profile,
                    exp.name,
                    exp.group,
                    exp.protocol.runs,
                    exp.protocol.epochs,
                    exp.data.count,
                    exp.note
                );
            }
        }
    }
    Ok(())
}
