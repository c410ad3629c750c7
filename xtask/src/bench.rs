//! `cargo xtask bench`: runs the criterion benches (which also record their own interleaved
//! timings as JSON lines), measures the peak memory of paper-size E2 and E3 runs, and writes
//! `reports/performance.md`.

use crate::util::{build_eqaug, machine, root, run, today};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Arguments of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write the report.
    #[arg(long, default_value = "reports/performance.md")]
    out: PathBuf,
    /// Skip the peak-memory runs (about 3 minutes).
    #[arg(long)]
    no_memory: bool,
    /// Run only the benches whose name contains FILTER (criterion's filter, e.g. `nn/`);
    /// implies --no-memory. The report then holds only those parts. `--only e5` is special:
    /// it runs only the E5 benches (a few minutes) and replaces only the E5 section of the
    /// existing report, keeping the rest.
    #[arg(long, value_name = "FILTER")]
    only: Option<String>,
    /// Skip the stability step (`eqaug stability` of every config, about 1.5 minutes).
    #[arg(long)]
    no_stability: bool,
    /// Run only the stability step (no criterion benches, no memory runs) and replace only the
    /// stability section of the existing report.
    #[arg(long)]
    only_stability: bool,
}

/// Samples of the memory probes: one full chunk (500 rows), so activations are paper-size.
const MEMORY_SAMPLES: usize = 500;

pub fn run_bench(args: Args) -> Result<(), String> {
    let root = root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let json = target.join("eqaug-bench.jsonl");
    let _ = std::fs::remove_file(&json);
    let load_before = loadavg();
    if args.only_stability {
        let rows = stability_rows(&build_eqaug()?, &target)?;
        let section = format!(
            "{}\n_This section: `cargo xtask bench --only-stability` on {} on {} (load average {} \
             before, {} after); the other sections are from their own runs._\n",
            render_stability(&rows).trim_end(),
            today(),
            machine(),
            load_before,
            loadavg()
        );
        let out = root.join(&args.out);
        let old = std::fs::read_to_string(&out).unwrap_or_else(|_| "# Performance\n".into());
        std::fs::write(
            &out,
            replace_section(&old, "## Stability analysis", &section),
        )
        .map_err(|e| format!("{}: {e}", out.display()))?;
        eprintln!(
            "{section}xtask: replaced the stability section of {}",
            out.display()
        );
        return Ok(());
    }
    let e5_only = args.only.as_deref() == Some("e5");
    let filter = if e5_only {
        Some("e5/".to_string())
    } else {
        args.only.clone()
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(&cargo)
        .current_dir(&root)
        .args(["bench", "--bench", "eqaug", "--"])
        .args(filter.as_slice())
        .env("EQAUG_BENCH_JSON", &json))?;
    let text = std::fs::read_to_string(&json)
        .map_err(|e| format!("the benches wrote no {}: {e}", json.display()))?;
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).map_err(|e| format!("bad bench record {l}: {e}")))
        .collect::<Result<_, _>>()?;
    if e5_only {
        let out = root.join(&args.out);
        let section = crate::bench_e5::section(&records);
        if section.is_empty() {
            return Err(format!(
                "the E5 benches wrote no record to {}",
                json.display()
            ));
        }
        let section = format!(
            "{}\n_This section: `cargo xtask bench --only e5` on {} on {} (load average {} \
             before, {} after); the other sections are from the last full `cargo xtask \
             bench`._\n",
            section.trim_end(),
            today(),
            machine(),
            load_before,
            loadavg()
        );
        let old = std::fs::read_to_string(&out).unwrap_or_else(|_| "# Performance\n".into());
        std::fs::write(&out, replace_section(&old, E5_HEADING, &section))
            .map_err(|e| format!("{}: {e}", out.display()))?;
        eprintln!("xtask: replaced the E5 section of {}", out.display());
        return Ok(());
    }
    let stability = if args.no_stability || args.only.is_some() {
        Vec::new()
    } else {
        stability_rows(&build_eqaug()?, &target)?
    };
    let memory = if args.no_memory || args.only.is_some() {
        Vec::new()
    } else {
        let bin = build_eqaug()?;
        let probes = [
            ("e2", &["nominal", "augmented", "equivariant"][..]),
            ("e3", &["nominal", "augmented", "equivariant"][..]),
            ("e3", &["augmented-exact-f64"][..]),
        ];
        let mut m = Vec::new();
        for (exp, strategies) in probes {
            let kb = peak_rss(&bin, &target, exp, strategies)?;
            m.push((exp, strategies.join(", "), kb));
        }
        m
    };
    let load_after = loadavg();
    let mut report = render(&records, &memory, &load_before, &load_after);
    if !stability.is_empty() {
        report.push_str(&render_stability(&stability));
    }
    let out = root.join(&args.out);
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(&out, report).map_err(|e| format!("{}: {e}", out.display()))?;
    eprintln!("xtask: wrote {}", out.display());
    Ok(())
}

