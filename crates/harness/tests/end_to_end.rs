//! A tiny profile end to end: run, interrupt, resume, shard, report.

use eqaug_harness::config;
use eqaug_harness::runner::{run_dir_name, run_experiment, RunOptions};
use std::path::Path;

/// The tiny experiment shared by the harness tests.
const TINY: &str = include_str!("data/tiny.toml");

fn opts(out: &Path) -> RunOptions {
    RunOptions::new(out)
}

fn metrics(out: &Path, run: usize) -> String {
    std::fs::read_to_string(out.join("tiny").join(run_dir_name(run)).join("metrics.csv")).unwrap()
}

#[test]
fn interrupted_and_sharded_runs_give_the_same_metrics_and_the_report_checks_claims() {
    let exp = &config::parse(TINY, Path::new("tiny.toml"), "quick").unwrap()[0];
    let tmp = tempfile::tempdir().unwrap();

    // Uninterrupted.
    let whole = tmp.path().join("whole");
    let s = run_experiment(exp, &opts(&whole)).unwrap();
    assert_eq!(s.finished, vec![0, 1, 2, 3]);
    let m0 = metrics(&whole, 0);
    // The base columns, the held-out test metrics (held_out > 0), then the per-layer distances.
    assert!(
        m0.starts_with(
            "epoch,strategy,loss,dist_from_start,dist_to_e,test_loss,test_accuracy,\
             dist_from_start.layer0"
        ),
        "{m0}"
    );
    assert_eq!(
        m0.lines().count(),
        1 + 3 * 4,
        "header + 3 strategies x epochs 0..=3"
    );
    let run0 = whole.join("tiny").join("run-000");
    for f in [
        "run.json",
        "config.toml",
        "checkpoints/nominal/epoch-003/manifest.json",
    ] {
        assert!(run0.join(f).exists(), "{f} missing");
    }

    // The empirical equivariance error on held-out graphs: round-off in E, visible off E.
    let rj: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run0.join("run.json")).unwrap()).unwrap();
    let err = |s: &str| rj["equivariance_error"][s][0].as_f64().unwrap();
    assert!(err("equivariant") < 1e-5, "{}", rj["equivariance_error"]);
    assert!(err("nominal") > 1e-4, "{}", rj["equivariance_error"]);
    assert!(
        err("augmented") < err("nominal"),
        "{}",
        rj["equivariance_error"]
    );

    // Interrupted: two runs finish, a third dies half-way (its temporary folder is left).
    let resumed = tmp.path().join("resumed");
    let mut o = opts(&resumed);
    o.runs = Some(2);
    run_experiment(exp, &o).unwrap();
    let stale = resumed.join("tiny").join("run-002.tmp");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("metrics.csv"), "half-written").unwrap();
    let s = run_experiment(exp, &opts(&resumed)).unwrap();
    assert_eq!(s.skipped, vec![0, 1]);
    assert_eq!(s.finished, vec![2, 3]);
    assert!(!stale.exists());

    // A changed config does not silently mix with the finished runs.
    let mut changed = exp.clone();
    changed.protocol.seed += 1;
    let e = run_experiment(&changed, &opts(&resumed))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("different configuration") && e.contains("run-000"),
        "{e}"
    );

    // Shards 1/2 and 2/2.
    let sharded = tmp.path().join("sharded");
    for k in 1..=2 {
        let mut o = opts(&sharded);
        o.shard = Some((k, 2));
        let s = run_experiment(exp, &o).unwrap();
        assert_eq!(s.finished.len(), 2);
    }
    for r in 0..4 {
        let m = metrics(&whole, r);
        assert_eq!(m, metrics(&resumed, r), "run {r}: resumed differs");
        assert_eq!(m, metrics(&sharded, r), "run {r}: sharded differs");
    }
    assert_ne!(metrics(&whole, 0), metrics(&whole, 1), "runs should differ");

    // The report of the tiny run: every claim with a numeric measured value.
    let rep = tmp.path().join("report");
    let summary = eqaug_harness::report::report_into(&whole, &rep).unwrap();
    assert_eq!(summary.experiments, vec!["tiny".to_string()]);
    let claims: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(rep.join("claims.json")).unwrap()).unwrap();
    let claims = claims.as_array().unwrap();
    assert!(claims.len() >= 3);
    for c in claims {
        for k in ["id", "experiment", "statement", "measured", "bound", "pass"] {
            assert!(c.get(k).is_some(), "claim without {k}: {c}");
        }
        assert!(c["measured"].is_number(), "{c}");
    }
    let table = std::fs::read_to_string(rep.join("tiny/table.md")).unwrap();
    assert!(
        table.contains("loss `bce` on the network's output (no softmax layer)"),
        "{table}"
    );
    let eqv = claims.iter().find(|c| c["id"] == "eqv-in-E").unwrap();
    assert_eq!(eqv["pass"], true, "{eqv}");
    for f in [
        "tiny/figure.svg",
        "tiny/table.md",
        "tiny/runs.csv",
        "report.md",
        "claims.md",
    ] {
        assert!(rep.join(f).exists(), "{f} missing");
    }
}

/// `setup` rebuilds a finished experiment from its folder: the same config (and fingerprint),
/// and checkpoints whose distance from the run's A0 is the recorded `||A - A0||`.
#[test]
fn a_results_folder_rebuilds_its_setup_and_checkpoints() {
    use eqaug_harness::schema::{self, RunRecord};
    use eqaug_harness::setup::RunSetup;
    use rand::SeedableRng;
    let exp = &config::parse(TINY, Path::new("tiny.toml"), "quick").unwrap()[0];
    let tmp = tempfile::tempdir().unwrap();
    let mut o = opts(tmp.path());
    o.runs = Some(1);
    o.seed = Some(77);
    run_experiment(exp, &o).unwrap();
    let dir = tmp.path().join("tiny");
    let s = RunSetup::from_dir(&dir).unwrap();
    let rebuilt = &s.exp;
    assert_eq!(rebuilt.protocol.seed, 77);
    assert_eq!(rebuilt.protocol.runs, 1);
    let run_dir = schema::run_dir(&dir, 0);
    let record = RunRecord::read(&run_dir).unwrap();
    assert_eq!(
        record.config_key.as_deref(),
        Some(eqaug_harness::runner::config_key(rebuilt).as_str()),
        "the rebuilt experiment has the fingerprint of the one that ran"
    );
    assert_eq!(s.data64.len(), exp.data.count);
    assert_eq!(s.held64.nrows(), exp.protocol.held_out);

    let a0 = s
        .net64
        .init_params(&mut rand_chacha::ChaCha8Rng::seed_from_u64(77))
        .cast::<f32>();
    let rows = schema::read_metrics(&run_dir.join(schema::METRICS_CSV)).unwrap();
    let last = exp.protocol.epochs;
    for (spec, _) in &exp.strategies {
        let a = s
            .load_checkpoint::<f32>(&run_dir, &spec.name, last)
            .unwrap();
        let recorded = rows[&spec.name].last().unwrap();
        assert_eq!(recorded.epoch, last);
        let d = f64::from(a.distance_group_layers(&a0));
        assert!(
            (d - recorded.dist_from_start).abs() <= 1e-6 * recorded.dist_from_start.max(1.0),
            "{}: checkpoint |A - A0| = {d}, metrics.csv {}",
            spec.name,
            recorded.dist_from_start
        );
    }
    let missing = s.load_checkpoint::<f64>(&run_dir, "nominal", last + 1);
    assert!(missing.is_err());
}
