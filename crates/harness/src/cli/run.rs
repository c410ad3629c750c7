//! `eqaug run CONFIG`: trains every (run, strategy) of an experiment.

use eqaug_harness::config::{self, Precision};
use eqaug_harness::memory;
use eqaug_harness::runner::{run_experiment, RunOptions};
use std::path::PathBuf;

/// Arguments of `eqaug run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The experiment config (e.g. experiments/e1.toml).
    pub config: PathBuf,
    /// The profile to run (`quick`, `paper`, or one the file defines).
    #[arg(long, default_value = "quick")]
    pub profile: String,
    /// Override the number of runs (at least 1).
    #[arg(long, value_parser = super::slurm::positive)]
    pub runs: Option<usize>,
    /// Override the base seed (run k uses seed + k).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Override the precision of every strategy.
    #[arg(long, value_parser = ["f32", "f64"])]
    pub precision: Option<String>,
    /// Output root: runs go to `OUT/<experiment>/run-XXX`.
    #[arg(long, default_value = "runs")]
    pub out: PathBuf,
    /// Run only shard K of N (runs r with r % N == K - 1). Defaults to the Slurm array task
    /// when set: K - 1 = (SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN) / SLURM_ARRAY_TASK_STEP,
    /// N = SLURM_ARRAY_TASK_COUNT (so `--array=0-10:2` is shards 1 to 6 of 6).
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,
    /// Refuse to start when the estimated memory exceeds this (e.g. `8G`, `512M`); default:
    /// the memory available now (MemAvailable in /proc/meminfo).
    #[arg(long, value_name = "SIZE", value_parser = memory::parse_size)]
    pub max_memory: Option<u64>,
}

/// Parses `K/N` with `1 <= K <= N`.
pub fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let (k, n) = s
        .split_once('/')
        .ok_or_else(|| format!("--shard `{s}`: expected K/N, e.g. 1/4"))?;
    let k: usize = k
        .trim()
        .parse()
        .map_err(|_| format!("--shard `{s}`: K is not a number"))?;
    let n: usize = n
        .trim()
        .parse()
        .map_err(|_| format!("--shard `{s}`: N is not a number"))?;
    if n == 0 || k == 0 || k > n {
        return Err(format!("--shard `{s}`: need 1 <= K <= N"));
    }
    Ok((k, n))
}

/// The shard of this process: `--shard K/N`, else the Slurm array task's, else none.
fn shard_of(args: &Args) -> Result<Option<(usize, usize)>, Box<dyn std::error::Error>> {
    Ok(match &args.shard {
        Some(s) => Some(parse_shard(s)?),
        None => super::slurm::array_shard()?,
    })
}

/// The runner's options from the command line (and the shard), printing the shard.
fn run_options(args: &Args, shard: Option<(usize, usize)>) -> RunOptions {
    let precision = args.precision.as_deref().map(|p| match p {
        "f64" => Precision::F64,
        _ => Precision::F32,
    });
    if let Some((k, n)) = shard {
        eprintln!("shard {k}/{n}");
    }
    RunOptions {
        out: args.out.clone(),
        runs: args.runs,
        seed: args.seed,
        precision,
        shard,
    }
}

/// Runs `eqaug run`.
pub fn run(args: Args) -> super::CliResult {
    if eqaug_harness::e5::config::is_e5_file(&args.config)? {
        return run_e5(args);
    }
    let experiments = config::load(&args.config, &args.profile)?;
    let shard = shard_of(&args)?;
    // Estimate before anything large is allocated (the data, the orbit maps, the runs).
    let limit = memory::limit(args.max_memory);
    for exp in &experiments {
        let mut exp = exp.clone();
        if let Some(r) = args.runs {
            exp.protocol.runs = r;
        }
        memory::estimate_experiment(&exp)?.check(limit.clone())?;
    }
    // Several runs at once: give each run one GEMM thread (matrixmultiply reads this once).
    if experiments.iter().any(|e| e.protocol.parallel_runs > 1)
        && std::env::var_os("MATMUL_NUM_THREADS").is_none()
    {
        std::env::set_var("MATMUL_NUM_THREADS", "1");
    }
    let opts = run_options(&args, shard);
    let (mut finished, mut failed, mut skipped) = (0, 0, 0);
    for exp in &experiments {
        let s = run_experiment(exp, &opts)?;
        let mut failed_runs: Vec<usize> = s.failures.iter().map(|(r, _)| *r).collect();
        failed_runs.dedup();
        eprintln!(
            "[{}] {} run(s) finished ({} with a failed strategy), {} already done, {} in \
             progress elsewhere, {:.1} s; results in {}",
            s.experiment,
            s.finished.len(),
            failed_runs.len(),
            s.skipped.len(),
            s.running_elsewhere.len(),
            s.wall_seconds,
            args.out.join(&s.experiment).display()
        );
        for (run, f) in &s.failures {
            eprintln!(
                "[{}] {} strategy {} FAILED at epoch {}: {}",
                s.experiment,
                eqaug_harness::schema::run_dir_name(*run),
                f.strategy,
                f.epoch,
                f.error
            );
        }
        finished += s.finished.len() - failed_runs.len();
        failed += failed_runs.len();
        skipped += s.skipped.len() + s.running_elsewhere.len();
    }
    // The line scripts test (also the exit code: non-zero when a run failed).
    eprintln!("eqaug run: {finished} finished, {failed} failed, {skipped} skipped");
    if failed > 0 {
        return Err(RunFailed(failed).into());
    }
    Ok(())
}

/// Some runs had a strategy that diverged (recorded in their run.json).
#[derive(Debug, thiserror::Error)]
#[error(
    "{0} run(s) had a failed strategy (see the lines above; `eqaug status` lists them): the \
     report leaves failed strategies out of the claims"
)]
pub struct RunFailed(pub usize);

/// `eqaug run` of an E5 (two-phase SGD) config.
fn run_e5(args: Args) -> super::CliResult {
    use eqaug_harness::e5;
    let exp = e5::config::load(&args.config, &args.profile)?;
    let shard = shard_of(&args)?;
    let opts = run_options(&args, shard);
    let s = e5::runner::run_e5(&exp, &opts)?;
    eprintln!(
        "[{}] {} run(s) finished, {} already done, {:.1} s; results in {}",
        s.experiment,
        s.finished.len(),
        s.skipped.len(),
        s.wall_seconds,
        args.out.join(&s.experiment).display()
    );
    for f in &s.failures {
        eprintln!("[{}] {f}", s.experiment);
    }
    let failed = s.failures.len();
    eprintln!(
        "eqaug run: {} finished, {failed} failed, {} skipped",
        s.finished.len().saturating_sub(failed),
        s.skipped.len()
    );
    if failed > 0 {
        return Err(RunFailed(failed).into());
    }
    Ok(())
}