/// The heading that starts the E5 section of `performance.md` (see [`crate::bench_e5`]).
const E5_HEADING: &str = "## E5: the CNN";

/// `doc` with the section whose heading line starts with `heading` (up to the next `## `
/// heading or the end) replaced by `section` (which starts with its own heading). Without
/// such a section, `section` goes before the stability section if there is one (the order
/// of a full report), else at the end.
pub fn replace_section(doc: &str, heading: &str, section: &str) -> String {
    let section = format!("{}\n", section.trim_matches('\n'));
    let line_start = |pat: &str, from: usize| -> Option<usize> {
        let mut at = from;
        while let Some(i) = doc[at..].find(pat) {
            let i = at + i;
            if i == 0 || doc.as_bytes()[i - 1] == b'\n' {
                return Some(i);
            }
            at = i + pat.len();
        }
        None
    };
    let (start, end) = match line_start(heading, 0) {
        Some(start) => {
            let end = line_start("## ", start + heading.len()).unwrap_or(doc.len());
            (start, end)
        }
        None => {
            let at = line_start("## Stability analysis", 0).unwrap_or(doc.len());
            (at, at)
        }
    };
    let before = doc[..start].trim_end_matches('\n');
    let after = &doc[end..];
    let mut out = format!("{before}\n\n{section}");
    if !after.is_empty() {
        out.push('\n');
        out.push_str(after);
    }
    out
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Peak RSS (kB) of `eqaug run` on the experiment's paper config restricted to `strategies`,
/// with `MEMORY_SAMPLES` samples, 1 run and 1 epoch (the network and chunks at paper size).
fn peak_rss(bin: &Path, target: &Path, exp: &str, strategies: &[&str]) -> Result<u64, String> {
    let root = root();
    let src = root.join("experiments").join(format!("{exp}.toml"));
    let text = std::fs::read_to_string(&src).map_err(|e| format!("{}: {e}", src.display()))?;
    // Keep the strategy blocks named in `strategies`; drop the profiles, add our own.
    let mut out = String::new();
    for (i, block) in text.split("\n[[strategies]]").enumerate() {
        let block = block.split("\n[profiles.").next().unwrap_or("");
        if i == 0 {
            out.push_str(block);
        } else if strategies
            .iter()
            .any(|s| block.contains(&format!("name = \"{s}\"")))
        {
            write!(out, "\n[[strategies]]{block}").expect("string");
        }
    }
    write!(
        out,
        "\n[profiles.memory-probe]\nnote = \"peak memory probe\"\n\
         data = {{ count = {MEMORY_SAMPLES} }}\nprotocol = {{ runs = 1, epochs = 1 }}\n"
    )
    .expect("string");
    let dir = target.join("eqaug-memory-probe");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let config = dir.join(format!("{exp}.toml"));
    std::fs::write(&config, out).map_err(|e| format!("{}: {e}", config.display()))?;
    eprintln!("xtask: peak memory of {exp} ({})", strategies.join(", "));
    let output = Command::new(bin)
        .current_dir(&root)
        .arg("run")
        .arg(&config)
        .args(["--profile", "memory-probe", "--out"])
        .arg(dir.join("out"))
        .env("EQAUG_REPORT_PEAK_RSS", "1")
        .output()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!("eqaug run {exp} failed:\n{stderr}"));
    }
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("eqaug: peak RSS "))
        .and_then(|l| l.trim_end_matches(" kB").trim().parse().ok())
        .ok_or_else(|| format!("eqaug printed no peak RSS:\n{stderr}"))
}

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(f64::NAN)
}

fn find<'a>(records: &'a [Value], kind: &str, pred: impl Fn(&Value) -> bool) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["kind"] == kind && pred(r))
        .collect()
}

fn epoch_secs(records: &[Value], exp: &str, strategy: &str) -> f64 {
    find(records, "epoch", |r| {
        r["experiment"] == exp && r["strategy"] == strategy
    })
    .first()
    .map_or(f64::NAN, |r| f(r, "seconds"))
}

