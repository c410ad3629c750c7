//! `eqaug stability` on sizes that used to abort or hang: a huge data count or channel list
//! (terabytes) is refused by the memory estimate before anything is allocated, an absurd
//! iteration budget by the config's validation, each naming the key.

mod common;

use common::{assert_clean_error, eqaug, stderr, write_config};
use std::path::Path;
use std::process::Output;

/// A tiny experiment with a `[stability]` section and a `quick` profile.
const TINY: &str = r#"
[experiment]
id = "tiny"
title = "tiny"
groups = ["perm"]
size = 4
[data]
dataset = "sbm"
count = 40
seed = 1
[network]
preset = "e1"
channels = [2, 3, 2]
loss = "bce"
[protocol]
epochs = 2
learning_rate = 0.05
minibatch = 20
chunk_rows = 40
runs = 1
[[strategies]]
name = "nominal"
kind = "nominal"
[stability]
iterations = 5
newton_iterations = 0
lanczos_steps = 4
escape_steps = 2
[profiles.quick]
"#;

fn stability(cfg: &str, out: &Path, extra: &[&str]) -> Output {
    let out = out.display().to_string();
    let mut args = vec!["stability", cfg, "--profile", "quick", "--out", &out];
    args.extend_from_slice(extra);
    eqaug(&args)
}

#[test]
fn huge_data_and_networks_are_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // 10^10 samples: terabytes of data.
    let cfg = write_config(
        dir.path(),
        &TINY.replace("count = 40", "count = 10000000000"),
    );
    let o = stability(&cfg, &out, &["--max-memory", "4G"]);
    assert_clean_error(&o);
    let e = stderr(&o);
    assert!(
        e.contains("data.count = 10000000000") && e.contains("4.0 GB"),
        "{e}"
    );
    assert!(!out.exists(), "nothing written for a refused config");
    // Without --max-memory the limit is the machine's available memory.
    let o = stability(&cfg, &out, &[]);
    assert_clean_error(&o);
    assert!(stderr(&o).contains("MemAvailable"), "{}", stderr(&o));
    // 10^8 channels: terabytes of parameters.
    let cfg = write_config(
        dir.path(),
        &TINY.replace("channels = [2, 3, 2]", "channels = [100000000, 3, 2]"),
    );
    let o = stability(&cfg, &out, &["--max-memory", "4G"]);
    assert_clean_error(&o);
    assert!(stderr(&o).contains("network.channels"), "{}", stderr(&o));
    assert!(!out.exists(), "nothing written for a refused config");
}

#[test]
fn absurd_budgets_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    for (key, line) in [
        ("stability.refine_steps", "refine_steps = 1000000000000"),
        ("stability.lanczos_steps", "lanczos_steps = 1000000000000"),
        ("stability.iterations", "iterations = 1000000000000"),
        (
            "stability.newton_iterations",
            "newton_iterations = 1000000000000",
        ),
        ("stability.escape_steps", "escape_steps = 1000000000000"),
        ("stability.lanczos_runs", "lanczos_runs = 1000000000000"),
    ] {
        let name = key.trim_start_matches("stability.");
        let text: String = TINY
            .lines()
            .filter(|l| !l.starts_with(&format!("{name} =")))
            .map(|l| {
                if l == "[stability]" {
                    format!("{l}\n{line}\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        let cfg = write_config(dir.path(), &text);
        let o = stability(&cfg, &out, &[]);
        assert_clean_error(&o);
        let e = stderr(&o);
        assert!(e.contains(key) && e.contains("at most"), "{key}: {e}");
    }
    assert!(!out.exists(), "nothing written for a refused config");
}

#[test]
fn the_analysis_estimate_names_the_lanczos_keys() {
    // A network of some ten thousand parameters whose Lanczos bases (2 runs of up to 10^5
    // steps, each a parameter vector) need gigabytes: refused under a limit of 100 MB, with
    // the Lanczos keys named; the same config with the default steps fits in 200 MB.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let big = TINY
        .replace("channels = [2, 3, 2]", "channels = [40, 40, 40]")
        .replace("lanczos_steps = 4", "lanczos_steps = 100000");
    let cfg = write_config(dir.path(), &big);
    let o = stability(&cfg, &out, &["--max-memory", "100M"]);
    assert_clean_error(&o);
    let e = stderr(&o);
    assert!(
        e.contains("stability.lanczos_steps = 100000") && e.contains("Lanczos"),
        "{e}"
    );
    let exp = &eqaug_harness::config::load(Path::new(&cfg), "quick").unwrap()[0];
    let small = {
        let mut e = exp.clone();
        e.stability = Some(eqaug_harness::stability::StabilitySection::default());
        e
    };
    let setup = eqaug_harness::setup::RunSetup::new(&small).unwrap();
    let est = eqaug_harness::stability::estimate_stability(&small, &setup.net64, 40).unwrap();
    // (about 150 MB: the work blocks, the Lanczos bases and the exact products' kept points)
    assert!(
        est.check(Some((200 << 20, "test".into()))).is_ok(),
        "{est:?}"
    );
    let est = eqaug_harness::stability::estimate_stability(exp, &setup.net64, 40).unwrap();
    assert!(est.total() > 1 << 30, "{est:?}");
}

#[test]
fn config_defaults_are_the_library_defaults() {
    use eqaug_dynamics::stability::StabilityOptions;
    use eqaug_harness::stability::StabilitySection;
    // An empty section is the default section, and its options are the library's.
    let s: StabilitySection = toml::from_str("").unwrap();
    assert_eq!(s, StabilitySection::default());
    let lib = StabilityOptions::default();
    let from_config = s.options(lib.minibatch, lib.seed);
    assert_eq!(from_config, lib);
}
