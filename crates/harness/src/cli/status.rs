//! `eqaug status DIR`: which runs of an output folder are finished, running, failed, corrupt
//! or missing, per experiment and strategy. Meant for a folder that many shards (Slurm array
//! tasks) write into at once; reads only, takes no lock that a writer would wait for.
//!
//! The last line is a summary that scripts can test, and the exit code says the same:
//! 0 when every run finished with no failed strategy, 2 when a run failed or is corrupt,
//! 3 when runs are still running or missing (and none failed).

use eqaug_harness::lock;
use eqaug_harness::schema::{self, AnyExperimentRecord, RunRecord};
use std::path::{Path, PathBuf};

/// Arguments of `eqaug status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// An output folder of `eqaug run` (its `--out`), or one experiment folder in it.
    pub dir: PathBuf,
    /// Print only the summary line(s).
    #[arg(long, short)]
    pub quiet: bool,
}

/// Exit code when a run failed or is corrupt.
pub const EXIT_FAILED: i32 = 2;
/// Exit code when runs are running or missing (none failed).
pub const EXIT_INCOMPLETE: i32 = 3;

/// The state of one run.
#[derive(Debug, Clone, PartialEq)]
pub enum RunState {
    /// Every strategy finished.
    Finished,
    /// Finished, but these strategies (E5: phase-1 models, cases) failed (which, epoch,
    /// error).
    Failed(Vec<(String, usize, String)>),
    /// `run.json` or another file of the run cannot be read or is incomplete: rerun it
    /// (move the folder away).
    Corrupt(String),
    /// A live process holds the run's lock.
    Running,
    /// Not there; `true` when an interrupted attempt left a `.tmp` folder (removed by the
    /// next `eqaug run`).
    Missing(bool),
}

/// The state of every run of one experiment folder.
#[derive(Debug)]
pub struct ExperimentStatus {
    /// The folder.
    pub dir: PathBuf,
    /// Experiment name.
    pub name: String,
    /// Profile, if recorded.
    pub profile: Option<String>,
    /// What a run trains, in order: strategy names (E5: case names).
    pub strategies: Vec<String>,
    /// `strategy` or `case`.
    pub unit: &'static str,
    /// State of run `r` at index `r`.
    pub runs: Vec<RunState>,
}

impl ExperimentStatus {
    fn count(&self, f: impl Fn(&RunState) -> bool) -> usize {
        self.runs.iter().filter(|s| f(s)).count()
    }
}

/// Totals over experiments: (finished, running, failed, corrupt, missing, total).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Runs whose every strategy finished.
    pub finished: usize,
    /// Runs held by a live process.
    pub running: usize,
    /// Finished runs with at least one failed strategy.
    pub failed: usize,
    /// Runs with unreadable or incomplete files.
    pub corrupt: usize,
    /// Runs not there.
    pub missing: usize,
    /// All runs.
    pub total: usize,
}

impl Totals {
    /// The exit code: 0 complete, [`EXIT_FAILED`], or [`EXIT_INCOMPLETE`].
    pub fn exit_code(&self) -> i32 {
        if self.failed + self.corrupt > 0 {
            EXIT_FAILED
        } else if self.running + self.missing > 0 {
            EXIT_INCOMPLETE
        } else {
            0
        }
    }

    fn add(&mut self, e: &ExperimentStatus) {
        self.finished += e.count(|s| *s == RunState::Finished);
        self.running += e.count(|s| *s == RunState::Running);
        self.failed += e.count(|s| matches!(s, RunState::Failed(_)));
        self.corrupt += e.count(|s| matches!(s, RunState::Corrupt(_)));
        self.missing += e.count(|s| matches!(s, RunState::Missing(_)));
        self.total += e.runs.len();
    }
}

/// Errors of `eqaug status`.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// A folder cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The folder or file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `experiment.json` is not what `eqaug run` writes.
    #[error("{path}: not an experiment.json written by eqaug run: {message}")]
    BadExperiment {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// No experiment folder found.
    #[error(
        "{}: no experiment.json here or in its subfolders (give the --out folder of `eqaug run`, \
         or one experiment folder in it)",
        .0.display()
    )]
    NoExperiments(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StatusError + '_ {
    move |source| StatusError::Io {
        path: path.into(),
        source,
    }
}

