//! `eqaug stability` on the worked example, through the report: files, numbers and claims.

use eqaug_harness::report::stability;

#[test]
fn worked_example_through_the_stability_report() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("stability");
    let o = eqaug_harness::stability::run_worked_example(&runs).unwrap();
    let r = &o.runs[0].report;
    assert!((r.e_block.min - 0.5).abs() < 1e-8);
    assert!((r.perp_block.min - (std::f64::consts::LN_2 - 1.0) / 2.0).abs() < 1e-8);
    let out = dir.path().join("report");
    let mut written = Vec::new();
    let claims = stability::write(&runs, &out, &mut written).unwrap();
    assert!(out.join("stability.md").is_file() && out.join("stability.svg").is_file());
    let ids: Vec<&str> = claims.iter().map(|c| c.id.as_str()).collect();
    for id in [
        "stability-worked-example-e",
        "stability-worked-example-perp",
        "stability-escape-rate",
        "stability-escape-random",
        "stability-block-diagonal",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    for c in &claims {
        assert!(c.pass, "{c:?}");
    }
    let md = std::fs::read_to_string(out.join("stability.md")).unwrap();
    assert!(
        md.contains("worked-example") && md.contains("unstable off E"),
        "{md}"
    );
    if let Ok(d) = std::env::var("EQAUG_STABILITY_PREVIEW") {
        let mut w = Vec::new();
        stability::write(std::path::Path::new(&d), std::path::Path::new(&d), &mut w).unwrap();
    }
}

#[test]
fn stability_profiles_parse_and_the_activation_key_is_checked() {
    use eqaug_harness::config;
    use eqaug_nn::LayerSpec;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments");
    for f in ["e1.toml", "e2.toml", "e3.toml", "e4.toml"] {
        let exps = config::load(&root.join(f), "stability").unwrap();
        for e in &exps {
            assert!(e.stability.is_some(), "{f}: no [stability]");
            assert!(
                e.network
                    .layers
                    .iter()
                    .any(|l| matches!(l, LayerSpec::SmoothLeakyRelu { .. })),
                "{f}: the stability profile should use the smooth LeakyReLU"
            );
            assert!(!e
                .network
                .layers
                .iter()
                .any(|l| matches!(l, LayerSpec::LeakyRelu { .. })));
        }
    }
    let text = std::fs::read_to_string(root.join("e1.toml")).unwrap();
    let bad = text.replacen("loss = \"bce\"", "loss = \"bce\"\nsharpness = 5.0", 1);
    let err = config::parse(&bad, std::path::Path::new("e1.toml"), "quick").unwrap_err();
    assert!(err.to_string().contains("network.sharpness"), "{err}");
    // Replace the configured value (whatever it is) by 0.
    let line = text
        .lines()
        .find(|l| l.starts_with("lanczos_steps = "))
        .expect("e1.toml sets lanczos_steps");
    let bad = text.replacen(line, "lanczos_steps = 0", 1);
    let err = config::parse(&bad, std::path::Path::new("e1.toml"), "stability").unwrap_err();
    assert!(err.to_string().contains("stability.lanczos_steps"), "{err}");
}
