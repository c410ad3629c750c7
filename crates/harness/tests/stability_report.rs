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
    // the HVP method: exact by default, central differences on request, nothing else
    use eqaug_dynamics::stability::HvpMethod;
    let exps = config::parse(&text, std::path::Path::new("e1.toml"), "stability").unwrap();
    assert_eq!(exps[0].stability.as_ref().unwrap().hvp, HvpMethod::Exact);
    let cd = text.replacen(line, &format!("{line}\nhvp = \"central_differences\""), 1);
    let exps = config::parse(&cd, std::path::Path::new("e1.toml"), "stability").unwrap();
    assert_eq!(
        exps[0].stability.as_ref().unwrap().hvp,
        HvpMethod::CentralDifferences
    );
    let bad = text.replacen(line, &format!("{line}\nhvp = \"finite\""), 1);
    let err = config::parse(&bad, std::path::Path::new("e1.toml"), "stability").unwrap_err();
    assert!(err.to_string().contains("hvp"), "{err}");
}

/// The normalisation comparison (issue 15) end to end on the shipped `norm-e3-batch` and
/// `norm-e3-layer` stability profiles (first seed only): both blocks dense (every eigenvalue
/// of H_perp, the exact C_4 average), the E / E-perp block vanishing at A*, and the report's
/// section and `norm-hperp-negative` claims computed from those numbers.
#[test]
fn batch_and_layer_norm_stability_profiles_through_the_report() {
    use eqaug_harness::config;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments");
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("stability");
    let mut lowest = Vec::new();
    for norm in ["batch", "layer"] {
        let f = root.join(format!("norm-e3-{norm}.toml"));
        let mut exps = config::load(&f, "stability").unwrap();
        assert_eq!(exps.len(), 1);
        let mut e = exps.remove(0);
        e.stability.as_mut().expect("[stability]").runs = 1;
        let o = eqaug_harness::stability::run_stability(&e, &runs).unwrap();
        let r = &o.runs[0].report;
        assert!(r.converged, "{norm}: {}", r.stop_reason);
        assert!(
            r.perp_exact && r.perp_block.dense && r.e_block.dense,
            "{norm}"
        );
        assert_eq!(r.perp_block.ritz_values.len(), r.dim_perp, "{norm}");
        assert!(
            r.off_diagonal.unwrap() < 1e-6,
            "{norm}: {:?}",
            r.off_diagonal
        );
        let q = r
            .per_sample_rayleigh
            .as_ref()
            .expect("per_sample_samples is set");
        assert_eq!(q.values.len(), 64, "{norm}");
        lowest.push(r.perp_block.min / r.perp_block.noise);
        // A* and the extreme vectors are kept as checkpoints that load into the network
        let setup = eqaug_harness::setup::RunSetup::new(&e).unwrap();
        let net = setup.network::<f64>();
        let run = runs.join(&e.name).join("run-000");
        let point = net.zeros().load_npy(&run.join("point")).unwrap();
        assert!(
            (point.norm() - r.norm_a_star).abs() <= 1e-12 * r.norm_a_star,
            "{norm}"
        );
        for v in ["e-min", "e-max", "perp-min", "perp-max"] {
            let p = net.zeros().load_npy(&run.join(v)).unwrap();
            assert!((p.norm() - 1.0).abs() < 1e-12, "{norm} {v}");
        }
    }
    let out = dir.path().join("report");
    let mut written = Vec::new();
    let claims = stability::write(&runs, &out, &mut written).unwrap();
    let md = std::fs::read_to_string(out.join("stability.md")).unwrap();
    assert!(
        md.contains("## Batch norm, layer norm and no normalisation")
            && md.contains("| e3 | batch | 0 |")
            && md.contains("| e3 | layer | 0 |"),
        "{md}"
    );
    for (norm, ratio) in ["batch", "layer"].iter().zip(&lowest) {
        let c = claims
            .iter()
            .find(|c| c.id == "norm-hperp-negative" && c.experiment == format!("norm-e3-{norm}"))
            .unwrap_or_else(|| panic!("no norm-hperp-negative claim for {norm}"));
        // read back from stability.json: serde_json's default float parsing may be 1 ulp off
        assert!(
            (c.measured - ratio).abs() <= 1e-14 * ratio.abs(),
            "{norm}: {} vs {ratio}",
            c.measured
        );
        assert_eq!(c.pass, *ratio <= -10.0, "{norm}");
        assert!(
            claims.iter().any(|c| c.id == "norm-per-sample-curvature"
                && c.experiment == format!("norm-e3-{norm}")),
            "no per-sample claim for {norm}"
        );
    }
}
