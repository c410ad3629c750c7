//! `eqaug slurm CONFIG --profile P --array N`: writes the sbatch script of a Slurm job array
//! that runs an experiment config in `N` shards, one per array task, all into one output
//! folder. Resumable: submitting the same script again skips the finished runs (and the runs
//! another task is still training). Also maps a running array task to its shard.

use eqaug_harness::config;
use eqaug_harness::memory;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Arguments of `eqaug slurm`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The experiment config (e.g. experiments/e2.toml).
    pub config: PathBuf,
    /// The profile to run.
    #[arg(long, default_value = "paper")]
    pub profile: String,
    /// Number of array tasks (shards); each runs the runs r with r % N == task index.
    #[arg(long, value_name = "N", value_parser = positive)]
    pub array: usize,
    /// CPUs per task (default: the config's `protocol.parallel_runs`, at least 1).
    #[arg(long, value_name = "C", value_parser = positive)]
    pub cpus: Option<usize>,
    /// Time limit per task, in Slurm's format (e.g. `2:00:00` or `1-12:00:00`).
    #[arg(long, value_name = "T")]
    pub time: Option<String>,
    /// Memory per task in Slurm's format (e.g. `4G`); default: eqaug's estimate plus a margin.
    #[arg(long, value_name = "M")]
    pub mem: Option<String>,
    /// Partition (`#SBATCH --partition`).
    #[arg(long)]
    pub partition: Option<String>,
    /// Account (`#SBATCH --account`).
    #[arg(long)]
    pub account: Option<String>,
    /// Output root of the runs (as `eqaug run --out`); the task logs go to OUT/slurm-logs.
    #[arg(long, default_value = "runs")]
    pub out: PathBuf,
    /// Override the number of runs (passed to every task as `--runs`).
    #[arg(long, value_parser = run_count)]
    pub runs: Option<usize>,
    /// Write the script to this file instead of printing it.
    #[arg(long, value_name = "FILE")]
    pub write: Option<PathBuf>,
    /// The eqaug binary the tasks run (default: this one, by absolute path; the script also
    /// honours an `EQAUG` environment variable at submission).
    #[arg(long, value_name = "PATH")]
    pub eqaug: Option<PathBuf>,
}

/// A run count argument (`--runs`): 1 to [`config::MAX_RUNS`].
pub fn run_count(s: &str) -> Result<usize, String> {
    let n = positive(s)?;
    if n > config::MAX_RUNS {
        return Err(format!("at most {} runs", config::MAX_RUNS));
    }
    Ok(n)
}

