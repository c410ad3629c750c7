//! `eqaug run CONFIG`: trains every run of the experiments of a config, of any kind.

use eqaug_harness::config::{self, Precision};
use eqaug_harness::memory;
use eqaug_harness::runner::{self, RunOptions};
use std::path::PathBuf;

/// Arguments of `eqaug run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The experiment config (e.g. experiments/e1.toml).
    pub config: PathBuf,
    /// The profile to run (`quick`, `paper`, or one the file defines).
    #[arg(long, default_value = "quick")]
    pub profile: String,
    /// Override the number of runs (1 to 1 000 000).
    #[arg(long, value_parser = super::slurm::run_count)]
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
    let mut o = RunOptions::new(args.out.clone());
    o.runs = args.runs;
    o.seed = args.seed;
    o.precision = precision;
    o.shard = shard;
    o.max_memory = args.max_memory;
    o
}

/// Runs `eqaug run`: every experiment of the config, whatever its kind, through one runner.
pub fn run(args: Args) -> super::CliResult {
    let experiments = config::load_any(&args.config, &args.profile)?;
    let shard = shard_of(&args)?;
    let opts = run_options(&args, shard);
    // Every experiment of the file is checked (overrides, memory) before the first one runs.
    let limit = memory::limit(args.max_memory);
    for exp in &experiments {
        let exp = runner::with_overrides(exp, &opts)?;
        memory::estimate(&exp)?.check(limit.clone())?;
    }
    // Several runs at once: give each run one GEMM thread (matrixmultiply reads this once).
    if experiments.iter().any(|e| e.parallel_runs() > 1)
        && std::env::var_os("MATMUL_NUM_THREADS").is_none()
    {
        std::env::set_var("MATMUL_NUM_THREADS", "1");
    }
    let (mut finished, mut failed, mut skipped, mut failed_before) = (0, 0, 0, 0);
    for exp in &experiments {
        let s = runner::run(exp, &opts)?;
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
        if !s.failed_before.is_empty() {
            eprintln!(
                "[{}] {} finished run(s) had a failed strategy before: {} (`eqaug status` lists \
                 them; move them away to redo them)",
                s.experiment,
                s.failed_before.len(),
                s.failed_before
                    .iter()
                    .map(|&r| eqaug_harness::schema::run_dir_name(r))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        failed_before += s.failed_before.len();
        finished += s.finished.len() - failed_runs.len();
        failed += failed_runs.len();
        skipped += s.skipped.len() + s.running_elsewhere.len();
    }
    // The line scripts test (also the exit code: non-zero when a run failed).
    let earlier = if failed_before > 0 {
        format!(" ({failed_before} of them failed earlier)")
    } else {
        String::new()
    };
    eprintln!("eqaug run: {finished} finished, {failed} failed, {skipped} skipped{earlier}");
    if failed + failed_before > 0 {
        return Err(RunFailed(failed + failed_before).into());
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
