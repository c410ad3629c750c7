//! Tests of `eqaug report` on hand-made run directories whose medians are known.
//!
//! Synthetic data: in every run r the three strategies move as `base(t) * f_r` with factors
//! f = (4, 1, 2) for runs 0, 1, 2, so the median over runs is `base * 2`, the first quartile
//! `base * 1.5` and the third `base * 3` (linear interpolation between order statistics).

use eqaug_harness::report::{self, aggregate, table, ReportError};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

const FACTORS: [f64; 3] = [4.0, 1.0, 2.0];
const EPOCHS: usize = 5;

/// (dist_from_start, dist_to_e, loss) of a strategy at epoch t in a run with factor f.
fn values(strategy: &str, t: usize, f: f64) -> (f64, f64, f64) {
    let t = t as f64;
    let loss_offset = 0.01 * f;
    match strategy {
        "nominal" => (1e-3 * t * f, 5e-4 * t * f, 0.7 - 0.03 * t + loss_offset),
        "augmented" => (1e-3 * t * f, 1e-5 * t * f, 0.7 - 0.021 * t + loss_offset),
        "equivariant" => (1e-3 * t * f, 1e-9 * t * f, 0.7 - 0.02 * t + loss_offset),
        // Exact averaging that (by construction here) leaks off E: a failing claim.
        "augmented-exact" => (1e-3 * t * f, 1e-6 * t * f, 0.7 - 0.02 * t + loss_offset),
        "augmented-reference" => (1e-3 * t * f, 1e-4 * t * f, 0.7 - 0.021 * t + loss_offset),
        other => panic!("no synthetic values for {other}"),
    }
}

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// Writes an experiment folder with 3 runs. `fail` = (run, strategy, epoch): that strategy's
/// rows stop at that epoch, with a NaN loss there, and run.json records it.
fn write_experiment(
    dir: &Path,
    id: &str,
    precision: &str,
    strategies: &[&str],
    fail: Option<(usize, &str, usize)>,
) -> PathBuf {
    let exp_dir = dir.join(id);
    let strategy_json: Vec<String> = strategies
        .iter()
        .map(|s| {
            let (kind, sampling) = match *s {
                "augmented" => ("augmented", ",\"sampling\":\"per-batch\""),
                "augmented-exact" => ("augmented", ",\"sampling\":\"exact\""),
                "augmented-reference" => ("augmented", ",\"sampling\":\"reference\""),
                k => (k, ""),
            };
            format!("{{\"name\":\"{s}\",\"kind\":\"{kind}\"{sampling}}}")
        })
        .collect();
    write(
        &exp_dir.join("experiment.json"),
        &format!(
            "{{\"experiment\":\"{id}\",\"title\":\"synthetic {id}\",\"group\":\"perm\",\
             \"profile\":\"tiny\",\"precision\":\"{precision}\",\"epochs\":{EPOCHS},\"runs\":3,\
             \"strategies\":[{}],\"wall_seconds\":1.5}}",
            strategy_json.join(",")
        ),
    );
    for (run, &f) in FACTORS.iter().enumerate() {
        let run_dir = exp_dir.join(format!("run-{run:03}"));
        let mut csv = String::from(
            "epoch,strategy,loss,dist_from_start,dist_to_e,dist_from_start.layer0,dist_to_e.layer0\n",
        );
        let mut failed = String::new();
        for s in strategies {
            for t in 0..=EPOCHS {
                let (from, to, mut loss) = values(s, t, f);
                if let Some((fr, fs, fe)) = fail {
                    if fr == run && fs == *s && t >= fe {
                        if t > fe {
                            break;
                        }
                        loss = f64::NAN;
                        failed = format!(
                            "{{\"strategy\":\"{s}\",\"epoch\":{fe},\"error\":\"loss is NaN\"}}"
                        );
                    }
                }
                writeln!(csv, "{t},{s},{loss},{from},{to},{from},{to}").unwrap();
            }
        }
        write(&run_dir.join("metrics.csv"), &csv);
        write(
            &run_dir.join("run.json"),
            &format!(
                "{{\"run\":{run},\"seed\":{},\"failed\":[{failed}]}}",
                100 + run
            ),
        );
    }
    // A run in progress, to be ignored.
    write(&exp_dir.join("run-003.tmp/metrics.csv"), "garbage");
    exp_dir
}