/// A positive integer argument.
pub fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{s}` is not a positive integer")),
    }
}

/// Errors of the array-task mapping and of `eqaug slurm`.
#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    /// A Slurm variable is not a number.
    #[error("{name}=`{value}` is not a number")]
    NotANumber {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
    },
    /// The task id does not fall on the array's grid.
    #[error(
        "Slurm array task {id} is not on the array {min}..(step {step}) of {count} tasks; \
         give the shard explicitly with --shard K/N"
    )]
    OffGrid {
        /// SLURM_ARRAY_TASK_ID.
        id: usize,
        /// SLURM_ARRAY_TASK_MIN.
        min: usize,
        /// SLURM_ARRAY_TASK_STEP.
        step: usize,
        /// SLURM_ARRAY_TASK_COUNT.
        count: usize,
    },
    /// Bad arguments of `eqaug slurm`.
    #[error("{0}")]
    Args(String),
    /// Writing the script or creating the log folder failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// The shard `(k, n)` (1-based `k`) of a Slurm array task, from its variables read by `get`;
/// `None` outside a job array.
///
/// Task ids of `--array=MIN-MAX:STEP` are `MIN, MIN+STEP, ...`: the index is
/// `(SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN) / SLURM_ARRAY_TASK_STEP` and the number of
/// shards SLURM_ARRAY_TASK_COUNT, so a stepped array covers every shard. A task id off that
/// grid (arrays given as irregular lists) is an error asking for `--shard`.
pub fn shard_from_env(
    get: impl Fn(&str) -> Option<String>,
) -> Result<Option<(usize, usize)>, SlurmError> {
    let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
    let (Some(id), Some(count)) = (get("SLURM_ARRAY_TASK_ID"), get("SLURM_ARRAY_TASK_COUNT"))
    else {
        return Ok(None);
    };
    let num = |name: &'static str, v: String| {
        v.trim()
            .parse::<usize>()
            .map_err(|_| SlurmError::NotANumber { name, value: v })
    };
    let id = num("SLURM_ARRAY_TASK_ID", id)?;
    let count = num("SLURM_ARRAY_TASK_COUNT", count)?;
    let min = get("SLURM_ARRAY_TASK_MIN")
        .map(|v| num("SLURM_ARRAY_TASK_MIN", v))
        .transpose()?
        .unwrap_or(0);
    let step = get("SLURM_ARRAY_TASK_STEP")
        .map(|v| num("SLURM_ARRAY_TASK_STEP", v))
        .transpose()?
        .unwrap_or(1)
        .max(1);
    let off = || SlurmError::OffGrid {
        id,
        min,
        step,
        count,
    };
    let delta = id.checked_sub(min).ok_or_else(off)?;
    if delta % step != 0 || delta / step >= count {
        return Err(off());
    }
    Ok(Some((delta / step + 1, count)))
}

/// The shard of this process's Slurm array task, if any.
pub fn array_shard() -> Result<Option<(usize, usize)>, SlurmError> {
    shard_from_env(|k| std::env::var(k).ok())
}

/// Quotes a word for bash (single quotes).
fn sh(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:=,@%".contains(c))
    {
        s.into()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.into()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.into())
    }
}

/// Slurm's `--mem` for `bytes` plus a margin: a quarter more and 256 MiB, in whole MiB.
pub fn mem_request(bytes: u64) -> String {
    let mib = bytes.saturating_add(bytes / 4) / (1 << 20) + 256;
    if mib.is_multiple_of(1024) {
        format!("{}G", mib / 1024)
    } else {
        format!("{mib}M")
    }
}

/// What the script needs beyond the arguments.
#[derive(Debug)]
pub struct ScriptInputs {
    /// Experiment names in the config.
    pub experiments: Vec<String>,
    /// Largest number of runs of an experiment.
    pub runs: usize,
    /// Largest `protocol.parallel_runs`.
    pub parallel_runs: usize,
    /// Estimated peak memory of one task, in bytes.
    pub memory: u64,
    /// The eqaug binary.
    pub eqaug: PathBuf,
    /// The config, absolute.
    pub config: PathBuf,
    /// The output root, absolute.
    pub out: PathBuf,
}

/// The sbatch script.
pub fn script(args: &Args, inp: &ScriptInputs) -> String {
    let n = args.array;
    let cpus = args.cpus.unwrap_or(inp.parallel_runs.max(1));
    let job = format!(
        "eqaug-{}-{}",
        inp.experiments.join("+"),
        args.profile
            .replace(|c: char| !c.is_ascii_alphanumeric(), "-")
    );
    let logs = inp.out.join("slurm-logs");
    let mut s = String::new();
    let _ = writeln!(s, "#!/bin/bash");
    let _ = writeln!(
        s,
        "# Written by `eqaug slurm` (eqaug {}): {} profile {}, {} run(s) in {n} shard(s).",
        env!("CARGO_PKG_VERSION"),
        inp.config.display(),
        args.profile,
        inp.runs
    );
    let _ = writeln!(
        s,
        "# Task i runs the runs r with r % {n} == i into one folder; submit this script again \
         to resume\n# (finished runs, and runs another task is training, are skipped). \
         Progress: `eqaug status {}`.",
        sh(&inp.out.display().to_string())
    );
    let _ = writeln!(s, "#SBATCH --job-name={}", sh(&job));
    let _ = writeln!(s, "#SBATCH --array=0-{}", n - 1);
    let _ = writeln!(s, "#SBATCH --ntasks=1");
    let _ = writeln!(s, "#SBATCH --cpus-per-task={cpus}");
    let mem = args.mem.clone().unwrap_or_else(|| mem_request(inp.memory));
    let _ = writeln!(
        s,
        "#SBATCH --mem={}{}",
        sh(&mem),
        if args.mem.is_none() {
            format!("    # estimate {} plus a margin", memory::human(inp.memory))
        } else {
            String::new()
        }
    );
    if let Some(t) = &args.time {
        let _ = writeln!(s, "#SBATCH --time={}", sh(t));
    }
    if let Some(p) = &args.partition {
        let _ = writeln!(s, "#SBATCH --partition={}", sh(p));
    }
    if let Some(a) = &args.account {
        let _ = writeln!(s, "#SBATCH --account={}", sh(a));
    }
    let _ = writeln!(
        s,
        "#SBATCH --output={}",
        sh(&logs.join("%x-%A_%a.out").display().to_string())
    );
    let _ = writeln!(s, "set -euo pipefail");
    let _ = writeln!(
        s,
        "EQAUG=\"${{EQAUG:-{}}}\"",
        inp.eqaug.display().to_string().replace('"', "\\\"")
    );
    let _ = writeln!(
        s,
        "export RAYON_NUM_THREADS=\"${{SLURM_CPUS_PER_TASK:-{cpus}}}\""
    );
    if inp.parallel_runs <= 1 {
        // One run at a time: its GEMMs get the task's CPUs (not every core of the node).
        let _ = writeln!(
            s,
            "export MATMUL_NUM_THREADS=\"${{SLURM_CPUS_PER_TASK:-{cpus}}}\""
        );
    }
    let mut cmd = format!(
        "exec \"$EQAUG\" run {} --profile {} --out {}",
        sh(&inp.config.display().to_string()),
        sh(&args.profile),
        sh(&inp.out.display().to_string())
    );
    if let Some(r) = args.runs {
        let _ = write!(cmd, " --runs {r}");
    }
    let _ = writeln!(
        s,
        "# The shard comes from SLURM_ARRAY_TASK_ID/MIN/STEP/COUNT (eqaug run prints it)."
    );
    let _ = writeln!(s, "{cmd}");
    s
}

/// Refuses arguments that would break the script: a control character (a newline ends an
/// `#SBATCH` line and starts a command of its own) in anything written into it.
pub fn check_script_args(args: &Args) -> Result<(), SlurmError> {
    let texts: [(&str, Option<String>); 7] = [
        ("--profile", Some(args.profile.clone())),
        ("--time", args.time.clone()),
        ("--mem", args.mem.clone()),
        ("--partition", args.partition.clone()),
        ("--account", args.account.clone()),
        ("--out", Some(args.out.display().to_string())),
        ("CONFIG", Some(args.config.display().to_string())),
    ];
    let eqaug = args.eqaug.as_ref().map(|p| p.display().to_string());
    for (flag, value) in texts.iter().chain(std::iter::once(&("--eqaug", eqaug))) {
        if let Some(v) = value {
            if v.chars().any(char::is_control) {
                return Err(SlurmError::Args(format!(
                    "{flag} {v:?} contains a control character (a newline would end the \
                     #SBATCH line and run as a command of its own)"
                )));
            }
        }
    }
    Ok(())
}

