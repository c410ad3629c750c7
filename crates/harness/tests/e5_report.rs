//! The E5 config schema and the E5 report, on hand-made run folders whose numbers are known.

use eqaug_harness::config::e5::{self as config, Parametrisation, PhaseSection, Support};
use eqaug_harness::config::ConfigError;
use eqaug_harness::config::{kind_of, Kind};
use eqaug_harness::schema::e5::{self as schema, *};
use eqaug_harness::schema::RunRecord;

fn kind_of_file(f: &Path) -> Kind {
    kind_of(&std::fs::read_to_string(f).unwrap(), f).unwrap()
}
use std::path::{Path, PathBuf};

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments/e5.toml")
}

#[test]
fn shipped_e5_config_resolves_in_both_profiles() {
    let f = shipped();
    assert_eq!(kind_of_file(&f), Kind::E5);
    let text = std::fs::read_to_string(&f).unwrap();
    let profiles = config::profiles_of(&text, &f).unwrap();
    assert!(profiles.contains(&"paper".into()) && profiles.contains(&"quick".into()));
    let paper = config::load(&f, "paper").unwrap();
    assert_eq!(paper.protocol.runs, 30);
    assert_eq!(paper.channels, [32, 64, 64]);
    assert_eq!((paper.phase1.epochs, paper.phase2.epochs), (250, 10));
    assert_eq!(paper.phase1.learning_rate, 5e-4);
    assert_eq!(paper.phase2.learning_rate, 2.5e-4);
    assert_eq!((paper.phase1.minibatch, paper.phase2.minibatch), (100, 100));
    assert_eq!(paper.data.train, None, "paper: all training digits");
    let names: Vec<&str> = paper.cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["cross", "skew", "cross-nonunitary"]);
    assert_eq!(paper.supports(), vec![Support::Cross, Support::Skew]);
    let quick = config::load(&f, "quick").unwrap();
    assert!(!quick.note.is_empty());
    assert!(quick.protocol.runs < 30 && quick.phase1.epochs < 250);
    // At least 3 runs per case, the fewest for an interval over runs (docs/science.md §5).
    assert!(quick.protocol.runs >= 3);
    assert!(profiles.contains(&"medium".into()));
    let medium = config::load(&f, "medium").unwrap();
    assert!(!medium.note.is_empty());
    assert!(medium.protocol.runs >= 10 && medium.phase2.epochs <= 10);
    // The full-batch loader refuses it with a clear message instead of a serde error.
    assert_eq!(
        kind_of_file(&shipped().with_file_name("e1.toml")),
        Kind::FullBatch
    );
}

const BASE: &str = r#"
[experiment]
kind = "e5"
id = "t"
title = "t"
[network]
channels = [2, 2, 2]
[phase1]
epochs = 1
learning_rate = 1e-3
minibatch = 10
[phase2]
epochs = 1
learning_rate = 1e-3
minibatch = 10
[protocol]
runs = 1
[[cases]]
name = "cross"
support = "cross"
parametrisation = "unitary"
[profiles.quick]
note = "q"
"#;

fn err(text: &str) -> String {
    let e = config::parse(text, Path::new("x.toml"), "quick").unwrap_err();
    let s = e.to_string();
    assert!(s.starts_with("x.toml"), "{s}");
    s
}