/// The tiny report of the issue: e1 with the three main strategies.
fn tiny_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_experiment(
        dir.path(),
        "e1",
        "f32",
        &["nominal", "augmented", "equivariant"],
        None,
    );
    dir
}

fn read_summary(path: &Path) -> Vec<Vec<String>> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

fn claims_json(dir: &Path) -> Vec<serde_json::Value> {
    let text = fs::read_to_string(dir.join("claims.json")).unwrap();
    match serde_json::from_str(&text).unwrap() {
        serde_json::Value::Array(a) => a,
        other => panic!("claims.json is not an array: {other}"),
    }
}

fn claim<'a>(claims: &'a [serde_json::Value], exp: &str, id: &str) -> &'a serde_json::Value {
    claims
        .iter()
        .find(|c| c["experiment"] == exp && c["id"] == id)
        .unwrap_or_else(|| panic!("no claim {id} for {exp}"))
}

fn assert_close(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() <= 1e-12 * expected.abs().max(1e-300),
        "{actual} != {expected}"
    );
}

#[test]
fn quantiles_interpolate_linearly_and_ignore_non_finite() {
    let v = [4.0, 1.0, 2.0, f64::NAN];
    assert_eq!(aggregate::quantile(&v, 0.5), Some(2.0));
    assert_eq!(aggregate::quantile(&v, 0.25), Some(1.5));
    assert_eq!(aggregate::quantile(&v, 0.75), Some(3.0));
    assert_eq!(aggregate::quantile(&[5.0, 1.0], 0.5), Some(3.0));
    assert_eq!(aggregate::quantile(&[f64::NAN], 0.5), None);
}

#[test]
fn table_epochs_follow_the_profile_length() {
    assert_eq!(table::table_epochs(50), vec![0, 1, 5, 10, 25, 50]);
    assert_eq!(table::table_epochs(100), vec![0, 1, 5, 10, 25, 50, 100]);
    assert_eq!(table::table_epochs(10), vec![0, 1, 2, 5, 10]);
    assert_eq!(table::table_epochs(5), vec![0, 1, 3, 5]);
    assert_eq!(table::table_epochs(0), vec![0]);
    assert_eq!(table::sci(0.000123456), "1.23e-4");
}

#[test]
fn summary_csv_has_hand_computed_medians_and_quartiles() {
    let dir = tiny_dir();
    let summary = report::report(dir.path()).unwrap();
    assert_eq!(summary.experiments, vec!["e1".to_string()]);
    let rows = read_summary(&dir.path().join("e1/summary.csv"));
    assert_eq!(
        rows[0].join(","),
        "epoch,strategy,runs,loss_median,loss_q25,loss_q75,dist_from_start_median,\
         dist_from_start_q25,dist_from_start_q75,dist_to_e_median,dist_to_e_q25,dist_to_e_q75,\
         loss_ci_lo,loss_ci_hi,dist_from_start_ci_lo,dist_from_start_ci_hi,dist_to_e_ci_lo,\
         dist_to_e_ci_hi,ci_coverage"
    );
    // 3 strategies x 6 epochs.
    assert_eq!(rows.len(), 1 + 3 * (EPOCHS + 1));
    for row in &rows[1..] {
        let t: usize = row[0].parse().unwrap();
        let s = row[1].as_str();
        assert_eq!(row[2], "3");
        let num = |i: usize| row[i].parse::<f64>().unwrap();
        // Medians and quartiles at factors 2, 1.5, 3 (loss offset 0.01 f).
        let (from, to, loss) = values(s, t, 1.0);
        let base_loss = loss - 0.01;
        assert_close(num(3), base_loss + 0.02);
        assert_close(num(4), base_loss + 0.015);
        assert_close(num(5), base_loss + 0.03);
        for (col, base) in [(6, from), (9, to)] {
            assert_close(num(col), 2.0 * base);
            assert_close(num(col + 1), 1.5 * base);
            assert_close(num(col + 2), 3.0 * base);
        }
        // The median's interval with 3 runs: [min, max] = factors 1 and 4, coverage 75%.
        assert_close(num(12), base_loss + 0.01);
        assert_close(num(13), base_loss + 0.04);
        for (col, base) in [(14, from), (16, to)] {
            assert_close(num(col), base);
            assert_close(num(col + 1), 4.0 * base);
        }
        assert_close(num(18), 0.75);
    }
    // Spot check one value by hand: nominal at epoch 5, ||A - A0|| = 1e-3 * 5 * (2, 1.5, 3).
    let nominal5 = rows
        .iter()
        .find(|r| r[0] == "5" && r[1] == "nominal")
        .unwrap();
    assert_close(nominal5[6].parse().unwrap(), 0.01);
    assert_close(nominal5[7].parse().unwrap(), 0.0075);
    assert_close(nominal5[8].parse().unwrap(), 0.015);
}