/// Runs `eqaug slurm`.
pub fn run(args: Args) -> super::CliResult {
    check_script_args(&args)?;
    let experiments = config::load_any(&args.config, &args.profile)?;
    let runs = experiments
        .iter()
        .map(|e| args.runs.unwrap_or(e.runs()))
        .max()
        .unwrap_or(0);
    if args.array > runs {
        return Err(SlurmError::Args(format!(
            "--array {} but {} has {runs} run(s) per experiment (profile {}): at most {runs} \
             tasks have work; use --array {runs} or fewer",
            args.array,
            args.config.display(),
            args.profile
        ))
        .into());
    }
    let mut mem = 0u64;
    for e in &experiments {
        let est = memory::estimate(e)?;
        mem = mem.max(est.total());
    }
    let eqaug = match &args.eqaug {
        Some(p) => absolute(p),
        None => std::env::current_exe().unwrap_or_else(|_| PathBuf::from("eqaug")),
    };
    let config = std::fs::canonicalize(&args.config).unwrap_or_else(|_| absolute(&args.config));
    let out = absolute(&args.out);
    let inputs = ScriptInputs {
        experiments: experiments.iter().map(|e| e.name().to_string()).collect(),
        runs,
        parallel_runs: experiments
            .iter()
            .map(|e| e.parallel_runs())
            .max()
            .unwrap_or(1),
        memory: mem,
        eqaug,
        config,
        out: out.clone(),
    };
    let text = script(&args, &inputs);
    // Slurm does not create the folder of --output: a task would fail without a log.
    let logs = out.join("slurm-logs");
    std::fs::create_dir_all(&logs).map_err(|source| SlurmError::Io {
        path: logs.clone(),
        source,
    })?;
    match &args.write {
        Some(path) => {
            std::fs::write(path, &text).map_err(|source| SlurmError::Io {
                path: path.clone(),
                source,
            })?;
            eprintln!(
                "wrote {}: submit with `sbatch {}`, watch with `eqaug status {}`",
                path.display(),
                path.display(),
                out.display()
            );
        }
        None => print!("{text}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    /// The task ids Slurm gives `--array=MIN-MAX:STEP`, with the variables it sets.
    fn array(min: usize, max: usize, step: usize) -> Vec<Vec<(String, String)>> {
        let ids: Vec<usize> = (min..=max).step_by(step).collect();
        ids.iter()
            .map(|id| {
                vec![
                    ("SLURM_ARRAY_TASK_ID".into(), id.to_string()),
                    ("SLURM_ARRAY_TASK_MIN".into(), min.to_string()),
                    ("SLURM_ARRAY_TASK_MAX".into(), max.to_string()),
                    ("SLURM_ARRAY_TASK_STEP".into(), step.to_string()),
                    ("SLURM_ARRAY_TASK_COUNT".into(), ids.len().to_string()),
                ]
            })
            .collect()
    }

    /// Every array layout maps its tasks one to one onto shards 1..=count, so that the
    /// shards together cover every run exactly once.
    #[test]
    fn arrays_cover_every_shard_once() {
        for (min, max, step) in [(0, 9, 1), (1, 4, 1), (0, 10, 2), (3, 17, 7), (5, 5, 1)] {
            let tasks = array(min, max, step);
            let mut shards: Vec<(usize, usize)> = tasks
                .iter()
                .map(|vars| {
                    let v: Vec<(&str, &str)> =
                        vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                    shard_from_env(env(&v)).unwrap().unwrap()
                })
                .collect();
            shards.sort();
            let n = tasks.len();
            assert_eq!(
                shards,
                (1..=n).map(|k| (k, n)).collect::<Vec<_>>(),
                "--array={min}-{max}:{step}"
            );
            let runs = 23;
            let mut all: Vec<usize> = shards
                .iter()
                .flat_map(|&s| eqaug_harness::runner::shard_runs(runs, Some(s)))
                .collect();
            all.sort();
            assert_eq!(all, (0..runs).collect::<Vec<_>>());
        }
    }

    #[test]
    fn outside_an_array_and_bad_values() {
        assert_eq!(shard_from_env(env(&[])).unwrap(), None);
        assert_eq!(
            shard_from_env(env(&[("SLURM_ARRAY_TASK_ID", "3")])).unwrap(),
            None
        );
        // No MIN/STEP (old Slurm): ids from 0, step 1.
        assert_eq!(
            shard_from_env(env(&[
                ("SLURM_ARRAY_TASK_ID", "2"),
                ("SLURM_ARRAY_TASK_COUNT", "4")
            ]))
            .unwrap(),
            Some((3, 4))
        );
        let off = shard_from_env(env(&[
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "6"),
        ]))
        .unwrap_err();
        assert!(matches!(off, SlurmError::OffGrid { id: 3, .. }));
        assert!(off.to_string().contains("--shard"));
        let list = shard_from_env(env(&[
            ("SLURM_ARRAY_TASK_ID", "9"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ]));
        assert!(list.is_err(), "an irregular list cannot be mapped");
        let nan = shard_from_env(env(&[
            ("SLURM_ARRAY_TASK_ID", "x"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ]))
        .unwrap_err();
        assert!(nan.to_string().contains("SLURM_ARRAY_TASK_ID=`x`"));
    }

    #[test]
    fn script_has_the_array_resources_and_command() {
        let args = Args {
            config: "experiments/e2.toml".into(),
            profile: "paper".into(),
            array: 10,
            cpus: Some(4),
            time: Some("2:00:00".into()),
            mem: None,
            partition: Some("cpu".into()),
            account: None,
            out: "runs".into(),
            runs: None,
            write: None,
            eqaug: None,
        };
        let inp = ScriptInputs {
            experiments: vec!["e2".into()],
            runs: 30,
            parallel_runs: 1,
            memory: 3 << 30,
            eqaug: "/opt/eqaug/bin/eqaug".into(),
            config: "/home/u/eqaug/experiments/e2.toml".into(),
            out: "/scratch/u/my runs".into(),
        };
        let s = script(&args, &inp);
        assert!(s.starts_with("#!/bin/bash\n"));
        for line in [
            "#SBATCH --job-name=eqaug-e2-paper",
            "#SBATCH --array=0-9",
            "#SBATCH --cpus-per-task=4",
            "#SBATCH --time=2:00:00",
            "#SBATCH --partition=cpu",
            "#SBATCH --mem=4G",
            "#SBATCH --output='/scratch/u/my runs/slurm-logs/%x-%A_%a.out'",
            "EQAUG=\"${EQAUG:-/opt/eqaug/bin/eqaug}\"",
            "export MATMUL_NUM_THREADS=\"${SLURM_CPUS_PER_TASK:-4}\"",
            "exec \"$EQAUG\" run /home/u/eqaug/experiments/e2.toml --profile paper --out '/scratch/u/my runs'",
        ] {
            assert!(s.lines().any(|l| l.starts_with(line)), "no `{line}` in\n{s}");
        }
        assert!(!s.contains("--account"));
        assert_eq!(mem_request(0), "256M");
        assert_eq!(mem_request(1 << 30), "1536M");
        assert_eq!(mem_request(3 << 30), "4G");
        assert_eq!(sh("it's"), r"'it'\''s'");
    }
}