/// The experiment folders at `dir`: itself if it holds `experiment.json`, else its
/// subfolders that do, by name.
pub fn experiment_dirs(dir: &Path) -> Result<Vec<PathBuf>, StatusError> {
    if dir.join(schema::EXPERIMENT_JSON).is_file() {
        return Ok(vec![dir.into()]);
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let p = entry.path();
        if p.join(schema::EXPERIMENT_JSON).is_file() {
            out.push(p);
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(StatusError::NoExperiments(dir.into()));
    }
    Ok(out)
}

/// The state of run folder `name` of experiment folder `dir`, using the one definition of a
/// usable run ([`AnyExperimentRecord::check_run`]).
fn run_state(
    dir: &Path,
    name: &str,
    record: &AnyExperimentRecord,
) -> Result<RunState, StatusError> {
    let run_dir = dir.join(name);
    let run_json = run_dir.join(schema::RUN_JSON);
    if run_json.is_file() {
        let run = match RunRecord::read(&run_dir) {
            Ok(m) => m,
            Err(e) => {
                return Ok(RunState::Corrupt(format!(
                    "{}: cannot be read ({})",
                    run_json.display(),
                    std::error::Error::source(&e).map_or(e.to_string(), |s| s.to_string())
                )))
            }
        };
        if let Err(why) = record.check_run(&run_dir, &run) {
            return Ok(RunState::Corrupt(why));
        }
        return Ok(if run.failed.is_empty() {
            RunState::Finished
        } else {
            RunState::Failed(
                run.failed
                    .into_iter()
                    .map(|f| (f.strategy, f.epoch, f.error))
                    .collect(),
            )
        });
    }
    let lock = lock::lock_path(dir, name);
    if lock::is_held(&lock).map_err(io_err(&lock))? {
        return Ok(RunState::Running);
    }
    Ok(RunState::Missing(dir.join(format!("{name}.tmp")).exists()))
}

/// Reads the state of every run of one experiment folder (of any kind).
pub fn experiment_status(dir: &Path) -> Result<ExperimentStatus, StatusError> {
    let record = AnyExperimentRecord::read(dir).map_err(|e| StatusError::BadExperiment {
        path: dir.join(schema::EXPERIMENT_JSON),
        message: std::error::Error::source(&e).map_or(e.to_string(), |s| s.to_string()),
    })?;
    let runs = (0..record.runs().unwrap_or(0))
        .map(|r| run_state(dir, &schema::run_dir_name(r), &record))
        .collect::<Result<_, _>>()?;
    let name = record.name().map(str::to_string).unwrap_or_else(|| {
        dir.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    Ok(ExperimentStatus {
        dir: dir.into(),
        name,
        profile: record.profile().map(str::to_string),
        strategies: record.units(),
        unit: record.unit_name(),
        runs,
    })
}

/// A list of run numbers, compressed to ranges: `0-3, 7, 9-10`.
fn ranges(runs: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < runs.len() {
        let mut j = i;
        while j + 1 < runs.len() && runs[j + 1] == runs[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            runs[i].to_string()
        } else {
            format!("{}-{}", runs[i], runs[j])
        });
        i = j + 1;
    }
    parts.join(", ")
}

/// The human-readable block of one experiment.
pub fn describe(e: &ExperimentStatus) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let which = |f: &dyn Fn(&RunState) -> bool| -> Vec<usize> {
        (0..e.runs.len()).filter(|&r| f(&e.runs[r])).collect()
    };
    let plural = if e.unit == "case" {
        "cases"
    } else {
        "strategies"
    };
    let _ = writeln!(
        s,
        "{} ({}{} runs, {} {plural}): {}",
        e.name,
        e.profile
            .as_deref()
            .map(|p| format!("profile {p}, "))
            .unwrap_or_default(),
        e.runs.len(),
        e.strategies.len(),
        e.dir.display()
    );
    let mut t = Totals::default();
    t.add(e);
    let _ = writeln!(
        s,
        "  runs: {} finished, {} running, {} failed, {} corrupt, {} missing",
        t.finished, t.running, t.failed, t.corrupt, t.missing
    );
    let width = e
        .strategies
        .iter()
        .map(String::len)
        .max()
        .unwrap_or(8)
        .max(8);
    let _ = writeln!(s, "  {:<width$}  finished  failed", e.unit);
    for name in &e.strategies {
        let failed = e
            .runs
            .iter()
            .filter(|st| matches!(st, RunState::Failed(f) if f.iter().any(|(n, ..)| n == name)))
            .count();
        let done = e
            .runs
            .iter()
            .filter(|st| matches!(st, RunState::Finished | RunState::Failed(_)))
            .count()
            - failed;
        let _ = writeln!(s, "  {name:<width$}  {done:>8}  {failed:>6}");
    }
    let running = which(&|st| *st == RunState::Running);
    if !running.is_empty() {
        let _ = writeln!(s, "  running: {}", ranges(&running));
    }
    let missing = which(&|st| matches!(st, RunState::Missing(_)));
    if !missing.is_empty() {
        let stale = which(&|st| *st == RunState::Missing(true));
        let _ = write!(s, "  missing: {}", ranges(&missing));
        if !stale.is_empty() {
            let _ = write!(
                s,
                " (interrupted, left .tmp folders: {}; the next `eqaug run` redoes them)",
                ranges(&stale)
            );
        }
        let _ = writeln!(s);
    }
    for (r, st) in e.runs.iter().enumerate() {
        match st {
            RunState::Failed(f) => {
                for (strategy, epoch, error) in f {
                    let _ = writeln!(
                        s,
                        "  failed: {} {} {strategy} at epoch {epoch}: {error}",
                        schema::run_dir_name(r),
                        e.unit
                    );
                }
            }
            RunState::Corrupt(why) => {
                let _ = writeln!(
                    s,
                    "  corrupt: {}: {why} (move {} away and rerun)",
                    schema::run_dir_name(r),
                    e.dir.join(schema::run_dir_name(r)).display()
                );
            }
            _ => {}
        }
    }
    s
}

/// The summary line.
pub fn summary(t: &Totals, experiments: usize) -> String {
    format!(
        "eqaug status: {} of {} runs finished, {} running, {} failed, {} corrupt, {} missing \
         ({experiments} experiment{})",
        t.finished,
        t.total,
        t.running,
        t.failed,
        t.corrupt,
        t.missing,
        if experiments == 1 { "" } else { "s" }
    )
}

/// Runs `eqaug status`; exits with the code of [`Totals::exit_code`].
pub fn run(args: Args) -> super::CliResult {
    let mut totals = Totals::default();
    let dirs = experiment_dirs(&args.dir)?;
    for d in &dirs {
        let e = experiment_status(d)?;
        if !args.quiet {
            println!("{}", describe(&e));
        }
        totals.add(&e);
    }
    println!("{}", summary(&totals, dirs.len()));
    let code = totals.exit_code();
    if code != 0 {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        std::process::exit(code);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &Path, s: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, s).unwrap();
    }

    fn metrics(strategies: &[(&str, usize)]) -> String {
        let mut s = String::from("epoch,strategy,loss,dist_from_start,dist_to_e\n");
        for (name, rows) in strategies {
            for e in 0..*rows {
                s.push_str(&format!("{e},{name},0.5,0,0\n"));
            }
        }
        s
    }

    /// An experiment folder with 6 runs in every state, checked against what was written.
    #[test]
    fn every_state_is_recognised() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("e1");
        write(
            &dir.join("experiment.json"),
            r#"{"experiment": "e1", "profile": "quick", "epochs": 2, "runs": 7,
                "strategies": [{"name": "nominal", "kind": "nominal"},
                               {"name": "augmented", "kind": "augmented"}]}"#,
        );
        let ok = metrics(&[("nominal", 3), ("augmented", 3)]);
        // 0: finished.
        write(&dir.join("run-000/run.json"), r#"{"run": 0, "failed": []}"#);
        write(&dir.join("run-000/metrics.csv"), &ok);
        // 1: augmented failed at epoch 1 (its rows stop there).
        write(
            &dir.join("run-001/run.json"),
            r#"{"run": 1, "failed": [{"strategy": "augmented", "epoch": 1, "error": "NaN"}]}"#,
        );
        write(
            &dir.join("run-001/metrics.csv"),
            &metrics(&[("nominal", 3), ("augmented", 1)]),
        );
        // 2: truncated run.json.
        write(&dir.join("run-002/run.json"), r#"{"run": 2, "fai"#);
        write(&dir.join("run-002/metrics.csv"), &ok);
        // 3: truncated metrics.csv (a strategy lacks rows).
        write(&dir.join("run-003/run.json"), r#"{"run": 3, "failed": []}"#);
        write(
            &dir.join("run-003/metrics.csv"),
            &metrics(&[("nominal", 3), ("augmented", 2)]),
        );
        // 4: running (lock held by this process, through another open file).
        let held = lock::RunLock::try_acquire(&lock::lock_path(&dir, "run-004"))
            .unwrap()
            .unwrap();
        std::fs::create_dir_all(dir.join("run-004.tmp")).unwrap();
        // 5: interrupted (stale .tmp, lock file free).
        std::fs::create_dir_all(dir.join("run-005.tmp")).unwrap();
        drop(lock::RunLock::try_acquire(&lock::lock_path(&dir, "run-005")).unwrap());
        // 6: missing.
        let e = experiment_status(&dir).unwrap();
        assert_eq!(e.runs[0], RunState::Finished);
        assert_eq!(
            e.runs[1],
            RunState::Failed(vec![("augmented".into(), 1, "NaN".into())])
        );
        assert!(matches!(&e.runs[2], RunState::Corrupt(m) if m.contains("run-002/run.json")));
        assert!(
            matches!(&e.runs[3], RunState::Corrupt(m) if m.contains("run-003/metrics.csv") && m.contains("`augmented`")),
            "{:?}",
            e.runs[3]
        );
        assert_eq!(e.runs[4], RunState::Running);
        assert_eq!(e.runs[5], RunState::Missing(true));
        assert_eq!(e.runs[6], RunState::Missing(false));
        let mut t = Totals::default();
        t.add(&e);
        assert_eq!(
            t,
            Totals {
                finished: 1,
                running: 1,
                failed: 1,
                corrupt: 2,
                missing: 2,
                total: 7
            }
        );
        assert_eq!(t.exit_code(), EXIT_FAILED);
        let text = describe(&e);
        assert!(text.contains("running: 4"), "{text}");
        assert!(text.contains("missing: 5-6"), "{text}");
        assert!(
            text.contains("failed: run-001 strategy augmented at epoch 1: NaN"),
            "{text}"
        );
        // Per strategy: nominal finished in runs 0 and 1, augmented only in run 0.
        let row = |name: &str| {
            text.lines()
                .map(|l| l.split_whitespace().collect::<Vec<_>>())
                .find(|w| w.first() == Some(&name))
                .unwrap_or_default()
        };
        assert_eq!(row("nominal"), ["nominal", "2", "0"], "{text}");
        assert_eq!(row("augmented"), ["augmented", "1", "1"], "{text}");
        drop(held);
        let e = experiment_status(&dir).unwrap();
        assert_eq!(e.runs[4], RunState::Missing(true), "lock released");
        // The root folder finds the experiment folder.
        assert_eq!(experiment_dirs(tmp.path()).unwrap(), vec![dir.clone()]);
        assert!(matches!(
            experiment_dirs(&dir.join("run-000")),
            Err(StatusError::NoExperiments(_))
        ));
    }

    #[test]
    fn exit_codes_and_summary() {
        let mut t = Totals {
            finished: 4,
            total: 4,
            ..Default::default()
        };
        assert_eq!(t.exit_code(), 0);
        assert_eq!(
            summary(&t, 1),
            "eqaug status: 4 of 4 runs finished, 0 running, 0 failed, 0 corrupt, 0 missing \
             (1 experiment)"
        );
        t.finished = 3;
        t.missing = 1;
        assert_eq!(t.exit_code(), EXIT_INCOMPLETE);
        assert_eq!(ranges(&[0, 1, 2, 5, 7, 8]), "0-2, 5, 7-8");
        assert_eq!(ranges(&[]), "");
    }
}