#[test]
fn tiny_report_has_every_claim_with_a_numeric_measured() {
    let dir = tiny_dir();
    let summary = report::report(dir.path()).unwrap();
    let claims = claims_json(dir.path());
    assert_eq!(claims.len(), summary.claims.len());
    assert!(!claims.is_empty());
    for c in &claims {
        let obj = c.as_object().expect("claim is an object");
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "bound",
                "coverage",
                "experiment",
                "id",
                "interval",
                "measured",
                "method",
                "n",
                "pass",
                "statement",
                "status"
            ]
        );
        assert!(c["measured"].is_f64(), "measured not numeric in {c}");
        // Three runs: [min, max] of the per-run values, coverage 1 - 2 / 2^3.
        assert_eq!(c["n"], 3);
        assert_eq!(c["method"], "median-order-statistic");
        assert_eq!(c["coverage"], 0.75);
        assert_eq!(c["status"], "pass");
        assert!(c["pass"].is_boolean());
        assert!(c["bound"].is_string() && c["statement"].is_string());
    }
    let ids: Vec<&str> = claims.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        ["eqv-in-E", "aug-drift-below-nominal", "loss-eqv-aug-agree"]
    );
    // Known measured values.
    let eqv = claim(&claims, "e1", "eqv-in-E");
    assert_close(eqv["measured"].as_f64().unwrap(), 1e-6);
    assert_eq!(eqv["bound"], "<= 1e-5");
    assert_eq!(eqv["pass"], true);
    let drift = claim(&claims, "e1", "aug-drift-below-nominal");
    assert_close(drift["measured"].as_f64().unwrap(), 0.02);
    assert_eq!(drift["pass"], true);
    // max |loss_aug - loss_eqv| = 0.001 * 5, max |loss_nom - loss_eqv| = 0.01 * 5.
    let loss = claim(&claims, "e1", "loss-eqv-aug-agree");
    assert!((loss["measured"].as_f64().unwrap() - 0.1).abs() < 1e-9);
    assert_eq!(loss["pass"], true);
    assert_eq!((summary.claims_passed, summary.claims_failed), (3, 0));

    // The per-run ratios are the same in every run here, so the interval is the point.
    assert_eq!(eqv["interval"][0], eqv["interval"][1]);
    assert_close(eqv["interval"][1].as_f64().unwrap(), 1e-6);

    let md = fs::read_to_string(dir.path().join("claims.md")).unwrap();
    assert!(md.contains("3 of 3 claims pass"));
    assert!(
        md.contains(
            "| PASS | e1 | `eqv-in-E` | 1.00e-6 | [1.00e-6, 1.00e-6] (75% coverage, 3 runs) | <= 1e-5 |"
        ),
        "{md}"
    );
    assert!(md.contains("order-statistic (binomial) interval"));
}

