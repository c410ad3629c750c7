//! `cargo xtask reproduce`: runs and reports every experiment.

use crate::util;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Arguments of `cargo xtask reproduce`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Profile of every experiment: quick (about 14 minutes on 2 cores, at least 3 runs per
    /// experiment), medium (about 2 hours, at least 10 runs, report in `reports/medium/`) or
    /// paper. Every selected config must declare it (`[profiles.<name>]`).
    #[arg(long, default_value = "quick")]
    pub profile: String,
    /// Only these experiments (config file stems, comma-separated), e.g. e1,e3.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Where the report goes (default: `reports/` for quick, `reports/<profile>/` otherwise;
    /// with `--only`, `<runs-dir>/report-only`, so that a partial run never overwrites the
    /// committed report).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Where the runs go (default: `runs/<profile>/`). Finished runs there are not redone.
    #[arg(long)]
    pub runs_dir: Option<PathBuf>,
}

/// Runs `cargo xtask reproduce`.
pub fn run(args: Args) -> Result<(), String> {
    let root = util::root();
    let runs = args
        .runs_dir
        .clone()
        .unwrap_or_else(|| root.join("runs").join(&args.profile));
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_out(&root, &runs, &args.profile, !args.only.is_empty()));
    if !args.only.is_empty() && args.out.is_none() {
        eprintln!(
            "--only: the report goes to {} (reports/ keeps the whole profile's; --out chooses \
             another folder)",
            out.display()
        );
    }
    let mut configs: Vec<PathBuf> = std::fs::read_dir(root.join("experiments"))
        .map_err(|e| format!("experiments/: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    configs.sort();
    let stem = |p: &Path| {
        p.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    for o in &args.only {
        if !configs.iter().any(|c| stem(c) == *o) {
            let known: Vec<String> = configs.iter().map(|c| stem(c)).collect();
            return Err(format!(
                "--only: no experiments/{o}.toml (have: {})",
                known.join(", ")
            ));
        }
    }
    if !args.only.is_empty() {
        configs.retain(|c| args.only.contains(&stem(c)));
    }
    for c in &configs {
        let text = std::fs::read_to_string(c).map_err(|e| format!("{}: {e}", c.display()))?;
        if !declares_profile(&text, &args.profile) {
            return Err(format!(
                "--profile {}: {} has no [profiles.{}] section",
                args.profile,
                c.display(),
                args.profile
            ));
        }
    }
    let bin = util::build_eqaug()?;
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut timings = read_timings(&out);
    let mut how: BTreeMap<String, Timing> = BTreeMap::new();
    let total = Instant::now();
    for cfg in &configs {
        let before = finished_runs(&runs);
        let t0 = Instant::now();
        eprintln!("== {} ({} profile)", cfg.display(), args.profile);
        util::run(
            Command::new(&bin)
                .arg("run")
                .arg(cfg)
                .args(["--profile", &args.profile])
                .arg("--out")
                .arg(&runs),
        )?;
        let elapsed = t0.elapsed().as_secs_f64();
        let after = finished_runs(&runs);
        let new_runs = after.difference(&before).count();
        let t = merge_timing(timings.get(&stem(cfg)).copied(), elapsed, new_runs);
        timings.insert(stem(cfg), t.seconds());
        how.insert(stem(cfg), t);
    }
    util::run(
        Command::new(&bin)
            .args(["worked-example", "--out"])
            .arg(out.join("worked_example.json")),
    )?;
    // The stability step (docs/science.md §10): every config with a `stability` profile, and the
    // worked example as a self-test; the report picks up runs/<profile>/stability/.
    let t0 = Instant::now();
    let stability_out = runs.join("stability");
    util::run(
        Command::new(&bin)
            .args(["stability", "worked-example", "--out"])
            .arg(&stability_out),
    )?;
    for cfg in &configs {
        let has_profile =
            std::fs::read_to_string(cfg).is_ok_and(|t| t.contains("[profiles.stability]"));
        if has_profile {
            eprintln!("== stability: {}", cfg.display());
            util::run(
                Command::new(&bin)
                    .arg("stability")
                    .arg(cfg)
                    .args(["--profile", "stability", "--out"])
                    .arg(&stability_out),
            )?;
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    timings.insert("stability".into(), elapsed);
    how.insert(
        "stability".into(),
        Timing::Measured {
            seconds: elapsed,
            new_runs: None,
        },
    );
    util::run(
        Command::new(&bin)
            .arg("report")
            .arg(&runs)
            .arg("--out")
            .arg(&out),
    )?;
    let wall = total.elapsed().as_secs_f64();
    write_timings(&out, &timings)?;
    write_readme(&out, &args.profile, &timings, &how, wall)?;
    if let Some(w) = budget_warning(&args.profile, &timings) {
        eprintln!("xtask: warning: {w}");
    }
    eprintln!(
        "reproduce ({} profile) finished in {:.0} s; see {}",
        args.profile,
        wall,
        out.join("README.md").display()
    );
    Ok(())
}

/// Where the report goes without `--out`: `reports/` for the quick profile,
/// `reports/<profile>/` for the others (`reports/medium/`, `reports/paper/`); with `--only`,
/// `<runs>/report-only`, so that a partial reproduction never overwrites the committed report
/// of the whole profile.
fn default_out(root: &Path, runs: &Path, profile: &str, partial: bool) -> PathBuf {
    if partial {
        runs.join("report-only")
    } else if profile == "quick" {
        root.join("reports")
    } else {
        root.join("reports").join(profile)
    }
}

/// Whether a config's text declares `[profiles.<profile>]` (E5 configs too).
fn declares_profile(text: &str, profile: &str) -> bool {
    let header = format!("[profiles.{profile}]");
    text.lines().any(|l| l.trim() == header)
}

/// How an experiment's wall time in `timings.json` was obtained by this invocation.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Timing {
    /// Measured now; `new_runs`: how many runs this invocation finished (`None`: not counted).
    Measured {
        /// Wall time of this invocation's step.
        seconds: f64,
        /// Runs finished by this invocation.
        new_runs: Option<usize>,
    },
    /// Every run was already finished: the time measured by an earlier invocation is kept.
    CarriedOver {
        /// The earlier invocation's wall time.
        seconds: f64,
    },
    /// Every run was already finished and no earlier time is known: the (near zero) time of
    /// this invocation, which measured no training.
    NothingRun {
        /// Wall time of this invocation's step (checking the finished runs).
        seconds: f64,
    },
}

impl Timing {
    fn seconds(self) -> f64 {
        match self {
            Timing::Measured { seconds, .. }
            | Timing::CarriedOver { seconds }
            | Timing::NothingRun { seconds } => seconds,
        }
    }
}

/// The wall time to record for a config: this invocation's when it finished at least one
/// run, else the earlier invocation's (`previous`), so that a resumed reproduction does not
/// overwrite a measured time with the ~0 s of skipping finished runs.
fn merge_timing(previous: Option<f64>, elapsed: f64, new_runs: usize) -> Timing {
    match (new_runs, previous) {
        (0, Some(seconds)) => Timing::CarriedOver { seconds },
        (0, None) => Timing::NothingRun { seconds: elapsed },
        (n, _) => Timing::Measured {
            seconds: elapsed,
            new_runs: Some(n),
        },
    }
}

/// The finished runs under a runs folder: `<experiment>/run-NNN` folders holding a
/// `run.json` (a run in progress has no `run.json` in its final folder).
fn finished_runs(runs: &Path) -> std::collections::BTreeSet<PathBuf> {
    let dirs = |p: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(p)
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default()
    };
    dirs(runs)
        .iter()
        .flat_map(|exp| dirs(exp))
        .filter(|r| {
            r.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("run-") && !n.ends_with(".tmp"))
                && r.join("run.json").is_file()
        })
        .collect()
}

fn read_timings(out: &Path) -> BTreeMap<String, f64> {
    std::fs::read_to_string(out.join("timings.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

fn write_timings(out: &Path, t: &BTreeMap<String, f64>) -> Result<(), String> {
    let p = out.join("timings.json");
    std::fs::write(&p, serde_json::to_string_pretty(t).expect("serialises"))
        .map_err(|e| format!("{}: {e}", p.display()))
}

/// The quick profile's budget: a whole reproduction from scratch in at most 15 minutes on 2
/// cores after the build.
const QUICK_BUDGET_SECONDS: f64 = 900.0;

/// A warning when the quick profile's wall times (this invocation's and those carried over
/// from earlier ones, i.e. a reproduction from scratch) add up to more than its budget.
fn budget_warning(profile: &str, timings: &BTreeMap<String, f64>) -> Option<String> {
    let sum: f64 = timings.values().sum();
    (profile == "quick" && sum > QUICK_BUDGET_SECONDS).then(|| {
        format!(
            "the quick profile's wall times add up to {} (measured now or carried over), more \
             than its budget of {}: shrink a config's quick profile (see each profile's `note`) \
             or check the machine's load",
            human(sum),
            human(QUICK_BUDGET_SECONDS)
        )
    })
}

/// `README.md` of a report folder: profile, machine, wall times, and links to everything.
fn write_readme(
    out: &Path,
    profile: &str,
    timings: &BTreeMap<String, f64>,
    how: &BTreeMap<String, Timing>,
    wall: f64,
) -> Result<(), String> {
    let mut s = String::new();
    let _ = writeln!(s, "# eqaug reports: {profile} profile\n");
    let _ = writeln!(
        s,
        "Written by `cargo xtask reproduce --profile {profile}` on {} ({}).\n",
        util::today(),
        util::machine()
    );
    let _ = writeln!(
        s,
        "Start with [report.md](report.md) (what we found, then every figure inline) and \
         [claims.md](claims.md) (each claim of docs/science.md §5 as a measured number with its \
         runs and interval against a bound; [claims.json](claims.json) for machines).\n"
    );
    let _ = writeln!(s, "## Wall time\n");
    s.push_str(&wall_time_table(timings, how));
    let _ = writeln!(
        s,
        "\nThis invocation: {} in total (runs already finished in `runs/{profile}/` are not redone, \
         so a resumed reproduction is shorter).\n",
        human(wall)
    );
    if let Some(w) = budget_warning(profile, timings) {
        let _ = writeln!(s, "**Warning:** {w}\n");
    }
    let _ = writeln!(s, "## Experiments\n");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(out)
        .map_err(|e| format!("{}: {e}", out.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("table.md").exists())
        .collect();
    dirs.sort();
    for d in dirs {
        let name = d
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut links = vec![
            format!("[table]({name}/table.md)"),
            format!("[figure]({name}/figure.svg)"),
        ];
        if d.join("steps.svg").exists() {
            links.push(format!(
                "[per step, first augmented epoch]({name}/steps.svg)"
            ));
        }
        if d.join("reference.svg").exists() {
            links.push(format!(
                "[uniform vs reference sampling]({name}/reference.svg)"
            ));
        }
        links.push(format!("[summary CSV]({name}/summary.csv)"));
        links.push(format!("[every run's metrics]({name}/runs.csv)"));
        let _ = writeln!(s, "- **{name}**: {}", links.join(", "));
    }
    if out.join("stability/stability.md").is_file() {
        let _ = writeln!(
            s,
            "- **stability** (docs/science.md §10): [table, escapes and findings](stability/stability.md), \
             [spectral densities](stability/stability.svg)"
        );
    }
    let _ = writeln!(
        s,
        "\n## Reading the figures\n\n\
         Each figure plots the distance to the equivariant subspace, ||A_Eperp||, against the \
         distance from the start, ||A - A0|| (Frobenius norms over the group layers), a thick \
         median per strategy (equivariant green solid, augmented blue dashed, nominal red \
         dotted) with one thin line per run up to 3 runs, else a shaded band: the interquartile \
         range over runs. The right panel zooms on the augmented curve. Equivariant \
         training stays on the x axis (in E); augmented training leaves E far more slowly than \
         nominal training at the same distance from the start.\n\n\
         E5 (the CNN, docs/science.md §9) has its own figures: the distance to E ∩ L of the model \
         on the kernel support Omega during augmented training (phase 2), per epoch \
         (`figure.svg`) and per SGD step of the first epoch (`steps.svg`), log scale, for the \
         cases cross (compatible, unitary: green solid), skew (not compatible: red dotted) and \
         cross-nonunitary (blue dashed); the right panels divide by the distance moved."
    );
    let p = out.join("README.md");
    std::fs::write(&p, s).map_err(|e| format!("{}: {e}", p.display()))
}

/// The wall-time table of `README.md`: per config its time and whether this invocation
/// measured it or carried it over from an earlier one (all runs already finished).
fn wall_time_table(timings: &BTreeMap<String, f64>, how: &BTreeMap<String, Timing>) -> String {
    let mut s = String::from("| experiment config | wall time | measured |\n|---|---:|---|\n");
    for (k, v) in timings {
        let name = if k == "stability" {
            "stability step (`eqaug stability`, every config's `stability` profile)".to_string()
        } else {
            format!("`experiments/{k}.toml`")
        };
        let origin = match how.get(k) {
            Some(Timing::Measured {
                new_runs: Some(n), ..
            }) => format!("in this invocation ({n} run(s) finished)"),
            Some(Timing::Measured { new_runs: None, .. }) => "in this invocation".to_string(),
            Some(Timing::CarriedOver { .. }) => {
                "by an earlier invocation (all runs were already finished)".to_string()
            }
            Some(Timing::NothingRun { .. }) => {
                "nothing to run: all runs were already finished and no earlier time is \
                 recorded"
                    .to_string()
            }
            None => "by an earlier invocation (not run by this one)".to_string(),
        };
        let _ = writeln!(s, "| {name} | {} | {origin} |", human(*v));
    }
    s
}

fn human(s: f64) -> String {
    if s < 120.0 {
        format!("{s:.0} s")
    } else {
        format!("{:.1} min", s / 60.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quick_budget_counts_every_config_and_only_the_quick_profile() {
        let t = |v: &[f64]| -> BTreeMap<String, f64> {
            v.iter()
                .enumerate()
                .map(|(i, &x)| (format!("c{i}"), x))
                .collect()
        };
        assert!(budget_warning("quick", &t(&[400.0, 400.0])).is_none());
        let w = budget_warning("quick", &t(&[400.0, 400.0, 200.0])).expect("1000 s > 900 s");
        assert!(w.contains("16.7 min") && w.contains("15.0 min"), "{w}");
        assert!(budget_warning("paper", &t(&[4000.0])).is_none());
    }

    #[test]
    fn every_shipped_config_declares_the_three_profiles_and_medium_reports_go_to_reports_medium() {
        let root = util::root();
        let runs = root.join("runs/medium");
        assert_eq!(
            default_out(&root, &runs, "medium", false),
            root.join("reports/medium")
        );
        assert_eq!(
            default_out(&root, &runs, "quick", false),
            root.join("reports")
        );
        assert_eq!(
            default_out(&root, &runs, "medium", true),
            runs.join("report-only")
        );
        let mut n = 0;
        for e in std::fs::read_dir(root.join("experiments")).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                let text = std::fs::read_to_string(&p).unwrap();
                for profile in ["quick", "medium", "paper"] {
                    assert!(
                        declares_profile(&text, profile),
                        "{}: {profile}",
                        p.display()
                    );
                }
                assert!(!declares_profile(&text, "mediu"));
                n += 1;
            }
        }
        assert!(n >= 12, "{n} configs");
    }

    #[test]
    fn a_resumed_config_keeps_its_earlier_time() {
        // Every run already done: the earlier measured time is kept, not the ~0 s of skipping.
        assert_eq!(
            merge_timing(Some(126.1), 0.2, 0),
            Timing::CarriedOver { seconds: 126.1 }
        );
        // No earlier time: this invocation's, marked as measuring no training.
        assert_eq!(
            merge_timing(None, 0.2, 0),
            Timing::NothingRun { seconds: 0.2 }
        );
        // At least one run finished now: this invocation's time.
        assert_eq!(
            merge_timing(Some(126.1), 40.0, 2),
            Timing::Measured {
                seconds: 40.0,
                new_runs: Some(2)
            }
        );
    }

    #[test]
    fn the_wall_time_table_says_which_times_were_measured_now() {
        let timings: BTreeMap<String, f64> = [("e1", 126.1), ("e2", 331.5), ("e3", 0.2)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let how: BTreeMap<String, Timing> = [
            ("e1", merge_timing(Some(126.1), 0.3, 0)),
            ("e3", merge_timing(None, 0.2, 0)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let t = wall_time_table(&timings, &how);
        assert!(t.contains("| `experiments/e1.toml` | 2.1 min | by an earlier invocation (all runs were already finished) |"), "{t}");
        assert!(t.contains("| `experiments/e2.toml` | 5.5 min | by an earlier invocation (not run by this one) |"), "{t}");
        assert!(
            t.contains("| `experiments/e3.toml` | 0 s | nothing to run"),
            "{t}"
        );
    }

    #[test]
    fn finished_runs_are_run_folders_with_a_run_json() {
        let dir = std::env::temp_dir().join(format!("xtask-finished-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (run, done) in [
            ("e1/run-000", true),
            ("e1/run-001", false),
            ("e1/run-002.tmp", true),
            ("e2/run-000", true),
        ] {
            let p = dir.join(run);
            std::fs::create_dir_all(&p).unwrap();
            if done {
                std::fs::write(p.join("run.json"), "{}").unwrap();
            }
        }
        let found: Vec<PathBuf> = finished_runs(&dir).into_iter().collect();
        assert_eq!(found, vec![dir.join("e1/run-000"), dir.join("e2/run-000")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
