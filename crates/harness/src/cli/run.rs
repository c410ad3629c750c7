//! `eqaug run CONFIG`: trains every (run, strategy) of an experiment.

use eqaug_harness::config::{self, Precision};
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
    /// Override the number of runs.
    #[arg(long)]
    pub runs: Option<usize>,
    /// Override the base seed (run k uses seed + k).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Override the precision of every strategy.
    #[arg(long, value_parser = ["f32", "f64"])]
    pub precision: Option<String>,
    /// Output root: runs go to OUT/<experiment>/run-XXX.
    #[arg(long, default_value = "runs")]
    pub out: PathBuf,
    /// Run only shard K of N (runs r with r % N == K - 1). Defaults to the Slurm array task
    /// (SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN of SLURM_ARRAY_TASK_COUNT) when set.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,
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

/// The shard from Slurm's job-array variables, if they are set.
fn slurm_shard() -> Result<Option<(usize, usize)>, String> {
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (Some(id), Some(count)) = (get("SLURM_ARRAY_TASK_ID"), get("SLURM_ARRAY_TASK_COUNT"))
    else {
        return Ok(None);
    };
    let num = |name: &str, v: &str| {
        v.parse::<usize>()
            .map_err(|_| format!("{name}=`{v}` is not a number"))
    };
    let id = num("SLURM_ARRAY_TASK_ID", &id)?;
    let count = num("SLURM_ARRAY_TASK_COUNT", &count)?;
    let min = match get("SLURM_ARRAY_TASK_MIN") {
        Some(v) => num("SLURM_ARRAY_TASK_MIN", &v)?,
        None => 0,
    };
    if count == 0 || id < min || id - min >= count {
        return Err(format!(
            "Slurm array task {id} (min {min}) is outside an array of {count} tasks"
        ));
    }
    Ok(Some((id - min + 1, count)))
}

/// Runs `eqaug run`.
pub fn run(args: Args) -> super::CliResult {
    if eqaug_harness::e5::config::is_e5_file(&args.config)? {
        return run_e5(args);
    }
    let experiments = config::load(&args.config, &args.profile)?;
    let shard = match &args.shard {
        Some(s) => Some(parse_shard(s)?),
        None => slurm_shard()?,
    };
    let precision = args.precision.as_deref().map(|p| match p {
        "f64" => Precision::F64,
        _ => Precision::F32,
    });
    // Several runs at once: give each run one GEMM thread (matrixmultiply reads this once).
    if experiments.iter().any(|e| e.protocol.parallel_runs > 1)
        && std::env::var_os("MATMUL_NUM_THREADS").is_none()
    {
        std::env::set_var("MATMUL_NUM_THREADS", "1");
    }
    let opts = RunOptions {
        out: args.out.clone(),
        runs: args.runs,
        seed: args.seed,
        precision,
        shard,
    };
    if let Some((k, n)) = shard {
        eprintln!("shard {k}/{n}");
    }
    for exp in &experiments {
        let s = run_experiment(exp, &opts)?;
        eprintln!(
            "[{}] {} run(s) finished, {} already done, {:.1} s; results in {}",
            s.experiment,
            s.finished.len(),
            s.skipped.len(),
            s.wall_seconds,
            args.out.join(&s.experiment).display()
        );
        for (run, f) in &s.failures {
            eprintln!("[{}] run {run}: {}", s.experiment, f.error);
        }
    }
    Ok(())
}

/// `eqaug run` of an E5 (two-phase SGD) config.
fn run_e5(args: Args) -> super::CliResult {
    use eqaug_harness::e5;
    let exp = e5::config::load(&args.config, &args.profile)?;
    let shard = match &args.shard {
        Some(s) => Some(parse_shard(s)?),
        None => slurm_shard()?,
    };
    let precision = args.precision.as_deref().map(|p| match p {
        "f64" => Precision::F64,
        _ => Precision::F32,
    });
    let opts = RunOptions {
        out: args.out.clone(),
        runs: args.runs,
        seed: args.seed,
        precision,
        shard,
    };
    if let Some((k, n)) = shard {
        eprintln!("shard {k}/{n}");
    }
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
    Ok(())
}