#[test]
fn a_claim_on_two_runs_is_too_few_runs_not_pass() {
    let dir = tiny_dir();
    fs::remove_dir_all(dir.path().join("e1/run-002")).unwrap();
    let summary = report::report(dir.path()).unwrap();
    assert_eq!(summary.claims_passed, 0);
    assert_eq!(summary.claims_too_few_runs, 3);
    assert_eq!(summary.claims_failed, 0);
    let claims = claims_json(dir.path());
    for c in &claims {
        assert_eq!(c["status"], "too-few-runs", "{c}");
        assert_eq!(c["pass"], false);
        assert_eq!(c["n"], 2);
        assert!(c.get("interval").is_none(), "{c}");
    }
    let md = fs::read_to_string(dir.path().join("claims.md")).unwrap();
    assert!(
        md.contains("0 of 3 claims pass (0 fail, 3 with too few runs)"),
        "{md}"
    );
    assert!(md.contains("| too few runs | e1 | `eqv-in-E` |"), "{md}");
    let report_md = fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(report_md.starts_with("# eqaug report\n\n## What we found"));
    assert!(
        report_md.contains("Weak: 1 rests on too few runs"),
        "{report_md}"
    );
    // The table has no interval with 2 runs and says why.
    let table = fs::read_to_string(dir.path().join("e1/table.md")).unwrap();
    assert!(table.contains("too few runs for an interval"), "{table}");
}

#[test]
fn constructed_failures_fail_and_extra_strategies_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    write_experiment(
        dir.path(),
        "e3",
        "f64",
        &[
            "nominal",
            "augmented",
            "equivariant",
            "augmented-exact",
            "augmented-reference",
        ],
        Some((2, "nominal", 3)),
    );
    let summary = report::report(dir.path()).unwrap();
    let claims = claims_json(dir.path());
    // The exact-average strategy leaks 1e-3 relative: fails the f64 round-off bound.
    let exact = claim(&claims, "e3", "exact-aug-in-E-f64");
    assert_close(exact["measured"].as_f64().unwrap(), 1e-3);
    assert_eq!(exact["bound"], "<= 1e-12");
    assert_eq!(exact["pass"], false);
    // The equivariant ratio 1e-6 passes in f32 but not against the f64 bound.
    assert_eq!(claim(&claims, "e3", "eqv-in-E")["pass"], false);
    // Run 2 (factor 2) diverged: the paired nominal claims use runs 0 and 1 only.
    let drift = claim(&claims, "e3", "aug-drift-below-nominal");
    assert_close(drift["measured"].as_f64().unwrap(), 0.02);
    // Two runs are too few for an interval: neither PASS nor FAIL.
    assert_eq!(drift["status"], "too-few-runs");
    assert_eq!(drift["pass"], false);
    assert_eq!(summary.claims_failed, 2);

    let rows = read_summary(&dir.path().join("e3/summary.csv"));
    let row = |t: &str, s: &str| {
        rows.iter()
            .find(|r| r[0] == t && r[1] == s)
            .unwrap()
            .clone()
    };
    assert_eq!(row("2", "nominal")[2], "3");
    // Epoch 3: the failing run's loss is NaN and is left out; its distances count.
    let r3 = row("3", "nominal");
    assert_eq!(r3[2], "3");
    let (_, _, loss) = values("nominal", 3, 1.0);
    assert_close(r3[3].parse().unwrap(), loss - 0.01 + 0.025); // median of f = 4, 1
    assert_close(r3[6].parse().unwrap(), 1e-3 * 3.0 * 2.0);
    // Epoch 5: only runs 0 and 1 (factors 4 and 1).
    let r5 = row("5", "nominal");
    assert_eq!(r5[2], "2");
    assert_close(r5[6].parse().unwrap(), 1e-3 * 5.0 * 2.5);
    assert!(rows.iter().any(|r| r[1] == "augmented-reference"));

    assert!(dir.path().join("e3/reference.svg").is_file());
    let table = fs::read_to_string(dir.path().join("e3/table.md")).unwrap();
    assert!(table.contains(
        "| epoch | nominal | augmented | equivariant | augmented-exact | augmented-reference |"
    ));
    assert!(table.contains("run 2: `nominal` failed at epoch 3: loss is NaN"));
    // ||A - A0|| of nominal at epoch 5 from 2 runs (f = 4, 1): median 1.25e-2, too few runs
    // for an interval; augmented from 3 runs: 1e-2 with the interval [min, max] = [5e-3, 2e-2]
    // (f = 1 and 4).
    let row5 = table
        .lines()
        .filter(|l| l.starts_with("| 5 | "))
        .nth(1)
        .unwrap();
    assert!(
        row5.starts_with("| 5 | 1.25e-2 (n=2, no interval) | 1.00e-2 [5.00e-3, 2.00e-2] |"),
        "{row5}"
    );
    assert!(table.contains("coverage 75%"), "{table}");
    let report_md = fs::read_to_string(dir.path().join("report.md")).unwrap();
    for link in [
        "e3/table.md",
        "e3/summary.csv",
        "e3/figure.svg",
        "e3/reference.svg",
        "claims.md",
    ] {
        assert!(
            report_md.contains(&format!("({link})")),
            "report.md lacks {link}"
        );
    }
}