#[test]
fn bad_e5_configs_name_the_key() {
    assert!(config::parse(BASE, Path::new("x.toml"), "quick").is_ok());
    let s = err(&BASE.replace("channels = [2, 2, 2]", "channels = [2, 2]"));
    assert!(s.contains("network.channels"), "{s}");
    let s = err(&BASE.replace(
        "learning_rate = 1e-3\nminibatch = 10\n[protocol]",
        "learning_rate = -1.0\nminibatch = 10\n[protocol]",
    ));
    assert!(s.contains("phase2.learning_rate"), "{s}");
    let s = err(&BASE.replace("runs = 1", "runs = 1\nwhat = 3"));
    assert!(s.contains("what"), "unknown key named: {s}");
    let s = err(&BASE.replace("support = \"cross\"", "support = \"diamond\""));
    assert!(s.contains("diamond"), "{s}");
    let s = err(&BASE.replace("note = \"q\"", "note = \"q\"\nphase3 = { epochs = 2 }"));
    assert!(s.contains("profiles.quick.phase3"), "{s}");
    let s = err(&BASE.replace("note = \"q\"", "note = \"q\"\nphase2 = { epochs = 0 }"));
    assert!(
        s.contains("(profile quick)") && s.contains("phase2.epochs"),
        "{s}"
    );
    let s = err(&BASE.replace("[network]", "[data]\ntrain = 5\n[network]"));
    assert!(s.contains("data.train"), "{s}");
    let dup = format!(
        "{}\n[[cases]]\nname = \"cross\"\nsupport = \"skew\"\nparametrisation = \"unitary\"\n",
        BASE.replace("[profiles.quick]\nnote = \"q\"\n", "")
    ) + "[profiles.quick]\nnote = \"q\"\n";
    let s = err(&dup);
    assert!(s.contains("cases[1].name"), "{s}");
    assert!(matches!(
        config::parse(BASE, Path::new("x.toml"), "paper"),
        Err(ConfigError::NoProfile { .. })
    ));
}

// ---- hand-made results -----------------------------------------------------------------

fn epoch_row(phase: u8, epoch: usize, d: f64, moved: f64) -> EpochRow {
    EpochRow {
        phase,
        epoch,
        train_loss: 0.09 - 0.001 * epoch as f64,
        train_accuracy: 0.5 + 0.01 * epoch as f64,
        test_loss: 0.095,
        test_accuracy: 0.45,
        dist_to_e: d,
        dist_from_start: moved,
        dist_to_e_conv1: d / 2.0,
        dist_to_e_conv2: d / 2.0,
        dist_to_e_conv3: d / 2.0,
        dist_to_e_linear: d / 2.0,
    }
}

/// Steps whose kicks are `kick` each; `coherent` kicks add up linearly (a drift), otherwise
/// they alternate in a pattern whose sum grows like a random walk (the distance is set to
/// `kick * sqrt(step)`).
fn steps(n: usize, per_epoch: usize, kick: f64, coherent: bool) -> Vec<StepRow> {
    (0..=n)
        .map(|s| {
            let d = if coherent {
                kick * s as f64
            } else {
                kick * (s as f64).sqrt()
            };
            StepRow {
                step: s,
                epoch: if s == 0 { 0 } else { (s - 1) / per_epoch + 1 },
                loss: if s == 0 { f64::NAN } else { 0.09 },
                grad_norm: 0.1,
                grad_norm_kernel: 0.1,
                dist_to_e: d,
                dist_from_start: 1e-3 * s as f64,
                kick: if s == 0 { 0.0 } else { kick },
                dist_to_e_conv1: d / 2.0,
                dist_to_e_conv2: d / 2.0,
                dist_to_e_conv3: d / 2.0,
                dist_to_e_linear: d / 2.0,
            }
        })
        .collect()
}

fn phase(epochs: usize) -> PhaseSection {
    PhaseSection {
        epochs,
        learning_rate: 1e-3,
        minibatch: 10,
    }
}