fn pass_ms(records: &[Value], exp: &str, chunk: u64) -> f64 {
    find(records, "pass", |r| {
        r["experiment"] == exp && r["chunk"] == chunk
    })
    .first()
    .map_or(f64::NAN, |r| f(r, "ms_per_sample"))
}

fn hours(s: f64) -> String {
    format!("{:.1} h", s / 3600.0)
}

fn render(records: &[Value], memory: &[(&str, String, u64)], before: &str, after: &str) -> String {
    let mut o = String::new();
    render_passes(&mut o, records, before, after);
    render_epochs(&mut o, records);
    let nominal = paper_nominal_epochs(records);
    render_overhead(&mut o, records, nominal);
    render_memory(&mut o, records, memory);
    render_projection(&mut o, records, nominal);
    o.push_str(&crate::bench_e5::section(records));
    o
}

/// The title, the machine, and the table of training passes per sample.
fn render_passes(w: &mut String, records: &[Value], before: &str, after: &str) {
    let ceiling = find(records, "gemm", |_| true)
        .first()
        .map_or(f64::NAN, |r| f(r, "gflops"));
    let _ = writeln!(w, "# Performance\n");
    let _ = writeln!(
        w,
        "Written by `cargo xtask bench` on {} on {} (load average {before} before, {after} \
         after). f32 throughout; matrixmultiply's threaded sgemm behind ndarray's \
         `general_mat_mul` for every layer. Own timings: best of a few repetitions, each \
         next to a 2048^3 GEMM so both see the same load (criterion's statistics are in \
         `target/criterion`).\n",
        today(),
        machine()
    );
    let _ = writeln!(
        w,
        "## Training pass (forward + backward) per sample\n\nEffective GFLOP/s = 3 x 2 x \
         multiply-adds of the linear layers per sample-pass / time. Ceiling: f32 GEMM 2048^3 \
         through the same path, {ceiling:.1} GFLOP/s when first timed; each row is compared \
         with the best GEMM timed interleaved with it.\n"
    );
    let _ = writeln!(
        w,
        "| network | chunk rows (mini-batch) | parameters | GFLOP per sample-pass | ms per \
         sample-pass | GFLOP/s | GEMM GFLOP/s (same time) | % of ceiling | target |\n\
         |---|---|---|---|---|---|---|---|---|"
    );
    for r in find(records, "pass", |_| true) {
        let exp = r["experiment"].as_str().unwrap_or("?");
        let pct = 100.0 * f(r, "gflops") / f(r, "gemm_gflops");
        let chunk = r["chunk"].as_u64().unwrap_or(0);
        let target = match (exp, chunk) {
            ("e1", _) => ">= 60%",
            (_, 500) => ">= 80%",
            _ => "(info: one mini-batch per chunk)",
        };
        let _ = writeln!(
            w,
            "| {} paper | {} ({}) | {} | {:.4} | {:.3} | {:.1} | {:.1} | {:.0}% | {target} |",
            exp.to_uppercase(),
            chunk,
            r["minibatch"],
            r["params"],
            f(r, "flops_per_sample") / 1e9,
            f(r, "ms_per_sample"),
            f(r, "gflops"),
            f(r, "gemm_gflops"),
            pct
        );
    }
}

/// The table of one epoch per strategy.
fn render_epochs(w: &mut String, records: &[Value]) {
    let _ = writeln!(
        w,
        "\n## One epoch per strategy\n\nAn epoch as `train` runs it: the full-batch gradient \
         (chunks of the config's size), the step, and the metrics. Targets: equivariant <= 1.1 \
         x nominal, augmented (L = 25, one draw per mini-batch) <= 1.1 x L x nominal.\n"
    );
    let _ = writeln!(
        w,
        "| experiment | samples | strategy | s per epoch | / nominal | / (L x nominal) |\n\
         |---|---|---|---|---|---|"
    );
    for r in find(records, "epoch", |_| true) {
        let exp = r["experiment"].as_str().unwrap_or("?");
        let nominal = epoch_secs(records, exp, "nominal");
        let passes = f(r, "passes");
        let _ = writeln!(
            w,
            "| {} | {} | {} | {:.3} | {:.3} | {} |",
            r["label"].as_str().unwrap_or("?"),
            r["samples"],
            r["strategy"].as_str().unwrap_or("?"),
            f(r, "seconds"),
            f(r, "seconds") / nominal,
            if passes > 1.0 {
                format!("{:.3}", f(r, "seconds") / nominal / passes)
            } else {
                "-".into()
            }
        );
    }
}