/// Checks that `svg` is well-formed XML as far as element nesting goes.
fn assert_well_formed(svg: &str) {
    let mut stack: Vec<String> = Vec::new();
    let mut rest = svg;
    while let Some(start) = rest.find('<') {
        let end = rest[start..].find('>').expect("unterminated tag") + start;
        let tag = &rest[start + 1..end];
        rest = &rest[end + 1..];
        if tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(
                stack.pop().as_deref(),
                Some(name.trim()),
                "mismatched </{name}>"
            );
        } else if !tag.ends_with('/') {
            let name = tag.split_whitespace().next().unwrap().to_string();
            stack.push(name);
        }
    }
    assert!(stack.is_empty(), "unclosed elements: {stack:?}");
}

#[test]
fn figure_is_well_formed_svg_with_axis_labels_and_legend() {
    let dir = tiny_dir();
    report::report(dir.path()).unwrap();
    let svg = fs::read_to_string(dir.path().join("e1/figure.svg")).unwrap();
    assert!(svg.trim_start().starts_with("<svg") || svg.trim_start().starts_with("<?xml"));
    assert_well_formed(&svg);
    assert!(svg.contains("||A - A0||"));
    assert!(svg.contains("||A_Eperp||"));
    for label in [
        "equivariant",
        "augmented",
        "nominal",
        "zoom on augmented",
        "profile tiny",
    ] {
        assert!(svg.contains(label), "figure lacks {label}");
    }
    // No reference strategy, no reference figure.
    assert!(!dir.path().join("e1/reference.svg").exists());
}

#[test]
fn worked_example_claims_are_merged() {
    let dir = tiny_dir();
    write(
        &dir.path().join("worked_example.json"),
        r#"[{"id": "worked-example-hess-perp", "experiment": "worked-example",
             "statement": "Eperp Hessian eigenvalue", "measured": -0.0767,
             "bound": "<= -0.07", "pass": true}]"#,
    );
    let summary = report::report(dir.path()).unwrap();
    assert_eq!(summary.claims.len(), 4);
    let claims = claims_json(dir.path());
    let w = claim(&claims, "worked-example", "worked-example-hess-perp");
    assert_eq!(w["measured"].as_f64(), Some(-0.0767));
    assert!(fs::read_to_string(dir.path().join("claims.md"))
        .unwrap()
        .contains("worked-example-hess-perp"));
}

