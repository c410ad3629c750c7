//! `eqaug stability CONFIG [--profile P] [--out DIR]`: the stability analysis of
//! docs/science.md §10 (Hessian spectra on E and E-perp at a stationary point in E, predicted against
//! measured escape). `CONFIG = worked-example` runs the worked example of docs/science.md §1.4
//! through the same analysis (a self-test).

use eqaug_harness::memory;
use std::path::PathBuf;

/// Arguments of `eqaug stability`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The experiment config (e.g. experiments/e1.toml), or `worked-example`.
    pub config: PathBuf,
    /// The profile (its `[stability]` section and sizes; default `stability`).
    #[arg(long, default_value = "stability")]
    pub profile: String,
    /// Output root: OUT/<experiment>/stability.json.
    #[arg(long, default_value = "runs/stability")]
    pub out: PathBuf,
    /// Refuse to start when the estimated memory exceeds this (e.g. `8G`, `512M`); default:
    /// the memory available now (MemAvailable in /proc/meminfo).
    #[arg(long, value_name = "SIZE", value_parser = memory::parse_size)]
    pub max_memory: Option<u64>,
}

/// Runs `eqaug stability`.
pub fn run(args: Args) -> super::CliResult {
    if args.config.as_os_str() == "worked-example" {
        let o = eqaug_harness::stability::run_worked_example(&args.out)?;
        let r = &o.runs[0].report;
        eprintln!(
            "[worked-example] E {:.6}, E-perp {:.6} (expected 0.5 and {:.6}: twice those of docs/science.md §1.4, the loss is the MSE), {:?}; {}",
            r.e_block.min,
            r.perp_block.min,
            (std::f64::consts::LN_2 - 1.0) / 2.0,
            r.verdict,
            args.out.join("worked-example/stability.json").display()
        );
        return Ok(());
    }
    let experiments = eqaug_harness::config::load(&args.config, &args.profile)?;
    // Estimate every experiment before anything large is allocated (the analysis checks its
    // own parts again once the network is built).
    let limit = memory::limit(args.max_memory);
    for exp in &experiments {
        memory::estimate_experiment(exp)?.check(limit.clone())?;
    }
    for exp in &experiments {
        let o = eqaug_harness::stability::run_stability_within(exp, &args.out, limit.clone())?;
        eprintln!(
            "[{}] {} run(s) analysed in {:.1} s; {}",
            o.experiment,
            o.runs.len(),
            o.wall_seconds,
            args.out
                .join(&o.experiment)
                .join(eqaug_harness::schema::outputs::STABILITY_JSON)
                .display()
        );
    }
    Ok(())
}