/// The nominal epoch in seconds of the paper-size E1, E2 (and E4) and E3 networks.
fn paper_nominal_epochs(records: &[Value]) -> (f64, f64, f64) {
    // Paper-size nominal epochs: E1 measured; E2 and E4 = 10 x the E2 epoch on 1000 samples;
    // E3 = 3000 x the measured ms per sample-pass (chunk 500).
    let e1 = epoch_secs(records, "e1", "nominal");
    let e2 = 10.0 * epoch_secs(records, "e2", "nominal");
    let e3 = 3000.0 * pass_ms(records, "e3", 500) / 1e3;
    (e1, e2, e3)
}

/// The per-epoch bookkeeping against the paper-size nominal epochs `(e1, e2, e3)`.
fn render_overhead(w: &mut String, records: &[Value], (e1, e2, e3): (f64, f64, f64)) {
    let nominal_of = |exp: &str| match exp {
        "e1" => e1,
        "e3" => e3,
        _ => e2,
    };
    let _ = writeln!(
        w,
        "\n## Per-epoch bookkeeping\n\nThe metrics of every epoch (`EpochMetrics::measure`: \
         distance from A0 and to E per group layer) and the projection of the equivariant \
         gradient (`Params::project_group_layers`) on paper-size parameters, against a \
         paper-size nominal epoch (E1 measured; E2, E4: 10 x the E2 epoch on 1000 samples; \
         E3: 3000 x ms per sample-pass). Target: under 2%.\n"
    );
    let _ = writeln!(
        w,
        "| experiment | group | metrics ms | projection ms | nominal epoch s | share \
         (metrics + projection) |\n|---|---|---|---|---|---|"
    );
    for r in find(records, "overhead", |_| true) {
        let exp = r["experiment"].as_str().unwrap_or("?");
        let (m, p) = (f(r, "metrics_seconds"), f(r, "projection_seconds"));
        let _ = writeln!(
            w,
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2}% |",
            exp.to_uppercase(),
            r["group"].as_str().unwrap_or("?"),
            m * 1e3,
            p * 1e3,
            nominal_of(exp),
            100.0 * (m + p) / nominal_of(exp)
        );
    }
}

/// The peak memory of the paper-size runs, if they were measured.
fn render_memory(w: &mut String, records: &[Value], memory: &[(&str, String, u64)]) {
    if !memory.is_empty() {
        let floor = |exp: &str| {
            find(records, "pass", |r| {
                r["experiment"] == exp && r["chunk"] == 500
            })
            .first()
            .map(|r| (f(r, "params") * 4.0 * 3.0, f(r, "activation_bytes")))
        };
        let _ = writeln!(
            w,
            "\n## Peak memory of one paper-size run\n\n`eqaug run` of the paper config (network, \
             chunk 500, mini-batch 25) on {MEMORY_SAMPLES} samples, 1 run, 1 epoch, with \
             `EQAUG_REPORT_PEAK_RSS=1` (VmHWM). Floor: parameters, one gradient store and A0 in \
             f32 (3 x 4 bytes per parameter) plus the outputs of every layer for one chunk. \
             Targets: E2 < 1.5 GB, E3 < 2.5 GB (three f32 strategies).\n"
        );
        let _ = writeln!(
            w,
            "| experiment | strategies | peak RSS | floor (params x 3 + activations) | peak / floor |\n\
             |---|---|---|---|---|"
        );
        for (exp, strategies, kb) in memory {
            let bytes = *kb as f64 * 1024.0;
            let (fl, act) = floor(exp).unwrap_or((f64::NAN, f64::NAN));
            let f64_note = if strategies.contains("f64") {
                " (f64: its floor is twice the f32 one plus the f32 A0)"
            } else {
                ""
            };
            let _ = writeln!(
                w,
                "| {} | {strategies}{f64_note} | {:.2} GB | {:.2} + {:.2} = {:.2} GB | {:.2} |",
                exp.to_uppercase(),
                bytes / 1e9,
                fl / 1e9,
                act / 1e9,
                (fl + act) / 1e9,
                bytes / (fl + act)
            );
        }
    }
}

