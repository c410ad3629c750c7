//! Issue 15's config options: `regulariser = { gamma }` on strategies and the `npy` data set,
//! validated strictly, and the held-out test metrics in `metrics.csv`.

use eqaug_harness::config;
use std::path::Path;

const BASE: &str = r#"
[experiment]
id = "t"
title = "t"
groups = ["perm"]
size = 4

[data]
DATA

[network]
preset = "e1"
channels = [2, 3, 2]
loss = "bce"

[protocol]
epochs = 2
learning_rate = 1e-3
minibatch = 10
runs = 1
held_out = 10

STRATEGIES

[profiles.quick]
note = "test"
"#;

const SBM: &str = "dataset = \"sbm\"\ncount = 40";

fn parse(data: &str, strategies: &str) -> Result<Vec<config::Experiment>, String> {
    let text = BASE.replace("DATA", data).replace("STRATEGIES", strategies);
    config::parse(&text, Path::new("t.toml"), "quick").map_err(|e| e.to_string())
}

#[test]
fn regulariser_is_parsed_onto_the_strategy() {
    let exp = parse(
        SBM,
        "[[strategies]]\nname = \"n\"\nkind = \"nominal\"\nregulariser = { gamma = 2.5 }\n\
         [[strategies]]\nname = \"a\"\nkind = \"augmented\"\nregulariser = { gamma = 0.0 }\n\
         [[strategies]]\nname = \"p\"\nkind = \"nominal\"",
    )
    .unwrap();
    let s = &exp[0].strategies;
    assert_eq!(s[0].0.regulariser.map(|r| r.gamma), Some(2.5));
    assert_eq!(s[1].0.regulariser.map(|r| r.gamma), Some(0.0));
    assert_eq!(s[2].0.regulariser, None);
}

#[test]
fn bad_regularisers_are_rejected_naming_the_key() {
    let cases = [
        (
            "kind = \"equivariant\"\nregulariser = { gamma = 1.0 }",
            "strategies[0].regulariser",
            "equivariant",
        ),
        (
            "kind = \"nominal\"\nregulariser = { gamma = -1.0 }",
            "strategies[0].regulariser.gamma",
            "-1",
        ),
        (
            "kind = \"nominal\"\nregulariser = { gamma = nan }",
            "strategies[0].regulariser.gamma",
            "finite",
        ),
        (
            "kind = \"nominal\"\nregulariser = { gama = 1.0 }",
            "gama",
            "unknown field",
        ),
    ];
    for (body, key, why) in cases {
        let e = parse(SBM, &format!("[[strategies]]\nname = \"s\"\n{body}")).unwrap_err();
        assert!(
            e.contains("t.toml") && e.contains(key) && e.contains(why),
            "{e}"
        );
    }
}

const ONE: &str = "[[strategies]]\nname = \"n\"\nkind = \"nominal\"";

#[test]
fn npy_keys_are_validated() {
    let ok = "dataset = \"npy\"\ncount = 40\ninputs = \"x.npy\"\ntargets = \"y.npy\"\n\
              targets_kind = \"classes\"\nclasses = 3";
    let exp = parse(ok, ONE).unwrap();
    assert_eq!(exp[0].data.classes, Some(3));
    let cases = [
        (
            "dataset = \"npy\"\ncount = 40\ntargets = \"y.npy\"\ntargets_kind = \"binary\"",
            "data.inputs",
        ),
        (
            "dataset = \"npy\"\ncount = 40\ninputs = \"x.npy\"\ntargets = \"y.npy\"",
            "data.targets_kind",
        ),
        (
            "dataset = \"npy\"\ncount = 40\ninputs = \"x.npy\"\ntargets = \"y.npy\"\n\
             targets_kind = \"binary\"\nclasses = 3",
            "data.classes",
        ),
        (
            "dataset = \"npy\"\ncount = 40\ninputs = \"x.npy\"\ntargets = \"y.npy\"\n\
             targets_kind = \"binary\"\nchannels = 0",
            "data.channels",
        ),
        (
            "dataset = \"sbm\"\ncount = 40\ninputs = \"x.npy\"",
            "data.inputs",
        ),
        (
            "dataset = \"npy\"\ncount = 40\ninputs = \"x.npy\"\ntargets = \"y.npy\"\n\
             targets_kind = \"labels\"",
            "labels",
        ),
    ];
    for (data, key) in cases {
        let e = parse(data, ONE).unwrap_err();
        assert!(e.contains("t.toml") && e.contains(key), "{key}: {e}");
    }
}

#[test]
fn npy_runs_and_records_test_metrics() {
    use eqaug_data::sbm::{self, SbmParams};
    let dir = tempfile::tempdir().unwrap();
    let d = sbm::generate(
        &SbmParams {
            nodes_per_cluster: 2,
            count: 50,
            ..SbmParams::default()
        },
        1,
    );
    eqaug_data::export::write_npy_dir(&d, dir.path()).unwrap();
    let data = format!(
        "dataset = \"npy\"\ncount = 40\ninputs = {:?}\ntargets = {:?}\ntargets_kind = \"binary\"",
        dir.path().join("x.npy"),
        dir.path().join("y.npy")
    );
    let exp = parse(
        &data,
        "[[strategies]]\nname = \"nominal\"\nkind = \"nominal\"\n\
         [[strategies]]\nname = \"reg\"\nkind = \"nominal\"\nregulariser = { gamma = 10.0 }",
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let opts = eqaug_harness::runner::RunOptions::new(out.path());
    eqaug_harness::runner::run_experiment(&exp[0], &opts).unwrap();
    let metrics =
        eqaug_harness::schema::read_metrics(&out.path().join("t/run-000/metrics.csv")).unwrap();
    for (name, rows) in &metrics {
        assert_eq!(rows.len(), 3, "{name}");
        for r in rows {
            assert!(r.test_loss.is_some_and(f64::is_finite), "{name} {r:?}");
            let acc = r.test_accuracy.unwrap();
            assert!((0.0..=1.0).contains(&acc), "{acc}");
            assert_eq!(r.test_mean_iou, None);
            assert_eq!(r.penalty.is_some(), name == "reg", "{name} {r:?}");
        }
    }
    // Too few rows for count + held_out.
    let data = data.replace("count = 40", "count = 45");
    let exp = parse(&data, ONE).unwrap();
    let e = eqaug_harness::runner::run_experiment(&exp[0], &opts).unwrap_err();
    let chain = format!("{e}");
    assert!(
        chain.contains("45") && chain.contains("held_out"),
        "{chain}"
    );
}