fn error_of(dir: &Path) -> String {
    match report::report(dir) {
        Ok(s) => panic!("expected an error, got {s:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn malformed_inputs_give_errors_naming_the_file() {
    // Non-numeric value in a metrics file.
    let dir = tiny_dir();
    let metrics = dir.path().join("e1/run-001/metrics.csv");
    let text = fs::read_to_string(&metrics)
        .unwrap()
        .replacen("0.7", "oops", 1);
    fs::write(&metrics, text).unwrap();
    let e = error_of(dir.path());
    assert!(
        e.contains(&metrics.display().to_string()) && e.contains("line 2"),
        "{e}"
    );

    // Missing column.
    let dir = tiny_dir();
    let metrics = dir.path().join("e1/run-000/metrics.csv");
    fs::write(
        &metrics,
        "epoch,strategy,loss,dist_from_start\n0,nominal,1,0\n",
    )
    .unwrap();
    let e = error_of(dir.path());
    assert!(
        e.contains(&metrics.display().to_string()) && e.contains("dist_to_e"),
        "{e}"
    );

    // Malformed experiment.json.
    let dir = tiny_dir();
    let meta = dir.path().join("e1/experiment.json");
    fs::write(&meta, "{\"experiment\": \"e1\", ").unwrap();
    let e = error_of(dir.path());
    assert!(
        e.contains(&meta.display().to_string()) && e.contains("JSON"),
        "{e}"
    );

    // Missing run.json.
    let dir = tiny_dir();
    let run_json = dir.path().join("e1/run-002/run.json");
    fs::remove_file(&run_json).unwrap();
    let e = error_of(dir.path());
    assert!(e.contains(&run_json.display().to_string()), "{e}");

    // A worked_example.json whose measured is not a number.
    let dir = tiny_dir();
    let worked = dir.path().join("worked_example.json");
    fs::write(
        &worked,
        r#"[{"id":"w","experiment":"w","statement":"s","measured":"big","bound":"<= 1","pass":true}]"#,
    )
    .unwrap();
    let e = error_of(dir.path());
    assert!(e.contains(&worked.display().to_string()), "{e}");

    // Unreadable and empty DIRs.
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("does-not-exist");
    let e = error_of(&missing);
    assert!(e.contains(&missing.display().to_string()), "{e}");
    assert!(matches!(
        report::report(dir.path()),
        Err(ReportError::NoExperiments { .. })
    ));
}

#[test]
fn drift_is_compared_at_equal_distance_from_the_start() {
    use eqaug_harness::report::claims::dist_to_e_at;
    use eqaug_harness::report::input::EpochMetrics;
    // A curve moving 2e-3 per epoch with ||A_Eperp|| = 0.5 ||A - A0||.
    let rows: Vec<EpochMetrics> = (0..=4)
        .map(|t| EpochMetrics {
            epoch: t,
            loss: 1.0,
            dist_from_start: 2e-3 * t as f64,
            dist_to_e: 1e-3 * t as f64,
            penalty: None,
            test_loss: None,
            test_accuracy: None,
            test_mean_iou: None,
        })
        .collect();
    // Reaches 5e-3 half-way between epochs 2 and 3: interpolated 2.5e-3.
    assert_close(dist_to_e_at(&rows, 5e-3).unwrap(), 2.5e-3);
    assert_close(dist_to_e_at(&rows, 8e-3).unwrap(), 4e-3);
    assert_eq!(dist_to_e_at(&rows, 0.0), Some(0.0));
    assert_eq!(dist_to_e_at(&rows, 9e-3), None, "never that far");
}

/// Per-run factors of the per-sample strategy's final ||A_Eperp|| over per-batch's, for the
/// synthetic normalisation ablation (median: batch 1.1, layer 0.9, none 1.0).
fn per_sample_factor(norm: &str, run: usize) -> f64 {
    match norm {
        "batch" => [1.0, 1.2, 1.1][run],
        "layer" => [0.8, 0.9, 1.3][run],
        _ => [0.7, 1.0, 1.0][run],
    }
}

/// Writes `norm-x-<norm>`: 3 runs of nominal, per-batch, per-sample and exact augmented
/// training, every distance linear in the epoch. Final ||A_Eperp||: nominal 1e-3, per-batch
/// 1e-4, per-sample 1e-4 * [`per_sample_factor`], exact `exact` * ||A - A0||.
fn write_norm_experiment(dir: &Path, norm: &str, exact: f64) {
    let id = format!("norm-x-{norm}");
    let exp_dir = dir.join(&id);
    write(
        &exp_dir.join("experiment.json"),
        &format!(
            "{{\"experiment\":\"{id}\",\"group\":\"perm\",\"profile\":\"tiny\",\
             \"precision\":\"f32\",\"epochs\":{EPOCHS},\"runs\":3,\"strategies\":[\
             {{\"name\":\"nominal\",\"kind\":\"nominal\"}},\
             {{\"name\":\"augmented\",\"kind\":\"augmented\",\"sampling\":\"per-batch\"}},\
             {{\"name\":\"augmented-per-sample\",\"kind\":\"augmented\",\"sampling\":\"per-sample\"}},\
             {{\"name\":\"augmented-exact\",\"kind\":\"augmented\",\"sampling\":\"exact\"}}]}}"
        ),
    );
    for run in 0..3 {
        let mut csv = String::from("epoch,strategy,loss,dist_from_start,dist_to_e\n");
        let last = [
            ("nominal", 1e-3),
            ("augmented", 1e-4),
            ("augmented-per-sample", 1e-4 * per_sample_factor(norm, run)),
            ("augmented-exact", exact * 1e-2),
        ];
        for (s, d) in last {
            for t in 0..=EPOCHS {
                let x = t as f64 / EPOCHS as f64;
                writeln!(csv, "{t},{s},{},{},{}", 1.0 - 0.1 * x, 1e-2 * x, d * x).unwrap();
            }
        }
        let run_dir = exp_dir.join(format!("run-{run:03}"));
        write(&run_dir.join("metrics.csv"), &csv);
        // Held-out equivariance error [max, mean] of nominal: run r has (r + 1) * [1e-3, 1e-4].
        let k = (run + 1) as f64;
        write(
            &run_dir.join("run.json"),
            &format!(
                "{{\"run\":{run},\"seed\":{run},\"failed\":[],\
                 \"equivariance_error\":{{\"nominal\":[{},{}]}}}}",
                1e-3 * k,
                1e-4 * k
            ),
        );
    }
}

#[test]
fn normalisation_ablation_claims_have_hand_computed_numbers() {
    let dir = tempfile::tempdir().unwrap();
    for (norm, exact) in [("batch", 1e-6), ("layer", 2e-6), ("none", 0.0)] {
        write_norm_experiment(dir.path(), norm, exact);
    }
    let summary = report::report(dir.path()).unwrap();
    assert_eq!(summary.claims_failed, 0, "{:?}", summary.claims);
    let claims = claims_json(dir.path());
    // Worst cell: batch norm, per-sample, median of 1e-4 * (1.0, 1.2, 1.1) / 1e-3.
    let c = claim(&claims, "norm-x", "norm-sampled-below-nominal");
    assert_close(c["measured"].as_f64().unwrap(), 0.11);
    assert_eq!(c["pass"], true);
    let c = claim(&claims, "norm-x", "norm-exact-in-E");
    assert_close(c["measured"].as_f64().unwrap(), 2e-6);
    assert_eq!(c["pass"], true);
    // Batch norm's median 1.1 against the range of layer's and none's per-run ratios.
    let c = claim(&claims, "norm-x", "norm-batch-per-sample");
    assert_close(c["measured"].as_f64().unwrap(), 1.1);
    assert_eq!(c["bound"], "within [0.7, 1.3]");
    assert_eq!(c["pass"], true);
    let c = claim(&claims, "norm-x-layer", "per-sample-drift-below-nominal");
    assert_close(c["measured"].as_f64().unwrap(), 0.09);
    // The held-out equivariance error: medians 2e-3 (max) and 2e-4 (mean) over the 3 runs,
    // in the table and in equivariance.svg (linked from report.md).
    let table = fs::read_to_string(dir.path().join("norm-x-batch/table.md")).unwrap();
    assert!(table.contains("| nominal | 2.00e-3 | 2.00e-4 |"), "{table}");
    let svg = fs::read_to_string(dir.path().join("norm-x-batch/equivariance.svg")).unwrap();
    assert_well_formed(&svg);
    assert!(svg.contains("nominal") && svg.contains("held-out equivariance error"));
    let md = fs::read_to_string(dir.path().join("ablation-norm.md")).unwrap();
    assert!(md.contains("`norm-batch-per-sample`"), "{md}");
    let report_md = fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(
        report_md.contains("(norm-x-batch/equivariance.svg)"),
        "{report_md}"
    );
    assert!(
        report_md.contains("[ablation-norm.md](ablation-norm.md)")
            && report_md.contains("Ablation claims: 3 of 3 pass"),
        "{report_md}"
    );

    // Without the `none` runs every ablation claim is "no data", never PASS.
    fs::remove_dir_all(dir.path().join("norm-x-none")).unwrap();
    report::report(dir.path()).unwrap();
    let claims = claims_json(dir.path());
    for id in [
        "norm-sampled-below-nominal",
        "norm-exact-in-E",
        "norm-batch-per-sample",
    ] {
        let c = claim(&claims, "norm-x", id);
        assert_eq!(
            (&c["pass"], &c["no_data"]),
            (&false.into(), &true.into()),
            "{c}"
        );
    }
}
