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
    /// Profile of every experiment: quick (about 10 minutes on 2 cores) or paper.
    #[arg(long, default_value = "quick")]
    pub profile: String,
    /// Only these experiments (config file stems, comma-separated), e.g. e1,e3.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Where the report goes (default: `reports/` for quick, `reports/<profile>/` otherwise).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Where the runs go (default: `runs/<profile>/`). Finished runs there are not redone.
    #[arg(long)]
    pub runs_dir: Option<PathBuf>,
}

/// Runs `cargo xtask reproduce`.
pub fn run(args: Args) -> Result<(), String> {
    let root = util::root();
    let out = args.out.clone().unwrap_or_else(|| {
        if args.profile == "quick" {
            root.join("reports")
        } else {
            root.join("reports").join(&args.profile)
        }
    });
    let runs = args
        .runs_dir
        .clone()
        .unwrap_or_else(|| root.join("runs").join(&args.profile));
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
    let bin = util::build_eqaug()?;
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut timings = read_timings(&out);
    let total = Instant::now();
    for cfg in &configs {
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
        timings.insert(stem(cfg), t0.elapsed().as_secs_f64());
    }
    util::run(
        Command::new(&bin)
            .args(["worked-example", "--out"])
            .arg(out.join("worked_example.json")),
    )?;
    // The stability step (SPEC section 10): every config with a `stability` profile, and the
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
    timings.insert("stability".into(), t0.elapsed().as_secs_f64());
    util::run(
        Command::new(&bin)
            .arg("report")
            .arg(&runs)
            .arg("--out")
            .arg(&out),
    )?;
    let wall = total.elapsed().as_secs_f64();
    write_timings(&out, &timings)?;
    write_readme(&out, &args.profile, &timings, wall)?;
    eprintln!(
        "reproduce ({} profile) finished in {:.0} s; see {}",
        args.profile,
        wall,
        out.join("README.md").display()
    );
    Ok(())
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

/// `README.md` of a report folder: profile, machine, wall times, and links to everything.
fn write_readme(
    out: &Path,
    profile: &str,
    timings: &BTreeMap<String, f64>,
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
        "Start with [report.md](report.md) (every figure inline) and [claims.md](claims.md) \
         (each claim of SPEC section 5 as a measured number against a bound; \
         [claims.json](claims.json) for machines).\n"
    );
    let _ = writeln!(s, "## Wall time\n");
    let _ = writeln!(
        s,
        "| experiment config | wall time (last run of the command) |\n|---|---:|"
    );
    for (k, v) in timings {
        if k == "stability" {
            let _ = writeln!(
                s,
                "| stability step (`eqaug stability`, every config's `stability` profile) | {} |",
                human(*v)
            );
        } else {
            let _ = writeln!(s, "| `experiments/{k}.toml` | {} |", human(*v));
        }
    }
    let _ = writeln!(
        s,
        "\nThis invocation: {} in total (runs already finished in `runs/{profile}/` are not redone, \
         so a resumed reproduction is shorter).\n",
        human(wall)
    );
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
            "- **stability** (SPEC section 10): [table, escapes and findings](stability/stability.md), \
             [spectral densities](stability/stability.svg)"
        );
    }
    let _ = writeln!(
        s,
        "\n## Reading the figures\n\n\
         Each figure plots the distance to the equivariant subspace, ||A_Eperp||, against the \
         distance from the start, ||A - A0|| (Frobenius norms over the group layers), one thin \
         line per run and a thick median per strategy: equivariant green solid, augmented blue \
         dashed, nominal red dotted. The right panel zooms on the augmented curve. Equivariant \
         training stays on the x axis (in E); augmented training leaves E far more slowly than \
         nominal training at the same distance from the start.\n\n\
         E5 (the CNN, SPEC section 9) has its own figures: the distance to E ∩ L of the model \
         on the kernel support Omega during augmented training (phase 2), per epoch \
         (`figure.svg`) and per SGD step of the first epoch (`steps.svg`), log scale, for the \
         cases cross (compatible, unitary: green solid), skew (not compatible: red dotted) and \
         cross-nonunitary (blue dashed); the right panels divide by the distance moved."
    );
    let p = out.join("README.md");
    std::fs::write(&p, s).map_err(|e| format!("{}: {e}", p.display()))
}

fn human(s: f64) -> String {
    if s < 120.0 {
        format!("{s:.0} s")
    } else {
        format!("{:.1} min", s / 60.0)
    }
}