/// Writes an E5 experiment folder: `runs` runs, three cases, `per_epoch` steps per epoch,
/// 2 phase-2 epochs. Cross kicks 1e-6 per step as noise, skew and non-unitary 1e-5 coherently.
fn write_fixture(dir: &Path, runs: usize, per_epoch: usize) {
    let cases = vec![
        CaseMeta {
            name: "cross".into(),
            support: Support::Cross,
            parametrisation: Parametrisation::Unitary,
        },
        CaseMeta {
            name: "skew".into(),
            support: Support::Skew,
            parametrisation: Parametrisation::Unitary,
        },
        CaseMeta {
            name: "cross-nonunitary".into(),
            support: Support::Cross,
            parametrisation: Parametrisation::NonUnitary,
        },
    ];
    let exp = dir.join("e5");
    std::fs::create_dir_all(&exp).unwrap();
    schema::write_json(
        &exp.join("experiment.json"),
        &ExperimentJson {
            kind: "e5".into(),
            experiment: "e5".into(),
            title: "test".into(),
            profile: "quick".into(),
            note: "hand-made".into(),
            precision: "f32".into(),
            runs,
            channels: [2, 2, 2],
            phase1: phase(2),
            phase2: phase(2),
            cases: cases.clone(),
            data_source: "none".into(),
            train: 40,
            test: 10,
            probe_digits: 5,
            wall_seconds: 1.0,
            config_file: "x.toml".into(),
            config_key: None,
        },
    )
    .unwrap();
    let n = 2 * per_epoch;
    for r in 0..runs {
        let rd = schema::run_dir(&exp, r);
        for s in [Support::Cross, Support::Skew] {
            let p = schema::phase1_dir(&rd, &s);
            std::fs::create_dir_all(&p).unwrap();
            schema::write_json(
                &p.join("phase1.json"),
                &Phase1Json {
                    key: "k".into(),
                    seed: r as u64,
                    support: s.clone(),
                    dim_per_channel_pair: if s == Support::Cross { 2 } else { 1 },
                    parameters: 10,
                    wall_seconds: 0.1,
                    failure: None,
                },
            )
            .unwrap();
            let rows: Vec<EpochRow> = (0..=2)
                .map(|e| epoch_row(1, e, 0.0, 0.1 * e as f64))
                .collect();
            schema::write_csv(&p.join("epochs.csv"), &rows).unwrap();
        }
        for c in &cases {
            let cd = schema::case_dir(&rd, &c.name);
            std::fs::create_dir_all(&cd).unwrap();
            let cross = c.name == "cross";
            let kick = if cross { 1e-6 } else { 1e-5 } * (1.0 + 0.1 * r as f64);
            let st = steps(n, per_epoch, kick, !cross);
            let ep: Vec<EpochRow> = (0..=2)
                .map(|e| {
                    let s = &st[e * per_epoch];
                    epoch_row(2, e, s.dist_to_e, s.dist_from_start)
                })
                .collect();
            schema::write_csv(&cd.join("steps.csv"), &st).unwrap();
            schema::write_csv(&cd.join("epochs.csv"), &ep).unwrap();
            let closed = if cross { 1e-12 } else { 1e-4 };
            schema::write_json(
                &cd.join("case.json"),
                &CaseJson {
                    key: "k".into(),
                    case: c.name.clone(),
                    seed: r as u64,
                    support: c.support.clone(),
                    parametrisation: c.parametrisation,
                    parameters: 20,
                    load_residual: 0.0,
                    probe: Some(ProbeJson {
                        digits: 5,
                        start_dist_to_e: 0.0,
                        closed: StepProbe {
                            dist_to_e: closed,
                            dist_moved: 1e-3,
                            norm_after: 1.0,
                        },
                        shuffled: StepProbe {
                            dist_to_e: 1e-6,
                            dist_moved: 1e-3,
                            norm_after: 1.0,
                        },
                    }),
                    wall_seconds: 0.1,
                    failure: None,
                },
            )
            .unwrap();
        }
        RunRecord {
            run: Some(r),
            seed: Some(r as u64),
            config_key: Some("k".into()),
            cases: cases.iter().map(|c| c.name.clone()).collect(),
            wall_seconds: 1.0,
            eqaug_version: "test".into(),
            ..RunRecord::default()
        }
        .write(&rd)
        .unwrap();
    }
    // A run in progress is ignored.
    std::fs::create_dir_all(exp.join("run-099.tmp")).unwrap();
}