/// The projected wall time of the paper profile from the nominal epochs `(e1, e2, e3)`.
fn render_projection(w: &mut String, records: &[Value], (e1, e2, e3): (f64, f64, f64)) {
    // Projected wall time of the paper profile: 30 runs x per strategy (50 epochs + the final
    // loss-only pass, about a third of an epoch); strategies per experiment as in
    // experiments/*.toml (E3's augmented-exact runs |C4| = 4 passes, its f64 twin is
    // counted at 2x the f32 cost).
    let aug = |nominal: f64| 25.0 * nominal;
    let total = |epochs: f64| epochs * (50.0 + 1.0 / 3.0) * 30.0;
    let e1_aug = epoch_secs(records, "e1", "augmented");
    let e1_eq = epoch_secs(records, "e1", "equivariant");
    let e2_aug = 10.0 * epoch_secs(records, "e2", "augmented");
    let e2_eq = 10.0 * epoch_secs(records, "e2", "equivariant");
    let rows = [
        ("E1", "nominal, augmented, equivariant, augmented-per-sample", total(e1 + 2.0 * e1_aug + e1_eq)),
        ("E2", "nominal, augmented, equivariant", total(e2 + e2_aug + e2_eq)),
        (
            "E3",
            "nominal, augmented, equivariant, augmented-reference, augmented-exact (4), augmented-exact-f64 (4, ~2x)",
            total(e3 + 2.0 * aug(e3) + e3 + 4.0 * e3 + 8.0 * e3),
        ),
        (
            "E4",
            "4 groups x (nominal, augmented, equivariant) + rot: augmented-reference, augmented-exact (4)",
            total(4.0 * (e2 + e2_aug + e2_eq) + e2_aug + 4.0 * e2),
        ),
    ];
    let _ = writeln!(
        w,
        "\n## Projected wall time of the paper profile on this machine\n\n30 runs x 50 \
         epochs (+ the final loss pass) x the seconds per epoch above, strategies as in \
         `experiments/*.toml`, runs one after the other (the E2 and E4 epochs on 10 000 \
         samples are 10 x the measured 1000-sample epochs; E3's from the per-sample pass).\n"
    );
    let _ = writeln!(
        w,
        "| experiment | strategies | projected wall time |\n|---|---|---|"
    );
    let mut sum = 0.0;
    for (exp, strategies, secs) in rows {
        sum += secs;
        let _ = writeln!(w, "| {exp} | {strategies} | {} |", hours(secs));
    }
    let _ = writeln!(w, "| all | | {} |", hours(sum));
}

/// One row of the stability step: experiment, wall time of `eqaug stability` for it, the
/// HVP / gradient time ratio it measured, parameters and samples.
struct StabilityRow {
    experiment: String,
    seconds: f64,
    hvp_ratio: Option<f64>,
    hvp_ratio_aug: Option<f64>,
    aug_elements: String,
    params: u64,
    samples: u64,
    /// The HVP method, and the cost of an exact HVP from scratch (nominal, augmented).
    method: String,
    scratch: Option<(f64, f64)>,
}

/// Runs `eqaug stability` with the `stability` profile of every config that has one, and reads
/// back the wall times and HVP cost ratios from the written `stability.json` files.
fn stability_rows(bin: &Path, target: &Path) -> Result<Vec<StabilityRow>, String> {
    let out = target.join("eqaug-bench-stability");
    let _ = std::fs::remove_dir_all(&out);
    let root = root();
    let mut configs: Vec<PathBuf> = std::fs::read_dir(root.join("experiments"))
        .map_err(|e| format!("experiments/: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .filter(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains("[profiles.stability]")))
        .collect();
    configs.sort();
    for cfg in &configs {
        run(Command::new(bin)
            .arg("stability")
            .arg(cfg)
            .args(["--profile", "stability", "--out"])
            .arg(&out))?;
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&out)
        .map_err(|e| format!("{}: {e}", out.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("stability.json").is_file())
        .collect();
    dirs.sort();
    dirs.iter()
        .map(|d| {
            let p = d.join("stability.json");
            let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            let v: Value =
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?;
            Ok(StabilityRow {
                experiment: v["experiment"].as_str().unwrap_or("?").to_string(),
                seconds: f(&v, "wall_seconds"),
                hvp_ratio: v["hvp_cost_in_gradients"].as_f64(),
                hvp_ratio_aug: v["hvp_cost_augmented"].as_f64(),
                aug_elements: v["runs"][0]["report"]["perp_elements"]
                    .as_u64()
                    .map_or("-".into(), |n| n.to_string()),
                params: v["params"].as_u64().unwrap_or(0),
                samples: v["samples"].as_u64().unwrap_or(0),
                method: v["hvp_method"].as_str().unwrap_or("?").to_string(),
                scratch: v["hvp_cost_from_scratch"][0]
                    .as_f64()
                    .zip(v["hvp_cost_from_scratch"][1].as_f64()),
            })
        })
        .collect()
}

fn render_stability(rows: &[StabilityRow]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "\n## Stability analysis (`eqaug stability`, f64)\n\nWall time of `eqaug stability \
         CONFIG --profile stability` per experiment (stationary point by L-BFGS and trust-region \
         Newton on E, Lanczos \
         on both blocks, escapes), and the cost of one exact Hessian-vector product (Pearlmutter's \
         R-operator: a tangent forward and a second-order backward pass) in gradients (ratio of \
         the medians of 15 interleaved repetitions, at the profile's size; target <= 2 from \
         scratch, less at a kept point): of the nominal risk (the stationary-point search and \
         the E block) and of the augmented risk averaged over the elements H_perp uses (its \
         Lanczos runs). At a kept point (the analysis' case: Lanczos and Newton-CG take many \
         products at one point) the point's forward and backward pass are not redone; from \
         scratch every product redoes them (the central differences they replace cost 2.0-2.4 \
         gradients).\n"
    );
    let _ = writeln!(
        o,
        "| experiment | samples | parameters | wall time s | HVP | HVP / gradient, nominal (kept point; from scratch) | group elements of H_perp | HVP / gradient, augmented (kept point; from scratch) |\n|---|---|---|---|---|---|---|---|"
    );
    let mut total = 0.0;
    for r in rows {
        total += r.seconds;
        let _ = writeln!(
            o,
            "| {} | {} | {} | {:.1} | {} | {}; {} | {} | {}; {} |",
            r.experiment,
            r.samples,
            r.params,
            r.seconds,
            r.method,
            r.hvp_ratio.map_or("-".into(), |x| format!("{x:.2}")),
            r.scratch.map_or("-".into(), |x| format!("{:.2}", x.0)),
            r.aug_elements,
            r.hvp_ratio_aug.map_or("-".into(), |x| format!("{x:.2}")),
            r.scratch.map_or("-".into(), |x| format!("{:.2}", x.1))
        );
    }
    let _ = writeln!(o, "\nTotal: {total:.1} s.");
    o
}

#[cfg(test)]
mod tests {
    use super::replace_section;

    const NEW: &str = "\n## E5: the CNN (docs/science.md §9)\n\nnew table\n";

    #[test]
    fn the_e5_section_is_replaced_in_place() {
        let doc =
            "# Performance\n\n## A\n\na\n\n## E5: the CNN (docs/science.md §9)\n\nold table\n\n\
                   ## Stability analysis (x)\n\ns\n";
        assert_eq!(
            replace_section(doc, "## E5: the CNN", NEW),
            "# Performance\n\n## A\n\na\n\n## E5: the CNN (docs/science.md §9)\n\nnew table\n\n\
             ## Stability analysis (x)\n\ns\n"
        );
        // At the end of the file.
        let doc = "# P\n\n## A\n\na\n\n## E5: the CNN (old)\n\nold\n| x |\n";
        assert_eq!(
            replace_section(doc, "## E5: the CNN", NEW),
            "# P\n\n## A\n\na\n\n## E5: the CNN (docs/science.md §9)\n\nnew table\n"
        );
    }

    #[test]
    fn a_missing_e5_section_goes_before_stability_or_at_the_end() {
        let doc = "# P\n\n## A\n\na\n\n## Stability analysis\n\ns\n";
        assert_eq!(
            replace_section(doc, "## E5: the CNN", NEW),
            "# P\n\n## A\n\na\n\n## E5: the CNN (docs/science.md §9)\n\nnew table\n\n\
             ## Stability analysis\n\ns\n"
        );
        let doc = "# P\n\n## A\n\na\n";
        assert_eq!(
            replace_section(doc, "## E5: the CNN", NEW),
            "# P\n\n## A\n\na\n\n## E5: the CNN (docs/science.md §9)\n\nnew table\n"
        );
        // A heading that only appears inside a line is not a section.
        let doc = "# P\n\nsee ## E5: the CNN below\n";
        assert!(replace_section(doc, "## E5: the CNN", NEW).starts_with("# P\n\nsee ## E5"));
    }
}