#[test]
fn e5_report_writes_figures_tables_and_claims() {
    let tmp = tempfile::tempdir().unwrap();
    let (runs, per_epoch) = (3, 50);
    write_fixture(tmp.path(), runs, per_epoch);
    let out = tmp.path().join("report");
    let summary = eqaug_harness::report::report_into(tmp.path(), &out).unwrap();
    assert_eq!(summary.experiments, vec!["e5".to_string()]);
    for f in [
        "figure.svg",
        "steps.svg",
        "table.md",
        "runs.csv",
        "summary.csv",
    ] {
        let p = out.join("e5").join(f);
        assert!(p.is_file(), "{} missing", p.display());
    }
    if let Ok(dir) = std::env::var("EQAUG_E5_FIXTURE_OUT") {
        // To look at the figures: EQAUG_E5_FIXTURE_OUT=/tmp/e5fix cargo test ...
        let _ = std::fs::create_dir_all(&dir);
        for f in ["figure.svg", "steps.svg", "table.md"] {
            std::fs::copy(out.join("e5").join(f), Path::new(&dir).join(f)).unwrap();
        }
    }
    let by_id = |id: &str| {
        summary
            .claims
            .iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("claim {id} missing: {:?}", summary.claims))
    };
    // Cross: distance kick sqrt(n) = the random-walk level, ratio 1 per run.
    let c = by_id("e5-cross-near-E");
    assert!((c.measured - 1.0).abs() < 1e-9 && c.pass, "{c:?}");
    // Skew: drift 1e-5 n (run 1: x 1.1) against cross 1e-6 sqrt(n) (x 1.1): 10 sqrt(n).
    let n = (2 * per_epoch) as f64;
    let c = by_id("e5-skew-leaves-E");
    assert!((c.measured - 10.0 * n.sqrt()).abs() < 1e-6 * n, "{c:?}");
    assert!(c.pass);
    assert!(by_id("e5-nonunitary-leaves-E").pass);
    // 1e-12 / (2^-24 x 1) = 1.68e-5 units of round-off.
    let c = by_id("e5-cross-closed-batch-in-E");
    let want = 1e-12 / (f64::from(f32::EPSILON) / 2.0);
    assert!((c.measured - want).abs() < 1e-9 * want && c.pass, "{c:?}");
    // runs.csv: every epoch row of every model (2 phase-1 models, 3 cases, 3 epochs each).
    let runs_csv = std::fs::read_to_string(out.join("e5/runs.csv")).unwrap();
    assert_eq!(runs_csv.lines().count(), 1 + runs * 5 * 3);
    let table = std::fs::read_to_string(out.join("e5/table.md")).unwrap();
    assert!(table.contains("How shuffled mini-batches move the cross model"));
    assert!(table.contains("| phase1-skew | 1 |"), "{table}");
    let claims_md = std::fs::read_to_string(out.join("claims.md")).unwrap();
    assert!(claims_md.contains("e5-cross-near-E"));
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("e5/steps.svg"));
}

#[test]
fn e5_claims_fail_when_cross_drifts() {
    let tmp = tempfile::tempdir().unwrap();
    write_fixture(tmp.path(), 2, 20);
    // Make cross drift coherently like the others: its claim must fail.
    for r in 0..2 {
        let cd = schema::case_dir(&schema::run_dir(&tmp.path().join("e5"), r), "cross");
        schema::write_csv(&cd.join("steps.csv"), &steps(40, 20, 1e-5, true)).unwrap();
    }
    let summary = eqaug_harness::report::report(tmp.path()).unwrap();
    let c = summary
        .claims
        .iter()
        .find(|c| c.id == "e5-cross-near-E")
        .unwrap();
    assert!(!c.pass && (c.measured - 40f64.sqrt()).abs() < 1e-9, "{c:?}");
    let c = summary
        .claims
        .iter()
        .find(|c| c.id == "e5-skew-leaves-E")
        .unwrap();
    assert!(!c.pass, "{c:?}");
}
